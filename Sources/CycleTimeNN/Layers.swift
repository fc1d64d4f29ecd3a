import Foundation
import CycleTimeCore

// PyTorch's standard layers. Constructors that draw random weights take a generator
// (`generator: &g`), or use `DefaultRandom.generator` when none is given.

/// nn.Linear: y = x W^T + b with weight [out, in].
public final class Linear: Module {
    @Parameter public var weight: Tensor
    @Parameter public var bias: Tensor?
    public let inFeatures: Int, outFeatures: Int

    /// `initialize: false` leaves zeros (no draws), for weights that will be loaded or re-initialized.
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, initialize: Bool = true, generator: inout RandomGenerator) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        let w = Tensor.zeros([outFeatures, inFeatures])
        let b: Tensor? = bias ? Tensor.zeros([outFeatures]) : nil
        if initialize { Init.pytorchDefault(weight: w, bias: b, generator: &generator) }
        self.weight = w
        self.bias = b
        super.init()
    }
    public convenience init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        self.init(inFeatures, outFeatures, bias: bias, generator: &DefaultRandom.generator)
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor { F.linear(x, weight: weight, bias: bias) }
}

/// nn.Conv2d (NCHW), weight [out, in/groups, kh, kw]; `paddingMode` zeros or reflect.
/// `initialize: false` leaves zeros (no draws), for weights that will be loaded or re-initialized.
public final class Conv2d: Module {
    @Parameter public var weight: Tensor
    @Parameter public var bias: Tensor?
    public let inChannels: Int, outChannels: Int, groups: Int
    public let kernelSize: [Int], stride: [Int], padding: [Int], dilation: [Int]
    public let paddingMode: PadMode

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: [Int], stride: [Int] = [1, 1], padding: [Int] = [0, 0],
                dilation: [Int] = [1, 1], groups: Int = 1, bias: Bool = true, paddingMode: PadMode = .zeros,
                initialize: Bool = true, generator: inout RandomGenerator) {
        precondition(kernelSize.count == 2 && stride.count == 2 && padding.count == 2 && dilation.count == 2,
                     "Conv2d: kernelSize, stride, padding and dilation need 2 values each")
        precondition(groups > 0 && inChannels % groups == 0 && outChannels % groups == 0,
                     "Conv2d: in (\(inChannels)) and out (\(outChannels)) channels must be divisible by groups (\(groups))")
        self.inChannels = inChannels; self.outChannels = outChannels; self.groups = groups
        self.kernelSize = kernelSize; self.stride = stride; self.padding = padding; self.dilation = dilation
        self.paddingMode = paddingMode
        let w = Tensor.zeros([outChannels, inChannels / groups] + kernelSize)
        let b: Tensor? = bias ? Tensor.zeros([outChannels]) : nil
        if initialize { Init.pytorchDefault(weight: w, bias: b, generator: &generator) }
        self.weight = w
        self.bias = b
        super.init()
    }
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            dilation: Int = 1, groups: Int = 1, bias: Bool = true, paddingMode: PadMode = .zeros,
                            initialize: Bool = true, generator: inout RandomGenerator) {
        self.init(inChannels, outChannels, kernelSize: [kernelSize, kernelSize], stride: [stride, stride],
                  padding: [padding, padding], dilation: [dilation, dilation], groups: groups, bias: bias,
                  paddingMode: paddingMode, initialize: initialize, generator: &generator)
    }
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            dilation: Int = 1, groups: Int = 1, bias: Bool = true, paddingMode: PadMode = .zeros) {
        self.init(inChannels, outChannels, kernelSize: kernelSize, stride: stride, padding: padding, dilation: dilation,
                  groups: groups, bias: bias, paddingMode: paddingMode, generator: &DefaultRandom.generator)
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor {
        F.conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, dilation: dilation,
                 groups: groups, paddingMode: paddingMode)
    }
}

