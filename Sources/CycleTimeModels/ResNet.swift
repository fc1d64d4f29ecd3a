import Foundation
import CycleTimeCore
import CycleTimeNN

// ResNet in torchvision's exact layout and state_dict key names (conv1, bn1, relu, maxpool,
// layer1..layer4 of BasicBlock/Bottleneck with downsample.0/downsample.1, avgpool, fc), so that
// torchvision weights saved as safetensors load with strict key matching.

/// How to build a ResNet.
public struct ResNetConfig: Sendable, Equatable {
    /// 18, 34 (BasicBlock), 50, 101, 152 (Bottleneck).
    public var depth: Int
    /// The last stage created: "layer1" ... "layer4", or "fc" for the full classifier. Later
    /// stages (and avgpool/fc) are not created, so their keys do not exist.
    public var lastStage: String
    /// Stride of the first block of layer1..layer4 (torchvision: [1, 2, 2, 2]). E.g. [1, 2, 1, 2]
    /// keeps layer3 at stride 8 (a 240x240 input gives 30x30 layer3 features).
    public var strides: [Int]
    /// Padding mode of every convolution (`.reflect` pads the 7x7 and 3x3 convs by reflection).
    public var paddingMode: PadMode
    public var numClasses: Int
    /// torchvision's zero_init_residual: the last BN of each block starts with weight 0.
    public var zeroInitResidual: Bool
    /// torchvision's FrozenBatchNorm2d instead of BatchNorm2d everywhere (the norm_layer torchvision's
    /// detection models give a pretrained body): fixed statistics, no num_batches_tracked keys.
    public var frozenBatchNorm: Bool

    public init(depth: Int = 18, lastStage: String = "fc", strides: [Int] = [1, 2, 2, 2], paddingMode: PadMode = .zeros,
                numClasses: Int = 1000, zeroInitResidual: Bool = false, frozenBatchNorm: Bool = false) {
        self.depth = depth; self.lastStage = lastStage; self.strides = strides; self.paddingMode = paddingMode
        self.numClasses = numClasses; self.zeroInitResidual = zeroInitResidual; self.frozenBatchNorm = frozenBatchNorm
    }

    /// A torchvision model name ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152").
    public init?(name: String, lastStage: String = "fc", strides: [Int] = [1, 2, 2, 2], paddingMode: PadMode = .zeros,
                 numClasses: Int = 1000) {
        guard name.hasPrefix("resnet"), let d = Int(name.dropFirst(6)), ResNetConfig.blocks(depth: d) != nil else { return nil }
        self.init(depth: d, lastStage: lastStage, strides: strides, paddingMode: paddingMode, numClasses: numClasses)
    }

    public static let stageNames = ["layer1", "layer2", "layer3", "layer4", "fc"]

    /// (bottleneck?, blocks per stage) of a depth.
    public static func blocks(depth: Int) -> (bottleneck: Bool, counts: [Int])? {
        switch depth {
        case 18: return (false, [2, 2, 2, 2])
        case 34: return (false, [3, 4, 6, 3])
        case 50: return (true, [3, 4, 6, 3])
        case 101: return (true, [3, 4, 23, 3])
        case 152: return (true, [3, 8, 36, 3])
        default: return nil
        }
    }
}

/// torchvision's BasicBlock (expansion 1).
public final class BasicBlock: Module {
    public static let expansion = 1
    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    public let relu = ReLU()
    public let conv2: Conv2d
    public let bn2: BatchNorm2d
    public let downsample: Sequential?

    /// `initialize: false` leaves the conv weights zero (ResNet re-initializes them).
    public init(inplanes: Int, planes: Int, stride: Int, downsample: Sequential?, paddingMode: PadMode,
                initialize: Bool = true, generator: inout RandomGenerator) {
        conv1 = Conv2d(inplanes, planes, kernelSize: 3, stride: stride, padding: 1, bias: false, paddingMode: paddingMode, initialize: initialize, generator: &generator)
        bn1 = BatchNorm2d(planes)
        conv2 = Conv2d(planes, planes, kernelSize: 3, stride: 1, padding: 1, bias: false, paddingMode: paddingMode, initialize: initialize, generator: &generator)
        bn2 = BatchNorm2d(planes)
        self.downsample = downsample
        super.init()
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor {
        var out = relu(bn1(conv1(x)))
        out = bn2(conv2(out))
        let identity = downsample.map { $0(x) } ?? x
        return relu(out + identity)
    }
}

/// torchvision's Bottleneck (ResNet v1.5: stride on the 3x3 conv; expansion 4).
public final class Bottleneck: Module {
    public static let expansion = 4
    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    public let conv2: Conv2d
    public let bn2: BatchNorm2d
    public let conv3: Conv2d
    public let bn3: BatchNorm2d
    public let relu = ReLU()
    public let downsample: Sequential?

