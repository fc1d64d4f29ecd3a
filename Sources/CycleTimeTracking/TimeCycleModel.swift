import Foundation
import CycleTimeCore
import CycleTimeNN
import CycleTimeModels

// The cycle-consistency tracker of "Learning Correspondence from the Cycle-consistency of Time"
// (Wang, Jabri, Efros, CVPR 2019), as in the authors' released code:
// - encoder: a torchvision ResNet stopped after layer3 (layer3 stride 1, so stride 8), then a 1x1
//   convolution to D channels and ReLU; the raw map is cropped, its channel-wise L2-normalized copy
//   gives affinities;
// - affinity A[k, i] = <base_k, query_i> / T (T = 512^-0.5 whatever D, as the original), softmax over the base positions k, laid out as an
//   HW_base-channel map over the query grid, base positions in column-major order (k = x * H + y:
//   the original transposes the base map first);
// - localizer: conv(HW_base -> 128, k4), LeakyReLU(0.1), conv(128 -> 64, k4), LeakyReLU(0.1),
//   flatten, Linear(-> 3) giving (tx, ty, angle), theta = [[s cos a, -s sin a, tx], [s sin a, s cos a, ty]];
// - sampler: bilinear grid_sample (align_corners, zero padding) of the raw features over a
//   patch-grid-sized grid from affine_grid, the translation multiplied by 227/210;
// - cycles: for c = 1..T the patch is tracked back through f_{T-1} ... f_{T-c}, forward again to
//   f_{T-1} and into the target image (theta_c); skip cycle: patch -> each f_t directly (theta2_t),
//   crop, back into the target image (theta3_t).
// The original recomputes the backward chain of every cycle; the chains are identical, so here
// the backward chain is computed once (its first step is the direct patch -> f_{T-1} step), and
// the forward chains of all cycles advance together (one batched localizer call per step), which
// gives the same values and gradients.

/// Which term accompanies the two grid losses.
public enum TimeCycleObjective: String, Sendable, Codable {
    /// The authors' code: the inlier count of the patch->frame affinity under the predicted warp.
    case inlier
    /// The paper's feature-similarity term: minus the Frobenius inner product between the
    /// normalized features of the patch and of the crops tracked back through the clip.
    case featureSimilarity = "feature_similarity"
}

/// Every setting of the TimeCycle model and losses (defaults as in the authors' code, with the
/// resnet18 CPU default; `TimeCycleConfig.resnet50()` is the paper's setting).
public struct TimeCycleConfig: Sendable, Equatable, Codable {
    /// torchvision ResNet name: "resnet18", "resnet34", "resnet50", ...
    public var encoder: String = "resnet18"
    /// Strides of layer1..layer4 (layer4 is not built). [1, 2, 1, 2]: layer3 at stride 1, total stride 8.
    public var encoderStrides: [Int] = [1, 2, 1, 2]
    /// D: channels of the 1x1 head (256 for resnet18, 512 for resnet50 in the paper's setting).
    public var featureDim: Int = 256
    /// Softmax temperature of the affinities: the original code's 512^-0.5 whatever the feature
    /// width (`originalTemperature`; D^-0.5 only for the paper's D = 512).
    public var temperature: Float = TimeCycleConfig.originalTemperature
    /// The original's `detach_network`: the encoder's (ResNet's) output for the clip and the patch
    /// is detached, so the encoder learns only through the target image's features; the 1x1 head
    /// and the localizer learn as usual.
    public var detachNetwork: Bool = false
    /// A warm-up of `detachNetwork`: the encoder is detached for the first N steps, then trained
    /// end to end (0: never; `detachNetwork` true detaches it at every step).
    public var detachSteps: Int = 0
    /// Side of the (square) clip frames and target image.
    public var frameSize: Int = 240
    /// Side of the (square) target patch.
    public var patchSize: Int = 80
    /// Output channels of the localizer's two convolutions.
    public var localizerWidths: [Int] = [128, 64]
    /// Kernel sizes of the localizer's two convolutions (no padding).
    public var localizerKernels: [Int] = [4, 4]
    public var localizerSlope: Float = 0.1
    /// Std of the localizer's Linear weight at initialization (bias 0).
    public var localizerInitStd: Float = 0.01
    /// The fixed scale of the predicted similarity transform (patch / base = 1/3).
    public var thetaScale: Float = 1.0 / 3.0
    /// The original sampler's translation factor (227/210).
    public var translationFactor: Float = 227.0 / 210.0
    /// Points per side of the grid-loss grid over [-1, 1]^2.
    public var lossGridSize: Int = 20
    /// The per-element epsilon of the inlier mask normalization (mask / sum(mask + eps)).
    public var inlierEpsilon: Float = 1e-5
    public var objective: TimeCycleObjective = .inlier
    public var longWeight: Float = 0.02
    public var inlierWeight: Float = 1.0
    public var skipWeight: Float = 0.1

