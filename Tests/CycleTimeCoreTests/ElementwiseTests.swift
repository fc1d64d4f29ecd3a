import XCTest
@testable import CycleTimeCore
import TestSupport

final class ElementwiseTests: XCTestCase {
    func testBroadcastAddSubMulDivGradients() {
        let a = randn([2, 3, 4], seed: 1)
        let b = randn([3, 1], seed: 2)
        gradcheck([a, b]) { x in x[0] + x[1] }
        gradcheck([a, b]) { x in x[0] - x[1] }
        gradcheck([a, b]) { x in x[0] * x[1] }
        let d = randn([1, 4], seed: 3)
        for i in 0..<d.count { d.data[i] = 1.5 + abs(d.data[i]) }
        gradcheck([a, d]) { x in x[0] / x[1] }
        gradcheck([a]) { x in -x[0] }
    }

    func testBroadcastValues() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        let b = Tensor([10, 20, 30], shape: [3])
        XCTAssertEqual((a + b).array, [11, 22, 33, 14, 25, 36])
        let c = Tensor([100, 200], shape: [2, 1])
        XCTAssertEqual((a * c).array, [100, 200, 300, 800, 1000, 1200])
    }

    func testGraphIsReleasedAfterBackward() {
        let a = randn([4], seed: 1)
        let y = (a * a).sum()
        y.backward()
        XCTAssertNil(y.gradFn)
        XCTAssertEqual(a.grad!.array, a.array.map { 2 * $0 })
        // Gradients accumulate.
        (a * a).sum().backward()
        XCTAssertEqual(a.grad!.array, a.array.map { 4 * $0 })
    }
}
