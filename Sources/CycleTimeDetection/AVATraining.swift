import CycleTimeCore
import CycleTimeData
import CycleTimeModels
import CycleTimeTraining
import CycleTimeNN
import Foundation

/// AVA data: annotation files, frames, clips and augmentation (defaults: mmaction2/PySlowFast's
/// SlowOnly 8x8 AVA recipe). Paths are relative to the working directory.
public struct AVADataConfig: Codable, Equatable, Sendable {
    /// Training annotation CSV (video_id, timestamp, x1, y1, x2, y2, action_id[, person_id]).
    public var annotations: String = ""
    /// Label map: pbtxt (item/label blocks) or 'id: name' lines.
    public var labelmap: String = ""
    /// Person proposals for training (JSON or the LFB/PySlowFast CSV); "" trains on ground-truth
    /// boxes only. With a file, keyframes it lacks are reported and skipped.
    public var proposals: String = ""
    /// Excluded timestamps CSV ("" for none).
    public var excluded: String = ""
    /// A folder of videos (<video_id>.mp4 ...) or a root of frame folders (<video_id>/img_00001.jpg,
    /// <video_id>/<video_id>_000001.jpg or <video_id>/00001.jpg|png).
    public var frames: String = ""
    /// auto, videos or frame_folders.
    public var framesKind: String = "auto"
    /// Class ids trained and tested (mmaction2's custom_classes); empty: every label-map class.
    public var customClasses: [Int] = []
    /// Clip: clip_length frames at interval frame_interval (T x tau), centred on the keyframe.
    public var clipLength: Int = 8
    public var frameInterval: Int = 8
    /// Frame numbering: keyframe at second s is frame fps * (s - window_start) + 1; videos are decoded at fps.
    public var fps: Int = 30
    public var windowStart: Int = 900
    /// Training: short side rescaled to a uniform size in [low, high], then a random crop and a flip.
    public var trainJitterScales: [Int] = [256, 320]
    public var trainCrop: Int = 256
    public var flip: Bool = true
    /// Training: the clip centre moves by up to this many frames either way.
    public var temporalJitter: Int = 0
    /// Testing: the full frame, short side at this size.
    public var testShortSide: Int = 256
    /// Videos are decoded with their short side at this size (0: native); frame folders are read as they are.
    public var decodeShortSide: Int = 320
    /// Training regions: proposals scoring >= this whose IoU with a ground-truth box is >= train_proposal_iou.
    public var trainProposalScore: Double = 0.9
    public var trainProposalIou: Double = 0.9
    /// Decoded frames kept in memory (MB, all videos together).
    public var cacheMb: Int = 512
    public var workers: Int = 2
    public var prefetch: Int = 4
    public var mean: [Float] = Normalization.imagenet.mean
    public var std: [Float] = Normalization.imagenet.std
    public init() {}
}

extension AVADataConfig {
    /// The frame source fields (frames, frames_kind, fps) make sense; errors name the field.
    public func validateFrames(_ v: ConfigValidator) throws {
        if frames.isEmpty { throw v.fail("data.frames", "must name a videos folder or a frame-folder root") }
        if !["auto", "videos", "frame_folders"].contains(framesKind) { throw v.fail("data.frames_kind", "'\(framesKind)' is not auto, videos or frame_folders") }
        if fps < 1 { throw v.fail("data.fps", "must be >= 1") }
    }

    /// The store of the frames (videos decoded at fps, short side decode_short_side; 0: native).
    public func frameStore() throws -> AVAFrameStore {
        let source = try AVAFrameSource.resolve(frames, kind: framesKind)
        return AVAFrameStore(source: source, fps: fps, decodeShortSide: decodeShortSide > 0 ? decodeShortSide : nil, cacheBytes: cacheMb << 20)
    }
}

/// `cycletime ava test`: the keyframes to detect on and the results file.
public struct AVATestConfig: Codable, Equatable, Sendable {
    /// Annotation CSV whose keyframes are tested (and scored after the run); "": data.annotations.
    public var annotations: String = ""
    /// Person proposals at test time (required, here or in data.proposals).
    public var proposals: String = ""
    /// Excluded timestamps; "": data.excluded.
    public var excluded: String = ""
    /// Proposals kept per keyframe: score >= min(this, the keyframe's best score).
    public var proposalThreshold: Double = 0.9
    /// Result rows with a lower score are dropped.
    public var scoreThreshold: Double = 0.002
    public init() {}
}

