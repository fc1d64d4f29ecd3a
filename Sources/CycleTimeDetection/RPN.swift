import Foundation
import CycleTimeCore
import CycleTimeNN

// torchvision's region proposal network (models/detection/rpn.py, anchor_utils.py): anchors, the
// RPN head, decoding and filter_proposals (its training losses: RCNNTraining.swift). Keys: rpn.head.conv.0.0.*,
// rpn.head.cls_logits.*, rpn.head.bbox_pred.*.

/// torchvision's AnchorGenerator: per feature level, base anchors round([-w, -h, w, h] / 2) for each
/// (aspect ratio, size) (ratio-major), shifted to every cell (row-major) by the level's stride.
public struct AnchorGenerator: Sendable, Equatable {
    public var sizes: [[Float]]
    public var aspectRatios: [[Float]]

    /// Faster R-CNN FPN's default: sizes (32,), (64,), (128,), (256,), (512,) with ratios 0.5, 1, 2 each.
    public static let fpnDefault = AnchorGenerator(sizes: [[32], [64], [128], [256], [512]],
                                                   aspectRatios: Array(repeating: [0.5, 1, 2], count: 5))

    public init(sizes: [[Float]], aspectRatios: [[Float]]) {
        precondition(sizes.count == aspectRatios.count, "AnchorGenerator: \(sizes.count) size sets, \(aspectRatios.count) ratio sets")
        self.sizes = sizes; self.aspectRatios = aspectRatios
    }

    public var anchorsPerLocation: [Int] { zip(sizes, aspectRatios).map { $0.count * $1.count } }

    /// Base anchors [A, 4] of a level (float32 arithmetic as torchvision's generate_anchors).
    public func cellAnchors(level: Int) -> [Float] {
        var out: [Float] = []
        for r in aspectRatios[level] {
            let h = r.squareRoot(), w = 1 / h
            for s in sizes[level] {
                let ws = w * s, hs = h * s
                out += [-ws, -hs, ws, hs].map { ($0 / 2).rounded(.toNearestOrEven) }
            }
        }
        return out
    }

    /// The anchors [H * W * A, 4] of one level with grid `grid` (h, w) in an image batch of size
    /// `imageSize` (h, w): stride = image size / grid size (integer division).
    public func anchors(level: Int, grid: (Int, Int), imageSize: (Int, Int)) -> Tensor {
        let base = cellAnchors(level: level), a = base.count / 4
        let strideH = imageSize.0 / max(grid.0, 1), strideW = imageSize.1 / max(grid.1, 1)
        let out = Tensor(uninitialized: [grid.0 * grid.1 * a, 4])
        var q = 0
        for y in 0..<grid.0 {
            for x in 0..<grid.1 {
                let sx = Float(x * strideW), sy = Float(y * strideH)
                for j in 0..<a {
                    out.data[q] = sx + base[j * 4]; out.data[q + 1] = sy + base[j * 4 + 1]
                    out.data[q + 2] = sx + base[j * 4 + 2]; out.data[q + 3] = sy + base[j * 4 + 3]
                    q += 4
                }
            }
        }
        return out
    }
}

/// torchvision's RPNHead (conv_depth 1): a 3x3 conv + ReLU shared by all levels, then 1x1 convs to
/// A objectness logits and 4A box deltas.
public final class RPNHead: Module {
    public let conv: Sequential
    public let clsLogits: Conv2d
    public let bboxPred: Conv2d

    /// torchvision's init (normal std 0.01, bias 0), or zeros with `initialize: false`.
    public init(inChannels: Int, anchors: Int, initialize: Bool = true, generator: inout RandomGenerator) {
        let c = Conv2d(inChannels, inChannels, kernelSize: 3, padding: 1, initialize: false, generator: &generator)
        conv = Sequential(Sequential(c, ReLU()))
        clsLogits = Conv2d(inChannels, anchors, kernelSize: 1, initialize: false, generator: &generator)
        bboxPred = Conv2d(inChannels, anchors * 4, kernelSize: 1, initialize: false, generator: &generator)
        if initialize {
            for w in [c.weight, clsLogits.weight, bboxPred.weight] { Init.normal(w, std: 0.01, generator: &generator) }
        }
        super.init()
    }

    public override func namedChildren() -> [(String, Module)] {
        [("conv", conv), ("cls_logits", clsLogits), ("bbox_pred", bboxPred)]
    }

    /// (objectness [N, A, H, W], deltas [N, 4A, H, W]) per level.
    public func outputs(_ features: [Tensor]) -> [(objectness: Tensor, deltas: Tensor)] {
        features.map { f in
            let t = conv(f)
            return (clsLogits(t), bboxPred(t))
        }
    }
}

/// The RPN's settings (torchvision's defaults for Faster R-CNN).
public struct RPNSettings: Sendable, Equatable {
    public var preNMSTopN = 1000
    public var postNMSTopN = 1000
    /// The same in training (torchvision's rpn_pre/post_nms_top_n_train).
    public var preNMSTopNTrain = 2000
    public var postNMSTopNTrain = 2000
    public var nmsThreshold: Float = 0.7
    public var scoreThreshold: Float = 0
    /// Proposals narrower or lower than this (pixels) are dropped (torchvision's fixed 1e-3).
    public var minSize: Float = 1e-3
    public init() {}
}

