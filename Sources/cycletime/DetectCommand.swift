import ArgumentParser
import CycleTimeDetection
import Foundation

/// `cycletime detect`: the Faster R-CNN (torchvision layout) person detector's commands.
struct DetectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detect",
        abstract: "Object / person detection with a Faster R-CNN in torchvision's layout.",
        subcommands: [DetectImageCommand.self])
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
