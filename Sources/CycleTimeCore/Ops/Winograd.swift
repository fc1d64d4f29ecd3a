import Foundation

// Winograd F(2x2, 3x3) for 2-D convolutions with 3x3 kernels, stride 1, dilation 1, groups 1 and
// zero padding. Used by the forward and by the stride-1 input
// gradient (a forward convolution of dY with the flipped weight).
//
// U[16][Cout][Cin] = G g G^T (once per call), V[16][Cin][tiles] = B^T d B per 4x4 input tile,
// M[k] = U[k] x V[k] (16 sgemms), Y tile (2x2) = A^T m A (+ bias). Tiles are processed in blocks
// of ConvolutionPolicy.winogradTileBlock tiles so V and M of a block stay in cache. With the
// batch-parallel scheme each worker takes whole images (single-threaded sgemm), otherwise each
// block uses the multi-threaded sgemm and parallel transforms.

/// Whether the convolution can use the Winograd path.
func winogradApplies(_ g: ConvGeometry) -> Bool {
    ConvolutionPolicy.current.winograd && g.groups == 1 && g.kt == 1 && g.t == 1 && g.to == 1 && g.kh == 3 && g.kw == 3
        && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.st == 1 && g.pt == 0
        && g.ph <= 2 && g.pw <= 2
}

/// U[k][co][ci] = (G g G^T)[k] for w [Cout, Cin, 3, 3].
private func winogradWeights(_ w: UnsafePointer<Float>, cout: Int, cin: Int) -> Tensor {
    let u = Tensor(uninitialized: [16 * cout * cin])
    let ws = SendablePointer(UnsafeMutablePointer(mutating: w)), us = SendablePointer(u.data)
    let stride = cout * cin
    Parallel.chunks(cout * cin, costPerItem: 40) { r in
        for item in r {
            let s = ws.p + item * 9
            // Gg (4x3): rows g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2.
            var t = (Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0))
            for j in 0..<3 {
                let a = s[j], b = s[3 + j], c = s[6 + j]
                let r0 = a, r1 = 0.5 * (a + b + c), r2 = 0.5 * (a - b + c), r3 = c
                switch j {
                case 0: t.0 = r0; t.3 = r1; t.6 = r2; t.9 = r3
                case 1: t.1 = r0; t.4 = r1; t.7 = r2; t.10 = r3
                default: t.2 = r0; t.5 = r1; t.8 = r2; t.11 = r3
                }
            }
            @inline(__always) func row(_ i: Int, _ a: Float, _ b: Float, _ c: Float) {
                let d = us.p + item + 4 * i * stride
                d[0] = a
                d[stride] = 0.5 * (a + b + c)
                d[2 * stride] = 0.5 * (a - b + c)
                d[3 * stride] = c
            }
            row(0, t.0, t.1, t.2)
            row(1, t.3, t.4, t.5)
            row(2, t.6, t.7, t.8)
            row(3, t.9, t.10, t.11)
        }
    }
    return u
}