/// The detector.
public struct AVAModelConfig: Codable, Equatable, Sendable {
    /// 2d (encoder per frame, averaged over time), slowonly (inflated 3D) or slowfast.
    public var backbone: String = "slowonly"
    public var depth: Int = 18
    public var lastStage: String = "layer4"
    public var strides: [Int] = [1, 2, 2, 1]
    public var temporalKernels: [Int] = [1, 1, 3, 3]
    /// Encoder weights: a CycleTime checkpoint (keys under 'encoder.'), torchvision safetensors, or
    /// an AVA detector checkpoint (ours or mmaction2's: its backbone); "": random initialization
    /// from the seed.
    public var checkpoint: String = ""
    /// Batch norm in evaluation mode with frozen affine parameters.
    public var frozenBn: Bool = false
    /// Focal weighting of the binary cross-entropy (alpha (1 - p_t)^gamma).
    public var focal: Bool = false
    public var focalAlpha: Float = 3
    public var focalGamma: Float = 1
    /// Concatenate a whole-frame context feature to each RoI feature.
    public var context: Bool = false
    /// The RoI head: linear (mmaction2's BBoxHeadAVA) or acrn (mmaction2's ACRNHead, the
    /// actor-centric relation network, before it; acrn_channels 0 = the backbone's channels).
    public var head: String = "linear"
    public var acrnChannels: Int = 0
    public var acrnStride: Int = 1
    public var acrnConvs: Int = 1
    /// ACAR-Net's head (model.head acar), its ACARHead arguments: reduce_dim, hidden_dim, depth
    /// (HR2O layers), kernel_size, mlp_1x1, downsample (max2x2 or none), bias; its roi_spatial is
    /// model.roi_size and its dropout model.dropout (ACAR-Net's configs: 7 and 0).
    public var acarReduceDim: Int = 1024
    public var acarHiddenDim: Int = 512
    public var acarDepth: Int = 2
    public var acarKernelSize: Int = 3
    public var acarMlp1x1: Bool = false
    public var acarDownsample: String = "max2x2"
    public var acarBias: Bool = false
    /// sigmoid (binary cross-entropy with logits, mmaction2) or ava_pose_softmax (ACAR-Net: a
    /// softmax over AVA's pose classes, ids 1-14, a sigmoid over the others; test scores alike).
    public var loss: String = "sigmoid"
    /// Long-term feature bank (Wu et al., CVPR 2019; mmaction2's LFB and FBOHead): none, non_local,
    /// avg or max, reading the files of `cycletime ava bank` in bank_path; each RoI gets the window of
    /// bank_window seconds around its keyframe, bank_per_second features per second (mmaction2: 60
    /// and 5); non_local's latent width, layers, dropout and pre-activation as mmaction2's fbo_cfg.
    /// Linear head, no context.
    public var bank: String = "none"
    public var bankPath: String = ""
    public var bankWindow: Int = 60
    public var bankPerSecond: Int = 5
    public var bankLatent: Int = 512
    public var bankLayers: Int = 2
    public var bankDropout: Float = 0.2
    public var bankPreActivate: Bool = true
    public var dropout: Float = 0.5
    public var roiSize: Int = 8
    /// SlowFast only: the fast pathway's frame-rate ratio (the clip is the fast-rate clip, so
    /// data.clip_length must be a multiple of it), its channel reduction 1/beta, and the lateral
    /// connections' batch norm + ReLU (PySlowFast; mmaction2's laterals are convolutions only).
    public var alpha: Int = 8
    public var betaInv: Int = 8
    public var lateralNorm: Bool = false
    public init() {}
}

