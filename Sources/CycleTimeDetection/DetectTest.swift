import Foundation
import CycleTimeCore
import CycleTimeData
import CycleTimeNN
import CycleTimeModels
import CycleTimeTraining
import CycleTimeVideo

// `cycletime detect test`: the person detector on the keyframes of an AVA-format split, its person
// boxes written as the proposal files the AVA loader reads, scored by person AP@0.5 (VOC all-point).

/// The Faster R-CNN of a detect run and how it is run.
public struct DetectorSettingsConfig: Codable, Equatable, Sendable {
    /// torchvision Faster R-CNN state dict (safetensors, torchvision's keys; any ResNet depth and
    /// class count); `--checkpoint` overrides it.
    public var checkpoint: String = ""
    /// torchvision's min_size / max_size: short side resized to min_size unless the long side would exceed max_size.
    public var minSize: Int = 800
    public var maxSize: Int = 1333
    /// The person class's label (COCO's person is 1; a detector fine-tuned on persons only: 1).
    public var personLabel: Int = 1
    /// Person boxes scoring above this are kept (torchvision's box_score_thresh).
    public var scoreThreshold: Double = 0.5
    /// torchvision's box_nms_thresh and box_detections_per_img.
    public var nmsThreshold: Double = 0.5
    public var detectionsPerImage: Int = 100
    /// `detect train` without a checkpoint: a person detector (background + person) with a
    /// ResNet body of this depth, BatchNorm2d, from the seed (torchvision's weights=None).
    public var depth: Int = 50
    /// `detect train` without a checkpoint: a ResNet encoder the body starts from (torchvision's
    /// weights_backbone): a CycleTime checkpoint (its `encoder.` keys) or torchvision ResNet weights.
    /// The body then uses frozen batch norm (torchvision's FrozenBatchNorm2d); stages the encoder lacks
    /// keep the seed's initialization (said in one line).
    public var backbone: String = ""
    /// torchvision's trainable_backbone_layers when training (0...5); unset: torchvision's default,
    /// 3 when starting from weights (detector.checkpoint or detector.backbone), 5 from the seed.
    public var trainableBackboneLayers: Int? = nil
    /// Without a checkpoint: the box head's width (torchvision's TwoMLPHead: 1024).
    public var representationSize: Int = 1024
    /// torchvision's rpn_batch_size_per_image and box_batch_size_per_image (the samplers' sizes).
    public var rpnBatchSizePerImage: Int = 256
    public var boxBatchSizePerImage: Int = 512
    public init() {}
}

/// The split `detect test` runs on; "" falls back to the data section.
public struct DetectTestConfig: Codable, Equatable, Sendable {
    /// Annotation CSV whose keyframes are detected and whose boxes are the ground truth; "": data.annotations.
    public var annotations: String = ""
    /// Excluded timestamps; "": data.excluded.
    public var excluded: String = ""
    public init() {}
}

/// A person-detector run on AVA-format data. `data` is the AVA config's data section (same keys:
/// a copy of it works); detect uses annotations, excluded, frames, frames_kind, fps, window_start,
/// decode_short_side and cache_mb (keyframes are single frames: the clip and augmentation keys are
/// read and not used).
public struct DetectConfig: RunConfiguration, Equatable, Sendable {
    public var seed: Int = 0
    public var outputDir: String = "runs/detect"
    public var data = AVADataConfig()
    public var detector = DetectorSettingsConfig()
    public var test = DetectTestConfig()
    /// `detect train`: SGD as torchvision's detection references (momentum 0.9, weight decay 1e-4).
    public var optimizer: OptimizerConfig = {
        var o = OptimizerConfig()
        o.name = "sgd"; o.lr = 0.02; o.momentum = 0.9; o.weightDecay = 1e-4
        return o
    }()
    public var schedule = ScheduleConfig()
    public var train: LoopConfig = {
        var l = LoopConfig()
        l.batchSize = 2
        return l
    }()
    public var distributed = DistributedConfig()
    public init() {}

    /// What the generic trainer reads of this config.
    public var loopSettings: LoopSettings {
        LoopSettings(seed: seed, outputDir: outputDir, optimizer: optimizer, schedule: schedule, train: train,
                     distributed: distributed, workers: data.workers, prefetch: data.prefetch)
    }

