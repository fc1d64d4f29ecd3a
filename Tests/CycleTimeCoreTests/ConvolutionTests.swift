import Foundation
import XCTest
@testable import CycleTimeCore
import TestSupport

final class ConvolutionTests: XCTestCase {
    struct Case { let name: String; let dims: Int; let stride: [Int]; let padding: [Int]; let dilation: [Int]; let groups: Int; let mode: PadMode }
    static let cases: [Case] = [
        Case(name: "basic", dims: 2, stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1, mode: .zeros),
        Case(name: "stride2", dims: 2, stride: [2, 2], padding: [1, 1], dilation: [1, 1], groups: 1, mode: .zeros),
        Case(name: "dil", dims: 2, stride: [1, 2], padding: [2, 1], dilation: [2, 3], groups: 1, mode: .zeros),
        Case(name: "groups", dims: 2, stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 2, mode: .zeros),
        Case(name: "depthwise", dims: 2, stride: [2, 2], padding: [1, 1], dilation: [1, 1], groups: 6, mode: .zeros),
        Case(name: "reflect", dims: 2, stride: [1, 1], padding: [1, 2], dilation: [1, 1], groups: 1, mode: .reflect),
        Case(name: "pointwise", dims: 2, stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1, mode: .zeros),
        Case(name: "pointwise_s2", dims: 2, stride: [2, 2], padding: [0, 0], dilation: [1, 1], groups: 1, mode: .zeros),
        Case(name: "k7s2", dims: 2, stride: [2, 2], padding: [3, 3], dilation: [1, 1], groups: 1, mode: .zeros),
        Case(name: "c3d", dims: 3, stride: [1, 2, 1], padding: [1, 1, 0], dilation: [1, 1, 1], groups: 1, mode: .zeros),
        Case(name: "c3d_groups_dil", dims: 3, stride: [1, 1, 1], padding: [0, 1, 1], dilation: [2, 1, 1], groups: 2, mode: .zeros),
    ]

    func run(_ c: Case, _ x: Tensor, _ w: Tensor, _ b: Tensor?) -> Tensor {
        c.dims == 2
            ? F.conv2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups, paddingMode: c.mode)
            : F.conv3d(x, weight: w, bias: b, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
    }

    /// Values and gradients against PyTorch, in both the whole-batch and the per-image chunking.
    func testAgainstPyTorch() throws {
        let fx = try Fixtures.load("conv")
        let saved = ConvolutionPolicy.current
        defer { ConvolutionPolicy.current = saved }
        let variants = [(saved.maxColumnBytes, false, true, true), (saved.maxColumnBytes, false, false, true), (1 << 30, true, false, false),
                        (1 << 30, false, true, false), (1, false, false, false)]
        for wino in [true, false] {
        ConvolutionPolicy.current.winograd = wino
        for (bytes, keep, asConv, bp) in variants {
            // The native paths (the 3-D convolutions too, which the default backend runs on oneDNN: OneDNNOpsTests).
            ConvolutionPolicy.current = ConvolutionPolicy.current.with {
                $0.maxColumnBytes = bytes; $0.keepColumns = keep; $0.inputGradientAsConvolution = asConv; $0.batchParallel = bp
                $0.backend = .native
            }
            for c in Self.cases {
                let x = fx.t("\(c.name).x").requiringGrad(), w = fx.t("\(c.name).w").requiringGrad()
                let b = fx["\(c.name).b"]?.requiringGrad()
                x.grad = nil; w.grad = nil; b?.grad = nil
                let y = run(c, x, w, b)
                let msg = "\(c.name) (winograd \(wino), column bytes \(bytes), keep \(keep), dx as conv \(asConv), batch-parallel \(bp))"
                assertClose(y, fx.t("\(c.name).y"), rtol: 1e-4, atol: 1e-5, msg)
                y.backward(fx.t("\(c.name).gy"))
                assertClose(x.grad!, fx.t("\(c.name).dx"), rtol: 1e-4, atol: 1e-5, "dx " + msg)
                assertClose(w.grad!, fx.t("\(c.name).dw"), rtol: 1e-4, atol: 1e-5, "dw " + msg)
                if let b { assertClose(b.grad!, fx.t("\(c.name).db"), rtol: 1e-4, atol: 1e-5, "db " + msg) }
            }
        }
        }
    }

