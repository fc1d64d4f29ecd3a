import ArgumentParser
import CycleTimeCore
import CycleTimeData
import CycleTimeModels
import CycleTimeNN
import CycleTimePropagation
import CycleTimeTraining
import CycleTimePretraining
import CycleTimeVideo
import Foundation

/// `cycletime propagate davis|...`: first-frame labels propagated by feature affinity.
struct PropagateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "propagate",
        abstract: "Propagate first-frame labels through videos by nearest-neighbour affinity in feature space.",
        subcommands: [PropagateDAVIS.self, PropagateJHMDB.self, PropagateVIP.self, PropagateVideo.self])
}

/// The encoder and procedure options shared by every task.
struct PropagationArguments: ParsableArguments {
    @Option(help: "CycleTime training checkpoint (safetensors, encoder keys 'encoder.<torchvision key>'), or a run folder (uses checkpoints/latest.safetensors)")
    var checkpoint: String?
    @Option(help: "torchvision ResNet state dict as safetensors (plain keys)") var imagenet: String?
    @Flag(name: .customLong("random-init"), help: "Randomly initialized ResNet (torchvision init, --seed)") var randomInit = false
    @Flag(help: "Raw pixels (Lab colour on the stride grid) as features") var pixels = false
    @Option(help: "Seed of --random-init") var seed: UInt64 = 0
    @Option(help: "resnet18, resnet34, resnet50, ...") var arch = "resnet18"
    @Option(help: "Feature layer: layer1...layer4") var layer = "layer3"
    @Option(help: "Stage strides, e.g. 1,2,1,1 (output stride 8)") var strides = "1,2,1,1"
    @Option(help: "Padding of the encoder's convolutions: zeros, reflect, or auto (a CycleTime checkpoint's own: reflect for a CRW run trained with crw.reflect_padding, zeros otherwise)")
    var padding = "auto"
    @Option(help: "Input normalization of the frames: imagenet (ImageNet's statistics, what the released CRW and TimeCycle test code use whatever the encoder was trained with) or checkpoint (the encoder's training normalization recorded in a CycleTime checkpoint)")
    var normalization = "imagenet"
    @Option(name: .customLong("pixel-stride"), help: "Grid stride of --pixels") var pixelStride = 8
    @Flag(name: .customLong("no-l2"), help: "No per-cell L2 normalization of the features") var noL2 = false
    @Option(help: "Test procedure: crw (the contrastive random walk's, default) or timecycle (TimeCycle's); sets the defaults below")
    var procedure = "crw"
    @Option(help: "Preceding frames in the context (crw 20, timecycle 7)") var context: Int?
    @Option(help: "Spatial radius on the preceding frames in feature cells (crw 12, timecycle none: inf)") var radius: Double?
    @Option(help: "Softmax temperature, logits = cosine / temperature (crw 0.05, timecycle 512^-0.5)") var temperature: Float?
    @Option(help: "Neighbours kept: over all context nodes (crw 10), per context frame (timecycle 5)") var topk: Int?
    @Option(name: .customLong("square-size"), help: "Squash frames to this square size before the encoder (timecycle 320; 0 = keep the frame size)")
    var squareSize: Int?
    @Flag(help: "Also write the labels drawn on the frames: <out>/overlays/<sequence>/<frame>.png and <out>/overlays/<sequence>.mp4 (JHMDB: <clip>/overlays/ and overlays.mp4)")
    var overlays = false
    @Option(name: .customLong("overlay-fps"), help: "Frame rate of the overlay videos") var overlayFps: Double = 12
    @Option(help: "Precision of the encoder: fp32, or bf16 (convolutions in bf16 with float32 accumulation; needs AVX512-BF16; the affinities stay float32)")
    var precision: Precision = .fp32

