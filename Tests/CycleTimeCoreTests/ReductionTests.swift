import XCTest
@testable import CycleTimeCore
import TestSupport

final class ReductionTests: XCTestCase {
    func testReductionsMatchPyTorch() throws {
        let fx = try Fixtures.load("ops")
        checkOpsFixture(fx, "sum_all") { $0[0].sum() }
        checkOpsFixture(fx, "sum_axes") { $0[0].sum(axes: [0, 2], keepdim: true) }
        checkOpsFixture(fx, "mean_axis") { $0[0].mean(axis: 1) }
        checkOpsFixture(fx, "mean_all") { $0[0].mean() }
        checkOpsFixture(fx, "max_all") { $0[0].max() }
        // PyTorch splits max()'s gradient evenly among tied maxima.
        checkOpsFixture(fx, "max_all_ties") { $0[0].max() }
        checkOpsFixture(fx, "max_axis1") { $0[0].max(axis: 1) }
        checkOpsFixture(fx, "max_axis2_keep") { $0[0].max(axis: 2, keepdim: true) }
        checkOpsFixture(fx, "max_axis0") { $0[0].max(axis: 0) }
    }

    func testArgmaxMatchesPyTorch() throws {
        let fx = try Fixtures.load("ops")
        let a = fx.t("sum_all.x0")
        XCTAssertEqual(a.argmax(axis: 1).shape, [2, 4])
        assertClose(a.argmax(axis: 1), fx.t("argmax_axis1"), rtol: 0, atol: 0)
        assertClose(a.argmax(axis: 2, keepdim: true), fx.t("argmax_axis2_keep"), rtol: 0, atol: 0)
        // First occurrence on ties.
        assertClose(fx.t("argmax_ties.x0").argmax(axis: 1), fx.t("argmax_ties"), rtol: 0, atol: 0)
    }

    func testMaxGradients() {
        // Distinct values (spacing 0.1 > 2 * eps) so the finite differences never cross a kink.
        var rng = RandomGenerator(seed: 3)
        var vals = (0..<24).map { Float($0) * 0.1 }
        rng.shuffle(&vals)
        let x = Tensor(vals, shape: [2, 3, 4], requiresGrad: true)
        gradcheck([x], eps: 1e-3) { $0[0].max() }
        gradcheck([x], eps: 1e-3) { $0[0].max(axis: 1) }
        gradcheck([x], eps: 1e-3) { $0[0].max(axis: -1, keepdim: true) }
        gradcheck([x], eps: 1e-3) { $0[0].max(axis: 0) }
        gradcheck([randn([2, 3, 4], seed: 5)]) { $0[0].sum(axes: [1]) }
        gradcheck([randn([2, 3, 4], seed: 5)]) { $0[0].sum() }
        gradcheck([randn([2, 3, 4], seed: 5)]) { $0[0].mean(axes: [0, 2], keepdim: true) }
    }

    func testMaxPropagatesNaN() {
        let x = Tensor([1, .nan, 3, 2], shape: [2, 2])
        XCTAssertTrue(x.max().item().isNaN)
        let m = x.max(axis: 1)
        XCTAssertEqual(m.data[1], 3)
        XCTAssertTrue(m.data[0].isNaN)
    }

    func testLargeSumIsAccurateAndDeterministic() {
        // 1e6 values of 0.1 (as Float): a naive Float running sum drifts by ~1%; blocks in Double do not.
        let n = 1_000_000
        let x = Tensor.full([n], 0.1)
        let expected = Double(Float(0.1)) * Double(n)
        XCTAssertEqual(Double(x.sum().item()), expected, accuracy: expected * 1e-6)
        let r = randn([1000, 1000], seed: 9, requiresGrad: false)
        let s1 = r.sum().item()
        let saved = Parallel.threadCount
        Parallel.threadCount = 1
        let s2 = r.sum().item()
        Parallel.threadCount = saved
        XCTAssertEqual(s1, s2)  // same blocks regardless of threads
        var ref: Double = 0
        for i in 0..<r.count { ref += Double(r.data[i]) }
        XCTAssertEqual(Double(s1), ref, accuracy: 1e-3)
    }

    func testLargeMaxAlongAxis() {
        // Outer 1, large inner: the parallel split runs across the inner dimension.
        let x = randn([3, 70_000], seed: 4, requiresGrad: false)
        // Full max over fixed parallel blocks.
        XCTAssertEqual(x.max().item(), x.array.max()!)
        let y = x.clone()
        y.data[123_456] = .nan
        XCTAssertTrue(y.max().item().isNaN)
        let m = x.max(axis: 0), am = x.argmax(axis: 0)
        for i in stride(from: 0, to: 70_000, by: 997) {
            let col = [x[0, i], x[1, i], x[2, i]]
            XCTAssertEqual(m.data[i], col.max()!)
            XCTAssertEqual(Int(am.data[i]), col.firstIndex(of: col.max()!)!)
        }
    }
}
