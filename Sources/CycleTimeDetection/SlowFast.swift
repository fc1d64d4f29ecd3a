import CycleTimeModels
import CycleTimeNN

/// SlowFast (Feichtenhofer et al., ICCV 2019) as mmaction2's `ResNet3dSlowFast` builds it for its
/// `slowfast_*_ava` configs:
/// - slow pathway = the SlowOnly ResNet3d ((1, 7, 7) stem, temporal kernel 1 in layer1/layer2 and 3
///   in layer3/layer4) on frames 0, alpha, 2 alpha, … of the clip;
/// - fast pathway = a ResNet3d with 1 / `betaInv` of the channels, a (5, 7, 7) stem and temporal
///   kernel 3 in every stage, on all frames;
/// - after the stem and after layer1…layer3, a lateral connection (a `fusionKernel` x 1 x 1
///   convolution of the fast features with temporal stride alpha, 2 x the fast channels) is
///   concatenated to the slow features, so slow stages take those extra input channels.
///   mmaction2's laterals are a convolution only (`lateralNorm: false`, the default);
///   PySlowFast's `FuseFastToSlow` adds batch norm and ReLU (`lateralNorm: true`).
/// - both pathways with spatial strides (1, 2, 2, 1): stride-16 features.
public struct SlowFastConfig: Sendable, Equatable {
    public var depth: Int
    /// alpha: the fast pathway sees alpha times the slow pathway's frame rate (mmaction2's
    /// `speed_ratio`; the clip is the fast-rate clip, so mmaction2's `resample_rate` = alpha).
    public var alpha: Int
    /// 1 / beta: the fast pathway's channel reduction (mmaction2's `channel_ratio`).
    public var betaInv: Int
    public var fusionKernel: Int
    public var lateralNorm: Bool
    public var spatialStrides: [Int]
    public var slowTemporalKernels: [Int]
    public var fastTemporalKernels: [Int]
    public var fastStemTemporalKernel: Int

    public init(depth: Int = 18, alpha: Int = 8, betaInv: Int = 8, fusionKernel: Int = 5, lateralNorm: Bool = false,
                spatialStrides: [Int] = [1, 2, 2, 1], slowTemporalKernels: [Int] = [1, 1, 3, 3],
                fastTemporalKernels: [Int] = [3, 3, 3, 3], fastStemTemporalKernel: Int = 5) {
        self.depth = depth; self.alpha = alpha; self.betaInv = betaInv; self.fusionKernel = fusionKernel
        self.lateralNorm = lateralNorm; self.spatialStrides = spatialStrides
        self.slowTemporalKernels = slowTemporalKernels; self.fastTemporalKernels = fastTemporalKernels
        self.fastStemTemporalKernel = fastStemTemporalKernel
    }

    /// Checks the settings and a clip length (the clip must be a positive multiple of alpha, so
    /// both pathways fuse on the same time steps); the error names the field.
    public func validate(frames: Int? = nil) throws {
        guard ResNetConfig.blocks(depth: depth) != nil else { throw ResNet3dError("slowfast depth: \(depth) is not 18, 34, 50, 101 or 152") }
        guard alpha >= 1 else { throw ResNet3dError("slowfast alpha: \(alpha) must be >= 1") }
        guard betaInv >= 1, 64 % betaInv == 0 else { throw ResNet3dError("slowfast beta_inv: \(betaInv) must divide 64") }
        guard fusionKernel >= 1, fusionKernel % 2 == 1 else { throw ResNet3dError("slowfast fusion_kernel: \(fusionKernel) must be odd") }
        guard spatialStrides.count == 4, spatialStrides.allSatisfy({ $0 >= 1 }) else { throw ResNet3dError("slowfast spatial_strides: 4 positive values needed") }
        for (name, ks) in [("slow_temporal_kernels", slowTemporalKernels), ("fast_temporal_kernels", fastTemporalKernels), ("fast_stem_temporal_kernel", [fastStemTemporalKernel])]
        where !ks.allSatisfy({ $0 >= 1 && $0 % 2 == 1 }) || (name != "fast_stem_temporal_kernel" && ks.count != 4) {
            throw ResNet3dError("slowfast \(name): \(ks.count == 1 ? "an odd kernel" : "4 odd kernels") needed, got \(ks)")
        }
        if let t = frames, t < alpha || t % alpha != 0 {
            throw ResNet3dError("slowfast clip: \(t) frames is not a positive multiple of alpha \(alpha)")
        }
    }
}

