import CycleTimeCore
import CycleTimeData
import CycleTimeModels
import CycleTimeNN
import CycleTimePropagation
import CycleTimeTraining
import CycleTimeVideo
import Foundation

/// Validation during training (the `eval:` section), as mmaction2's `--validate` and PySlowFast's
/// eval period: every `every_steps` steps and after the last one, the current encoder propagates
/// the first-frame masks of a few DAVIS sequences, scored as `cycletime eval davis`; `val_jf`,
/// `val_j`, `val_f` and `val_s` (its seconds) join that step's row of metrics.jsonl. Off when
/// `every_steps` is 0. The procedure fields are those of `cycletime propagate`; 0 takes the
/// procedure's own value (crw: context 20, radius 12, temperature 0.05, top-10, no squashing;
/// timecycle: context 7, no radius, 512^-0.5, top-5 per frame, 320 x 320).
public struct EvalConfig: Codable, Equatable, Sendable {
    /// Steps between validations (0: no validation).
    public var everySteps: Int = 0
    /// DAVIS root (JPEGImages/, Annotations/, ImageSets/2017/).
    public var davisRoot: String = ""
    public var set: String = "val"
    public var resolution: String = "480p"
    /// Sequences to propagate (empty: every sequence of the set).
    public var sequences: [String] = []
    /// Frames propagated per sequence (0: all); the scores cover the annotations of those frames.
    public var maxFrames: Int = 0
    /// crw or timecycle: the test procedure, as `propagate --procedure`.
    public var procedure: String = "crw"
    public var context: Int = 0
    public var radius: Double = 0
    public var temperature: Double = 0
    public var topk: Int = 0
    public var squareSize: Int = 0
    /// The encoder's feature layer and stage strides at test time (output stride 8 by default, as
    /// `propagate`); its architecture and padding are the trained encoder's.
    public var layer: String = "layer3"
    public var strides: [Int] = [1, 2, 1, 1]
    /// imagenet (ImageNet's statistics, as `propagate` and the released test code) or train (the
    /// training data's normalization).
    public var normalization: String = "imagenet"
    /// Keep the checkpoint of the best `val_jf` as checkpoints/best.safetensors (mmaction2's
    /// `save_best`): a short self-supervised run's best encoder is often not its last.
    public var saveBest: Bool = true
    public init() {}

    /// The propagation options: the procedure's defaults, then the fields that are set (non-zero).
    public var options: PropagationOptions {
        var o = PropagationOptions.defaults(PropagationProcedure(rawValue: procedure) ?? .crw)
        if context > 0 { o.contextFrames = context }
        if radius > 0 { o.radius = radius }
        if temperature > 0 { o.temperature = Float(temperature) }
        if topk > 0 { o.topK = topk }
        if squareSize > 0 { o.squareSize = squareSize }
        return o
    }

    /// The section's checks (after the number bounds); the dataset itself is checked by `DAVISValidator`.
    func validate(_ v: ConfigValidator) throws {
        guard everySteps > 0 else { return }
        try v.check(!davisRoot.isEmpty, "eval.davis_root", "must name a DAVIS root when eval.every_steps is set")
        try v.check(PropagationProcedure(rawValue: procedure) != nil, "eval.procedure", "'\(procedure)' is not crw or timecycle")
        try v.check(["layer1", "layer2", "layer3", "layer4"].contains(layer), "eval.layer", "'\(layer)' is not layer1...layer4")
        try v.check(strides.count == 4, "eval.strides", "must be 4 strides (layer1..layer4)")
        try v.check(maxFrames == 0 || maxFrames >= 3, "eval.max_frames", "must be 0 (all) or >= 3 (the first and last annotated frames are not scored)")
        try v.check(["imagenet", "train"].contains(normalization), "eval.normalization", "'\(normalization)' is not imagenet or train")
    }
}

