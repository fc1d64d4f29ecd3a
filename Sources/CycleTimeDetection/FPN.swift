import Foundation
import CycleTimeCore
import CycleTimeNN
import CycleTimeModels

// torchvision's FeaturePyramidNetwork with LastLevelMaxPool and BackboneWithFPN around a ResNet body
// (torchvision.models.detection.backbone_utils._resnet_fpn_extractor), with its state-dict keys:
// body.* (the ResNet up to layer4), fpn.inner_blocks.N.0.*, fpn.layer_blocks.N.0.*.

/// torchvision.ops.FeaturePyramidNetwork (no norm layer) with the extra "pool" level of
/// LastLevelMaxPool: a 1x1 lateral conv per input level, a top-down path of nearest upsampling and
/// sums, a 3x3 conv per level; then max_pool2d(kernel 1, stride 2) of the coarsest output.
public final class FeaturePyramidNetwork: Module {
    public let innerBlocks: [Sequential]
    public let layerBlocks: [Sequential]
    public let outChannels: Int

    /// torchvision's init (kaiming_uniform a=1, bias 0) drawn from `generator`, or zeros with
    /// `initialize: false` (for weights that will be loaded).
    public init(inChannels: [Int], outChannels: Int, initialize: Bool = true, generator: inout RandomGenerator) {
        self.outChannels = outChannels
        func conv(_ i: Int, _ o: Int, _ k: Int, _ g: inout RandomGenerator) -> Sequential {
            let c = Conv2d(i, o, kernelSize: k, padding: k / 2, initialize: false, generator: &g)
            if initialize { Init.kaimingUniform(c.weight, a: 1, generator: &g) }
            return Sequential(c)
        }
        var inner: [Sequential] = [], layer: [Sequential] = []
        for c in inChannels {
            inner.append(conv(c, outChannels, 1, &generator))
            layer.append(conv(outChannels, outChannels, 3, &generator))
        }
        innerBlocks = inner; layerBlocks = layer
        super.init()
    }

    public override func namedChildren() -> [(String, Module)] {
        innerBlocks.enumerated().map { ("inner_blocks.\($0.offset)", $0.element as Module) }
            + layerBlocks.enumerated().map { ("layer_blocks.\($0.offset)", $0.element as Module) }
    }

    /// The pyramid of `features` (finest first): one output per input, then the pooled level.
    public func pyramid(_ features: [Tensor]) -> [Tensor] {
        precondition(features.count == innerBlocks.count, "FPN: \(features.count) feature maps for \(innerBlocks.count) levels")
        guard let lastFeature = features.last, let lastInnerBlock = innerBlocks.last, let lastLayerBlock = layerBlocks.last else { return [] }
        var lastInner = lastInnerBlock(lastFeature)
        var results = [lastLayerBlock(lastInner)]
        for idx in stride(from: features.count - 2, through: 0, by: -1) {
            let lateral = innerBlocks[idx](features[idx])
            let topDown = F.interpolate(lastInner, size: [lateral.shape[2], lateral.shape[3]], mode: .nearest)
            lastInner = lateral + topDown
            results.insert(layerBlocks[idx](lastInner), at: 0)
        }
        if let coarsest = results.last {
            results.append(F.maxPool2d(coarsest, kernel: [1, 1], stride: [2, 2]))
        }
        return results
    }
}

/// torchvision's BackboneWithFPN over a ResNet body: the outputs of layer1..layer4 ("0".."3") through
/// the FPN, plus "pool".
public final class ResNetFPNBackbone: Module {
    public let body: ResNet
    public let fpn: FeaturePyramidNetwork
    public static let levelNames = ["0", "1", "2", "3", "pool"]

    /// `trainableLayers` (0...5) as torchvision's trainable_backbone_layers: the last that many of
    /// layer4, layer3, layer2, layer1, conv1 (and bn1 with 5) keep gradients, the rest of the body is
    /// frozen.
    public init(depth: Int, frozenBatchNorm: Bool, trainableLayers: Int, outChannels: Int = 256,
                initialize: Bool = true, generator: inout RandomGenerator) {
        precondition((0...5).contains(trainableLayers), "ResNetFPNBackbone: trainable layers must be 0...5, got \(trainableLayers)")
        body = ResNet(config: ResNetConfig(depth: depth, lastStage: "layer4", frozenBatchNorm: frozenBatchNorm),
                      initialize: initialize, generator: &generator)
        let c = body.outChannels
        fpn = FeaturePyramidNetwork(inChannels: [c / 8, c / 4, c / 2, c], outChannels: outChannels,
                                    initialize: initialize, generator: &generator)
        super.init()
        var train = Array(["layer4", "layer3", "layer2", "layer1", "conv1"].prefix(trainableLayers))
        if trainableLayers == 5 { train.append("bn1") }
        body.freeze()
        body.unfreeze(train)
        if frozenBatchNorm {
            for m in body.modules() { (m as? BatchNormBase)?.freezeStatistics() }
        }
    }

    /// The five pyramid levels ("0", "1", "2", "3", "pool") of a normalized image batch.
    public func features(_ x: Tensor) -> [Tensor] {
        let s = body.stageOutputs(x)
        let stages = ["layer1", "layer2", "layer3", "layer4"].compactMap { s[$0] }
        return fpn.pyramid(stages)
    }
}
