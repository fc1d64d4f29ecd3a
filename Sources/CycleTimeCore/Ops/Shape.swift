// Shape ops. Tensors are always contiguous, so reshape shares storage and the rest copy.

extension Tensor {
    /// Reshape (one dimension may be -1). Shares storage.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map { $0.element }.reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            s[i] = count / known
        }
        precondition(Tensor.count(of: s) == count, "cannot reshape \(shape) (\(count) elements) to \(newShape)")
        if s == shape { return self }
        let out = Tensor(shape: s, storage: storage)
        let old = shape
        return out.recording("reshape", [self]) { g in [Tensor(shape: old, storage: g.storage)] }
    }
    public func reshaped(_ dims: Int...) -> Tensor { reshaped(dims) }

    /// Flattens dimensions `start...end` into one.
    public func flattened(from start: Int = 0, to end: Int = -1) -> Tensor {
        let s = normalizeAxis(start, rank), e = normalizeAxis(end, rank)
        if s >= e { return self }
        let mid = shape[s...e].reduce(1, *)
        return reshaped(Array(shape[..<s]) + [mid] + Array(shape[(e + 1)...]))
    }

    /// Broadcasts (copies) to `shape`.
    public func expanded(to newShape: [Int]) -> Tensor {
        precondition(broadcastShapes(shape, newShape) == newShape, "cannot expand \(shape) to \(newShape)")
        let s = shape
        return expandKernel(self, to: newShape).recording("expand", [self]) { g in [unbroadcast(g, to: s)] }
    }
}

// MARK: - copying shape ops

/// Copies `x` (shape `shape`) permuted by `perm` into `out`. Consecutive dimensions that stay
/// together are merged first; then either the innermost dimension is preserved (contiguous row
/// copies), or the innermost two merged dimensions are swapped (cache-blocked 2-D transposes), or
/// a generic strided gather is used. Parallel.
func permuteKernel(_ src: UnsafeMutablePointer<Float>, _ shape: [Int], _ perm: [Int], _ dst: UnsafeMutablePointer<Float>) {
    let total = shape.reduce(1, *)
    if total == 0 { return }
    // Drop size-1 dims, then merge runs (perm[k+1] == perm[k] + 1).
    var keptIn: [Int] = []  // input dims kept (size > 1), in input order
    for d in 0..<shape.count where shape[d] != 1 { keptIn.append(d) }
    var p2: [Int] = perm.filter { shape[$0] != 1 }.compactMap { keptIn.firstIndex(of: $0) }
    var s2: [Int] = keptIn.map { shape[$0] }
    // Merge: groups of output-consecutive dims that are input-consecutive.
    var groups: [[Int]] = []  // in output order, each a run of input dims
    for d in p2 {
        if var last = groups.last, let end = last.last, end + 1 == d { last.append(d); groups[groups.count - 1] = last }
        else { groups.append([d]) }
    }
    // Input order of groups.
    let inOrder = groups.indices.sorted { groups[$0][0] < groups[$1][0] }
    s2 = inOrder.map { gi in groups[gi].map { s2[$0] }.reduce(1, *) }
    // p2[k] = position in merged input dims of output merged dim k.
    var posOf = [Int](repeating: 0, count: groups.count)
    for (pos, gi) in inOrder.enumerated() { posOf[gi] = pos }
    p2 = (0..<groups.count).map { posOf[$0] }
    let r = s2.count
    let sp = SendablePointer(src), dp = SendablePointer(dst)
    if r <= 1 || p2 == Array(0..<r) {  // identity
        Parallel.chunks(total) { rg in (dp + rg.lowerBound).update(from: sp + rg.lowerBound, count: rg.count) }
        return
    }
    let inStr = Tensor.contiguousStrides(s2)
    let outShape = p2.map { s2[$0] }
    let ostr = p2.map { inStr[$0] }  // input stride of each output dim
    if p2[r - 1] == r - 1 {
        // Innermost dimension preserved: contiguous row copies.
        let inner = outShape[r - 1], rows = total / inner
        Parallel.chunks(rows, costPerItem: inner) { rg in
            for row in rg {
                var rem = row, off = 0
                var d = r - 2
                while d >= 0 { off += (rem % outShape[d]) * ostr[d]; rem /= outShape[d]; d -= 1 }
                (dp + row * inner).update(from: sp + off, count: inner)
            }
        }
        return
    }
    if p2[r - 1] == r - 2 && p2[r - 2] == r - 1 && Array(p2[..<(r - 2)]) == Array(0..<(r - 2)) {
        // Batched 2-D transpose: in [B, A, C] -> out [B, C, A].
        let a = s2[r - 2], c = s2[r - 1], batch = total / (a * c)
        let tile = 32
        let ta = (a + tile - 1) / tile, tc = (c + tile - 1) / tile
        Parallel.chunks(batch * ta * tc, costPerItem: tile * tile) { rg in
            for t in rg {
                let b = t / (ta * tc), rem = t % (ta * tc)
                let ia = (rem / tc) * tile, ic = (rem % tc) * tile
                let ea = Swift.min(a, ia + tile), ec = Swift.min(c, ic + tile)
                let sb = sp + b * a * c, db = dp + b * a * c
                for j in ic..<ec {
                    let drow = db + j * a
                    for i in ia..<ea { drow[i] = sb[i * c + j] }
                }
            }
        }
        return
    }
    // Generic: rows of the output's innermost dimension, strided gather.
    let inner = outShape[r - 1], rows = total / inner, istep = ostr[r - 1]
    Parallel.chunks(rows, costPerItem: inner * 2) { rg in
        for row in rg {
            var rem = row, off = 0
            var d = r - 2
            while d >= 0 { off += (rem % outShape[d]) * ostr[d]; rem /= outShape[d]; d -= 1 }
            let o = dp + row * inner
            for j in 0..<inner { o[j] = sp[off + j * istep] }
        }
    }
}