    /// `initialize: false` leaves the conv weights zero (ResNet re-initializes them).
    public init(inplanes: Int, planes: Int, stride: Int, downsample: Sequential?, paddingMode: PadMode,
                initialize: Bool = true, generator: inout RandomGenerator) {
        let width = planes
        conv1 = Conv2d(inplanes, width, kernelSize: 1, bias: false, paddingMode: paddingMode, initialize: initialize, generator: &generator)
        bn1 = BatchNorm2d(width)
        conv2 = Conv2d(width, width, kernelSize: 3, stride: stride, padding: 1, bias: false, paddingMode: paddingMode, initialize: initialize, generator: &generator)
        bn2 = BatchNorm2d(width)
        conv3 = Conv2d(width, planes * Bottleneck.expansion, kernelSize: 1, bias: false, paddingMode: paddingMode, initialize: initialize, generator: &generator)
        bn3 = BatchNorm2d(planes * Bottleneck.expansion)
        self.downsample = downsample
        super.init()
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor {
        var out = relu(bn1(conv1(x)))
        out = relu(bn2(conv2(out)))
        out = bn3(conv3(out))
        let identity = downsample.map { $0(x) } ?? x
        return relu(out + identity)
    }
}

/// torchvision.models.ResNet, optionally truncated after a stage and with custom stage strides.
public final class ResNet: Module {
    public let config: ResNetConfig
    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    public let relu = ReLU()
    public let maxpool = MaxPool2d(kernelSize: 3, stride: 2, padding: 1)
    public let layer1: Sequential
    public let layer2: Sequential?
    public let layer3: Sequential?
    public let layer4: Sequential?
    public let avgpool: AdaptiveAvgPool2d?
    public let fc: Linear?

    /// Channels of the last created stage's output (or numClasses with fc).
    public let outChannels: Int
    /// Total stride of the last created stage relative to the input.
    public let outputStride: Int

    /// Builds the model with torchvision's initialization drawn from `generator`; with
    /// `initialize: false` weights stay zero (BN weight 1) and nothing is drawn, for a model whose
    /// weights will be loaded from a checkpoint.
    public init(config: ResNetConfig, initialize: Bool = true, generator: inout RandomGenerator) {
        guard let (bottleneck, counts) = ResNetConfig.blocks(depth: config.depth) else {
            preconditionFailure("ResNet: unsupported depth \(config.depth) (18, 34, 50, 101, 152)")
        }
        guard let last = ResNetConfig.stageNames.firstIndex(of: config.lastStage) else {
            preconditionFailure("ResNet: lastStage '\(config.lastStage)' is not one of \(ResNetConfig.stageNames)")
        }
        precondition(config.strides.count == 4 && config.strides.allSatisfy { $0 >= 1 },
                     "ResNet: strides needs 4 positive values (layer1..layer4), got \(config.strides)")
        self.config = config
        let expansion = bottleneck ? Bottleneck.expansion : BasicBlock.expansion
        let pm = config.paddingMode
        conv1 = Conv2d(3, 64, kernelSize: 7, stride: 2, padding: 3, bias: false, paddingMode: pm, initialize: false, generator: &generator)
        bn1 = BatchNorm2d(64)
        var inplanes = 64
        var stride = 4
        func makeLayer(_ planes: Int, _ blocks: Int, _ s: Int, _ g: inout RandomGenerator) -> Sequential {
            var downsample: Sequential? = nil
            if s != 1 || inplanes != planes * expansion {
                downsample = Sequential(
                    Conv2d(inplanes, planes * expansion, kernelSize: 1, stride: s, bias: false, paddingMode: pm, initialize: false, generator: &g),
                    BatchNorm2d(planes * expansion))
            }
            var layers: [Module] = []
            for i in 0..<blocks {
                let inp = i == 0 ? inplanes : planes * expansion
                let st = i == 0 ? s : 1
                let ds = i == 0 ? downsample : nil
                layers.append(bottleneck
                    ? Bottleneck(inplanes: inp, planes: planes, stride: st, downsample: ds, paddingMode: pm, initialize: false, generator: &g)
                    : BasicBlock(inplanes: inp, planes: planes, stride: st, downsample: ds, paddingMode: pm, initialize: false, generator: &g))
            }
            inplanes = planes * expansion
            stride *= s
            return Sequential(layers)
        }
        layer1 = makeLayer(64, counts[0], config.strides[0], &generator)
        layer2 = last >= 1 ? makeLayer(128, counts[1], config.strides[1], &generator) : nil
        layer3 = last >= 2 ? makeLayer(256, counts[2], config.strides[2], &generator) : nil
        layer4 = last >= 3 ? makeLayer(512, counts[3], config.strides[3], &generator) : nil
        if last >= 4 {
            avgpool = AdaptiveAvgPool2d(1)
            fc = Linear(512 * expansion, config.numClasses, initialize: initialize, generator: &generator)
            outChannels = config.numClasses
        } else {
            avgpool = nil
            fc = nil
            outChannels = inplanes
        }
        outputStride = stride
        super.init()

        // torchvision's initialization (BatchNorm2d already starts at weight 1, bias 0).
        for m in modules() where initialize {
            if let c = m as? Conv2d {
                Init.kaimingNormal(c.weight, mode: .fanOut, nonlinearity: .relu, generator: &generator)
            } else if let bn = m as? BatchNormBase {
                bn.weight?.fill(1)
                bn.bias?.fill(0)
            }
        }
        if config.frozenBatchNorm {
            for m in modules() { (m as? BatchNormBase)?.freezeStatistics() }
        }
        if config.zeroInitResidual {
            for m in modules() {
                if let b = m as? Bottleneck { b.bn3.weight?.fill(0) }
                if let b = m as? BasicBlock { b.bn2.weight?.fill(0) }
            }
        }
    }

