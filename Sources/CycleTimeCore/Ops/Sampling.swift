import Foundation

// Spatial sampling with exactly PyTorch's semantics: affine_grid, grid_sample, interpolate.

/// PyTorch's `linspace_from_neg_one` (affine_grid's base coordinates): linspace(-1, 1, n) computed
/// as torch.linspace does (from both ends), scaled by (n - 1) / n without align_corners; [0] for n <= 1.
private func linspaceFromNegOne(_ n: Int, _ alignCorners: Bool) -> [Float] {
    if n <= 1 { return [0] }
    let step: Float = 2 / Float(n - 1)
    let half = n / 2
    var v = [Float](repeating: 0, count: n)
    for i in 0..<n { v[i] = i < half ? -1 + step * Float(i) : 1 - step * Float(n - i - 1) }
    if !alignCorners { for i in 0..<n { v[i] = v[i] * Float(n - 1) / Float(n) } }
    return v
}

/// Grid coordinate -> pixel coordinate, as PyTorch's CPU grid sampler:
/// alignCorners: (c + 1) * (size - 1) / 2; otherwise (c + 1) * size / 2 - 0.5.
/// `scale` is the factor that multiplies the gradient (d pixel / d coord).
private struct Unnormalize {
    let scale: Float, shift: Float
    init(size: Int, alignCorners: Bool) {
        scale = alignCorners ? Float(size - 1) / 2 : Float(size) / 2
        shift = alignCorners ? 0 : 0.5
    }
    /// The pixel coordinate, with non-finite or far-away values moved to a place whose corners are
    /// all out of range (they contribute zero, as in PyTorch).
    @inline(__always) func callAsFunction(_ c: Float, size: Int) -> Float {
        let v = (c + 1) * scale - shift
        if !(v > -2) { return -2 }
        if !(v < Float(size + 1)) { return Float(size + 1) }
        return v
    }
}

/// Grid points per work block of gridSample.
private let gridBlock = 256

/// The sampling taps of grid points: for each point four clamped plane offsets (nw, ne, sw, se)
/// and four weights, zero for corners outside the input (bilinear), or one offset and a 0/1 weight
/// (nearest: round half to even, as PyTorch's CPU kernel).
private struct GridTaps: @unchecked Sendable {
    let un: Unnormalize, vn: Unnormalize
    let w: Int, h: Int
    let bilinear: Bool

    /// Scratch buffers for one block: offsets [4 * gridBlock], weights [4 * gridBlock], fractions [2 * gridBlock].
    @inline(__always) func withBuffers(_ body: (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 4 * gridBlock) { ob in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 6 * gridBlock) { fb in
                body(ob.baseAddress!, fb.baseAddress!, fb.baseAddress! + 4 * gridBlock)
            }
        }
    }

    /// Fills the taps of `count` points (x, y pairs at `gp`). With `frac`, `wt` receives the corner
    /// masks instead of the weights and `frac` the fractional offsets (x - floor x, y - floor y).
    @inline(__always) func fill(_ gp: UnsafeMutablePointer<Float>, _ count: Int, _ off: UnsafeMutablePointer<Int32>,
                                _ wt: UnsafeMutablePointer<Float>, _ frac: UnsafeMutablePointer<Float>?) {
        for k in 0..<count {
            let ix = un(gp[2 * k], size: w), iy = vn(gp[2 * k + 1], size: h)
            let q = 4 * k
            if bilinear {
                let fx = ix.rounded(.down), fy = iy.rounded(.down)
                let x0 = Int(fx), y0 = Int(fy), x1 = x0 + 1, y1 = y0 + 1
                let we = ix - fx, ea = 1 - we, no = iy - fy, so = 1 - no
                let vx0 = x0 >= 0 && x0 < w, vx1 = x1 >= 0 && x1 < w
                let vy0 = y0 >= 0 && y0 < h, vy1 = y1 >= 0 && y1 < h
                let cx0 = Swift.min(Swift.max(x0, 0), w - 1), cx1 = Swift.min(Swift.max(x1, 0), w - 1)
                let cy0 = Swift.min(Swift.max(y0, 0), h - 1), cy1 = Swift.min(Swift.max(y1, 0), h - 1)
                off[q] = Int32(cy0 * w + cx0); off[q + 1] = Int32(cy0 * w + cx1)
                off[q + 2] = Int32(cy1 * w + cx0); off[q + 3] = Int32(cy1 * w + cx1)
                if let frac {
                    wt[q] = vy0 && vx0 ? 1 : 0; wt[q + 1] = vy0 && vx1 ? 1 : 0
                    wt[q + 2] = vy1 && vx0 ? 1 : 0; wt[q + 3] = vy1 && vx1 ? 1 : 0
                    frac[2 * k] = we; frac[2 * k + 1] = no
                } else {
                    wt[q] = vy0 && vx0 ? so * ea : 0; wt[q + 1] = vy0 && vx1 ? so * we : 0
                    wt[q + 2] = vy1 && vx0 ? no * ea : 0; wt[q + 3] = vy1 && vx1 ? no * we : 0
                }
            } else {
                let xn = Int(ix.rounded(.toNearestOrEven)), yn = Int(iy.rounded(.toNearestOrEven))
                let inside = xn >= 0 && xn < w && yn >= 0 && yn < h
                off[q] = inside ? Int32(yn * w + xn) : 0
                wt[q] = inside ? 1 : 0
            }
        }
    }
}

