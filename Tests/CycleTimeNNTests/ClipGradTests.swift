import CycleTimeCore
import XCTest
@testable import CycleTimeNN
import TestSupport

/// Gradient clipping against torch.nn.utils.clip_grad_norm_ / clip_grad_value_ (fixture clip_grad).
final class ClipGradTests: XCTestCase {
    func params(_ fx: [String: Tensor]) -> [Tensor] {
        var ps: [Tensor] = (0..<3).map { j in
            let g = fx.t("grad\(j)")
            let p = Tensor.zeros(g.shape, requiresGrad: true)
            p.grad = g.clone()
            return p
        }
        ps.append(Tensor.zeros([3], requiresGrad: true))  // no gradient: ignored
        return ps
    }

    func check(_ name: String, maxNorm: Float, normType: Float, file: StaticString = #filePath, line: UInt = #line) throws {
        let fx = try Fixtures.load("clip_grad")
        let ps = params(fx)
        let named = ps.enumerated().map { (name: "p\($0.offset)", tensor: $0.element) }
        let total = clipGradNorm(named, maxNorm: maxNorm, normType: normType)
        assertClose(total, fx.t("\(name).total").item(), rtol: 1e-6, atol: 0, name, file: file, line: line)
        for j in 0..<3 {
            assertClose(ps[j].grad!, fx.t("\(name).grad\(j)"), rtol: 1e-6, atol: 1e-7, "\(name) grad\(j)", file: file, line: line)
        }
        XCTAssertNil(ps[3].grad)
    }

    func testL2Clipped() throws { try check("l2_clip", maxNorm: 1, normType: 2) }
    func testL2BelowMaxUnchanged() throws {
        try check("l2_noclip", maxNorm: 100, normType: 2)
        let fx = try Fixtures.load("clip_grad")
        XCTAssertEqual(fx.t("l2_noclip.grad1").array, fx.t("grad1").array)
    }
    func testL1() throws { try check("l1", maxNorm: 3, normType: 1) }
    func testInfinityNorm() throws { try check("inf", maxNorm: 0.5, normType: .infinity) }
    func testL3() throws { try check("l3", maxNorm: 1.5, normType: 3) }

    func testClipValue() throws {
        let fx = try Fixtures.load("clip_grad")
        let ps = params(fx)
        clipGradValue(ps, clipValue: 0.7)
        for j in 0..<3 { assertClose(ps[j].grad!, fx.t("value.grad\(j)"), rtol: 0, atol: 0) }
    }

    func testNoGradients() {
        XCTAssertEqual(clipGradNorm([Tensor.zeros([2], requiresGrad: true)], maxNorm: 1), 0)
    }
}

extension ClipGradTests {
    /// A non-finite gradient makes the total norm non-finite and, as in PyTorch, poisons every gradient.
    func testNonFiniteNormPropagates() {
        for normType: Float in [2, .infinity] {
            let a = Tensor.zeros([3], requiresGrad: true), b = Tensor.zeros([2], requiresGrad: true)
            a.grad = Tensor([1, .nan, 2], shape: [3])
            b.grad = Tensor([3, 4], shape: [2])
            XCTAssertTrue(clipGradNorm([a, b], maxNorm: 1, normType: normType).isNaN)
            XCTAssertTrue(b.grad!.array.allSatisfy { $0.isNaN })
        }
    }

    /// Large gradients spanning many reduction blocks: the norm equals a Double reference.
    func testLargeGradientNorm() {
        let g = randn([300_001], seed: 3, requiresGrad: false)
        let p = Tensor.zeros([300_001], requiresGrad: true)
        p.grad = g.clone()
        var ref: Double = 0
        for i in 0..<g.count { ref += Double(g.data[i]) * Double(g.data[i]) }
        let total = clipGradNorm([p], maxNorm: 10)
        assertClose(total, Float(ref.squareRoot()), rtol: 1e-6, atol: 0)
        let coef = 10 / (total + 1e-6)
        assertClose(p.grad!, g * coef, rtol: 1e-6, atol: 1e-7)
        XCTAssertEqual(clipGradNorm([p], maxNorm: 1, normType: .infinity), p.grad!.array.map { abs($0) }.max()!)
    }
}
