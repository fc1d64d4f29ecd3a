import CycleTimeCore
import CycleTimeModels
import CycleTimeNN
import Foundation

/// The backbone of an AVA detector.
public enum AVABackboneKind: String, Sendable, CaseIterable {
    /// (a) the 2D encoder on every frame, features averaged over time (`FrameAveragedBackbone`).
    case twoD = "2d"
    /// (b) the encoder inflated to 3D, SlowOnly-style (`ResNet3d`).
    case slowonly
    /// (c) SlowFast: the inflated slow pathway plus a randomly initialized fast pathway.
    case slowfast
}

/// The RoI head on top of the RoI features.
public enum AVAHeadKind: String, Sendable, CaseIterable {
    /// mmaction2's BBoxHeadAVA: max pool, dropout, linear.
    case linear
    /// The actor-centric relation head (`ACRNHead`), then BBoxHeadAVA.
    case acrn
    /// ACAR-Net's head (`ACARHead`: actor-context features and HR2O relation reasoning) in place
    /// of BBoxHeadAVA.
    case acar
}

/// ACAR-Net's head options (the released code's `ACARHead` arguments and defaults).
public struct ACAROptions: Sendable, Equatable {
    public var reduceDim = 1024
    public var hiddenDim = 512
    public var depth = 2
    public var kernelSize = 3
    public var mlp1x1 = false
    /// `max2x2` (a 3x3 stride-2 max pool before HR2O) or `none`.
    public var downsample = true
    public var bias = false
    public init() {}
}

/// The long-term feature bank's operator (mmaction2's fbo_cfg) and window size.
public struct FeatureBankOptions: Sendable, Equatable {
    public var kind: FeatureBankOperatorKind = .nonLocal
    /// Long-term features per RoI: window seconds x features per second.
    public var longTerm = 300
    public var latent = 512
    public var layers = 2
    public var dropout: Float = 0.2
    public var preActivate = true
    public init() {}
}

/// The detector's architecture.
public struct AVADetectorConfig: Sendable, Equatable {
    public var backbone: AVABackboneKind = .slowonly
    /// ResNet depth (18, 34, 50, ...).
    public var depth = 18
    /// Last stage of the backbone (layer3 for encoders trained to layer3, such as TimeCycle's).
    public var lastStage = "layer4"
    /// Spatial strides of layer1..layer4 ([1, 2, 2, 1]: layer4 at stride 1, stride-16 features).
    public var strides = [1, 2, 2, 1]
    /// SlowOnly temporal kernels per stage (3 in layer3 and layer4).
    public var temporalKernels = [1, 1, 3, 3]
    /// Number of action classes (outputs are classes + 1, slot 0 unused).
    public var classes = 80
    /// Concatenate a whole-frame context feature to every RoI feature.
    public var context = false
    /// The RoI head: `linear` (BBoxHeadAVA), `acrn` (ACRNHead before it) or `acar` (ACAR-Net's
    /// head instead of it); the relation heads not with `context`.
    public var head: AVAHeadKind = .linear
    /// ACRN: output channels (0: the backbone's), spatial stride and (1, 3, 3) convolutions.
    public var acrnChannels = 0
    public var acrnStride = 1
    public var acrnConvs = 1
    /// ACAR: its options; `roiSize` is its roi_spatial, `dropout` its dropout before fc2.
    public var acar = ACAROptions()
    /// The long-term feature bank operator before the classifier (nil: none; linear head only).
    public var bank: FeatureBankOptions?
    public var dropout: Float = 0.5
    public var roiSize = 8
    /// SlowFast: frame-rate ratio of the fast pathway, its channel reduction 1/beta, lateral BN + ReLU.
    public var alpha = 8
    public var betaInv = 8
    public var lateralNorm = false
    public init() {}
}

/// A bad detector configuration or weight file: the message names the field or file and key.
public struct AVADetectorError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let description: String
    public init(_ s: String) { description = s }
    public var errorDescription: String? { description }
}

/// mmaction2-style two-stage AVA action detector: a video backbone producing a stride-16 feature
/// map [N, C, T', h, w], then the RoI head (`AVARoIHead`) on the time-averaged feature at the
/// person boxes. Key names: `backbone.*` (the 2D backbone's encoder under `backbone.encoder.*`),
/// `roi_head.fc_cls.*`; with `model.head acar`, ACAR-Net's head replaces the RoI head
/// (`acar_head.*`, the released code's names after it).
public final class AVADetector: Module {
    public let config: AVADetectorConfig
    public let backbone: Module
    /// The RoI head (linear, or ACRN then linear); nil with ACAR's head.
    public let roi_head: AVARoIHead?
    /// ACAR-Net's head (`model.head acar`), which classifies by itself.
    public let acar_head: ACARHead?
    /// The long-term feature bank operator (`model.bank`), between the RoI pooling and the classifier.
    public let bank_head: FBOHead?
    public let outputStride: Int
    public let featureChannels: Int

