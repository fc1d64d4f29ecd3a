import XCTest
@testable import CycleTimeDetection
import CycleTimeModels
import CycleTimeNN
import TestSupport

final class AVAClipsTests: XCTestCase {
    /// Keyframe at 902 s is frame 61; an 8x8 clip spans range(61 - 32, 61 + 32, 8); at 900 s the
    /// early frames clamp to frame 1.
    func testKeyframeAndClipIndices() {
        let s = AVAClipSampler(frames: 8, interval: 8)
        XCTAssertEqual(s.keyframe(900), 1)
        XCTAssertEqual(s.keyframe(902), 61)
        XCTAssertEqual(s.frameNumbers(902), [29, 37, 45, 53, 61, 69, 77, 85])
        XCTAssertEqual(s.frameNumbers(902, jitter: -3), [26, 34, 42, 50, 58, 66, 74, 82])
        XCTAssertEqual(AVAClipSampler(frames: 4, interval: 16).frameNumbers(900, frameCount: 27000), [1, 1, 1, 17])
        XCTAssertEqual(AVAClipSampler(frames: 4, interval: 16).frameNumbers(1799, frameCount: 27000), [26939, 26955, 26971, 26987])
    }

    /// The per-frame 2D backbone equals the mean of the encoder's outputs on each frame.
    func testFrameAveragedBackboneIsMeanOfFrames() {
        var g = RandomGenerator(seed: 2)
        let enc = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer2"), generator: &g)
        enc.eval()
        let b = FrameAveragedBackbone(encoder: enc)
        let x = randn([1, 3, 2, 32, 32], seed: 4, requiresGrad: false)
        let y = noGrad { b(x) }
        XCTAssertEqual(y.shape, [1, 128, 1, 4, 4])
        let f0 = noGrad { enc(x.sliced(axis: 2, start: 0, end: 1).reshaped([1, 3, 32, 32])) }
        let f1 = noGrad { enc(x.sliced(axis: 2, start: 1, end: 2).reshaped([1, 3, 32, 32])) }
        assertClose(y.reshaped([1, 128, 4, 4]), (f0 + f1) * 0.5, rtol: 1e-5, atol: 1e-6)
    }
}