    public static let numberBounds: [String: ClosedRange<Double>] = {
        typealias V = ConfigValidator
        return AVAConfig.numberBounds.merging([
            "detector.min_size": V.imageSide, "detector.max_size": V.imageSide, "detector.person_label": 0...100_000,
            "detector.score_threshold": V.fraction, "detector.depth": 0...1000, "detector.trainable_backbone_layers": 0...5,
            "detector.representation_size": V.channels, "detector.rpn_batch_size_per_image": 0...100_000, "detector.box_batch_size_per_image": 0...100_000, "detector.nms_threshold": V.fraction, "detector.detections_per_image": 0...100_000,
        ]) { $1 }
    }()

    /// Checks values that decode but make no sense; errors name the field.
    public func validate(file: String) throws {
        let v = ConfigValidator(file: file)
        try v.checkNumbers(self, bounds: Self.numberBounds)
        if data.annotations.isEmpty && test.annotations.isEmpty { throw v.fail("data.annotations", "must name the annotation CSV") }
        try data.validateFrames(v)
        try SharedConfigFields.validate(v, outputDir: outputDir, workers: data.workers, prefetch: data.prefetch, mean: data.mean, std: data.std,
                                        optimizer: optimizer, schedule: schedule, train: train, distributed: distributed)
        if ![18, 34, 50, 101, 152].contains(detector.depth) { throw v.fail("detector.depth", "\(detector.depth) is not 18, 34, 50, 101 or 152") }
        for (k, n) in [("representation_size", detector.representationSize), ("rpn_batch_size_per_image", detector.rpnBatchSizePerImage),
                       ("box_batch_size_per_image", detector.boxBatchSizePerImage)] where n < 1 {
            throw v.fail("detector." + k, "must be >= 1")
        }
        if let t = detector.trainableBackboneLayers, !(0...5).contains(t) { throw v.fail("detector.trainable_backbone_layers", "must be in 0...5") }
        if !detector.backbone.isEmpty && !detector.checkpoint.isEmpty {
            throw v.fail("detector.backbone", "starts the body of a new detector; it cannot be combined with detector.checkpoint (a whole detector)")
        }
        if detector.minSize < 16 { throw v.fail("detector.min_size", "must be >= 16") }
        if detector.maxSize < detector.minSize { throw v.fail("detector.max_size", "must be >= detector.min_size (\(detector.minSize))") }
        if detector.personLabel < 1 { throw v.fail("detector.person_label", "must be >= 1 (0 is the background)") }
        if detector.detectionsPerImage < 1 { throw v.fail("detector.detections_per_image", "must be >= 1") }
    }

    public var testAnnotations: String { test.annotations.isEmpty ? data.annotations : test.annotations }
    public var testExcluded: String { test.excluded.isEmpty ? data.excluded : test.excluded }

    /// trainable_backbone_layers, or torchvision's default: 3 when starting from weights, 5 from the seed.
    public var trainableBackboneLayers: Int {
        detector.trainableBackboneLayers ?? (detector.checkpoint.isEmpty && detector.backbone.isEmpty ? 5 : 3)
    }

    /// torchvision's transform and post-processing settings of the detector section.
    public var transform: RCNNTransform {
        var t = RCNNTransform()
        t.minSize = detector.minSize; t.maxSize = detector.maxSize
        t.normalization = Normalization(mean: data.mean, std: data.std)
        return t
    }
    public var boxSettings: BoxHeadSettings {
        var b = BoxHeadSettings()
        b.scoreThreshold = Float(detector.scoreThreshold)
        b.nmsThreshold = Float(detector.nmsThreshold)
        b.detectionsPerImage = detector.detectionsPerImage
        return b
    }

    /// The keyframe sampler of the data section (one frame per keyframe).
    public var sampler: AVAClipSampler { AVAClipSampler(frames: 1, interval: 1, fps: data.fps, windowStart: data.windowStart) }
}