/// nn.Conv3d (NCDHW), weight [out, in/groups, kt, kh, kw]; zero padding.
public final class Conv3d: Module {
    @Parameter public var weight: Tensor
    @Parameter public var bias: Tensor?
    public let inChannels: Int, outChannels: Int, groups: Int
    public let kernelSize: [Int], stride: [Int], padding: [Int], dilation: [Int]

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: [Int], stride: [Int] = [1, 1, 1], padding: [Int] = [0, 0, 0],
                dilation: [Int] = [1, 1, 1], groups: Int = 1, bias: Bool = true, initialize: Bool = true,
                generator: inout RandomGenerator) {
        precondition(kernelSize.count == 3 && stride.count == 3 && padding.count == 3 && dilation.count == 3,
                     "Conv3d: kernelSize, stride, padding and dilation need 3 values each")
        precondition(groups > 0 && inChannels % groups == 0 && outChannels % groups == 0,
                     "Conv3d: in (\(inChannels)) and out (\(outChannels)) channels must be divisible by groups (\(groups))")
        self.inChannels = inChannels; self.outChannels = outChannels; self.groups = groups
        self.kernelSize = kernelSize; self.stride = stride; self.padding = padding; self.dilation = dilation
        let w = Tensor.zeros([outChannels, inChannels / groups] + kernelSize)
        let b: Tensor? = bias ? Tensor.zeros([outChannels]) : nil
        if initialize { Init.pytorchDefault(weight: w, bias: b, generator: &generator) }
        self.weight = w
        self.bias = b
        super.init()
    }
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: [Int], stride: [Int] = [1, 1, 1],
                            padding: [Int] = [0, 0, 0], dilation: [Int] = [1, 1, 1], groups: Int = 1, bias: Bool = true) {
        self.init(inChannels, outChannels, kernelSize: kernelSize, stride: stride, padding: padding, dilation: dilation,
                  groups: groups, bias: bias, generator: &DefaultRandom.generator)
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor {
        F.conv3d(x, weight: weight, bias: bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }
}

/// Shared body of BatchNorm2d/3d (PyTorch's _BatchNorm): weight, bias, then buffers
/// running_mean, running_var, num_batches_tracked. `momentum: nil` is the cumulative average.
public class BatchNormBase: Module {
    @Parameter public var weight: Tensor?
    @Parameter public var bias: Tensor?
    @Buffer public var runningMean: Tensor?
    @Buffer public var runningVar: Tensor?
    @Buffer public var numBatchesTracked: Tensor?
    public let numFeatures: Int
    public var eps: Float
    public var momentum: Float?
    public let affine: Bool, trackRunningStats: Bool
    let inputRank: Int
    /// Set: training uses the statistics of all processes (synchronized batch norm, SyncBatchNorm.swift).
    public var statisticsReducer: CrossProcessSum?

    init(numFeatures: Int, eps: Float, momentum: Float?, affine: Bool, trackRunningStats: Bool, inputRank: Int) {
        self.numFeatures = numFeatures; self.eps = eps; self.momentum = momentum
        self.affine = affine; self.trackRunningStats = trackRunningStats; self.inputRank = inputRank
        self.weight = affine ? Tensor.ones([numFeatures]) : nil
        self.bias = affine ? Tensor.zeros([numFeatures]) : nil
        self._runningMean = Buffer(wrappedValue: trackRunningStats ? Tensor.zeros([numFeatures]) : nil, name: "running_mean")
        self._runningVar = Buffer(wrappedValue: trackRunningStats ? Tensor.ones([numFeatures]) : nil, name: "running_var")
        self._numBatchesTracked = Buffer(wrappedValue: trackRunningStats ? Tensor.zeros([]) : nil, name: "num_batches_tracked")
        super.init()
    }

    /// torchvision's FrozenBatchNorm2d when set (`freezeStatistics()`): always the running
    /// statistics, y = x * scale + shift with scale = weight / sqrt(running_var + eps) and
    /// shift = bias - running_mean * scale, whatever the mode; weight and bias get no gradients.
    public private(set) var frozenStatistics = false

    /// Turns this layer into torchvision's FrozenBatchNorm2d: its state-dict keys become weight,
    /// bias, running_mean, running_var (no num_batches_tracked), its statistics and affine
    /// parameters stay fixed. Needs running statistics and the affine parameters.
    public func freezeStatistics() {
        precondition(affine && trackRunningStats, "freezeStatistics: needs affine parameters and running statistics")
        frozenStatistics = true
        numBatchesTracked = nil
        weight?.requiresGrad = false
        bias?.requiresGrad = false
    }

    /// Resets running statistics (mean 0, var 1, count 0), as `reset_running_stats()`.
    public func resetRunningStats() {
        runningMean?.fill(0); runningVar?.fill(1); numBatchesTracked?.fill(0)
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor {
        precondition(x.rank == inputRank, "\(type(of: self)): expected a \(inputRank)-D input, got shape \(x.shape)")
        precondition(x.shape[1] == numFeatures, "\(type(of: self)): expected \(numFeatures) channels, got shape \(x.shape)")
        if frozenStatistics, let w = weight, let b = bias, let rm = runningMean, let rv = runningVar {
            let scale = w.detach() / (rv + Tensor(scalar: eps)).sqrt()
            let shift = b.detach() - rm * scale
            let affine = [1, numFeatures] + Array(repeating: 1, count: inputRank - 2)
            return x * scale.reshaped(affine) + shift.reshaped(affine)
        }
        var factor: Float = momentum ?? 0
        if training && trackRunningStats, let n = numBatchesTracked {
            n.data[0] += 1
            factor = momentum ?? 1 / n.data[0]
        }
        let useBatchStats = training || (runningMean == nil && runningVar == nil)
        if training, let r = statisticsReducer { return synchronizedForward(x, reducer: r, momentum: factor) }
        let passStats = !training || trackRunningStats
        return F.batchNorm(x, runningMean: passStats ? runningMean : nil, runningVar: passStats ? runningVar : nil,
                           weight: weight, bias: bias, training: useBatchStats, momentum: factor, eps: eps)
    }
}

/// nn.BatchNorm2d over [N, C, H, W].
public final class BatchNorm2d: BatchNormBase {
    public init(_ numFeatures: Int, eps: Float = 1e-5, momentum: Float? = 0.1, affine: Bool = true, trackRunningStats: Bool = true) {
        super.init(numFeatures: numFeatures, eps: eps, momentum: momentum, affine: affine, trackRunningStats: trackRunningStats, inputRank: 4)
    }
}

/// nn.BatchNorm3d over [N, C, D, H, W].
public final class BatchNorm3d: BatchNormBase {
    public init(_ numFeatures: Int, eps: Float = 1e-5, momentum: Float? = 0.1, affine: Bool = true, trackRunningStats: Bool = true) {
        super.init(numFeatures: numFeatures, eps: eps, momentum: momentum, affine: affine, trackRunningStats: trackRunningStats, inputRank: 5)
    }
}

public final class ReLU: Module {
    public override init() { super.init() }
    public override func callAsFunction(_ x: Tensor) -> Tensor { x.relu() }
}

public final class LeakyReLU: Module {
    public let negativeSlope: Float
    public init(negativeSlope: Float = 0.01) { self.negativeSlope = negativeSlope; super.init() }
    public override func callAsFunction(_ x: Tensor) -> Tensor { x.leakyRelu(negativeSlope) }
}

/// nn.MaxPool2d (stride defaults to the kernel size).
public final class MaxPool2d: Module {
    public let kernelSize: [Int], stride: [Int], padding: [Int], dilation: [Int], ceilMode: Bool
    public init(kernelSize: [Int], stride: [Int]? = nil, padding: [Int] = [0, 0], dilation: [Int] = [1, 1], ceilMode: Bool = false) {
        self.kernelSize = kernelSize; self.stride = stride ?? kernelSize; self.padding = padding
        self.dilation = dilation; self.ceilMode = ceilMode
        super.init()
    }
    public convenience init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, dilation: Int = 1, ceilMode: Bool = false) {
        self.init(kernelSize: [kernelSize, kernelSize], stride: stride.map { [$0, $0] }, padding: [padding, padding],
                  dilation: [dilation, dilation], ceilMode: ceilMode)
    }
    public override func callAsFunction(_ x: Tensor) -> Tensor {
        F.maxPool2d(x, kernel: kernelSize, stride: stride, padding: padding, dilation: dilation, ceilMode: ceilMode)
    }
}

/// nn.MaxPool3d.
public final class MaxPool3d: Module {
    public let kernelSize: [Int], stride: [Int], padding: [Int], ceilMode: Bool
    public init(kernelSize: [Int], stride: [Int]? = nil, padding: [Int] = [0, 0, 0], ceilMode: Bool = false) {
        self.kernelSize = kernelSize; self.stride = stride ?? kernelSize; self.padding = padding; self.ceilMode = ceilMode
        super.init()
    }
    public override func callAsFunction(_ x: Tensor) -> Tensor {
        F.maxPool3d(x, kernel: kernelSize, stride: stride, padding: padding, ceilMode: ceilMode)
    }
}

/// nn.AvgPool2d.
public final class AvgPool2d: Module {
    public let kernelSize: [Int], stride: [Int], padding: [Int], ceilMode: Bool, countIncludePad: Bool
    public init(kernelSize: [Int], stride: [Int]? = nil, padding: [Int] = [0, 0], ceilMode: Bool = false, countIncludePad: Bool = true) {
        self.kernelSize = kernelSize; self.stride = stride ?? kernelSize; self.padding = padding
        self.ceilMode = ceilMode; self.countIncludePad = countIncludePad
        super.init()
    }
    public convenience init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, ceilMode: Bool = false, countIncludePad: Bool = true) {
        self.init(kernelSize: [kernelSize, kernelSize], stride: stride.map { [$0, $0] }, padding: [padding, padding],
                  ceilMode: ceilMode, countIncludePad: countIncludePad)
    }
    public override func callAsFunction(_ x: Tensor) -> Tensor {
        F.avgPool2d(x, kernel: kernelSize, stride: stride, padding: padding, ceilMode: ceilMode, countIncludePad: countIncludePad)
    }
}