    public init() {}

    /// The paper's setting: resnet50, D = 512.
    public static func resnet50() -> TimeCycleConfig {
        var c = TimeCycleConfig()
        c.encoder = "resnet50"
        c.featureDim = 512
        return c
    }

    public var resnetConfig: ResNetConfig {
        guard let rc = ResNetConfig(name: encoder, lastStage: "layer3", strides: encoderStrides) else {
            preconditionFailure("TimeCycleConfig: unknown encoder '\(encoder)'")
        }
        return rc
    }
    /// The original code's temperature, 512^-0.5 (its D of resnet50, kept for every encoder).
    public static let originalTemperature = Float(1 / 512.0.squareRoot())

    /// Whether the clip's and the patch's encoder outputs are detached at training step `step`
    /// (0-based): `detachNetwork`, or a step within the first `detachSteps`.
    public func detachesEncoder(atStep step: Int) -> Bool { detachNetwork || step < detachSteps }

    /// Feature-map side for an input side (the ResNet's floor arithmetic: conv1, maxpool, layer1..3).
    public func mapSize(_ size: Int) -> Int {
        var s = (size + 2 * 3 - 7) / 2 + 1
        s = (s + 2 * 1 - 3) / 2 + 1
        for st in encoderStrides.prefix(3) { s = (s + 2 - 3) / st + 1 }
        return s
    }
    /// Side of the frame feature maps (30 for 240x240 frames).
    public var baseGrid: Int { mapSize(frameSize) }
    /// Side of the patch feature maps and of the crops (10 for 80x80 patches).
    public var patchGrid: Int { mapSize(patchSize) }
    /// Localizer input channels: one per base position.
    public var localizerInChannels: Int { baseGrid * baseGrid }
    /// Side of the localizer's last convolution output.
    public var localizerOutGrid: Int { localizerKernels.reduce(patchGrid) { $0 - $1 + 1 } }
    /// Input features of the localizer's Linear layer (64 * 4 * 4 by default).
    public var localizerLinearIn: Int { localizerWidths[1] * localizerOutGrid * localizerOutGrid }
}

/// The transform predictor: affinity map [N, HW_base, h, w] -> (tx, ty, angle) [N, 3].
public final class Localizer: Module {
    public let conv1: Conv2d
    public let conv2: Conv2d
    public let fc: Linear
    public let slope: Float