extension F {
    /// F.affine_grid for 2-D: theta [N, 2, 3], size [N, C, H, W] -> grid [N, H, W, 2] (x, y):
    /// grid[n, h, w] = theta[n] @ (x_w, y_h, 1), with x, y from linspace(-1, 1) (scaled by
    /// (size - 1) / size without alignCorners). Differentiable w.r.t. theta.
    public static func affineGrid(_ theta: Tensor, size: [Int], alignCorners: Bool) -> Tensor {
        precondition(size.count == 4, "affineGrid: size must be [N, C, H, W], got \(size)")
        precondition(theta.rank == 3 && theta.shape[1] == 2 && theta.shape[2] == 3 && theta.shape[0] == size[0],
                     "affineGrid: expected theta of shape [\(size[0]), 2, 3], got \(theta.shape)")
        let n = size[0], h = size[2], w = size[3]
        let xs = linspaceFromNegOne(w, alignCorners), ys = linspaceFromNegOne(h, alignCorners)
        let out = Tensor(uninitialized: [n, h, w, 2])
        let pt = SendablePointer(theta.data), po = SendablePointer(out.data)
        xs.withUnsafeBufferPointer { xb in
            ys.withUnsafeBufferPointer { yb in
                let px = SendablePointer(UnsafeMutablePointer(mutating: xb.baseAddress!))
                let py = SendablePointer(UnsafeMutablePointer(mutating: yb.baseAddress!))
                Parallel.chunks(n * h, costPerItem: w * 6) { r in
                    for row in r {
                        let b = row / h, i = row % h
                        let t = pt + b * 6, y = py[i]
                        let o = po + row * w * 2
                        for j in 0..<w {
                            let x = px[j]
                            o[2 * j] = x * t[0] + y * t[1] + t[2]
                            o[2 * j + 1] = x * t[3] + y * t[4] + t[5]
                        }
                    }
                }
            }
        }
        return out.recording("affineGrid", [theta]) { g in
            let gt = Tensor(uninitialized: [n, 2, 3])
            let pg = g.data
            for b in 0..<n {
                var acc = [Double](repeating: 0, count: 6)
                for i in 0..<h {
                    let y = Double(ys[i])
                    for j in 0..<w {
                        let x = Double(xs[j])
                        let gp = pg + ((b * h + i) * w + j) * 2
                        let g0 = Double(gp[0]), g1 = Double(gp[1])
                        acc[0] += g0 * x; acc[1] += g0 * y; acc[2] += g0
                        acc[3] += g1 * x; acc[4] += g1 * y; acc[5] += g1
                    }
                }
                for k in 0..<6 { gt.data[b * 6 + k] = Float(acc[k]) }
            }
            return [gt]
        }
    }

