import Foundation

// Spatial sampling with exactly PyTorch's semantics (owner: sampling family).

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
        let un = Unnormalize(size: w, alignCorners: alignCorners), vn = Unnormalize(size: h, alignCorners: alignCorners)
        let out = Tensor(uninitialized: [n, c, ho, wo])
        let px = SendablePointer(x.data), pg = SendablePointer(grid.data), po = SendablePointer(out.data)
        let plane = h * w, oplane = ho * wo
        let bilinear = mode == .bilinear
        Parallel.chunks(n * ho, costPerItem: wo * c * 8 + 1) { r in
            for row in r {
                let b = row / ho, i = row % ho
                let xb = px + b * c * plane
                let ob = po + b * c * oplane + i * wo
                let gr = pg + row * wo * 2
                for j in 0..<wo {
                    let ix = un(gr[2 * j], size: w), iy = vn(gr[2 * j + 1], size: h)
                    if bilinear {
                        let fx = ix.rounded(.down), fy = iy.rounded(.down)
                        let x0 = Int(fx), y0 = Int(fy), x1 = x0 + 1, y1 = y0 + 1
                        let we = ix - fx, ea = 1 - we, no = iy - fy, so = 1 - no
                        let vx0 = x0 >= 0 && x0 < w, vx1 = x1 >= 0 && x1 < w
                        let vy0 = y0 >= 0 && y0 < h, vy1 = y1 >= 0 && y1 < h
                        let wnw: Float = vy0 && vx0 ? so * ea : 0, wne: Float = vy0 && vx1 ? so * we : 0
                        let wsw: Float = vy1 && vx0 ? no * ea : 0, wse: Float = vy1 && vx1 ? no * we : 0
                        // Clamped offsets (weights are zero where a corner is out of range).
                        let cx0 = Swift.min(Swift.max(x0, 0), w - 1), cx1 = Swift.min(Swift.max(x1, 0), w - 1)
                        let cy0 = Swift.min(Swift.max(y0, 0), h - 1), cy1 = Swift.min(Swift.max(y1, 0), h - 1)
                        let onw = cy0 * w + cx0, one = cy0 * w + cx1, osw = cy1 * w + cx0, ose = cy1 * w + cx1
                        for ch in 0..<c {
                            let p = xb + ch * plane
                            ob[ch * oplane + j] = p[onw] * wnw + p[one] * wne + p[osw] * wsw + p[ose] * wse
                        }
                    } else {
                        let xn = Int(ix.rounded(.toNearestOrEven)), yn = Int(iy.rounded(.toNearestOrEven))
                        if xn >= 0 && xn < w && yn >= 0 && yn < h {
                            let off = yn * w + xn
                            for ch in 0..<c { ob[ch * oplane + j] = xb[ch * plane + off] }
                        } else {
                            for ch in 0..<c { ob[ch * oplane + j] = 0 }
                        }
                    }
                }
            }
        }
        let needX = x.requiresGrad, needG = grid.requiresGrad
        return out.recording("gridSample", [x, grid]) { g in
            let pgo = SendablePointer(g.data)
            var gx: Tensor? = nil, gg: Tensor? = nil
            if needX {
                let t = Tensor.zeros([n, c, h, w])
                let pgx = SendablePointer(t.data)
                // Work items: (batch, channel block). Few batches: one channel per item (weights
                // recomputed per channel); many batches: all channels per item.
                let blocks = n >= 2 * Parallel.threadCount ? 1 : c
                Parallel.chunks(n * blocks, costPerItem: oplane * (c / blocks) * 8 + 1) { r in
                    for item in r {
                        let b = item / blocks, blk = item % blocks
                        let c0 = blocks == 1 ? 0 : blk, c1 = blocks == 1 ? c : blk + 1
                        let gxb = pgx + b * c * plane, gob = pgo + b * c * oplane
                        let gr = pg + b * oplane * 2
                        for k in 0..<oplane {
                            let ix = un(gr[2 * k], size: w), iy = vn(gr[2 * k + 1], size: h)
                            if bilinear {
                                let fx = ix.rounded(.down), fy = iy.rounded(.down)
                                let x0 = Int(fx), y0 = Int(fy), x1 = x0 + 1, y1 = y0 + 1
                                let we = ix - fx, ea = 1 - we, no = iy - fy, so = 1 - no
                                let vx0 = x0 >= 0 && x0 < w, vx1 = x1 >= 0 && x1 < w
                                let vy0 = y0 >= 0 && y0 < h, vy1 = y1 >= 0 && y1 < h
                                for ch in c0..<c1 {
                                    let gv = gob[ch * oplane + k]
                                    let p = gxb + ch * plane
                                    if vy0 && vx0 { p[y0 * w + x0] += so * ea * gv }
                                    if vy0 && vx1 { p[y0 * w + x1] += so * we * gv }
                                    if vy1 && vx0 { p[y1 * w + x0] += no * ea * gv }
                                    if vy1 && vx1 { p[y1 * w + x1] += no * we * gv }
                                }
                            } else {
                                let xn = Int(ix.rounded(.toNearestOrEven)), yn = Int(iy.rounded(.toNearestOrEven))
                                if xn >= 0 && xn < w && yn >= 0 && yn < h {
                                    let off = yn * w + xn
                                    for ch in c0..<c1 { gxb[ch * plane + off] += gob[ch * oplane + k] }
                                }
                            }
                        }
                    }
                }
                gx = t
            }
            if needG {
                let t = Tensor.zeros([n, ho, wo, 2])
                if bilinear {
                    let pgg = SendablePointer(t.data)
                    Parallel.chunks(n * ho, costPerItem: wo * c * 10 + 1) { r in
                        for row in r {
                            let b = row / ho, i = row % ho
                            let xb = px + b * c * plane
                            let gob = pgo + b * c * oplane + i * wo
                            let gr = pg + row * wo * 2, go = pgg + row * wo * 2
                            for j in 0..<wo {
                                let ix = un(gr[2 * j], size: w), iy = vn(gr[2 * j + 1], size: h)
                                let fx = ix.rounded(.down), fy = iy.rounded(.down)
                                let x0 = Int(fx), y0 = Int(fy), x1 = x0 + 1, y1 = y0 + 1
                                let we = ix - fx, ea = 1 - we, no = iy - fy, so = 1 - no
                                let vx0 = x0 >= 0 && x0 < w, vx1 = x1 >= 0 && x1 < w
                                let vy0 = y0 >= 0 && y0 < h, vy1 = y1 >= 0 && y1 < h
                                let mnw: Float = vy0 && vx0 ? 1 : 0, mne: Float = vy0 && vx1 ? 1 : 0
                                let msw: Float = vy1 && vx0 ? 1 : 0, mse: Float = vy1 && vx1 ? 1 : 0
                                let cx0 = Swift.min(Swift.max(x0, 0), w - 1), cx1 = Swift.min(Swift.max(x1, 0), w - 1)
                                let cy0 = Swift.min(Swift.max(y0, 0), h - 1), cy1 = Swift.min(Swift.max(y1, 0), h - 1)
                                let onw = cy0 * w + cx0, one = cy0 * w + cx1, osw = cy1 * w + cx0, ose = cy1 * w + cx1
                                var sx: Float = 0, sy: Float = 0
                                for ch in 0..<c {
                                    let p = xb + ch * plane
                                    let gv = gob[ch * oplane + j]
                                    let nw = p[onw] * mnw, ne = p[one] * mne, sw = p[osw] * msw, se = p[ose] * mse
                                    sx += ((ne - nw) * so + (se - sw) * no) * gv
                                    sy += ((sw - nw) * ea + (se - ne) * we) * gv
                                }
                                go[2 * j] = sx * un.scale
                                go[2 * j + 1] = sy * vn.scale
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
            let sf = scaleFactor!
            precondition(sf.count == 1 || sf.count == 2, "interpolate: scaleFactor must have 1 or 2 values")
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
            let hsp = SendableIntArray(hs), wsp = SendableIntArray(ws)
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
                let hsp = SendableIntArray(hs), wsp = SendableIntArray(ws)
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

/// An immutable Int array readable from parallel loop bodies.
private struct SendableIntArray: @unchecked Sendable {
    let a: [Int]
    init(_ a: [Int]) { self.a = a }
    @inline(__always) subscript(i: Int) -> Int { a.withUnsafeBufferPointer { $0[i] } }
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