    public init(config c: TimeCycleConfig, generator: inout RandomGenerator) {
        precondition(c.localizerWidths.count == 2 && c.localizerKernels.count == 2,
                     "TimeCycleConfig: localizerWidths and localizerKernels need 2 values each")
        precondition(c.localizerOutGrid >= 1,
                     "TimeCycleConfig: the patch map (\(c.patchGrid)x\(c.patchGrid)) is too small for localizer kernels \(c.localizerKernels)")
        conv1 = Conv2d(c.localizerInChannels, c.localizerWidths[0], kernelSize: c.localizerKernels[0], bias: false, generator: &generator)
        conv2 = Conv2d(c.localizerWidths[0], c.localizerWidths[1], kernelSize: c.localizerKernels[1], bias: false, generator: &generator)
        fc = Linear(c.localizerLinearIn, 3, generator: &generator)
        slope = c.localizerSlope
        super.init()
        Init.kaimingNormal(conv1.weight, mode: .fanOut, nonlinearity: .relu, generator: &generator)
        Init.kaimingNormal(conv2.weight, mode: .fanOut, nonlinearity: .relu, generator: &generator)
        Init.normal(fc.weight, mean: 0, std: Double(c.localizerInitStd), generator: &generator)
        fc.bias?.fill(0)
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor {
        var y = conv1(x).leakyRelu(slope)
        y = conv2(y).leakyRelu(slope)
        return fc(y.flattened(from: 1))
    }
}

/// theta [N, 2, 3] = [[s cos a, -s sin a, tx], [s sin a, s cos a, ty]] from p = (tx, ty, a) [N, 3].
public func similarityTheta(_ p: Tensor, scale s: Float) -> Tensor {
    precondition(p.rank == 2 && p.shape[1] == 3, "similarityTheta: expected [N, 3], got \(p.shape)")
    let n = p.shape[0]
    let out = Tensor(uninitialized: [n, 2, 3])
    let pp = p.data, po = out.data
    for b in 0..<n {
        let tx = pp[3 * b], ty = pp[3 * b + 1], a = pp[3 * b + 2]
        let c = s * Foundation.cos(a), si = s * Foundation.sin(a)
        let o = po + 6 * b
        o[0] = c; o[1] = -si; o[2] = tx
        o[3] = si; o[4] = c; o[5] = ty
    }
    let saved = p.clone()
    return out.recording("similarityTheta", [p]) { g in
        let gp = Tensor(uninitialized: [n, 3])
        for b in 0..<n {
            let a = saved.data[3 * b + 2]
            let c = s * Foundation.cos(a), si = s * Foundation.sin(a)
            let gg = g.data + 6 * b
            gp.data[3 * b] = gg[2]
            gp.data[3 * b + 1] = gg[5]
            // d/da: (c, -si, si, c)' = (-si, -c, c, -si)
            gp.data[3 * b + 2] = -si * gg[0] - c * gg[1] + c * gg[3] - si * gg[4]
        }
        return [gp]
    }
}

/// Everything the losses need from one forward pass.
public struct TimeCycleOutputs {
    /// theta_c for c = 1..T (long cycles), each [B, 2, 3].
    public var cycleThetas: [Tensor]
    /// theta2: patch -> each frame directly, [B*T, 2, 3] (batch-major).
    public var directThetas: Tensor
    /// The patch -> frame affinities the direct thetas were predicted from, [B*T, HW_base, h, w].
    public var directAffinity: Tensor
    /// theta3: the direct crops back into the target image, [B*T, 2, 3].
    public var skipThetas: Tensor
    /// Raw crops tracked back from the patch through f_{T-1} ... f_0, each [B, D, h, w].
    public var backCrops: [Tensor]
    /// The patch's normalized features [B, D, h, w].
    public var patchFeatures: Tensor
}

/// The features a forward pass starts from: raw and L2-normalized features of the clip's frames,
/// normalized features of the patch and of the target image.
public struct TimeCycleFeatures {
    /// T, the clip length.
    public var length: Int
    /// Raw clip features [B*T, D, H, W] (batch-major): the crops are cut from these.
    public var clip: Tensor
    /// Their channel-wise L2-normalized copy: the affinities are computed from these.
    public var clipNormalized: Tensor
    /// Normalized patch features [B, D, h, w].
    public var patchNormalized: Tensor
    /// Normalized target-image features [B, D, H, W].
    public var imageNormalized: Tensor
    /// B, the batch size.
    public var batch: Int { patchNormalized.shape[0] }

