import Foundation
import XCTest
@testable import CycleTimeCore
import TestSupport

/// a [B, M, K] x b [B, K, N] through oneDNN at `precision` (the op Tensor.matmul uses in autocast).
func dnnlMatmul(_ a: Tensor, _ b: Tensor, _ precision: Precision) -> Tensor {
    oneDNNMatmul(a, b, batch: [a.shape[0]], m: a.shape[1], n: b.shape[2], k: a.shape[2], originalShapes: a.shape, b.shape,
                 requiresGrad: a.requiresGrad, b.requiresGrad, inputs: [a, b], precision: precision)
}

final class OneDNNOpsTests: XCTestCase {
    func withOneDNNConvolutions<T>(_ body: () throws -> T) rethrows -> T {
        try ConvolutionPolicy.withPolicy(.current.with { $0.backend = .oneDNN }, body)
    }

    /// oneDNN's float32 convolution (values, dX, dW) within the rounding bound of a float64 direct
    /// convolution that the native paths are held to (ConvolutionTests, `ConvReference`).
    func testF32ConvolutionStaysWithinTheRoundingBoundOfAFloat64Reference() {
        let shapes: [(Int, Int, Int, Int, Int, [Int], Bool)] = [
            (1, 4, 5, 7, 9, [1, 1], true), (8, 6, 4, 8, 8, [1, 1], false), (2, 16, 8, 5, 6, [0, 0], true),
            (8, 5, 7, 9, 7, [2, 2], true), (8, 24, 32, 13, 12, [1, 1], true), (1, 7, 9, 4, 5, [0, 1], false),
        ]
        for (i, (n, cin, cout, h, w, pad, withBias)) in shapes.enumerated() {
            let x = randn([n, cin, h, w], seed: UInt64(100 + i)), wt = randn([cout, cin, 3, 3], seed: UInt64(200 + i), scale: 0.3)
            let b = withBias ? randn([cout], seed: UInt64(300 + i)) : nil
            let gy = randn([n, cout, h + 2 * pad[0] - 2, w + 2 * pad[1] - 2], seed: UInt64(400 + i), requiresGrad: false)
            let ref = ConvReference(x: x.array, w: wt.array, bias: b?.array, gy: gy.array, n: n, cin: cin, cout: cout, h: h, w: w, pad: pad)
            withOneDNNConvolutions {
                let y = F.conv2d(x, weight: wt, bias: b, padding: pad)
                XCTAssertEqual(y.gradFn?.name, "conv2d")
                y.backward(gy)
            }
            ref.assertWithinBound(noGrad { withOneDNNConvolutions { F.conv2d(x, weight: wt, bias: b, padding: pad) } }.array, ref.y, ref.yBound, "y \(i)")
            ref.assertWithinBound(x.grad!.array, ref.dx, ref.dxBound, "dx \(i)")
            ref.assertWithinBound(wt.grad!.array, ref.dw, ref.dwBound, "dw \(i)")
        }
    }

