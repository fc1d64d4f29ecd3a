// Reductions: sum, mean and max of all elements or over axes (keepdim like PyTorch), argmax.

/// The shape with `axes` set to 1 (keepdim) and the shape with them removed.
func reducedShapes(_ shape: [Int], _ axes: [Int]) -> (keep: [Int], drop: [Int]) {
    let r = shape.count
    let ax = Set(axes.map { normalizeAxis($0, r) })
    var keep = shape, drop: [Int] = []
    for i in 0..<r { if ax.contains(i) { keep[i] = 1 } else { drop.append(shape[i]) } }
    return (keep, drop)
}

extension Tensor {
    /// Sum of all elements (a 0-d tensor). Parallel over a fixed number of blocks (so the result
    /// does not depend on the thread count), each accumulated in Double.
    public func sum() -> Tensor {
        let out = Tensor(scalar: Float(sumKernel(data, count)))
        let s = shape
        return out.recording("sum", [self]) { g in [Tensor.full(s, g.data[0])] }
    }

    /// Sum over `axes`; `keepdim` keeps them as size-1 dimensions.
    public func sum(axes: [Int], keepdim: Bool = false) -> Tensor {
        let (keep, drop) = reducedShapes(shape, axes)
        let reduced = unbroadcast(self, to: keep)
        let out = keepdim ? reduced : Tensor(shape: drop, storage: reduced.storage)
        let s = shape
        return out.recording("sum", [self]) { g in [expandKernel(g.reshaped(keep), to: s)] }
    }
    public func sum(axis: Int, keepdim: Bool = false) -> Tensor { sum(axes: [axis], keepdim: keepdim) }

    /// Mean of all elements.
    public func mean() -> Tensor { sum() * (1 / Float(Swift.max(count, 1))) }

    /// Mean over `axes`.
    public func mean(axes: [Int], keepdim: Bool = false) -> Tensor {
        let n = axes.map { shape[normalizeAxis($0, rank)] }.reduce(1, *)
        return sum(axes: axes, keepdim: keepdim) * (1 / Float(Swift.max(n, 1)))
    }
    public func mean(axis: Int, keepdim: Bool = false) -> Tensor { mean(axes: [axis], keepdim: keepdim) }
}

// MARK: - sum kernels
// Three summation orders, kept apart on purpose: merging them would change the rounding of every
// result that goes through them (and the bit-exact reproducibility of checkpoints and tests).
// - `sumKernel`: Tensor.sum(), fixed blocks summed in parallel, 4 Double accumulators per block.
// - `doubleSum`: the losses' reductions, one Double accumulator, first element to last.
// - `simdSum`: per-plane sums of conv bias gradients and batch norm statistics, 8 Float lanes.