/// Python slice bounds: (start, count) for x[start:end:step] on a dimension of size n.
func sliceBounds(_ n: Int, _ start: Int, _ end: Int, _ step: Int) -> (Int, Int) {
    precondition(step > 0, "slice step must be positive (got \(step)), as in PyTorch")
    var s = start < 0 ? start + n : start
    var e = end < 0 ? end + n : end
    s = Swift.min(Swift.max(s, 0), n)
    e = Swift.min(Swift.max(e, 0), n)
    let len = e > s ? (e - s + step - 1) / step : 0
    return (s, len)
}

/// Copies blocks: for each of `outer` rows, `count` floats from src (row stride `srcStride`,
/// offset `srcOff`) to dst (row stride `dstStride`, offset `dstOff`). Parallel.
@inline(__always)
func copyBlocks(_ src: UnsafeMutablePointer<Float>, srcStride: Int, srcOff: Int,
                _ dst: UnsafeMutablePointer<Float>, dstStride: Int, dstOff: Int, outer: Int, count: Int) {
    if outer == 0 || count == 0 { return }
    let sp = SendablePointer(src), dp = SendablePointer(dst)
    if outer == 1 {
        Parallel.chunks(count) { r in (dp + dstOff + r.lowerBound).update(from: sp + srcOff + r.lowerBound, count: r.count) }
        return
    }
    Parallel.chunks(outer, costPerItem: count) { r in
        for o in r { (dp + o * dstStride + dstOff).update(from: sp + o * srcStride + srcOff, count: count) }
    }
}

extension Tensor {
    /// torch.permute.
    public func permuted(_ dims: [Int]) -> Tensor {
        precondition(dims.count == rank, "permute: \(dims.count) dims for a tensor of rank \(rank)")
        let perm = dims.map { normalizeAxis($0, rank) }
        precondition(Set(perm).count == rank, "permute: \(dims) is not a permutation")
        let out = Tensor(uninitialized: perm.map { shape[$0] })
        permuteKernel(data, shape, perm, out.data)
        var inv = [Int](repeating: 0, count: rank)
        for (k, d) in perm.enumerated() { inv[d] = k }
        let outShape = out.shape, s = shape
        return out.recording("permute", [self]) { g in
            let gin = Tensor(uninitialized: s)
            permuteKernel(g.data, outShape, inv, gin.data)
            return [gin]
        }
    }
    public func permuted(_ dims: Int...) -> Tensor { permuted(dims) }