    public init(config: AVADetectorConfig, generator: inout RandomGenerator) throws {
        self.config = config
        guard ResNetConfig.blocks(depth: config.depth) != nil else {
            throw AVADetectorError("model.depth \(config.depth) is not a ResNet depth (18, 34, 50, 101, 152)")
        }
        guard let last = ResNetConfig.stageNames.firstIndex(of: config.lastStage), last < 4 else {
            throw AVADetectorError("model.last_stage '\(config.lastStage)' is not layer1, layer2, layer3 or layer4")
        }
        guard config.strides.count == 4, config.strides.allSatisfy({ $0 == 1 || $0 == 2 }) else {
            throw AVADetectorError("model.strides must be 4 strides (layer1..layer4), each 1 or 2")
        }
        switch config.backbone {
        case .twoD:
            let enc = ResNet(config: ResNetConfig(depth: config.depth, lastStage: config.lastStage, strides: config.strides), generator: &generator)
            backbone = FrameAveragedBackbone(encoder: enc)
            outputStride = enc.outputStride; featureChannels = enc.outChannels
        case .slowonly:
            guard config.temporalKernels.count == 4, config.temporalKernels.allSatisfy({ $0 >= 1 && $0 % 2 == 1 }) else {
                throw AVADetectorError("model.temporal_kernels must be 4 odd sizes (layer1..layer4)")
            }
            let r = ResNet3d(config: ResNet3dConfig(depth: config.depth, spatialStrides: config.strides, temporalKernels: config.temporalKernels,
                                                    lastStage: config.lastStage), generator: &generator)
            backbone = r
            outputStride = r.outputStride; featureChannels = r.outChannels
        case .slowfast:
            guard config.lastStage == "layer4" else {
                throw AVADetectorError("model.last_stage must be layer4 for the slowfast backbone (its pathways fuse after every stage)")
            }
            let sf = SlowFastConfig(depth: config.depth, alpha: config.alpha, betaInv: config.betaInv, lateralNorm: config.lateralNorm,
                                    spatialStrides: config.strides, slowTemporalKernels: config.temporalKernels)
            do { try sf.validate() } catch { throw AVADetectorError("model.\(error)") }
            let b = SlowFastBackbone(config: sf, generator: &generator)
            backbone = b
            outputStride = b.outputStride; featureChannels = b.outChannels
        }
        if config.head == .acrn && config.context {
            throw AVADetectorError("model.head acrn relates each actor to the whole frame already: set model.context false")
        }
        guard config.acrnChannels >= 0, config.acrnStride >= 1, config.acrnConvs >= 1 else {
            throw AVADetectorError("model.acrn_channels >= 0, model.acrn_stride >= 1 and model.acrn_convs >= 1")
        }
        if config.head == .acar {
            if config.context { throw AVADetectorError("model.head acar relates each actor to the whole frame already: set model.context false") }
            let a = config.acar
            guard a.reduceDim >= 1, a.hiddenDim >= 1, a.depth >= 0, a.kernelSize >= 1, a.kernelSize % 2 == 1 else {
                throw AVADetectorError("model.acar_reduce_dim >= 1, model.acar_hidden_dim >= 1, model.acar_depth >= 0 and an odd model.acar_kernel_size")
            }
            roi_head = nil
            acar_head = ACARHead(width: featureChannels, outputs: config.classes + 1, roiSpatial: config.roiSize, reduceDim: a.reduceDim,
                                 hiddenDim: a.hiddenDim, depth: a.depth, kernelSize: a.kernelSize, mlp1x1: a.mlp1x1, downsample: a.downsample,
                                 dropout: config.dropout, bias: a.bias, generator: &generator)
        } else {
            let acrn = config.head == .acrn ? (channels: config.acrnChannels > 0 ? config.acrnChannels : featureChannels, stride: config.acrnStride,
                                               convs: config.acrnConvs) : nil
            var inChannels = featureChannels * (config.context ? 2 : 1)
            if let b = config.bank {
                guard config.head == .linear && !config.context else {
                    throw AVADetectorError("model.bank works with model.head linear and model.context false")
                }
                inChannels = FBOHead.outChannels(kind: b.kind, stChannels: featureChannels, ltChannels: featureChannels, latentChannels: b.latent)
            }
            roi_head = AVARoIHead(inChannels: inChannels, classes: config.classes, dropout: config.dropout,
                                  roiSize: config.roiSize, featureStride: outputStride, acrn: acrn, generator: &generator)
            acar_head = nil
        }
        if let b = config.bank {
            guard b.longTerm >= 1, b.latent >= 1, b.layers >= 1, b.dropout >= 0 && b.dropout < 1 else {
                throw AVADetectorError("model.bank_window, model.bank_per_second, model.bank_latent and model.bank_layers >= 1, model.bank_dropout in [0, 1)")
            }
            bank_head = FBOHead(kind: b.kind, stChannels: featureChannels, ltChannels: featureChannels, latentChannels: b.latent, longTerm: b.longTerm,
                                layers: b.layers, stDropout: b.dropout, ltDropout: b.dropout, preActivate: b.preActivate, generator: &generator)
        } else {
            bank_head = nil
        }
        super.init()
    }