    /// F.grid_sample for 2-D input [N, C, H, W] and grid [N, Ho, Wo, 2] (x, y in [-1, 1]);
    /// zero padding (`padding_mode='zeros'`): corners outside the input contribute zero.
    /// Bilinear or nearest (round half to even, as PyTorch's CPU kernel). Gradients flow to the
    /// input and, for bilinear, to the grid (nearest gives the grid a zero gradient, as PyTorch).
    /// Parallel over output rows (forward, grid gradient) and over (batch, channel) planes (input gradient).
    public static func gridSample(_ x: Tensor, grid: Tensor, mode: InterpolationMode = .bilinear,
                                  alignCorners: Bool) -> Tensor {
        precondition(x.rank == 4, "gridSample: input must be [N, C, H, W], got \(x.shape)")
        precondition(grid.rank == 4 && grid.shape[3] == 2 && grid.shape[0] == x.shape[0],
                     "gridSample: grid must be [\(x.shape[0]), Ho, Wo, 2], got \(grid.shape)")
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
        let ho = grid.shape[1], wo = grid.shape[2]
        let taps = GridTaps(un: Unnormalize(size: w, alignCorners: alignCorners),
                            vn: Unnormalize(size: h, alignCorners: alignCorners),
                            w: w, h: h, bilinear: mode == .bilinear)
        let out = Tensor(uninitialized: [n, c, ho, wo])
        let px = SendablePointer(x.data), pg = SendablePointer(grid.data), po = SendablePointer(out.data)
        let plane = h * w, oplane = ho * wo
        // Work items: blocks of up to `gridBlock` grid points of one batch element. For each block
        // the taps are computed once, then every channel is swept with contiguous output writes.
        let blocksPer = (oplane + gridBlock - 1) / gridBlock
        Parallel.chunks(n * blocksPer, costPerItem: Swift.min(oplane, gridBlock) * (c * 8 + 20)) { r in
            taps.withBuffers { off, wt, _ in
                for item in r {
                    let b = item / blocksPer, k0 = (item % blocksPer) * gridBlock
                    let cnt = Swift.min(gridBlock, oplane - k0)
                    taps.fill(pg + (b * oplane + k0) * 2, cnt, off, wt, nil)
                    let xb = px + b * c * plane, ob = po + b * c * oplane + k0
                    for ch in 0..<c {
                        let p = xb + ch * plane, o = ob + ch * oplane
                        if taps.bilinear {
                            for k in 0..<cnt {
                                let q = 4 * k
                                o[k] = p[Int(off[q])] * wt[q] + p[Int(off[q + 1])] * wt[q + 1]
                                    + p[Int(off[q + 2])] * wt[q + 2] + p[Int(off[q + 3])] * wt[q + 3]
                            }
                        } else {
                            for k in 0..<cnt { o[k] = p[Int(off[4 * k])] * wt[4 * k] }
                        }
                    }
                }
            }
        }
        let needX = x.requiresGrad, needG = grid.requiresGrad
        return out.recording("gridSample", [x, grid]) { g in
            // px and pg point into x and grid: the closure keeps both alive (the graph does not).
            defer { withExtendedLifetime(x) {}; withExtendedLifetime(grid) {} }
            let pgo = SendablePointer(g.data)
            var gx: Tensor? = nil, gg: Tensor? = nil
            if needX {
                let t = Tensor.zeros([n, c, h, w])
                let pgx = SendablePointer(t.data)
                // Work items own disjoint gradient planes: (batch, channel block). Few batches: one
                // channel per item (taps recomputed per channel); many batches: all channels.
                let cb = n >= 2 * Parallel.threadCount ? 1 : c
                Parallel.chunks(n * cb, costPerItem: oplane * ((c / cb) * 8 + 20) + 1) { r in
                    taps.withBuffers { off, wt, _ in
                        for item in r {
                            let b = item / cb, blk = item % cb
                            let c0 = cb == 1 ? 0 : blk, c1 = cb == 1 ? c : blk + 1
                            for k0 in stride(from: 0, to: oplane, by: gridBlock) {
                                let cnt = Swift.min(gridBlock, oplane - k0)
                                taps.fill(pg + (b * oplane + k0) * 2, cnt, off, wt, nil)
                                for ch in c0..<c1 {
                                    let p = pgx + (b * c + ch) * plane, gr = pgo + (b * c + ch) * oplane + k0
                                    if taps.bilinear {
                                        for k in 0..<cnt {
                                            let q = 4 * k, v = gr[k]
                                            p[Int(off[q])] += wt[q] * v
                                            p[Int(off[q + 1])] += wt[q + 1] * v
                                            p[Int(off[q + 2])] += wt[q + 2] * v
                                            p[Int(off[q + 3])] += wt[q + 3] * v
                                        }
                                    } else {
                                        for k in 0..<cnt { p[Int(off[4 * k])] += wt[4 * k] * gr[k] }
                                    }
                                }
                            }
                        }
                    }
                }
                gx = t
            }
            if needG {
                let t = Tensor.zeros([n, ho, wo, 2])
                if taps.bilinear {
                    let pgg = SendablePointer(t.data)
                    Parallel.chunks(n * blocksPer, costPerItem: Swift.min(oplane, gridBlock) * (c * 12 + 20)) { r in
                        taps.withBuffers { off, wt, frac in
                            for item in r {
                                let b = item / blocksPer, k0 = (item % blocksPer) * gridBlock
                                let cnt = Swift.min(gridBlock, oplane - k0)
                                taps.fill(pg + (b * oplane + k0) * 2, cnt, off, wt, frac)
                                // wt holds the corner masks (1 in range, 0 outside) here; frac the
                                // fractional positions; the sums go to the output gradient directly.
                                let go = pgg + (b * oplane + k0) * 2
                                for ch in 0..<c {
                                    let p = px + (b * c + ch) * plane, gr = pgo + (b * c + ch) * oplane + k0
                                    for k in 0..<cnt {
                                        let q = 4 * k
                                        let nw = p[Int(off[q])] * wt[q], ne = p[Int(off[q + 1])] * wt[q + 1]
                                        let sw = p[Int(off[q + 2])] * wt[q + 2], se = p[Int(off[q + 3])] * wt[q + 3]
                                        let we = frac[2 * k], no = frac[2 * k + 1], v = gr[k]
                                        go[2 * k] += ((ne - nw) * (1 - no) + (se - sw) * no) * v
                                        go[2 * k + 1] += ((sw - nw) * (1 - we) + (se - ne) * we) * v
                                    }
                                }
                                for k in 0..<cnt {
                                    go[2 * k] *= taps.un.scale
                                    go[2 * k + 1] *= taps.vn.scale
                                }
                            }
                        }
                    }
                }
                gg = t
            }
            return [gx, gg]
        }
    }

