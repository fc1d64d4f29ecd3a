import Foundation
import CycleTimeCore
import CycleTimeNN

// Faster R-CNN's training losses as torchvision 0.29 computes them (models/detection/_utils.py,
// rpn.py, roi_heads.py): the Matcher, the BalancedPositiveNegativeSampler, the RPN's objectness
// (BCE) and box (smooth L1, beta 1/9) losses over sampled anchors, and the Fast R-CNN classifier
// (cross entropy) and box (smooth L1, beta 1/9) losses over sampled proposals with the ground-truth
// boxes appended. The samplers' random choices come through `choose` (torch.randperm(n)[:k]).

/// One image's ground truth: boxes [G, 4] (x1, y1, x2, y2, pixels of the image) and their labels
/// (1...numClasses-1).
public struct DetectionTarget {
    public var boxes: Tensor
    public var labels: [Int]
    public init(boxes: Tensor, labels: [Int]) {
        self.boxes = boxes; self.labels = labels
    }
}

/// torchvision's four training losses (the keys of its loss dict).
public struct FasterRCNNLosses {
    /// loss_classifier, loss_box_reg, loss_objectness, loss_rpn_box_reg.
    public var classifier: Tensor
    public var boxReg: Tensor
    public var objectness: Tensor
    public var rpnBoxReg: Tensor
    /// Their sum (what torchvision's references back-propagate).
    public var total: Tensor { classifier + boxReg + objectness + rpnBoxReg }
}

/// The samplers' random choice: `k` distinct indices of 0..<n in random order (torch.randperm(n)[:k]).
public typealias SampleChoice = (_ n: Int, _ k: Int) -> [Int]

/// A SampleChoice from `generator` (a shuffled 0..<n, its first k).
public func randomChoice(_ n: Int, _ k: Int, generator: inout RandomGenerator) -> [Int] {
    var all = Array(0..<n)
    generator.shuffle(&all)
    return Array(all.prefix(k))
}

/// torchvision's det_utils.Matcher: each prediction (column of a [G, P] quality matrix) takes the
/// ground truth of highest quality (the first on ties), or belowLowThreshold (-1) under `low`, or
/// betweenThresholds (-2) in [low, high). With allowLowQualityMatches, every prediction whose
/// quality equals some ground truth's best keeps that best match however low.
public struct Matcher: Sendable, Equatable {
    public static let belowLowThreshold = -1
    public static let betweenThresholds = -2
    public var high: Float
    public var low: Float
    public var allowLowQualityMatches: Bool

    public init(high: Float, low: Float, allowLowQualityMatches: Bool) {
        precondition(low <= high, "Matcher: low threshold \(low) above high \(high)")
        self.high = high; self.low = low; self.allowLowQualityMatches = allowLowQualityMatches
    }

    public func callAsFunction(_ quality: Tensor) -> [Int] {
        precondition(quality.rank == 2 && quality.shape[0] > 0, "Matcher: needs a [G, P] quality matrix with G > 0, got \(quality.shape)")
        let g = quality.shape[0], p = quality.shape[1], q = quality.data
        var best = [Float](repeating: -.infinity, count: p), all = [Int](repeating: 0, count: p)
        for j in 0..<p {
            for i in 0..<g where q[i * p + j] > best[j] { best[j] = q[i * p + j]; all[j] = i }
        }
        var matches = (0..<p).map { j in best[j] < low ? Matcher.belowLowThreshold : (best[j] < high ? Matcher.betweenThresholds : all[j]) }
        if allowLowQualityMatches {
            for i in 0..<g {
                var top = -Float.infinity
                for j in 0..<p { top = max(top, q[i * p + j]) }
                for j in 0..<p where q[i * p + j] == top { matches[j] = all[j] }
            }
        }
        return matches
    }
}

/// torchvision's BalancedPositiveNegativeSampler: per image at most batchSizePerImage labels, a
/// positiveFraction of them positive (label >= 1) if there are enough, the rest negative (label
/// 0); -1 is never sampled. Returns the sampled positive and negative indices, each sorted (the
/// masks torchvision turns back into indices).
public struct BalancedPositiveNegativeSampler: Sendable, Equatable {
    public var batchSizePerImage: Int
    public var positiveFraction: Double

    public init(batchSizePerImage: Int, positiveFraction: Double) {
        self.batchSizePerImage = batchSizePerImage; self.positiveFraction = positiveFraction
    }

    public func sample(_ labels: [Int], choose: SampleChoice) -> (positive: [Int], negative: [Int]) {
        let positive = labels.indices.filter { labels[$0] >= 1 }, negative = labels.indices.filter { labels[$0] == 0 }
        let numPos = min(positive.count, Int((Double(batchSizePerImage) * positiveFraction).rounded(.down)))
        let numNeg = min(negative.count, batchSizePerImage - numPos)
        let pos = choose(positive.count, numPos).map { positive[$0] }
        let neg = choose(negative.count, numNeg).map { negative[$0] }
        return (pos.sorted(), neg.sorted())
    }
}