/// V[k][c][j] (ld = ldv) for the tiles of tile rows ty0 ..< ty1 (j = (ty - ty0) * tilesW + tx), channels
/// in `channels`, of one image x [Cin, H, W]. Vectorizes over the tiles of a row (contiguous stores).
@inline(__always)
private func winogradInputTransform(_ x: UnsafePointer<Float>, _ g: ConvGeometry, tilesW: Int, ty0: Int, ty1: Int,
                                    channels: Range<Int>, _ v: UnsafeMutablePointer<Float>, ldv: Int) {
    let H = g.h, W = g.w, ph = g.ph, pw = g.pw
    let ks = g.cin * ldv
    let Wp = 2 * tilesW + 2
    // Input columns -pw ..< Wp - pw land in buf[0 ..< Wp].
    let copyHi = min(W, Wp - pw)
    let buf = UnsafeMutablePointer<Float>.allocate(capacity: 8 * Wp)
    defer { buf.deallocate() }
    let rr = buf + 4 * Wp
    for c in channels {
        let plane = x + c * H * W
        for ty in ty0..<ty1 {
            for q in 0..<4 {
                let d = buf + q * Wp
                let yy = 2 * ty - ph + q
                if yy < 0 || yy >= H || copyHi <= 0 {
                    d.update(repeating: 0, count: Wp)
                } else {
                    if pw > 0 { d.update(repeating: 0, count: pw) }
                    (d + pw).update(from: plane + yy * W, count: copyHi)
                    let end = pw + copyHi
                    if end < Wp { (d + end).update(repeating: 0, count: Wp - end) }
                }
            }
            // B^T d over whole rows.
            let b0 = buf, b1 = buf + Wp, b2 = buf + 2 * Wp, b3 = buf + 3 * Wp
            let r0 = rr, r1 = rr + Wp, r2 = rr + 2 * Wp, r3 = rr + 3 * Wp
            for i in 0..<Wp {
                let x0 = b0[i], x1 = b1[i], x2 = b2[i], x3 = b3[i]
                r0[i] = x0 - x2; r1[i] = x1 + x2; r2[i] = x2 - x1; r3[i] = x1 - x3
            }
            // (.) B per tile: (a, b, c, e) -> (a - c, b + c, c - b, b - e).
            let jrow = (ty - ty0) * tilesW
            for i in 0..<4 {
                let r = rr + i * Wp
                let o0 = v + 4 * i * ks + c * ldv + jrow, o1 = o0 + ks, o2 = o1 + ks, o3 = o2 + ks
                for tx in 0..<tilesW {
                    let a = r[2 * tx], b = r[2 * tx + 1], cc = r[2 * tx + 2], e = r[2 * tx + 3]
                    o0[tx] = a - cc; o1[tx] = b + cc; o2[tx] = cc - b; o3[tx] = b - e
                }
            }
        }
    }
}

/// out[co] tile rows ty0 ..< ty1 from M[k][co][j] (ld = ldm), plus bias, for one image out [Cout, Ho, Wo].
@inline(__always)
private func winogradOutputTransform(_ m: UnsafePointer<Float>, ldm: Int, _ g: ConvGeometry, tilesW: Int, ty0: Int, ty1: Int,
                                     channels: Range<Int>, _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>) {
    let Ho = g.ho, Wo = g.wo
    let ks = g.cout * ldm
    let row0 = UnsafeMutablePointer<Float>.allocate(capacity: 4 * tilesW)
    defer { row0.deallocate() }
    let row1 = row0 + 2 * tilesW
    for co in channels {
        let plane = out + co * Ho * Wo
        let bv: Float = bias?[co] ?? 0
        for ty in ty0..<ty1 {
            let src = m + co * ldm + (ty - ty0) * tilesW
            let p0 = src, p1 = p0 + ks, p2 = p1 + ks, p3 = p2 + ks, p4 = p3 + ks, p5 = p4 + ks, p6 = p5 + ks, p7 = p6 + ks
            let p8 = p7 + ks, p9 = p8 + ks, p10 = p9 + ks, p11 = p10 + ks, p12 = p11 + ks, p13 = p12 + ks, p14 = p13 + ks
            let p15 = p14 + ks
            for tx in 0..<tilesW {
                // A^T m: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3 (rows of 4).
                let a0 = p0[tx] + p4[tx] + p8[tx], a1 = p1[tx] + p5[tx] + p9[tx]
                let a2 = p2[tx] + p6[tx] + p10[tx], a3 = p3[tx] + p7[tx] + p11[tx]
                let c0 = p4[tx] - p8[tx] - p12[tx], c1 = p5[tx] - p9[tx] - p13[tx]
                let c2 = p6[tx] - p10[tx] - p14[tx], c3 = p7[tx] - p11[tx] - p15[tx]
                // (.) A: (a, b, c, e) -> (a + b + c, b - c - e).
                row0[2 * tx] = a0 + a1 + a2 + bv; row0[2 * tx + 1] = a1 - a2 - a3 + bv
                row1[2 * tx] = c0 + c1 + c2 + bv; row1[2 * tx + 1] = c1 - c2 - c3 + bv
            }
            let oy = 2 * ty
            (plane + oy * Wo).update(from: row0, count: Wo)
            if oy + 1 < Ho { (plane + (oy + 1) * Wo).update(from: row1, count: Wo) }
        }
    }
}

