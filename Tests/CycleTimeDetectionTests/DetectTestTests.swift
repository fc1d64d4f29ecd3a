import Foundation
import XCTest
@testable import CycleTimeDetection
import CycleTimeCore
import CycleTimeNN
import CycleTimeModels
import CycleTimeTraining
import CycleTimeVideo
import TestSupport

final class DetectTestTests: XCTestCase {
    /// A small torchvision-layout detector (ResNet-18 body, 2 classes: background and person).
    static func personDetector(_ dir: String) throws -> String {
        var g = RandomGenerator(seed: 11)
        let model = FasterRCNN(config: DetectImageTests.bodyWithBatchNorm(depth: 18, classes: 2, representation: 32), generator: &g)
        let path = dir + "/detector.safetensors"
        try model.save(to: path)
        return path
    }

    static func run(_ config: String, out: String, checkpoint: String? = nil) throws -> DetectTestSummary {
        try runDetectTest(configPath: config, checkpoint: checkpoint, out: out, report: { _ in }, progress: { _ in })
    }

    /// The proposal file holds, per non-excluded keyframe, the person boxes the detector finds on the
    /// keyframe's image read directly (normalized to it), the CSV the same boxes; the AP printed is
    /// the evaluator's on what was written against the CSV's distinct boxes.
    func testProposalsAreTheDetectorsPersonBoxesAndAPIsTheirs() throws {
        let dir = temporaryDirectory("detect-test")
        let detector = try Self.personDetector(dir)
        let config = try writeTinyDetectRun(dir, detector: detector)
        let s = try Self.run(config, out: dir + "/p.json")
        XCTAssertEqual(s.keyframes, 3)
        let written = try AVAProposals.read(dir + "/p.json")
        XCTAssertEqual(written.boxes.keys.sorted(), (0..<3).map { AVAKey(tinyAVAClip, $0) })
        XCTAssertEqual(written.boxes.values.reduce(0) { $0 + $1.count }, s.boxes)
        XCTAssertGreaterThan(s.boxes, 0)

        var transform = RCNNTransform()
        transform.minSize = 96
        transform.maxSize = 160
        var settings = BoxHeadSettings()
        settings.scoreThreshold = 0.05
        let model = try FasterRCNN.load(detector, transform: transform, boxes: settings)
        let frames = try requireSharedData("jhmdb-mini") + "/Frames/catch/" + tinyAVAClip
        for t in 0..<3 {
            let image = try Image.read(frames + String(format: "/%05d.png", 10 * t + 1))
            let d = model.detect([image.tensor()])[0].detections
            let got = try XCTUnwrap(written.boxes[AVAKey(tinyAVAClip, t)])
            XCTAssertEqual(got.count, d.scores.count)
            for (i, b) in got.enumerated() {
                let ref = d.boxes.array[(4 * i)..<(4 * i + 4)].map(Double.init)
                let want = [ref[0] / 320, ref[1] / 240, ref[2] / 320, ref[3] / 240].map { min(max($0, 0), 1) }
                for (a, e) in zip([b.box.x1, b.box.y1, b.box.x2, b.box.y2], want) { XCTAssertEqual(a, e, accuracy: 5e-7) }
                XCTAssertEqual(b.score, Double(d.scores[i]), accuracy: 5e-7)
            }
        }
        let gt = try personGroundTruth(try AVACSV.read(dir + "/gt.csv"), excluded: [AVAKey(tinyAVAClip, 3)])
        XCTAssertEqual(gt.values.map(\.count), [1, 1, 1])
        let ap = try XCTUnwrap(s.personAP)
        XCTAssertEqual(ap.groundTruth, 3)
        XCTAssertEqual(ap.ap, try XCTUnwrap(evaluatePersonAP(groundTruth: gt, detections: written.boxes)).ap, accuracy: 1e-12)

        _ = try Self.run(config, out: dir + "/p.csv")
        XCTAssertEqual(try AVAProposals.read(dir + "/p.csv").boxes, written.boxes)
    }

