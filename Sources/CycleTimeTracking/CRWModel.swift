import Foundation
import CycleTimeCore
import CycleTimeNN
import CycleTimeModels

// The contrastive random walk of "Space-Time Correspondence as a Contrastive Random Walk"
// (Jabri, Owens, Efros, NeurIPS 2020), as in the authors' released code (class CRW):
// - nodes: every 64x64 patch goes through a ResNet (layer3 and layer4 at stride 1, reflect
//   padding for the 'scratch' model), the feature map is averaged over space, a Linear layer
//   (the released `selfsim_fc`, head depth 0) maps 512 -> 128, and the result is L2-normalized;
// - transitions: A_t = Q_t Q_{t+1}^T per batch item; edge dropout sets entries to -1e20 before
//   the row softmax of A / tau. The backward-in-time matrix is built from the transpose of the
//   already dropped A_t (the released code drops in place) with fresh drops of its own;
// - palindrome walks, for i = 1 ... T-2: W_i = P_0->1 ... P_i->i+1 P_i+1->i ... P_1->0, multiplied
//   left to right exactly as the released code; loss_i = cross-entropy of log(W_i + 1e-20) against
//   the identity (each node should return to itself); loss = mean over i.

/// Every setting of the CRW objective (defaults: the released code's training command, which the
/// issue fixes: tau 0.05, edge dropout 0.1, clip length 4, resnet18 'scratch' with reflect padding).
public struct CRWConfig: Sendable, Equatable, Codable {
    /// torchvision ResNet name.
    public var encoder: String = "resnet18"
    /// Strides of layer1..layer4: layer3 and layer4 at stride 1 (total stride 8, 8x8 maps of 64x64 patches).
    public var encoderStrides: [Int] = [1, 2, 1, 1]
    /// The last ResNet stage used ("layer4"; earlier stages as the released `remove_layers`).
    public var encoderLastStage: String = "layer4"
    /// Reflect padding in every padded convolution (the released 'scratch' model); false: zeros
    /// ('scratch_zeropad').
    public var reflectPadding: Bool = true
    /// Output of the Linear head (the released `selfsim_fc`, head depth 0; its input is the last stage's channels).
    public var featureDim: Int = 128
    /// Softmax temperature (the released default flag is 0.07; its training command and the issue use 0.05).
    public var temperature: Float = 0.05
    /// Probability that an affinity entry is dropped (set to `dropValue`) before the softmax.
    public var edgeDropout: Float = 0.1
    /// The value dropped entries get (the released code's -1e20).
    public var dropValue: Float = -1e20
    /// Dropout on the encoder's feature maps (the released `featdrop`, default 0).
    public var featureDropout: Float = 0
    /// The epsilon inside log(W + eps).
    public var logEpsilon: Float = 1e-20
    /// Frames per clip (T >= 3: walks i = 1 ... T-2).
    public var clipLength: Int = 4
    /// Side of each frame after its random resized crop.
    public var imageSize: Int = 256
    /// Area fraction and aspect ratio range of the per-frame random resized crop.
    public var frameCropScale: ClosedRange<Double> = 0.8...0.95
    public var frameCropAspect: ClosedRange<Double> = 0.7...1.3
    /// Patch side and grid stride (7x7 patches of a 256 frame).
    public var patchSize: Int = 64
    public var patchStride: Int = 32
    /// Area fraction and aspect ratio of each patch's own random resized crop (torchvision's
    /// default ratio 3/4 ... 4/3).
    public var patchJitterScale: ClosedRange<Double> = 0.7...0.9
    public var patchJitterAspect: ClosedRange<Double> = (3.0 / 4.0)...(4.0 / 3.0)
    /// Per-channel normalization of the patches (the released IMG_MEAN / IMG_STD).
    public var mean: [Float] = Normalization.crw.mean
    public var std: [Float] = Normalization.crw.std
    /// Frame rate clips are sampled at.
    public var fps: Double = 8
    /// The released recipe's optimizer (Adam) and multi-step schedule (lr x gamma at each milestone,
    /// in epochs). Not used: training takes its optimizer and schedule from its own config sections;
    /// kept so that configs that set them still load (with a warning).
    public var learningRate: Float = 1e-4
    public var weightDecay: Float = 0
    public var lrMilestones: [Int] = [20, 30, 40]
    public var lrGamma: Float = 0.3

