import XCTest
@testable import CycleTimeCore
import TestSupport

final class BroadcastTests: XCTestCase {
    func testBroadcastShapesFollowNumPyRules() {
        XCTAssertEqual(broadcastShapes([3, 1], [1, 4]), [3, 4])
        XCTAssertEqual(broadcastShapes([2, 3, 4], [4]), [2, 3, 4])
        XCTAssertEqual(broadcastShapes([], [2, 2]), [2, 2])
        XCTAssertEqual(broadcastShapes([5, 1, 3], [2, 1]), [5, 2, 3])
        XCTAssertEqual(broadcastShapes([0, 1], [1, 3]), [0, 3])
    }

    func testExpandCopiesAlongBroadcastDimensions() {
        let x = Tensor([1, 2], shape: [2, 1])
        XCTAssertEqual(expandKernel(x, to: [2, 3]).array, [1, 1, 1, 2, 2, 2])
        XCTAssertEqual(expandKernel(Tensor([1, 2, 3], shape: [3]), to: [2, 3]).array, [1, 2, 3, 1, 2, 3])
        XCTAssertTrue(expandKernel(x, to: [2, 1]) === x, "no copy when the shape already matches")
    }

    func testUnbroadcastSumsOverEveryBroadcastDimension() {
        let g = Tensor((0..<24).map(Float.init), shape: [2, 3, 4])
        XCTAssertEqual(unbroadcast(g, to: [4]).array, [60, 66, 72, 78])
        XCTAssertEqual(unbroadcast(g, to: [3, 1]).array, [60, 92, 124])
        XCTAssertEqual(unbroadcast(g, to: [2, 1, 4]).array, [12, 15, 18, 21, 48, 51, 54, 57])
        XCTAssertEqual(unbroadcast(g, to: []).array, [276])
        XCTAssertTrue(unbroadcast(g, to: [2, 3, 4]) === g)
    }

    func testBinaryOpsBroadcastScalarsRowsAndColumns() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        XCTAssertEqual(broadcastBinary(a, Tensor(scalar: 10), { $0 + $1 }).array, [11, 12, 13, 14, 15, 16])
        XCTAssertEqual(broadcastBinary(Tensor(scalar: 10), a, { $0 - $1 }).array, [9, 8, 7, 6, 5, 4])
        XCTAssertEqual(broadcastBinary(a, Tensor([1, 0, -1], shape: [3]), { $0 * $1 }).array, [1, 0, -3, 4, 0, -6])
        XCTAssertEqual(broadcastBinary(a, Tensor([1, 2], shape: [2, 1]), { $0 / $1 }).array, [1, 2, 3, 2, 2.5, 3])
        XCTAssertEqual(broadcastBinary(Tensor([1, 2], shape: [2, 1]), Tensor([10, 20], shape: [1, 2]), { $0 + $1 }).array,
                       [11, 21, 12, 22])
    }
}