/// The `eval:` section's validation: propagates DAVIS masks with a copy of the training encoder
/// (a separate eval-mode network, so the model being trained, its batch-norm statistics and every
/// random generator are untouched) into `<output_dir>/val/masks/` (the latest validation's masks)
/// and scores them. Each validation also gives TensorBoard one picture per sequence: its middle
/// propagated frame with the labels drawn on it.
public final class DAVISValidator: TrainingValidator {
    public let config: EvalConfig
    public var everySteps: Int { config.everySteps }
    public var secondsField: String { "val_s" }
    public var bestField: String? { config.saveBest ? "val_jf" : nil }
    let dataset: DAVISDataset
    let names: [String]
    let spec: EncoderSpec
    let resnet: ResNetConfig
    let out: String
    /// Frames propagated per validation (for its log line).
    let frames: Int

    /// Checks the DAVIS root and sequences (errors name `file` and the field) before any run
    /// directory is made.
    public init(config: TrainConfig, file: String) throws {
        self.config = config.eval
        let e = config.eval
        do {
            dataset = try DAVISDataset.open(root: e.davisRoot, set: e.set, resolution: e.resolution)
        } catch { throw ConfigError(file, "field 'eval.davis_root': \(error)") }
        do { names = try dataset.names(e.sequences) } catch { throw ConfigError(file, "field 'eval.sequences': \(error)") }
        spec = config.encoderSpec
        guard let r = ResNetConfig(name: spec.arch, lastStage: e.layer, strides: e.strides, paddingMode: spec.padding) else {
            throw ConfigError(file, "field 'eval.strides': \(e.strides) with \(spec.arch) up to \(e.layer) is not a ResNet this library builds")
        }
        resnet = r
        out = config.outputDir + "/val/masks"
        do { frames = try PropagationJobs.davisFrameCount(dataset, sequences: names, maxFrames: e.maxFrames > 0 ? e.maxFrames : nil) } catch {
            throw ConfigError(file, "field 'eval.davis_root': \(error)")
        }
    }

    public func validate(model: Module, step: Int) throws -> ValidationScores {
        var g = RandomGenerator(seed: 0)
        let encoder = ResNet(config: resnet, initialize: false, generator: &g)
        try CheckpointFile(path: "the weights at step \(step)", metadata: [:], tensors: model.stateDict())
            .loadEncoder(into: encoder, prefix: CheckpointFile.encoderPrefix, description: "\(spec.arch) up to \(config.layer)")
        encoder.eval()
        let norm = config.normalization == "train" ? spec.normalization : .imagenet
        let maxFrames = config.maxFrames > 0 ? config.maxFrames : nil
        try PropagationJobs.davis(dataset, sequences: names, extractor: .encoder(encoder, l2Normalize: true, normalization: norm),
                                  options: config.options, out: out, maxFrames: maxFrames) { _, _ in }
        let r = try DAVISEvaluation.evaluate(davisRoot: dataset.root, results: out, set: config.set, resolution: config.resolution,
                                             sequences: names, maxFrames: maxFrames)
        let s = r.summary
        return ValidationScores(fields: [("val_jf", s.jfMean), ("val_j", s.jMean), ("val_f", s.fMean)], images: try pictures(maxFrames: maxFrames),
                                summary: String(format: "DAVIS J&F %.4f (J %.4f, F %.4f) on %d sequence(s), %d frames", s.jfMean, s.jMean, s.fMean, names.count, frames))
    }

    /// Per sequence, its middle propagated frame with the propagated labels drawn on it.
    func pictures(maxFrames: Int?) throws -> [(tag: String, png: Data)] {
        try names.map { name in
            let seq: DAVISSequence
            do { seq = try dataset.sequence(name) } catch { throw EvaluationError("\(error)") }
            let t = min(seq.frameCount, maxFrames ?? Int.max) / 2
            let framePath = seq.framePaths[t]
            let stem = ((framePath as NSString).lastPathComponent as NSString).deletingPathExtension
            let mask = try FirstFrameLabels.mask(out + "/" + name + "/" + stem + ".png")
            let frame = try Image.read(framePath)
            let canvas = OverlayWriter.mask(frame, labels: mask.pixels.map(Int.init), width: mask.width, height: mask.height, palette: mask.palette)
            return (tag: "val/" + name, png: try canvas.pngData())
        }
    }
}
