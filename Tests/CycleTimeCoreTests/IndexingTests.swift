import XCTest
@testable import CycleTimeCore
import TestSupport

final class IndexingTests: XCTestCase {
    func testGatherIndexSelectMatchPyTorch() throws {
        let fx = try Fixtures.load("ops")
        checkOpsFixture(fx, "gather_axis0", differentiable: [0]) { $0[0].gathered(axis: 0, index: $0[1]) }
        checkOpsFixture(fx, "gather_axis1", differentiable: [0]) { $0[0].gathered(axis: 1, index: $0[1]) }
        checkOpsFixture(fx, "gather_axis2", differentiable: [0]) { $0[0].gathered(axis: -1, index: $0[1]) }
        checkOpsFixture(fx, "index_select1") { $0[0].indexSelect(axis: 1, indices: [3, 0, 3, 1]) }
        checkOpsFixture(fx, "index_select_last") { $0[0].indexSelect(axis: -1, indices: [4, 4, 2]) }
    }

    func testTopkMatchesPyTorch() throws {
        let fx = try Fixtures.load("ops")
        let cases: [(String, Int, Int, Bool)] = [("topk_last", 3, -1, true), ("topk_small", 2, -1, false),
                                                  ("topk_axis1", 3, 1, true), ("topk_big_axis1", 70, 1, true),
                                                  ("topk_big_small", 10, 1, false)]
        for (name, k, axis, largest) in cases {
            var idx: Tensor? = nil
            checkOpsFixture(fx, name) { xs in
                let r = xs[0].topk(k, axis: axis, largest: largest)
                idx = r.indices
                return r.values
            }
            assertClose(idx!, fx.t("\(name).out1"), rtol: 0, atol: 0, "\(name) indices")
        }
    }

    func testTopkTiesPreferLowerIndex() {
        let x = Tensor([2, 5, 5, 1, 5, 2], shape: [1, 6])
        let r = x.topk(4)
        XCTAssertEqual(r.values.array, [5, 5, 5, 2])
        XCTAssertEqual(r.indices.array, [1, 2, 4, 0])
        let s = x.topk(3, largest: false)
        XCTAssertEqual(s.values.array, [1, 2, 2])
        XCTAssertEqual(s.indices.array, [3, 0, 5])
        // The sorting path (k > 64) orders ties the same way.
        let big = Tensor((0..<100).map { Float($0 % 10) }, shape: [100])
        let b = big.topk(70)
        XCTAssertEqual(Array(b.indices.array.prefix(3)), [9, 19, 29])
        XCTAssertEqual(b.values.data[69], 3)
        // NaN counts as the largest value.
        let n = Tensor([1, .nan, 3], shape: [3])
        XCTAssertEqual(n.topk(1).indices.array, [1])
        XCTAssertEqual(n.topk(3, largest: false).indices.array, [0, 2, 1])
    }

    func testIndexingGradients() {
        let x = randn([3, 4, 5], seed: 1)
        let idx = Tensor([0, 2, 2, 1, 0, 0, 1, 2, 1, 1, 0, 2], shape: [2, 2, 3])
        gradcheck([x]) { $0[0].gathered(axis: 0, index: idx) }
        let idx1 = Tensor([3, 3, 0, 1, 2, 0], shape: [1, 2, 3])
        gradcheck([x]) { $0[0].gathered(axis: 1, index: idx1) }
        gradcheck([x]) { $0[0].gathered(axis: 2, index: idx1) }
        gradcheck([x]) { $0[0].indexSelect(axis: 1, indices: [2, 2, 0]) }
        // topk: distinct values spaced more than 2 * eps so the selection does not change.
        var rng = RandomGenerator(seed: 2)
        var vals = (0..<60).map { Float($0) * 0.1 }
        rng.shuffle(&vals)
        let y = Tensor(vals, shape: [3, 4, 5], requiresGrad: true)
        gradcheck([y], eps: 1e-3) { $0[0].topk(2, axis: 1).values }
        gradcheck([y], eps: 1e-3) { $0[0].topk(3, largest: false).values }
    }
}
