import Foundation

// Elementwise ops. Binary ops broadcast like NumPy and reduce their gradients with `unbroadcast`.

extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastBinary(a, b, AddOp())
        let sa = a.shape, sb = b.shape
        return out.recording("add", [a, b]) { g in [unbroadcast(g, to: sa), unbroadcast(g, to: sb)] }
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastBinary(a, b, SubOp())
        let sa = a.shape, sb = b.shape
        return out.recording("sub", [a, b]) { g in [unbroadcast(g, to: sa), unbroadcast(mapKernel(g, NegOp()), to: sb)] }
    }

    public static func * (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastBinary(a, b, MulOp())
        let na = a.requiresGrad, nb = b.requiresGrad
        return out.recording("mul", [a, b]) { g in
            [na ? unbroadcast(broadcastBinary(g, b, MulOp()), to: a.shape) : nil,
             nb ? unbroadcast(broadcastBinary(g, a, MulOp()), to: b.shape) : nil]
        }
    }

    public static func / (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastBinary(a, b, DivOp())
        let o = out.detach()
        let na = a.requiresGrad, nb = b.requiresGrad
        return out.recording("div", [a, b]) { g in
            [na ? unbroadcast(broadcastBinary(g, b, DivOp()), to: a.shape) : nil,
             // d(a/b)/db = -a/b^2 = -out/b
             nb ? unbroadcast(broadcastBinary(broadcastBinary(g, o, MulOp()), b, NegDivOp()), to: b.shape) : nil]
        }
    }

    public static prefix func - (x: Tensor) -> Tensor {
        mapKernel(x, NegOp()).recording("neg", [x]) { g in [mapKernel(g, NegOp())] }
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

// MARK: - unary ops

/// out[i] = op(x[i]), parallel: the one map kernel (binary ops go through `broadcastBinary`).
@inline(__always)
func mapKernel<Op: ElementMap>(_ x: Tensor, _ op: Op) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let px = SendablePointer(x.data), po = SendablePointer(out.data)
    Parallel.chunks(x.count) { r in for i in r { po[i] = op(px[i]) } }
    return out
}

/// out[i] = op(x[i], y[i]) for two tensors of the same shape, parallel.
@inline(__always)
func zipKernel<Op: ElementZip>(_ x: Tensor, _ y: Tensor, _ op: Op) -> Tensor {
    precondition(x.shape == y.shape, "zipKernel: shapes \(x.shape) and \(y.shape)")
    return broadcastBinary(x, y, op)  // its same-shape loop
}

struct NegOp: ElementMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { -x } }
struct ExpOp: ElementMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.exp(x) } }
struct LogOp: ElementMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.log(x) } }
struct SqrtOp: ElementMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { x.squareRoot() } }
struct SquareOp: ElementMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { x * x } }
struct PowOp: ElementMap { let p: Float; @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.pow(x, p) } }
struct AbsOp: ElementMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Swift.abs(x) } }
/// min(max(x, lo), hi) with NaN passed through (comparisons with NaN are false).
struct ClampOp: ElementMap {
    let lo: Float, hi: Float
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x < lo ? lo : (x > hi ? hi : x) }
}
/// NaN passes through (NaN < 0 is false), as PyTorch's relu.
struct ReluOp: ElementMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { x < 0 ? 0 : x } }
struct LeakyOp: ElementMap { let s: Float; @inline(__always) func callAsFunction(_ x: Float) -> Float { x > 0 ? x : x * s } }
struct SigmoidOp: ElementMap {
    @inline(__always) func callAsFunction(_ x: Float) -> Float {
        // exp of a non-positive argument only, so large |x| neither overflows nor loses precision.
        let e = Foundation.exp(-Swift.abs(x))
        return x >= 0 ? 1 / (1 + e) : e / (1 + e)
    }
}
struct TanhOp: ElementMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.tanh(x) } }

/// g / (2 out): sqrt's gradient.
struct HalfDivOp: ElementZip { @inline(__always) func callAsFunction(_ g: Float, _ o: Float) -> Float { g / (2 * o) } }
/// g * 2x: square's gradient.
struct TwiceMulOp: ElementZip { @inline(__always) func callAsFunction(_ g: Float, _ x: Float) -> Float { g * 2 * x } }
/// g * p * x^(p-1).
struct PowGradOp: ElementZip {
    let p: Float, q: Float
    @inline(__always) func callAsFunction(_ g: Float, _ x: Float) -> Float { g * p * Foundation.pow(x, q) }
}
/// g * sign(x), sign(0) = 0 as PyTorch.
struct SignMulOp: ElementZip { @inline(__always) func callAsFunction(_ g: Float, _ x: Float) -> Float { x > 0 ? g : (x < 0 ? -g : 0) } }
/// g where lo <= x <= hi (inclusive), else 0.
struct InRangeOp: ElementZip {
    let lo: Float, hi: Float
    @inline(__always) func callAsFunction(_ g: Float, _ x: Float) -> Float { (x >= lo && x <= hi) ? g : 0 }
}
/// g where y > 0, else 0.
struct PositiveOp: ElementZip { @inline(__always) func callAsFunction(_ g: Float, _ y: Float) -> Float { y > 0 ? g : 0 } }
/// g where x > 0, else g * s.
struct LeakyGradOp: ElementZip { let s: Float; @inline(__always) func callAsFunction(_ g: Float, _ x: Float) -> Float { x > 0 ? g : g * s } }
struct SigmoidGradOp: ElementZip { @inline(__always) func callAsFunction(_ g: Float, _ o: Float) -> Float { g * o * (1 - o) } }
struct TanhGradOp: ElementZip { @inline(__always) func callAsFunction(_ g: Float, _ o: Float) -> Float { g * (1 - o * o) } }
/// a where m is nonzero, else 0 (or the reverse with `inverted`).
struct MaskOp: ElementZip {
    let inverted: Bool
    @inline(__always) func callAsFunction(_ a: Float, _ m: Float) -> Float { (m != 0) != inverted ? a : 0 }
}
/// `value` where m is nonzero, else a.
struct FillOp: ElementZip { let value: Float; @inline(__always) func callAsFunction(_ a: Float, _ m: Float) -> Float { m != 0 ? value : a } }