/// An AVA detection run: everything `cycletime ava train|test` need. Every random choice flows from `seed`.
public struct AVAConfig: RunConfiguration, Equatable, Sendable {
    public var seed: Int = 0
    public var outputDir: String = "runs/ava"
    public var data = AVADataConfig()
    public var test = AVATestConfig()
    public var model = AVAModelConfig()
    /// SGD (mmaction2's AVA recipe: momentum 0.9, weight decay 1e-5).
    public var optimizer: OptimizerConfig = {
        var o = OptimizerConfig()
        o.name = "sgd"; o.lr = 0.05; o.momentum = 0.9; o.weightDecay = 1e-5
        return o
    }()
    /// Linear warmup then cosine decay.
    public var schedule: ScheduleConfig = {
        var s = ScheduleConfig()
        s.name = "cosine"; s.warmupSteps = 100; s.warmupFactor = 0.1
        return s
    }()
    public var train: LoopConfig = {
        var l = LoopConfig()
        l.batchSize = 2; l.gradClip = 40
        return l
    }()
    /// Ranks of an MPI job (`mpirun -np N cycletime ava train`): batch_size is per rank.
    public var distributed = DistributedConfig()
    public init() {}

    /// Bounds of the numbers (`ConfigValidator.checkNumbers`; the others: 0...maxNumber).
    public static let numberBounds: [String: ClosedRange<Double>] = {
        typealias V = ConfigValidator
        return [
            "data.clip_length": V.queue, "data.frame_interval": V.queue, "data.fps": 0...1000, "data.window_start": V.frames,
            "data.train_jitter_scales": V.imageSide, "data.train_crop": V.imageSide, "data.temporal_jitter": V.frames,
            "data.test_short_side": V.imageSide, "data.decode_short_side": V.imageSide,
            "data.train_proposal_score": V.fraction, "data.train_proposal_iou": V.fraction, "data.cache_mb": 0...1_048_576,
            "test.proposal_threshold": V.fraction, "test.score_threshold": V.fraction,
            "model.depth": 0...1000, "model.strides": 0...64, "model.temporal_kernels": 0...64, "model.dropout": V.fraction,
            "model.roi_size": V.queue, "model.alpha": V.queue, "model.beta_inv": V.queue,
            "model.acrn_channels": V.channels, "model.acrn_stride": V.queue, "model.acrn_convs": V.queue,
            "model.acar_reduce_dim": V.channels, "model.acar_hidden_dim": V.channels, "model.acar_depth": V.queue, "model.acar_kernel_size": V.queue,
            "model.bank_window": V.queue, "model.bank_per_second": V.queue, "model.bank_latent": V.channels, "model.bank_layers": V.queue,
            "model.bank_dropout": V.fraction,
        ].merging(SharedConfigFields.numberBounds) { $1 }
    }()