    /// A box without width, an unreadable frame, a checkpoint of another architecture, a person
    /// label the detector lacks: one error naming the file (and line / field); nothing written.
    func testBadInputNamesTheFileAndWritesNothing() throws {
        let dir = temporaryDirectory("detect-test-bad")
        let detector = try Self.personDetector(dir)
        let out = dir + "/p.json"
        func expect(_ config: String, checkpoint: String? = nil, _ parts: [String], line: UInt = #line) {
            XCTAssertThrowsError(try Self.run(config, out: out, checkpoint: checkpoint), line: line) { e in
                for p in parts { XCTAssertTrue("\(e)".contains(p), "'\(e)' lacks '\(p)'", line: line) }
                XCTAssertFalse("\(e)".contains("\n"), "\(e)", line: line)
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), line: line)
        }
        let rows = "\(tinyAVAClip),0000,0.2,0.2,0.6,0.8,11,0\n\(tinyAVAClip),0001,0.5,0.3,0.5,0.8,11,0\n"
        let zeroWidth = try writeTinyDetectRun(temporaryDirectory("zero-width"), detector: detector, gtRows: rows)
        expect(zeroWidth, ["gt.csv:2", "field x2"])

        let frames = temporaryDirectory("frames")
        let clip = frames + "/" + tinyAVAClip
        try FileManager.default.createDirectory(atPath: clip, withIntermediateDirectories: true)
        let shared = try requireSharedData("jhmdb-mini") + "/Frames/catch/" + tinyAVAClip
        for n in 1...40 { try FileManager.default.copyItem(atPath: shared + String(format: "/%05d.png", n), toPath: clip + String(format: "/%05d.png", n)) }
        try Data("not a png".utf8).write(to: URL(fileURLWithPath: clip + "/00011.png"))
        let broken = try writeTinyDetectRun(temporaryDirectory("broken-frame"), detector: detector, frames: frames)
        expect(broken, [clip + "/00011.png"])

