import Foundation
import XCTest
@testable import CycleTimeDetection
import CycleTimeCore
import CycleTimeNN
import CycleTimeModels
import CycleTimeVideo
import TestSupport

final class DetectImageTests: XCTestCase {
    /// A small torchvision-layout detector (ResNet-18 body, BatchNorm2d, 3 classes, representation
    /// 64) with torchvision's init, saved as safetensors.
    static func smallDetector(_ dir: String) throws -> (path: String, model: FasterRCNN) {
        var g = RandomGenerator(seed: 5)
        let model = FasterRCNN(config: bodyWithBatchNorm(depth: 18, classes: 3, representation: 64), generator: &g)
        let path = dir + "/detector.safetensors"
        try model.save(to: path)
        return (path, model)
    }

    /// A detector config with a BatchNorm2d body (torchvision's without pretrained weights).
    static func bodyWithBatchNorm(depth: Int, classes: Int, representation: Int) -> FasterRCNNConfig {
        var config = FasterRCNNConfig()
        config.depth = depth
        config.numClasses = classes
        config.representationSize = representation
        config.frozenBatchNorm = false
        return config
    }

    /// Depth, classes, representation size and the kind of batch norm come back from the keys.
    func testConfigInferredFromStateDict() throws {
        var g = RandomGenerator(seed: 0)
        let state = FasterRCNN(config: Self.bodyWithBatchNorm(depth: 34, classes: 5, representation: 32), initialize: false, generator: &g).stateDict()
        let inferred = try FasterRCNN.config(of: state, path: "x")
        XCTAssertEqual([inferred.depth, inferred.numClasses, inferred.representationSize], [34, 5, 32])
        XCTAssertFalse(inferred.frozenBatchNorm)
        let frozen = try FasterRCNN.config(of: state.filter { !$0.key.hasSuffix("num_batches_tracked") }, path: "x")
        XCTAssertTrue(frozen.frozenBatchNorm)
        XCTAssertThrowsError(try FasterRCNN.config(of: [:], path: "x.safetensors")) {
            XCTAssertTrue("\($0)".hasPrefix("x.safetensors: no key 'roi_heads.box_predictor.cls_score.weight'"), "\($0)")
        }
    }

