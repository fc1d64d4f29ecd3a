import Foundation
import CycleTimeCore
import CycleTimeNN

// torchvision's RoIHeads for boxes (models/detection/roi_heads.py, faster_rcnn.py, ops/poolers.py),
// eval mode: MultiScaleRoIAlign with its LevelMapper, TwoMLPHead, FastRCNNPredictor and
// postprocess_detections. Keys: roi_heads.box_head.fc6/fc7.*, roi_heads.box_predictor.cls_score/bbox_pred.*.

/// torchvision's MultiScaleRoIAlign over the levels "0".."3" (output 7x7, sampling_ratio 2,
/// aligned false): each box goes to level floor(4 + log2(sqrt(area) / 224) + 1e-6) clamped to the
/// levels present, whose scale is inferred as 2^round(log2(feature size / image size)).
public struct MultiScaleRoIAlign: Sendable, Equatable {
    public var outputSize = [7, 7]
    public var samplingRatio = 2
    public var canonicalScale: Float = 224
    public var canonicalLevel: Float = 4
    public var eps: Float = 1e-6
    public init() {}

    /// torchvision's _infer_scale: 2^round(log2(feature / image)) from the heights.
    public static func inferScale(featureHeight: Int, imageHeight: Int) -> Float {
        let approx = Float(Double(featureHeight) / Double(imageHeight))
        return Foundation.pow(2, Foundation.log2(approx).rounded(.toNearestOrEven))
    }

    /// torchvision's LevelMapper: per box [K, 4], floor(4 + log2(sqrt(area) / 224) + 1e-6) clamped
    /// to kMin...kMax, minus kMin (float32 as torchvision).
    public func levelIndices(_ boxes: Tensor, kMin: Int, kMax: Int) -> [Int] {
        Boxes.area(boxes).map { area in
            let target = (canonicalLevel + Foundation.log2(area.squareRoot() / canonicalScale) + eps).rounded(.down)
            return Int(min(max(target, Float(kMin)), Float(kMax))) - kMin
        }
    }

    /// Pooled features [sum K_i, C, 7, 7] of `boxes` (per image, image coordinates) from `features`
    /// (finest first); `imageSizes` are the resized images' sizes (the largest height sets the scales).
    public func callAsFunction(_ features: [Tensor], boxes: [Tensor], imageSizes: [(Int, Int)]) -> Tensor {
        let maxH = imageSizes.map(\.0).max() ?? 1
        let scales = features.map { MultiScaleRoIAlign.inferScale(featureHeight: $0.shape[2], imageHeight: maxH) }
        let kMin = Int(-Foundation.log2(scales.first ?? 1)), kMax = Int(-Foundation.log2(scales.last ?? 1))
        let total = boxes.reduce(0) { $0 + $1.shape[0] }
        var rois = [Float]()
        rois.reserveCapacity(total * 5)
        for (i, b) in boxes.enumerated() {
            let p = b.data
            for r in 0..<b.shape[0] { rois += [Float(i), p[r * 4], p[r * 4 + 1], p[r * 4 + 2], p[r * 4 + 3]] }
        }
        let levels = boxes.flatMap { levelIndices($0, kMin: kMin, kMax: kMax) }
        let c = features.first?.shape[1] ?? 0
        // Pooled per level, concatenated in level order, then put back in box order (differentiable
        // w.r.t. the features).
        var pooled: [Tensor] = [], order: [Int] = []
        for (level, f) in features.enumerated() {
            let members = levels.indices.filter { levels[$0] == level }
            if members.isEmpty { continue }
            var sub = [Float]()
            sub.reserveCapacity(members.count * 5)
            for m in members { sub += rois[(m * 5)..<(m * 5 + 5)] }
            pooled.append(F.roiAlign(f, rois: Tensor(sub, shape: [members.count, 5]), outputSize: outputSize,
                                     spatialScale: scales[level], samplingRatio: samplingRatio, aligned: false))
            order += members
        }
        if pooled.isEmpty { return Tensor.zeros([total, c] + outputSize) }
        var position = [Int](repeating: 0, count: total)
        for (j, m) in order.enumerated() { position[m] = j }
        return Tensor.cat(pooled, axis: 0).indexSelect(axis: 0, indices: position)
    }
}

/// torchvision's TwoMLPHead: flatten, fc6 + ReLU, fc7 + ReLU.
public final class TwoMLPHead: Module {
    public let fc6: Linear
    public let fc7: Linear
    public init(inChannels: Int, representationSize: Int, initialize: Bool = true, generator: inout RandomGenerator) {
        fc6 = Linear(inChannels, representationSize, initialize: initialize, generator: &generator)
        fc7 = Linear(representationSize, representationSize, initialize: initialize, generator: &generator)
        super.init()
    }
    public override func callAsFunction(_ x: Tensor) -> Tensor {
        fc7(fc6(x.flattened(from: 1)).relu()).relu()
    }
}