    /// F.interpolate for [N, C, H, W]: `size` [Ho, Wo] or `scaleFactor` (one value or [sh, sw];
    /// output size floor(in * scale)); nearest or bilinear (alignCorners applies to bilinear only,
    /// as in PyTorch; antialias off).
    ///
    /// nearest is PyTorch's legacy 'nearest': src = min(floor(dst * s), in - 1) with s = 1 / scale
    /// when `scaleFactor` is given, else in / out. bilinear without alignCorners uses half-pixel
    /// centres, src = max(s * (dst + 0.5) - 0.5, 0); with alignCorners, src = dst * (in - 1) / (out - 1).
    /// Differentiable w.r.t. x. Parallel over output rows (forward) and (batch, channel) planes (backward).
    public static func interpolate(_ x: Tensor, size: [Int]? = nil, scaleFactor: [Float]? = nil,
                                   mode: InterpolationMode = .nearest, alignCorners: Bool = false) -> Tensor {
        precondition(x.rank == 4, "interpolate: input must be [N, C, H, W], got \(x.shape)")
        precondition((size == nil) != (scaleFactor == nil), "interpolate: give exactly one of size and scaleFactor")
        let nc = x.shape[0] * x.shape[1], h = x.shape[2], w = x.shape[3]
        var scales: [Double]? = nil
        let ho: Int, wo: Int
        if let s = size {
            precondition(s.count == 2 && s[0] > 0 && s[1] > 0, "interpolate: size must be [Ho, Wo] (positive), got \(s)")
            ho = s[0]; wo = s[1]
        } else {
            let sf = scaleFactor ?? []
            precondition(sf.count == 1 || sf.count == 2, "interpolate: give size or scaleFactor (1 or 2 values)")
            let sh = Double(sf[0]), sw = Double(sf.count == 2 ? sf[1] : sf[0])
            precondition(sh > 0 && sw > 0, "interpolate: scaleFactor must be positive")
            scales = [sh, sw]
            ho = Int((Double(h) * sh).rounded(.down)); wo = Int((Double(w) * sw).rounded(.down))
            precondition(ho > 0 && wo > 0, "interpolate: output size [\(ho), \(wo)] is empty")
        }
        let out = Tensor(uninitialized: Array(x.shape[..<2]) + [ho, wo])
        let plane = h * w, oplane = ho * wo
        let px = SendablePointer(x.data), po = SendablePointer(out.data)

        if mode == .nearest {
            let hs = nearestIndices(inSize: h, outSize: ho, scale: scales?[0])
            let ws = nearestIndices(inSize: w, outSize: wo, scale: scales?[1])
            let hsp = NearestIndexTable(hs), wsp = NearestIndexTable(ws)
            Parallel.chunks(nc * ho, costPerItem: wo + 1) { r in
                for row in r {
                    let p = row / ho, i = row % ho
                    let src = px + p * plane + hsp[i] * w, o = po + row * wo
                    for j in 0..<wo { o[j] = src[wsp[j]] }
                }
            }
            return out.recording("interpolateNearest", [x]) { g in
                let gx = Tensor.zeros(x.shape)
                let pg = SendablePointer(g.data), pgx = SendablePointer(gx.data)
                Parallel.chunks(nc, costPerItem: oplane + 1) { r in
                    for p in r {
                        let gp = pg + p * oplane, dst = pgx + p * plane
                        for i in 0..<ho {
                            let d = dst + hsp[i] * w, s = gp + i * wo
                            for j in 0..<wo { d[wsp[j]] += s[j] }
                        }
                    }
                }
                return [gx]
            }
        }

        let lh = linearIndices(inSize: h, outSize: ho, scale: scales?[0], alignCorners: alignCorners)
        let lw = linearIndices(inSize: w, outSize: wo, scale: scales?[1], alignCorners: alignCorners)
        Parallel.chunks(nc * ho, costPerItem: wo * 8 + 1) { r in
            for row in r {
                let p = row / ho, i = row % ho
                let base = px + p * plane
                let r0 = base + lh.i0[i] * w, r1 = base + lh.i1[i] * w
                let a0 = lh.l0[i], a1 = lh.l1[i]
                let o = po + row * wo
                for j in 0..<wo {
                    let j0 = lw.i0[j], j1 = lw.i1[j], b0 = lw.l0[j], b1 = lw.l1[j]
                    o[j] = (r0[j0] * b0 + r0[j1] * b1) * a0 + (r1[j0] * b0 + r1[j1] * b1) * a1
                }
            }
        }
        return out.recording("interpolateBilinear", [x]) { g in
            let gx = Tensor.zeros(x.shape)
            let pg = SendablePointer(g.data), pgx = SendablePointer(gx.data)
            Parallel.chunks(nc, costPerItem: oplane * 8 + 1) { r in
                for p in r {
                    let gp = pg + p * oplane, dst = pgx + p * plane
                    for i in 0..<ho {
                        let d0 = dst + lh.i0[i] * w, d1 = dst + lh.i1[i] * w
                        let a0 = lh.l0[i], a1 = lh.l1[i]
                        let s = gp + i * wo
                        for j in 0..<wo {
                            let j0 = lw.i0[j], j1 = lw.i1[j], b0 = lw.l0[j], b1 = lw.l1[j]
                            let v = s[j]
                            d0[j0] += v * a0 * b0
                            d0[j1] += v * a0 * b1
                            d1[j0] += v * a1 * b0
                            d1[j1] += v * a1 * b1
                        }
                    }
                }
            }
            return [gx]
        }
    }
}