/// The training settings of the two samplers and matchers (torchvision's defaults).
public struct RCNNTrainingSettings: Sendable, Equatable {
    public var rpnMatcher = Matcher(high: 0.7, low: 0.3, allowLowQualityMatches: true)
    public var rpnSampler = BalancedPositiveNegativeSampler(batchSizePerImage: 256, positiveFraction: 0.5)
    public var boxMatcher = Matcher(high: 0.5, low: 0.5, allowLowQualityMatches: false)
    public var boxSampler = BalancedPositiveNegativeSampler(batchSizePerImage: 512, positiveFraction: 0.25)
    /// smooth_l1_loss's beta of both box losses.
    public var smoothL1Beta: Float = 1.0 / 9
    public init() {}
}

/// Per prediction (boxes [P, 4]) against ground truth [G, 4]: the label (1 matched, 0 background,
/// -1 between thresholds, or the ground truth's label with `gtLabels`) and the matched ground-truth
/// box [P, 4] (box 0 for unmatched ones; all background without ground truth).
func assignTargets(_ boxes: Tensor, gtBoxes: Tensor, gtLabels: [Int]?, matcher: Matcher) -> (labels: [Int], matched: Tensor) {
    let p = boxes.shape[0]
    if gtBoxes.shape[0] == 0 { return ([Int](repeating: 0, count: p), Tensor.zeros([p, 4])) }
    let m = matcher(Boxes.iou(gtBoxes, boxes))
    let labels = m.map { j in
        j == Matcher.belowLowThreshold ? 0 : (j == Matcher.betweenThresholds ? -1 : (gtLabels.map { $0[j] } ?? 1))
    }
    return (labels, gtBoxes.indexSelect(axis: 0, indices: m.map { max($0, 0) }))
}

extension RCNNTransform {
    /// resize_boxes: boxes of an image of size `original` (h, w) in the resized image `resized`,
    /// x * (resized w / original w), y * (resized h / original h) (float32 ratios as torchvision).
    public static func resizeBoxes(_ boxes: Tensor, from original: (Int, Int), to resized: (Int, Int)) -> Tensor {
        let rh = Float(resized.0) / Float(original.0), rw = Float(resized.1) / Float(original.1)
        let out = boxes.detach().clone()
        for i in 0..<out.count { out.data[i] *= i % 2 == 0 ? rw : rh }
        return out
    }
}

extension RegionProposalNetwork {
    /// Training: the proposals (training top-n counts) and the RPN losses (objectness BCE over the
    /// sampled anchors, smooth L1 over the sampled positives divided by the number sampled) against
    /// `gtBoxes` per image (resized-image pixels).
    public func losses(_ features: [Tensor], batchSize: (Int, Int), imageSizes: [(Int, Int)], gtBoxes: [Tensor],
                       settings training: RCNNTrainingSettings, choose: SampleChoice)
        -> (proposals: [Tensor], objectness: Tensor, boxReg: Tensor) {
        let outs = head.outputs(features)
        let proposals = proposals(outputs: outs, batchSize: batchSize, imageSizes: imageSizes, training: true).map(\.boxes)
        // concat_box_prediction_layers: per image, levels in order, each (y, x, anchor).
        var logits: [Tensor] = [], deltas: [Tensor] = [], anchors: [Tensor] = []
        for (level, (obj, del)) in outs.enumerated() {
            let n = obj.shape[0], a = obj.shape[1], h = obj.shape[2], w = obj.shape[3]
            logits.append(obj.permuted(0, 2, 3, 1).reshaped([n, h * w * a]))
            deltas.append(del.reshaped([n, a, 4, h, w]).permuted(0, 3, 4, 1, 2).reshaped([n, h * w * a, 4]))
            anchors.append(anchorGenerator.anchors(level: level, grid: (h, w), imageSize: batchSize))
        }
        let n = imageSizes.count
        let allLogits = Tensor.cat(logits, axis: 1).reshaped([-1]), allDeltas = Tensor.cat(deltas, axis: 1).reshaped([-1, 4])
        let imageAnchors = Tensor.cat(anchors, axis: 0), perImage = imageAnchors.shape[0]
        var labels: [Int] = [], targets: [Tensor] = [], positive: [Int] = [], negative: [Int] = []
        for i in 0..<n {
            let (l, matched) = assignTargets(imageAnchors, gtBoxes: gtBoxes[i], gtLabels: nil, matcher: training.rpnMatcher)
            let (pos, neg) = training.rpnSampler.sample(l, choose: choose)
            positive += pos.map { $0 + i * perImage }; negative += neg.map { $0 + i * perImage }
            labels += l
            targets.append(boxCoder.encode(reference: matched, proposals: imageAnchors))
        }
        let sampled = positive + negative
        let allTargets = Tensor.cat(targets, axis: 0)
        let boxReg = F.smoothL1Loss(allDeltas.indexSelect(axis: 0, indices: positive), allTargets.indexSelect(axis: 0, indices: positive),
                                    beta: training.smoothL1Beta, reduction: .sum) / Float(sampled.count)
        let objectness = F.binaryCrossEntropyWithLogits(allLogits.indexSelect(axis: 0, indices: sampled),
                                                        Tensor(sampled.map { Float(labels[$0]) }, shape: [sampled.count]))
        return (proposals, objectness, boxReg)
    }
}

