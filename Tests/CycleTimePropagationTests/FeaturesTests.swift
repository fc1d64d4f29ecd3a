import CycleTimeCore
import CycleTimeData
import CycleTimeModels
import CycleTimePropagation
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest

final class FeaturesTests: XCTestCase {
    /// The test's subset of davis-mini: the first 5 frames of each sequence, squashed to 256x256
    /// for the encoder (`--square-size 256`; masks are scored at 480p), a few seconds a precision.
    /// The whole set at 480p (about 200 frames, minutes a precision) is run by hand:
    /// `cycletime propagate davis --precision bf16 ...` + `cycletime eval davis`.
    static let framesPerSequence = 5, squareSize = 256

    /// J&F (mean of J and boundary F over every object and every propagated frame) of first-frame
    /// labels propagated through the first `frames` frames of each davis-mini sequence.
    func jAndF(_ root: String, frames: Int, extractor: FeatureExtractor) throws -> Double {
        let ds = try DAVISDataset(root: root, set: "val", resolution: "480p")
        var options = PropagationOptions()
        options.squareSize = Self.squareSize
        var j: [Double] = [], f: [Double] = []
        for name in ds.sequenceNames {
            let seq = try ds.sequence(name)
            let first = try Image.readPNG(try XCTUnwrap(seq.annotationPaths[0]))
            let objects = Int(first.pixels.filter { $0 != 255 }.max() ?? 0)
            try MaskPropagation.run(frameCount: min(frames, seq.frameCount), frame: { try Image.read(seq.framePaths[$0]) },
                                    firstMask: first.pixels.map(Int.init), maskWidth: first.width, maskHeight: first.height,
                                    extractor: extractor, options: options) { t, ids in
                guard let gtPath = seq.annotationPaths[t], objects > 0 else { return }
                let gt = try Image.readPNG(gtPath)
                for o in 1...objects {
                    let g = gt.pixels.map { Int($0) == o }, p = ids.map { $0 == o }
                    j.append(DAVISMetrics.jaccard(g, p))
                    f.append(DAVISMetrics.boundaryF(g, p, width: first.width, height: first.height))
                }
            }
        }
        XCTAssertFalse(j.isEmpty)
        return (j.reduce(0, +) / Double(j.count) + f.reduce(0, +) / Double(f.count)) / 2
    }

    /// Acceptance 3 of #17: propagation with the encoder in autocast bf16 (`--precision bf16`)
    /// scores within 0.005 J&F of float32 on davis-mini, for a random-init resnet18 (layer3,
    /// stride 8, the CRW procedure); the features do differ (bf16 ran).
    func testBF16PropagationJAndFIsWithin0005OfFP32ForARandomInitEncoder() throws {
        let root = try requireSharedData("davis-mini")
        try XCTSkipUnless(OneDNN.hasNativeBF16, "this CPU has no AVX512-BF16: bf16 is refused here")
        var g = RandomGenerator(seed: 0)
        let model = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer3", strides: [1, 2, 1, 1]), initialize: true, generator: &g)
        model.eval()
        let f32 = try jAndF(root, frames: Self.framesPerSequence, extractor: .encoder(model, l2Normalize: true))
        let bf16 = try jAndF(root, frames: Self.framesPerSequence, extractor: .encoder(model, l2Normalize: true, precision: .bf16))
        print("davis-mini (first \(Self.framesPerSequence) frames of each sequence at \(Self.squareSize)^2), random-init resnet18: J&F fp32 \(f32), bf16 \(bf16)")
        XCTAssertEqual(bf16, f32, accuracy: 0.005)
        let img = try Image.read(try DAVISDataset(root: root, set: "val", resolution: "480p").sequence("dog").framePaths[0])
        XCTAssertNotEqual(try FeatureExtractor.encoder(model, l2Normalize: true, precision: .bf16).features(img, squareSize: Self.squareSize).values,
                          try FeatureExtractor.encoder(model, l2Normalize: true).features(img, squareSize: Self.squareSize).values)
    }
}