/// torchvision's RegionProposalNetwork in eval mode.
public final class RegionProposalNetwork: Module {
    public let head: RPNHead
    public let anchorGenerator: AnchorGenerator
    public var settings: RPNSettings
    public let boxCoder = BoxCoder(weights: [1, 1, 1, 1])

    public init(inChannels: Int, anchorGenerator: AnchorGenerator, settings: RPNSettings, initialize: Bool = true,
                generator: inout RandomGenerator) {
        let a = anchorGenerator.anchorsPerLocation
        precondition(Set(a).count == 1, "RegionProposalNetwork: every level needs the same number of anchors per location, got \(a)")
        head = RPNHead(inChannels: inChannels, anchors: a.first ?? 0, initialize: initialize, generator: &generator)
        self.anchorGenerator = anchorGenerator
        self.settings = settings
        super.init()
    }

    public override func namedChildren() -> [(String, Module)] { [("head", head)] }

    /// Proposals [K_i, 4] and their objectness probabilities per image of the batch `batchSize`
    /// (h, w) padded, `imageSizes` the resized images' own sizes.
    public func proposals(_ features: [Tensor], batchSize: (Int, Int), imageSizes: [(Int, Int)]) -> [(boxes: Tensor, scores: [Float])] {
        proposals(outputs: head.outputs(features), batchSize: batchSize, imageSizes: imageSizes, training: false)
    }

    /// The same from the head's outputs (values only: proposals carry no gradient, as torchvision
    /// decodes detached deltas), with the training or the test top-n counts.
    func proposals(outputs outs: [(objectness: Tensor, deltas: Tensor)], batchSize: (Int, Int), imageSizes: [(Int, Int)],
                   training: Bool) -> [(boxes: Tensor, scores: [Float])] {
        let n = imageSizes.count
        // Per level: anchors, and per image the decoded boxes and logits in (y, x, anchor) order.
        var levelBoxes: [[Tensor]] = Array(repeating: [], count: n)
        var levelLogits: [[[Float]]] = Array(repeating: [], count: n)
        for (level, out) in outs.enumerated() {
            let (obj, del) = out
            let a = obj.shape[1], h = obj.shape[2], w = obj.shape[3]
            let anchors = anchorGenerator.anchors(level: level, grid: (h, w), imageSize: batchSize)
            for i in 0..<n {
                var logits = [Float](repeating: 0, count: h * w * a)
                let codes = Tensor(uninitialized: [h * w * a, 4])
                let po = obj.data + i * a * h * w, pd = del.data + i * a * 4 * h * w
                for y in 0..<h {
                    for x in 0..<w {
                        for j in 0..<a {
                            let r = (y * w + x) * a + j
                            logits[r] = po[(j * h + y) * w + x]
                            for c in 0..<4 { codes.data[r * 4 + c] = pd[((j * 4 + c) * h + y) * w + x] }
                        }
                    }
                }
                levelBoxes[i].append(boxCoder.decode(codes, boxes: anchors).reshaped([h * w * a, 4]))
                levelLogits[i].append(logits)
            }
        }
        let pre = training ? settings.preNMSTopNTrain : settings.preNMSTopN
        let post = training ? settings.postNMSTopNTrain : settings.postNMSTopN
        return (0..<n).map { i in filter(levelBoxes[i], logits: levelLogits[i], imageSize: imageSizes[i], preNMSTopN: pre, postNMSTopN: post) }
    }

    /// filter_proposals for one image: the top preNMSTopN logits of each level, sigmoid, clip, drop
    /// small boxes and low scores, NMS per level, the first postNMSTopN.
    func filter(_ boxes: [Tensor], logits: [[Float]], imageSize: (Int, Int), preNMSTopN: Int, postNMSTopN: Int) -> (boxes: Tensor, scores: [Float]) {
        var picked: [Tensor] = [], scores: [Float] = [], levels: [Int] = []
        for (level, (b, l)) in zip(boxes, logits).enumerated() {
            let top = Array(Boxes.stableDescendingOrder(l).prefix(min(preNMSTopN, l.count)))
            picked.append(b.indexSelect(axis: 0, indices: top))
            scores += top.map { 1 / (1 + Foundation.exp(-l[$0])) }
            levels += Array(repeating: level, count: top.count)
        }
        var all = Boxes.clipToImage(Tensor.cat(picked, axis: 0), height: imageSize.0, width: imageSize.1)
        var keep = Boxes.removeSmall(all, minSize: settings.minSize).filter { scores[$0] >= settings.scoreThreshold }
        all = all.indexSelect(axis: 0, indices: keep)
        scores = keep.map { scores[$0] }; levels = keep.map { levels[$0] }
        keep = Array(Boxes.batchedNMS(all, scores: Tensor(scores, shape: [scores.count]), classes: levels,
                                      iouThreshold: settings.nmsThreshold).prefix(postNMSTopN))
        return (all.indexSelect(axis: 0, indices: keep), keep.map { scores[$0] })
    }
}