/// nn.AvgPool3d.
public final class AvgPool3d: Module {
    public let kernelSize: [Int], stride: [Int], padding: [Int], ceilMode: Bool, countIncludePad: Bool
    public init(kernelSize: [Int], stride: [Int]? = nil, padding: [Int] = [0, 0, 0], ceilMode: Bool = false, countIncludePad: Bool = true) {
        self.kernelSize = kernelSize; self.stride = stride ?? kernelSize; self.padding = padding
        self.ceilMode = ceilMode; self.countIncludePad = countIncludePad
        super.init()
    }
    public override func callAsFunction(_ x: Tensor) -> Tensor {
        F.avgPool3d(x, kernel: kernelSize, stride: stride, padding: padding, ceilMode: ceilMode, countIncludePad: countIncludePad)
    }
}

/// nn.AdaptiveAvgPool2d.
public final class AdaptiveAvgPool2d: Module {
    public let outputSize: [Int]
    public init(outputSize: [Int]) { self.outputSize = outputSize; super.init() }
    public convenience init(_ size: Int) { self.init(outputSize: [size, size]) }
    public override func callAsFunction(_ x: Tensor) -> Tensor { F.adaptiveAvgPool2d(x, outputSize: outputSize) }
}

/// nn.Dropout with its own seeded generator (inverted dropout; identity in eval mode).
public final class Dropout: Module {
    public let p: Float
    public var generator: RandomGenerator
    public init(_ p: Float = 0.5, generator: RandomGenerator) {
        precondition(p >= 0 && p <= 1, "Dropout: p must be in [0, 1], got \(p)")
        self.p = p; self.generator = generator
        super.init()
    }
    public convenience init(_ p: Float = 0.5, seed: UInt64) { self.init(p, generator: RandomGenerator(seed: seed)) }
    /// Seeds its generator from `DefaultRandom.generator`.
    public convenience init(_ p: Float = 0.5) { self.init(p, seed: DefaultRandom.generator.next()) }
    public override func callAsFunction(_ x: Tensor) -> Tensor {
        F.dropout(x, p: p, training: training, generator: &generator)
    }
}

