import ArgumentParser
import CycleTimeDetection

extension AVATestBoxes: ExpressibleByArgument {}
extension AVABankSplit: ExpressibleByArgument {}
import CycleTimeTraining
import CycleTimePretraining
import Foundation

/// `cycletime ava`: the AVA action detector's commands.
struct AVACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ava",
        abstract: "AVA spatio-temporal action detection.",
        subcommands: [AVATrainCommand.self, AVATestCommand.self, AVAEvalCommand.self, AVACheckCommand.self, AVABankCommand.self, AVADemoCommand.self])
}

/// `cycletime ava train --config C [--resume] [--set k=v ...]`: trains the detector with the trainer
/// of `cycletime train` (checkpoints, metrics, progress, exact resume, Ctrl-C).
struct AVATrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train an AVA action detector (2d, slowonly or slowfast backbone) from a YAML config.",
        discussion: """
            The run directory (output_dir) receives config.yaml, metrics.jsonl, train.log and \
            checkpoints/ (detector state_dict, optimizer state under 'optimizer.'). Keyframes without \
            proposals (when data.proposals is set) and excluded keyframes are reported and skipped. \
            Ctrl-C writes a checkpoint and exits with status 130; --resume continues the run exactly. \
            `mpirun -np N cycletime ava train --config C` trains data-parallel on N ranks (batch_size \
            per rank; only rank 0 writes the run directory; config section 'distributed').
            """)

    @OptionGroup var args: TrainArguments

    func run() throws {
        try args.run(AVAConfig.self, unit: "clips") { try makeAVATrainer(configPath: $0, overrides: $1, report: $2) }
    }
}

/// `cycletime ava check --config C`: the dataset of an AVA config checked before any training.
struct AVACheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check the AVA-format dataset of a config before training: keys, timestamps, frames, boxes, action ids.",
        discussion: """
            Checks the label map; each split's annotation CSV line by line (fields, timestamps, boxes             normalized to [0, 1] with x1 < x2 and y1 < y2, action ids in the label map); that each             annotated keyframe's frame (fps x (t - window_start) + 1) exists in its video, and the             window its clip needs; that proposal keys match annotated keyframes and vice versa; that             excluded timestamps name keyframes. Prints a table of problems (file:line) and the boxes             per class of each split with head / mid / tail bins (thirds of the classes by training             count). Exits 1 when there is an error: training would learn nothing or the wrong thing.
            """)

    @Option(help: "The run config (YAML).") var config: String
    @Option(name: .customLong("set"), help: "Override a config field (repeatable).") var overrides: [String] = []

    func run() throws {
        let report = try checkAVADataset(configPath: config, overrides: overrides)
        print(report.table(), terminator: "")
        if report.hasErrors { throw ExitCode(1) }
    }
}

/// `cycletime ava test --config C [--checkpoint K] --out results.csv`: detections on the test
/// keyframes' proposals, written as the AVA results CSV, then scored (official frame-mAP).
struct AVATestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Run a trained AVA detector on the test keyframes and write the AVA results CSV.",
        discussion: """
            Each test keyframe (test.annotations, default data.annotations) is one clip, full frame \
            at short side data.test_short_side; the boxes are its proposals scoring >= \
            min(test.proposal_threshold, best). Keyframes without proposals are reported and skipped. \
            Rows: video_id, timestamp, x1, y1, x2, y2, action_id, score (4 decimals), scores below \
            test.score_threshold dropped. The frame-mAP printed at the end is the official protocol's \
            over the run's classes; 'cycletime ava eval' gives per-class APs and the other protocols.
            """)

    @Option(help: "The run config (YAML).") var config: String
    @Option(help: "Detector checkpoint (default: output_dir/checkpoints/latest.safetensors).") var checkpoint: String?
    @Option(help: "Results CSV to write.") var out: String
    @Option(help: "Boxes to classify: proposals (the person proposals) or gt (the test annotations' ground-truth boxes: the upper bound with perfect boxes)")
    var boxes: AVATestBoxes = .proposals
    @Option(name: .customLong("set"), help: "Override a config field (repeatable).") var overrides: [String] = []

    func run() throws {
        let err: @Sendable (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }
        let s = try runAVATest(configPath: config, overrides: overrides, checkpoint: checkpoint, out: out, boxes: boxes,
                               report: { err("warning: " + $0 + "\n") }, progress: err)
        print("wrote \(s.rows) detections for \(s.keyframes) keyframes to \(out) (checkpoint \(s.checkpoint))")
        let on = boxes == .groundTruth ? "ground-truth boxes" : "proposals"
        if let m = s.mAP { print("frame-mAP@0.5IOU: \(String(format: "%.8f", m))  (official protocol, test annotations, \(on))") }
    }
}