extension Tensor {
    public func exp() -> Tensor {
        let out = mapKernel(self, ExpOp())
        let o = out.detach()  // shares storage; avoids a cycle out -> gradFn -> out
        return out.recording("exp", [self]) { g in [zipKernel(g, o, MulOp())] }
    }

    public func log() -> Tensor {
        mapKernel(self, LogOp()).recording("log", [self]) { g in [zipKernel(g, self, DivOp())] }
    }

    public func sqrt() -> Tensor {
        let out = mapKernel(self, SqrtOp())
        let o = out.detach()
        return out.recording("sqrt", [self]) { g in [zipKernel(g, o, HalfDivOp())] }
    }

    /// x ** p for a scalar exponent.
    public func pow(_ p: Float) -> Tensor {
        let out: Tensor
        if p == 2 { out = mapKernel(self, SquareOp()) }
        else if p == 1 { out = clone() }
        else if p == 0.5 { out = mapKernel(self, SqrtOp()) }
        else { out = mapKernel(self, PowOp(p: p)) }
        return out.recording("pow", [self]) { g in
            // d/dx x^p = p x^(p-1); PyTorch gives 0 for p == 0.
            if p == 0 { return [Tensor.zeros(self.shape)] }
            if p == 1 { return [g] }
            if p == 2 { return [zipKernel(g, self, TwiceMulOp())] }
            return [zipKernel(g, self, PowGradOp(p: p, q: p - 1))]
        }
    }

    public func abs() -> Tensor {
        mapKernel(self, AbsOp()).recording("abs", [self]) { g in [zipKernel(g, self, SignMulOp())] }
    }

    /// torch.clamp (either bound may be nil). Gradient 1 inside [min, max] (inclusive), 0 outside.
    public func clamp(min lo: Float? = nil, max hi: Float? = nil) -> Tensor {
        let l = lo ?? -Float.infinity, h = hi ?? Float.infinity
        return mapKernel(self, ClampOp(lo: l, hi: h)).recording("clamp", [self]) { g in
            [zipKernel(g, self, InRangeOp(lo: l, hi: h))]
        }
    }

    public func relu() -> Tensor {
        let out = mapKernel(self, ReluOp())
        if Autocast.isEnabled && Tensor.needsGrad(self) {
            // Inside autocast: a byte mask instead of the output (see `PositiveMask`).
            let mask = PositiveMask(out)
            return out.recording("relu", [self]) { g in [mask.select(g)] }
        }
        let o = out.detach()
        return out.recording("relu", [self]) { g in [zipKernel(g, o, PositiveOp())] }
    }

    public func leakyRelu(_ negativeSlope: Float = 0.01) -> Tensor {
        let s = negativeSlope
        return mapKernel(self, LeakyOp(s: s)).recording("leakyRelu", [self]) { g in [zipKernel(g, self, LeakyGradOp(s: s))] }
    }

    public func sigmoid() -> Tensor {
        let out = mapKernel(self, SigmoidOp())
        let o = out.detach()
        return out.recording("sigmoid", [self]) { g in [zipKernel(g, o, SigmoidGradOp())] }
    }

    public func tanh() -> Tensor {
        let out = mapKernel(self, TanhOp())
        let o = out.detach()
        return out.recording("tanh", [self]) { g in [zipKernel(g, o, TanhGradOp())] }
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
            [na ? unbroadcast(zipKernel(g, c, MaskOp(inverted: false)), to: sa) : nil,
             nb ? unbroadcast(zipKernel(g, c, MaskOp(inverted: true)), to: sb) : nil]
        }
    }

    /// masked_fill: `value` where mask is nonzero (mask broadcasts to self).
    public func maskedFill(_ mask: Tensor, _ value: Float) -> Tensor {
        precondition(broadcastShapes(mask.shape, shape) == shape, "maskedFill: mask \(mask.shape) does not broadcast to \(shape)")
        let m = expandKernel(mask, to: shape)
        return zipKernel(self, m, FillOp(value: value)).recording("maskedFill", [self]) { g in
            [zipKernel(g, m, MaskOp(inverted: true))]
        }
    }
}
