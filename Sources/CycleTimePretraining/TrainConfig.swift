import CycleTimeData
import CycleTimeModels
import CycleTimeTracking
import CycleTimeTraining
import Foundation

/// The pretraining objective.
public enum TrainingObjective: String, Codable, Sendable {
    /// Cycle-consistency tracking (Wang, Jabri & Efros, CVPR 2019).
    case timecycle
    /// Contrastive random walk (Jabri, Owens & Efros, NeurIPS 2020).
    case crw
}

/// Unlabeled video and how clips are cut from it (defaults: the TimeCycle recipe). The crw
/// objective reads only videos, clips_per_video, workers and prefetch from here; its frame rate,
/// sizes and normalization are in the crw section.
public struct DataConfig: Codable, Equatable, Sendable {
    /// Video files, folders (searched recursively for videos) or list files (.txt, one path per line,
    /// relative to the list's folder). Relative paths are relative to the working directory.
    public var videos: [String] = []
    /// Frame rate the videos are resampled to (0: each video's own frames).
    public var fps: Double = 12
    /// Frames are decoded with their short side resized to this (0: native size).
    public var shortSide: Int = 256
    /// Side of the random square crop as a fraction of the short side, drawn uniformly in
    /// [low, high] once per clip; [0.9375, 0.9375] is a 240 crop of a 256 short side, as the original.
    public var cropScale: [Double] = [0.9375, 0.9375]
    /// Horizontal flip of the whole clip with probability 1/2.
    public var flip: Bool = true
    /// Clip frames as offsets from the clip's start, in resampled frames (f0..f3).
    public var clipOffsets: [Int] = [0, 2, 4, 6]
    /// The target frame I the patch is cut from.
    public var targetOffset: Int = 15
    /// The frame whose difference from I locates the moving patch.
    public var motionOffset: Int = 17
    /// Clips drawn from each video per epoch.
    public var clipsPerVideo: Int = 1
    /// Background decoding threads and batches prepared ahead.
    public var workers: Int = 2
    public var prefetch: Int = 4
    /// Per-channel normalization of RGB in [0, 1] (ImageNet's, as the released test code uses).
    public var mean: [Float] = Normalization.imagenet.mean
    public var std: [Float] = Normalization.imagenet.std
    public init() {}
}

/// A pretraining run: everything `cycletime train` needs. Every random choice flows from `seed`.
public struct TrainConfig: RunConfiguration, Equatable, Sendable {
    /// The released CRW recipe's optimizer fields: the trainer uses the optimizer and schedule sections.
    public static let unusedFields = [
        "crw.learning_rate": "the optimizer section sets the learning rate", "crw.weight_decay": "the optimizer section sets it",
        "crw.lr_milestones": "the schedule section sets the schedule", "crw.lr_gamma": "the schedule section sets the schedule",
    ]
    public var seed: Int = 0
    /// The run directory (config, metrics.jsonl, train.log, checkpoints/).
    public var outputDir: String = "runs/timecycle"
    public var objective: TrainingObjective = .timecycle
    public var data = DataConfig()
    /// The TimeCycle model and loss weights.
    public var timecycle = TimeCycleConfig()
    /// The ground-truth patch recipe (TimeCycle); its patch_size is timecycle.patch_size.
    public var patch = GroundTruthPatchConfig()
    /// The contrastive random walk's model, walk and data recipe (objective crw). Its
    /// learning_rate, weight_decay and lr_* fields are not used by the trainer: the optimizer
    /// and schedule sections are.
    public var crw = CRWConfig()
    public var optimizer = OptimizerConfig()
    public var schedule = ScheduleConfig()
    public var train = LoopConfig()
    /// Ranks of an MPI job (`mpirun -np N cycletime train`): batch_size is per rank.
    public var distributed = DistributedConfig()
    /// Validation during training: DAVIS label propagation with the current encoder (off by default).
    public var eval = EvalConfig()
    /// Tracker diagnostics during training on held-out clips of known motion (off by default).
    public var diagnostics = DiagnosticsConfig()
    public init() {}

