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
        let savedBytes = ConvTuning.maxColumnBytes, savedKeep = ConvTuning.keepColumns
        let savedAsConv = ConvTuning.inputGradientAsConvolution, savedBP = ConvTuning.batchParallel
        defer {
            ConvTuning.maxColumnBytes = savedBytes; ConvTuning.keepColumns = savedKeep
            ConvTuning.inputGradientAsConvolution = savedAsConv; ConvTuning.batchParallel = savedBP
        }
        let variants = [(savedBytes, false, true, true), (savedBytes, false, false, true), (1 << 30, true, false, false),
                        (1 << 30, false, true, false), (1, false, false, false)]
        for (bytes, keep, asConv, bp) in variants {
            ConvTuning.maxColumnBytes = bytes; ConvTuning.keepColumns = keep; ConvTuning.inputGradientAsConvolution = asConv
            ConvTuning.batchParallel = bp
            for c in Self.cases {
                let x = fx.t("\(c.name).x").requiringGrad(), w = fx.t("\(c.name).w").requiringGrad()
                let b = fx["\(c.name).b"]?.requiringGrad()
                x.grad = nil; w.grad = nil; b?.grad = nil
                let y = run(c, x, w, b)
                let msg = "\(c.name) (column bytes \(bytes), keep \(keep), dx as conv \(asConv), batch-parallel \(bp))"
                assertClose(y, fx.t("\(c.name).y"), rtol: 1e-4, atol: 1e-5, msg)
                y.backward(fx.t("\(c.name).gy"))
                assertClose(x.grad!, fx.t("\(c.name).dx"), rtol: 1e-4, atol: 1e-5, "dx " + msg)
                assertClose(w.grad!, fx.t("\(c.name).dw"), rtol: 1e-4, atol: 1e-5, "dw " + msg)
                if let b { assertClose(b.grad!, fx.t("\(c.name).db"), rtol: 1e-4, atol: 1e-5, "db " + msg) }
            }
        }
    }

    func testGradcheckConv2d() {
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

    func testGradcheckConv3d() {
        gradcheck([randn([1, 2, 4, 4, 5], seed: 1), randn([4, 1, 2, 3, 2], seed: 2, scale: 0.5), randn([4], seed: 3)]) { t in
            F.conv3d(t[0], weight: t[1], bias: t[2], stride: [1, 2, 1], padding: [1, 1, 0], dilation: [1, 1, 2], groups: 2)
        }
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
        let x = randn([8, 16, 12, 12], seed: 11)
        let w = randn([32, 16, 3, 3], seed: 12)
        func grads() -> ([Float], [Float]) {
            x.grad = nil; w.grad = nil
            F.conv2d(x, weight: w, padding: [1, 1]).sum().backward()
            return (x.grad!.array, w.grad!.array)
        }
        let first = grads()
        for _ in 0..<5 {
            let again = grads()
            XCTAssertEqual(again.0, first.0)
            XCTAssertEqual(again.1, first.1)
        }
    }
}