    public init(length: Int, clip: Tensor, clipNormalized: Tensor, patchNormalized: Tensor, imageNormalized: Tensor) {
        precondition(length >= 1 && clip.rank == 4 && clip.shape[0] % length == 0 && clipNormalized.shape == clip.shape
                     && patchNormalized.rank == 4 && imageNormalized.rank == 4 && clip.shape[0] == length * patchNormalized.shape[0]
                     && patchNormalized.shape[1] == clip.shape[1] && imageNormalized.shape[1] == clip.shape[1],
                     "TimeCycleFeatures: clip \(clip.shape) (T = \(length)), patch \(patchNormalized.shape), image \(imageNormalized.shape) do not agree")
        self.length = length
        self.clip = clip
        self.clipNormalized = clipNormalized
        self.patchNormalized = patchNormalized
        self.imageNormalized = imageNormalized
    }

    /// From raw (non-normalized) features: clip [B, T, D, H, W], patch [B, D, h, w], image [B, D, H, W].
    public init(clip: Tensor, patch: Tensor, image: Tensor) {
        precondition(clip.rank == 5, "TimeCycleFeatures: clip features must be [B, T, D, H, W], got \(clip.shape)")
        let flat = clip.reshaped([clip.shape[0] * clip.shape[1]] + Array(clip.shape.dropFirst(2)))
        self.init(length: clip.shape[1], clip: flat, clipNormalized: F.normalize(flat, axis: 1),
                  patchNormalized: F.normalize(patch, axis: 1), imageNormalized: F.normalize(image, axis: 1))
    }
}

/// The TimeCycle model: encoder (ResNet to layer3), 1x1 head, localizer.
public final class TimeCycleModel: Module {
    public let config: TimeCycleConfig
    public let encoder: ResNet
    public let head: Conv2d
    public let localizer: Localizer
    /// Whether the forward pass detaches the encoder's output for the clip and the patch (the
    /// target image's never is): `config.detachesEncoder(atStep:)` of the step being trained,
    /// set by the training task before each step; step 0's value at first.
    public var detachEncoder: Bool

    public init(config: TimeCycleConfig, generator: inout RandomGenerator) {
        self.config = config
        detachEncoder = config.detachesEncoder(atStep: 0)
        encoder = ResNet(config: config.resnetConfig, generator: &generator)
        head = Conv2d(encoder.outChannels, config.featureDim, kernelSize: 1, bias: false, generator: &generator)
        localizer = Localizer(config: config, generator: &generator)
        super.init()
        Init.kaimingNormal(head.weight, mode: .fanOut, nonlinearity: .relu, generator: &generator)
    }

    public convenience init(config: TimeCycleConfig = TimeCycleConfig()) {
        self.init(config: config, generator: &DefaultRandom.generator)
    }

    /// Raw features relu(head(encoder(x))) and their channel-wise L2-normalized copy; `detach`
    /// cuts the gradient between the encoder and the head.
    public func encode(_ x: Tensor, detach: Bool = false) -> (raw: Tensor, normalized: Tensor) {
        let features = encoder(x)
        let raw = head(detach ? features.detach() : features).relu()
        return (raw, F.normalize(raw, axis: 1))
    }

    /// Affinity of normalized queries [N, C, h, w] against normalized bases [N, C, H, W]:
    /// softmax over base positions of <base_k, query_i> / T, as [N, H*W, h, w] with base position
    /// k = x * H + y (column-major, as the original).
    public func affinity(query: Tensor, base: Tensor) -> Tensor {
        let n = base.shape[0], c = base.shape[1], hb = base.shape[2], wb = base.shape[3]
        let h = query.shape[2], w = query.shape[3]
        precondition(query.shape[0] == n && query.shape[1] == c, "affinity: query \(query.shape) vs base \(base.shape)")
        let b = base.transposed(2, 3).reshaped([n, c, wb * hb]).transposed(1, 2)      // [N, K, C]
        let a = b.matmul(query.reshaped([n, c, h * w])) / Tensor(scalar: config.temperature)
        return a.softmax(axis: 1).reshaped([n, hb * wb, h, w])
    }

