import Foundation

// softmax, log_softmax and F.normalize (L2 normalization) along an axis.
//
// A tensor is viewed as [outer, n, inner] around the reduced axis. When inner == 1 each row is
// contiguous; otherwise the kernels sweep tiles of up to `tile` inner columns so that every
// memory access stays contiguous. Work items (outer x tiles) run in parallel.

/// Tile width (inner columns) for reductions along a non-last axis.
private let tile = 256

/// Splits `shape` around `axis` into (outer, n, inner).
@inline(__always) private func axisSplit(_ shape: [Int], _ axis: Int) -> (outer: Int, n: Int, inner: Int) {
    let a = normalizeAxis(axis, shape.count)
    if shape.isEmpty { return (1, 1, 1) }
    let outer = shape[..<a].reduce(1, *), inner = shape[(a + 1)...].reduce(1, *)
    return (outer, shape[a], inner)
}

/// Runs `body(base, width)` for every (outer, tile) work item in parallel: `base` is the offset of
/// the first element of the tile (at axis index 0), `width` the number of inner columns.
@inline(__always)
private func forEachTile(_ outer: Int, _ n: Int, _ inner: Int, costPerColumn: Int = 4,
                         _ body: (_ base: Int, _ width: Int) -> Void) {
    let tiles = (inner + tile - 1) / tile
    let items = outer * tiles
    let per = Swift.max(1, Swift.min(inner, tile)) * n * costPerColumn
    Parallel.chunks(items, costPerItem: per) { r in
        for item in r {
            let o = item / tiles, t = item % tiles
            let j0 = t * tile, w = Swift.min(tile, inner - j0)
            body(o * n * inner + j0, w)
        }
    }
}

enum SoftmaxKind { case softmax, logSoftmax }

/// Softmax or log-softmax of `x` along `axis` (max-subtracted, sums in Float).
func softmaxKernel(_ x: Tensor, axis: Int, kind: SoftmaxKind) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    if x.count == 0 { return out }
    let (outer, n, inner) = axisSplit(x.shape, axis)
    let px = SendablePointer(x.data), po = SendablePointer(out.data)
    let log = kind == .logSoftmax
    if inner == 1 {
        Parallel.chunks(outer, costPerItem: n * 8) { r in
            for row in r {
                let xr = px + row * n, yr = po + row * n
                var m = -Float.infinity
                for j in 0..<n { m = Swift.max(m, xr[j]) }
                if m == -.infinity { m = 0 }
                var s: Float = 0
                if log {
                    for j in 0..<n { s += Foundation.exp(xr[j] - m) }
                    let ls = m + Foundation.log(s)
                    for j in 0..<n { yr[j] = xr[j] - ls }
                } else {
                    for j in 0..<n { let e = Foundation.exp(xr[j] - m); yr[j] = e; s += e }
                    let inv = 1 / s
                    for j in 0..<n { yr[j] *= inv }
                }
            }
        }
        return out
    }
    forEachTile(outer, n, inner, costPerColumn: 8) { base, w in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * tile) { buf in
            let m = buf.baseAddress!, s = m + tile
            let xb = px + base, yb = po + base
            for j in 0..<w { m[j] = -.infinity; s[j] = 0 }
            for a in 0..<n { let xr = xb + a * inner; for j in 0..<w { m[j] = Swift.max(m[j], xr[j]) } }
            for j in 0..<w where m[j] == -.infinity { m[j] = 0 }
            if log {
                for a in 0..<n { let xr = xb + a * inner; for j in 0..<w { s[j] += Foundation.exp(xr[j] - m[j]) } }
                for j in 0..<w { m[j] += Foundation.log(s[j]) }
                for a in 0..<n {
                    let xr = xb + a * inner, yr = yb + a * inner
                    for j in 0..<w { yr[j] = xr[j] - m[j] }
                }
            } else {
                for a in 0..<n {
                    let xr = xb + a * inner, yr = yb + a * inner
                    for j in 0..<w { let e = Foundation.exp(xr[j] - m[j]); yr[j] = e; s[j] += e }
                }
                for j in 0..<w { s[j] = 1 / s[j] }
                for a in 0..<n { let yr = yb + a * inner; for j in 0..<w { yr[j] *= s[j] } }
            }
        }
    }
    return out
}