    /// Every 2-D case of the PyTorch conv fixture (strides, dilation, groups, depthwise, reflection,
    /// pointwise, 7x7) through oneDNN float32, at the native paths' tolerances.
    func testF32ConvolutionMatchesThePyTorchFixturesLikeTheNativePaths() throws {
        let fx = try Fixtures.load("conv")
        for c in ConvolutionTests.cases where c.dims == 2 {
            let x = fx.t("\(c.name).x").requiringGrad(), w = fx.t("\(c.name).w").requiringGrad()
            let b = fx["\(c.name).b"]?.requiringGrad()
            let y = withOneDNNConvolutions {
                F.conv2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups, paddingMode: c.mode)
            }
            assertClose(y, fx.t("\(c.name).y"), rtol: 1e-4, atol: 1e-5, c.name)
            y.backward(fx.t("\(c.name).gy"))
            assertClose(x.grad!, fx.t("\(c.name).dx"), rtol: 1e-4, atol: 1e-5, "dx " + c.name)
            assertClose(w.grad!, fx.t("\(c.name).dw"), rtol: 1e-4, atol: 1e-5, "dw " + c.name)
            if let b { assertClose(b.grad!, fx.t("\(c.name).db"), rtol: 1e-4, atol: 1e-5, "db " + c.name) }
        }
    }

    /// Every 3-D case of the PyTorch conv fixture (strides, padding, dilation, groups, bias) through
    /// oneDNN float32, at the native paths' tolerances.
    func testF32Convolution3dMatchesThePyTorchFixturesLikeTheNativePaths() throws {
        let fx = try Fixtures.load("conv")
        let cases = ConvolutionTests.cases.filter { $0.dims == 3 }
        XCTAssertFalse(cases.isEmpty)
        for c in cases {
            let x = fx.t("\(c.name).x").requiringGrad(), w = fx.t("\(c.name).w").requiringGrad()
            let b = fx["\(c.name).b"]?.requiringGrad()
            let y = withOneDNNConvolutions {
                F.conv3d(x, weight: w, bias: b, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
            }
            XCTAssertEqual(y.gradFn?.name, "conv3d")
            assertClose(y, fx.t("\(c.name).y"), rtol: 1e-4, atol: 1e-5, c.name)
            y.backward(fx.t("\(c.name).gy"))
            assertClose(x.grad!, fx.t("\(c.name).dx"), rtol: 1e-4, atol: 1e-5, "dx " + c.name)
            assertClose(w.grad!, fx.t("\(c.name).dw"), rtol: 1e-4, atol: 1e-5, "dw " + c.name)
            if let b { assertClose(b.grad!, fx.t("\(c.name).db"), rtol: 1e-4, atol: 1e-5, "db " + c.name) }
        }
    }

    /// oneDNN float32 batched matmul and the OpenBLAS one, each (C, dA, dB) within
    /// gamma_K * sum |a||b| of a float64 reference (K the length of each dot product).
    func testF32MatmulAndTheBLASOneStayWithinTheRoundingBoundOfAFloat64Reference() {
        for (i, (bt, m, k, n)) in [(1, 5, 7, 3), (3, 20, 64, 17), (2, 33, 129, 40)].enumerated() {
            let a = randn([bt, m, k], seed: UInt64(10 + i)), b = randn([bt, k, n], seed: UInt64(20 + i))
            let gy = randn([bt, m, n], seed: UInt64(30 + i), requiresGrad: false)
            // float64 references with their bounds: C = AB (K = k), dA = dC B^T (K = n), dB = A^T dC (K = m).
            func product(_ p: [Float], _ q: [Float], rows: Int, inner: Int, cols: Int,
                         _ pi: (Int, Int, Int) -> Int, _ qi: (Int, Int, Int) -> Int) -> ([Double], [Double]) {
                var v = [Double](), bound = [Double]()
                let gamma = Double(inner) * 0x1p-24 / (1 - Double(inner) * 0x1p-24)
                for s in 0..<bt { for r in 0..<rows { for c in 0..<cols {
                    var acc = 0.0, abs = 0.0
                    for t in 0..<inner { let x = Double(p[pi(s, r, t)]) * Double(q[qi(s, t, c)]); acc += x; abs += Swift.abs(x) }
                    v.append(acc); bound.append(gamma * abs)
                } } }
                return (v, bound)
            }
            let av = a.array, bv = b.array, gv = gy.array
            let c = product(av, bv, rows: m, inner: k, cols: n, { ($0 * m + $1) * k + $2 }, { ($0 * k + $1) * n + $2 })
            let da = product(gv, bv, rows: m, inner: n, cols: k, { ($0 * m + $1) * n + $2 }, { ($0 * k + $2) * n + $1 })
            let db = product(av, gv, rows: k, inner: m, cols: n, { ($0 * m + $2) * k + $1 }, { ($0 * m + $1) * n + $2 })
            for path in ["oneDNN", "BLAS"] {
                a.grad = nil; b.grad = nil
                let y = path == "oneDNN" ? dnnlMatmul(a, b, .fp32) : a.matmul(b)
                y.backward(gy)
                for (got, (ref, bound), what) in [(y, c, "C"), (a.grad!, da, "dA"), (b.grad!, db, "dB")] {
                    var worst = 0.0
                    for j in 0..<ref.count { worst = max(worst, Swift.abs(Double(got.data[j]) - ref[j]) / (bound[j] + 1e-300)) }
                    XCTAssertLessThanOrEqual(worst, 1, "\(path) \(what) case \(i): \(worst)x its rounding bound")
                }
            }
        }
    }

    /// Finite differences for the new differentiable ops (float32).
    func testGradcheck() {
        gradcheck([randn([2, 4, 5, 6], seed: 1), randn([6, 2, 3, 2], seed: 2, scale: 0.5), randn([6], seed: 3)]) { t in
            withOneDNNConvolutions { F.conv2d(t[0], weight: t[1], bias: t[2], stride: [2, 1], padding: [1, 1], dilation: [1, 2], groups: 2) }
        }
        gradcheck([randn([2, 3, 4], seed: 4), randn([2, 4, 5], seed: 5)]) { t in dnnlMatmul(t[0], t[1], .fp32) }
        gradcheck([randn([3, 2, 4], seed: 6), randn([5, 4], seed: 7), randn([5], seed: 8)]) { t in
            oneDNNLinear(t[0], t[1], t[2], rows: 6, nIn: 4, nOut: 5, precision: .fp32)
        }
    }

    /// The oneDNN ops' records keep only their inputs: the graph is freed after backward and when
    /// dropped without it.
    func testGraphIsFreed() {
        let x = randn([2, 4, 6, 6], seed: 1), w = randn([5, 4, 3, 3], seed: 2), b = randn([5], seed: 3)
        assertGraphIsFreed("oneDNN conv2d") { withOneDNNConvolutions { F.conv2d(x, weight: w, bias: b, padding: [1, 1]).relu() } }
        let a = randn([2, 3, 4], seed: 4), m = randn([2, 4, 5], seed: 5)
        assertGraphIsFreed("oneDNN matmul") { dnnlMatmul(a, m, .fp32).relu() }
        let lw = randn([5, 4], seed: 6), lb = randn([5], seed: 7)
        assertGraphIsFreed("oneDNN linear") { oneDNNLinear(a, lw, lb, rows: 6, nIn: 4, nOut: 5, precision: .fp32).relu() }
    }

    /// bf16 inputs round float32 to nearest, ties to even: 1 + 2^-8 is halfway between 1 and
    /// 1 + 2^-7 (rounds to 1), 1 + 3 * 2^-8 halfway between 1 + 2^-7 and 1 + 2^-6 (rounds to the latter).
    /// Float32 subnormal inputs become 0, as AVX512-BF16's conversion (VCVTNEPS2BF16) treats them.
    func testBF16InputsRoundToNearestEven() throws {
        guard OneDNN.hasNativeBF16 else { throw XCTSkip("no AVX512-BF16 on this CPU") }
        let values: [Float] = [1 + 0x1p-8, 1 + 3 * 0x1p-8, 1 + 0x1p-8 + 0x1p-20, -(1 + 0x1p-8), (1 + 3 * 0x1p-8) * 0x1p100, 0x1p-130]
        let expected: [Float] = [1, 1 + 0x1p-6, 1 + 0x1p-7, -1, (1 + 0x1p-6) * 0x1p100, 0]
        let a = Tensor(values, shape: [values.count, 1, 1], requiresGrad: false)
        let one = Tensor.ones([values.count, 1, 1])
        XCTAssertEqual(dnnlMatmul(a, one, .bf16).array, expected)
    }
}