/// `cycletime ava bank --config C [--checkpoint K] --split train|test --out BANK`: the long-term
/// feature bank of a split (a safetensors file per video; an interrupted build resumes).
struct AVABankCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bank",
        abstract: "Build the long-term feature bank of a split: every keyframe's proposal RoI features, a file per video.",
        discussion: """
            The trained detector (linear head or ACRN) runs on every keyframe of the split (train: \
            data.annotations with data.proposals; test: test.annotations with test.proposals) as \
            'ava test' does, and each proposal's RoI feature is stored under its video and second in \
            BANK/<video>.safetensors, written when the video is done. Run again to resume: videos \
            already in BANK are kept.
            """)

    @Option(help: "The run config (YAML).") var config: String
    @Option(help: "Detector checkpoint (default: output_dir/checkpoints/latest.safetensors).") var checkpoint: String?
    @Option(help: "Keyframes to run over: train or test.") var split: AVABankSplit = .train
    @Option(help: "The bank folder.") var out: String
    @Option(name: .customLong("set"), help: "Override a config field (repeatable).") var overrides: [String] = []

    func run() throws {
        let err: @Sendable (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }
        let s = try runAVABank(configPath: config, overrides: overrides, checkpoint: checkpoint, out: out, split: split,
                               report: { err("warning: " + $0 + "\n") }, progress: err)
        print("wrote \(s.written.count) video file(s) (\(s.features) features of \(s.channels) channels from \(s.keyframes) keyframes) to \(out), kept \(s.skipped.count) (checkpoint \(s.checkpoint))")
    }
}