/// The ground-truth person boxes of an annotation CSV: each distinct box of a keyframe once (the
/// CSV repeats a box once per action), excluded keyframes dropped. A box without width or height
/// is an error naming the file, the line and the field.
public func personGroundTruth(_ csv: AVACSV, excluded: Set<AVAKey>) throws -> [AVAKey: [AVABox]] {
    for r in csv.rows {
        if !(r.box.x2 > r.box.x1) { throw AVAError(csv.path, line: r.line, "field x2 (\(r.box.x2)) must exceed x1 (\(r.box.x1)): a box without width") }
        if !(r.box.y2 > r.box.y1) { throw AVAError(csv.path, line: r.line, "field y2 (\(r.box.y2)) must exceed y1 (\(r.box.y1)): a box without height") }
    }
    var out: [AVAKey: [AVABox]] = [:]
    for (key, boxes) in AVAProposals.groundTruth(csv).boxes where !excluded.contains(key) { out[key] = boxes.map(\.box) }
    return out
}

/// A detector's person boxes at one frame, normalized to the frame and clipped to [0, 1], best first.
public func personBoxes(_ model: FasterRCNN, frame: AVAFrame, personLabel: Int) -> [ScoredBox] {
    let image = Image(width: frame.width, height: frame.height, channels: 3, pixels: frame.rgb).tensor()
    let d = model.detect([image])[0].detections
    let w = Double(frame.width), h = Double(frame.height)
    func clip(_ v: Double) -> Double { min(max(v, 0), 1) }
    return (0..<d.scores.count).filter { d.labels[$0] == personLabel }.map { i in
        let b = (0..<4).map { Double(d.boxes.data[i * 4 + $0]) }
        return ScoredBox(AVABox(clip(b[0] / w), clip(b[1] / h), clip(b[2] / w), clip(b[3] / h)), score: Double(d.scores[i]))
    }
}

/// What `runDetectTest` did.
public struct DetectTestSummary: Sendable, Codable, Equatable {
    public var keyframes: Int
    public var boxes: Int
    public var checkpoint: String
    /// Person AP@0.5 against the split's ground-truth boxes (nil without ground truth).
    public var personAP: PersonAP?
    /// The proposal file written and the annotations scored against.
    public var proposals: String = ""
    public var annotations: String = ""
    /// Where this summary was saved for `cycletime report` (nil: the config's output_dir is not a run directory).
    public var saved: String?

    /// The file of a run directory that holds the summary of proposals `out`: detect/<out's name without extension>.json.
    public static func path(runDirectory: String, proposals out: String) -> String {
        runDirectory + "/detect/" + URL(fileURLWithPath: out).deletingPathExtension().lastPathComponent + ".json"
    }
}

/// `cycletime detect test`: the detector (`checkpoint`, default the config's detector.checkpoint)
/// on every keyframe of the test annotations (excluded ones dropped), its person boxes scoring
/// above detector.score_threshold written to `out` atomically (the LFB/PySlowFast CSV when it ends
/// in .csv, the JSON proposal file otherwise), then scored by person AP@0.5. Bad input is one error
/// naming the file and field; nothing is written then.
public func runDetectTest(configPath: String, overrides: [String] = [], checkpoint: String?, out: String,
                          report: (String) -> Void, progress: @escaping (String) -> Void) throws -> DetectTestSummary {
    let config = try ConfigLoader.load(DetectConfig.self, path: configPath, overrides: overrides)
    try config.validate(file: configPath)
    try AtomicFile.checkWritable(out)
    let weights = checkpoint ?? config.detector.checkpoint
    guard !weights.isEmpty else { throw ConfigError(configPath, "field 'detector.checkpoint' must name the detector's weights (or pass --checkpoint)") }
    let model = try FasterRCNN.load(weights, transform: config.transform, boxes: config.boxSettings)
    if config.detector.personLabel >= model.config.numClasses {
        throw ConfigError(configPath, "field 'detector.person_label' (\(config.detector.personLabel)) is not a class of \(weights) (labels 1...\(model.config.numClasses - 1))")
    }
    let csv = try AVACSV.read(config.testAnnotations)
    let excluded = config.testExcluded.isEmpty ? [] : try readAVAExcluded(config.testExcluded)
    let gt = try personGroundTruth(csv, excluded: excluded)
    let keys = csv.keys.filter { !excluded.contains($0) }.sorted()
    if keys.isEmpty { throw AVAError(config.testAnnotations, "every keyframe is excluded by \(config.testExcluded)") }
    let store = try config.data.frameStore()
    let sampler = config.sampler
    let inside = try store.keyframesInVideos(keys, sampler: sampler, annotations: config.testAnnotations, report: report)
    var found: [AVAKey: [ScoredBox]] = [:]
    let counter = CountProgress(total: inside.count, unit: "keyframe", line: ProgressLine(write: progress))
    for key in inside {
        let frames = try store.frames(key.videoID, [sampler.keyframe(key.timestamp)])
        found[key] = personBoxes(model, frame: frames[0], personLabel: config.detector.personLabel)
        counter.tick("detect", count: 1)
    }
    counter.finish()
    let proposals = AVAProposals(path: out, boxes: found)
    try proposals.write(to: out)
    let scoredGT = gt.filter { found[$0.key] != nil }
    var summary = DetectTestSummary(keyframes: inside.count, boxes: found.values.reduce(0) { $0 + $1.count }, checkpoint: weights,
                                    personAP: evaluatePersonAP(groundTruth: scoredGT, detections: found),
                                    proposals: out, annotations: config.testAnnotations)
    // A run directory (detect train made it) keeps the summary, for `cycletime report`.
    if FileManager.default.fileExists(atPath: config.outputDir + "/config.yaml") {
        let path = DetectTestSummary.path(runDirectory: config.outputDir, proposals: out)
        try FileManager.default.createDirectory(atPath: config.outputDir + "/detect", withIntermediateDirectories: true)
        summary.saved = path
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(summary), to: path)
    }
    return summary
}

