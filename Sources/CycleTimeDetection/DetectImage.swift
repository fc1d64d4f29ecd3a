import Foundation
import CycleTimeCore
import CycleTimeNN
import CycleTimeModels
import CycleTimeVideo

// One image's detections with a torchvision Faster R-CNN state dict (`cycletime detect image`).

extension FasterRCNN {
    /// The architecture a torchvision Faster R-CNN state dict describes: ResNet depth from the
    /// body's block counts (and Bottleneck or BasicBlock), classes and representation size from the
    /// box predictor, frozen batch norm when the body has no num_batches_tracked keys. Errors name
    /// the file and key.
    public static func config(of state: [String: Tensor], path: String) throws -> FasterRCNNConfig {
        let clsKey = "roi_heads.box_predictor.cls_score.weight"
        guard let cls = state[clsKey], cls.rank == 2, cls.shape[0] >= 2 else {
            throw CheckpointError.invalid(path: path, message: "no key '\(clsKey)' of shape [classes >= 2, features]: not a torchvision Faster R-CNN state dict")
        }
        let body = "backbone.body."
        let bottleneck = state[body + "layer1.0.conv3.weight"] != nil
        let counts = (1...4).map { stage -> Int in
            let prefix = body + "layer\(stage)."
            let blocks = state.keys.compactMap { k -> Int? in
                guard k.hasPrefix(prefix) else { return nil }
                return Int(k.dropFirst(prefix.count).prefix { $0 != "." })
            }
            return (blocks.max() ?? -1) + 1
        }
        guard let depth = [18, 34, 50, 101, 152].first(where: {
            ResNetConfig.blocks(depth: $0).map { $0.bottleneck == bottleneck && $0.counts == counts } ?? false
        }) else {
            throw CheckpointError.invalid(path: path, message: "keys '\(body)layer1...4' have \(counts) \(bottleneck ? "Bottleneck" : "BasicBlock") blocks: not a torchvision ResNet body")
        }
        var config = FasterRCNNConfig()
        config.depth = depth
        config.numClasses = cls.shape[0]
        config.representationSize = cls.shape[1]
        config.frozenBatchNorm = !state.keys.contains { $0.hasPrefix(body) && $0.hasSuffix("num_batches_tracked") }
        return config
    }

    /// The model of a torchvision Faster R-CNN state dict saved as safetensors (strict: every key,
    /// no other, the same shapes), in eval mode, with `transform` and `boxes` settings.
    /// `trainableBackboneLayers` as torchvision's (matters only for training it further).
    public static func load(_ path: String, transform: RCNNTransform = RCNNTransform(), boxes: BoxHeadSettings = BoxHeadSettings(),
                            trainableBackboneLayers: Int = 3) throws -> FasterRCNN {
        let file = try CheckpointFile(path)
        var config = try Self.config(of: file.modelState, path: path)
        config.transform = transform
        config.boxes = boxes
        config.trainableBackboneLayers = trainableBackboneLayers
        var g = RandomGenerator(seed: 0)
        let model = FasterRCNN(config: config, initialize: false, generator: &g)
        try file.loadEncoder(into: model, prefix: "", description: "torchvision's Faster R-CNN ResNet-\(config.depth)-FPN with \(config.numClasses) classes")
        if let recorded = file.metadata[normalizationKey] {
            guard let n = Normalization(recorded) else {
                throw CheckpointError.invalid(path: path, message: "metadata '\(normalizationKey)' is not 'mean a,b,c std d,e,f' with positive std")
            }
            model.config.transform.normalization = n
        }
        return model.eval()
    }

    /// The checkpoint metadata key recording the input normalization a detector was trained with
    /// (`detect train` writes it; `load` uses it over the caller's).
    public static let normalizationKey = "detector_normalization"