    /// torch.transpose(a, b).
    public func transposed(_ a: Int, _ b: Int) -> Tensor {
        let x = normalizeAxis(a, rank), y = normalizeAxis(b, rank)
        var perm = Array(0..<rank)
        perm.swapAt(x, y)
        return permuted(perm)
    }

    /// x[..., start:end:step, ...] along `axis` (negative start/end count from the end, like Python).
    public func sliced(axis: Int, start: Int, end: Int = Int.max, step: Int = 1) -> Tensor {
        let ax = normalizeAxis(axis, rank)
        let n = shape[ax]
        let (s0, len) = sliceBounds(n, start, end, step)
        let outer = shape[..<ax].reduce(1, *), inner = shape[(ax + 1)...].reduce(1, *)
        var os = shape
        os[ax] = len
        let out = Tensor(uninitialized: os)
        if step == 1 {
            copyBlocks(data, srcStride: n * inner, srcOff: s0 * inner, out.data, dstStride: len * inner, dstOff: 0,
                       outer: outer, count: len * inner)
        } else {
            let sp = SendablePointer(data), dp = SendablePointer(out.data)
            Parallel.chunks(outer * len, costPerItem: inner) { r in
                for f in r {
                    let o = f / len, j = f % len
                    (dp + f * inner).update(from: sp + (o * n + s0 + j * step) * inner, count: inner)
                }
            }
        }
        let s = shape
        return out.recording("slice", [self]) { g in
            let gin = Tensor.zeros(s)
            let gp = SendablePointer(g.data), ip = SendablePointer(gin.data)
            Parallel.chunks(outer * len, costPerItem: inner) { r in
                for f in r {
                    let o = f / len, j = f % len
                    (ip + (o * n + s0 + j * step) * inner).update(from: gp + f * inner, count: inner)
                }
            }
            return [gin]
        }
    }

    /// torch.squeeze(dim): removes `axis` when its size is 1 (otherwise returns self, as PyTorch).
    public func squeezed(axis: Int) -> Tensor {
        if rank == 0 { return self }
        let ax = normalizeAxis(axis, rank)
        if shape[ax] != 1 { return self }
        var s = shape
        s.remove(at: ax)
        return reshaped(s)
    }

    /// torch.unsqueeze(dim): `axis` in -(rank+1)...rank.
    public func unsqueezed(axis: Int) -> Tensor {
        let ax = normalizeAxis(axis, rank + 1)
        var s = shape
        s.insert(1, at: ax)
        return reshaped(s)
    }

