// Broadcasting (NumPy rules) and the one `unbroadcast` helper through which every broadcasting
// op reduces its gradient.

/// The broadcast shape of `a` and `b`, or a precondition failure naming both.
public func broadcastShapes(_ a: [Int], _ b: [Int]) -> [Int] {
    let r = max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let da = i < r - a.count ? 1 : a[i - (r - a.count)]
        let db = i < r - b.count ? 1 : b[i - (r - b.count)]
        precondition(da == db || da == 1 || db == 1, "shapes \(a) and \(b) cannot be broadcast together")
        out[i] = da == 1 ? db : da
    }
    return out
}

/// Strides of `shape` (contiguous) laid against `outShape`, 0 where `shape` is broadcast.
@inline(__always) func broadcastStrides(_ shape: [Int], to outShape: [Int]) -> [Int] {
    let r = outShape.count
    let own = Tensor.contiguousStrides(shape)
    var s = [Int](repeating: 0, count: r)
    for i in 0..<shape.count {
        let o = i + (r - shape.count)
        s[o] = shape[i] == 1 ? 0 : own[i]
    }
    return s
}

/// Offsets of the first element of each row (all dims but the last) of `outShape` in a tensor with
/// broadcast strides `s`.
@inline(__always) func rowOffset(_ row: Int, _ outShape: [Int], _ s: [Int]) -> Int {
    var rem = row, off = 0
    var d = outShape.count - 2
    while d >= 0 {
        let n = outShape[d]
        off += (rem % n) * s[d]
        rem /= n
        d -= 1
    }
    return off
}

// Kernels generic over small op structs: the specialized loop inlines the op (a closure passed
// through `Parallel.chunks` would be called per element, several times slower).
protocol ElementMap { func callAsFunction(_ x: Float) -> Float }
protocol ElementZip { func callAsFunction(_ a: Float, _ b: Float) -> Float }

struct AddOp: ElementZip { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a + b } }
struct SubOp: ElementZip { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a - b } }
struct MulOp: ElementZip { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a * b } }
struct DivOp: ElementZip { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a / b } }
/// -a / b (the divisor's gradient, with a = g * out).
struct NegDivOp: ElementZip { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { -a / b } }
/// Wraps a closure (for callers outside the core's hot paths).
struct ClosureZip: ElementZip {
    let f: (Float, Float) -> Float
    @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { f(a, b) }
}

/// out[i] = f(a[i'], b[i'']) with NumPy broadcasting. Parallel over rows.
public func broadcastBinary(_ a: Tensor, _ b: Tensor, _ f: @escaping (Float, Float) -> Float) -> Tensor {
    broadcastBinary(a, b, ClosureZip(f: f))
}

/// out[i] = op(a[i'], b[i'']) with NumPy broadcasting. Parallel over rows.
@inline(__always)
func broadcastBinary<Op: ElementZip>(_ a: Tensor, _ b: Tensor, _ f: Op) -> Tensor {
    if a.shape == b.shape {
        let out = Tensor(uninitialized: a.shape)
        let pa = SendablePointer(a.data), pb = SendablePointer(b.data), po = SendablePointer(out.data)
        Parallel.chunks(a.count) { r in for i in r { po[i] = f(pa[i], pb[i]) } }
        return out
    }
    if b.count == 1 && b.rank <= a.rank {
        let out = Tensor(uninitialized: a.shape)
        let pa = SendablePointer(a.data), po = SendablePointer(out.data), v = b.data[0]
        Parallel.chunks(a.count) { r in for i in r { po[i] = f(pa[i], v) } }
        return out
    }
    if a.count == 1 && a.rank <= b.rank {
        let out = Tensor(uninitialized: b.shape)
        let pb = SendablePointer(b.data), po = SendablePointer(out.data), v = a.data[0]
        Parallel.chunks(b.count) { r in for i in r { po[i] = f(v, pb[i]) } }
        return out
    }
    let shape = broadcastShapes(a.shape, b.shape)
    let out = Tensor(uninitialized: shape)
    if out.count == 0 { return out }
    let sa = broadcastStrides(a.shape, to: shape), sb = broadcastStrides(b.shape, to: shape)
    // out.count > 0, so the shapes have rank >= 1 (a scalar broadcast has shape [1] here).
    let inner = shape.last ?? 1, rows = out.count / inner
    let ia = sa.last ?? 0, ib = sb.last ?? 0
    let pa = SendablePointer(a.data), pb = SendablePointer(b.data), po = SendablePointer(out.data)
    Parallel.chunks(rows, costPerItem: inner) { r in
        for row in r {
            let oa = rowOffset(row, shape, sa), ob = rowOffset(row, shape, sb)
            let o = po + row * inner
            for j in 0..<inner { o[j] = f(pa[oa + j * ia], pb[ob + j * ib]) }
        }
    }
    return out
}

/// `x` expanded (copied) to `shape` by broadcasting.
public func expandKernel(_ x: Tensor, to shape: [Int]) -> Tensor {
    if x.shape == shape { return x }
    let out = Tensor(uninitialized: shape)
    if out.count == 0 { return out }
    let sx = broadcastStrides(x.shape, to: shape)
    let inner = shape.last ?? 1, rows = out.count / inner
    let ix = sx.last ?? 0
    let px = SendablePointer(x.data), po = SendablePointer(out.data)
    Parallel.chunks(rows, costPerItem: inner) { r in
        for row in r {
            let ox = shape.count >= 2 ? rowOffset(row, shape, sx) : 0
            let o = po + row * inner
            if ix == 0 { let v = px[ox]; for j in 0..<inner { o[j] = v } }
            else { for j in 0..<inner { o[j] = px[ox + j] } }
        }
    }
    return out
}

/// Sums `g` down to `shape` (which `g.shape` is a broadcast of): the gradient of a broadcast.
public func unbroadcast(_ g: Tensor, to shape: [Int]) -> Tensor {
    if g.shape == shape { return g }
    let gs = g.shape
    precondition(broadcastShapes(shape, gs) == gs, "unbroadcast: \(gs) is not a broadcast of \(shape)")
    let out = Tensor.zeros(shape)
    if g.count == 0 { return out }
    let so = broadcastStrides(shape, to: gs)
    let inner = gs.last ?? 1, rows = g.count / inner
    let io = so.last ?? 0
    let pg = SendablePointer(g.data), po = SendablePointer(out.data)
    // Parallel over output elements would need a gather; rows are split by output ownership when
    // the leading output dimension is not broadcast, else summed serially.
    let lead = shape.count == gs.count && gs.count >= 2 && shape[0] == gs[0] && shape[0] > 1
    let body: (Range<Int>) -> Void = { r in
        for row in r {
            let oo = gs.count >= 2 ? rowOffset(row, gs, so) : 0
            let gp = pg + row * inner
            if io == 0 {
                var acc: Float = 0
                for j in 0..<inner { acc += gp[j] }
                po[oo] += acc
            } else {
                for j in 0..<inner { po[oo + j] += gp[j] }
            }
        }
    }
    if lead {
        let per = rows / gs[0]
        Parallel.chunks(gs[0], costPerItem: per * inner) { r in body((r.lowerBound * per)..<(r.upperBound * per)) }
    } else {
        body(0..<rows)
    }
    return out
}