    /// Checks values that decode but make no sense; errors name the field.
    public func validate(file: String) throws {
        let v = ConfigValidator(file: file)
        try v.checkNumbers(self, bounds: Self.numberBounds)
        func fail(_ field: String, _ why: String) -> ConfigError { v.fail(field, why) }
        try SharedConfigFields.validate(v, outputDir: outputDir, workers: data.workers, prefetch: data.prefetch, mean: data.mean, std: data.std,
                                        optimizer: optimizer, schedule: schedule, train: train, distributed: distributed)
        if data.annotations.isEmpty { throw fail("data.annotations", "must name the annotation CSV") }
        if data.labelmap.isEmpty { throw fail("data.labelmap", "must name the label map") }
        try data.validateFrames(v)
        if data.clipLength < 1 { throw fail("data.clip_length", "must be >= 1") }
        if data.frameInterval < 1 { throw fail("data.frame_interval", "must be >= 1") }
        if model.backbone == "slowfast" && (model.alpha < 1 || data.clipLength % model.alpha != 0) {
            throw fail("data.clip_length", "must be a multiple of model.alpha (\(model.alpha)) for the slowfast backbone (the clip is the fast pathway's)")
        }
        if data.trainCrop < 16 { throw fail("data.train_crop", "must be >= 16") }
        if data.trainJitterScales.count != 2 || data.trainJitterScales[0] > data.trainJitterScales[1] || data.trainJitterScales[0] < data.trainCrop {
            throw fail("data.train_jitter_scales", "must be [low, high] with train_crop <= low <= high")
        }
        if data.testShortSide < 16 { throw fail("data.test_short_side", "must be >= 16") }
        if AVABackboneKind(rawValue: model.backbone) == nil { throw fail("model.backbone", "'\(model.backbone)' is not 2d, slowonly or slowfast") }
        if AVAHeadKind(rawValue: model.head) == nil { throw fail("model.head", "'\(model.head)' is not linear, acrn or acar") }
        if model.head != "linear" && model.context { throw fail("model.context", "must be false with model.head \(model.head) (the relation head relates each actor to the whole frame)") }
        if model.acarReduceDim < 1 { throw fail("model.acar_reduce_dim", "must be >= 1") }
        if model.acarHiddenDim < 1 { throw fail("model.acar_hidden_dim", "must be >= 1") }
        if model.acarKernelSize < 1 || model.acarKernelSize % 2 == 0 { throw fail("model.acar_kernel_size", "must be odd (1, 3, 5, ...)") }
        if !["max2x2", "none"].contains(model.acarDownsample) { throw fail("model.acar_downsample", "'\(model.acarDownsample)' is not max2x2 or none") }
        if AVALossKind(rawValue: model.loss) == nil { throw fail("model.loss", "'\(model.loss)' is not sigmoid or ava_pose_softmax") }
        if model.loss == AVALossKind.avaPoseSoftmax.rawValue && model.focal {
            throw fail("model.focal", "weights the sigmoid loss: it must be false with model.loss ava_pose_softmax")
        }
        if model.bank != "none" {
            if FeatureBankOperatorKind(rawValue: model.bank) == nil { throw fail("model.bank", "'\(model.bank)' is not none, non_local, avg or max") }
            if model.head != "linear" || model.context { throw fail("model.bank", "works with model.head linear and model.context false") }
            if model.bankPath.isEmpty { throw fail("model.bank_path", "must name the folder of bank files (built with 'cycletime ava bank')") }
            if model.bankWindow < 1 { throw fail("model.bank_window", "must be >= 1") }
            if model.bankPerSecond < 1 { throw fail("model.bank_per_second", "must be >= 1") }
            if model.bankLatent < 1 { throw fail("model.bank_latent", "must be >= 1") }
            if model.bankLayers < 1 { throw fail("model.bank_layers", "must be >= 1") }
            if !(model.bankDropout < 1) { throw fail("model.bank_dropout", "must be in [0, 1)") }
        }
        if model.acrnStride < 1 { throw fail("model.acrn_stride", "must be >= 1") }
        if model.acrnConvs < 1 { throw fail("model.acrn_convs", "must be >= 1") }
        if !(model.dropout < 1) { throw fail("model.dropout", "must be in [0, 1)") }
        if model.roiSize < 1 { throw fail("model.roi_size", "must be >= 1") }
    }

    /// What the generic trainer reads of this config.
    public var loopSettings: LoopSettings {
        LoopSettings(seed: seed, outputDir: outputDir, optimizer: optimizer, schedule: schedule, train: train,
                     distributed: distributed, workers: data.workers, prefetch: data.prefetch)
    }

    public var clipOptions: AVAClipOptions {
        var o = AVAClipOptions()
        o.sampler = AVAClipSampler(frames: data.clipLength, interval: data.frameInterval, fps: data.fps, windowStart: data.windowStart)
        o.trainScales = data.trainJitterScales[0]...data.trainJitterScales[1]
        o.cropSize = data.trainCrop
        o.flip = data.flip
        o.temporalJitter = data.temporalJitter
        o.testShortSide = data.testShortSide
        o.decodeShortSide = data.decodeShortSide > 0 ? data.decodeShortSide : nil
        o.mean = data.mean; o.std = data.std
        return o
    }

    public func detectorConfig(classes: Int) -> AVADetectorConfig {
        var c = AVADetectorConfig()
        c.backbone = AVABackboneKind(rawValue: model.backbone) ?? .slowonly
        c.depth = model.depth; c.lastStage = model.lastStage; c.strides = model.strides; c.temporalKernels = model.temporalKernels
        c.classes = classes; c.context = model.context; c.dropout = model.dropout; c.roiSize = model.roiSize
        c.alpha = model.alpha; c.betaInv = model.betaInv; c.lateralNorm = model.lateralNorm
        c.head = AVAHeadKind(rawValue: model.head) ?? .linear
        c.acrnChannels = model.acrnChannels; c.acrnStride = model.acrnStride; c.acrnConvs = model.acrnConvs
        c.acar.reduceDim = model.acarReduceDim; c.acar.hiddenDim = model.acarHiddenDim; c.acar.depth = model.acarDepth
        c.acar.kernelSize = model.acarKernelSize; c.acar.mlp1x1 = model.acarMlp1x1; c.acar.downsample = model.acarDownsample == "max2x2"
        c.acar.bias = model.acarBias
        if let kind = FeatureBankOperatorKind(rawValue: model.bank) {
            var b = FeatureBankOptions()
            b.kind = kind; b.longTerm = model.bankWindow * model.bankPerSecond; b.latent = model.bankLatent
            b.layers = model.bankLayers; b.dropout = model.bankDropout; b.preActivate = model.bankPreActivate
            c.bank = b
        }
        return c
    }
}

