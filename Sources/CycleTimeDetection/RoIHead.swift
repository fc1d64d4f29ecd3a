import CycleTimeNN
import Foundation

/// Action classes <-> output slots: slot 0 is unused (mmaction2's background slot), class i of the
/// list is slot i + 1. The list is the label map's ids, or a custom subset (mmaction2's
/// `custom_classes`).
public struct AVAClassIndex: Sendable, Equatable {
    public let ids: [Int]
    private let slotOf: [Int: Int]
    public init(ids: [Int]) {
        self.ids = ids
        slotOf = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0 + 1) })
    }
    /// Outputs of the classifier: classes + 1.
    public var outputs: Int { ids.count + 1 }
    public func slot(of id: Int) -> Int? { slotOf[id] }
    public func id(ofSlot s: Int) -> Int { ids[s - 1] }

    /// Multi-hot targets [K, classes + 1] (slot 0 stays 0); actions outside the class list are ignored.
    public func targets(_ actions: [[Int]]) -> Tensor {
        let t = Tensor.zeros([actions.count, outputs])
        for (k, a) in actions.enumerated() { for id in a { if let s = slot(of: id) { t.data[k * outputs + s] = 1 } } }
        return t
    }
}

/// A region the RoI head is trained on: a ground-truth box, or a proposal that took a
/// ground-truth box's labels.
public struct TrainingRegion: Sendable, Equatable {
    public var box: AVABox
    public var actions: [Int]
    public var fromProposal: Bool
}

/// Training regions of a keyframe: every ground-truth box, plus each proposal scoring at least
/// `minScore` whose best-overlapping ground-truth box (first on ties) has IoU >= `minIoU`, with
/// that box's actions. Other proposals are not used.
public func trainingRegions(groundTruth: [LabeledBox], proposals: [ScoredBox], minScore: Double = 0.9, minIoU: Double = 0.9) -> [TrainingRegion] {
    var out = groundTruth.map { TrainingRegion(box: $0.box, actions: $0.actions, fromProposal: false) }
    guard !groundTruth.isEmpty else { return out }
    for p in proposals where p.score >= minScore {
        var best = 0, bestIoU = -1.0
        for (j, g) in groundTruth.enumerated() { let v = p.box.iou(g.box); if v > bestIoU { bestIoU = v; best = j } }
        if bestIoU >= minIoU { out.append(TrainingRegion(box: p.box, actions: groundTruth[best].actions, fromProposal: true)) }
    }
    return out
}

/// mmaction2's AVA RoI head (SingleRoIExtractor3D + BBoxHeadAVA): the feature averaged over time,
/// RoIAlign (output `roiSize`, aligned, adaptive sampling, scale 1 / `featureStride`), spatial max
/// pool, dropout, Linear to classes + 1. Key names: `fc_cls.weight`, `fc_cls.bias`.
///
/// With `acrn` (mmaction2's ACRN configs: `shared_head=ACRNHead`), the RoI features first go through
/// the actor-centric relation head (`shared_head.*`), whose output is max-pooled and classified.
public final class AVARoIHead: Module {
    public let shared_head: ACRNHead?
    public let fc_cls: Linear
    public let dropout: Dropout
    public let roiSize: Int
    public let featureStride: Int

    /// `acrn`: the relation head's (out channels, spatial stride, number of (1, 3, 3) convolutions).
    public init(inChannels: Int, classes: Int, dropout p: Float = 0.5, roiSize: Int = 8, featureStride: Int = 16,
                acrn: (channels: Int, stride: Int, convs: Int)? = nil, generator: inout RandomGenerator) {
        shared_head = acrn.map { ACRNHead(inChannels: inChannels, outChannels: $0.channels, stride: $0.stride, convs: $0.convs, generator: &generator) }
        // mmaction2 BBoxHeadAVA: normal(0, 0.01) weight, zero bias.
        fc_cls = Linear(acrn?.channels ?? inChannels, classes + 1, initialize: false, generator: &generator)
        for i in 0..<fc_cls.weight.count { fc_cls.weight.data[i] = Float(generator.normal()) * 0.01 }
        fc_cls.bias?.fill(0)
        dropout = Dropout(p, seed: generator.next())
        self.roiSize = roiSize; self.featureStride = featureStride
        super.init()
    }