/// M[k] = U[k] x V[k] for the 16 tile positions.
@inline(__always)
private func winogradGemms(_ u: UnsafePointer<Float>, _ v: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
                           cout: Int, cin: Int, nt: Int, ld: Int) {
    for k in 0..<16 {
        BLAS.sgemm(transA: false, transB: false, m: cout, n: nt, k: cin,
                   a: u + k * cout * cin, lda: cin, b: v + k * cin * ld, ldb: ld,
                   c: m + k * cout * ld, ldc: ld)
    }
}

/// Raw forward through Winograd: out[N, Cout, Ho, Wo] = conv(x, w) + bias. Requires winogradApplies(g).
func winogradForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                     _ g: ConvGeometry, _ out: UnsafeMutablePointer<Float>) {
    let cin = g.cin, cout = g.cout
    let tilesW = (g.wo + 1) / 2, tilesH = (g.ho + 1) / 2
    // Blocks of whole tile rows.
    let rowsPerBlock = max(1, min(tilesH, ConvolutionPolicy.current.winogradTileBlock / tilesW))
    let block = rowsPerBlock * tilesW
    let u = winogradWeights(w, cout: cout, cin: cin)
    let inPlane = cin * g.h * g.w, outPlane = cout * g.ho * g.wo
    let T = min(Parallel.threadCount, g.n)
    let bufV = 16 * cin * block, bufM = 16 * cout * block
    let xs = SendablePointer(UnsafeMutablePointer(mutating: x)), ys = SendablePointer(out)
    let bs = bias.map { SendablePointer(UnsafeMutablePointer(mutating: $0)) }
    let us = SendablePointer(u.data)

    if convUsesBatchParallel(g) {
        let bufs = Tensor(uninitialized: [T * (bufV + bufM)])
        let bp = SendablePointer(bufs.data)
        BLAS.withThreads(1) {
            DispatchQueue.concurrentPerform(iterations: T) { wk in
                let v = bp.p + wk * (bufV + bufM), m = v + bufV
                for n in (g.n * wk / T)..<(g.n * (wk + 1) / T) {
                    var ty0 = 0
                    while ty0 < tilesH {
                        let ty1 = min(tilesH, ty0 + rowsPerBlock), nt = (ty1 - ty0) * tilesW
                        winogradInputTransform(xs.p + n * inPlane, g, tilesW: tilesW, ty0: ty0, ty1: ty1,
                                               channels: 0..<cin, v, ldv: block)
                        winogradGemms(us.p, v, m, cout: cout, cin: cin, nt: nt, ld: block)
                        winogradOutputTransform(m, ldm: block, g, tilesW: tilesW, ty0: ty0, ty1: ty1, channels: 0..<cout,
                                                bs.map { UnsafePointer($0.p) }, ys.p + n * outPlane)
                        ty0 = ty1
                    }
                }
            }
        }
    } else {
        let bufs = Tensor(uninitialized: [bufV + bufM])
        let v = SendablePointer(bufs.data), m = SendablePointer(bufs.data + bufV)
        for n in 0..<g.n {
            var ty0 = 0
            while ty0 < tilesH {
                let ty1 = min(tilesH, ty0 + rowsPerBlock), nt = (ty1 - ty0) * tilesW
                Parallel.chunks(cin, costPerItem: nt * 32) { r in
                    winogradInputTransform(xs.p + n * inPlane, g, tilesW: tilesW, ty0: ty0, ty1: ty1, channels: r, v.p, ldv: block)
                }
                winogradGemms(us.p, v.p, m.p, cout: cout, cin: cin, nt: nt, ld: block)
                Parallel.chunks(cout, costPerItem: nt * 32) { r in
                    winogradOutputTransform(m.p, ldm: block, g, tilesW: tilesW, ty0: ty0, ty1: ty1, channels: r,
                                            bs.map { UnsafePointer($0.p) }, ys.p + n * outPlane)
                }
                ty0 = ty1
            }
        }
    }
}