/// A lateral connection: `conv` (mmaction2's ConvModule key `conv.weight`), with `bn` + ReLU when
/// `lateralNorm` (key `bn.*`).
public final class SlowFastLateral: Module {
    public let conv: Conv3d
    public let bn: BatchNorm3d?

    init(_ cin: Int, _ cout: Int, kernel: Int, alpha: Int, norm: Bool, generator: inout RandomGenerator) {
        conv = Conv3d(cin, cout, kernelSize: [kernel, 1, 1], stride: [alpha, 1, 1], padding: [kernel / 2, 0, 0], bias: false, generator: &generator)
        bn = norm ? BatchNorm3d(cout) : nil
        super.init()
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor {
        guard let bn else { return conv(x) }
        return bn(conv(x)).relu()
    }
}

/// One pathway: torchvision-style stem and stages (`conv1`, `bn1`, `layerN.i.convK` …, as ResNet3d),
/// and, on the slow pathway, mmaction2's lateral connections `conv1_lateral`, `layer1_lateral` …
/// `layer3_lateral`.
public final class SlowFastPathway: Module {
    public let conv1: Conv3d
    public let bn1: BatchNorm3d
    public let layer1: Sequential
    public let layer2: Sequential
    public let layer3: Sequential
    public let layer4: Sequential
    public let conv1_lateral: SlowFastLateral?
    public let layer1_lateral: SlowFastLateral?
    public let layer2_lateral: SlowFastLateral?
    public let layer3_lateral: SlowFastLateral?
    public let outChannels: Int

    /// `base` stem channels (64 slow, 64 / betaInv fast); `lateral` = the slow pathway (its stages
    /// take 2 x inplanes / betaInv extra channels from the fast pathway).
    init(config c: SlowFastConfig, base: Int, stemKt: Int, kts: [Int], lateral: Bool, generator g: inout RandomGenerator) {
        let (bottleneck, counts) = ResNetConfig.blocks(depth: c.depth) ?? (false, [2, 2, 2, 2])
        let expansion = bottleneck ? 4 : 1
        conv1 = Conv3d(3, base, kernelSize: [stemKt, 7, 7], stride: [1, 2, 2], padding: [stemKt / 2, 3, 3], bias: false, generator: &g)
        bn1 = BatchNorm3d(base)
        var inplanes = base
        var stages: [Sequential] = []
        for i in 0..<4 {
            let planes = base << i
            let extra = lateral ? inplanes * 2 / c.betaInv : 0
            stages.append(makeResStage3d(inplanes: inplanes + extra, planes: planes, blocks: counts[i], bottleneck: bottleneck,
                                         spatialStride: c.spatialStrides[i], kt: kts[i], generator: &g))
            inplanes = planes * expansion
        }
        layer1 = stages[0]; layer2 = stages[1]; layer3 = stages[2]; layer4 = stages[3]
        outChannels = inplanes
        // Lateral i carries the fast features after stage i (stem for i = 0): fast channels
        // (64 << i) * expansion / betaInv (the stem: 64 / betaInv) -> twice that.
        func lat(_ slowChannels: Int, _ g: inout RandomGenerator) -> SlowFastLateral? {
            lateral ? SlowFastLateral(slowChannels / c.betaInv, slowChannels * 2 / c.betaInv, kernel: c.fusionKernel, alpha: c.alpha, norm: c.lateralNorm, generator: &g) : nil
        }
        conv1_lateral = lat(base, &g)
        layer1_lateral = lat(base * expansion, &g)
        layer2_lateral = lat((base << 1) * expansion, &g)
        layer3_lateral = lat((base << 2) * expansion, &g)
        super.init()
    }