    /// RoIs [K, 5] in input pixels from normalized boxes per clip of the batch.
    public static func rois(_ boxes: [[AVABox]], imageHeight: Int, imageWidth: Int) -> Tensor {
        var v: [Float] = []
        for (b, list) in boxes.enumerated() {
            for x in list {
                v += [Float(b), Float(x.x1 * Double(imageWidth)), Float(x.y1 * Double(imageHeight)),
                      Float(x.x2 * Double(imageWidth)), Float(x.y2 * Double(imageHeight))]
            }
        }
        return Tensor(v, shape: [v.count / 5, 5])
    }

    /// Logits [K, classes + 1] of `features` [N, C, T, h, w] (or [N, C, h, w]) at `rois` [K, 5].
    public func logits(_ features: Tensor, rois: Tensor) -> Tensor { classify(pooled(features, rois: rois)) }

    /// The RoI features [K, C] (with ACRN [K, its channels]): time average, RoIAlign, (the relation
    /// head,) spatial max pool.
    public func pooled(_ features: Tensor, rois: Tensor) -> Tensor {
        let f = features.rank == 5 ? features.mean(axis: 2) : features
        precondition(f.rank == 4, "AVARoIHead: features must be [N, C, T, h, w] or [N, C, h, w], got \(features.shape)")
        var r = F.roiAlign(f, rois: rois, outputSize: [roiSize, roiSize], spatialScale: 1 / Float(featureStride),
                           samplingRatio: 0, aligned: true)
        if let shared_head {
            r = shared_head(roiFeatures: r, context: f, batchIndex: (0..<rois.shape[0]).map { Int(rois.data[$0 * 5]) })
        }
        let k = r.shape[0], c = r.shape[1]
        return r.reshaped([k, c, r.count / max(k * c, 1)]).max(axis: 2)
    }

    /// Dropout and the classifier on pooled RoI features [K, C].
    public func classify(_ pooled: Tensor) -> Tensor { fc_cls(dropout(pooled)) }

    /// mmaction2's loss: binary cross-entropy with logits over slots 1... (slot 0 ignored) of the
    /// regions with at least one positive label, mean over elements; with `focal` (alpha, gamma),
    /// each term is weighted alpha (1 - p_t)^gamma. nil when no region has a positive label.
    public static func loss(_ logits: Tensor, targets: Tensor, focal: (alpha: Float, gamma: Float)? = nil) -> Tensor? {
        precondition(logits.shape == targets.shape && logits.rank == 2, "AVARoIHead.loss: logits \(logits.shape) vs targets \(targets.shape)")
        let k = logits.shape[0], n = logits.shape[1]
        let positive = (0..<k).filter { r in (1..<n).contains { targets.data[r * n + $0] > 0 } }
        if positive.isEmpty { return nil }
        let l = logits.indexSelect(axis: 0, indices: positive).sliced(axis: 1, start: 1, end: n)
        let t = targets.indexSelect(axis: 0, indices: positive).sliced(axis: 1, start: 1, end: n)
        return F.binaryCrossEntropyWithLogits(l, t, focalAlpha: focal?.alpha, focalGamma: focal?.gamma)
    }
}

/// How the classifier's outputs become class scores, in the loss and at test time.
public enum AVAScoring: Sendable {
    /// A sigmoid per class and binary cross-entropy with logits (mmaction2, PySlowFast), focal
    /// when `focal` is set (`AVARoIHead.loss`).
    case sigmoid(focal: (alpha: Float, gamma: Float)?)
    /// ACAR-Net's `ava_pose_softmax`: a softmax over the pose slots (an actor has one pose), a
    /// sigmoid over the other slots, binary cross-entropy on these probabilities (PyTorch's
    /// F.binary_cross_entropy: logs clamped at -100, mean over every region and class).
    case poseSoftmax(poseSlots: [Int])

