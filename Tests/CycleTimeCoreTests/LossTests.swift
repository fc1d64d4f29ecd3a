import XCTest
@testable import CycleTimeCore
import TestSupport

final class LossTests: XCTestCase {
    let reductions: [Reduction] = [.none, .mean, .sum]

    func testLinearMatchesPyTorch() throws {
        let fx = try Fixtures.load("sampling")
        let (out, g) = runWithGrad([fx.t("lin.x"), fx.t("lin.w"), fx.t("lin.b")], fx.t("lin.gout")) {
            F.linear($0[0], weight: $0[1], bias: $0[2])
        }
        assertClose(out, fx.t("lin.out"), rtol: 1e-5, atol: 1e-5)
        assertClose(g[0]!, fx.t("lin.dx"), rtol: 1e-5, atol: 1e-5)
        assertClose(g[1]!, fx.t("lin.dw"), rtol: 1e-5, atol: 1e-5)
        assertClose(g[2]!, fx.t("lin.db"), rtol: 1e-5, atol: 1e-5)
    }

    func testLinearGradcheckAndShapes() {
        gradcheck([randn([2, 3, 4], seed: 1), randn([5, 4], seed: 2), randn([5], seed: 3)]) { F.linear($0[0], weight: $0[1], bias: $0[2]) }
        gradcheck([randn([3, 4], seed: 4), randn([2, 4], seed: 5)]) { F.linear($0[0], weight: $0[1]) }
        // 1-D input -> [out]; hand-computed.
        let y = F.linear(Tensor([1, 2], shape: [2]), weight: Tensor([1, 0, 1, 1, 2, -1], shape: [3, 2]), bias: Tensor([0.5, 0, 1], shape: [3]))
        XCTAssertEqual(y.shape, [3])
        XCTAssertEqual(y.array, [1.5, 3, 1])
    }

    func testDropout() {
        let x = Tensor.ones([100, 100]).requiringGrad()
        var gen = RandomGenerator(seed: 9)
        XCTAssert(F.dropout(x, p: 0.3, training: false, generator: &gen) === x)
        XCTAssertEqual(gen, RandomGenerator(seed: 9), "no draws outside training")
        let y = F.dropout(x, p: 0.3, training: true, generator: &gen)
        let vals = y.array
        let kept = vals.filter { $0 != 0 }
        XCTAssert(kept.allSatisfy { abs($0 - 1 / 0.7) < 1e-6 })
        XCTAssertEqual(Double(kept.count) / 10_000, 0.7, accuracy: 0.03)
        y.backward(Tensor.full([100, 100], 2))
        XCTAssertEqual(x.grad!.array, vals.map { $0 * 2 })
        // Same seed, same mask.
        var g1 = RandomGenerator(seed: 3), g2 = RandomGenerator(seed: 3)
        XCTAssertEqual(F.dropout(x, p: 0.5, training: true, generator: &g1).array, F.dropout(x, p: 0.5, training: true, generator: &g2).array)
        XCTAssert(F.dropout(x, p: 1, training: true, generator: &g1).array.allSatisfy { $0 == 0 })
        let g3 = RandomGenerator(seed: 4)
        let xs = randn([4, 5], seed: 6)
        gradcheck([xs]) { var g = g3; return F.dropout($0[0], p: 0.4, training: true, generator: &g) }
    }

    func testMSEMatchesPyTorch() throws {
        let fx = try Fixtures.load("sampling")
        for red in reductions {
            let k = "mse.\(red.rawValue)"
            let (out, g) = runWithGrad([fx.t("mse.x"), fx.t("mse.t")], fx.t(k + ".gout")) { F.mseLoss($0[0], $0[1], reduction: red) }
            assertClose(out, fx.t(k + ".out"), k)
            assertClose(g[0]!, fx.t(k + ".dx"), rtol: 1e-5, atol: 1e-6, k)
            assertClose(g[1]!, fx.t(k + ".dt"), rtol: 1e-5, atol: 1e-6, k)
            gradcheck([randn([3, 4], seed: 1), randn([3, 4], seed: 2)]) { F.mseLoss($0[0], $0[1], reduction: red) }
        }
        gradcheck([randn([3, 4], seed: 1), randn([4], seed: 2)]) { F.mseLoss($0[0], $0[1], reduction: .mean) }
    }