/// `cycletime ava eval`: frame-mAP at IoU 0.5 and per-class AP of an AVA results CSV.
struct AVAEvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Frame-mAP@0.5 and per-class AP of AVA detections against ground truth.",
        discussion: """
            Protocols: official (ActivityNet: at most 50 detections per keyframe, keyframes without \
            ground truth and excluded keyframes ignored, a class with ground truth and no detection \
            scores AP 0, mean over the label map's classes with ground truth); mmaction2-0.x and \
            pyslowfast (no cap, detections at keyframes without ground truth are false positives); \
            mmaction2-1.x (no cap, keyframes without ground truth ignored, classes without detections \
            dropped from the mean). The options below override single choices of the protocol. Rows \
            whose action is not in the label map are skipped and reported on stderr.
            """)

    @Option(help: "Ground-truth CSV (video_id, timestamp, x1, y1, x2, y2, action_id[, person_id])") var gt: String
    @Option(help: "Detections CSV (video_id, timestamp, x1, y1, x2, y2, action_id, score)") var detections: String
    @Option(help: "Label map: pbtxt (item/label blocks) or 'id: name' lines") var labelmap: String
    @Option(help: "Excluded timestamps CSV (video_id, timestamp)") var excluded: String?
    @Option(help: "official, mmaction2-0.x, pyslowfast or mmaction2-1.x") var `protocol`: String = "official"
    @Option(name: .customLong("max-detections"), help: "Detections kept per keyframe (0 = no cap); overrides the protocol") var maxDetections: Int?
    @Option(name: .customLong("frames-without-gt"), help: "'ignore' or 'count' (as false positives); overrides the protocol") var framesWithoutGT: String?
    @Option(name: .customLong("classes-without-detections"), help: "'zero' (AP 0) or 'drop' (left out of the mean); overrides the protocol") var classesWithoutDetections: String?
    @Option(name: .customLong("train-annotations"), help: "Training annotation CSV whose box counts bin the classes into head, mid and tail thirds (default: the ground truth's own counts)")
    var trainAnnotations: String?
    @Flag(help: "Print the result as JSON") var json = false

    func resolvedProtocol() throws -> AVAEvalProtocol {
        guard var p = AVAEvalProtocol.named(`protocol`) else {
            throw ValidationError("--protocol: unknown protocol '\(`protocol`)' (\(AVAEvalProtocol.named.map(\.name).joined(separator: ", ")))")
        }
        if let m = maxDetections {
            guard m >= 0 else { throw ValidationError("--max-detections must be >= 0") }
            p.maxDetectionsPerFrame = m
        }
        switch framesWithoutGT {
        case nil: break
        case "ignore": p.countFramesWithoutGroundTruth = false
        case "count": p.countFramesWithoutGroundTruth = true
        case let s?: throw ValidationError("--frames-without-gt: '\(s)' is not 'ignore' or 'count'")
        }
        switch classesWithoutDetections {
        case nil: break
        case "zero": p.dropClassesWithoutDetections = false
        case "drop": p.dropClassesWithoutDetections = true
        case let s?: throw ValidationError("--classes-without-detections: '\(s)' is not 'zero' or 'drop'")
        }
        return p
    }

    func validate() throws {
        try checkOption("--max-detections", maxDetections, 1...1_000_000)
        _ = try resolvedProtocol()
    }

    /// Reads the files and evaluates; skip reports go to `report`.
    func evaluate(report: (String) -> Void) throws -> AVAEvalResult {
        let p = try resolvedProtocol()
        let labels = try AVALabelMap.read(labelmap)
        let g = try AVACSV.read(gt, labelMap: labels)
        let d = try AVACSV.read(detections, labelMap: labels, scoreColumn: true)
        for r in [g.skipReport, d.skipReport] where !r.isEmpty { report(r) }
        if g.rows.isEmpty { throw AVAError(gt, "no ground-truth rows with a class of the label map \(labelmap)") }
        let ex = try excluded.map(readAVAExcluded) ?? []
        var r = evaluateAVA(groundTruth: g.rows, detections: d.rows, labelMap: labels, excluded: ex, protocol: p)
        r.bins = r.byFrequency(counts: try trainAnnotations.map { try AVACSV.read($0, labelMap: labels).boxesPerClass })
        return r
    }

    static func format(_ v: Double?) -> String { v.map { String(format: "%.8f", $0) } ?? "n/a" }

    func run() throws {
        var r = try evaluate { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        if json {
            r.protocolName = `protocol`
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(r), as: UTF8.self))
        } else {
            print("frame-mAP@0.5IOU: \(Self.format(r.mAP))  (protocol \(`protocol`), \(r.evaluatedFrames) keyframes evaluated, \(r.excludedFrames) excluded, \(r.framesWithoutGroundTruth) with detections but no ground truth)")
            for b in r.bins ?? [] {
                print("mAP \(b.bin): \(Self.format(b.mAP))  (\(b.classes.count) classes by \(trainAnnotations == nil ? "ground-truth" : "training") box count: \(b.classes.map(String.init).joined(separator: ", ")))")
            }
            for c in r.classes where c.groundTruth > 0 {
                print("AP@0.5IOU \(c.id) \(c.name): \(Self.format(c.ap))  (gt \(c.groundTruth), detections \(c.detections))")
            }
        }
    }
}