/// Backward of softmax (gx = y * (g - sum(g * y))) or log-softmax (gx = g - exp(y) * sum(g)).
func softmaxBackwardKernel(_ g: Tensor, _ y: Tensor, axis: Int, kind: SoftmaxKind) -> Tensor {
    let gx = Tensor(uninitialized: y.shape)
    if y.count == 0 { return gx }
    let (outer, n, inner) = axisSplit(y.shape, axis)
    let pg = SendablePointer(g.data), py = SendablePointer(y.data), po = SendablePointer(gx.data)
    let log = kind == .logSoftmax
    if inner == 1 {
        Parallel.chunks(outer, costPerItem: n * 6) { r in
            for row in r {
                let gr = pg + row * n, yr = py + row * n, o = po + row * n
                var s: Float = 0
                if log {
                    for j in 0..<n { s += gr[j] }
                    for j in 0..<n { o[j] = gr[j] - Foundation.exp(yr[j]) * s }
                } else {
                    for j in 0..<n { s += gr[j] * yr[j] }
                    for j in 0..<n { o[j] = yr[j] * (gr[j] - s) }
                }
            }
        }
        return gx
    }
    forEachTile(outer, n, inner, costPerColumn: 6) { base, w in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: tile) { buf in
            let s = buf.baseAddress!
            for j in 0..<w { s[j] = 0 }
            let gb = pg + base, yb = py + base, ob = po + base
            if log {
                for a in 0..<n { let gr = gb + a * inner; for j in 0..<w { s[j] += gr[j] } }
                for a in 0..<n {
                    let gr = gb + a * inner, yr = yb + a * inner, o = ob + a * inner
                    for j in 0..<w { o[j] = gr[j] - Foundation.exp(yr[j]) * s[j] }
                }
            } else {
                for a in 0..<n {
                    let gr = gb + a * inner, yr = yb + a * inner
                    for j in 0..<w { s[j] += gr[j] * yr[j] }
                }
                for a in 0..<n {
                    let gr = gb + a * inner, yr = yb + a * inner, o = ob + a * inner
                    for j in 0..<w { o[j] = yr[j] * (gr[j] - s[j]) }
                }
            }
        }
    }
    return gx
}

extension Tensor {
    /// torch.softmax along `axis` (numerically stable: the row maximum is subtracted first).
    public func softmax(axis: Int) -> Tensor {
        let out = softmaxKernel(self, axis: axis, kind: .softmax)
        let o = out.detach()  // the output's values without a reference to its record
        return out.recording("softmax", [self]) { g in [softmaxBackwardKernel(g, o, axis: axis, kind: .softmax)] }
    }

    /// torch.log_softmax along `axis` (x - max - log(sum(exp(x - max)))).
    public func logSoftmax(axis: Int) -> Tensor {
        let out = softmaxKernel(self, axis: axis, kind: .logSoftmax)
        let o = out.detach()  // the output's values without a reference to its record
        return out.recording("logSoftmax", [self]) { g in [softmaxBackwardKernel(g, o, axis: axis, kind: .logSoftmax)] }
    }
}

extension F {
    /// F.normalize: x / max(||x||_p, eps) along `axis` (p = 2).
    ///
    /// The gradient is exactly autograd's for `x / norm(x).clamp_min(eps)`: with n = ||x||,
    /// d = max(n, eps), gx = g / d - x * sum(g * x) / d^2 * [n >= eps] / n (0 where n == 0).
    public static func normalize(_ x: Tensor, axis: Int = 1, eps: Float = 1e-12) -> Tensor {
        let out = Tensor(uninitialized: x.shape)
        if x.count == 0 { return out }
        let (outer, n, inner) = axisSplit(x.shape, axis)
        // Norms per (outer, inner) column, kept for backward.
        let norms = Tensor(uninitialized: [outer * inner])
        let px = SendablePointer(x.data), po = SendablePointer(out.data), pn = SendablePointer(norms.data)
        forEachTile(outer, n, inner, costPerColumn: 4) { base, w in
            let o = base / (n * inner), j0 = base % (n * inner)
            let nr = pn + (o * inner + j0)
            for j in 0..<w { nr[j] = 0 }
            let xb = px + base, ob = po + base
            for a in 0..<n { let xr = xb + a * inner; for j in 0..<w { nr[j] += xr[j] * xr[j] } }
            for j in 0..<w { nr[j] = nr[j].squareRoot() }
            for a in 0..<n {
                let xr = xb + a * inner, yr = ob + a * inner
                for j in 0..<w { yr[j] = xr[j] / Swift.max(nr[j], eps) }
            }
        }
        return out.recording("normalize", [x]) { g in
            let gx = Tensor(uninitialized: x.shape)
            let pg = SendablePointer(g.data), pgx = SendablePointer(gx.data)
            let px = SendablePointer(x.data), pn = SendablePointer(norms.data)
            forEachTile(outer, n, inner, costPerColumn: 6) { base, w in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: tile) { buf in
                    let s = buf.baseAddress!
                    let o = base / (n * inner), j0 = base % (n * inner)
                    let nr = pn + (o * inner + j0)
                    let xb = px + base, gb = pg + base, ob = pgx + base
                    for j in 0..<w { s[j] = 0 }
                    for a in 0..<n {
                        let xr = xb + a * inner, gr = gb + a * inner
                        for j in 0..<w { s[j] += gr[j] * xr[j] }
                    }
                    // coefficient of x: -sum(g x) / d^2 * [n >= eps] / n
                    for j in 0..<w {
                        let nn = nr[j], d = Swift.max(nn, eps)
                        s[j] = (nn >= eps && nn > 0) ? -s[j] / (d * d) / nn : 0
                    }
                    for a in 0..<n {
                        let xr = xb + a * inner, gr = gb + a * inner, yr = ob + a * inner
                        for j in 0..<w { yr[j] = gr[j] / Swift.max(nr[j], eps) + xr[j] * s[j] }
                    }
                }
            }
            return [gx]
        }
    }

    /// F.softmax / F.log_softmax.
    public static func softmax(_ x: Tensor, axis: Int) -> Tensor { x.softmax(axis: axis) }
    public static func logSoftmax(_ x: Tensor, axis: Int) -> Tensor { x.logSoftmax(axis: axis) }
}