    /// The JSON holds what the loaded model detects on the image, in pixels of the image.
    func testWritesTheModelsDetectionsAsJSON() throws {
        let dir = temporaryDirectory("detect-image")
        let (path, model) = try Self.smallDetector(dir)
        var transform = RCNNTransform()
        transform.minSize = 128
        transform.maxSize = 200
        let image = try detectorTestFrame()
        let written = try detectImage(imagePath: image, detectorPath: path, outPath: dir + "/d.json", transform: transform)
        let read = try JSONDecoder().decode(ImageDetections.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/d.json")))
        XCTAssertEqual(read, written)
        XCTAssertEqual([read.width, read.height], [320, 240])
        var config = model.config
        config.transform = transform
        model.eval()
        let ref = FasterRCNN(config: config, initialize: false, generator: &DefaultRandom.generator)
        try ref.loadStateDict(model.stateDict())
        let d = ref.eval().detect([try Image.read(image).tensor()])[0].detections
        XCTAssertEqual(read.detections.map(\.score), d.scores)
        XCTAssertEqual(read.detections.map(\.label), d.labels)
        XCTAssertEqual(read.detections.flatMap(\.box), d.boxes.array)
        XCTAssertFalse(read.detections.isEmpty)
        XCTAssertTrue(read.detections.allSatisfy { $0.box[0] >= 0 && $0.box[2] <= 320 && $0.box[1] >= 0 && $0.box[3] <= 240 })
    }

    /// A state dict of another architecture (a classification ResNet) is one error naming the file;
    /// nothing is written.
    func testOtherArchitectureIsOneErrorAndNoOutput() throws {
        let dir = temporaryDirectory("detect-image-bad")
        var g = RandomGenerator(seed: 1)
        var config = FasterRCNNConfig()
        config.depth = 18
        config.numClasses = 2
        let model = FasterRCNN(config: config, initialize: false, generator: &g)
        var state = model.stateDict()
        state["backbone.body.layer1.0.conv3.weight"] = Tensor.zeros([1])
        try SafeTensors.write(state, to: dir + "/odd.safetensors")
        let image = try detectorTestFrame()
        XCTAssertThrowsError(try detectImage(imagePath: image, detectorPath: dir + "/odd.safetensors",
                                             outPath: dir + "/d.json")) {
            XCTAssertTrue("\($0)".hasPrefix(dir + "/odd.safetensors: "), "\($0)")
            XCTAssertFalse("\($0)".contains("\n"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/d.json"))
    }

    /// A CycleTime checkpoint's encoder (ResNet-18 to layer3, under `encoder.`, with its spec) loads
    /// into the body's conv1...layer3 exactly; layer4 keeps the seed's weights and is named; the
    /// recorded normalization comes back. A torchvision ResNet state dict (with fc) loads every stage.
    func testBodyLoadsTheEncodersStagesAndNamesTheOnesItLacks() throws {
        let dir = temporaryDirectory("detect-body")
        var g = RandomGenerator(seed: 3)
        let encoder = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer3", strides: [1, 2, 1, 1]), generator: &g)
        let spec = EncoderSpec(arch: "resnet18", lastStage: "layer3", strides: [1, 2, 1, 1], padding: .zeros, normalization: .crw)
        var file: [String: Tensor] = ["head.weight": Tensor.zeros([2])]
        for (k, t) in encoder.stateDict() { file[CheckpointFile.encoderPrefix + k] = t }
        try SafeTensors.write(file, metadata: spec.metadata, to: dir + "/pretrained.safetensors")
        let detector = FasterRCNN(config: Self.bodyWithBatchNorm(depth: 18, classes: 2, representation: 16), generator: &g)
        let layer4Before = detector.backbone.body.stateDict()["layer4.0.conv1.weight"]?.array
        let (seeded, normalization) = try detector.loadBody(from: dir + "/pretrained.safetensors")
        XCTAssertEqual(seeded, ["layer4"])
        XCTAssertEqual(normalization, .crw)
        let body = detector.backbone.body.stateDict()
        for (k, t) in encoder.stateDict() { XCTAssertEqual(body[k]?.array, t.array, k) }
        XCTAssertEqual(body["layer4.0.conv1.weight"]?.array, layer4Before)

        let full = ResNet(config: ResNetConfig(depth: 18), generator: &g)
        try SafeTensors.write(full.stateDict(), to: dir + "/resnet18.safetensors")
        let (none, recorded) = try detector.loadBody(from: dir + "/resnet18.safetensors")
        XCTAssertEqual(none, [])
        XCTAssertNil(recorded)
        XCTAssertEqual(detector.backbone.body.stateDict()["layer4.1.conv2.weight"]?.array, full.stateDict()["layer4.1.conv2.weight"]?.array)
    }

    /// An encoder of another depth, or a file without encoder weights, is one error naming the file and key.
    func testBodyOfAnotherDepthIsOneErrorNamingTheKey() throws {
        let dir = temporaryDirectory("detect-body-bad")
        var g = RandomGenerator(seed: 4)
        try SafeTensors.write(ResNet(config: ResNetConfig(depth: 18), generator: &g).stateDict(), to: dir + "/r18.safetensors")
        let r50 = FasterRCNN(config: Self.bodyWithBatchNorm(depth: 50, classes: 2, representation: 16), initialize: false, generator: &g)
        XCTAssertThrowsError(try r50.loadBody(from: dir + "/r18.safetensors")) {
            XCTAssertTrue("\($0)".hasPrefix(dir + "/r18.safetensors: "), "\($0)")
            XCTAssertTrue("\($0)".contains("detector.depth"), "\($0)")
            XCTAssertFalse("\($0)".contains("\n"), "\($0)")
        }
        try SafeTensors.write(["x": Tensor.zeros([1])], to: dir + "/other.safetensors")
        XCTAssertThrowsError(try r50.loadBody(from: dir + "/other.safetensors")) {
            XCTAssertTrue("\($0)".contains("no encoder weights"), "\($0)")
        }
    }
}