    public init() {}

    /// Throws a `CRWConfigError` naming the first bad field.
    public func validate() throws {
        func check(_ ok: Bool, _ field: String, _ why: String) throws {
            if !ok { throw CRWConfigError(field: field, message: why) }
        }
        try check(ResNetConfig(name: encoder) != nil, "encoder", "'\(encoder)' is not a torchvision ResNet name")
        try check(encoderStrides.count == 4 && encoderStrides.allSatisfy { $0 >= 1 }, "encoderStrides", "needs 4 positive values, got \(encoderStrides)")
        try check(["layer1", "layer2", "layer3", "layer4"].contains(encoderLastStage), "encoderLastStage",
                  "must be one of layer1 ... layer4, got '\(encoderLastStage)'")
        try check(featureDim >= 1, "featureDim", "must be positive, got \(featureDim)")
        try check(temperature > 0, "temperature", "must be positive, got \(temperature)")
        try check(edgeDropout >= 0 && edgeDropout < 1, "edgeDropout", "must be in [0, 1), got \(edgeDropout)")
        try check(featureDropout >= 0 && featureDropout < 1, "featureDropout", "must be in [0, 1), got \(featureDropout)")
        try check(clipLength >= 3, "clipLength", "must be at least 3 (walks need T >= 3), got \(clipLength)")
        try check(imageSize >= 1, "imageSize", "must be positive, got \(imageSize)")
        try check(patchSize >= 1 && patchSize <= imageSize, "patchSize", "must be in 1...imageSize (\(imageSize)), got \(patchSize)")
        try check(patchStride >= 1, "patchStride", "must be positive, got \(patchStride)")
        for (name, r) in [("frameCropScale", frameCropScale), ("patchJitterScale", patchJitterScale)] {
            try check(r.lowerBound > 0 && r.upperBound <= 1, name, "must lie in (0, 1], got \(r)")
        }
        for (name, r) in [("frameCropAspect", frameCropAspect), ("patchJitterAspect", patchJitterAspect)] {
            try check(r.lowerBound > 0, name, "must be positive, got \(r)")
        }
        try check(mean.count == 3, "mean", "needs 3 values, got \(mean.count)")
        try check(std.count == 3 && std.allSatisfy { $0 > 0 }, "std", "needs 3 positive values, got \(std)")
        try check(fps > 0, "fps", "must be positive, got \(fps)")
    }

    public var resnetConfig: ResNetConfig {
        guard let rc = ResNetConfig(name: encoder, lastStage: encoderLastStage, strides: encoderStrides,
                                    paddingMode: reflectPadding ? .reflect : .zeros) else {
            preconditionFailure("CRWConfig: unknown encoder '\(encoder)'")
        }
        return rc
    }

    /// Patches per frame side ((256 - 64) / 32 + 1 = 7).
    public var gridSide: Int { (imageSize - patchSize) / patchStride + 1 }
    /// Nodes per frame (49).
    public var nodesPerFrame: Int { gridSide * gridSide }
}

/// A bad CRW setting, naming the field.
public struct CRWConfigError: Error, CustomStringConvertible {
    public let field: String
    public let message: String
    public var description: String { "crw config: \(field): \(message)" }
}

/// Edge-dropout masks of one batch (1 = dropped, 0 = kept): `forward[t]` for A_t ([B, N, N], rows
/// the nodes of frame t) and `backward[t]` for the transposed A_t (rows the nodes of frame t+1).
public struct CRWDropMasks {
    public var forward: [Tensor]
    public var backward: [Tensor]

    public init(forward: [Tensor], backward: [Tensor]) {
        self.forward = forward
        self.backward = backward
    }