    func stem(_ x: Tensor) -> Tensor {
        F.maxPool3d(bn1(stemConv(x)).relu(), kernel: [1, 3, 3], stride: [1, 2, 2], padding: [0, 1, 1])
    }

    /// conv1(x) computed as the sum of its temporal taps, one (1, 7, 7) convolution of the
    /// time-padded clip shifted by k per tap: the same values and gradients, but the im2col
    /// columns of one tap at a time (the fast stem's (5, 7, 7) kernel on a 32-frame 256x256 clip
    /// would otherwise need 1.5 GB of columns per clip, per core).
    func stemConv(_ x: Tensor) -> Tensor {
        let kt = conv1.kernelSize[0], p = conv1.padding[0]
        guard kt > 1, conv1.stride[0] == 1, conv1.dilation[0] == 1, x.rank == 5 else { return conv1(x) }
        let outT = x.shape[2] + 2 * p - kt + 1
        let xp = F.pad(x, [0, 0, 0, 0, p, p])
        let taps = (0..<kt).map { k in
            F.conv3d(xp.sliced(axis: 2, start: k, end: k + outT), weight: conv1.weight.sliced(axis: 2, start: k, end: k + 1),
                     stride: conv1.stride, padding: [0, conv1.padding[1], conv1.padding[2]])
        }
        return taps.dropFirst().reduce(taps[0], +)
    }
    var stages: [Sequential] { [layer1, layer2, layer3, layer4] }
    var laterals: [SlowFastLateral?] { [conv1_lateral, layer1_lateral, layer2_lateral, layer3_lateral] }
}

/// The SlowFast backbone: the fast-rate clip [N, 3, T, H, W] (T a multiple of alpha) ->
/// [N, C_slow + C_fast, 1, H / 16, W / 16], each pathway averaged over time, then concatenated
/// (what mmaction2's AVA RoI extractor does with `temporal_pool_mode='avg'`). Keys:
/// `slow_path.*`, `fast_path.*` (see SlowFastPathway).
public final class SlowFastBackbone: Module {
    public let config: SlowFastConfig
    public let slow_path: SlowFastPathway
    public let fast_path: SlowFastPathway
    public let outChannels: Int
    public let outputStride: Int

    /// Random initialization as mmaction2's: Kaiming normal (fan out, ReLU) convolutions, batch
    /// norms weight 1 and bias 0, and the last batch norm of every residual block zero
    /// (`zero_init_residual`). Invalid settings are a programming error here: check them with
    /// `config.validate()` first.
    public init(config: SlowFastConfig = SlowFastConfig(), generator: inout RandomGenerator) {
        do { try config.validate() } catch { preconditionFailure("SlowFastBackbone: \(error)") }
        self.config = config
        slow_path = SlowFastPathway(config: config, base: 64, stemKt: 1, kts: config.slowTemporalKernels, lateral: true, generator: &generator)
        fast_path = SlowFastPathway(config: config, base: 64 / config.betaInv, stemKt: config.fastStemTemporalKernel,
                                    kts: config.fastTemporalKernels, lateral: false, generator: &generator)
        outChannels = slow_path.outChannels + fast_path.outChannels
        outputStride = config.spatialStrides.reduce(4, *)
        super.init()
        for (name, m) in namedModules() {
            if let c = m as? Conv3d {
                Init.kaimingNormal(c.weight, mode: .fanOut, nonlinearity: .relu, generator: &generator)
            } else if let bn = m as? BatchNorm3d {
                let last = name.hasSuffix(".bn3") || (name.hasSuffix(".bn2") && !(ResNetConfig.blocks(depth: config.depth)?.bottleneck ?? false))
                bn.weight?.fill(last ? 0 : 1)
                bn.bias?.fill(0)
            }
        }
    }

