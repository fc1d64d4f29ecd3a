import XCTest
@testable import CycleTimeCore
import TestSupport

final class RandomOpsTests: XCTestCase {
    func testSameSeedSameNumbers() {
        var g1 = RandomGenerator(seed: 42), g2 = RandomGenerator(seed: 42), g3 = RandomGenerator(seed: 43)
        let a = Tensor.randn([100], generator: &g1), b = Tensor.randn([100], generator: &g2)
        XCTAssertEqual(a.array, b.array)
        XCTAssertNotEqual(a.array, Tensor.randn([100], generator: &g3).array)
        XCTAssertEqual(Tensor.rand([50], generator: &g1).array, Tensor.rand([50], generator: &g2).array)
        XCTAssertEqual(Tensor.bernoulli([50], p: 0.3, generator: &g1).array,
                       Tensor.bernoulli([50], p: 0.3, generator: &g2).array)
        XCTAssertEqual(g1, g2)
        // Consecutive draws continue the stream (row-major order): two halves equal one whole.
        var h1 = RandomGenerator(seed: 7), h2 = RandomGenerator(seed: 7)
        let whole = Tensor.rand([10], generator: &h1)
        let first = Tensor.rand([5], generator: &h2), second = Tensor.rand([5], generator: &h2)
        XCTAssertEqual(whole.array, first.array + second.array)
    }

    func moments(_ t: Tensor) -> (mean: Double, variance: Double) {
        var s = 0.0, s2 = 0.0
        for i in 0..<t.count { s += Double(t.data[i]); s2 += Double(t.data[i]) * Double(t.data[i]) }
        let m = s / Double(t.count)
        return (m, s2 / Double(t.count) - m * m)
    }

    func testMoments() {
        var g = RandomGenerator(seed: 1)
        let n = 200_000
        // Standard errors with n = 2e5: mean ~ sd/447; tolerances are > 5 standard errors.
        let u = Tensor.rand([n], low: -2, high: 3, generator: &g)
        let mu = moments(u)
        XCTAssertEqual(mu.mean, 0.5, accuracy: 0.02)
        XCTAssertEqual(mu.variance, 25.0 / 12, accuracy: 0.03)
        XCTAssertGreaterThanOrEqual(u.array.min()!, -2)
        XCTAssertLessThan(u.array.max()!, 3)
        let z = Tensor.randn([n], mean: 1.5, std: 2, generator: &g)
        let mz = moments(z)
        XCTAssertEqual(mz.mean, 1.5, accuracy: 0.03)
        XCTAssertEqual(mz.variance, 4, accuracy: 0.08)
        // Fourth central moment of a normal is 3 sigma^4 (checks the shape, not only the spread).
        var m4 = 0.0
        for i in 0..<n { let d = Double(z.data[i]) - mz.mean; m4 += d * d * d * d }
        XCTAssertEqual(m4 / Double(n) / (mz.variance * mz.variance), 3, accuracy: 0.1)
        let b = Tensor.bernoulli([n], p: 0.3, generator: &g)
        XCTAssertTrue(b.array.allSatisfy { $0 == 0 || $0 == 1 })
        XCTAssertEqual(moments(b).mean, 0.3, accuracy: 0.006)
        XCTAssertEqual(Tensor.bernoulli([100], p: 0, generator: &g).array, [Float](repeating: 0, count: 100))
        XCTAssertEqual(Tensor.bernoulli([100], p: 1, generator: &g).array, [Float](repeating: 1, count: 100))
    }

    func testShapes() {
        var g = RandomGenerator(seed: 3)
        XCTAssertEqual(Tensor.rand([2, 3, 4], generator: &g).shape, [2, 3, 4])
        XCTAssertEqual(Tensor.randn([0, 3], generator: &g).count, 0)
        XCTAssertFalse(Tensor.randn([2], generator: &g).requiresGrad)
    }
}