    /// torch.cat.
    public static func cat(_ tensors: [Tensor], axis: Int = 0) -> Tensor {
        precondition(!tensors.isEmpty, "cat: no tensors")
        // PyTorch skips 1-D empty tensors (legacy behaviour).
        let ts = tensors.filter { !($0.rank == 1 && $0.count == 0) }
        guard let first = ts.first else { return Tensor.zeros([0]) }
        let r = first.rank
        precondition(r > 0, "cat: zero-dimensional tensors cannot be concatenated")
        let ax = normalizeAxis(axis, r)
        var total = 0
        for t in ts {
            precondition(t.rank == r, "cat: ranks differ (\(first.shape) vs \(t.shape))")
            for d in 0..<r where d != ax {
                precondition(t.shape[d] == first.shape[d], "cat: shapes \(first.shape) and \(t.shape) differ outside axis \(ax)")
            }
            total += t.shape[ax]
        }
        var os = first.shape
        os[ax] = total
        let out = Tensor(uninitialized: os)
        let outer = first.shape[..<ax].reduce(1, *), inner = first.shape[(ax + 1)...].reduce(1, *)
        let rowOut = total * inner
        var offsets: [Int] = []
        var off = 0
        for t in ts { offsets.append(off); off += t.shape[ax] * inner }
        if outer == 1 || ts.count == 1 {
            for (t, o) in zip(ts, offsets) {
                copyBlocks(t.data, srcStride: t.shape[ax] * inner, srcOff: 0, out.data, dstStride: rowOut, dstOff: o,
                           outer: outer, count: t.shape[ax] * inner)
            }
        } else {
            // One parallel pass over output rows, copying each input's piece.
            let ptrs = ts.map { SendablePointer($0.data) }
            let lens = ts.map { $0.shape[ax] * inner }
            let dp = SendablePointer(out.data)
            Parallel.chunks(outer, costPerItem: rowOut) { rg in
                for o in rg {
                    for k in 0..<ptrs.count where lens[k] > 0 {
                        (dp + o * rowOut + offsets[k]).update(from: ptrs[k] + o * lens[k], count: lens[k])
                    }
                }
            }
        }
        let shapes = ts.map { $0.shape }
        let needs = ts.map { $0.requiresGrad }
        return out.recording("cat", ts) { g in
            var grads: [Tensor?] = []
            for k in 0..<shapes.count {
                guard needs[k] else { grads.append(nil); continue }
                let gi = Tensor(uninitialized: shapes[k])
                let len = shapes[k][ax] * inner
                copyBlocks(g.data, srcStride: rowOut, srcOff: offsets[k], gi.data, dstStride: len, dstOff: 0,
                           outer: outer, count: len)
                grads.append(gi)
            }
            return grads
        }
    }

    /// torch.stack.
    public static func stack(_ tensors: [Tensor], axis: Int = 0) -> Tensor {
        precondition(!tensors.isEmpty, "stack: no tensors")
        let s = tensors[0].shape
        for t in tensors { precondition(t.shape == s, "stack: shapes \(s) and \(t.shape) differ") }
        let ax = normalizeAxis(axis, s.count + 1)
        return cat(tensors.map { $0.unsqueezed(axis: ax) }, axis: ax)
    }
}

/// Source index along one padded dimension for output index `o` (-1 = constant fill).
@inline(__always) func padSource(_ o: Int, before: Int, size: Int, reflect: Bool) -> Int {
    var i = o - before
    if i >= 0 && i < size { return i }
    if !reflect { return -1 }
    if size == 1 { return 0 }
    // PyTorch reflect (pad < size): mirror without repeating the edge.
    let period = 2 * (size - 1)
    i = ((i % period) + period) % period
    return i < size ? i : period - i
}