/// torchvision's FastRCNNPredictor: class logits and per-class box deltas.
public final class FastRCNNPredictor: Module {
    public let clsScore: Linear
    public let bboxPred: Linear
    public init(inChannels: Int, numClasses: Int, initialize: Bool = true, generator: inout RandomGenerator) {
        clsScore = Linear(inChannels, numClasses, initialize: initialize, generator: &generator)
        bboxPred = Linear(inChannels, numClasses * 4, initialize: initialize, generator: &generator)
        super.init()
    }
    public override func namedChildren() -> [(String, Module)] { [("cls_score", clsScore), ("bbox_pred", bboxPred)] }
    public func outputs(_ x: Tensor) -> (logits: Tensor, deltas: Tensor) {
        let f = x.flattened(from: 1)
        return (clsScore(f), bboxPred(f))
    }
}

/// The box branch's eval-mode settings (torchvision's defaults).
public struct BoxHeadSettings: Sendable, Equatable {
    public var scoreThreshold: Float = 0.05
    public var nmsThreshold: Float = 0.5
    public var detectionsPerImage = 100
    /// Boxes narrower or lower than this (pixels) are dropped (torchvision's fixed 1e-2).
    public var minSize: Float = 1e-2
    public init() {}
}

/// One image's detections: boxes [K, 4] (x1, y1, x2, y2), scores and labels (1...numClasses-1), in
/// decreasing score order.
public struct Detections {
    public var boxes: Tensor
    public var scores: [Float]
    public var labels: [Int]
    public init(boxes: Tensor, scores: [Float], labels: [Int]) {
        self.boxes = boxes; self.scores = scores; self.labels = labels
    }
}

/// torchvision's RoIHeads (boxes only), eval mode.
public final class BoxRoIHeads: Module {
    public let boxRoIPool: MultiScaleRoIAlign
    public let boxHead: TwoMLPHead
    public let boxPredictor: FastRCNNPredictor
    public var settings: BoxHeadSettings
    public let boxCoder = BoxCoder(weights: [10, 10, 5, 5])

    public init(inChannels: Int, numClasses: Int, representationSize: Int = 1024, settings: BoxHeadSettings,
                initialize: Bool = true, generator: inout RandomGenerator) {
        boxRoIPool = MultiScaleRoIAlign()
        boxHead = TwoMLPHead(inChannels: inChannels * 49, representationSize: representationSize, initialize: initialize, generator: &generator)
        boxPredictor = FastRCNNPredictor(inChannels: representationSize, numClasses: numClasses, initialize: initialize, generator: &generator)
        self.settings = settings
        super.init()
    }

    public override func namedChildren() -> [(String, Module)] { [("box_head", boxHead), ("box_predictor", boxPredictor)] }

    /// Detections per image from the pyramid levels "0".."3" and the proposals (resized-image pixels).
    public func detect(_ features: [Tensor], proposals: [Tensor], imageSizes: [(Int, Int)]) -> [Detections] {
        let pooled = boxRoIPool(features, boxes: proposals, imageSizes: imageSizes)
        let (logits, deltas) = boxPredictor.outputs(boxHead(pooled))
        let all = Tensor.cat(proposals, axis: 0)
        let decoded = boxCoder.decode(deltas, boxes: all)      // [K, C, 4]
        let probs = logits.softmax(axis: 1)
        let c = logits.shape[1]
        var start = 0
        return zip(proposals, imageSizes).map { props, size in
            let k = props.shape[0]
            defer { start += k }
            let boxes = Boxes.clipToImage(decoded.sliced(axis: 0, start: start, end: start + k), height: size.0, width: size.1)
            var candidates: [Int] = [], scores: [Float] = [], labels: [Int] = []
            for r in 0..<k {
                for j in 1..<max(c, 1) where probs.data[(start + r) * c + j] > settings.scoreThreshold {
                    candidates.append(r * c + j); scores.append(probs.data[(start + r) * c + j]); labels.append(j)
                }
            }
            var picked = boxes.reshaped([k * c, 4]).indexSelect(axis: 0, indices: candidates)
            var keep = Boxes.removeSmall(picked, minSize: settings.minSize)
            picked = picked.indexSelect(axis: 0, indices: keep)
            scores = keep.map { scores[$0] }; labels = keep.map { labels[$0] }
            keep = Array(Boxes.batchedNMS(picked, scores: Tensor(scores, shape: [scores.count]), classes: labels,
                                          iouThreshold: settings.nmsThreshold).prefix(settings.detectionsPerImage))
            return Detections(boxes: picked.indexSelect(axis: 0, indices: keep), scores: keep.map { scores[$0] },
                              labels: keep.map { labels[$0] })
        }
    }
}