    /// Logits [K, classes + 1] for `clips` [N, 3, T, H, W] and normalized boxes per clip (K boxes in all);
    /// with a feature bank, `longTerm` holds each box's window [K, C, W * K', 1, 1] (`FeatureBank.windows`).
    public func logits(_ clips: Tensor, boxes: [[AVABox]], longTerm: Tensor? = nil) -> Tensor {
        precondition(clips.rank == 5 && boxes.count == clips.shape[0], "AVADetector: clips [N, 3, T, H, W] with N box lists, got \(clips.shape) and \(boxes.count)")
        let h = clips.shape[3], w = clips.shape[4]
        let feat = backbone(clips)
        let f = feat.rank == 5 ? feat.mean(axis: 2) : feat
        guard let roi_head else {
            guard let acar_head else { preconditionFailure("AVADetector: neither a RoI head nor ACAR's head") }
            return acar_head(features: f, boxes: boxes)
        }
        var pooled = roi_head.pooled(f, rois: AVARoIHead.rois(boxes, imageHeight: h, imageWidth: w))
        if config.context {
            let whole = boxes.map { list in list.map { _ in AVABox(0, 0, 1, 1) } }
            let ctx = roi_head.pooled(f, rois: AVARoIHead.rois(whole, imageHeight: h, imageWidth: w))
            pooled = Tensor.cat([pooled, ctx], axis: 1)
        }
        if let bank_head {
            guard let longTerm else { preconditionFailure("AVADetector: model.bank needs the boxes' long-term features") }
            pooled = bank_head(shortTerm: pooled, longTerm: longTerm)
        }
        return roi_head.classify(pooled)
    }

    /// The RoI features [K, C] of normalized boxes per clip, as the RoI head pools them (time
    /// average, RoIAlign, spatial max; no context, dropout or classifier): what a long-term feature
    /// bank stores. nil for ACAR's head, which pools no per-box feature.
    public func roiFeatures(_ clips: Tensor, boxes: [[AVABox]]) -> Tensor? {
        guard let roi_head else { return nil }
        let feat = backbone(clips)
        let f = feat.rank == 5 ? feat.mean(axis: 2) : feat
        return roi_head.pooled(f, rois: AVARoIHead.rois(boxes, imageHeight: clips.shape[3], imageWidth: clips.shape[4]))
    }

    /// Batch-norm layers of the backbone.
    public var batchNorms: [BatchNormBase] { backbone.modules().compactMap { $0 as? BatchNormBase } }

    /// Frozen batch norm: running statistics used and not updated, affine parameters not trained.
    /// Call after `train()` (the mode is per module).
    public func freezeBatchNorm() {
        for bn in batchNorms {
            bn.eval()
            for (_, p) in bn.namedParameters() { p.requiresGrad = false }
        }
    }

