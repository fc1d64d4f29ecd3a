import Foundation
import XCTest
@testable import CycleTimeTracking
import CycleTimeCore
import TestSupport

final class GroundTruthPatchTests: XCTestCase {
    func testCutMatchesPyTorch() throws {
        // scripts/fixtures/timecycle.py cuts 40x40 patches from the hash target images with
        // F.affine_grid + F.grid_sample (align_corners, float64 reference).
        let fx = try Fixtures.load("timecycle")
        let image = hashTensor(k: 901, shape: [2, 3, 120, 120], offset: 0, scale: 1.0 / 577.0)
        let patch = GroundTruthPatch.cut(image, theta: fx.t("theta_gt"), size: 40)
        // Values are differences of O(1) noise pixels: an absolute tolerance.
        assertClose(patch, fx.t("patch"), rtol: 1e-5, atol: 5e-5)
    }

    func testMotionScoresByBruteForce() {
        for side in [27, 31] {
            let a = randn([3, side, side], seed: 1, requiresGrad: false)
            let b = randn([3, side, side], seed: 2, requiresGrad: false)
            let scores = GroundTruthPatch.motionScores(target: a, motion: b, gridSize: 9)
            XCTAssertEqual(scores.count, 49)
            let box = side / 9
            for ix in 0..<7 {
                for iy in 0..<7 {
                    var s = 0.0
                    for c in 0..<3 {
                        for y in (iy * box)..<min(iy * box + 3 * box, side) {
                            for x in (ix * box)..<min(ix * box + 3 * box, side) {
                                s += Double(abs(a[c, y, x] - b[c, y, x]))
                            }
                        }
                    }
                    XCTAssertEqual(scores[ix * 7 + iy], s, accuracy: 1e-6 * max(1, s), "window (\(ix), \(iy)) at side \(side)")
                }
            }
        }
    }

    func testTopWindows() {
        let s: [Double] = [5, 1, 9, 9, 3, 7]
        XCTAssertEqual(GroundTruthPatch.topWindows(s, k: 3), [5, 2, 3])
        XCTAssertEqual(GroundTruthPatch.topWindows(s, k: 10), [1, 4, 0, 5, 2, 3])
    }

    /// Window index, location, jitter, rotation and scale of the sampled thetas stay within the
    /// recipe's ranges, every top-10 window is used, and flipping mirrors x.
    func testSampleThetaRanges() {
        let scores = (0..<49).map { Double(($0 * 37) % 49) }   // a permutation of 0..48
        let top = Set(GroundTruthPatch.topWindows(scores, k: 10))
        let c = GroundTruthPatchConfig()
        for flipped in [false, true] {
            var g = RandomGenerator(seed: 11)
            var seen = Set<Int>()
            var maxAngle = 0.0
            for _ in 0..<600 {
                let th = GroundTruthPatch.sampleTheta(scores: scores, flipped: flipped, config: c, generator: &g)
                let scale = Double(hypot(th[0], th[3]))
                XCTAssertEqual(scale, 1.0 / 3.0, accuracy: 1e-6)
                XCTAssertEqual(th[4], th[0]); XCTAssertEqual(th[1], -th[3])
                let angle = atan2(Double(th[3]), Double(th[0]))
                XCTAssertLessThanOrEqual(abs(angle), Double.pi / 4 + 1e-6)
                maxAngle = max(maxAngle, abs(angle))
                // location in [0, 1] from the translation
                let xloc = (Double(th[2]) / (2.0 / 3.0) + 1) / 2, yloc = (Double(th[5]) / (2.0 / 3.0) + 1) / 2
                XCTAssertTrue(xloc >= -1e-6 && xloc <= 1 + 1e-6 && yloc >= -1e-6 && yloc <= 1 + 1e-6)
                // recover the window: nearest multiple of 1/6 within the jitter (1/12)
                var ix = Int((xloc * 6).rounded()), iy = Int((yloc * 6).rounded())
                XCTAssertLessThanOrEqual(abs(xloc - Double(ix) / 6), 1.0 / 12 + 1e-6)
                XCTAssertLessThanOrEqual(abs(yloc - Double(iy) / 6), 1.0 / 12 + 1e-6)
                if flipped { ix = 6 - ix }
                ix = min(max(ix, 0), 6); iy = min(max(iy, 0), 6)
                let idx = ix * 7 + iy
                XCTAssertTrue(top.contains(idx), "window \(idx) is not among the 10 largest")
                seen.insert(idx)
            }
            XCTAssertEqual(seen, top)
            XCTAssertGreaterThan(maxAngle, 0.7)
        }
    }

    func testMakeIsSeededAndCutsThePatch() {
        let target = randn([2, 3, 54, 54], seed: 3, requiresGrad: false)
        let motion = randn([2, 3, 54, 54], seed: 4, requiresGrad: false)
        var c = GroundTruthPatchConfig()
        c.patchSize = 18
        var g1 = RandomGenerator(seed: 5), g2 = RandomGenerator(seed: 5)
        let (t1, p1) = GroundTruthPatch.make(target: target, motion: motion, flipped: [false, true], config: c, generator: &g1)
        let (t2, p2) = GroundTruthPatch.make(target: target, motion: motion, flipped: [false, true], config: c, generator: &g2)
        XCTAssertEqual(t1.array, t2.array)
        XCTAssertEqual(p1.array, p2.array)
        XCTAssertEqual(g1, g2)
        XCTAssertEqual(p1.shape, [2, 3, 18, 18])
        assertClose(p1, GroundTruthPatch.cut(target, theta: t1, size: 18), rtol: 0, atol: 0)
        // four draws per item
        var g3 = RandomGenerator(seed: 5)
        for _ in 0..<8 { _ = g3.next() }
        XCTAssertEqual(g1, g3)
    }
}
