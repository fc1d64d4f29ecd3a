import CycleTimeModels
import CycleTimeNN

/// A 3D ResNet with torchvision's 2D key names, built to be initialized from a 2D ResNet by I3D
/// inflation: SlowOnly-style (mmaction2's ResNet3dSlowOnly) with a (1, 7, 7) stem, a (1, 3, 3) max
/// pool, temporal stride 1 everywhere, temporal kernel `temporalKernels[stage]` on the first conv
/// of every block of a stage (BasicBlock: 3x3x3 conv1; Bottleneck: 3x1x1 conv1), and spatial
/// strides per stage (default [1, 2, 2, 1]: layer4 at stride 1, stride-16 features).
public struct ResNet3dConfig: Sendable, Equatable {
    public var depth: Int
    public var spatialStrides: [Int]
    public var temporalKernels: [Int]
    public var lastStage: String

    public init(depth: Int = 18, spatialStrides: [Int] = [1, 2, 2, 1], temporalKernels: [Int] = [1, 1, 3, 3], lastStage: String = "layer4") {
        self.depth = depth; self.spatialStrides = spatialStrides; self.temporalKernels = temporalKernels; self.lastStage = lastStage
    }
}

/// BasicBlock with 3D convolutions: conv1 (kt, 3, 3) with the spatial stride, conv2 (1, 3, 3).
public final class BasicBlock3d: Module {
    public let conv1: Conv3d
    public let bn1: BatchNorm3d
    public let conv2: Conv3d
    public let bn2: BatchNorm3d
    public let downsample: Sequential?

    init(inplanes: Int, planes: Int, stride: Int, kt: Int, downsample: Sequential?, generator: inout RandomGenerator) {
        conv1 = Conv3d(inplanes, planes, kernelSize: [kt, 3, 3], stride: [1, stride, stride], padding: [kt / 2, 1, 1], bias: false, generator: &generator)
        bn1 = BatchNorm3d(planes)
        conv2 = Conv3d(planes, planes, kernelSize: [1, 3, 3], padding: [0, 1, 1], bias: false, generator: &generator)
        bn2 = BatchNorm3d(planes)
        self.downsample = downsample
        super.init()
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor {
        let out = bn2(conv2(bn1(conv1(x)).relu()))
        return (out + (downsample.map { $0(x) } ?? x)).relu()
    }
}

/// Bottleneck with 3D convolutions (v1.5, stride on conv2): conv1 (kt, 1, 1), conv2 (1, 3, 3), conv3 1x1x1.
public final class Bottleneck3d: Module {
    public let conv1: Conv3d
    public let bn1: BatchNorm3d
    public let conv2: Conv3d
    public let bn2: BatchNorm3d
    public let conv3: Conv3d
    public let bn3: BatchNorm3d
    public let downsample: Sequential?

    init(inplanes: Int, planes: Int, stride: Int, kt: Int, downsample: Sequential?, generator: inout RandomGenerator) {
        conv1 = Conv3d(inplanes, planes, kernelSize: [kt, 1, 1], padding: [kt / 2, 0, 0], bias: false, generator: &generator)
        bn1 = BatchNorm3d(planes)
        conv2 = Conv3d(planes, planes, kernelSize: [1, 3, 3], stride: [1, stride, stride], padding: [0, 1, 1], bias: false, generator: &generator)
        bn2 = BatchNorm3d(planes)
        conv3 = Conv3d(planes, planes * 4, kernelSize: [1, 1, 1], bias: false, generator: &generator)
        bn3 = BatchNorm3d(planes * 4)
        self.downsample = downsample
        super.init()
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor {
        var out = bn1(conv1(x)).relu()
        out = bn2(conv2(out)).relu()
        out = bn3(conv3(out))
        return (out + (downsample.map { $0(x) } ?? x)).relu()
    }
}

/// The SlowOnly 3D ResNet: input [N, 3, T, H, W] -> [N, C, T, H / s, W / s].
public final class ResNet3d: Module {
    public let config: ResNet3dConfig
    public let conv1: Conv3d
    public let bn1: BatchNorm3d
    public let layer1: Sequential
    public let layer2: Sequential?
    public let layer3: Sequential?
    public let layer4: Sequential?
    public let outChannels: Int
    public let outputStride: Int