    /// Bounds of the numbers (`ConfigValidator.checkNumbers`; the others: 0...maxNumber).
    public static let numberBounds: [String: ClosedRange<Double>] = {
        typealias V = ConfigValidator
        return [
            "data.fps": 0...1000, "data.short_side": V.imageSide, "data.clip_offsets": V.frames,
            "data.target_offset": V.frames, "data.motion_offset": V.frames,
            "timecycle.frame_size": V.imageSide, "timecycle.patch_size": V.imageSide, "timecycle.feature_dim": V.channels,
            "timecycle.localizer_widths": V.channels, "timecycle.localizer_kernels": V.imageSide,
            "timecycle.loss_grid_size": V.imageSide,
            "patch.grid_size": V.imageSide, "patch.patch_size": V.imageSide,
            "crw.feature_dim": V.channels, "crw.drop_value": -1e30...0, "crw.clip_length": V.queue,
            "crw.image_size": V.imageSide, "crw.patch_size": V.imageSide, "crw.patch_stride": V.imageSide, "crw.fps": 0...1000,
            "eval.max_frames": V.frames, "eval.context": 0...1000, "eval.radius": 0...1e6, "eval.temperature": 0...1e6,
            "eval.topk": 0...100_000, "eval.square_size": V.imageSide, "eval.strides": 1...64,
            "diagnostics.clips": 0...1024, "diagnostics.max_shift": 0...64,
        ].merging(SharedConfigFields.numberBounds) { $1 }
    }()

    /// Checks values that decode but make no sense; errors name the field.
    public func validate(file: String) throws {
        let v = ConfigValidator(file: file)
        try v.checkNumbers(self, bounds: Self.numberBounds)
        func fail(_ field: String, _ why: String) -> ConfigError { v.fail(field, why) }
        try SharedConfigFields.validate(v, outputDir: outputDir, workers: data.workers, prefetch: data.prefetch, mean: data.mean, std: data.std,
                                        optimizer: optimizer, schedule: schedule, train: train, distributed: distributed)
        if data.videos.isEmpty { throw fail("data.videos", "must list at least one video, folder or list file") }
        if data.cropScale.count != 2 || !(data.cropScale[0] > 0 && data.cropScale[0] <= data.cropScale[1] && data.cropScale[1] <= 1) {
            throw fail("data.crop_scale", "must be [low, high] with 0 < low <= high <= 1")
        }
        guard let lastClipFrame = data.clipOffsets.last, zip(data.clipOffsets, data.clipOffsets.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw fail("data.clip_offsets", "must be increasing offsets >= 0")
        }
        if data.targetOffset <= lastClipFrame { throw fail("data.target_offset", "must come after the last clip frame") }
        if data.motionOffset <= lastClipFrame { throw fail("data.motion_offset", "must come after the last clip frame") }
        if data.motionOffset == data.targetOffset { throw fail("data.motion_offset", "must differ from target_offset") }
        if data.clipsPerVideo < 1 { throw fail("data.clips_per_video", "must be >= 1") }
        if timecycle.frameSize < 32 { throw fail("timecycle.frame_size", "must be >= 32") }
        if timecycle.patchSize < 16 || timecycle.patchSize > timecycle.frameSize { throw fail("timecycle.patch_size", "must be in 16...frame_size") }
        if timecycle.encoderStrides.count != 4 || timecycle.encoderStrides.contains(where: { $0 != 1 && $0 != 2 }) {
            throw fail("timecycle.encoder_strides", "must be 4 strides (layer1..layer4), each 1 or 2")
        }
        if ResNetConfig(name: timecycle.encoder, lastStage: "layer3", strides: timecycle.encoderStrides) == nil {
            throw fail("timecycle.encoder", "'\(timecycle.encoder)' is not a torchvision ResNet name (resnet18, resnet34, resnet50, ...)")
        }
        if timecycle.localizerWidths.count != 2 { throw fail("timecycle.localizer_widths", "must hold 2 widths") }
        if timecycle.localizerKernels.count != 2 { throw fail("timecycle.localizer_kernels", "must hold 2 kernel sizes") }
        if timecycle.localizerOutGrid < 1 {
            throw fail("timecycle.localizer_kernels", "are too large for the \(timecycle.patchGrid)x\(timecycle.patchGrid) patch map")
        }
        if timecycle.featureDim < 1 { throw fail("timecycle.feature_dim", "must be >= 1") }
        if timecycle.lossGridSize < 2 { throw fail("timecycle.loss_grid_size", "must be >= 2 (the grid spans -1...1)") }
        if !(timecycle.temperature > 0) { throw fail("timecycle.temperature", "must be > 0") }
        if patch.patchSize != timecycle.patchSize {
            throw fail("patch.patch_size", "(\(patch.patchSize)) must equal timecycle.patch_size (\(timecycle.patchSize))")
        }
        if patch.gridSize < 3 { throw fail("patch.grid_size", "must be >= 3") }
        if patch.topK < 1 { throw fail("patch.top_k", "must be >= 1") }
        try eval.validate(v)
        try diagnostics.validate(v)
        if objective == .crw {
            do { try crw.validate() } catch let e as CRWConfigError {
                throw fail("crw." + ConfigLoader.snake(e.field), e.message)
            }
        }
    }