/// The classification loss of an AVA run (`model.loss`).
public enum AVALossKind: String, Sendable, CaseIterable {
    case sigmoid
    case avaPoseSoftmax = "ava_pose_softmax"
}

/// The files of an AVA config, read and checked: label map, classes, frame store.
public struct AVAInputs {
    public let config: AVAConfig
    public let file: String
    public let labelMap: AVALabelMap
    public let classes: AVAClassIndex
    public let store: AVAFrameStore
    /// How logits become scores (loss and test), from model.loss, model.focal and the classes.
    public let scoring: AVAScoring

    /// `readsFrames` false (`ava demo`, which reads its own video): data.frames is not opened.
    public init(config: AVAConfig, file: String, readsFrames: Bool = true) throws {
        self.config = config; self.file = file
        let full = try AVALabelMap.read(config.data.labelmap)
        var ids = full.ids
        if !config.data.customClasses.isEmpty {
            for id in config.data.customClasses where !full.contains(id) {
                throw ConfigError(file, "field 'data.custom_classes': class \(id) is not in the label map \(config.data.labelmap)")
            }
            ids = config.data.customClasses
        }
        labelMap = full.restricted(to: ids)
        classes = AVAClassIndex(ids: ids)
        if config.model.loss == AVALossKind.avaPoseSoftmax.rawValue {
            let pose = classes.poseSlots
            guard ids.count >= 14, pose.count >= 2 else {
                throw ConfigError(file, "field 'model.loss': ava_pose_softmax is a softmax over AVA's pose classes (ids 1-14 of its label map), but the \(ids.count) trained classes of \(config.data.labelmap) have \(ids.count < 14 ? "fewer than 14 classes" : "\(pose.count) pose class\(pose.count == 1 ? "" : "es")")")
            }
            scoring = .poseSoftmax(poseSlots: pose)
        } else {
            scoring = .sigmoid(focal: config.model.focal ? (config.model.focalAlpha, config.model.focalGamma) : nil)
        }
        store = readsFrames ? try config.data.frameStore() : AVAFrameStore(source: .frameFolders(config.data.frames))
    }

    /// Every video of `entries` must be readable before a run starts (errors name the video and the
    /// folder). Keyframes outside their video (a shorter or cut video) are reported in one line and
    /// skipped: their clips would otherwise be the first or last frame repeated, with no word.
    func keyframesInVideos(_ entries: [AVAEntry], annotations: String, report: (String) -> Void) throws -> [AVAEntry] {
        let kept = Set(try store.keyframesInVideos(entries.map(\.key), sampler: config.clipOptions.sampler, annotations: annotations, report: report))
        return entries.filter { kept.contains($0.key) }
    }

    /// Training keyframes; skip reports go to `report`.
    public func trainingDataset(report: (String) -> Void) throws -> AVADataset {
        let d = config.data
        let csv = try AVACSV.read(d.annotations, labelMap: labelMap)
        if !csv.skipReport.isEmpty { report(csv.skipReport) }
        let proposals = d.proposals.isEmpty ? nil : try AVAProposals.read(d.proposals)
        let excluded = d.excluded.isEmpty ? [] : try readAVAExcluded(d.excluded)
        let r = AVAEntries.training(groundTruth: csv.groupedBoxes(), proposals: proposals, excluded: excluded, classes: classes,
                                    minScore: d.trainProposalScore, minIoU: d.trainProposalIou)
        let missing = AVAEntries.missingReport(r.missingProposals, proposals: d.proposals)
        if !missing.isEmpty { report(missing) }
        if r.excluded > 0 { report("\(d.excluded): \(r.excluded) excluded keyframe\(r.excluded == 1 ? "" : "s") skipped") }
        if r.entries.isEmpty { throw AVAError(d.annotations, "no training keyframe with a box of the trained classes") }
        let entries = try keyframesInVideos(r.entries, annotations: d.annotations, report: report)
        return AVADataset(entries: entries, store: store, options: config.clipOptions, training: true)
    }

