import Foundation
import CycleTimeCore
import CycleTimeNN

// torchvision's fasterrcnn_resnet50_fpn (any ResNet depth) in eval mode, with its exact state-dict
// keys (backbone.body.*, backbone.fpn.*, rpn.head.*, roi_heads.box_head.*, roi_heads.box_predictor.*),
// so a torchvision state dict saved as safetensors loads unchanged.

/// How to build and run a Faster R-CNN (torchvision's defaults).
public struct FasterRCNNConfig: Sendable, Equatable {
    /// ResNet depth of the body: 18, 34, 50, 101, 152.
    public var depth = 50
    /// Including the background (class 0); COCO's is 91.
    public var numClasses = 91
    /// torchvision's trainable_backbone_layers (0...5).
    public var trainableBackboneLayers = 3
    /// FrozenBatchNorm2d in the body (torchvision's choice around a pretrained body; its COCO weights
    /// have no num_batches_tracked keys). false: BatchNorm2d, as fasterrcnn_resnet50_fpn(weights=None,
    /// weights_backbone=None).
    public var frozenBatchNorm = true
    public var transform = RCNNTransform()
    public var anchors = AnchorGenerator.fpnDefault
    public var rpn = RPNSettings()
    public var boxes = BoxHeadSettings()
    public var representationSize = 1024
    public init() {}
}

/// torchvision's GeneralizedRCNNTransform (eval): normalize, resize (bilinear) so the short side is
/// minSize unless the long side would exceed maxSize, pad the batch with zeros to a multiple of
/// sizeDivisible; detections are mapped back by the per-axis size ratios.
public struct RCNNTransform: Sendable, Equatable {
    public var minSize = 800
    public var maxSize = 1333
    public var normalization = Normalization.imagenet
    public var sizeDivisible = 32
    public init() {}

    /// The resized size of an image of size (h, w): floor(side * scale) with
    /// scale = min(minSize / short, maxSize / long) in double precision (as interpolate with
    /// recompute_scale_factor).
    public func resizedSize(height h: Int, width w: Int) -> (Int, Int) {
        let scale = min(Double(minSize) / Double(min(h, w)), Double(maxSize) / Double(max(h, w)))
        return (Int((Double(h) * scale).rounded(.down)), Int((Double(w) * scale).rounded(.down)))
    }

    /// The batch [N, 3, H, W] (padded) and each image's resized size, from RGB images [3, h, w] in [0, 1].
    public func batch(_ images: [Tensor]) -> (batch: Tensor, sizes: [(Int, Int)]) {
        let mean = Tensor(normalization.mean, shape: [3, 1, 1]), std = Tensor(normalization.std, shape: [3, 1, 1])
        var resized: [Tensor] = []
        for img in images {
            precondition(img.rank == 3 && img.shape[0] == 3, "RCNNTransform: images must be [3, H, W], got \(img.shape)")
            let (h, w) = resizedSize(height: img.shape[1], width: img.shape[2])
            let normalized = ((img - mean) / std).unsqueezed(axis: 0)
            resized.append(F.interpolate(normalized, size: [h, w], mode: .bilinear, alignCorners: false))
        }
        let sizes = resized.map { ($0.shape[2], $0.shape[3]) }
        let d = Double(sizeDivisible)
        let bh = Int((Double(sizes.map(\.0).max() ?? 0) / d).rounded(.up) * d)
        let bw = Int((Double(sizes.map(\.1).max() ?? 0) / d).rounded(.up) * d)
        let padded = zip(resized, sizes).map { F.pad($0, [0, bw - $1.1, 0, bh - $1.0]) }
        return (Tensor.cat(padded, axis: 0), sizes)
    }

    /// resize_boxes back to the original size: x * (orig w / resized w), y * (orig h / resized h) (float32).
    public static func mapBack(_ boxes: Tensor, from resized: (Int, Int), to original: (Int, Int)) -> Tensor {
        let rh = Float(original.0) / Float(resized.0), rw = Float(original.1) / Float(resized.1)
        let out = boxes.detach().clone()
        for i in 0..<out.count { out.data[i] *= i % 2 == 0 ? rw : rh }
        return out
    }
}

/// torchvision's FasterRCNN with a ResNet-FPN backbone.
public final class FasterRCNN: Module {
    public var config: FasterRCNNConfig
    public let backbone: ResNetFPNBackbone
    public let rpn: RegionProposalNetwork
    public let roiHeads: BoxRoIHeads

    /// torchvision's initialization drawn from `generator` (the body as torchvision's ResNet), or
    /// zeros with `initialize: false` for weights that will be loaded.
    public init(config: FasterRCNNConfig, initialize: Bool = true, generator: inout RandomGenerator) {
        self.config = config
        backbone = ResNetFPNBackbone(depth: config.depth, frozenBatchNorm: config.frozenBatchNorm,
                                     trainableLayers: config.trainableBackboneLayers, initialize: initialize, generator: &generator)
        let c = backbone.fpn.outChannels
        rpn = RegionProposalNetwork(inChannels: c, anchorGenerator: config.anchors, settings: config.rpn,
                                    initialize: initialize, generator: &generator)
        roiHeads = BoxRoIHeads(inChannels: c, numClasses: config.numClasses, representationSize: config.representationSize,
                               settings: config.boxes, initialize: initialize, generator: &generator)
        super.init()
    }

    public override func namedChildren() -> [(String, Module)] {
        [("backbone", backbone), ("rpn", rpn), ("roi_heads", roiHeads)]
    }

    /// Eval-mode detection of RGB images [3, h, w] in [0, 1]: per image its detections in original
    /// pixels, and the RPN's proposals [K, 4] (in the resized image, as torchvision's rpn returns
    /// them) with their objectness probabilities.
    public func detect(_ images: [Tensor]) -> [(detections: Detections, proposals: Tensor, proposalScores: [Float])] {
        noGrad {
            let (batch, sizes) = config.transform.batch(images)
            let features = backbone.features(batch)
            let proposals = rpn.proposals(features, batchSize: (batch.shape[2], batch.shape[3]), imageSizes: sizes)
            let dets = roiHeads.detect(Array(features.prefix(4)), proposals: proposals.map(\.boxes), imageSizes: sizes)
            return (0..<images.count).map { i in
                var d = dets[i]
                d.boxes = RCNNTransform.mapBack(d.boxes, from: sizes[i], to: (images[i].shape[1], images[i].shape[2]))
                return (d, proposals[i].boxes, proposals[i].scores)
            }
        }
    }
}
