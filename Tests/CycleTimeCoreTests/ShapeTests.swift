import XCTest
@testable import CycleTimeCore
import TestSupport

final class ShapeTests: XCTestCase {
    func testPermuteTransposeMatchPyTorch() throws {
        let fx = try Fixtures.load("ops")
        checkOpsFixture(fx, "permute_0231") { $0[0].permuted(0, 2, 3, 1) }
        checkOpsFixture(fx, "permute_0312") { $0[0].permuted(0, 3, 1, 2) }
        checkOpsFixture(fx, "permute_2031") { $0[0].permuted(2, 0, 3, 1) }
        checkOpsFixture(fx, "permute_5d") { $0[0].permuted(0, 2, 1, 3, 4) }
        checkOpsFixture(fx, "permute_5d_b") { $0[0].permuted(4, 1, 3, 0, 2) }
        checkOpsFixture(fx, "transpose_12") { $0[0].transposed(1, 2) }
        checkOpsFixture(fx, "transpose_23") { $0[0].transposed(2, 3) }
        checkOpsFixture(fx, "transpose_neg") { $0[0].transposed(-1, 0) }
    }

    func testSliceSqueezeMatchPyTorch() throws {
        let fx = try Fixtures.load("ops")
        checkOpsFixture(fx, "slice_step") { $0[0].sliced(axis: 2, start: 1, end: 5, step: 2) }
        checkOpsFixture(fx, "slice_neg") { $0[0].sliced(axis: 1, start: -2, end: Int.max) }
        checkOpsFixture(fx, "slice_neg_end") { $0[0].sliced(axis: -1, start: -4, end: -1, step: 2) }
        checkOpsFixture(fx, "slice_axis0") { $0[0].sliced(axis: 0, start: 1, end: 100) }
        checkOpsFixture(fx, "squeeze") { $0[0].squeezed(axis: 1) }
        checkOpsFixture(fx, "unsqueeze") { $0[0].unsqueezed(axis: -1) }
    }

    func testCatStackMatchPyTorch() throws {
        let fx = try Fixtures.load("ops")
        checkOpsFixture(fx, "cat_axis1") { Tensor.cat($0, axis: 1) }
        checkOpsFixture(fx, "cat_last") { Tensor.cat($0, axis: -1) }
        checkOpsFixture(fx, "cat_axis0") { Tensor.cat($0, axis: 0) }
        checkOpsFixture(fx, "stack_axis1") { Tensor.stack($0, axis: 1) }
        checkOpsFixture(fx, "stack_last") { Tensor.stack($0, axis: -1) }
    }

    func testPadMatchesPyTorch() throws {
        let fx = try Fixtures.load("ops")
        checkOpsFixture(fx, "pad_zeros_1d") { F.pad($0[0], [1, 2]) }
        checkOpsFixture(fx, "pad_zeros_2d") { F.pad($0[0], [1, 2, 0, 3]) }
        checkOpsFixture(fx, "pad_value_3d") { F.pad($0[0], [1, 1, 2, 0, 1, 2], value: 1.5) }
        checkOpsFixture(fx, "pad_zeros_4d") { F.pad($0[0], [1, 0, 0, 1, 1, 1, 2, 0]) }
        checkOpsFixture(fx, "pad_crop") { F.pad($0[0], [-1, 2, 1, -2]) }
        checkOpsFixture(fx, "pad_reflect_1d") { F.pad($0[0], [2, 3], mode: .reflect) }
        checkOpsFixture(fx, "pad_reflect_2d") { F.pad($0[0], [3, 1, 2, 3], mode: .reflect) }
        checkOpsFixture(fx, "pad_reflect_3d") { F.pad($0[0], [2, 1, 1, 2, 1, 1], mode: .reflect) }
    }

