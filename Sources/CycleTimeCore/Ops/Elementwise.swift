import Foundation

// Elementwise ops. Binary ops broadcast like NumPy and reduce their gradients with `unbroadcast`.

/// out[i] = f(x[i]), parallel.
@inline(__always)
public func unaryKernel(_ x: Tensor, _ f: (Float) -> Float) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let px = SendablePointer(x.data), po = SendablePointer(out.data)
    Parallel.chunks(x.count) { r in for i in r { po[i] = f(px[i]) } }
    return out
}

extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastBinary(a, b, +)
        let sa = a.shape, sb = b.shape
        return out.recording("add", [a, b]) { g in [unbroadcast(g, to: sa), unbroadcast(g, to: sb)] }
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastBinary(a, b, -)
        let sa = a.shape, sb = b.shape
        return out.recording("sub", [a, b]) { g in [unbroadcast(g, to: sa), unbroadcast(unaryKernel(g, -), to: sb)] }
    }

    public static func * (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastBinary(a, b, *)
        let na = a.requiresGrad, nb = b.requiresGrad
        return out.recording("mul", [a, b]) { g in
            [na ? unbroadcast(broadcastBinary(g, b, *), to: a.shape) : nil,
             nb ? unbroadcast(broadcastBinary(g, a, *), to: b.shape) : nil]
        }
    }

    public static func / (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastBinary(a, b, /)
        let na = a.requiresGrad, nb = b.requiresGrad
        return out.recording("div", [a, b]) { g in
            [na ? unbroadcast(broadcastBinary(g, b, /), to: a.shape) : nil,
             // d(a/b)/db = -a/b^2 = -out/b
             nb ? unbroadcast(broadcastBinary(broadcastBinary(g, out, *), b, { -$0 / $1 }), to: b.shape) : nil]
        }
    }

    public static prefix func - (x: Tensor) -> Tensor {
        unaryKernel(x, -).recording("neg", [x]) { g in [unaryKernel(g, -)] }
    }

    // Scalars on either side.
    public static func + (a: Tensor, s: Float) -> Tensor { a + Tensor(scalar: s) }
    public static func + (s: Float, a: Tensor) -> Tensor { Tensor(scalar: s) + a }
    public static func - (a: Tensor, s: Float) -> Tensor { a - Tensor(scalar: s) }
    public static func - (s: Float, a: Tensor) -> Tensor { Tensor(scalar: s) - a }
    public static func * (a: Tensor, s: Float) -> Tensor { a * Tensor(scalar: s) }
    public static func * (s: Float, a: Tensor) -> Tensor { Tensor(scalar: s) * a }
    public static func / (a: Tensor, s: Float) -> Tensor { a / Tensor(scalar: s) }
    public static func / (s: Float, a: Tensor) -> Tensor { Tensor(scalar: s) / a }
}

// MARK: - unary ops (owner: elementwise family)
extension Tensor {
    public func exp() -> Tensor { fatalError("unimplemented: exp") }
    public func log() -> Tensor { fatalError("unimplemented: log") }
    public func sqrt() -> Tensor { fatalError("unimplemented: sqrt") }
    /// x ** p for a scalar exponent.
    public func pow(_ p: Float) -> Tensor { fatalError("unimplemented: pow") }
    public func abs() -> Tensor { fatalError("unimplemented: abs") }
    /// torch.clamp (either bound may be nil). Gradient 1 inside [min, max] (inclusive), 0 outside.
    public func clamp(min: Float? = nil, max: Float? = nil) -> Tensor { fatalError("unimplemented: clamp") }
    public func relu() -> Tensor { fatalError("unimplemented: relu") }
    public func leakyRelu(_ negativeSlope: Float = 0.01) -> Tensor { fatalError("unimplemented: leakyRelu") }
    public func sigmoid() -> Tensor { fatalError("unimplemented: sigmoid") }
    public func tanh() -> Tensor { fatalError("unimplemented: tanh") }
    /// torch.where(condition, a, b): condition is nonzero = true; broadcasts all three.
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor { fatalError("unimplemented: where") }
    /// masked_fill: `value` where mask is nonzero (mask broadcasts to self).
    public func maskedFill(_ mask: Tensor, _ value: Float) -> Tensor { fatalError("unimplemented: maskedFill") }
}
