import ArgumentParser
import CycleTimeDetection
import CycleTimeTraining
import Foundation

/// `cycletime detect`: the Faster R-CNN (torchvision layout) person detector's commands.
struct DetectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detect",
        abstract: "Object / person detection with a Faster R-CNN in torchvision's layout.",
        subcommands: [DetectImageCommand.self, DetectTrainCommand.self, DetectTestCommand.self])
}

/// `cycletime detect image IMG --detector W --out D.json`: one image's detections.
struct DetectImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Detect objects in one image with a torchvision Faster R-CNN state dict; write them as JSON.",
        discussion: """
            The detector is a state dict of torchvision's fasterrcnn_resnet50_fpn (any ResNet depth, \
            any number of classes) saved as safetensors, keys unchanged. The image is normalized \
            with the ImageNet mean/std and resized as torchvision does (short side --min-size unless \
            the long side would exceed --max-size). The JSON lists boxes (x1, y1, x2, y2 in pixels of \
            the image), scores and labels (1 = the first class after background), best first; it is \
            written atomically.
            """)

    @Argument(help: "Image (PNG or JPEG)") var image: String
    @Option(help: "Detector state dict (safetensors, torchvision key names)") var detector: String
    @Option(help: "Output JSON file") var out: String
    @Option(name: .customLong("min-size"), help: "Resized short side (torchvision's min_size)") var minSize = 800
    @Option(name: .customLong("max-size"), help: "Largest resized long side (torchvision's max_size)") var maxSize = 1333
    @Option(name: .customLong("score-threshold"), help: "Keep detections scoring above this") var scoreThreshold: Double = 0.05
    @Option(name: .customLong("max-detections"), help: "At most this many detections") var maxDetections = 100

    func validate() throws {
        try checkOption("--min-size", minSize, 32...4096)
        try checkOption("--max-size", maxSize, 32...8192)
        try checkOption("--score-threshold", scoreThreshold, 0...1)
        try checkOption("--max-detections", maxDetections, 1...100_000)
    }

    func run() throws {
        var transform = RCNNTransform()
        transform.minSize = minSize
        transform.maxSize = maxSize
        var boxes = BoxHeadSettings()
        boxes.scoreThreshold = Float(scoreThreshold)
        boxes.detectionsPerImage = maxDetections
        let result = try detectImage(imagePath: image, detectorPath: detector, outPath: out, transform: transform, boxes: boxes)
        print("\(result.detections.count) detections in \(image) (\(result.width)x\(result.height)) -> \(out)")
    }
}

/// `cycletime detect test --config C [--checkpoint W] --out PROPOSALS`: person proposals for the
/// keyframes of an AVA-format split, scored by person AP@0.5.
struct DetectTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Detect persons at the keyframes of an AVA-format split; write them as proposals and print person AP@0.5.",
        discussion: """
            The config's data section is the AVA config's (annotations, excluded, frames, fps, \
            window_start; the keyframe at second s is frame fps x (s - window_start) + 1); its \
            detector section names the torchvision Faster R-CNN state dict (checkpoint), min_size, \
            max_size, person_label (COCO: 1) and score_threshold; test.annotations / test.excluded \
            override the data section's. Person boxes scoring above the threshold are written \
            atomically, normalized to the frame: the LFB/PySlowFast CSV when --out ends in .csv \
            (video_id, timestamp, x1, y1, x2, y2, empty action, score), the JSON proposal file \
            ("video_id,timestamp" -> [[x1, y1, x2, y2, score], ...]) otherwise; both are what \
            'cycletime ava train|test' read as data.proposals / test.proposals. Person AP@0.5 is \
            PASCAL VOC's all-point interpolation against the annotation CSV's boxes (each \
            distinct box of a keyframe once).
            """)

    @Option(help: "The detect config (YAML).") var config: String
    @Option(help: "Detector state dict (default: the config's detector.checkpoint).") var checkpoint: String?
    @Option(help: "Proposal file to write (.csv: the LFB/PySlowFast CSV, otherwise JSON).") var out: String
    @Option(name: .customLong("set"), help: "Override a config field (repeatable).") var overrides: [String] = []

    func run() throws {
        let err: @Sendable (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }
        let s = try runDetectTest(configPath: config, overrides: overrides, checkpoint: checkpoint, out: out,
                                  report: { err("warning: " + $0 + "\n") }, progress: err)
        print("wrote \(s.boxes) person boxes for \(s.keyframes) keyframes to \(out) (detector \(s.checkpoint))")
        if let a = s.personAP {
            print("person AP@0.5: \(String(format: "%.4f", a.ap))  (VOC all-point; \(a.groundTruth) ground-truth boxes, \(a.detections) detections, \(a.truePositives) true positives)")
        }
        if let saved = s.saved { print("summary for cycletime report: \(saved)") }
    }
}

/// `cycletime detect train --config C [--resume] [--set k=v ...]`: fine-tunes the person detector on
/// the split's person boxes with the trainer of `cycletime train`.
struct DetectTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Fine-tune a Faster R-CNN person detector on the person boxes of an AVA-format split.",
        discussion: """
            Trains torchvision's four Faster R-CNN losses on the keyframes of data.annotations \
            (excluded ones dropped; each distinct box of a keyframe is one person, label \
            detector.person_label), from detector.checkpoint (a torchvision state dict) or, without \
            one, a background + person detector with a ResNet-detector.depth body from the seed. The \
            run directory (output_dir) receives config.yaml, metrics.jsonl (loss and its four terms), \
            train.log and checkpoints/; 'cycletime detect test --checkpoint \
            output_dir/checkpoints/latest.safetensors' writes its proposals. Ctrl-C writes a \
            checkpoint and exits with status 130; --resume continues the run exactly.
            """)

    @OptionGroup var args: TrainArguments

    func run() throws {
        try args.run(DetectConfig.self, unit: "images") { try makeDetectTrainer(configPath: $0, overrides: $1, report: $2) }
    }
}
