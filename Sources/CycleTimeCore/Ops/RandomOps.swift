// Seeded random tensors (owner: elementwise family). Each draws from `generator` in row-major order.

extension Tensor {
    /// Uniform in [low, high).
    public static func rand(_ shape: [Int], low: Float = 0, high: Float = 1, generator: inout RandomGenerator) -> Tensor { fatalError("unimplemented: rand") }
    /// Normal(mean, std).
    public static func randn(_ shape: [Int], mean: Float = 0, std: Float = 1, generator: inout RandomGenerator) -> Tensor { fatalError("unimplemented: randn") }
    /// 1 with probability p, else 0.
    public static func bernoulli(_ shape: [Int], p: Float, generator: inout RandomGenerator) -> Tensor { fatalError("unimplemented: bernoulli") }
}
