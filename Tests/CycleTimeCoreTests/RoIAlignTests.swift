import XCTest
@testable import CycleTimeCore
import TestSupport

final class RoIAlignTests: XCTestCase {
    /// The fixture cases of scripts/fixtures/ava.py: (output size, spatial scale, sampling ratio, aligned).
    static let cases: [([Int], Float, Int, Bool)] = [
        ([2, 3], 0.5, -1, false), ([2, 3], 0.5, -1, true), ([3, 3], 0.5, 2, false),
        ([3, 3], 0.5, 2, true), ([8, 8], 0.25, 0, true), ([4, 5], 1.0, 3, false), ([8, 8], 1.0, -1, true),
    ]

    func testMatchesTorchvision() throws {
        let fx = try Fixtures.load("ava")
        for (i, (size, scale, sr, aligned)) in Self.cases.enumerated() {
            let k = "roi.\(i)"
            let (out, g) = runWithGrad([fx.t("x")], fx.t(k + ".gout")) {
                F.roiAlign($0[0], rois: fx.t("rois"), outputSize: size, spatialScale: scale, samplingRatio: sr, aligned: aligned)
            }
            assertClose(out, fx.t(k + ".out"), rtol: 1e-5, atol: 1e-6, k)
            assertClose(g[0]!, fx.t(k + ".dx"), rtol: 1e-5, atol: 1e-5, k + " dx")
        }
    }

    /// Finite differences w.r.t. the input (RoIAlign is linear in x, so the check is exact up to
    /// rounding), both modes, adaptive and fixed sampling, a box partly outside the map.
    func testGradcheck() {
        let rois = Tensor([0, 0.5, 1.0, 6.5, 5.0, 1, -2.0, 2.0, 3.0, 9.0, 0, 3.2, 3.1, 3.7, 3.4], shape: [3, 5])
        for aligned in [false, true] {
            for sr in [-1, 2] {
                gradcheck([randn([2, 2, 6, 7], seed: 11)]) {
                    F.roiAlign($0[0], rois: rois, outputSize: [2, 3], spatialScale: 1, samplingRatio: sr, aligned: aligned)
                }
            }
        }
    }

    /// By hand: a 1x1 bin over the whole 2x2 map with one sample at its centre (1, 1) without
    /// alignment clamps to the last pixel; aligned, the centre is (0.5, 0.5): the mean of the four.
    func testHandComputed() {
        let x = Tensor([1, 2, 3, 4], shape: [1, 1, 2, 2])
        let rois = Tensor([0, 0, 0, 2, 2], shape: [1, 5])
        XCTAssertEqual(F.roiAlign(x, rois: rois, outputSize: [1, 1], samplingRatio: 1, aligned: false).array, [4])
        XCTAssertEqual(F.roiAlign(x, rois: rois, outputSize: [1, 1], samplingRatio: 1, aligned: true).array, [2.5])
    }
}