    func validate() throws {
        let n = [checkpoint != nil, imagenet != nil, randomInit, pixels].filter { $0 }.count
        try checkOption("--pixel-stride", pixelStride, 1...64)
        try checkOption("--context", context, 0...1000)
        try checkOption("--radius", radius, 1e-6...Double.infinity, allowInfinity: true)
        try checkOption("--temperature", temperature.map(Double.init), 1e-6...1e6)
        try checkOption("--topk", topk, 1...100_000)
        try checkOption("--square-size", squareSize, 0...4096)
        try checkOption("--overlay-fps", overlayFps, 0.01...1000)
        if n != 1 { throw ValidationError("give exactly one of --checkpoint, --imagenet, --random-init and --pixels") }
        if PropagationProcedure(rawValue: procedure) == nil { throw ValidationError("--procedure: crw or timecycle, not '\(procedure)'") }
        let o = options
        if o.contextFrames < 0 || o.topK < 1 || !(o.radius > 0) || !(o.temperature > 0) || pixelStride < 1 || (squareSize ?? 0) < 0 {
            throw ValidationError("--context >= 0, --topk >= 1, --radius > 0, --temperature > 0, --square-size >= 0 and --pixel-stride >= 1")
        }
        if !["auto", "zeros", "reflect"].contains(padding) { throw ValidationError("--padding: auto, zeros or reflect, not '\(padding)'") }
        if !["imagenet", "checkpoint"].contains(normalization) { throw ValidationError("--normalization: imagenet or checkpoint, not '\(normalization)'") }
        if normalization == "checkpoint" && checkpoint == nil { throw ValidationError("--normalization checkpoint needs --checkpoint") }
        if parsedStrides == nil { throw ValidationError("--strides: four positive integers, e.g. 1,2,1,1") }
        if ResNetConfig(name: arch) == nil { throw ValidationError("--arch: unknown architecture '\(arch)'") }
        if !FeaturesCommand.layers.contains(layer) { throw ValidationError("--layer: unknown layer '\(layer)'") }
    }

    var parsedStrides: [Int]? {
        let s = strides.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        return s.count == 4 && s.allSatisfy { $0 > 0 } ? s : nil
    }

    var options: PropagationOptions {
        var o = PropagationOptions.defaults(PropagationProcedure(rawValue: procedure) ?? .crw)
        if let context { o.contextFrames = context }
        if let radius { o.radius = radius }
        if let temperature { o.temperature = temperature }
        if let topk { o.topK = topk }
        if let squareSize { o.squareSize = squareSize == 0 ? nil : squareSize }
        return o
    }

    func encoderDescription(padding pad: PadMode) -> String {
        let o = options
        let p = "\(o.procedure.rawValue) procedure (context \(o.contextFrames), radius \(o.radius), temperature \(o.temperature), top-\(o.topK)"
            + (o.squareSize.map { ", frames squashed to \($0)x\($0))" } ?? ")")
        if pixels { return "pixels (Lab, stride \(pixelStride)), " + p }
        let w = checkpoint.map { "checkpoint \($0)" } ?? imagenet.map { "imagenet \($0)" } ?? "random-init seed \(seed)"
        return "\(arch) \(layer) strides \(strides), \(pad == .reflect ? "reflect" : "zero") padding, \(w), " + p
    }

    /// The checkpoint file: `--checkpoint` itself, or a run folder's `checkpoints/latest.safetensors`.
    func checkpointFile() throws -> String? {
        guard var path = checkpoint else { return nil }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            path += "/checkpoints/latest.safetensors"
            guard FileManager.default.fileExists(atPath: path) else { throw EvaluationError("\(path): no checkpoint in the run folder") }
        }
        return path
    }

    /// The encoder's padding: `--padding`, or with `auto` the one the checkpoint was trained with
    /// (its encoder spec, recorded or derived from its embedded training config), so features at
    /// test time match training.
    func paddingMode(_ spec: () throws -> EncoderSpec?) throws -> PadMode {
        switch padding {
        case "reflect": return .reflect
        case "zeros": return .zeros
        default:
            do { return try spec()?.padding ?? .zeros } catch { throw EvaluationError("\(error); give --padding zeros or reflect") }
        }
    }

    /// The input normalization: `--normalization imagenet`, or `checkpoint` (the encoder spec's).
    func inputNormalization(_ spec: () throws -> EncoderSpec?) throws -> Normalization {
        guard normalization == "checkpoint" else { return .imagenet }
        guard let s = try spec() else {
            throw EvaluationError("--normalization checkpoint: the weights record no training normalization (give --normalization imagenet)")
        }
        return s.normalization
    }

    /// The feature extractor (weights loaded, eval mode) and the padding it uses.
    func extractor() throws -> (FeatureExtractor, PadMode) {
        try Autocast.check(precision, setting: "--precision bf16")
        if pixels { return (.pixels(stride: pixelStride, l2Normalize: !noL2), .zeros) }
        // The checkpoint is read once: its metadata gives the spec, its tensors the weights.
        let file = try checkpointFile().map { try CheckpointFile($0) }
        let spec = { try file?.encoderSpec(resolver: TrainConfig.resolveEncoderSpec) }
        let pad = try paddingMode(spec)
        let norm = try inputNormalization(spec)
        guard let config = ResNetConfig(name: arch, lastStage: layer, strides: parsedStrides ?? [1, 2, 1, 1], paddingMode: pad) else {
            throw ValidationError("--arch \(arch): not a torchvision ResNet (resnet18, resnet34, resnet50, resnet101, resnet152)")
        }
        var g = RandomGenerator(seed: seed)
        let model = ResNet(config: config, initialize: randomInit, generator: &g)
        if let file {
            try file.loadEncoder(into: model, prefix: CheckpointFile.encoderPrefix, description: "\(arch) up to \(layer)")
        } else if let imagenet {
            try CheckpointFile(imagenet).loadEncoder(into: model, prefix: "", description: "\(arch) up to \(layer)")
        }
        model.eval()
        return (.encoder(model, l2Normalize: !noL2, normalization: norm, precision: precision), pad)
    }
}