    public convenience init(config: ResNetConfig, initialize: Bool = true) {
        self.init(config: config, initialize: initialize, generator: &DefaultRandom.generator)
    }

    public static func resnet18(lastStage: String = "fc", strides: [Int] = [1, 2, 2, 2], paddingMode: PadMode = .zeros,
                                numClasses: Int = 1000, generator: inout RandomGenerator) -> ResNet {
        ResNet(config: ResNetConfig(depth: 18, lastStage: lastStage, strides: strides, paddingMode: paddingMode, numClasses: numClasses), generator: &generator)
    }
    public static func resnet34(lastStage: String = "fc", strides: [Int] = [1, 2, 2, 2], paddingMode: PadMode = .zeros,
                                numClasses: Int = 1000, generator: inout RandomGenerator) -> ResNet {
        ResNet(config: ResNetConfig(depth: 34, lastStage: lastStage, strides: strides, paddingMode: paddingMode, numClasses: numClasses), generator: &generator)
    }
    public static func resnet50(lastStage: String = "fc", strides: [Int] = [1, 2, 2, 2], paddingMode: PadMode = .zeros,
                                numClasses: Int = 1000, generator: inout RandomGenerator) -> ResNet {
        ResNet(config: ResNetConfig(depth: 50, lastStage: lastStage, strides: strides, paddingMode: paddingMode, numClasses: numClasses), generator: &generator)
    }

    /// Spatial size of the last stage's output for an input of size `size` (H or W); follows
    /// the conv/pool arithmetic (floor) of each strided layer.
    public func outputSize(_ size: Int) -> Int {
        var s = (size + 2 * 3 - 7) / 2 + 1        // conv1
        s = (s + 2 * 1 - 3) / 2 + 1               // maxpool
        let created = [true, layer2 != nil, layer3 != nil, layer4 != nil]
        for (i, st) in config.strides.enumerated() where created[i] {
            s = (s + 2 - 3) / st + 1               // 3x3 conv with padding 1 (1x1 downsample agrees)
        }
        return fc != nil ? 1 : s
    }

    /// The outputs of every created stage ("stem", "layer1", ..., and "fc" when present).
    public func stageOutputs(_ x: Tensor) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        var y = maxpool(relu(bn1(conv1(x))))
        out["stem"] = y
        y = layer1(y); out["layer1"] = y
        if let l = layer2 { y = l(y); out["layer2"] = y }
        if let l = layer3 { y = l(y); out["layer3"] = y }
        if let l = layer4 { y = l(y); out["layer4"] = y }
        if let avgpool, let fc {
            y = fc(avgpool(y).flattened(from: 1))
            out["fc"] = y
        }
        return out
    }

    /// Logits [N, numClasses] with the full model, else the last created stage's features.
    public override func callAsFunction(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == 3, "ResNet: expected input [N, 3, H, W], got \(x.shape)")
        var y = maxpool(relu(bn1(conv1(x))))
        y = layer1(y)
        if let l = layer2 { y = l(y) }
        if let l = layer3 { y = l(y) }
        if let l = layer4 { y = l(y) }
        if let avgpool, let fc { y = fc(avgpool(y).flattened(from: 1)) }
        return y
    }
}

extension ResNet {
    /// The model's output for `x` without gradients, at `precision` (bf16: inside `Autocast.bf16`,
    /// the convolutions on oneDNN with bf16 inputs and float32 accumulation; batch norm, ReLU and
    /// pooling in float32): what `cycletime features` and `cycletime propagate` run (`--precision`).
    /// Throws only for bf16 on a CPU without AVX512-BF16.
    public func inference(_ x: Tensor, precision: Precision) throws -> Tensor {
        try Autocast.run(precision) { noGrad { self(x) } }
    }
}