/// Source indices readable from parallel loop bodies (raw storage, freed with the object).
private final class NearestIndexTable: @unchecked Sendable {
    let p: UnsafeMutablePointer<Int>
    init(_ a: [Int]) {
        p = .allocate(capacity: Swift.max(a.count, 1))
        for (i, v) in a.enumerated() { p[i] = v }
    }
    deinit { p.deallocate() }
    @inline(__always) subscript(i: Int) -> Int { p[i] }
}

/// PyTorch's `compute_scales_value`: 1 / scale when a positive scale was given, else in / out (Float).
@inline(__always) private func scalesValue(_ scale: Double?, _ inSize: Int, _ outSize: Int) -> Float {
    if let s = scale, s > 0 { return Float(1.0 / s) }
    return Float(inSize) / Float(outSize)
}

/// PyTorch's `nearest_idx` for every output index.
private func nearestIndices(inSize: Int, outSize: Int, scale: Double?) -> [Int] {
    if outSize == inSize { return Array(0..<outSize) }
    if outSize == 2 * inSize { return (0..<outSize).map { $0 >> 1 } }
    let s = scalesValue(scale, inSize, outSize)
    return (0..<outSize).map { Swift.min(Int((Float($0) * s).rounded(.down)), inSize - 1) }
}

/// Source indices and weights of linear interpolation along one axis (PyTorch's
/// `compute_source_index_and_lambda`), as unsafe-free immutable storage for parallel loops.
private final class LinearIndices: @unchecked Sendable {
    let i0: UnsafeMutablePointer<Int>, i1: UnsafeMutablePointer<Int>
    let l0: UnsafeMutablePointer<Float>, l1: UnsafeMutablePointer<Float>
    init(count: Int) {
        i0 = .allocate(capacity: Swift.max(count, 1)); i1 = .allocate(capacity: Swift.max(count, 1))
        l0 = .allocate(capacity: Swift.max(count, 1)); l1 = .allocate(capacity: Swift.max(count, 1))
    }
    deinit { i0.deallocate(); i1.deallocate(); l0.deallocate(); l1.deallocate() }
}

private func linearIndices(inSize: Int, outSize: Int, scale: Double?, alignCorners: Bool) -> LinearIndices {
    let r = LinearIndices(count: outSize)
    let ratio: Float = alignCorners
        ? (outSize > 1 ? Float(inSize - 1) / Float(outSize - 1) : 0)
        : scalesValue(scale, inSize, outSize)
    for o in 0..<outSize {
        if outSize == inSize {
            r.i0[o] = o; r.i1[o] = o; r.l0[o] = 1; r.l1[o] = 0
            continue
        }
        var src: Float = alignCorners ? ratio * Float(o) : ratio * (Float(o) + 0.5) - 0.5
        if src < 0 { src = 0 }
        let i0 = Swift.min(Int(src.rounded(.down)), inSize - 1)
        let l1 = Swift.min(Swift.max(src - Float(i0), 0), 1)
        r.i0[o] = i0
        r.i1[o] = i0 + (i0 < inSize - 1 ? 1 : 0)
        r.l1[o] = l1
        r.l0[o] = 1 - l1
    }
    return r
}