    public var testAnnotations: String { config.test.annotations.isEmpty ? config.data.annotations : config.test.annotations }
    public var testProposals: String { config.test.proposals.isEmpty ? config.data.proposals : config.test.proposals }
    public var testExcluded: String { config.test.excluded.isEmpty ? config.data.excluded : config.test.excluded }

    /// Test keyframes (those of the test annotations) with their proposals, or with their
    /// ground-truth boxes (`boxes: .groundTruth`, the oracle-box upper bound); skip reports go to `report`.
    public func testDataset(boxes: AVATestBoxes = .proposals, report: (String) -> Void) throws -> AVADataset {
        try keyframeDataset(annotations: testAnnotations, proposals: testProposals, proposalsField: "test.proposals' (or data.proposals)",
                            excluded: testExcluded, boxes: boxes, report: report)
    }

    /// The keyframes of `annotations` as test-mode clips (full frame, no augmentation) with the
    /// proposals of `proposals` (or their ground-truth boxes), excluded ones dropped.
    func keyframeDataset(annotations: String, proposals path: String, proposalsField: String, excluded: String, boxes: AVATestBoxes,
                         report: (String) -> Void) throws -> AVADataset {
        let csv = try AVACSV.read(annotations)
        let proposals: AVAProposals
        switch boxes {
        case .proposals:
            guard !path.isEmpty else { throw ConfigError(file, "field '\(proposalsField) must name the person proposals of \(annotations)") }
            proposals = try AVAProposals.read(path)
        case .groundTruth:
            proposals = AVAProposals.groundTruth(csv)
        }
        let excludedKeys = excluded.isEmpty ? [] : try readAVAExcluded(excluded)
        let r = AVAEntries.testing(keys: csv.keys, proposals: proposals, excluded: excludedKeys, threshold: config.test.proposalThreshold)
        let missing = AVAEntries.missingReport(r.missingProposals, proposals: proposals.path)
        if !missing.isEmpty { report(missing) }
        if r.entries.isEmpty { throw AVAError(proposals.path, "no keyframe of \(annotations) has a proposal") }
        let entries = try keyframesInVideos(r.entries, annotations: annotations, report: report)
        return AVADataset(entries: entries, store: store, options: config.clipOptions, training: false)
    }

    /// The long-term feature bank of `model.bank` for `detector` (nil without one); every video of
    /// `entries` must have its file (one error naming the first that lacks it).
    public func featureBank(for detector: AVADetector, entries: [AVAEntry]) throws -> FeatureBank? {
        guard detector.bank_head != nil else { return nil }
        let store = FeatureBankStore(root: config.model.bankPath)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: store.root, isDirectory: &isDir), isDir.boolValue else {
            throw ConfigError(file, "field 'model.bank_path': '\(store.root)' is not a folder of bank files (build it with 'cycletime ava bank')")
        }
        if let missing = Set(entries.map(\.key.videoID)).sorted().first(where: { !store.contains($0) }) {
            throw ConfigError(file, "field 'model.bank_path': no bank file for video '\(missing)' (\(store.path(missing))); build it with 'cycletime ava bank'")
        }
        return FeatureBank(store: store, channels: detector.featureChannels, windowSize: config.model.bankWindow, maxPerSecond: config.model.bankPerSecond)
    }

    /// The trained detector of `checkpoint` (default: the run's latest) in evaluation mode, and the
    /// checkpoint's path; a missing file, another objective's checkpoint or one that does not fit
    /// the configured detector is one error naming the file.
    public func trainedDetector(checkpoint: String?) throws -> (AVADetector, String) {
        let ckpt = checkpoint ?? config.outputDir + "/checkpoints/latest.safetensors"
        guard FileManager.default.fileExists(atPath: ckpt) else {
            throw TrainingError("\(ckpt): no such checkpoint (train first with 'cycletime ava train', or pass --checkpoint)")
        }
        let det = try makeDetector(loadEncoder: false)
        let file: CheckpointFile
        do { file = try CheckpointFile(ckpt) } catch { throw TrainingError("\(error)") }
        if let o = file.metadata["objective"], o != "ava" { throw TrainingError("\(ckpt): a checkpoint of objective '\(o)', not an AVA detector") }
        do {
            try det.loadStateDict(file.modelState, strict: true)
        } catch {
            throw TrainingError("\(ckpt): the checkpoint does not fit the configured detector: \(error)")
        }
        det.eval()
        return (det, ckpt)
    }

    /// The detector, initialized from the seed (and the encoder weights when `loadEncoder`).
    public func makeDetector(loadEncoder: Bool) throws -> AVADetector {
        var g = RandomGenerator(seed: UInt64(config.seed))
        let det: AVADetector
        do { det = try AVADetector(config: config.detectorConfig(classes: classes.ids.count), generator: &g) } catch let e as AVADetectorError {
            throw ConfigError(file, "field \(e.description)")
        }
        if det.acar_head != nil {
            // ACAR's conv2 is a 3x3 convolution without padding: the feature map must be 3x3 or larger.
            for (field, side) in [("data.train_crop", config.data.trainCrop), ("data.test_short_side", config.data.testShortSide)] where side / det.outputStride < 3 {
                throw ConfigError(file, "field '\(field)' (\(side)) gives a \(side / det.outputStride)-cell feature map at stride \(det.outputStride); model.head acar needs at least 3 (\(3 * det.outputStride) pixels)")
            }
        }
        if loadEncoder && !config.model.checkpoint.isEmpty { try det.loadEncoder(from: config.model.checkpoint) }
        return det
    }
}

