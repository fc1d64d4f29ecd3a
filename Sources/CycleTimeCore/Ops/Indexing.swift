// Gather, index-select, top-k.

extension Tensor {
    /// torch.gather(self, axis, index): index holds integer values (as Float) with self's rank.
    /// out[i][j][k] = self[i][index[i][j][k]][k] (axis 1); out has index's shape. Gradient is a
    /// scatter-add into self's shape.
    public func gathered(axis: Int, index: Tensor) -> Tensor {
        let r = rank
        precondition(index.rank == r, "gather: index rank \(index.rank) differs from input rank \(r)")
        let ax = r == 0 ? 0 : normalizeAxis(axis, r)
        for d in 0..<r where d != ax {
            precondition(index.shape[d] <= shape[d], "gather: index shape \(index.shape) exceeds input shape \(shape) at dim \(d)")
        }
        let out = Tensor(uninitialized: index.shape)
        if out.count == 0 || r == 0 {
            if r == 0 { out.data[0] = data[0] }
            return out.recording("gather", [self]) { g in [g.clone()] }
        }
        let ishape = index.shape, istr = Tensor.contiguousStrides(shape)
        let inner = ishape[r - 1], rows = out.count / inner
        let sa = istr[ax], sl = ax == r - 1 ? 0 : 1, n = shape[ax]
        // Offset in self of row `row` of the index (all dims but the last, axis contributing 0).
        @inline(__always) func rowBase(_ row: Int) -> Int {
            var rem = row, off = 0
            var d = r - 2
            while d >= 0 {
                let i = rem % ishape[d]
                if d != ax { off += i * istr[d] }
                rem /= ishape[d]
                d -= 1
            }
            return off
        }
        let px = SendablePointer(data), pi = SendablePointer(index.data), po = SendablePointer(out.data)
        Parallel.chunks(rows, costPerItem: inner) { rg in
            for row in rg {
                let base = rowBase(row)
                for j in 0..<inner {
                    let k = Int(pi[row * inner + j])
                    precondition(k >= 0 && k < n, "gather: index \(k) out of range for dimension \(ax) of size \(n)")
                    po[row * inner + j] = px[base + k * sa + j * sl]
                }
            }
        }
        let s = shape
        return out.recording("gather", [self]) { g in
            let pi = SendablePointer(index.data)  // `index` kept alive by this closure
            let gin = Tensor.zeros(s)
            let pg = SendablePointer(g.data), pgi = SendablePointer(gin.data)
            let body: (Range<Int>) -> Void = { rg in
                for row in rg {
                    let base = rowBase(row)
                    for j in 0..<inner { pgi[base + Int(pi[row * inner + j]) * sa + j * sl] += pg[row * inner + j] }
                }
            }
            if ax != 0 && r >= 2 {
                // Rows with different leading index write to disjoint slices of gin.
                let per = rows / ishape[0]
                Parallel.chunks(ishape[0], costPerItem: per * inner) { rg in body((rg.lowerBound * per)..<(rg.upperBound * per)) }
            } else {
                body(0..<rows)
            }
            return [gin]
        }
    }

    /// torch.index_select(self, axis, indices). Negative indices are rejected, as PyTorch does.
    public func indexSelect(axis: Int, indices: [Int]) -> Tensor {
        let ax = normalizeAxis(axis, rank)
        let n = shape[ax], k = indices.count
        for i in indices { precondition(i >= 0 && i < n, "indexSelect: index \(i) out of range for dimension \(ax) of size \(n)") }
        let outer = shape[..<ax].reduce(1, *), inner = shape[(ax + 1)...].reduce(1, *)
        var os = shape
        os[ax] = k
        let out = Tensor(uninitialized: os)
        let px = SendablePointer(data), po = SendablePointer(out.data)
        indices.withUnsafeBufferPointer { ib in
            let idx = UnsafeSendableBox(ib)
            Parallel.chunks(outer * k, costPerItem: inner) { rg in
                for f in rg {
                    let o = f / k, j = f % k
                    (po + f * inner).update(from: px + (o * n + idx.value[j]) * inner, count: inner)
                }
            }
        }
        let s = shape
        return out.recording("indexSelect", [self]) { g in
            let gin = Tensor.zeros(s)
            let pg = SendablePointer(g.data), pgi = SendablePointer(gin.data)
            indices.withUnsafeBufferPointer { ib in
                let idx = UnsafeSendableBox(ib)
                Parallel.chunks(outer, costPerItem: k * inner) { rg in
                    for o in rg {
                        for j in 0..<k {
                            let src = pg + (o * k + j) * inner, dst = pgi + (o * n + idx.value[j]) * inner
                            for i in 0..<inner { dst[i] += src[i] }
                        }
                    }
                }
            }
            return [gin]
        }
    }