    /// Initializes the backbone from a safetensors file: a CycleTime checkpoint (keys under
    /// `encoder.`, torchvision names) or torchvision weights (`conv1.weight`, `layer1.0...`), 2D;
    /// the SlowOnly backbone inflates them (I3D). Missing keys and bad shapes are errors naming the
    /// file and key; keys the backbone does not use (fc, heads) are ignored.
    ///
    /// A detector checkpoint (keys under `backbone.`: an mmaction2 one, or another `ava train`
    /// run's, as mmaction2's `load_from` restricted to the backbone) gives the whole backbone,
    /// which must be configured the same; the heads keep their initialization.
    public func loadEncoder(from path: String) throws {
        let file: CheckpointFile
        do { file = try CheckpointFile(path) } catch {
            let msg = "\(error)"
            throw AVADetectorError(msg.contains(path) ? msg : "\(path): \(msg)")
        }
        if MMAction2Layout.matches(file.tensors.keys) { return try loadBackbone(file, key: MMAction2Layout.key, kind: "an mmaction2 checkpoint") }
        if file.tensors.keys.contains(where: { $0.hasPrefix("backbone.") }) { return try loadBackbone(file, key: { $0 }, kind: "a detector checkpoint") }
        let state: [String: Tensor]
        do { state = try file.encoderState().state } catch {
            let msg = "\(error)"
            throw AVADetectorError(msg.contains(path) ? msg : "\(path): \(msg)")
        }
        if state["conv1.weight"] == nil {
            throw AVADetectorError("\(path): no encoder weights (neither a CycleTime checkpoint with 'encoder.' keys nor torchvision keys such as 'conv1.weight')")
        }
        do {
            switch backbone {
            case let b as FrameAveragedBackbone:
                let needed = Set(b.encoder.stateDictKeys())
                let (missing, _) = try b.encoder.loadStateDict(state.filter { needed.contains($0.key) }, strict: false)
                if let m = missing.first {
                    throw AVADetectorError("\(path): lacks encoder key '\(m)' (\(missing.count) missing; an encoder trained to an earlier stage needs model.last_stage)")
                }
            case let r as ResNet3d:
                try r.inflate(from: state)
            case let sf as SlowFastBackbone:
                try sf.inflate(from: state)
            default:
                throw AVADetectorError("\(path): this backbone does not load 2D encoder weights")
            }
        } catch let e as AVADetectorError {
            throw e
        } catch {
            throw AVADetectorError("\(path): \(error)")
        }
    }

    /// The backbone from a detector checkpoint's `backbone.*` keys, renamed by `key` (mmaction2's
    /// by `MMAction2Layout`): every backbone key must be there with its shape, and no other. The
    /// heads keep their initialization: their classes are the run's.
    func loadBackbone(_ file: CheckpointFile, key: (String) -> String, kind: String) throws {
        var state: [String: Tensor] = [:]
        for (k, t) in file.tensors where k.hasPrefix("backbone.") { state[key(String(k.dropFirst(9)))] = t }
        do {
            try file.requireFinite(state, prefix: "backbone.")
            _ = try backbone.loadStateDict(state, strict: true)
        } catch {
            throw AVADetectorError("\(file.path): \(kind) that does not fit the \(config.backbone.rawValue) backbone (depth \(config.depth), last stage \(config.lastStage)): \(error)")
        }
    }
}

/// mmaction2's checkpoint layout, as its AVA detectors (FastRCNN with ResNet3d / ResNet3dSlowFast)
/// save it: every conv + batch norm pair is an mmcv ConvModule (`conv1.conv.weight`,
/// `conv1.bn.weight`, ...), a projection shortcut too (`downsample.conv`, `downsample.bn`), the
/// SlowFast pathways are `slow_path` / `fast_path` with laterals `conv1_lateral.conv`, ... (our names
/// too), and the classifier is `roi_head.bbox_head.fc_cls`. A user's mmaction2 state dict converted
/// to safetensors (`save_file(torch.load(f)["state_dict"], "x.safetensors")`) loads through
/// `model.checkpoint` unchanged.
public enum MMAction2Layout {
    /// Whether `keys` are in mmaction2's layout: a backbone key with a ConvModule after `convN`.
    public static func matches(_ keys: some Sequence<String>) -> Bool {
        keys.contains { k in
            guard k.hasPrefix("backbone.") else { return false }
            let p = k.split(separator: ".")
            return zip(p, p.dropFirst()).contains { isConvN($0) && ($1 == "conv" || $1 == "bn") }
        }
    }

    /// One key of mmaction2's layout in ours: `convN.conv` -> `convN`, `convN.bn` -> `bnN`,
    /// `downsample.conv` / `.bn` -> `downsample.0` / `.1`, `roi_head.bbox_head.` -> `roi_head.`.
    public static func key(_ k: String) -> String {
        let p = k.split(separator: ".").map(String.init)
        var out: [String] = []
        var i = 0
        while i < p.count {
            let next = i + 1 < p.count ? p[i + 1] : nil
            if isConvN(Substring(p[i])), next == "conv" || next == "bn" {
                out.append(next == "conv" ? p[i] : "bn" + p[i].dropFirst(4))
                i += 2
            } else if p[i] == "downsample", next == "conv" || next == "bn" {
                out += ["downsample", next == "conv" ? "0" : "1"]
                i += 2
            } else if p[i] == "bbox_head", out == ["roi_head"] {
                i += 1
            } else {
                out.append(p[i])
                i += 1
            }
        }
        return out.joined(separator: ".")
    }

    static func isConvN(_ s: Substring) -> Bool { s.count == 5 && s.hasPrefix("conv") && (s.last?.isNumber ?? false) }
}