/// AVA action detection trained by `Trainer`: the detector's loss on batches of keyframe clips.
public final class AVATask: TrainingTask {
    public let detector: AVADetector
    public let source: AVADataset
    public let classes: AVAClassIndex
    public let scoring: AVAScoring
    public let frozenBatchNorm: Bool
    public var model: Module { detector }
    public var objectiveName: String { "ava" }

    /// The long-term feature bank (`model.bank`), read for every box of a batch.
    public let bank: FeatureBank?

    public init(detector: AVADetector, source: AVADataset, classes: AVAClassIndex, scoring: AVAScoring, frozenBatchNorm: Bool,
                bank: FeatureBank? = nil) {
        self.detector = detector; self.source = source; self.classes = classes; self.scoring = scoring; self.frozenBatchNorm = frozenBatchNorm
        self.bank = bank
        if frozenBatchNorm { detector.freezeBatchNorm() }
    }

    /// The loss (every dropout of the detector drawn from the step's generator, one seed each in
    /// module order; then the bank windows' draws) and the number of regions.
    public func losses(_ b: AVABatch, generator: inout RandomGenerator) throws -> [(String, Tensor)] {
        if frozenBatchNorm { detector.freezeBatchNorm() }
        for d in detector.modules().compactMap({ $0 as? Dropout }) { d.generator = RandomGenerator(seed: generator.next()) }
        let longTerm = try bank?.windows(b.boxKeys, generator: &generator)
        let logits = detector.logits(b.clips, boxes: b.boxes, longTerm: longTerm)
        let targets = classes.targets(b.actions.flatMap { $0 })
        let regions = Tensor(scalar: Float(b.regionCount))
        // A batch without a positive region (every label outside the classes) still makes a step.
        let loss = scoring.loss(logits, targets: targets) ?? logits.sum() * 0
        return [("loss", loss), ("regions", regions)]
    }

    public func clipCount(_ b: AVABatch) -> Int { b.keys.count }
}

/// Loads and checks an AVA config, reads its data and builds the detector and the trainer.
public func makeAVATrainer(configPath: String, overrides: [String] = [], report: (String) -> Void) throws -> Trainer<AVATask> {
    let config = try ConfigLoader.load(AVAConfig.self, path: configPath, overrides: overrides)
    try config.validate(file: configPath)
    let inputs = try AVAInputs(config: config, file: configPath)
    let data = try inputs.trainingDataset(report: report)
    if data.count < config.train.batchSize {
        throw ConfigError(configPath, "field 'train.batch_size' (\(config.train.batchSize)) is larger than the \(data.count) training keyframes")
    }
    let det = try inputs.makeDetector(loadEncoder: true)
    let task = AVATask(detector: det, source: data, classes: inputs.classes, scoring: inputs.scoring, frozenBatchNorm: config.model.frozenBn,
                       bank: try inputs.featureBank(for: det, entries: data.entries))
    let (mpi, run) = try RunSetup.open(config.loopSettings, configFile: configPath)
    return try Trainer(settings: config.loopSettings, configFile: configPath, configText: try ConfigLoader.encode(config),
                       task: task, run: run, mpi: mpi)
}