        let good = try writeTinyDetectRun(temporaryDirectory("good"), detector: detector)
        var g = RandomGenerator(seed: 1)
        let classifier = dir + "/resnet.safetensors"
        try ResNet(config: ResNetConfig(depth: 18), generator: &g).save(to: classifier)
        expect(good, checkpoint: classifier, [classifier, "roi_heads.box_predictor.cls_score.weight"])
        let label = dir + "/label.yaml"
        try (try String(contentsOfFile: good, encoding: .utf8).replacingOccurrences(of: "  depth: 18", with: "  depth: 18\n  person_label: 2")).write(toFile: label, atomically: true, encoding: .utf8)
        expect(label, [label, "detector.person_label"])
    }

    /// `detect train` from the seed: 2 steps with a checkpoint after each; a run stopped after one
    /// and resumed ends with the weights of the uninterrupted one, bit for bit; the checkpoint
    /// loads as a detector for `detect test`.
    func testTrainTwoStepsAndResumeExactly() throws {
        let a = temporaryDirectory("detect-train-a"), b = temporaryDirectory("detect-train-b")
        let set: [String] = []
        let full = try makeDetectTrainer(configPath: try writeTinyDetectRun(a, detector: ""), overrides: set) { _ in }
        XCTAssertEqual(try full.train(resume: false), .finished(step: 2))
        let cfgB = try writeTinyDetectRun(b, detector: "")
        XCTAssertEqual(try makeDetectTrainer(configPath: cfgB, overrides: set) { _ in }.train(resume: false, stopAfter: 1), .interrupted(step: 1))
        let second = try makeDetectTrainer(configPath: cfgB, overrides: set) { _ in }
        XCTAssertEqual(try second.train(resume: true), .finished(step: 2))
        let wa = full.task.detector.stateDict(), wb = second.task.detector.stateDict()
        XCTAssertEqual(Set(wa.keys), Set(wb.keys))
        for (k, v) in wa { assertClose(try XCTUnwrap(wb[k]), v, rtol: 0, atol: 0, k) }
        let metrics = try String(contentsOfFile: a + "/run/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(metrics.contains("loss_objectness") && metrics.contains("loss_box_reg"), metrics)
        let s = try Self.run(cfgB, out: b + "/p.json", checkpoint: b + "/run/checkpoints/latest.safetensors")
        XCTAssertEqual(s.keyframes, 3)
    }

    /// detect train from a CycleTime encoder (ResNet-18 to layer3): the body starts from it with
    /// frozen batch norm and torchvision's default of 3 trainable stages, layer4 is named as seeded,
    /// checkpoints record the normalization, and an encoder trained with another normalization than
    /// data.mean / data.std is one error naming them, before any run directory is made.
    func testTrainFromAnEncoderStartsTheBodyFromItAndChecksItsNormalization() throws {
        let dir = temporaryDirectory("detect-train-encoder")
        var g = RandomGenerator(seed: 9)
        let encoder = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer3"), generator: &g)
        func save(_ n: Normalization, _ name: String) throws -> String {
            var file: [String: Tensor] = [:]
            for (k, t) in encoder.stateDict() { file[CheckpointFile.encoderPrefix + k] = t }
            let spec = EncoderSpec(arch: "resnet18", lastStage: "layer3", strides: [1, 2, 2, 2], padding: .zeros, normalization: n)
            try SafeTensors.write(file, metadata: spec.metadata, to: dir + "/" + name)
            return dir + "/" + name
        }
        let imagenet = try save(.imagenet, "imagenet.safetensors"), crw = try save(.crw, "crw.safetensors")
        let cfg = try writeTinyDetectRun(dir, detector: "")
        var lines: [String] = []
        let trainer = try makeDetectTrainer(configPath: cfg, overrides: ["detector.backbone=" + imagenet]) { lines.append($0) }
        XCTAssertEqual(lines.filter { $0.contains("has no layer4; it keeps the seed's initialization") }.count, 1, "\(lines)")
        let body = trainer.task.detector.backbone.body
        XCTAssertEqual(body.stateDict()["layer2.1.conv2.weight"]?.array, encoder.stateDict()["layer2.1.conv2.weight"]?.array)
        let trainable = Set(body.namedParameters().filter(\.1.requiresGrad).map { String($0.0.prefix { $0 != "." }) })
        XCTAssertEqual(trainable, ["layer2", "layer3", "layer4"])
        XCTAssertFalse(body.namedParameters().contains { $0.0.contains("bn") && $0.1.requiresGrad })
        XCTAssertEqual(try trainer.train(resume: false), .finished(step: 2))
        let saved = try CheckpointFile(dir + "/run/checkpoints/latest.safetensors")
        XCTAssertEqual(saved.metadata[FasterRCNN.normalizationKey], Normalization.imagenet.description)

        let other = temporaryDirectory("detect-train-encoder-crw")
        let cfg2 = try writeTinyDetectRun(other, detector: "")
        XCTAssertThrowsError(try makeDetectTrainer(configPath: cfg2, overrides: ["detector.backbone=" + crw]) { _ in }) {
            XCTAssertTrue("\($0)".hasPrefix(cfg2 + ": field 'data.mean' / 'data.std'"), "\($0)")
            XCTAssertFalse("\($0)".contains("\n"))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: other + "/run"))
        XCTAssertThrowsError(try makeDetectTrainer(configPath: cfg2, overrides: ["detector.backbone=" + imagenet, "detector.checkpoint=" + imagenet]) { _ in }) {
            XCTAssertTrue("\($0)".contains("detector.backbone"), "\($0)")
        }
    }

    /// Every committed person-detector experiment reads and validates as a detect config, and its
    /// annotation files exist (relative to the repository).
    func testEveryDetectExperimentConfigLoadsAndValidates() throws {
        let dir = repoRoot + "/experiments"
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("detect-") && $0.hasSuffix(".yaml") }.sorted()
        XCTAssertEqual(names, ["detect-r18-mini.yaml"])
        for n in names {
            let text = try String(contentsOfFile: dir + "/" + n, encoding: .utf8)
            XCTAssertTrue(text.hasPrefix("# "), "\(n) starts with a comment saying what it is for")
            let c = try ConfigLoader.load(DetectConfig.self, path: dir + "/" + n)
            XCTAssertNoThrow(try c.validate(file: n), n)
            for f in [c.data.annotations, c.testAnnotations] { XCTAssertTrue(FileManager.default.fileExists(atPath: repoRoot + "/" + f), "\(n): \(f)") }
        }
    }
}