    /// The clip options of the crw objective: clip_length frames at crw.fps, one square crop of
    /// the whole short side (resized to crw.image_size), no flip, crw normalization.
    public var crwClipOptions: ClipOptions {
        var o = ClipOptions()
        o.clipLength = crw.clipLength
        o.fps = crw.fps
        o.decodeShortSide = crw.imageSize
        o.outputSize = crw.imageSize
        o.scaleRange = 1.0...1.0
        o.horizontalFlip = false
        o.mean = crw.mean
        o.std = crw.std
        return o
    }

    /// The clip options of the data section (frames: clip offsets, then target and motion).
    public var clipOptions: ClipOptions {
        var o = ClipOptions()
        o.frameOffsets = data.clipOffsets + [data.targetOffset, data.motionOffset].sorted()
        o.fps = data.fps > 0 ? data.fps : nil
        o.decodeShortSide = data.shortSide > 0 ? data.shortSide : nil
        o.outputSize = timecycle.frameSize
        o.scaleRange = data.cropScale[0]...data.cropScale[1]
        o.horizontalFlip = data.flip
        o.mean = data.mean
        o.std = data.std
        return o
    }
}

extension TrainConfig {
    /// What the generic trainer reads of this config.
    public var loopSettings: LoopSettings {
        LoopSettings(seed: seed, outputDir: outputDir, optimizer: optimizer, schedule: schedule, train: train,
                     distributed: distributed, workers: data.workers, prefetch: data.prefetch)
    }

    /// The encoder this config trains, as its checkpoints record it.
    public var encoderSpec: EncoderSpec {
        switch objective {
        case .timecycle:
            return EncoderSpec(arch: timecycle.encoder, lastStage: "layer3", strides: timecycle.encoderStrides, padding: .zeros,
                               normalization: Normalization(mean: data.mean, std: data.std))
        case .crw:
            return EncoderSpec(arch: crw.encoder, lastStage: crw.encoderLastStage, strides: crw.encoderStrides,
                               padding: crw.reflectPadding ? .reflect : .zeros, normalization: Normalization(mean: crw.mean, std: crw.std))
        }
    }

    /// The encoder spec of a pretraining checkpoint written before specs were recorded as metadata
    /// keys, from the training config embedded in its metadata (`CheckpointFile.encoderSpec`'s
    /// resolver). Nil for files that are not pretraining checkpoints.
    public static func resolveEncoderSpec(metadata: [String: String], file: String) throws -> EncoderSpec? {
        guard let o = metadata["objective"], TrainingObjective(rawValue: o) != nil else { return nil }
        guard let yaml = metadata["config"] else {
            throw CheckpointError.invalid(path: file, message: "a \(o) checkpoint without its config in the metadata")
        }
        return try ConfigLoader.decode(TrainConfig.self, yaml: yaml, file: file + " (metadata config)").encoderSpec
    }
}