/// `cycletime ava demo VIDEO --config C [--checkpoint K] (--detector D | --proposals FILE) --out OUT`:
/// video in, actions out (results CSV and an mp4 with the boxes and their top actions drawn).
struct AVADemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Detect persons and their actions in a video: write OUT/results.csv and OUT/demo.mp4 with the boxes and top actions drawn.",
        discussion: """
            Every second t of the video is a keyframe (the frame at t seconds; the clip around it \
            as the config's clip_length, frame_interval, fps, test_short_side, decode_short_side, \
            mean and std take it, window_start 0). Persons: with --detector, a torchvision Faster \
            R-CNN state dict (safetensors; 'cycletime detect train' writes them) runs on each \
            keyframe (--min-size, --max-size, --score-threshold, --person-label: the detect \
            config's detector defaults); with --proposals, a proposal file (JSON or the \
            LFB/PySlowFast CSV, as 'detect test' writes) keyed by --video-id (default: the \
            video's base name), selected as 'ava test' selects proposals \
            (test.proposal_threshold). Keyframes without a box get no rows and are reported. The \
            action detector (config and checkpoint, as 'ava test' builds it) classifies each box; \
            results.csv has the AVA results rows 'ava eval' reads (video_id, timestamp, x1, y1, x2, \
            y2 normalized, action_id, score >= test.score_threshold); demo.mp4 has the input's \
            frames, size and frame rate with each keyframe's boxes and --top-k actions drawn from \
            that keyframe to the next; with --detector, proposals.json holds its boxes (the \
            JSON proposal file: --proposals OUT/proposals.json reruns without detecting). OUT is written into a temporary folder and renamed when \
            complete (an existing OUT is replaced).
            """)

    @Argument(help: "The video (any format FFmpeg reads).") var video: String
    @Option(help: "The AVA run config (YAML).") var config: String
    @Option(help: "Action detector checkpoint (default: output_dir/checkpoints/latest.safetensors).") var checkpoint: String?
    @Option(help: "Person detector: a torchvision Faster R-CNN state dict (safetensors).") var detector: String?
    @Option(help: "Precomputed person proposals (JSON or CSV), instead of --detector.") var proposals: String?
    @Option(name: .customLong("video-id"), help: "Video id of the result rows and of the proposal keys (default: the video's base name).") var videoID: String?
    @Option(help: "Output folder (results.csv, demo.mp4).") var out: String
    @Option(name: .customLong("min-size"), help: "Detector: resized short side (torchvision's min_size).") var minSize = DetectorSettingsConfig().minSize
    @Option(name: .customLong("max-size"), help: "Detector: largest resized long side (torchvision's max_size).") var maxSize = DetectorSettingsConfig().maxSize
    @Option(name: .customLong("score-threshold"), help: "Detector: person boxes scoring above this are kept.") var scoreThreshold = DetectorSettingsConfig().scoreThreshold
    @Option(name: .customLong("person-label"), help: "Detector: the person class's label (COCO and detect train: 1).") var personLabel = DetectorSettingsConfig().personLabel
    @Option(name: .customLong("max-detections"), help: "Detector: at most this many boxes per keyframe.") var maxDetections = DetectorSettingsConfig().detectionsPerImage
    @Option(name: .customLong("top-k"), help: "Actions drawn per box.") var topK = 3
    @Option(name: .customLong("set"), help: "Override a config field (repeatable).") var overrides: [String] = []

    func validate() throws {
        try checkOption("--min-size", minSize, 32...4096)
        try checkOption("--max-size", maxSize, 32...8192)
        try checkOption("--score-threshold", scoreThreshold, 0...1)
        try checkOption("--person-label", personLabel, 1...100_000)
        try checkOption("--max-detections", maxDetections, 1...100_000)
        try checkOption("--top-k", topK, 1...100)
        if maxSize < minSize { throw ValidationError("--max-size (\(maxSize)) must be >= --min-size (\(minSize))") }
    }

    func run() throws {
        // One error line (not the usage text) when the person source is missing or doubled.
        switch (detector, proposals) {
        case (nil, nil): throw AVAError("--detector / --proposals", "one is needed (the person boxes)")
        case (.some, .some): throw AVAError("--detector / --proposals", "give one, not both")
        default: break
        }
        let persons: AVADemoPersons
        if let detector {
            var transform = RCNNTransform()
            transform.minSize = minSize; transform.maxSize = maxSize
            var boxes = BoxHeadSettings()
            boxes.scoreThreshold = Float(scoreThreshold)
            boxes.detectionsPerImage = maxDetections
            persons = .detector(path: detector, transform: transform, boxes: boxes, personLabel: personLabel)
        } else {
            persons = .proposals(path: proposals ?? "")
        }
        var o = AVADemoOptions(video: video, configPath: config, persons: persons, out: out)
        o.overrides = overrides; o.checkpoint = checkpoint; o.videoID = videoID; o.topK = topK
        let err: @Sendable (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }
        let s = try runAVADemo(o, report: { err("warning: " + $0 + "\n") }, progress: err)
        print("wrote \(s.rows) detections of \(s.boxes) boxes at \(s.keyframes - s.keyframesWithoutBoxes.count) of \(s.keyframes) keyframe seconds to \(out)/results.csv and \(s.frames) frames (\(s.width)x\(s.height), \(String(format: "%.3g", s.fps)) fps) to \(out)/demo.mp4 (video id \(s.videoID), checkpoint \(s.checkpoint))")
    }
}
