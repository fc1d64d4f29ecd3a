import XCTest
@testable import CycleTimeCore
import TestSupport

final class PoolingTests: XCTestCase {
    func check(_ fx: [String: Tensor], _ name: String, _ x: Tensor, _ f: (Tensor) -> Tensor, file: StaticString = #filePath, line: UInt = #line) {
        x.grad = nil
        let y = f(x)
        assertClose(y, fx.t("\(name).y"), rtol: 1e-5, atol: 1e-6, name, file: file, line: line)
        y.backward(fx.t("\(name).gy"))
        assertClose(x.grad!, fx.t("\(name).dx"), rtol: 1e-5, atol: 1e-6, "dx " + name, file: file, line: line)
        x.grad = nil
    }

    func testMaxPoolAgainstPyTorch() throws {
        let fx = try Fixtures.load("conv_pool")
        let x2 = fx.t("x2").requiringGrad(), x3 = fx.t("x3").requiringGrad()
        check(fx, "max_k3s2p1", x2) { F.maxPool2d($0, kernel: [3, 3], stride: [2, 2], padding: [1, 1]) }
        check(fx, "max_k3s2p1_ceil", x2) { F.maxPool2d($0, kernel: [3, 3], stride: [2, 2], padding: [1, 1], ceilMode: true) }
        check(fx, "max_k2s2_ceil", x2) { F.maxPool2d($0, kernel: [2, 2], ceilMode: true) }
        check(fx, "max_k3s3p1_ceil", x2) { F.maxPool2d($0, kernel: [3], stride: [3], padding: [1], ceilMode: true) }
        check(fx, "max_dil", x2) { F.maxPool2d($0, kernel: [3, 2], stride: [1, 2], padding: [1, 1], dilation: [2, 1]) }
        check(fx, "max3d", x3) { F.maxPool3d($0, kernel: [2, 3, 3], stride: [2, 2, 2], padding: [1, 1, 1], ceilMode: true) }
    }

    func testAvgPoolAgainstPyTorch() throws {
        let fx = try Fixtures.load("conv_pool")
        let x2 = fx.t("x2").requiringGrad(), x3 = fx.t("x3").requiringGrad()
        check(fx, "avg_k3s2p1", x2) { F.avgPool2d($0, kernel: [3, 3], stride: [2, 2], padding: [1, 1]) }
        check(fx, "avg_k3s2p1_ceil", x2) { F.avgPool2d($0, kernel: [3, 3], stride: [2, 2], padding: [1, 1], ceilMode: true) }
        check(fx, "avg_k3s2p1_ceil_nopad", x2) {
            F.avgPool2d($0, kernel: [3, 3], stride: [2, 2], padding: [1, 1], ceilMode: true, countIncludePad: false)
        }
        check(fx, "avg_k2s2_ceil", x2) { F.avgPool2d($0, kernel: [2, 2], ceilMode: true) }
        check(fx, "avg_k3s3p1_ceil", x2) { F.avgPool2d($0, kernel: [3, 3], stride: [3, 3], padding: [1, 1], ceilMode: true) }
        check(fx, "avg3d", x3) {
            F.avgPool3d($0, kernel: [2, 3, 3], stride: [2, 2, 2], padding: [1, 1, 1], ceilMode: true, countIncludePad: false)
        }
        check(fx, "avg3d_pad", x3) { F.avgPool3d($0, kernel: [3, 2, 3], stride: [1, 2, 2], padding: [1, 1, 0]) }
    }

    func testAdaptiveAvgPoolAgainstPyTorch() throws {
        let fx = try Fixtures.load("conv_pool")
        let x2 = fx.t("x2").requiringGrad(), x3 = fx.t("x3").requiringGrad()
        check(fx, "adaptive2d", x2) { F.adaptiveAvgPool2d($0, outputSize: [3, 4]) }
        check(fx, "adaptive2d_up", x2) { F.adaptiveAvgPool2d($0, outputSize: [9, 5]) }
        check(fx, "adaptive3d", x3) { F.adaptiveAvgPool3d($0, outputSize: [2, 3, 4]) }
    }

    func testMaxPoolPropagatesNaN() {
        // As in PyTorch: a NaN in a window makes that output NaN.
        let x = Tensor([1, .nan, 3, 4, 5, 6, 7, 8], shape: [1, 1, 2, 4])
        let y = F.maxPool2d(x, kernel: [2, 2])
        XCTAssertTrue(y.data[0].isNaN)
        XCTAssertEqual(y.data[1], 8)
    }

