// Seeded random tensors (rand, randn, bernoulli). Each draws from `generator` in row-major order.

extension Tensor {
    /// Uniform in [low, high).
    public static func rand(_ shape: [Int], low: Float = 0, high: Float = 1, generator: inout RandomGenerator) -> Tensor {
        let out = Tensor(uninitialized: shape)
        let p = out.data, w = high - low
        for i in 0..<out.count {
            var v = low + w * generator.nextFloat()
            if v >= high && high > low { v = high.nextDown }  // rounding must not reach `high`
            p[i] = v
        }
        return out
    }

    /// Normal(mean, std).
    public static func randn(_ shape: [Int], mean: Float = 0, std: Float = 1, generator: inout RandomGenerator) -> Tensor {
        let out = Tensor(uninitialized: shape)
        let p = out.data
        let m = Double(mean), s = Double(std)
        for i in 0..<out.count { p[i] = Float(m + s * generator.normal()) }
        return out
    }

    /// 1 with probability p, else 0.
    public static func bernoulli(_ shape: [Int], p: Float, generator: inout RandomGenerator) -> Tensor {
        precondition(p >= 0 && p <= 1, "bernoulli: p = \(p) must be in [0, 1]")
        let out = Tensor(uninitialized: shape)
        let d = out.data
        for i in 0..<out.count { d[i] = generator.nextFloat() < p ? 1 : 0 }
        return out
    }

    /// Convenience: draws from the process-wide `DefaultRandom.generator`.
    public static func rand(_ shape: [Int], low: Float = 0, high: Float = 1) -> Tensor {
        rand(shape, low: low, high: high, generator: &DefaultRandom.generator)
    }
    public static func randn(_ shape: [Int], mean: Float = 0, std: Float = 1) -> Tensor {
        randn(shape, mean: mean, std: std, generator: &DefaultRandom.generator)
    }
    public static func bernoulli(_ shape: [Int], p: Float) -> Tensor {
        bernoulli(shape, p: p, generator: &DefaultRandom.generator)
    }
}