// MARK: detect train

/// A batch of keyframe images (RGB [3, h, w] in [0, 1]) with their person boxes in pixels.
public struct DetectSample: @unchecked Sendable {
    public var images: [Tensor]
    public var targets: [DetectionTarget]
    public var keys: [AVAKey]
}

/// The keyframes of a split with their person boxes, one image each; training flips half of them
/// horizontally (data.flip), boxes alike. Sample i with seed s is always the same.
public struct DetectDataset: ClipSource {
    public let keys: [AVAKey]
    public let boxes: [AVAKey: [AVABox]]
    public let store: AVAFrameStore
    public let sampler: AVAClipSampler
    public let flip: Bool
    public let label: Int

    public var count: Int { keys.count }
    public func name(_ index: Int) -> String { keys[index].description }

    public func sample(_ index: Int, seed: UInt64) throws -> DetectSample {
        let key = keys[index]
        var rng = RandomGenerator(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index) &* 0xBF58_476D_1CE4_E5B9 &+ 11)
        let f = try store.frames(key.videoID, [sampler.keyframe(key.timestamp)])[0]
        let mirror = flip && rng.nextDouble() < 0.5
        var rgb = f.rgb
        if mirror {
            for y in 0..<f.height {
                for x in 0..<f.width { for c in 0..<3 { rgb[(y * f.width + x) * 3 + c] = f.rgb[(y * f.width + f.width - 1 - x) * 3 + c] } }
            }
        }
        let w = Double(f.width), h = Double(f.height)
        let list = (boxes[key] ?? []).map { b in mirror ? AVABox(1 - b.x2, b.y1, 1 - b.x1, b.y2) : b }
        let pixels = list.flatMap { [Float($0.x1 * w), Float($0.y1 * h), Float($0.x2 * w), Float($0.y2 * h)] }
        let target = DetectionTarget(boxes: Tensor(pixels, shape: [list.count, 4]), labels: list.map { _ in label })
        return DetectSample(images: [Image(width: f.width, height: f.height, channels: 3, pixels: rgb).tensor()], targets: [target], keys: [key])
    }

    public func collate(_ samples: [DetectSample]) -> DetectSample {
        DetectSample(images: samples.flatMap(\.images), targets: samples.flatMap(\.targets), keys: samples.flatMap(\.keys))
    }
}

/// Faster R-CNN fine-tuned on person boxes by `Trainer`: torchvision's four losses, the samplers'
/// choices drawn from the step's generator.
public final class DetectTask: TrainingTask {
    public let detector: FasterRCNN
    public let source: DetectDataset
    public var model: Module { detector }
    public let settings: RCNNTrainingSettings
    public var objectiveName: String { "detect" }

    public init(detector: FasterRCNN, source: DetectDataset, settings: RCNNTrainingSettings) {
        self.detector = detector; self.source = source; self.settings = settings
    }