    /// Scores [K, outputs] in [0, 1] of logits [K, outputs] (slot 0 stays a sigmoid; it is unused).
    public func probabilities(_ logits: Tensor) -> Tensor {
        guard case .poseSoftmax(let pose) = self, !pose.isEmpty else { return logits.sigmoid() }
        let n = logits.shape[1], poseSet = Set(pose)
        let others = (0..<n).filter { !poseSet.contains($0) }
        let order = others + pose
        var inverse = [Int](repeating: 0, count: n)
        for (i, s) in order.enumerated() { inverse[s] = i }
        let parts = Tensor.cat([logits.indexSelect(axis: 1, indices: others).sigmoid(), logits.indexSelect(axis: 1, indices: pose).softmax(axis: 1)], axis: 1)
        return parts.indexSelect(axis: 1, indices: inverse)
    }

    /// The loss over the regions with at least one positive label and slots 1... (slot 0
    /// ignored), as `AVARoIHead.loss`; nil when no region has a positive label.
    public func loss(_ logits: Tensor, targets: Tensor) -> Tensor? {
        switch self {
        case .sigmoid(let focal): return AVARoIHead.loss(logits, targets: targets, focal: focal)
        case .poseSoftmax:
            precondition(logits.shape == targets.shape && logits.rank == 2, "AVAScoring.loss: logits \(logits.shape) vs targets \(targets.shape)")
            let k = logits.shape[0], n = logits.shape[1]
            let positive = (0..<k).filter { r in (1..<n).contains { targets.data[r * n + $0] > 0 } }
            if positive.isEmpty { return nil }
            let p = probabilities(logits.indexSelect(axis: 0, indices: positive)).sliced(axis: 1, start: 1, end: n)
            return F.binaryCrossEntropy(p, targets.indexSelect(axis: 0, indices: positive).sliced(axis: 1, start: 1, end: n))
        }
    }
}

extension AVAClassIndex {
    /// AVA's pose classes (the PERSON_MOVEMENT actions, ids 1-14 of the 80-class label map; 13 of
    /// them in the 60-class list, ACAR-Net's first 13 outputs): the slots of those trained.
    public var poseSlots: [Int] { ids.enumerated().filter { (1...14).contains($0.element) }.map { $0.offset + 1 } }
}

/// One detection row of the AVA results CSV.
public struct AVADetection: Sendable, Equatable {
    public var key: AVAKey
    public var box: AVABox
    public var actionID: Int
    public var score: Double
    public init(key: AVAKey, box: AVABox, actionID: Int, score: Double) {
        self.key = key; self.box = box; self.actionID = actionID; self.score = score
    }
}

/// Detection rows of one keyframe from sigmoid probabilities [K, classes + 1] of its boxes.
public func avaDetections(key: AVAKey, boxes: [AVABox], probabilities p: Tensor, classes: AVAClassIndex) -> [AVADetection] {
    precondition(p.rank == 2 && p.shape[0] == boxes.count && p.shape[1] == classes.outputs,
                 "avaDetections: probabilities \(p.shape) for \(boxes.count) boxes and \(classes.outputs) outputs")
    var out: [AVADetection] = []
    for (k, b) in boxes.enumerated() {
        for s in 1..<classes.outputs { out.append(AVADetection(key: key, box: b, actionID: classes.id(ofSlot: s), score: Double(p.data[k * classes.outputs + s]))) }
    }
    return out
}

/// Writes the AVA results CSV (video_id, timestamp (%04d), x1, y1, x2, y2 (3 decimals), action_id,
/// score (4 decimals)), dropping scores below `threshold`, atomically (temporary file, then rename).
/// Returns the number of rows written.
@discardableResult
public func writeAVAResults(_ detections: [AVADetection], to path: String, threshold: Double = 0.002) throws -> Int {
    var text = ""
    var n = 0
    for d in detections where d.score >= threshold {
        text += "\(d.key.videoID),\(String(format: "%04d", d.key.timestamp)),"
            + String(format: "%.3f,%.3f,%.3f,%.3f,%d,%.4f\n", d.box.x1, d.box.y1, d.box.x2, d.box.y2, d.actionID, d.score)
        n += 1
    }
    do { try AtomicFile.write(text, to: path) } catch let e as FileWriteError {
        throw AVAError(path, "cannot write results: \(e.reason)")
    }
    return n
}