    /// torch.topk: the k largest (or smallest) along `axis`, sorted; indices as Float.
    /// Equal values are ordered by lower index first. NaN counts as larger than any number, as in
    /// PyTorch. Gradient flows through the values.
    public func topk(_ k: Int, axis: Int = -1, largest: Bool = true) -> (values: Tensor, indices: Tensor) {
        let r = rank
        let ax = r == 0 ? 0 : normalizeAxis(axis, r)
        let n = r == 0 ? 1 : shape[ax]
        precondition(k >= 0 && k <= n, "topk: k = \(k) out of range for dimension of size \(n)")
        let outer = r == 0 ? 1 : shape[..<ax].reduce(1, *), inner = r == 0 ? 1 : shape[(ax + 1)...].reduce(1, *)
        var os = shape
        if r > 0 { os[ax] = k }
        let values = Tensor(uninitialized: os), indices = Tensor(uninitialized: os)
        let px = SendablePointer(data), pv = SendablePointer(values.data), pidx = SendablePointer(indices.data)
        let sign: Float = largest ? 1 : -1
        Parallel.chunks(outer * inner, costPerItem: n * 4) { rg in
            // Per-chunk buffers of the current best k (key, index), sorted best first.
            var keys = [Float](repeating: 0, count: Swift.max(k, 1))
            var idx = [Int](repeating: 0, count: Swift.max(k, 1))
            var all = [Int](repeating: 0, count: k > 64 ? n : 0)
            keys.withUnsafeMutableBufferPointer { kb in
            idx.withUnsafeMutableBufferPointer { ib in
            all.withUnsafeMutableBufferPointer { ab in
                let kp = kb.baseAddress!, ip = ib.baseAddress!
                for f in rg {
                    let o = f / inner, i = f % inner
                    let base = o * n * inner + i
                    // key: larger is better; NaN is best when largest (and worst... PyTorch treats NaN
                    // as the largest value in both modes, so it is last when smallest).
                    @inline(__always) func key(_ j: Int) -> Float {
                        let v = px[base + j * inner]
                        if v.isNaN { return largest ? Float.infinity : -Float.infinity }
                        return v * sign
                    }
                    @inline(__always) func isNaN(_ j: Int) -> Bool { px[base + j * inner].isNaN }
                    // a (key ka, index ia) before b? Larger key first; NaN beyond +inf; ties: lower index.
                    @inline(__always) func before(_ ka: Float, _ na: Bool, _ ia: Int, _ kb: Float, _ nb: Bool, _ ib: Int) -> Bool {
                        if na != nb { return largest ? na : nb }
                        if ka != kb { return ka > kb }
                        return ia < ib
                    }
                    if k == 0 { continue }
                    if k <= 64 {
                        var filled = 0
                        for j in 0..<n {
                            let kj = key(j), nj = isNaN(j)
                            if filled == k {
                                let w = filled - 1
                                if !before(kj, nj, j, kp[w], isNaN(ip[w]), ip[w]) { continue }
                            } else {
                                filled += 1
                            }
                            // Insert at its sorted position among the first filled-1 entries.
                            var p = filled - 1
                            while p > 0 && before(kj, nj, j, kp[p - 1], isNaN(ip[p - 1]), ip[p - 1]) {
                                kp[p] = kp[p - 1]; ip[p] = ip[p - 1]; p -= 1
                            }
                            kp[p] = kj; ip[p] = j
                        }
                    } else {
                        let ap = ab.baseAddress!
                        for j in 0..<n { ap[j] = j }
                        var buf = UnsafeMutableBufferPointer(start: ap, count: n)
                        buf.sort { a, b in before(key(a), isNaN(a), a, key(b), isNaN(b), b) }
                        for q in 0..<k { ip[q] = ap[q] }
                    }
                    for q in 0..<k {
                        let dst = (o * k + q) * inner + i
                        pv[dst] = px[base + ip[q] * inner]
                        pidx[dst] = Float(ip[q])
                    }
                }
            }
            }
            }
        }
        let s = shape
        let out = values.recording("topk", [self]) { g in
            let pidx = SendablePointer(indices.data)  // `indices` kept alive by this closure
            let gin = Tensor.zeros(s)
            let pg = SendablePointer(g.data), pgi = SendablePointer(gin.data)
            Parallel.chunks(outer * inner, costPerItem: k) { rg in
                for f in rg {
                    let o = f / inner, i = f % inner
                    for q in 0..<k {
                        let src = (o * k + q) * inner + i
                        pgi[(o * n + Int(pidx[src])) * inner + i] = pg[src]
                    }
                }
            }
            return [gin]
        }
        return (out, indices)
    }
}