/// Sum of `n` floats in Double: fixed blocks, 4 independent accumulators each (vectorizable).
func sumKernel(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Double {
    if n == 0 { return 0 }
    let blocks = Swift.min(64, Swift.max(1, n / 4096))
    var partial = [Double](repeating: 0, count: blocks)
    let pp = SendablePointer(p)
    partial.withUnsafeMutableBufferPointer { buf in
        let pb = SendablePointer(buf.baseAddress!)
        Parallel.forEach(blocks, costPerItem: n / blocks) { b in
            let lo = n * b / blocks, hi = n * (b + 1) / blocks
            var a0: Double = 0, a1: Double = 0, a2: Double = 0, a3: Double = 0
            var i = lo
            while i + 4 <= hi {
                a0 += Double(pp[i]); a1 += Double(pp[i + 1]); a2 += Double(pp[i + 2]); a3 += Double(pp[i + 3])
                i += 4
            }
            while i < hi { a0 += Double(pp[i]); i += 1 }
            pb[b] = (a0 + a1) + (a2 + a3)
        }
    }
    return partial.reduce(0, +)
}

/// Sums a buffer in Double, serially from the first element to the last.
@inline(__always) func doubleSum(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Double {
    var acc: Double = 0
    for i in 0..<n { acc += Double(p[i]) }
    return acc
}

/// Vectorized sum of `count` floats (8 lanes).
@inline(__always)
func simdSum(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    let raw = UnsafeRawPointer(p)
    while i + 8 <= count {
        acc += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        i += 8
    }
    var s = acc.sum()
    while i < count { s += p[i]; i += 1 }
    return s
}

/// Maximum of `n > 0` floats (NaN if any is NaN), parallel over fixed blocks.
func maxAllKernel(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
    let blocks = Swift.min(64, Swift.max(1, n / 8192))
    var partial = [Float](repeating: 0, count: blocks)
    let pp = SendablePointer(p)
    partial.withUnsafeMutableBufferPointer { buf in
        let pb = SendablePointer(buf.baseAddress!)
        Parallel.forEach(blocks, costPerItem: n / blocks) { b in
            let lo = n * b / blocks, hi = n * (b + 1) / blocks
            var m = pp[lo]
            var nan = false
            for i in lo..<hi {
                let v = pp[i]
                m = v > m ? v : m
                nan = nan || v.isNaN
            }
            pb[b] = nan ? Float.nan : m
        }
    }
    var m = partial[0]
    for v in partial where maxBeats(v, m) { m = v }
    return m
}

/// "a beats b" for maxima: larger, or NaN (PyTorch's max propagates NaN).
@inline(__always) func maxBeats(_ a: Float, _ b: Float) -> Bool { a > b || (a.isNaN && !b.isNaN) }

/// For `x` viewed as [outer, n, inner]: the maximum over n and its first index, per (outer, inner).
func maxAlongAxis(_ x: Tensor, axis: Int) -> (values: Tensor, indices: [Int32], keep: [Int], drop: [Int]) {
    let ax = normalizeAxis(axis, x.rank)
    let n = x.rank == 0 ? 1 : x.shape[ax]
    precondition(n > 0, "max: cannot reduce over an empty dimension (shape \(x.shape), axis \(axis))")
    let outer = x.rank == 0 ? 1 : x.shape[..<ax].reduce(1, *)
    let inner = x.rank == 0 ? 1 : x.shape[(ax + 1)...].reduce(1, *)
    var keep = x.shape, drop = x.shape
    if x.rank > 0 { keep[ax] = 1; drop.remove(at: ax) }
    let values = Tensor(uninitialized: drop)
    var indices = [Int32](repeating: 0, count: outer * inner)
    let px = SendablePointer(x.data), pv = SendablePointer(values.data)
    indices.withUnsafeMutableBufferPointer { ib in
        let pi = SendablePointer(ib.baseAddress!)
        Parallel.chunks(outer * inner, costPerItem: n) { r in
            var f = r.lowerBound
            while f < r.upperBound {
                let o = f / inner, i0 = f % inner
                let i1 = Swift.min(inner, i0 + (r.upperBound - f))
                let base = o * n * inner
                for i in i0..<i1 { pv[o * inner + i] = px[base + i]; pi[o * inner + i] = 0 }
                for j in 1..<Swift.max(n, 1) {
                    let row = base + j * inner
                    for i in i0..<i1 {
                        let v = px[row + i]
                        if maxBeats(v, pv[o * inner + i]) { pv[o * inner + i] = v; pi[o * inner + i] = Int32(j) }
                    }
                }
                f += i1 - i0
            }
        }
    }
    return (values, indices, keep, drop)
}

// MARK: - max / argmax
extension Tensor {
    /// Maximum over all elements. Like PyTorch's max(), the gradient is split evenly among all
    /// elements equal to the maximum (one element when there are no ties).
    public func max() -> Tensor {
        precondition(count > 0, "max() of an empty tensor")
        let m = maxAllKernel(data, count)
        let out = Tensor(scalar: m)
        let s = shape
        return out.recording("max", [self]) { g in
            let n = self.count
            let px = SendablePointer(self.data)
            @inline(__always) func hit(_ v: Float) -> Bool { v == m || (m.isNaN && v.isNaN) }
            var ties = 0
            for i in 0..<n where hit(px[i]) { ties += 1 }
            let share = g.data[0] / Float(Swift.max(ties, 1))
            let gin = Tensor(uninitialized: s)
            let po = SendablePointer(gin.data)
            Parallel.chunks(n) { r in for i in r { po[i] = hit(px[i]) ? share : 0 } }
            return [gin]
        }
    }

    /// Maximum over `axis` (values); gradient flows to the arg-max element (first occurrence).
    public func max(axis: Int, keepdim: Bool = false) -> Tensor {
        let (v, idx, keep, _) = maxAlongAxis(self, axis: axis)
        let out = keepdim ? Tensor(shape: keep, storage: v.storage) : v
        let s = shape
        let ax = rank == 0 ? 0 : normalizeAxis(axis, rank)
        let n = rank == 0 ? 1 : s[ax]
        let inner = rank == 0 ? 1 : s[(ax + 1)...].reduce(1, *)
        return out.recording("max", [self]) { g in
            let gin = Tensor.zeros(s)
            let pg = SendablePointer(g.data), po = SendablePointer(gin.data)
            idx.withUnsafeBufferPointer { ib in
                let base = UnsafeSendableBox(ib)
                Parallel.chunks(ib.count) { r in
                    for f in r {
                        let o = f / inner, i = f % inner
                        po[(o * n + Int(base.value[f])) * inner + i] = pg[f]
                    }
                }
            }
            return [gin]
        }
    }

    /// Index of the maximum over `axis` (first occurrence), as Float values; not differentiable.
    public func argmax(axis: Int, keepdim: Bool = false) -> Tensor {
        let (_, idx, keep, drop) = maxAlongAxis(self, axis: axis)
        let out = Tensor(idx.map { Float($0) }, shape: keepdim ? keep : drop)
        return out
    }
}