/// nn.Flatten: flattens dimensions startDim...endDim (default 1...-1).
public final class Flatten: Module {
    public let startDim: Int, endDim: Int
    public init(startDim: Int = 1, endDim: Int = -1) { self.startDim = startDim; self.endDim = endDim; super.init() }
    public override func callAsFunction(_ x: Tensor) -> Tensor { x.flattened(from: startDim, to: endDim) }
}

/// nn.GroupNorm: the channels of each sample split into `groups`, each normalized by its own mean
/// and (biased) variance over its channels and positions, then a per-channel affine transform.
public final class GroupNorm: Module {
    public let groups: Int
    public let eps: Float
    @Parameter public var weight: Tensor
    @Parameter public var bias: Tensor

    public init(_ groups: Int, _ channels: Int, eps: Float = 1e-5) {
        precondition(groups >= 1 && channels % groups == 0, "GroupNorm: \(channels) channels in \(groups) groups")
        self.groups = groups; self.eps = eps
        self.weight = Tensor.ones([channels])
        self.bias = Tensor.zeros([channels])
        super.init()
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor {
        let n = x.shape[0], c = x.shape[1]
        let g = x.reshaped([n, groups, x.count / (n * groups)])
        let centred = g - g.mean(axis: 2, keepdim: true)
        let normalized = centred / ((centred * centred).mean(axis: 2, keepdim: true) + Tensor(scalar: eps)).sqrt()
        let affine = [1, c] + Array(repeating: 1, count: x.rank - 2)
        return normalized.reshaped(x.shape) * weight.reshaped(affine) + bias.reshaped(affine)
    }
}

/// nn.LayerNorm: each sample normalized by the mean and (biased) variance of its trailing
/// `normalizedShape` dimensions, then an elementwise affine transform of that shape.
public final class LayerNorm: Module {
    public let normalizedShape: [Int]
    public let eps: Float
    @Parameter public var weight: Tensor
    @Parameter public var bias: Tensor

    public init(_ normalizedShape: [Int], eps: Float = 1e-5) {
        precondition(!normalizedShape.isEmpty && normalizedShape.allSatisfy { $0 >= 1 }, "LayerNorm: shape \(normalizedShape)")
        self.normalizedShape = normalizedShape; self.eps = eps
        weight = Tensor.ones(normalizedShape)
        bias = Tensor.zeros(normalizedShape)
        super.init()
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor {
        let k = normalizedShape.count
        precondition(x.rank >= k && Array(x.shape.suffix(k)) == normalizedShape,
                     "LayerNorm: input \(x.shape) does not end in \(normalizedShape)")
        let inner = normalizedShape.reduce(1, *)
        let g = x.reshaped([x.count / inner, inner])
        let centred = g - g.mean(axis: 1, keepdim: true)
        let normalized = centred / ((centred * centred).mean(axis: 1, keepdim: true) + Tensor(scalar: eps)).sqrt()
        return normalized.reshaped(x.shape) * weight + bias
    }
}

