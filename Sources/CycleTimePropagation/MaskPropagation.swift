import CycleTimeCore
import CycleTimeData
import CycleTimeVideo
import Foundation

/// Propagates a first-frame mask through a sequence of frames.
public enum MaskPropagation {
    /// Label ids of a first-frame mask: its values, sorted (255 = void counts as background 0).
    public static func labelIds(_ mask: [Int]) -> [Int] { Set(mask.map { $0 == 255 ? 0 : $0 }).union([0]).sorted() }

    /// Calls `onFrame(t, ids)` for every frame t >= 1 with the predicted ids at full resolution
    /// (H x W of the first mask). Frames are read one at a time through `frame(t)`; memory is the
    /// context only.
    public static func run(frameCount: Int, frame: (Int) throws -> Image, firstMask: [Int], maskWidth: Int, maskHeight: Int,
                           extractor: FeatureExtractor, options: PropagationOptions,
                           onFrame: (Int, [Int]) throws -> Void) throws {
        let mask = firstMask.map { $0 == 255 ? 0 : $0 }
        let ids = labelIds(mask)
        try runSoft(frameCount: frameCount, frame: frame, extractor: extractor, options: options, firstLabels: { h, w in
            LabelMaps.softOneHot(mask, height: maskHeight, width: maskWidth, ids: ids, gridHeight: h, gridWidth: w)
        }) { t, soft, h, w in
            try onFrame(t, LabelMaps.hardLabels(soft, gridHeight: h, gridWidth: w, ids: ids, height: maskHeight, width: maskWidth))
        }
    }

    /// The generic loop: first-frame soft labels [h*w, L] built on the feature grid by
    /// `firstLabels(h, w)`, then `onFrame(t, soft labels, h, w)` for every frame t >= 1.
    public static func runSoft(frameCount: Int, frame: (Int) throws -> Image, extractor: FeatureExtractor, options: PropagationOptions,
                               firstLabels: (Int, Int) throws -> [Float], onFrame: (Int, [Float], Int, Int) throws -> Void) throws {
        let f0 = try extractor.features(try frame(0), squareSize: options.squareSize)
        let labels0 = try firstLabels(f0.height, f0.width)
        let prop = makePropagator(firstFeatures: f0.values, firstLabels: labels0, height: f0.height, width: f0.width,
                                  channels: f0.channels, options: options)
        for t in 1..<max(frameCount, 1) {
            let img = try frame(t)
            let f = try extractor.features(img, squareSize: options.squareSize)
            guard f.height == f0.height && f.width == f0.width else {
                throw EvaluationError("frame \(t): \(img.width)x\(img.height) gives a \(f.width)x\(f.height) feature grid, frame 0 gives \(f0.width)x\(f0.height)")
            }
            try onFrame(t, prop.step(f.values), f.height, f.width)
        }
    }
}