struct PropagateDAVIS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "davis",
        abstract: "DAVIS masks: writes <out>/<sequence>/<frame>.png (palette of the annotation); then `cycletime eval davis`.")

    @OptionGroup var args: PropagationArguments
    @Option(help: "DAVIS root") var root: String
    @Option(help: "Output folder") var out: String
    @Option(help: "Image set") var set = "val"
    @Option(help: "Resolution folder") var resolution = "480p"
    @Option(help: "Only these sequences (comma-separated)") var sequences: String?
    @Option(name: .customLong("max-frames"), help: "Propagate at most this many frames per sequence") var maxFrames: Int?

    func validate() throws {
        try checkOption("--max-frames", maxFrames, 1...10_000_000)
    }

    func run() throws {
        let dataset = try DAVISDataset.open(root: root, set: set, resolution: resolution)
        let names = try dataset.names(sequences?.split(separator: ",").map(String.init))
        let (extractor, pad) = try args.extractor()
        let total = try PropagationJobs.davisFrameCount(dataset, sequences: names, maxFrames: maxFrames)
        let progress = CountProgress(total: total, unit: "frame")
        progress.line.show("propagating \(names.count) sequence(s), \(total) frames with \(args.encoderDescription(padding: pad))", force: true)
        try PropagationJobs.davis(dataset, sequences: names, extractor: extractor, options: args.options, out: out, maxFrames: maxFrames,
                                  overlayFps: args.overlays ? args.overlayFps : nil) { si, name in progress.tick("[\(si + 1)/\(names.count)] \(name)") }
        progress.finish("results in \(out); score them with: cycletime eval davis --davis-root \(root) --results \(out)")
    }
}

struct PropagateVIP: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vip",
        abstract: "VIP part masks: writes <out>/<video>/<frame>.png (category ids); then `cycletime eval vip`.")

    @OptionGroup var args: PropagationArguments
    @Option(help: "VIP root (Images/, Annotations/Category_ids/)") var root: String
    @Option(help: "Output folder") var out: String
    @Option(help: "Split list lists/<split>_videos.txt when present") var split = "val"
    @Option(name: .customLong("max-frames"), help: "Propagate at most this many frames per video") var maxFrames: Int?

    func validate() throws {
        try checkOption("--max-frames", maxFrames, 1...10_000_000)
    }

    func run() throws {
        let ds: VIPDataset
        do { ds = try VIPDataset(root: root, split: split) } catch { throw EvaluationError("\(error)") }
        let (extractor, _) = try args.extractor()
        let videos = try ds.videoNames.map { n -> VIPVideo in
            do { return try ds.video(n) } catch { throw EvaluationError("\(error)") }
        }
        let progress = CountProgress(total: videos.map { min($0.framePaths.count, maxFrames ?? Int.max) }.reduce(0, +), unit: "frame")
        for (vi, v) in videos.enumerated() {
            guard let m0 = v.maskPaths[0] else { throw EvaluationError("\(root): video '\(v.name)' has no mask of its first frame") }
            try PropagationJobs.masks(.files(v.framePaths, name: v.name), firstMask: try FirstFrameLabels.mask(m0), firstMaskName: m0, extractor: extractor,
                                      options: args.options, out: out, maxFrames: maxFrames,
                                      overlayFps: args.overlays ? args.overlayFps : nil) { progress.tick("[\(vi + 1)/\(videos.count)] \(v.name)") }
        }
        progress.finish("results in \(out); score them with: cycletime eval vip --root \(root) --results \(out)")
    }
}

