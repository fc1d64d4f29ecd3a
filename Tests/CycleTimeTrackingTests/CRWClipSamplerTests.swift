import Foundation
import XCTest
@testable import CycleTimeTracking
import CycleTimeCore
import TestSupport

final class CRWClipSamplerTests: XCTestCase {
    func testRandomResizedCropBoxesFollowTorchvisionRules() {
        var g = RandomGenerator(seed: 1)
        var fallbacks = 0
        for _ in 0..<2000 {
            // 300x400: a draw with aspect below ~1.07 does not fit (h > 300); after 10 such draws
            // torchvision takes the central crop with the ratio clamped to 1.3 (390x300)
            let b = CRWClipSampler.randomResizedCropBox(height: 300, width: 400, scale: 0.8...0.95, ratio: 0.7...1.3, generator: &g)
            XCTAssertTrue(b.top >= 0 && b.left >= 0 && b.top + b.height <= 300 && b.left + b.width <= 400, "\(b)")
            if b == CropBox(top: 0, left: 5, height: 300, width: 390) { fallbacks += 1; continue }
            let area = Double(b.height * b.width) / 120_000
            XCTAssertTrue(area > 0.8 - 0.01 && area < 0.95 + 0.01, "area fraction \(area)")
            let aspect = Double(b.width) / Double(b.height)
            XCTAssertTrue(aspect > 1.0 && aspect < 1.3 + 0.01, "aspect \(aspect)")
        }
        XCTAssertTrue(fallbacks > 0 && fallbacks < 2000, "\(fallbacks) fallbacks")
        for _ in 0..<2000 {
            let b = CRWClipSampler.randomResizedCropBox(height: 64, width: 64, scale: 0.7...0.9, ratio: 0.75...(4.0 / 3.0), generator: &g)
            XCTAssertTrue(b.top >= 0 && b.left >= 0 && b.top + b.height <= 64 && b.left + b.width <= 64, "\(b)")
            let area = Double(b.height * b.width) / 4096
            XCTAssertTrue(area > 0.7 - 0.03 && area < 0.9 + 0.03, "area fraction \(area)")
        }
        // nothing fits a 10x1000 strip: the central crop with the ratio clamped to 1.3
        let f = CRWClipSampler.randomResizedCropBox(height: 10, width: 1000, scale: 0.9...1.0, ratio: 0.7...1.3, generator: &g)
        XCTAssertEqual(f, CropBox(top: 0, left: (1000 - 13) / 2, height: 10, width: 13))
    }

    func testResizeCropMatchesInterpolate() {
        let img = randn([3, 20, 30], seed: 3, requiresGrad: false)
        let box = CropBox(top: 3, left: 5, height: 11, width: 17)
        let out = Tensor(uninitialized: [3, 16, 9])
        CRWClipSampler.resizeCrop(img.data, channels: 3, height: 20, width: 30, box: box, outHeight: 16, outWidth: 9, into: out.data)
        let crop = img.sliced(axis: 1, start: 3, end: 14).sliced(axis: 2, start: 5, end: 22).reshaped([1, 3, 11, 17])
        let ref = F.interpolate(crop, size: [16, 9], mode: .bilinear, alignCorners: false)
        assertClose(out.reshaped([1, 3, 16, 9]), ref, rtol: 1e-6, atol: 1e-6)
    }

    /// Frames whose channels hold the x and y coordinates: the 7x7 grid comes out row-major, each
    /// patch covers a window of the frame, and the same seed gives the same patches.
    func testPatchGridLayoutAndDeterminism() {
        let t = 4, h = 240, w = 320
        let frames = Tensor(uninitialized: [t, 3, h, w])
        for f in 0..<t {
            for y in 0..<h {
                for x in 0..<w {
                    frames[f, 0, y, x] = Float(x) / Float(w)
                    frames[f, 1, y, x] = Float(y) / Float(h)
                    frames[f, 2, y, x] = Float(f)
                }
            }
        }
        let sampler = CRWClipSampler()
        var g1 = RandomGenerator(seed: 5), g2 = RandomGenerator(seed: 5), g3 = RandomGenerator(seed: 6)
        let p = sampler.patches(frames: frames, generator: &g1)
        XCTAssertEqual(p.shape, [4, 49, 3, 64, 64])
        XCTAssertEqual(p.array, sampler.patches(frames: frames, generator: &g2).array)
        XCTAssertNotEqual(p.array, sampler.patches(frames: frames, generator: &g3).array)
        let means = p.mean(axes: [3, 4])                                    // [T, 49, 3]
        for f in 0..<t {
            for gy in 0..<7 {
                for gx in 0..<7 {
                    let n = gy * 7 + gx
                    XCTAssertEqual(means[f, n, 2], Float(f), accuracy: 1e-5)
                    if gx > 0 { XCTAssertGreaterThan(means[f, n, 0], means[f, n - 1, 0]) }
                    if gy > 0 { XCTAssertGreaterThan(means[f, n, 1], means[f, n - 7, 1]) }
                }
            }
            // the grid spans most of the frame crop (>= 0.8 of the area): the patches' x range
            let xs = (0..<49).map { means[f, $0, 0] }
            XCTAssertGreaterThan(xs.max()! - xs.min()!, 0.5)
        }
        // frames are cropped independently: the grids of two frames differ
        XCTAssertNotEqual((0..<49).map { means[0, $0, 0] }, (0..<49).map { means[1, $0, 0] })
        var g4 = RandomGenerator(seed: 5)
        let batch = sampler.patches(clips: Tensor.stack([frames, frames], axis: 0), generator: &g4)
        XCTAssertEqual(batch.shape, [2, 4, 49, 3, 64, 64])
        XCTAssertEqual(batch.sliced(axis: 0, start: 0, end: 1).array, p.array)
    }
}
