import XCTest
@testable import CycleTimeCore
import TestSupport

final class TensorTests: XCTestCase {
    func testValuesAreStoredRowMajorWithContiguousStrides() {
        let t = Tensor([0, 1, 2, 3, 4, 5], shape: [2, 3])
        XCTAssertEqual(t.strides, [3, 1])
        XCTAssertEqual(Tensor.contiguousStrides([2, 3, 4]), [12, 4, 1])
        XCTAssertEqual(Tensor.contiguousStrides([]), [])
        XCTAssertEqual(t[1, 0], 3)
        XCTAssertEqual(t[0, 2], 2)
        t[1, 2] = 9
        XCTAssertEqual(t.array, [0, 1, 2, 3, 4, 9])
        XCTAssertEqual(t.count, 6)
        XCTAssertEqual(t.rank, 2)
        XCTAssertEqual(t.size(-1), 3)
        XCTAssertEqual(t.size(0), 2)
    }

    func testConstructorsFillTheRequestedValues() {
        XCTAssertEqual(Tensor.zeros([2, 2]).array, [0, 0, 0, 0])
        XCTAssertEqual(Tensor.ones([3]).array, [1, 1, 1])
        XCTAssertEqual(Tensor.full([2], -4).array, [-4, -4])
        XCTAssertEqual(Tensor.arange(4).array, [0, 1, 2, 3])
        XCTAssertEqual(Tensor.zeros(like: Tensor.ones([2, 5])).shape, [2, 5])
        XCTAssertTrue(Tensor.ones([1], requiresGrad: true).requiresGrad)
        let s = Tensor(scalar: 2.5)
        XCTAssertEqual(s.shape, [])
        XCTAssertEqual(s.count, 1)
        XCTAssertTrue(s.isScalar)
        XCTAssertEqual(s.item(), 2.5)
        let empty = Tensor.zeros([0, 3])
        XCTAssertEqual(empty.count, 0)
        XCTAssertEqual(empty.array, [])
    }

    func testCloneCopiesAndDetachSharesStorage() {
        let x = Tensor([1, 2, 3], shape: [3], requiresGrad: true)
        let c = x.clone(), d = x.detach()
        XCTAssertFalse(c.storage === x.storage)
        XCTAssertTrue(d.storage === x.storage)
        XCTAssertFalse(c.requiresGrad)
        XCTAssertFalse(d.requiresGrad)
        x[0] = 10
        XCTAssertEqual(c.array, [1, 2, 3])
        XCTAssertEqual(d.array, [10, 2, 3])
    }

    func testAssignAndFillOverwriteInPlace() {
        let x = Tensor([1, 2, 3], shape: [3])
        let storage = x.storage
        x.assign(Tensor([4, 5, 6], shape: [3]))
        XCTAssertEqual(x.array, [4, 5, 6])
        x.assign(x)
        XCTAssertEqual(x.array, [4, 5, 6])
        x.fill(7)
        XCTAssertEqual(x.array, [7, 7, 7])
        XCTAssertTrue(x.storage === storage)
    }

    func testRequiringGradMarksALeafAndReturnsIt() {
        let x = Tensor.zeros([2])
        XCTAssertTrue(x.requiringGrad() === x)
        XCTAssertTrue(x.requiresGrad)
        XCTAssertNil(x.gradFn)
        x.requiringGrad(false)
        XCTAssertFalse(x.requiresGrad)
    }

    func testDescriptionShowsShapeFirstValuesAndGradFlag() {
        XCTAssertEqual(Tensor([1, 2.5], shape: [2], requiresGrad: true).description, "Tensor(shape: [2], [1, 2.5], requiresGrad)")
        XCTAssertEqual(Tensor.arange(10).description, "Tensor(shape: [10], [0, 1, 2, 3, 4, 5, 6, 7, ...])")
    }

    func testNormalizeAxisCountsNegativeAxesFromTheEnd() {
        XCTAssertEqual(normalizeAxis(-1, 3), 2)
        XCTAssertEqual(normalizeAxis(-3, 3), 0)
        XCTAssertEqual(normalizeAxis(1, 3), 1)
        XCTAssertEqual(normalizeAxis(0, 0), 0, "a 0-d tensor accepts axis 0")
    }
}
