import Foundation
import CycleTimeCore

// Weight initializations with PyTorch's formulas (torch.nn.init). Each fills a tensor in place,
// drawing one value per element in row-major order from `generator`, outside the graph, and
// returns the tensor.

public enum Init {
    public enum FanMode: String, Sendable { case fanIn, fanOut }
    public enum Nonlinearity: String, Sendable { case linear, conv, sigmoid, tanh, relu, leakyRelu, selu }

    /// torch.nn.init.calculate_gain (`param` is leaky_relu's negative slope; nil means 0.01).
    public static func gain(_ nonlinearity: Nonlinearity, param: Double? = nil) -> Double {
        switch nonlinearity {
        case .linear, .conv, .sigmoid: return 1
        case .tanh: return 5.0 / 3.0
        case .relu: return 2.0.squareRoot()
        case .leakyRelu:
            let a = param ?? 0.01
            return (2.0 / (1 + a * a)).squareRoot()
        case .selu: return 3.0 / 4.0
        }
    }

    /// (fan_in, fan_out) as torch.nn.init._calculate_fan_in_and_fan_out: for a weight
    /// [out, in, k...], fan_in = in * prod(k), fan_out = out * prod(k).
    public static func fans(_ shape: [Int]) -> (fanIn: Int, fanOut: Int) {
        precondition(shape.count >= 2, "fan in and fan out need a tensor with at least 2 dimensions, got shape \(shape)")
        let receptive = shape.dropFirst(2).reduce(1, *)
        return (shape[1] * receptive, shape[0] * receptive)
    }

    @discardableResult
    public static func uniform(_ t: Tensor, low: Double = 0, high: Double = 1, generator: inout RandomGenerator) -> Tensor {
        let p = t.data
        for i in 0..<t.count { p[i] = Float(generator.uniform(low, high)) }
        return t
    }

    @discardableResult
    public static func normal(_ t: Tensor, mean: Double = 0, std: Double = 1, generator: inout RandomGenerator) -> Tensor {
        // Marsaglia's polar method: two values per accepted pair, one log and no trigonometry.
        let p = t.data, n = t.count
        var i = 0
        while i < n {
            var u = 0.0, v = 0.0, s = 0.0
            repeat {
                u = 2 * generator.nextDouble() - 1
                v = 2 * generator.nextDouble() - 1
                s = u * u + v * v
            } while s >= 1 || s == 0
            let f = (-2 * Foundation.log(s) / s).squareRoot()
            p[i] = Float(mean + std * u * f)
            if i + 1 < n { p[i + 1] = Float(mean + std * v * f) }
            i += 2
        }
        return t
    }

    @discardableResult
    public static func constant(_ t: Tensor, _ value: Float) -> Tensor { t.fill(value); return t }
    @discardableResult public static func zeros(_ t: Tensor) -> Tensor { constant(t, 0) }
    @discardableResult public static func ones(_ t: Tensor) -> Tensor { constant(t, 1) }

    /// kaiming_uniform_: U(-b, b) with b = gain(nonlinearity, a) * sqrt(3 / fan).
    @discardableResult
    public static func kaimingUniform(_ t: Tensor, a: Double = 0, mode: FanMode = .fanIn,
                                      nonlinearity: Nonlinearity = .leakyRelu, generator: inout RandomGenerator) -> Tensor {
        let f = fans(t.shape)
        let fan = Double(mode == .fanIn ? f.fanIn : f.fanOut)
        let std = gain(nonlinearity, param: a) / fan.squareRoot()
        let bound = 3.0.squareRoot() * std
        return uniform(t, low: -bound, high: bound, generator: &generator)
    }

    /// kaiming_normal_: N(0, std^2) with std = gain(nonlinearity, a) / sqrt(fan).
    @discardableResult
    public static func kaimingNormal(_ t: Tensor, a: Double = 0, mode: FanMode = .fanIn,
                                     nonlinearity: Nonlinearity = .leakyRelu, generator: inout RandomGenerator) -> Tensor {
        let f = fans(t.shape)
        let fan = Double(mode == .fanIn ? f.fanIn : f.fanOut)
        let std = gain(nonlinearity, param: a) / fan.squareRoot()
        return normal(t, mean: 0, std: std, generator: &generator)
    }

    /// xavier_uniform_: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)).
    @discardableResult
    public static func xavierUniform(_ t: Tensor, gain: Double = 1, generator: inout RandomGenerator) -> Tensor {
        let f = fans(t.shape)
        let std = gain * (2.0 / Double(f.fanIn + f.fanOut)).squareRoot()
        let bound = 3.0.squareRoot() * std
        return uniform(t, low: -bound, high: bound, generator: &generator)
    }

    /// xavier_normal_: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).
    @discardableResult
    public static func xavierNormal(_ t: Tensor, gain: Double = 1, generator: inout RandomGenerator) -> Tensor {
        let f = fans(t.shape)
        let std = gain * (2.0 / Double(f.fanIn + f.fanOut)).squareRoot()
        return normal(t, mean: 0, std: std, generator: &generator)
    }

    /// PyTorch's default initialization of Linear/ConvNd: weight kaiming_uniform_(a = sqrt(5))
    /// (i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    public static func pytorchDefault(weight: Tensor, bias: Tensor?, generator: inout RandomGenerator) {
        kaimingUniform(weight, a: 5.0.squareRoot(), generator: &generator)
        if let bias {
            let fanIn = fans(weight.shape).fanIn
            let bound = fanIn > 0 ? 1 / Double(fanIn).squareRoot() : 0
            uniform(bias, low: -bound, high: bound, generator: &generator)
        }
    }
}
