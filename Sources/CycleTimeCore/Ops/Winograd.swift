import Foundation

// Winograd F(2x2, 3x3) for 2-D convolutions with 3x3 kernels, stride 1, dilation 1, groups 1 and
// zero padding (owner: convolution family). Used by the forward and by the stride-1 input
// gradient (a forward convolution of dY with the flipped weight).
//
// U[16][Cout][Cin] = G g G^T (once per call), V[16][Cin][tiles] = B^T d B per 4x4 input tile,
// M[k] = U[k] x V[k] (16 sgemms), Y tile (2x2) = A^T m A (+ bias). Tiles are processed in blocks
// of ConvTuning.winogradTileBlock tiles so V and M of a block stay in cache. With the batch-parallel
// scheme each worker takes whole images (single-threaded sgemm), otherwise each block uses the
// multi-threaded sgemm and parallel transforms.

/// Whether the convolution can use the Winograd path.
func winogradApplies(_ g: ConvGeometry) -> Bool {
    ConvTuning.winograd && g.groups == 1 && g.kt == 1 && g.t == 1 && g.to == 1 && g.kh == 3 && g.kw == 3
        && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.st == 1 && g.pt == 0
        && g.ph <= 2 && g.pw <= 2 && g.cin >= 4 && g.cout >= 4
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

/// V[k][c][j] (ld = ldv) for tiles t0 + j, j < nt, channels in `channels`, of one image x [Cin, H, W].
@inline(__always)
private func winogradInputTransform(_ x: UnsafePointer<Float>, _ g: ConvGeometry, tilesW: Int, t0: Int, nt: Int,
                                    channels: Range<Int>, _ v: UnsafeMutablePointer<Float>, ldv: Int) {
    let H = g.h, W = g.w, ph = g.ph, pw = g.pw
    let ks = g.cin * ldv
    for c in channels {
        let plane = x + c * H * W
        let vc = v + c * ldv
        for j in 0..<nt {
            let t = t0 + j
            let ty = t / tilesW, tx = t % tilesW
            let y0 = 2 * ty - ph, x0 = 2 * tx - pw
            var d0 = SIMD4<Float>(repeating: 0), d1 = d0, d2 = d0, d3 = d0
            if y0 >= 0 && y0 + 4 <= H && x0 >= 0 && x0 + 4 <= W {
                let raw = UnsafeRawPointer(plane + y0 * W + x0)
                let rs = W * 4
                d0 = raw.loadUnaligned(as: SIMD4<Float>.self)
                d1 = raw.loadUnaligned(fromByteOffset: rs, as: SIMD4<Float>.self)
                d2 = raw.loadUnaligned(fromByteOffset: 2 * rs, as: SIMD4<Float>.self)
                d3 = raw.loadUnaligned(fromByteOffset: 3 * rs, as: SIMD4<Float>.self)
            } else {
                @inline(__always) func load(_ yy: Int) -> SIMD4<Float> {
                    var r = SIMD4<Float>(repeating: 0)
                    if yy < 0 || yy >= H { return r }
                    let row = plane + yy * W
                    for i in 0..<4 { let xx = x0 + i; if xx >= 0 && xx < W { r[i] = row[xx] } }
                    return r
                }
                d0 = load(y0); d1 = load(y0 + 1); d2 = load(y0 + 2); d3 = load(y0 + 3)
            }
            // B^T d (rows).
            let r0 = d0 - d2, r1 = d1 + d2, r2 = d2 - d1, r3 = d1 - d3
            // (.) B per row: (a, b, c, e) -> (a - c, b + c, c - b, b - e).
            let dst = vc + j
            @inline(__always) func put(_ i: Int, _ r: SIMD4<Float>) {
                let p = dst + 4 * i * ks
                p[0] = r[0] - r[2]
                p[ks] = r[1] + r[2]
                p[2 * ks] = r[2] - r[1]
                p[3 * ks] = r[1] - r[3]
            }
            put(0, r0); put(1, r1); put(2, r2); put(3, r3)
        }
    }
}

/// out[co] tiles t0 ..< t0 + nt from M[k][co][j] (ld = ldm), plus bias, for one image out [Cout, Ho, Wo].
@inline(__always)
private func winogradOutputTransform(_ m: UnsafePointer<Float>, ldm: Int, _ g: ConvGeometry, tilesW: Int, t0: Int, nt: Int,
                                     channels: Range<Int>, _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>) {
    let Ho = g.ho, Wo = g.wo
    let ks = g.cout * ldm
    for co in channels {
        let plane = out + co * Ho * Wo
        let bv: Float = bias?[co] ?? 0
        let mc = m + co * ldm
        for j in 0..<nt {
            let t = t0 + j
            let ty = t / tilesW, tx = t % tilesW
            let src = mc + j
            @inline(__always) func row(_ i: Int) -> SIMD4<Float> {
                let p = src + 4 * i * ks
                return SIMD4(p[0], p[ks], p[2 * ks], p[3 * ks])
            }
            let m0 = row(0), m1 = row(1), m2 = row(2), m3 = row(3)
            // A^T m (rows), then (.) A per row: (a, b, c, e) -> (a + b + c, b - c - e).
            let s0 = m0 + m1 + m2, s1 = m1 - m2 - m3
            let y00 = s0[0] + s0[1] + s0[2] + bv, y01 = s0[1] - s0[2] - s0[3] + bv
            let y10 = s1[0] + s1[1] + s1[2] + bv, y11 = s1[1] - s1[2] - s1[3] + bv
            let oy = 2 * ty, ox = 2 * tx
            let p = plane + oy * Wo + ox
            if oy + 1 < Ho && ox + 1 < Wo {
                p[0] = y00; p[1] = y01; p[Wo] = y10; p[Wo + 1] = y11
            } else {
                p[0] = y00
                if ox + 1 < Wo { p[1] = y01 }
                if oy + 1 < Ho {
                    p[Wo] = y10
                    if ox + 1 < Wo { p[Wo + 1] = y11 }
                }
            }
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
    let tilesW = (g.wo + 1) / 2, tilesH = (g.ho + 1) / 2, tiles = tilesW * tilesH
    let block = max(1, min(tiles, ConvTuning.winogradTileBlock))
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
        let saved = BLAS.threads
        BLAS.threads = 1
        defer { BLAS.threads = saved }
        DispatchQueue.concurrentPerform(iterations: T) { wk in
            let v = bp.p + wk * (bufV + bufM), m = v + bufV
            for n in (g.n * wk / T)..<(g.n * (wk + 1) / T) {
                var t0 = 0
                while t0 < tiles {
                    let nt = min(block, tiles - t0)
                    winogradInputTransform(xs.p + n * inPlane, g, tilesW: tilesW, t0: t0, nt: nt,
                                           channels: 0..<cin, v, ldv: block)
                    winogradGemms(us.p, v, m, cout: cout, cin: cin, nt: nt, ld: block)
                    winogradOutputTransform(m, ldm: block, g, tilesW: tilesW, t0: t0, nt: nt, channels: 0..<cout,
                                            bs.map { UnsafePointer($0.p) }, ys.p + n * outPlane)
                    t0 += nt
                }
            }
        }
    } else {
        let bufs = Tensor(uninitialized: [bufV + bufM])
        let v = SendablePointer(bufs.data), m = SendablePointer(bufs.data + bufV)
        for n in 0..<g.n {
            var t0 = 0
            while t0 < tiles {
                let nt = min(block, tiles - t0)
                Parallel.chunks(cin, costPerItem: nt * 32) { r in
                    winogradInputTransform(xs.p + n * inPlane, g, tilesW: tilesW, t0: t0, nt: nt, channels: r, v.p, ldv: block)
                }
                winogradGemms(us.p, v.p, m.p, cout: cout, cin: cin, nt: nt, ld: block)
                Parallel.chunks(cout, costPerItem: nt * 32) { r in
                    winogradOutputTransform(m.p, ldm: block, g, tilesW: tilesW, t0: t0, nt: nt, channels: r,
                                            bs.map { UnsafePointer($0.p) }, ys.p + n * outPlane)
                }
                t0 += nt
            }
        }
    }
}