extension F {
    /// F.pad: `pads` as in PyTorch, last dimension first: [left, right, top, bottom, front, back].
    /// `.reflect` as PyTorch's reflect (edge not repeated). Zero mode fills `value` and accepts
    /// negative pads (cropping), as PyTorch's constant mode.
    public static func pad(_ x: Tensor, _ pads: [Int], mode: PadMode = .zeros, value: Float = 0) -> Tensor {
        precondition(pads.count % 2 == 0, "pad: pads must have an even length, got \(pads)")
        let k = pads.count / 2
        precondition(k <= x.rank, "pad: \(k) padded dimensions for a tensor of rank \(x.rank)")
        let reflect = mode == .reflect
        if reflect {
            precondition(k <= 3, "pad: reflect pads at most 3 trailing dimensions")
            precondition(x.rank >= k + 1, "pad: reflect needs a batch/channel dimension before the padded ones (rank \(x.rank))")
        }
        if k == 0 { return x }
        // More than 3 padded dimensions (constant mode only): one dimension at a time.
        if k > 3 { return padGeneric(x, pads, value: value) }
        // Shape as [outer, d0, d1, d2] where d0..d2 are the (up to 3) padded dims, leading 1s if fewer.
        let r = x.rank
        var before = [0, 0, 0], after = [0, 0, 0], size = [1, 1, 1]
        for j in 0..<k {  // j = 0 is the last dimension
            let d = r - 1 - j, slot = 2 - j
            before[slot] = pads[2 * j]; after[slot] = pads[2 * j + 1]; size[slot] = x.shape[d]
            if reflect {
                precondition(pads[2 * j] >= 0 && pads[2 * j + 1] >= 0 && pads[2 * j] < x.shape[d] && pads[2 * j + 1] < x.shape[d],
                             "pad: reflect padding \(pads[2 * j]),\(pads[2 * j + 1]) must be non-negative and less than the dimension size \(x.shape[d])")
            }
        }
        let outer = x.shape[..<(r - k)].reduce(1, *)
        let osz = (0..<3).map { size[$0] + before[$0] + after[$0] }
        precondition(osz.allSatisfy { $0 >= 0 }, "pad: negative output size for shape \(x.shape) and pads \(pads)")
        var outShape = x.shape
        for j in 0..<k { outShape[r - 1 - j] = osz[2 - j] }
        let out = Tensor(uninitialized: outShape)
        let maps = (0..<3).map { s in (0..<osz[s]).map { padSource($0, before: before[s], size: size[s], reflect: reflect) } }
        let (n0, n1, n2) = (size[0], size[1], size[2])
        let (o0, o1, o2) = (osz[0], osz[1], osz[2])
        // Contiguous run in the last dim: output j in [lo, hi) reads j - before[2].
        let lo = Swift.max(0, before[2]), hi = Swift.min(o2, before[2] + n2)
        let m0 = maps[0], m1 = maps[1], m2 = maps[2]
        let sp = SendablePointer(x.data), dp = SendablePointer(out.data)
        let rows = outer * o0 * o1
        if out.count > 0 {
            Parallel.chunks(rows, costPerItem: Swift.max(o2, 1)) { rg in
                for row in rg {
                    let b = row / (o0 * o1), a0 = (row / o1) % o0, a1 = row % o1
                    let dst = dp + row * o2
                    let s0 = m0[a0], s1 = m1[a1]
                    if s0 < 0 || s1 < 0 { dst.update(repeating: value, count: o2); continue }
                    let src = sp + ((b * n0 + s0) * n1 + s1) * n2
                    for j in 0..<Swift.min(lo, o2) { let s = m2[j]; dst[j] = s < 0 ? value : src[s] }
                    if hi > lo { (dst + lo).update(from: src + (lo - before[2]), count: hi - lo) }
                    for j in Swift.max(hi, lo)..<o2 { let s = m2[j]; dst[j] = s < 0 ? value : src[s] }
                }
            }
        }
        let inShape = x.shape
        return out.recording("pad", [x]) { g in
            let gin = Tensor.zeros(inShape)
            let gp = SendablePointer(g.data), ip = SendablePointer(gin.data)
            // Reflection maps several output rows onto one input row: parallel over `outer` only.
            Parallel.chunks(outer, costPerItem: o0 * o1 * Swift.max(o2, 1)) { rg in
                for b in rg {
                    for a0 in 0..<o0 {
                        let s0 = m0[a0]
                        if s0 < 0 { continue }
                        for a1 in 0..<o1 {
                            let s1 = m1[a1]
                            if s1 < 0 { continue }
                            let src = gp + ((b * o0 + a0) * o1 + a1) * o2
                            let dst = ip + ((b * n0 + s0) * n1 + s1) * n2
                            for j in 0..<o2 { let s = m2[j]; if s >= 0 { dst[s] += src[j] } }
                        }
                    }
                }
            }
            return [gin]
        }
    }

    /// Constant padding of more than 3 trailing dimensions, by successive single-dimension pads.
    static func padGeneric(_ x: Tensor, _ pads: [Int], value: Float) -> Tensor {
        var y = x
        let k = pads.count / 2
        for j in 0..<k where pads[2 * j] != 0 || pads[2 * j + 1] != 0 {
            let d = x.rank - 1 - j
            // Move dimension d last, pad it, move it back.
            var perm = Array(0..<x.rank)
            perm.remove(at: d); perm.append(d)
            var inv = [Int](repeating: 0, count: x.rank)
            for (q, p) in perm.enumerated() { inv[p] = q }
            y = pad(y.permuted(perm), [pads[2 * j], pads[2 * j + 1]], mode: .zeros, value: value).permuted(inv)
        }
        return y
    }
}