    /// Winograd F(2x2, 3x3) and im2col each against a float64 direct convolution (values, dX and dW)
    /// on random shapes: odd and even sizes, padding 0/1/2, batch 1 and 8, both parallel schemes,
    /// several tile blocks. The two float32 paths round differently, so neither is the other's
    /// reference; each must stay within the rounding bound that its arithmetic allows (see
    /// `convolutionErrorBounds`), whichever BLAS kernel the machine picks.
    func testWinogradAndIm2colStayWithinTheirRoundingBoundOfAFloat64Reference() {
        let saved = ConvolutionPolicy.current
        defer { ConvolutionPolicy.current = saved }
        // (n, cin, cout, h, w, padding [h, w], bias)
        let shapes: [(Int, Int, Int, Int, Int, [Int], Bool)] = [
            (1, 4, 5, 7, 9, [1, 1], true), (8, 6, 4, 8, 8, [1, 1], false), (2, 16, 8, 5, 6, [0, 0], true),
            (8, 5, 7, 9, 7, [2, 2], true), (1, 32, 16, 11, 10, [2, 0], false), (3, 8, 12, 3, 3, [1, 2], true),
            (8, 24, 32, 13, 12, [1, 1], true), (1, 7, 9, 4, 5, [0, 1], false),
            (2, 32, 32, 1, 1, [1, 1], true), (2, 32, 32, 2, 3, [1, 1], true), (2, 16, 16, 4, 5, [1, 1], true), (4, 8, 8, 1, 2, [1, 1], true),
        ]
        for (i, (n, cin, cout, h, w, pad, withBias)) in shapes.enumerated() {
            let x = randn([n, cin, h, w], seed: UInt64(100 + i)), wt = randn([cout, cin, 3, 3], seed: UInt64(200 + i), scale: 0.3)
            let b = withBias ? randn([cout], seed: UInt64(300 + i)) : nil
            let gy = randn([n, cout, h + 2 * pad[0] - 2, w + 2 * pad[1] - 2], seed: UInt64(400 + i), requiresGrad: false)
            let ref = ConvReference(x: x.array, w: wt.array, bias: b?.array, gy: gy.array, n: n, cin: cin, cout: cout, h: h, w: w, pad: pad)
            func run() -> ([Float], [Float], [Float]) {
                x.grad = nil; wt.grad = nil; b?.grad = nil
                let y = F.conv2d(x, weight: wt, bias: b, padding: pad)
                y.backward(gy)
                return (y.array, x.grad!.array, wt.grad!.array)
            }
            var cases: [(Bool, Bool, Int)] = [(false, true, 128), (false, false, 128)]
            cases += [(true, 128), (false, 128), (true, 1), (false, 5)].map { (true, $0.0, $0.1) }
            for (wino, bp, block) in cases {
                ConvolutionPolicy.current = saved.with { $0.winograd = wino; $0.batchParallel = bp; $0.winogradTileBlock = block; $0.backend = .native }
                if wino { XCTAssertTrue(winogradApplies(ConvGeometry.conv2d3x3(n: n, cin: cin, cout: cout, h: h, w: w, pad: pad))) }
                let got = run()
                let msg = "shape \(i) winograd \(wino) batch-parallel \(bp) block \(block)"
                ref.assertWithinBound(got.0, ref.y, ref.yBound, "y " + msg)
                ref.assertWithinBound(got.1, ref.dx, ref.dxBound, "dx " + msg)
                ref.assertWithinBound(got.2, ref.dw, ref.dwBound, "dw " + msg)
            }
        }
    }

    func testGradcheckConv2d() {
        for backend in [ConvolutionBackend.native, .auto] {
        ConvolutionPolicy.withPolicy(.current.with { $0.backend = backend }) {
        gradcheck([randn([2, 4, 5, 6], seed: 1), randn([6, 2, 3, 2], seed: 2, scale: 0.5), randn([6], seed: 3)]) { t in
            F.conv2d(t[0], weight: t[1], bias: t[2], stride: [2, 1], padding: [1, 1], dilation: [1, 2], groups: 2)
        }
        gradcheck([randn([1, 2, 5, 6], seed: 4), randn([3, 2, 3, 3], seed: 5, scale: 0.5)]) { t in
            F.conv2d(t[0], weight: t[1], padding: [2, 1], paddingMode: .reflect)
        }
        gradcheck([randn([2, 3, 3, 4], seed: 6), randn([2, 3, 1, 1], seed: 7, scale: 0.5), randn([2], seed: 8)]) { t in
            F.conv2d(t[0], weight: t[1], bias: t[2])
        }
        }
        }
    }