    public init(config: ResNet3dConfig = ResNet3dConfig(), generator: inout RandomGenerator) {
        guard let (bottleneck, counts) = ResNetConfig.blocks(depth: config.depth) else {
            preconditionFailure("ResNet3d: unsupported depth \(config.depth) (18, 34, 50, 101, 152)")
        }
        guard let last = ResNetConfig.stageNames.firstIndex(of: config.lastStage), last < 4 else {
            preconditionFailure("ResNet3d: lastStage '\(config.lastStage)' is not layer1...layer4")
        }
        precondition(config.spatialStrides.count == 4 && config.temporalKernels.count == 4
                     && config.temporalKernels.allSatisfy { $0 >= 1 && $0 % 2 == 1 } && config.spatialStrides.allSatisfy { $0 >= 1 },
                     "ResNet3d: 4 positive spatial strides and 4 odd temporal kernels needed")
        self.config = config
        let expansion = bottleneck ? 4 : 1
        conv1 = Conv3d(3, 64, kernelSize: [1, 7, 7], stride: [1, 2, 2], padding: [0, 3, 3], bias: false, generator: &generator)
        bn1 = BatchNorm3d(64)
        var inplanes = 64, stride = 4
        func makeLayer(_ stage: Int, _ planes: Int, _ g: inout RandomGenerator) -> Sequential {
            let s = config.spatialStrides[stage]
            defer { inplanes = planes * expansion; stride *= s }
            return makeResStage3d(inplanes: inplanes, planes: planes, blocks: counts[stage], bottleneck: bottleneck,
                                  spatialStride: s, kt: config.temporalKernels[stage], generator: &g)
        }
        layer1 = makeLayer(0, 64, &generator)
        layer2 = last >= 1 ? makeLayer(1, 128, &generator) : nil
        layer3 = last >= 2 ? makeLayer(2, 256, &generator) : nil
        layer4 = last >= 3 ? makeLayer(3, 512, &generator) : nil
        outChannels = inplanes
        outputStride = stride
        super.init()
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor {
        precondition(x.rank == 5, "ResNet3d: input must be [N, C, T, H, W], got \(x.shape)")
        var y = bn1(conv1(x)).relu()
        y = F.maxPool3d(y, kernel: [1, 3, 3], stride: [1, 2, 2], padding: [0, 1, 1])
        y = layer1(y)
        for l in [layer2, layer3, layer4] { if let l { y = l(y) } }
        return y
    }

    /// I3D inflation from a 2D ResNet state dict with torchvision key names: each 2D kernel
    /// [O, I, kh, kw] becomes [O, I, kt, kh, kw], repeated over time and divided by kt; batch-norm
    /// entries are copied. Keys of the 2D dict that the 3D model lacks (fc, later stages) are
    /// ignored; a missing key or a shape that does not inflate is an error naming the key.
    public func inflate(from state2D: [String: Tensor]) throws {
        var sd: [String: Tensor] = [:]
        var missing: [String] = []
        for (key, t) in namedStateEntries() {
            guard let src = state2D[key] else { missing.append(key); continue }
            if t.rank == 5 && src.rank == 4 {
                sd[key] = try inflateKernel(src, to: t.shape, key: key, padInputs: false)
            } else {
                guard src.shape == t.shape else { throw ResNet3dError("\(key): shape \(src.shape), expected \(t.shape)") }
                sd[key] = src
            }
        }
        if !missing.isEmpty { throw ResNet3dError("2D state dict lacks \(missing.count) keys, first \(missing.prefix(3).joined(separator: ", "))") }
        _ = try loadStateDict(sd, strict: true)
    }
}

/// One residual stage of a 3D ResNet (torchvision key names `i.conv1`, `i.bn1`, …, `0.downsample.0/1`):
/// `blocks` blocks, the first taking `inplanes` channels with the spatial stride and a 1x1x1
/// projection shortcut when the stride or the width changes. Shared by ResNet3d and the SlowFast
/// pathways (whose slow stages take extra lateral input channels).
func makeResStage3d(inplanes: Int, planes: Int, blocks: Int, bottleneck: Bool, spatialStride s: Int, kt: Int,
                    generator g: inout RandomGenerator) -> Sequential {
    let expansion = bottleneck ? 4 : 1
    var ds: Sequential?
    if s != 1 || inplanes != planes * expansion {
        ds = Sequential(Conv3d(inplanes, planes * expansion, kernelSize: [1, 1, 1], stride: [1, s, s], bias: false, generator: &g),
                        BatchNorm3d(planes * expansion))
    }
    var out: [Module] = []
    for i in 0..<blocks {
        let inp = i == 0 ? inplanes : planes * expansion
        out.append(bottleneck
            ? Bottleneck3d(inplanes: inp, planes: planes, stride: i == 0 ? s : 1, kt: kt, downsample: i == 0 ? ds : nil, generator: &g)
            : BasicBlock3d(inplanes: inp, planes: planes, stride: i == 0 ? s : 1, kt: kt, downsample: i == 0 ? ds : nil, generator: &g))
    }
    return Sequential(out)
}

/// I3D inflation of one 2D kernel [O, I, kh, kw] to `shape` [O, I', kt, kh, kw]: repeated over
/// time and divided by kt. With `padInputs`, I' may exceed I (a SlowFast slow pathway's lateral
/// input channels): the extra input channels get zero weights, as mmaction2's
/// `ResNet3dPathway._inflate_conv_params` does. Errors name `key`.
func inflateKernel(_ src: Tensor, to shape: [Int], key: String, padInputs: Bool) throws -> Tensor {
    guard src.rank == 4, shape.count == 5, src.shape[0] == shape[0], src.shape[2] == shape[3], src.shape[3] == shape[4],
          padInputs ? src.shape[1] <= shape[1] : src.shape[1] == shape[1] else {
        throw ResNet3dError("\(key): 2D shape \(src.shape) does not inflate to \(shape)")
    }
    let out = Tensor.zeros(shape)
    let kt = shape[2], plane = shape[3] * shape[4], cin2 = src.shape[1], cin3 = shape[1]
    let inv = 1 / Float(kt)
    for o in 0..<shape[0] {
        for c in 0..<cin2 {
            let s0 = (o * cin2 + c) * plane, d0 = (o * cin3 + c) * kt * plane
            for k in 0..<kt { for i in 0..<plane { out.data[d0 + k * plane + i] = src.data[s0 + i] * inv } }
        }
    }
    return out
}

public struct ResNet3dError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ s: String) { description = s }
}