    /// The localizer's transform for an affinity map: theta [N, 2, 3].
    public func predictTheta(_ affinity: Tensor) -> Tensor {
        similarityTheta(localizer(affinity), scale: config.thetaScale)
    }

    /// theta with its translation multiplied by the translation factor (the original sampler).
    public func scaledTheta(_ theta: Tensor) -> Tensor {
        let f = config.translationFactor
        return theta * Tensor([1, 1, f, 1, 1, f], shape: [1, 2, 3])
    }

    /// Bilinear crop of raw features [N, C, H, W] under theta [N, 2, 3]: [N, C, h, w] (h = patch grid).
    public func crop(_ features: Tensor, theta: Tensor) -> Tensor {
        let n = features.shape[0], c = features.shape[1], g = config.patchGrid
        let grid = F.affineGrid(scaledTheta(theta), size: [n, c, g, g], alignCorners: true)
        return F.gridSample(features, grid: grid, mode: .bilinear, alignCorners: true)
    }

    /// Repeats each of the B items of x [B, ...] T times: [B*T, ...] (batch-major).
    static func repeatEach(_ x: Tensor, _ t: Int) -> Tensor {
        let b = x.shape[0], rest = Array(x.shape.dropFirst())
        return x.unsqueezed(axis: 1).expanded(to: [b, t] + rest).reshaped([b * t] + rest)
    }

    /// The encoder's features of a clip [B, T, 3, H, W], a patch [B, 3, p, p] and the target image
    /// [B, 3, H, W] (the clip's and the patch's detached from the encoder when `detachEncoder`).
    public func encode(clip: Tensor, patch: Tensor, image: Tensor) -> TimeCycleFeatures {
        precondition(clip.rank == 5 && clip.shape[2] == 3, "TimeCycleModel: clip must be [B, T, 3, H, W], got \(clip.shape)")
        let bsz = clip.shape[0], tl = clip.shape[1]
        let (raw, norm) = encode(clip.reshaped([bsz * tl] + Array(clip.shape.dropFirst(2))), detach: detachEncoder)
        return TimeCycleFeatures(length: tl, clip: raw, clipNormalized: norm,
                                 patchNormalized: encode(patch, detach: detachEncoder).normalized,
                                 imageNormalized: encode(image).normalized)
    }

    /// The forward pass. clip [B, T, 3, H, W], patch [B, 3, p, p], image [B, 3, H, W] (the target
    /// frame the patch was cut from).
    public func callAsFunction(clip: Tensor, patch: Tensor, image: Tensor) -> TimeCycleOutputs {
        self(features: encode(clip: clip, patch: patch, image: image))
    }