    func testGradcheckConv3d() {
        for backend in [ConvolutionBackend.native, .auto] {
            ConvolutionPolicy.withPolicy(.current.with { $0.backend = backend }) {
                gradcheck([randn([1, 2, 4, 4, 5], seed: 1), randn([4, 1, 2, 3, 2], seed: 2, scale: 0.5), randn([4], seed: 3)]) { t in
                    F.conv3d(t[0], weight: t[1], bias: t[2], stride: [1, 2, 1], padding: [1, 1, 0], dilation: [1, 1, 2], groups: 2)
                }
            }
        }
    }

    /// The default backend, `auto`, runs convolutions with a kernel larger than 1 on oneDNN (measured
    /// 3.1x, 4.6x and 5.3x faster 2D, SlowOnly and SlowFast iterations) and pointwise ones natively.
    func testAutoBackendSendsConvolutionsWithLargerKernelsToOneDNNAndPointwiseOnesToGEMM() {
        XCTAssertEqual(ConvolutionPolicy().backend, .auto)
        func geometry(_ k: [Int]) -> ConvGeometry {
            var g = ConvGeometry()
            g.kt = k[0]; g.kh = k[1]; g.kw = k[2]
            return g
        }
        XCTAssertTrue(ConvolutionBackend.auto.usesOneDNN(geometry([3, 1, 1]), volumetric: true))
        XCTAssertTrue(ConvolutionBackend.auto.usesOneDNN(geometry([1, 3, 3]), volumetric: true))
        XCTAssertTrue(ConvolutionBackend.auto.usesOneDNN(geometry([1, 3, 3]), volumetric: false))
        XCTAssertTrue(ConvolutionBackend.auto.usesOneDNN(geometry([1, 7, 7]), volumetric: false))
        XCTAssertFalse(ConvolutionBackend.auto.usesOneDNN(geometry([1, 1, 1]), volumetric: true))
        XCTAssertFalse(ConvolutionBackend.auto.usesOneDNN(geometry([1, 1, 1]), volumetric: false))
        XCTAssertFalse(ConvolutionBackend.native.usesOneDNN(geometry([3, 3, 3]), volumetric: true))
        XCTAssertTrue(ConvolutionBackend.oneDNN.usesOneDNN(geometry([1, 1, 1]), volumetric: false))
    }

    func testPolicyDefaultsAreTheMeasuredBestAndWithPolicyRestoresThePreviousPolicy() {
        struct Failure: Error {}
        let p = ConvolutionPolicy()
        XCTAssertEqual([p.maxColumnBytes, p.winogradTileBlock], [64 << 20, 128])
        XCTAssertEqual([p.keepColumns, p.inputGradientAsConvolution, p.batchParallel, p.winograd, p.winogradInputGradient],
                       [false, true, true, true, true])
        XCTAssertEqual(ConvolutionPolicy.current, p, "tests leave the process-wide policy at its defaults")
        let other = p.with { $0.winograd = false; $0.maxColumnBytes = 1 }
        XCTAssertEqual(ConvolutionPolicy.withPolicy(other) { ConvolutionPolicy.current }, other)
        XCTAssertEqual(ConvolutionPolicy.current, p)
        XCTAssertThrowsError(try ConvolutionPolicy.withPolicy(other) { throw Failure() })
        XCTAssertEqual(ConvolutionPolicy.current, p)
        // The policy picks the path: Winograd only when it is on.
        let g = ConvGeometry.conv2d3x3(n: 1, cin: 2, cout: 2, h: 4, w: 4, pad: [1, 1])
        XCTAssertTrue(winogradApplies(g))
        XCTAssertFalse(ConvolutionPolicy.withPolicy(other) { winogradApplies(g) })
    }

    func testUnbatchedInput() {
        let x = randn([3, 5, 5], seed: 1, requiresGrad: false), w = randn([2, 3, 3, 3], seed: 2, requiresGrad: false)
        let y = F.conv2d(x, weight: w, padding: [1, 1])
        let yb = F.conv2d(x.reshaped([1, 3, 5, 5]), weight: w, padding: [1, 1])
        XCTAssertEqual(y.shape, [2, 5, 5])
        XCTAssertEqual(y.array, yb.array)
    }