    /// Independent drops with probability p: every forward mask, then every backward mask, each
    /// in row-major order, one `nextFloat()` per entry (dropped when < p, like `rand_like(A) < p`).
    public static func random(batch: Int, nodes: Int, transitions: Int, p: Float, generator: inout RandomGenerator) -> CRWDropMasks {
        func one() -> Tensor {
            let m = Tensor(uninitialized: [batch, nodes, nodes])
            for i in 0..<m.count { m.data[i] = generator.nextFloat() < p ? 1 : 0 }
            return m
        }
        let f = (0..<transitions).map { _ in one() }
        let b = (0..<transitions).map { _ in one() }
        return CRWDropMasks(forward: f, backward: b)
    }
}

/// The result of one forward pass.
public struct CRWOutput {
    /// The objective: the mean of the walk losses.
    public var loss: Tensor
    /// Cross-entropy of each palindrome walk i = 1 ... T-2 (walk i goes i+1 steps out and back).
    public var walkLosses: [Tensor]
    /// Fraction of the nodes whose walk i returns to themselves (argmax of W_i's row), i = 1 ... T-2.
    public var walkAccuracies: [Float]
    /// The node embeddings [B, T, N, D] (L2-normalized).
    public var nodes: Tensor
    /// Mean entropy (nats) of the rows of the frame-to-frame transition matrices P_t->t+1 (the
    /// softmax of the affinities, after edge dropout when there is any): log N for uniform
    /// affinities, 0 for one-hot ones.
    public var transitionEntropy: Float

    /// Mean of the walk accuracies.
    public var walkAccuracy: Float { walkAccuracies.reduce(0, +) / Float(max(1, walkAccuracies.count)) }

    /// Scalar terms for logs: "loss", "walk_accuracy", and per walk "xent_r<i>", "acc_r<i>"
    /// (the released code's "xent cyc r<i>" / "acc cyc r<i>").
    public var terms: [String: Float] {
        var t: [String: Float] = ["loss": loss.item(), "walk_accuracy": walkAccuracy]
        for (k, l) in walkLosses.enumerated() {
            t["xent_r\(k + 1)"] = l.item()
            t["acc_r\(k + 1)"] = walkAccuracies[k]
        }
        return t
    }
}

/// The CRW model: encoder (ResNet to layer4) and the linear head `selfsim_fc` (keys
/// `encoder.<torchvision key>` and `selfsim_fc.0.weight/bias`, as the released checkpoints
/// after their `encoder.model.` prefix becomes `encoder.`).
public final class CRWModel: Module {
    public let config: CRWConfig
    public let encoder: ResNet
    /// The released code's `selfsim_fc`: a Sequential holding one Linear (head depth 0).
    public let selfsim_fc: Sequential

    public init(config: CRWConfig, generator: inout RandomGenerator) {
        self.config = config
        encoder = ResNet(config: config.resnetConfig, generator: &generator)
        selfsim_fc = Sequential(Linear(encoder.outChannels, config.featureDim, generator: &generator))
        super.init()
    }

    public convenience init(config: CRWConfig = CRWConfig()) {
        self.init(config: config, generator: &DefaultRandom.generator)
    }

    /// The Linear head.
    public var head: Linear {
        guard let l = selfsim_fc[0] as? Linear else { preconditionFailure("CRWModel: selfsim_fc holds no Linear") }
        return l
    }

    /// Node embeddings: patches [B, T, N, 3, h, w] -> [B, T, N, D], the spatial mean of each
    /// patch's encoder map through the head, L2-normalized. Feature dropout (training only) draws
    /// from `generator`.
    public func nodes(_ patches: Tensor, generator: inout RandomGenerator) -> Tensor {
        precondition(patches.rank == 6 && patches.shape[3] == 3,
                     "CRWModel: patches must be [B, T, N, 3, h, w], got \(patches.shape)")
        let b = patches.shape[0], t = patches.shape[1], n = patches.shape[2]
        var maps = encoder(patches.reshaped([b * t * n] + Array(patches.shape[3...])))
        maps = F.dropout(maps, p: config.featureDropout, training: training, generator: &generator)
        let q = F.normalize(head(maps.mean(axes: [2, 3])), axis: 1)
        return q.reshaped([b, t, n, config.featureDim])
    }

    /// Row-stochastic transitions of the affinities a [B, N, N] with dropped entries.
    func stochastic(_ a: Tensor) -> Tensor {
        (a / Tensor(scalar: config.temperature)).softmax(axis: 2)
    }