    public func losses(_ b: DetectSample, generator: inout RandomGenerator) -> [(String, Tensor)] {
        let l = detector.losses(b.images, targets: b.targets, settings: settings, generator: &generator)
        return [("loss", l.total), ("loss_classifier", l.classifier), ("loss_box_reg", l.boxReg),
                ("loss_objectness", l.objectness), ("loss_rpn_box_reg", l.rpnBoxReg)]
    }

    public func clipCount(_ b: DetectSample) -> Int { b.images.count }

    /// The input normalization, so that `detect test` and `FasterRCNN.load` feed what training fed.
    public var checkpointMetadata: [String: String] {
        [FasterRCNN.normalizationKey: detector.config.transform.normalization.description]
    }
}

/// `cycletime detect train`: loads and checks a detect config, reads the training split's person
/// boxes (data.annotations, data.excluded) and builds the detector (detector.checkpoint, a
/// torchvision state dict, or a background + person detector from the seed) and the trainer.
public func makeDetectTrainer(configPath: String, overrides: [String] = [], report: (String) -> Void) throws -> Trainer<DetectTask> {
    let config = try ConfigLoader.load(DetectConfig.self, path: configPath, overrides: overrides)
    try config.validate(file: configPath)
    if config.data.annotations.isEmpty { throw ConfigError(configPath, "field 'data.annotations' must name the training annotation CSV") }
    let csv = try AVACSV.read(config.data.annotations)
    let excluded = config.data.excluded.isEmpty ? [] : try readAVAExcluded(config.data.excluded)
    let gt = try personGroundTruth(csv, excluded: excluded)
    let store = try config.data.frameStore()
    let keys = try store.keyframesInVideos(gt.keys.sorted(), sampler: config.sampler, annotations: config.data.annotations, report: report)
    if keys.count < config.train.batchSize {
        throw ConfigError(configPath, "field 'train.batch_size' (\(config.train.batchSize)) is larger than the \(keys.count) training keyframes")
    }
    var model: FasterRCNN
    if config.detector.checkpoint.isEmpty {
        var c = FasterRCNNConfig()
        c.depth = config.detector.depth
        c.numClasses = 2
        c.frozenBatchNorm = !config.detector.backbone.isEmpty
        c.trainableBackboneLayers = config.trainableBackboneLayers
        c.representationSize = config.detector.representationSize
        c.transform = config.transform
        c.boxes = config.boxSettings
        var g = RandomGenerator(seed: UInt64(config.seed))
        model = FasterRCNN(config: c, generator: &g)
        if !config.detector.backbone.isEmpty {
            let (seeded, trainedWith) = try model.loadBody(from: config.detector.backbone)
            if let n = trainedWith, n != config.transform.normalization {
                throw ConfigError(configPath, "field 'data.mean' / 'data.std' (\(config.transform.normalization)) differ from the normalization \(config.detector.backbone) was trained with (\(n)); set them to it")
            }
            if !seeded.isEmpty {
                report("detector.backbone: \(config.detector.backbone) has no \(seeded.joined(separator: ", ")); \(seeded.count == 1 ? "it keeps" : "they keep") the seed's initialization")
            }
        }
    } else {
        model = try FasterRCNN.load(config.detector.checkpoint, transform: config.transform, boxes: config.boxSettings,
                                    trainableBackboneLayers: config.trainableBackboneLayers)
    }
    if config.detector.personLabel >= model.config.numClasses {
        throw ConfigError(configPath, "field 'detector.person_label' (\(config.detector.personLabel)) is not a class of the detector (labels 1...\(model.config.numClasses - 1))")
    }
    let data = DetectDataset(keys: keys, boxes: gt, store: store, sampler: config.sampler, flip: config.data.flip, label: config.detector.personLabel)
    var training = RCNNTrainingSettings()
    training.rpnSampler.batchSizePerImage = config.detector.rpnBatchSizePerImage
    training.boxSampler.batchSizePerImage = config.detector.boxBatchSizePerImage
    let (mpi, run) = try RunSetup.open(config.loopSettings, configFile: configPath)
    return try Trainer(settings: config.loopSettings, configFile: configPath, configText: try ConfigLoader.encode(config),
                       task: DetectTask(detector: model.train(), source: data, settings: training), run: run, mpi: mpi)
}