    /// The batch-parallel path gives bitwise identical gradients from run to run (needed for exact resume).
    func testBackwardIsDeterministic() {
        let saved = ConvolutionPolicy.current
        defer { ConvolutionPolicy.current = saved }
        for wino in [true, false] {
        ConvolutionPolicy.current.winograd = wino
        ConvolutionPolicy.current.backend = .native
        let x = randn([8, 16, 12, 12], seed: 11)
        let w = randn([32, 16, 3, 3], seed: 12)
        let gy = randn([8, 32, 12, 12], seed: 13, requiresGrad: false)
        func grads() -> ([Float], [Float], [Float]) {
            x.grad = nil; w.grad = nil
            let y = F.conv2d(x, weight: w, padding: [1, 1])
            y.backward(gy)
            return (x.grad!.array, w.grad!.array, y.array)
        }
        let first = grads()
        for _ in 0..<5 {
            let again = grads()
            XCTAssertEqual(again.0, first.0)
            XCTAssertEqual(again.1, first.1)
            XCTAssertEqual(again.2, first.2)
        }
        }
    }
}

extension ConvGeometry {
    static func conv2d3x3(n: Int, cin: Int, cout: Int, h: Int, w: Int, pad: [Int]) -> ConvGeometry {
        var g = ConvGeometry()
        g.n = n; g.cin = cin; g.cout = cout; g.h = h; g.w = w; g.kh = 3; g.kw = 3; g.ph = pad[0]; g.pw = pad[1]
        g.computeOutput()
        return g
    }
}

/// A float64 direct 3x3 convolution (stride 1, zero padding) with its input and weight gradients,
/// and for every element a bound on the rounding error of any float32 algorithm that the
/// convolution family may use for it:
///
/// An algorithm made of sums and products, in which every result passes through at most `k`
/// roundings, differs from the exact value by at most gamma_k = k u / (1 - k u) (u = 2^-24) times
/// the same computation done on absolute values (Higham, Accuracy and Stability of Numerical
/// Algorithms, 2nd ed., sections 3.1 and 3.5); the order of the sums (BLAS blocking, threads,
/// batch-parallel partial sums) does not change `k`, which counts terms.
/// - im2col + GEMM: y = sum over 9 cin products, k = 9 cin + 1 (bias). The absolute-value
///   computation is the convolution of |x| with |w| (+ |b|).
/// - Winograd F(2x2, 3x3): input transform B^T d B (1 addition per dimension: 2 roundings), weight
///   transform G g G^T (2 additions per dimension, the halvings are exact: 4), the product (1),
///   the sum over cin in the GEMM (cin), output transform A^T m A (2 additions per dimension: 4),
///   bias (1): k = cin + 12. Done on absolute values, the transforms give each product
///   |d_a||g_b| of the 4x4 input tile and the 3x3 kernel a weight c_a c_b with c = sum_i
///   |A_ij||G_ib||B^T_ia| <= 2 per dimension, so at most 4 (sum over the tile of |d|)(sum of |g|).
///   An output's tile starts at it or one row/column before, so its tile lies in the 5x5 window of
///   padded rows oy-1 ... oy+3.
/// The bound used is the larger of the two (k = 9 cin + 12, scale = 4 window sum x kernel sum,
/// which exceeds |x| conv |w|). dX is the same convolution of dY with the flipped weight (cin and
/// cout swapped); dW sums N Ho Wo products for each weight, k = N Ho Wo.
struct ConvReference {
    let n, cin, cout, h, w, ph, pw, ho, wo: Int
    var y: [Double], dx: [Double], dw: [Double]
    var yBound: [Double], dxBound: [Double], dwBound: [Double]

    static func gamma(_ k: Int) -> Double {
        let ku = Double(k) * 0x1p-24
        return ku / (1 - ku)
    }