    /// Initializes the ResNet body from an encoder (torchvision's weights_backbone): a CycleTime
    /// checkpoint's `encoder.` keys or a torchvision ResNet state dict (fc ignored). Every stage the
    /// encoder has must load whole (the same depth: a missing key or another shape is an error naming
    /// the file and key); stages it lacks (an encoder trained to layer3) keep their initialization
    /// and are returned, so the caller can say so, with the input normalization the checkpoint
    /// records its encoder was trained with (nil when it records none). NaN or infinite weights are an error.
    @discardableResult
    public func loadBody(from path: String) throws -> (seededStages: [String], normalization: Normalization?) {
        let file = try CheckpointFile(path)
        let (state, prefix) = try file.encoderState()
        guard state["conv1.weight"] != nil else {
            throw CheckpointError.invalid(path: path, message: "no encoder weights (neither a CycleTime checkpoint with 'encoder.' keys nor torchvision ResNet keys such as 'conv1.weight')")
        }
        let body = backbone.body
        let entries = body.namedStateEntries().filter { !$0.0.hasSuffix("num_batches_tracked") }
        func stage(_ k: String) -> String { String(k.prefix { $0 != "." }) }
        let present = Set(entries.map { stage($0.0) }.filter { s in state.keys.contains { stage($0) == s } })
        for (k, t) in entries where present.contains(stage(k)) {
            guard let src = state[k] else {
                throw CheckpointError.invalid(path: path, message: "missing key '\(prefix)\(k)' for the ResNet-\(config.depth) body (wrong detector.depth?)")
            }
            if src.shape != t.shape {
                throw CheckpointError.invalid(path: path, message: "key '\(prefix)\(k)' has shape \(src.shape), the ResNet-\(config.depth) body's is \(t.shape) (wrong detector.depth?)")
            }
        }
        let known = Set(entries.map(\.0))
        if let extra = state.keys.filter({ present.contains(stage($0)) && !known.contains($0) && !$0.hasSuffix("num_batches_tracked") }).sorted().first {
            throw CheckpointError.invalid(path: path, message: "unexpected key '\(prefix)\(extra)' for the ResNet-\(config.depth) body (wrong detector.depth?)")
        }
        for (k, t) in entries { if let src = state[k] { t.assign(src) } }
        var seen = Set<String>()
        let seeded = entries.map { stage($0.0) }.filter { !present.contains($0) && seen.insert($0).inserted }
        return (seeded, try EncoderSpec.recorded(in: file.metadata, file: path)?.normalization)
    }
}

/// What `detectImage` writes: the image's size and its detections in pixels.
public struct ImageDetections: Codable, Equatable, Sendable {
    public struct Detection: Codable, Equatable, Sendable {
        /// x1, y1, x2, y2 in pixels of the original image.
        public var box: [Float]
        public var score: Float
        public var label: Int
    }
    public var image: String
    public var width: Int
    public var height: Int
    public var detections: [Detection]
}

/// Detects objects in the image at `imagePath` (PNG or JPEG) with the torchvision Faster R-CNN state
/// dict at `detectorPath` and writes `ImageDetections` as JSON to `outPath` atomically. Bad input is
/// one error naming the file; nothing is written then.
@discardableResult
public func detectImage(imagePath: String, detectorPath: String, outPath: String,
                        transform: RCNNTransform = RCNNTransform(), boxes: BoxHeadSettings = BoxHeadSettings()) throws -> ImageDetections {
    try AtomicFile.checkWritable(outPath)
    let image = try Image.read(imagePath)
    let (h, w) = transform.resizedSize(height: image.height, width: image.width)
    guard h >= 1, w >= 1 else {
        throw MediaError(file: imagePath, "a \(image.width)x\(image.height) image resizes to \(w)x\(h) pixels with min size \(transform.minSize) and max size \(transform.maxSize)")
    }
    let model = try FasterRCNN.load(detectorPath, transform: transform, boxes: boxes)
    let d = model.detect([image.tensor()])[0].detections
    let list = (0..<d.scores.count).map { i in
        ImageDetections.Detection(box: (0..<4).map { d.boxes.data[i * 4 + $0] }, score: d.scores[i], label: d.labels[i])
    }
    let result = ImageDetections(image: imagePath, width: image.width, height: image.height, detections: list)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try AtomicFile.write(try encoder.encode(result), to: outPath)
    return result
}