    func testShapeGradients() {
        let x = randn([2, 3, 4, 5], seed: 1)
        gradcheck([x]) { $0[0].permuted(0, 2, 3, 1) }
        gradcheck([x]) { $0[0].permuted(3, 1, 0, 2) }
        gradcheck([x]) { $0[0].transposed(1, 2) }
        gradcheck([x]) { $0[0].sliced(axis: 3, start: -4, end: 5, step: 2) }
        gradcheck([x]) { $0[0].sliced(axis: 1, start: 1, end: 3) }
        gradcheck([x, randn([2, 2, 4, 5], seed: 2)]) { Tensor.cat($0, axis: 1) }
        gradcheck([x, randn([2, 3, 4, 5], seed: 3)]) { Tensor.stack($0, axis: 2) }
        gradcheck([x]) { F.pad($0[0], [1, 2, 2, 1]) }
        gradcheck([x]) { F.pad($0[0], [3, 2, 2, 3], mode: .reflect) }
        gradcheck([x]) { F.pad($0[0], [1, 1, 1, 2, 1, 0], mode: .reflect) }
        gradcheck([randn([1, 2, 2, 3], seed: 4)]) { $0[0].squeezed(axis: 0).unsqueezed(axis: 2) }
    }

    func testPadReflectByHand() {
        // PyTorch reflect: [1 2 3 4] with (3, 2) -> [4 3 2 | 1 2 3 4 | 3 2] (edge not repeated).
        let x = Tensor([1, 2, 3, 4], shape: [1, 1, 4])
        XCTAssertEqual(F.pad(x, [3, 2], mode: .reflect).array, [4, 3, 2, 1, 2, 3, 4, 3, 2])
        XCTAssertEqual(F.pad(x, [1, 0], value: 9).array, [9, 1, 2, 3, 4])
    }

    func testSliceEdgeCases() {
        let x = Tensor.arange(6)
        XCTAssertEqual(x.sliced(axis: 0, start: 4, end: 2).shape, [0])
        XCTAssertEqual(x.sliced(axis: 0, start: -100, end: 100, step: 4).array, [0, 4])
        XCTAssertEqual(x.sliced(axis: 0, start: -1, end: Int.max).array, [5])
        XCTAssertTrue(Tensor.zeros([2, 3]).squeezed(axis: 0).shape == [2, 3])
    }

    func testLargePermuteCatPadAgainstNaive() {
        // Sizes that take the parallel, tiled paths; checked against index arithmetic.
        let (n, c, h, w) = (2, 37, 33, 41)
        let x = randn([n, c, h, w], seed: 8, requiresGrad: false)
        let p = x.permuted(0, 2, 3, 1)
        let q = x.permuted(0, 3, 1, 2)
        let t = x.transposed(2, 3)
        for (i, j, k, l) in [(0, 0, 0, 0), (1, 36, 32, 40), (1, 5, 17, 3), (0, 20, 1, 39)] {
            XCTAssertEqual(p[i, k, l, j], x[i, j, k, l])
            XCTAssertEqual(q[i, l, j, k], x[i, j, k, l])
            XCTAssertEqual(t[i, j, l, k], x[i, j, k, l])
        }
        XCTAssertEqual(p.permuted(0, 3, 1, 2).array, x.array)
        let y = randn([n, 3, h, w], seed: 9, requiresGrad: false)
        let z = Tensor.cat([x, y], axis: 1)
        XCTAssertEqual(z.sliced(axis: 1, start: 0, end: c).array, x.array)
        XCTAssertEqual(z.sliced(axis: 1, start: c, end: c + 3).array, y.array)
        let r = F.pad(x, [2, 2, 2, 2], mode: .reflect)
        XCTAssertEqual(r[1, 4, 0, 0], x[1, 4, 2, 2])
        XCTAssertEqual(r[1, 4, h + 3, w + 3], x[1, 4, h - 3, w - 3])
        XCTAssertEqual(r.sliced(axis: 2, start: 2, end: h + 2).sliced(axis: 3, start: 2, end: w + 2).array, x.array)
    }

    func testReshapeExpandFlattenGradients() {
        gradcheck([randn([2, 3, 4], seed: 31)]) { $0[0].reshaped([4, -1]) * $0[0].reshaped([4, 6]) }
        gradcheck([randn([3, 1], seed: 32)]) { $0[0].expanded(to: [2, 3, 5]) }
        gradcheck([randn([2, 3, 4, 5], seed: 33)]) { $0[0].flattened(from: 1) }
        gradcheck([randn([2, 3, 4], seed: 34)]) { $0[0].mean().reshaped([1]) }
    }
}