    init(x: [Float], w wt: [Float], bias: [Float]?, gy: [Float], n: Int, cin: Int, cout: Int, h: Int, w: Int, pad: [Int]) {
        self.n = n; self.cin = cin; self.cout = cout; self.h = h; self.w = w; ph = pad[0]; pw = pad[1]
        ho = h + 2 * ph - 2; wo = w + 2 * pw - 2
        let (n, h, w, ph, pw, ho, wo) = (n, h, w, ph, pw, ho, wo)
        func xi(_ b: Int, _ c: Int, _ iy: Int, _ ix: Int) -> Double? {
            iy < 0 || iy >= h || ix < 0 || ix >= w ? nil : Double(x[((b * cin + c) * h + iy) * w + ix])
        }
        func gi(_ b: Int, _ c: Int, _ oy: Int, _ ox: Int) -> Double? {
            oy < 0 || oy >= ho || ox < 0 || ox >= wo ? nil : Double(gy[((b * cout + c) * ho + oy) * wo + ox])
        }
        func wi(_ co: Int, _ ci: Int, _ ky: Int, _ kx: Int) -> Double { Double(wt[((co * cin + ci) * 3 + ky) * 3 + kx]) }
        var kernelAbs = [Double](repeating: 0, count: cout * cin)
        for co in 0..<cout { for ci in 0..<cin { for ky in 0..<3 { for kx in 0..<3 { kernelAbs[co * cin + ci] += Swift.abs(wi(co, ci, ky, kx)) } } } }
        y = .init(repeating: 0, count: n * cout * ho * wo); yBound = y
        let gammaY = Self.gamma(9 * cin + 12)
        for b in 0..<n { for co in 0..<cout { for oy in 0..<ho { for ox in 0..<wo {
            var acc = bias.map { Double($0[co]) } ?? 0, scale = bias.map { Swift.abs(Double($0[co])) } ?? 0
            for ci in 0..<cin {
                var window = 0.0
                for dy in -1...3 { for dxo in -1...3 { window += Swift.abs(xi(b, ci, oy + dy - ph, ox + dxo - pw) ?? 0) } }
                scale += 4 * window * kernelAbs[co * cin + ci]
                for ky in 0..<3 { for kx in 0..<3 { acc += (xi(b, ci, oy + ky - ph, ox + kx - pw) ?? 0) * wi(co, ci, ky, kx) } }
            }
            let o = ((b * cout + co) * ho + oy) * wo + ox
            y[o] = acc; yBound[o] = gammaY * scale
        } } } }
        // dX[b, ci, iy, ix] = sum over oy = iy + ph - ky, ox = ix + pw - kx of dY * w; as a forward
        // convolution of dY padded by 2 - p with the flipped weight, its tile window is dY rows
        // iy + ph - 3 ... iy + ph + 1.
        dx = .init(repeating: 0, count: n * cin * h * w); dxBound = dx
        let gammaDX = Self.gamma(9 * cout + 12)
        for b in 0..<n { for ci in 0..<cin { for iy in 0..<h { for ix in 0..<w {
            var acc = 0.0, scale = 0.0
            for co in 0..<cout {
                var window = 0.0
                for dy in -3...1 { for dxo in -3...1 { window += Swift.abs(gi(b, co, iy + ph + dy, ix + pw + dxo) ?? 0) } }
                scale += 4 * window * kernelAbs[co * cin + ci]
                for ky in 0..<3 { for kx in 0..<3 { acc += (gi(b, co, iy + ph - ky, ix + pw - kx) ?? 0) * wi(co, ci, ky, kx) } }
            }
            let o = ((b * cin + ci) * h + iy) * w + ix
            dx[o] = acc; dxBound[o] = gammaDX * scale
        } } } }
        dw = .init(repeating: 0, count: cout * cin * 9); dwBound = dw
        let gammaDW = Self.gamma(n * ho * wo)
        for co in 0..<cout { for ci in 0..<cin { for ky in 0..<3 { for kx in 0..<3 {
            var acc = 0.0, scale = 0.0
            for b in 0..<n { for oy in 0..<ho { for ox in 0..<wo {
                let p = (gi(b, co, oy, ox) ?? 0) * (xi(b, ci, oy + ky - ph, ox + kx - pw) ?? 0)
                acc += p; scale += Swift.abs(p)
            } } }
            let o = ((co * cin + ci) * 3 + ky) * 3 + kx
            dw[o] = acc; dwBound[o] = gammaDW * scale
        } } } }
    }

    /// Every element within its bound (plus the float64 reference's own rounding, far smaller).
    func assertWithinBound(_ got: [Float], _ ref: [Double], _ bound: [Double], _ message: String,
                           file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, ref.count, message, file: file, line: line)
        var worst = 0.0, worstAt = -1
        for i in 0..<min(got.count, ref.count) {
            let ratio = Swift.abs(Double(got[i]) - ref[i]) / (bound[i] + 1e-300)
            if ratio > worst || ratio.isNaN { worst = ratio; worstAt = i }
        }
        XCTAssertLessThanOrEqual(worst, 1, "\(message): error at flat index \(worstAt) is \(worst)x its rounding bound",
                                 file: file, line: line)
    }
}