    func testBCEWithLogitsMatchesPyTorch() throws {
        let fx = try Fixtures.load("sampling")
        for red in reductions {
            for variant in ["plain", "weight", "posweight", "both"] {
                let k = "bce.\(variant).\(red.rawValue)"
                let w: Tensor? = variant == "weight" || variant == "both" ? fx.t("bce.w") : nil
                let pw: Tensor? = variant == "posweight" || variant == "both" ? fx.t("bce.pw") : nil
                let (out, g) = runWithGrad([fx.t("bce.x"), fx.t("bce.t")], fx.t(k + ".gout")) {
                    F.binaryCrossEntropyWithLogits($0[0], $0[1], weight: w, posWeight: pw, reduction: red)
                }
                assertClose(out, fx.t(k + ".out"), k)
                assertClose(g[0]!, fx.t(k + ".dx"), rtol: 1e-5, atol: 1e-6, k)
                assertClose(g[1]!, fx.t(k + ".dt"), rtol: 1e-5, atol: 1e-6, k)
            }
            for variant in ["plain", "both"] {
                let k = "focal.\(variant).\(red.rawValue)"
                let w: Tensor? = variant == "both" ? fx.t("bce.w") : nil
                let pw: Tensor? = variant == "both" ? fx.t("bce.pw") : nil
                let (out, g) = runWithGrad([fx.t("bce.x"), fx.t("bce.t")], fx.t(k + ".gout")) {
                    F.binaryCrossEntropyWithLogits($0[0], $0[1], weight: w, posWeight: pw, reduction: red, focalAlpha: 0.25, focalGamma: 2)
                }
                assertClose(out, fx.t(k + ".out"), k)
                assertClose(g[0]!, fx.t(k + ".dx"), rtol: 1e-5, atol: 1e-6, k)
                assertClose(g[1]!, fx.t(k + ".dt"), rtol: 1e-5, atol: 1e-6, k)
            }
        }
        let (out, g) = runWithGrad([fx.t("bce.x"), fx.t("bce.t")], Tensor(scalar: 1)) {
            F.binaryCrossEntropyWithLogits($0[0], $0[1], focalGamma: 1.5)
        }
        assertClose(out, fx.t("focal.g15.out"))
        assertClose(g[0]!, fx.t("focal.g15.dx"), rtol: 1e-5, atol: 1e-6)
    }

    func testBCEWithLogitsGradcheck() {
        var rng = RandomGenerator(seed: 5)
        let t = Tensor((0..<12).map { _ in rng.nextFloat() }, shape: [3, 4], requiresGrad: true)
        let w = Tensor((0..<12).map { _ in rng.nextFloat() + 0.5 }, shape: [3, 4], requiresGrad: true)
        let pw = Tensor([0.5, 1, 2, 3], shape: [4], requiresGrad: true)
        for red in reductions {
            gradcheck([randn([3, 4], seed: 1, scale: 2), t, w, pw], eps: 1e-3) {
                F.binaryCrossEntropyWithLogits($0[0], $0[1], weight: $0[2], posWeight: $0[3], reduction: red)
            }
            gradcheck([randn([3, 4], seed: 2, scale: 2), t, w, pw], eps: 1e-3) {
                F.binaryCrossEntropyWithLogits($0[0], $0[1], weight: $0[2], posWeight: $0[3], reduction: red, focalAlpha: 0.5, focalGamma: 2)
            }
        }
        // Extreme logits stay finite.
        let big = F.binaryCrossEntropyWithLogits(Tensor([100, -100], shape: [2]), Tensor([0, 1], shape: [2]), reduction: .none)
        assertClose(big, Tensor([100, 100], shape: [2]))
    }

    /// F.binary_cross_entropy on probabilities: the value is the closed form (and, on sigmoid
    /// probabilities, the with-logits loss); the gradient matches central differences; at p = 0
    /// and 1 each log is clamped at -100 and the gradient stays finite, as PyTorch.
    func testBinaryCrossEntropyOnProbabilities() {
        let logits = randn([3, 5], seed: 41), t = randn([3, 5], seed: 42).sigmoid()
        let p = logits.sigmoid()
        for red in reductions {
            assertClose(F.binaryCrossEntropy(p, t, reduction: red), F.binaryCrossEntropyWithLogits(logits, t, reduction: red), rtol: 1e-5, atol: 1e-6)
        }
        let x = Tensor([0.2, 0.5, 0.9, 0.05], shape: [4]), tx = Tensor([1, 0, 0.3, 0], shape: [4])
        let closed = (0..<4).map { i -> Float in -(tx.data[i] * Foundation.log(x.data[i]) + (1 - tx.data[i]) * Foundation.log(1 - x.data[i])) }
        assertClose(F.binaryCrossEntropy(x, tx, reduction: .none), Tensor(closed, shape: [4]), rtol: 1e-6, atol: 1e-7)
        gradcheck([Tensor([0.2, 0.5, 0.9, 0.35, 0.6, 0.75], shape: [2, 3]).requiringGrad()], eps: 1e-3) {
            F.binaryCrossEntropy($0[0], Tensor([1, 0, 0.3, 0, 1, 1], shape: [2, 3]), reduction: .none)
        }
        let edge = Tensor([0, 1, 0, 1], shape: [4]).requiringGrad()
        let l = F.binaryCrossEntropy(edge, Tensor([1, 0, 0, 1], shape: [4]), reduction: .none)
        XCTAssertEqual(l.array, [100, 100, 0, 0])
        l.sum().backward()
        let ge = edge.grad!.array
        XCTAssertEqual(ge[0], -1e12, accuracy: 1e6)
        XCTAssertEqual(ge[1], 1e12, accuracy: 1e6)
        XCTAssertEqual(Array(ge[2...]), [0, 0])
    }

