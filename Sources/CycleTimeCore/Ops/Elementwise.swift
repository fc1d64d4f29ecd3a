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

/// out[i] = f(x[i], y[i]) for two tensors of the same shape, parallel.
@inline(__always)
func zipKernel(_ x: Tensor, _ y: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
    precondition(x.shape == y.shape, "zipKernel: shapes \(x.shape) and \(y.shape)")
    let out = Tensor(uninitialized: x.shape)
    let px = SendablePointer(x.data), py = SendablePointer(y.data), po = SendablePointer(out.data)
    Parallel.chunks(x.count) { r in for i in r { po[i] = f(px[i], py[i]) } }
    return out
}

extension Tensor {
    public func exp() -> Tensor {
        let out = unaryKernel(self) { Foundation.exp($0) }
        let o = out.detach()  // shares storage; avoids a cycle out -> gradFn -> out
        return out.recording("exp", [self]) { g in [zipKernel(g, o, *)] }
    }

    public func log() -> Tensor {
        let out = unaryKernel(self) { Foundation.log($0) }
        return out.recording("log", [self]) { g in [zipKernel(g, self, /)] }
    }

    public func sqrt() -> Tensor {
        let out = unaryKernel(self) { $0.squareRoot() }
        let o = out.detach()
        return out.recording("sqrt", [self]) { g in [zipKernel(g, o) { $0 / (2 * $1) }] }
    }

    /// x ** p for a scalar exponent.
    public func pow(_ p: Float) -> Tensor {
        let out: Tensor
        if p == 2 { out = unaryKernel(self) { $0 * $0 } }
        else if p == 1 { out = unaryKernel(self) { $0 } }
        else if p == 0.5 { out = unaryKernel(self) { $0.squareRoot() } }
        else { out = unaryKernel(self) { Foundation.pow($0, p) } }
        return out.recording("pow", [self]) { g in
            // d/dx x^p = p x^(p-1); PyTorch gives 0 for p == 0.
            if p == 0 { return [Tensor.zeros(self.shape)] }
            if p == 2 { return [zipKernel(g, self) { $0 * 2 * $1 }] }
            if p == 1 { return [g] }
            let q = p - 1
            return [zipKernel(g, self) { $0 * p * Foundation.pow($1, q) }]
        }
    }

    public func abs() -> Tensor {
        let out = unaryKernel(self) { Swift.abs($0) }
        // sign(0) = 0, as PyTorch.
        return out.recording("abs", [self]) { g in [zipKernel(g, self) { $1 > 0 ? $0 : ($1 < 0 ? -$0 : 0) }] }
    }

    /// torch.clamp (either bound may be nil). Gradient 1 inside [min, max] (inclusive), 0 outside.
    public func clamp(min lo: Float? = nil, max hi: Float? = nil) -> Tensor {
        let l = lo ?? -Float.infinity, h = hi ?? Float.infinity
        // PyTorch: min(max(x, lo), hi); NaN propagates.
        let out = unaryKernel(self) { x in x.isNaN ? x : Swift.min(Swift.max(x, l), h) }
        return out.recording("clamp", [self]) { g in [zipKernel(g, self) { ($1 >= l && $1 <= h) ? $0 : 0 }] }
    }

    public func relu() -> Tensor {
        let out = unaryKernel(self) { $0 > 0 ? $0 : ($0.isNaN ? $0 : 0) }
        let o = out.detach()
        return out.recording("relu", [self]) { g in [zipKernel(g, o) { $1 > 0 ? $0 : 0 }] }
    }

    public func leakyRelu(_ negativeSlope: Float = 0.01) -> Tensor {
        let s = negativeSlope
        let out = unaryKernel(self) { $0 > 0 ? $0 : $0 * s }
        return out.recording("leakyRelu", [self]) { g in [zipKernel(g, self) { $1 > 0 ? $0 : $0 * s }] }
    }

    public func sigmoid() -> Tensor {
        let out = unaryKernel(self) { x in
            // Stable for large |x|.
            if x >= 0 { return 1 / (1 + Foundation.exp(-x)) }
            let e = Foundation.exp(x)
            return e / (1 + e)
        }
        let o = out.detach()
        return out.recording("sigmoid", [self]) { g in [zipKernel(g, o) { $0 * $1 * (1 - $1) }] }
    }

    public func tanh() -> Tensor {
        let out = unaryKernel(self) { Foundation.tanh($0) }
        let o = out.detach()
        return out.recording("tanh", [self]) { g in [zipKernel(g, o) { $0 * (1 - $1 * $1) }] }
    }

    /// torch.where(condition, a, b): condition is nonzero = true; broadcasts all three.
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
        let shape = broadcastShapes(broadcastShapes(condition.shape, a.shape), b.shape)
        let c = expandKernel(condition, to: shape), ea = expandKernel(a, to: shape), eb = expandKernel(b, to: shape)
        let out = Tensor(uninitialized: shape)
        let pc = SendablePointer(c.data), pa = SendablePointer(ea.data), pb = SendablePointer(eb.data)
        let po = SendablePointer(out.data)
        Parallel.chunks(out.count) { r in for i in r { po[i] = pc[i] != 0 ? pa[i] : pb[i] } }
        let sa = a.shape, sb = b.shape, na = a.requiresGrad, nb = b.requiresGrad
        return out.recording("where", [a, b]) { g in
            [na ? unbroadcast(zipKernel(g, c) { $1 != 0 ? $0 : 0 }, to: sa) : nil,
             nb ? unbroadcast(zipKernel(g, c) { $1 != 0 ? 0 : $0 }, to: sb) : nil]
        }
    }

    /// masked_fill: `value` where mask is nonzero (mask broadcasts to self).
    public func maskedFill(_ mask: Tensor, _ value: Float) -> Tensor {
        precondition(broadcastShapes(mask.shape, shape) == shape, "maskedFill: mask \(mask.shape) does not broadcast to \(shape)")
        let m = expandKernel(mask, to: shape)
        let out = zipKernel(self, m) { $1 != 0 ? value : $0 }
        return out.recording("maskedFill", [self]) { g in [zipKernel(g, m) { $1 != 0 ? 0 : $0 }] }
    }
}
