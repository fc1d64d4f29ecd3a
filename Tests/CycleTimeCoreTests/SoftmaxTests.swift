import XCTest
@testable import CycleTimeCore
import TestSupport

final class SoftmaxTests: XCTestCase {
    func testSoftmaxAndLogSoftmaxMatchPyTorch() throws {
        let fx = try Fixtures.load("sampling")
        for (name, log) in [("softmax", false), ("log_softmax", true)] {
            for ax in [1, -1] {
                let k = "sm.\(name).ax\(ax)"
                let (out, g) = runWithGrad([fx.t("sm.x")], fx.t(k + ".gout")) { log ? $0[0].logSoftmax(axis: ax) : $0[0].softmax(axis: ax) }
                assertClose(out, fx.t(k + ".out"), k)
                assertClose(g[0]!, fx.t(k + ".dx"), rtol: 1e-5, atol: 1e-5, k)
            }
        }
    }

    func testNormalizeMatchesPyTorch() throws {
        let fx = try Fixtures.load("sampling")
        for (i, (ax, eps)) in [(1, Float(1e-12)), (1, 0.3), (-1, 1e-12)].enumerated() {
            let k = "norm.\(i)"
            let (out, g) = runWithGrad([fx.t("norm.x")], fx.t(k + ".gout")) { F.normalize($0[0], axis: ax, eps: eps) }
            assertClose(out, fx.t(k + ".out"), k)
            assertClose(g[0]!, fx.t(k + ".dx"), rtol: 1e-5, atol: 1e-5, k)
        }
    }

    func testGradchecks() {
        for ax in [0, 1, 2, -1] {
            gradcheck([randn([3, 4, 5], seed: 1)], eps: 1e-2) { $0[0].softmax(axis: ax) }
            gradcheck([randn([3, 4, 5], seed: 2)], eps: 1e-2) { $0[0].logSoftmax(axis: ax) }
            gradcheck([randn([3, 4, 5], seed: 3)], eps: 1e-3) { F.normalize($0[0], axis: ax) }
        }
        // Some columns below eps (clamped) and some above.
        let x = randn([4, 6], seed: 4, scale: 0.3)
        gradcheck([x], eps: 1e-3) { F.normalize($0[0], axis: 0, eps: 0.6) }
    }

    func testNumericalStability() {
        let x = Tensor([1000, 1001, 1002, -1000, 0, 1000], shape: [2, 3])
        let s = x.softmax(axis: 1), l = x.logSoftmax(axis: 1)
        XCTAssert(s.array.allSatisfy { $0.isFinite } && l.array.allSatisfy { $0.isFinite })
        // Hand values: softmax(0, 1, 2) and log-softmax(0, 1, 2).
        let e = [Float(1), expf(1), expf(2)], z = e.reduce(0, +)
        for j in 0..<3 {
            assertClose(s[0, j], e[j] / z)
            // (x - max is exact here, but logs near 1000 carry float32 rounding of ~6e-5.)
            assertClose(l[0, j], Float(j) - logf(z), rtol: 0, atol: 1e-4)
        }
        // Row (-1000, 0, 1000): softmax (0, 0, 1), log-softmax (-2000, -1000, 0) up to e^-1000.
        XCTAssertEqual(s.array[3...], [0, 0, 1])
        XCTAssertEqual(l.array[3...], [-2000, -1000, 0])
        // Rows of a non-last axis sum to one; a large tensor takes the parallel tiled path.
        let big = randn([3, 700, 40], seed: 5, requiresGrad: false, scale: 5)
        let sb = big.softmax(axis: 1)
        for o in 0..<3 {
            for j in stride(from: 0, to: 40, by: 7) {
                var acc: Float = 0
                for a in 0..<700 { acc += sb[o, a, j] }
                assertClose(acc, 1, rtol: 1e-4)
            }
        }
    }

    func testNormalizeZeroVector() {
        let x = Tensor([0, 0, 3, 4], shape: [2, 2]).requiringGrad()
        let y = F.normalize(x, axis: 1)
        XCTAssertEqual(y.array, [0, 0, 0.6, 0.8])
        y.backward(Tensor([1, 1, 1, 0], shape: [2, 2]))
        // Zero row: g / eps; row (3, 4): g/n - x (g.x)/n^3 = (1/5 - 3*3/125, -4*3/125).
        assertClose(x.grad![0, 0], 1 / Float(1e-12))
        assertClose(x.grad![1, 0], 0.2 - 9.0 / 125)
        assertClose(x.grad![1, 1], -12.0 / 125)
    }
}

extension SoftmaxTests {
    func testParallelPathsMatchSerial() {
        let x = randn([4, 300, 70], seed: 61, requiresGrad: false, scale: 3)
        for ax in [0, 1, -1] {
            assertParallelMatchesSerial([x]) { $0[0].softmax(axis: ax) }
            assertParallelMatchesSerial([x]) { $0[0].logSoftmax(axis: ax) }
            assertParallelMatchesSerial([x]) { F.normalize($0[0], axis: ax) }
        }
    }
}