    func testCrossEntropyMatchesPyTorch() throws {
        let fx = try Fixtures.load("sampling")
        for dims in ["2", "4"] {
            for red in reductions {
                for ls in [0, 1] {
                    for ig in [-100, 2] {
                        let k = "ce.\(dims).\(red.rawValue).ls\(ls).ig\(ig)"
                        let t = fx.t("ce.\(dims).ig\(ig).t")
                        let (out, g) = runWithGrad([fx.t("ce.x\(dims)")], fx.t(k + ".gout")) {
                            F.crossEntropy($0[0], t, reduction: red, ignoreIndex: ig, labelSmoothing: Float(ls) / 10)
                        }
                        assertClose(out, fx.t(k + ".out"), k)
                        assertClose(g[0]!, fx.t(k + ".dx"), rtol: 1e-5, atol: 1e-6, k)
                    }
                }
            }
        }
    }

    func testCrossEntropyGradcheckAndEdgeCases() {
        let t2 = Tensor([0, 3, -100, 4], shape: [4])
        let t4 = Tensor([0, 1, 2, 2, 1, 0, 1, 1, 2, 0, 0, 1], shape: [2, 2, 3])
        for red in reductions {
            for ls: Float in [0, 0.2] {
                gradcheck([randn([4, 5], seed: 1)]) { F.crossEntropy($0[0], t2, reduction: red, labelSmoothing: ls) }
                gradcheck([randn([2, 3, 2, 3], seed: 2)]) { F.crossEntropy($0[0], t4, reduction: red, ignoreIndex: 1, labelSmoothing: ls) }
            }
        }
        // All targets ignored: mean is NaN (0 / 0), as PyTorch; sum is 0.
        let all = Tensor([-100, -100], shape: [2])
        XCTAssert(F.crossEntropy(randn([2, 3], seed: 3), all).item().isNaN)
        XCTAssertEqual(F.crossEntropy(randn([2, 3], seed: 3), all, reduction: .sum).item(), 0)
        // Hand value: uniform logits over C classes give log C.
        assertClose(F.crossEntropy(Tensor.zeros([3, 4]), Tensor([0, 1, 3], shape: [3])).item(), logf(4))
    }

    /// Hand values of PyTorch's formula (0.5 d^2 / beta inside beta, |d| - beta / 2 outside; beta 0
    /// is L1) for each reduction, and gradients by finite differences away from the kinks.
    func testSmoothL1HandValuesAndGradients() {
        let x = Tensor([0.05, -0.5, 2, -3], shape: [4]), t = Tensor([0, 0, 1, 0], shape: [4])
        // d = 0.05, -0.5, 1, -3 with beta 0.1: 0.0125, 0.45, 0.95, 2.95.
        assertClose(F.smoothL1Loss(x, t, beta: 0.1, reduction: .none), Tensor([0.0125, 0.45, 0.95, 2.95], shape: [4]))
        assertClose(F.smoothL1Loss(x, t, beta: 0.1, reduction: .sum).item(), 4.3625)
        assertClose(F.smoothL1Loss(x, t, beta: 0.1).item(), 4.3625 / 4)
        assertClose(F.smoothL1Loss(x, t, beta: 0, reduction: .sum).item(), 4.55)
        for red in reductions {
            // Differences 0.05, -0.5, 1, -3, 0.3, -0.03: at least 0.05 from the kinks at +-1/9.
            let a = Tensor([0.05, -0.5, 2, -3, 0.3, -0.03], shape: [2, 3], requiresGrad: true)
            let b = Tensor([0, 0, 1, 0, 0, 0], shape: [2, 3], requiresGrad: true)
            gradcheck([a, b]) { F.smoothL1Loss($0[0], $0[1], beta: 1.0 / 9, reduction: red) }
        }
    }
}

extension LossTests {
    func testParallelPathsMatchSerial() {
        let logits = randn([600, 40], seed: 71, requiresGrad: false, scale: 2)
        let t = Tensor((0..<600).map { Float($0 % 41 == 40 ? -100 : $0 % 40) }, shape: [600])
        assertParallelMatchesSerial([logits]) { F.crossEntropy($0[0], t, labelSmoothing: 0.1) }
        assertParallelMatchesSerial([logits]) { F.crossEntropy($0[0], t, reduction: .none) }
        var rng = RandomGenerator(seed: 72)
        let tb = Tensor((0..<24_000).map { _ in rng.nextFloat() }, shape: [600, 40])
        assertParallelMatchesSerial([logits, tb]) {
            F.binaryCrossEntropyWithLogits($0[0], $0[1], posWeight: Tensor.full([40], 2), reduction: .sum, focalAlpha: 0.25, focalGamma: 2)
        }
        assertParallelMatchesSerial([logits, randn([600, 40], seed: 73, requiresGrad: false)]) { F.mseLoss($0[0], $0[1]) }
    }
}