struct PropagateJHMDB: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jhmdb",
        abstract: "JHMDB keypoints: writes <out>/<class>/<clip>/keypoints.csv (frame,joint,x,y in 0-based pixels); then `cycletime eval jhmdb`.")

    @OptionGroup var args: PropagationArguments
    @Option(help: "JHMDB root (Frames/, joint_positions/)") var root: String
    @Option(help: "Output folder") var out: String
    @Option(name: .customLong("split-dir"), help: "Folder of <class>_test_split<k>.txt lists (default: every clip)") var splitDir: String?
    @Option(help: "Split number") var split = 1
    @Option(help: "Gaussian sigma of a joint (feature cells)") var sigma: Double = 0.5
    @Option(name: .customLong("decode-topk"), help: "Cells averaged to decode a joint") var decodeTopk = 3

    func validate() throws {
        try checkOption("--sigma", sigma, 1e-3...1000)
        try checkOption("--decode-topk", decodeTopk, 1...1000)
        try checkOption("--split", split, 1...3)
    }

    func run() throws {
        let ds: JHMDBDataset
        do { ds = try JHMDBDataset(root: root, splitDir: splitDir, split: split, train: false) } catch { throw EvaluationError("\(error)") }
        if ds.clips.isEmpty { throw EvaluationError("\(root): no JHMDB clips with joint_positions.mat") }
        let (extractor, _) = try args.extractor()
        let progress = CountProgress(total: ds.clips.map(\.frameCount).reduce(0, +), unit: "frame")
        for (ci, clip) in ds.clips.enumerated() {
            try PropagationJobs.keypoints(clip, extractor: extractor, options: args.options, out: out, sigma: sigma, decodeTopK: decodeTopk,
                                          overlayFps: args.overlays ? args.overlayFps : nil) { progress.tick("[\(ci + 1)/\(ds.clips.count)] \(clip.name)") }
        }
        progress.finish("keypoints in \(out); score them with: cycletime eval jhmdb --root \(root) --results \(out)")
    }
}

struct PropagateVideo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "video",
        abstract: "Any video: a first-frame mask or box propagated through it; writes <out>/<video name>/00000.png ... (palette masks).",
        discussion: "Frames are decoded by FFmpeg at their native size and rate. --first-mask takes a palette (or gray) PNG of label ids of the first frame's size; --first-box x1,y1,x2,y2 (pixels) makes label 1 of the box. With --overlays the labels drawn on the frames go to <out>/overlays/<video name>/ and <out>/overlays/<video name>.mp4.")

    @OptionGroup var args: PropagationArguments
    @Argument(help: "The video file") var video: String
    @Option(name: .customLong("first-mask"), help: "Palette or gray PNG of the first frame's labels") var firstMask: String?
    @Option(name: .customLong("first-box"), help: "x1,y1,x2,y2 in pixels of the first frame: label 1 inside") var firstBox: String?
    @Option(help: "Output folder") var out: String
    @Option(name: .customLong("max-frames"), help: "Propagate at most this many frames") var maxFrames: Int?

    func validate() throws {
        if (firstMask == nil) == (firstBox == nil) { throw ValidationError("give exactly one of --first-mask and --first-box") }
        if let firstBox, box(firstBox) == nil { throw ValidationError("--first-box: four numbers x1,y1,x2,y2 (pixels), not '\(firstBox)'") }
        try checkOption("--max-frames", maxFrames, 1...10_000_000)
    }

    func box(_ s: String) -> [Double]? {
        let v = s.split(separator: ",", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
        return v.count == 4 && v.allSatisfy({ $0 != nil }) ? v.compactMap { $0 } : nil
    }

    func run() throws {
        let frames = try FrameSource.video(video, maxFrames: maxFrames ?? Int.max)
        // The first frame's size decides the mask's; FrameSource.video hands each frame once, so
        // the size is read with a reader of its own.
        let first = try VideoReader(video)
        guard let f0 = try first.nextFrame() else { throw MediaError(file: video, "no video frames could be decoded") }
        let mask: Image, maskName: String
        if let firstMask {
            mask = try FirstFrameLabels.mask(firstMask, width: f0.width, height: f0.height)
            maskName = firstMask
        } else {
            mask = try FirstFrameLabels.box(box(firstBox ?? "") ?? [], width: f0.width, height: f0.height)
            maskName = "--first-box"
        }
        let (extractor, pad) = try args.extractor()
        let progress = CountProgress(total: frames.count, unit: "frame")
        progress.line.show("propagating \(frames.count) frames of \(video) with \(args.encoderDescription(padding: pad))", force: true)
        try PropagationJobs.masks(frames, firstMask: mask, firstMaskName: maskName, extractor: extractor, options: args.options, out: out,
                                  overlayFps: args.overlays ? args.overlayFps : nil) { progress.tick(frames.name) }
        progress.finish("masks in \(out)/\(frames.name)")
    }
}
