import XCTest
@testable import CycleTimeCore
import TestSupport

final class LinalgTests: XCTestCase {
    func testMatmulGradients() {
        gradcheck([randn([3, 4], seed: 1), randn([4, 5], seed: 2)]) { x in x[0].matmul(x[1]) }
        gradcheck([randn([2, 3, 4], seed: 1), randn([2, 4, 5], seed: 2)]) { x in x[0].matmul(x[1]) }
        gradcheck([randn([2, 3, 4], seed: 1), randn([4, 5], seed: 2)]) { x in x[0].matmul(x[1]) }
    }
    func testMatmulValues() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        let b = Tensor([1, 0, 0, 1, 1, 1], shape: [3, 2])
        XCTAssertEqual(a.matmul(b).array, [4, 5, 10, 11])
    }
}