    /// The forward pass from features, the encoder's (`encode(clip:patch:image:)`) or any others of
    /// the config's grid sizes (e.g. fixed positional features that test what the localizer learns).
    public func callAsFunction(features f: TimeCycleFeatures) -> TimeCycleOutputs {
        let raw = f.clip, norm = f.clipNormalized, pnorm = f.patchNormalized, inorm = f.imageNormalized
        let tl = f.length, bsz = f.batch
        let c = raw.shape[1], hb = raw.shape[2], wb = raw.shape[3]
        precondition(pnorm.shape[0] == bsz && inorm.shape[0] == bsz, "TimeCycleModel: batch sizes differ")
        precondition(pnorm.shape[2] == config.patchGrid && pnorm.shape[3] == config.patchGrid && hb == config.baseGrid && wb == config.baseGrid
                     && inorm.shape[2] == hb && inorm.shape[3] == wb,
                     "TimeCycleModel: feature maps \(raw.shape) (clip), \(pnorm.shape) (patch), \(inorm.shape) (image) do not match the config (frame \(config.frameSize) -> \(config.baseGrid), patch \(config.patchSize) -> \(config.patchGrid))")

        // Skip cycle: patch -> every frame directly (theta2), crop, crop -> target image (theta3).
        let a2 = affinity(query: TimeCycleModel.repeatEach(pnorm, tl), base: norm)
        let theta2 = predictTheta(a2)
        let crops2 = crop(raw, theta: theta2)
        let crops2n = F.normalize(crops2, axis: 1)
        let theta3 = predictTheta(affinity(query: crops2n, base: TimeCycleModel.repeatEach(inorm, tl)))

        // Per-frame views [B, C, H, W].
        let raw5 = raw.reshaped([bsz, tl, c, hb, wb]), norm5 = norm.reshaped([bsz, tl, c, hb, wb])
        func frame(_ x5: Tensor, _ t: Int) -> Tensor { x5.sliced(axis: 1, start: t, end: t + 1).reshaped([bsz, c, hb, wb]) }
        let rawFrames = (0..<tl).map { frame(raw5, $0) }, normFrames = (0..<tl).map { frame(norm5, $0) }

        // Backward chain f_{T-1} ... f_0 (shared by all cycles). Its first step (patch -> f_{T-1})
        // is the direct step of frame T-1.
        let lastRows = (0..<bsz).map { $0 * tl + tl - 1 }
        var backCrops: [Tensor] = [crops2.indexSelect(axis: 0, indices: lastRows)]
        var query = crops2n.indexSelect(axis: 0, indices: lastRows)
        for t in stride(from: tl - 2, through: 0, by: -1) {
            let theta = predictTheta(affinity(query: query, base: normFrames[t]))
            let cr = crop(rawFrames[t], theta: theta)
            backCrops.append(cr)
            query = F.normalize(cr, axis: 1)
        }

        // Forward chains: cycle c starts from the crop in f_{T-c}; at step w it moves into
        // f_{T-c+w} (w < c) or into the target image (w == c). All cycles step together.
        // queries[cyc - 1] is cycle cyc's current query.
        var queries: [Tensor] = (1...tl).map { F.normalize(backCrops[$0 - 1], axis: 1) }
        var cycleThetas: [Tensor] = []
        for w in 1...tl {
            let active = Array(w...tl)
            let q = Tensor.cat(active.map { queries[$0 - 1] }, axis: 0)
            let bases = Tensor.cat(active.map { $0 == w ? inorm : normFrames[tl - $0 + w] }, axis: 0)
            let theta = predictTheta(affinity(query: q, base: bases))
            cycleThetas.append(active.count == 1 ? theta : theta.sliced(axis: 0, start: 0, end: bsz))
            if active.count > 1 {
                let rawBases = Tensor.cat(active.dropFirst().map { rawFrames[tl - $0 + w] }, axis: 0)
                let cropsN = F.normalize(crop(rawBases, theta: theta.sliced(axis: 0, start: bsz)), axis: 1)
                for (i, cyc) in active.dropFirst().enumerated() {
                    queries[cyc - 1] = cropsN.sliced(axis: 0, start: i * bsz, end: (i + 1) * bsz)
                }
            }
        }
        // (The original also sends the crops of the last backward chain back into the target
        // image; that transform enters no loss and is not computed here.)
        return TimeCycleOutputs(cycleThetas: cycleThetas, directThetas: theta2, directAffinity: a2,
                                skipThetas: theta3, backCrops: backCrops, patchFeatures: pnorm)
    }

    /// Forward pass and every loss term against the ground-truth theta [B, 2, 3].
    public func losses(clip: Tensor, patch: Tensor, image: Tensor, target: Tensor) -> TimeCycleLosses {
        TimeCycleLoss.compute(self(clip: clip, patch: patch, image: image), target: target, config: config)
    }

    /// Forward pass from features and every loss term against the ground-truth theta [B, 2, 3].
    public func losses(features: TimeCycleFeatures, target: Tensor) -> TimeCycleLosses {
        TimeCycleLoss.compute(self(features: features), target: target, config: config)
    }
}