    /// ResNet's 3x3 stride-2 max pool on rows wide enough for the eight-at-a-time path: values and
    /// the gradient's routing (the first maximum in scan order; a NaN wins) equal a direct scan of
    /// every window, with many ties (values from {0, 1, 2}, as after a ReLU), NaNs and -inf.
    func testStride2MaxPoolOnWideRowsFollowsTheScanRuleWithTiesAndNaN() {
        for (h, w, ceil) in [(9, 40, false), (8, 53, true), (5, 71, false)] {
            var generator = RandomGenerator(seed: UInt64(w))
            let values: [Float] = (0..<(2 * h * w)).map { _ in
                let u = generator.nextDouble()
                return u < 0.01 ? .nan : u < 0.02 ? -.infinity : Float(Int(u * 3))
            }
            let x = Tensor(values, shape: [1, 2, h, w], requiresGrad: true)
            let y = F.maxPool2d(x, kernel: [3, 3], stride: [2, 2], padding: [1, 1], ceilMode: ceil)
            let ho = y.shape[2], wo = y.shape[3]
            let gy = Tensor((0..<y.count).map { Float($0 + 1) }, shape: y.shape)
            y.backward(gy)
            var dx = [Float](repeating: 0, count: x.count)
            for plane in 0..<2 {
                for oy in 0..<ho {
                    for ox in 0..<wo {
                        var best = -Float.infinity, bi = -1
                        for ky in 0..<3 {
                            for kx in 0..<3 {
                                let iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx
                                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                                let i = (plane * h + iy) * w + ix
                                if bi < 0 || values[i] > best || values[i].isNaN { best = values[i]; bi = i }
                            }
                        }
                        let o = (plane * ho + oy) * wo + ox
                        let got = y.data[o]
                        XCTAssertTrue(got == best || (got.isNaN && best.isNaN), "w \(w) output (\(plane), \(oy), \(ox)): \(got) vs \(best)")
                        dx[bi] += gy.data[o]
                    }
                }
            }
            XCTAssertEqual(x.grad?.array, dx, "w \(w): gradients go to the first maximum of each window")
        }
    }

    func testOutputSizeRule() {
        // PyTorch: with ceil_mode the last window must start inside the input or left padding.
        XCTAssertEqual(poolOutputSize(6, kernel: 2, pad: 0, stride: 2, dilation: 1, ceilMode: true), 3)
        XCTAssertEqual(poolOutputSize(5, kernel: 2, pad: 0, stride: 2, dilation: 1, ceilMode: true), 3)
        XCTAssertEqual(poolOutputSize(5, kernel: 2, pad: 0, stride: 2, dilation: 1, ceilMode: false), 2)
        XCTAssertEqual(poolOutputSize(5, kernel: 3, pad: 1, stride: 3, dilation: 1, ceilMode: true), 2)
    }

    func testGradchecks() {
        // Distinct values so that the max is not tied under the finite-difference step.
        gradcheck([randn([2, 2, 5, 6], seed: 1)], eps: 1e-3) { F.maxPool2d($0[0], kernel: [3, 3], stride: [2, 2], padding: [1, 1], ceilMode: true) }
        gradcheck([randn([1, 2, 3, 5, 4], seed: 2)], eps: 1e-3) { F.maxPool3d($0[0], kernel: [2, 2, 2], stride: [1, 2, 2], padding: [1, 1, 0]) }
        gradcheck([randn([2, 2, 5, 6], seed: 3)]) {
            F.avgPool2d($0[0], kernel: [3, 3], stride: [2, 2], padding: [1, 1], ceilMode: true, countIncludePad: false)
        }
        gradcheck([randn([1, 2, 3, 5, 4], seed: 4)]) { F.avgPool3d($0[0], kernel: [2, 3, 2], stride: [1, 2, 2], padding: [1, 1, 1]) }
        gradcheck([randn([2, 2, 5, 7], seed: 5)]) { F.adaptiveAvgPool2d($0[0], outputSize: [3, 4]) }
        gradcheck([randn([1, 2, 3, 5, 4], seed: 6)]) { F.adaptiveAvgPool3d($0[0], outputSize: [2, 2, 3]) }
    }
}