    public override func callAsFunction(_ clip: Tensor) -> Tensor {
        precondition(clip.rank == 5, "SlowFastBackbone: input must be [N, C, T, H, W], got \(clip.shape)")
        let t = clip.shape[2], a = config.alpha
        precondition(t >= a && t % a == 0, "SlowFastBackbone: \(t) frames is not a positive multiple of alpha \(a)")
        var xs = slow_path.stem(a == 1 ? clip : clip.indexSelect(axis: 2, indices: Array(stride(from: 0, to: t, by: a))))
        var xf = fast_path.stem(clip)
        let laterals = slow_path.laterals, slowStages = slow_path.stages, fastStages = fast_path.stages
        for i in 0..<4 {
            if let lat = laterals[i] { xs = Tensor.cat([xs, lat(xf)], axis: 1) }
            xs = slowStages[i](xs)
            xf = fastStages[i](xf)
        }
        return Tensor.cat([xs.mean(axis: 2, keepdim: true), xf.mean(axis: 2, keepdim: true)], axis: 1)
    }

    /// The slow pathway from a 2D ResNet state dict with torchvision key names (a CycleTime
    /// encoder or torchvision weights), by I3D inflation as ResNet3d.inflate, with mmaction2's rule
    /// for the lateral input channels of slow stages: their kernel entries are zero. A projection
    /// shortcut the 2D network lacks (ResNet-18/34 layer1.0.downsample, needed only because of the
    /// lateral channels) starts as the identity on the 2D channels and zero on the lateral ones,
    /// so the inflated slow pathway starts as the SlowOnly network plus lateral inputs that the
    /// zero entries ignore. The fast pathway and the laterals keep their random initialization.
    /// Keys of the 2D dict that the slow pathway lacks (fc) are ignored; a missing key or a shape
    /// that does not inflate is an error naming the key.
    public func inflate(from state2D: [String: Tensor]) throws {
        var sd: [String: Tensor] = [:]
        var missing: [String] = []
        var identityShortcuts = Set<String>()
        for (key, t) in slow_path.namedStateEntries() {
            if key.contains("_lateral.") { sd[key] = t; continue }
            let blockPrefix = key.components(separatedBy: ".downsample.").first ?? key
            if key.contains(".downsample."), state2D[blockPrefix + ".downsample.0.weight"] == nil {
                identityShortcuts.insert(blockPrefix + ".downsample")
                continue
            }
            guard let src = state2D[key] else { missing.append(key); continue }
            if t.rank == 5 && src.rank == 4 {
                sd[key] = try inflateKernel(src, to: t.shape, key: key, padInputs: true)
            } else {
                guard src.shape == t.shape else { throw ResNet3dError("\(key): shape \(src.shape), expected \(t.shape)") }
                sd[key] = src
            }
        }
        if !missing.isEmpty { throw ResNet3dError("2D state dict lacks \(missing.count) keys, first \(missing.prefix(3).joined(separator: ", "))") }
        let modules = Dictionary(uniqueKeysWithValues: slow_path.namedModules())
        for name in identityShortcuts {
            guard let ds = modules[name] as? Sequential, let conv = ds[0] as? Conv3d, let bn = ds[1] as? BatchNorm3d else { continue }
            let w = Tensor.zeros(conv.weight.shape)
            for o in 0..<min(w.shape[0], w.shape[1]) { w.data[o * w.shape[1] + o] = 1 }
            sd[name + ".0.weight"] = w
            let fresh = BatchNorm3d(bn.numFeatures)
            for (k, v) in fresh.namedStateEntries() { sd[name + ".1." + k] = v }
        }
        _ = try slow_path.loadStateDict(sd, strict: true)
    }
}