/// The boxes `ava test` classifies: the person proposals, or the ground-truth boxes of the test
/// annotations (`--boxes gt`: the classifier's upper bound with perfect boxes, as the literature
/// quotes next to detected boxes).
public enum AVATestBoxes: String, Sendable, CaseIterable {
    case proposals
    case groundTruth = "gt"
}

/// What `runAVATest` did.
public struct AVATestSummary: Sendable {
    public let keyframes: Int
    public let rows: Int
    public let checkpoint: String
    /// Official frame-mAP@0.5 against the test annotations (over the trained classes), when they have ground truth.
    public let mAP: Double?
}

/// `cycletime ava test`: the detector of `checkpoint` (default: the run's latest) on every test
/// keyframe's proposals, results CSV written atomically to `out`, then scored.
public func runAVATest(configPath: String, overrides: [String] = [], checkpoint: String?, out: String, boxes: AVATestBoxes = .proposals,
                       report: @escaping @Sendable (String) -> Void, progress: @escaping (String) -> Void) throws -> AVATestSummary {
    let config = try ConfigLoader.load(AVAConfig.self, path: configPath, overrides: overrides)
    try config.validate(file: configPath)
    try AtomicFile.checkWritable(out)
    let inputs = try AVAInputs(config: config, file: configPath)
    let (det, ckpt) = try inputs.trainedDetector(checkpoint: checkpoint)
    let data = try inputs.testDataset(boxes: boxes, report: report)
    let bank = try inputs.featureBank(for: det, entries: data.entries)
    let loader = PrefetchLoader(source: data, batchSize: 1, workers: config.data.workers, queueDepth: config.data.prefetch,
                                seed: UInt64(config.seed), epochs: 1, shuffle: false)
    loader.warn = { report($0.hasPrefix("warning: ") ? String($0.dropFirst(9)) : $0) }
    defer { loader.stop() }
    var detections: [AVADetection] = []
    let counter = CountProgress(total: data.count, unit: "keyframe", line: ProgressLine(write: progress))
    while let b = loader.next() {
        // The bank's draws at test time: a generator seeded from the run's seed and the keyframe, so a
        // keyframe's scores do not depend on the order or company it is tested in.
        var g = RandomGenerator(seed: UInt64(config.seed) ^ keyframeSeed(b.keys))
        let longTerm = try bank?.windows(b.boxKeys, generator: &g)
        let p = noGrad { inputs.scoring.probabilities(det.logits(b.clips, boxes: b.boxes, longTerm: longTerm)) }
        var offset = 0
        for (i, key) in b.keys.enumerated() {
            let n = b.boxes[i].count
            let rows = p.sliced(axis: 0, start: offset, end: offset + n)
            detections += avaDetections(key: key, boxes: b.boxes[i], probabilities: rows, classes: inputs.classes)
            offset += n
        }
        counter.tick("test", count: b.keys.count)
    }
    counter.finish()
    if loader.skipped > 0 { report("\(loader.skipped) keyframe\(loader.skipped == 1 ? "" : "s") could not be read and have no detections: \(loader.skippedSamples.prefix(5).joined(separator: "; "))") }
    let rows = try writeAVAResults(detections, to: out, threshold: config.test.scoreThreshold)
    // Score against the test annotations (classes of the run), when they have ground truth.
    var mAP: Double?
    let gt = try AVACSV.read(inputs.testAnnotations, labelMap: inputs.labelMap)
    if !gt.rows.isEmpty {
        let dets = rows > 0 ? try AVACSV.read(out, labelMap: inputs.labelMap, scoreColumn: true).rows : []
        let ex = inputs.testExcluded.isEmpty ? [] : try readAVAExcluded(inputs.testExcluded)
        mAP = evaluateAVA(groundTruth: gt.rows, detections: dets, labelMap: inputs.labelMap, excluded: ex, protocol: .official).mAP
    }
    return AVATestSummary(keyframes: counter.done, rows: rows, checkpoint: ckpt, mAP: mAP)
}

/// A seed from keyframe keys (FNV-1a over their text): the same keys give the same seed on every run.
func keyframeSeed(_ keys: [AVAKey]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for k in keys { for b in k.description.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 } }
    return h
}