/// mmcv's ConvModule as mmaction2's heads use it: a 3-D convolution without bias, 3-D batch norm
/// and ReLU. Key names `conv.weight`, `bn.*` (mmaction2's).
public final class ConvBNReLU3d: Module {
    public let conv: Conv3d
    public let bn: BatchNorm3d

    /// mmaction2's init: Kaiming normal (fan out, ReLU) convolution, batch norm weight 1, bias 0.
    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: [Int], stride: [Int] = [1, 1, 1], padding: [Int] = [0, 0, 0],
                generator: inout RandomGenerator) {
        conv = Conv3d(inChannels, outChannels, kernelSize: kernelSize, stride: stride, padding: padding, bias: false,
                      initialize: false, generator: &generator)
        bn = BatchNorm3d(outChannels)
        super.init()
        Init.kaimingNormal(conv.weight, mode: .fanOut, nonlinearity: .relu, generator: &generator)
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor { bn(conv(x)).relu() }
}

/// The actor-centric relation head of ACRN (Sun et al., ECCV 2018), as mmaction2's `ACRNHead`: each
/// actor's RoI feature, max-pooled to one vector, is tiled over the (time-pooled) feature map of its
/// clip and concatenated with it; a 1x1x1 ConvModule to `outChannels`, a (1, 3, 3) one with spatial
/// `stride`, and `convs - 1` more (1, 3, 3) ones relate the actor to every position. Key names:
/// `conv1.conv.weight`, `conv1.bn.*`, `conv2.*`, `convs.<i>.*` (mmaction2's `shared_head`).
public final class ACRNHead: Module {
    public let conv1: ConvBNReLU3d
    public let conv2: ConvBNReLU3d
    public let convs: Sequential
    public let outChannels: Int

    public init(inChannels: Int, outChannels: Int, stride: Int = 1, convs n: Int = 1, generator: inout RandomGenerator) {
        precondition(n >= 1 && stride >= 1, "ACRNHead: convs >= 1 and stride >= 1")
        conv1 = ConvBNReLU3d(2 * inChannels, outChannels, kernelSize: [1, 1, 1], generator: &generator)
        conv2 = ConvBNReLU3d(outChannels, outChannels, kernelSize: [1, 3, 3], stride: [1, stride, stride], padding: [0, 1, 1], generator: &generator)
        convs = Sequential((1..<n).map { _ in ConvBNReLU3d(outChannels, outChannels, kernelSize: [1, 3, 3], padding: [0, 1, 1], generator: &generator) })
        self.outChannels = outChannels
        super.init()
    }

    /// Relation features [K, outChannels, 1, h', w'] of RoI features [K, C, r, r] against the
    /// feature maps [N, C, h, w] of their clips (`batchIndex[k]` = the clip of RoI k).
    public func callAsFunction(roiFeatures x: Tensor, context feat: Tensor, batchIndex: [Int]) -> Tensor {
        let k = x.shape[0], c = x.shape[1], h = feat.shape[2], w = feat.shape[3]
        precondition(feat.rank == 4 && feat.shape[1] == c && batchIndex.count == k, "ACRNHead: RoI features \(x.shape), context \(feat.shape), \(batchIndex.count) indices")
        let actor = x.reshaped([k, c, x.shape[2] * x.shape[3]]).max(axis: 2).reshaped([k, c, 1, 1]).expanded(to: [k, c, h, w])
        let ctx = feat.indexSelect(axis: 0, indices: batchIndex)
        let y = Tensor.cat([actor, ctx], axis: 1).reshaped([k, 2 * c, 1, h, w])
        return convs(conv2(conv1(y)))
    }
}