extension BoxRoIHeads {
    /// Training: the proposals (per image, resized-image pixels) with the ground-truth boxes
    /// appended, matched and sampled; the classifier's cross entropy over the sampled ones and the
    /// smooth L1 of the positives' deltas of their class, divided by the number sampled.
    public func losses(_ features: [Tensor], proposals: [Tensor], imageSizes: [(Int, Int)], targets: [DetectionTarget],
                       settings training: RCNNTrainingSettings, choose: SampleChoice) -> (classifier: Tensor, boxReg: Tensor) {
        var sampledBoxes: [Tensor] = [], labels: [Int] = [], regression: [Tensor] = []
        for (props, target) in zip(proposals, targets) {
            let all = Tensor.cat([props.detach(), target.boxes], axis: 0)
            let (l, matched) = assignTargets(all, gtBoxes: target.boxes, gtLabels: target.labels, matcher: training.boxMatcher)
            let (pos, neg) = training.boxSampler.sample(l, choose: choose)
            let keep = (pos + neg).sorted()
            let boxes = all.indexSelect(axis: 0, indices: keep)
            sampledBoxes.append(boxes)
            labels += keep.map { l[$0] }
            regression.append(boxCoder.encode(reference: matched.indexSelect(axis: 0, indices: keep), proposals: boxes))
        }
        let pooled = boxRoIPool(features, boxes: sampledBoxes, imageSizes: imageSizes)
        let (logits, deltas) = boxPredictor.outputs(boxHead(pooled))
        let c = logits.shape[1]
        let classifier = F.crossEntropy(logits, Tensor(labels.map(Float.init), shape: [labels.count]))
        let positive = labels.indices.filter { labels[$0] > 0 }
        let predicted = deltas.reshaped([-1, 4]).indexSelect(axis: 0, indices: positive.map { $0 * c + labels[$0] })
        let boxReg = F.smoothL1Loss(predicted, Tensor.cat(regression, axis: 0).indexSelect(axis: 0, indices: positive),
                                    beta: training.smoothL1Beta, reduction: .sum) / Float(labels.count)
        return (classifier, boxReg)
    }
}

extension FasterRCNN {
    /// The batch, each image's resized size and its ground truth in the resized image.
    public func trainingBatch(_ images: [Tensor], targets: [DetectionTarget]) -> (batch: Tensor, sizes: [(Int, Int)], targets: [DetectionTarget]) {
        precondition(images.count == targets.count, "FasterRCNN.losses: \(images.count) images but \(targets.count) targets")
        let (batch, sizes) = config.transform.batch(images)
        let resized = zip(zip(images, sizes), targets).map { pair, t in
            DetectionTarget(boxes: RCNNTransform.resizeBoxes(t.boxes, from: (pair.0.shape[1], pair.0.shape[2]), to: pair.1), labels: t.labels)
        }
        return (batch, sizes, resized)
    }

    /// torchvision's training forward: the four losses of RGB images [3, h, w] in [0, 1] against
    /// their ground truth (image pixels), the samplers choosing through `choose` (RPN: per image
    /// positives then negatives; then the box head the same).
    public func losses(_ images: [Tensor], targets: [DetectionTarget], settings training: RCNNTrainingSettings = RCNNTrainingSettings(),
                       choose: SampleChoice) -> FasterRCNNLosses {
        let (batch, sizes, resized) = trainingBatch(images, targets: targets)
        let features = backbone.features(batch)
        let rpnOut = rpn.losses(features, batchSize: (batch.shape[2], batch.shape[3]), imageSizes: sizes,
                                gtBoxes: resized.map(\.boxes), settings: training, choose: choose)
        let box = roiHeads.losses(Array(features.prefix(4)), proposals: rpnOut.proposals, imageSizes: sizes, targets: resized,
                                  settings: training, choose: choose)
        return FasterRCNNLosses(classifier: box.classifier, boxReg: box.boxReg, objectness: rpnOut.objectness, rpnBoxReg: rpnOut.boxReg)
    }

    /// The same with the samplers' choices drawn from `generator`.
    public func losses(_ images: [Tensor], targets: [DetectionTarget], settings training: RCNNTrainingSettings = RCNNTrainingSettings(),
                       generator: inout RandomGenerator) -> FasterRCNNLosses {
        losses(images, targets: targets, settings: training) { randomChoice($0, $1, generator: &generator) }
    }
}