    /// The walk objective on node embeddings q [B, T, N, D]; `masks` nil means no edge dropout.
    public func walk(_ q: Tensor, masks: CRWDropMasks?) -> CRWOutput {
        precondition(q.rank == 4, "CRWModel.walk: nodes must be [B, T, N, D], got \(q.shape)")
        let b = q.shape[0], t = q.shape[1], n = q.shape[2], d = q.shape[3]
        precondition(t >= 3, "CRWModel.walk: the clip needs at least 3 frames, got \(t)")
        if let masks {
            precondition(masks.forward.count == t - 1 && masks.backward.count == t - 1
                         && (masks.forward + masks.backward).allSatisfy { $0.shape == [b, n, n] },
                         "CRWModel.walk: masks must be \(t - 1) forward and \(t - 1) backward tensors [\(b), \(n), \(n)]")
        }
        var forward: [Tensor] = [], backward: [Tensor] = []
        let frames: [Tensor] = (0..<t).map { q.sliced(axis: 1, start: $0, end: $0 + 1).reshaped([b, n, d]) }
        for i in 0..<(t - 1) {
            var a = frames[i].matmul(frames[i + 1].transposed(1, 2))                     // [B, N, N]
            if let masks { a = a.maskedFill(masks.forward[i], config.dropValue) }
            forward.append(stochastic(a))
            var at = a.transposed(1, 2)
            if let masks { at = at.maskedFill(masks.backward[i], config.dropValue) }
            backward.append(stochastic(at))
        }
        let target = Tensor((0..<(b * n)).map { Float($0 % n) }, shape: [b * n])
        var losses: [Tensor] = [], accuracies: [Float] = []
        var out = forward[0]
        for i in 1..<(t - 1) {
            out = out.matmul(forward[i])                    // P_0->1 ... P_i->i+1 (shared by the walks)
            var w = out
            for j in stride(from: i, through: 0, by: -1) { w = w.matmul(backward[j]) }
            let logits = (w + config.logEpsilon).log().reshaped([b * n, n])
            losses.append(F.crossEntropy(logits, target))
            accuracies.append(Self.returnRate(logits))
        }
        var total = losses[0]
        for l in losses.dropFirst() { total = total + l }
        return CRWOutput(loss: total / Tensor(scalar: Float(losses.count)), walkLosses: losses,
                         walkAccuracies: accuracies, nodes: q, transitionEntropy: Self.rowEntropy(forward))
    }

    /// Mean entropy of the rows of row-stochastic matrices [B, N, N].
    static func rowEntropy(_ ps: [Tensor]) -> Float {
        var total = 0.0, rows = 0
        for p in ps {
            let n = p.shape[2], v = p.data
            for r in 0..<(p.count / n) {
                for k in 0..<n {
                    let x = Double(v[r * n + k])
                    if x > 0 { total -= x * Foundation.log(x) }
                }
                rows += 1
            }
        }
        return Float(total / Double(max(rows, 1)))
    }

    /// Fraction of rows r of logits [B*N, N] whose argmax (first maximum) is r mod N.
    static func returnRate(_ logits: Tensor) -> Float {
        let rows = logits.shape[0], n = logits.shape[1]
        var hits = 0
        for r in 0..<rows {
            let p = logits.data + r * n
            var best = 0
            for k in 1..<n where p[k] > p[best] { best = k }
            if best == r % n { hits += 1 }
        }
        return Float(hits) / Float(max(1, rows))
    }

    /// The forward pass: patches [B, T, N, 3, h, w] -> loss terms. In training mode with edge
    /// dropout, masks are `masks` when given, else drawn from `generator`; in eval mode there is no
    /// dropout.
    public func callAsFunction(patches: Tensor, masks: CRWDropMasks? = nil, generator: inout RandomGenerator) -> CRWOutput {
        let q = nodes(patches, generator: &generator)
        var m = masks
        if !training {
            m = nil
        } else if m == nil && config.edgeDropout > 0 {
            m = CRWDropMasks.random(batch: q.shape[0], nodes: q.shape[2], transitions: q.shape[1] - 1,
                                    p: config.edgeDropout, generator: &generator)
        }
        return walk(q, masks: m)
    }
}
