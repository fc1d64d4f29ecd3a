import CycleTimeCore
import CycleTimeDetection
import CycleTimeTraining
import Foundation
import TestSupport
import XCTest

/// The AVA config and task on the trainer (in process).
final class AVATrainingTests: XCTestCase {
    static let clip = tinyAVAClip

    func writeTinyRun(_ dir: String, extra: String = "") throws -> String { try writeTinyAVARun(dir, extra: extra) }

    /// Defaults are mmaction2's AVA recipe; bad values are errors naming the field.
    func testConfigDefaultsAndErrors() throws {
        let c = AVAConfig()
        XCTAssertEqual(c.optimizer.name, "sgd")
        XCTAssertEqual(c.data.trainJitterScales, [256, 320])
        XCTAssertEqual(c.data.trainCrop, 256)
        XCTAssertEqual(c.data.testShortSide, 256)
        XCTAssertEqual(c.test.scoreThreshold, 0.002)
        XCTAssertEqual(c.model.focalAlpha, 3)
        XCTAssertEqual(c.model.focalGamma, 1)
        XCTAssertEqual(c.clipOptions.sampler, AVAClipSampler(frames: 8, interval: 8))
        let dir = temporaryDirectory("ava-config")
        let cfg = try writeTinyRun(dir)
        for (set, expected) in [("data.train_jitter_scales=[32, 64]", "field 'data.train_jitter_scales' must be [low, high] with train_crop <= low <= high"),
                                ("model.backbone=3d", "field 'model.backbone' '3d' is not 2d, slowonly or slowfast"),
                                ("data.frames_kind=zip", "field 'data.frames_kind'")] {
            let loaded = try ConfigLoader.load(AVAConfig.self, path: cfg, overrides: [set])
            XCTAssertThrowsError(try loaded.validate(file: cfg)) { e in XCTAssertTrue("\(e)".contains(expected), "\(e)") }
        }
        // train.precision as in pretraining configs (the loop section is shared).
        XCTAssertEqual(try ConfigLoader.load(AVAConfig.self, path: cfg, overrides: ["train.precision=bf16"]).train.precision, .bf16)
        XCTAssertThrowsError(try ConfigLoader.load(AVAConfig.self, path: cfg, overrides: ["train.precision=half"])) { e in
            XCTAssertTrue("\(e)".contains("field 'train.precision'"), "\(e)")
        }
        XCTAssertThrowsError(try makeAVATrainer(configPath: cfg, overrides: ["data.custom_classes=[12, 99]"]) { _ in }) { e in
            XCTAssertTrue("\(e)".contains("field 'data.custom_classes': class 99 is not in the label map"), "\(e)")
        }
    }

    /// Custom classes: outputs = subset + 1; keyframes whose boxes have no trained class are left out.
    func testCustomClasses() throws {
        let dir = temporaryDirectory("ava-custom")
        let t = try makeAVATrainer(configPath: try writeTinyRun(dir), overrides: ["data.custom_classes=[12]", "train.batch_size=1"]) { _ in }
        XCTAssertEqual(t.task.detector.roi_head.fc_cls.weight.shape[0], 2)
        XCTAssertEqual(t.task.source.count, 2)
        XCTAssertEqual(t.task.classes.ids, [12])
        let all = try makeAVATrainer(configPath: try writeTinyRun(temporaryDirectory("ava-all"))) { _ in }
        XCTAssertEqual(all.task.detector.roi_head.fc_cls.weight.shape[0], 4)
        XCTAssertEqual(all.task.source.count, 4)
    }

    /// Stopping after 2 steps and resuming gives exactly the weights of an uninterrupted 4-step run
    /// (data jitter, crops, flips and dropout all come from the seed); frozen BN and focal loss train.
    func testResumeIsExactAndFrozenBatchNormFocal() throws {
        let a = temporaryDirectory("ava-a"), b = temporaryDirectory("ava-b")
        let full = try makeAVATrainer(configPath: try writeTinyRun(a)) { _ in }
        XCTAssertEqual(try full.train(resume: false), .finished(step: 4))
        let cfgB = try writeTinyRun(b)
        let first = try makeAVATrainer(configPath: cfgB) { _ in }
        XCTAssertEqual(try first.train(resume: false, stopAfter: 2), .interrupted(step: 2))
        let second = try makeAVATrainer(configPath: cfgB) { _ in }
        XCTAssertEqual(try second.train(resume: true), .finished(step: 4))
        let wa = full.task.detector.stateDict(), wb = second.task.detector.stateDict()
        XCTAssertEqual(Set(wa.keys), Set(wb.keys))
        for (k, v) in wa { assertClose(wb[k]!, v, rtol: 0, atol: 0) }
        let cfgText = try String(contentsOfFile: b + "/run/config.yaml", encoding: .utf8)
        XCTAssertTrue(cfgText.contains("train_jitter_scales"), "config.yaml is the AVA config")

        let c = temporaryDirectory("ava-frozen")
        let frozen = try makeAVATrainer(configPath: try writeTinyRun(c), overrides: ["model.frozen_bn=true", "model.focal=true", "train.steps=2"]) { _ in }
        let before = frozen.task.detector.stateDict()["backbone.encoder.bn1.running_var"]!.clone()
        let bnWeight = frozen.task.detector.stateDict()["backbone.encoder.bn1.weight"]!.clone()
        XCTAssertEqual(try frozen.train(resume: false), .finished(step: 2))
        assertClose(frozen.task.detector.stateDict()["backbone.encoder.bn1.running_var"]!, before, rtol: 0, atol: 0)
        assertClose(frozen.task.detector.stateDict()["backbone.encoder.bn1.weight"]!, bnWeight, rtol: 0, atol: 0)
    }

    /// Every committed AVA experiment reads and validates as an AVA config, and its files exist
    /// (relative to the repository, the shared data next to it).
    /// model.head acrn trains through the same trainer, and a run stopped and resumed ends with
    /// the weights of an uninterrupted one, bit for bit (the relation head's batch norms included).
    func testACRNHeadTrainsAndResumesExactly() throws {
        let set = ["model.head=acrn", "model.acrn_channels=32", "model.acrn_convs=2"]
        let a = temporaryDirectory("acrn-a"), b = temporaryDirectory("acrn-b")
        let full = try makeAVATrainer(configPath: try writeTinyRun(a), overrides: set) { _ in }
        XCTAssertEqual(try full.train(resume: false), .finished(step: 4))
        let cfgB = try writeTinyRun(b)
        XCTAssertEqual(try makeAVATrainer(configPath: cfgB, overrides: set) { _ in }.train(resume: false, stopAfter: 2), .interrupted(step: 2))
        let second = try makeAVATrainer(configPath: cfgB, overrides: set) { _ in }
        XCTAssertEqual(try second.train(resume: true), .finished(step: 4))
        let wa = full.task.detector.stateDict(), wb = second.task.detector.stateDict()
        XCTAssertTrue(wa.keys.contains("roi_head.shared_head.convs.0.bn.running_mean"))
        XCTAssertEqual(Set(wa.keys), Set(wb.keys))
        for (k, v) in wa { assertClose(wb[k]!, v, rtol: 0, atol: 0, k) }
        XCTAssertThrowsError(try makeAVATrainer(configPath: cfgB, overrides: ["model.head=acrn", "model.context=true"]) { _ in }) {
            XCTAssertTrue("\($0)".contains("model.context"), "\($0)")
        }
        XCTAssertThrowsError(try makeAVATrainer(configPath: cfgB, overrides: ["model.head=relation"]) { _ in }) {
            XCTAssertTrue("\($0)".contains("model.head"), "\($0)")
        }
    }

    func testEveryAVAExperimentConfigLoadsAndValidates() throws {
        let dir = repoRoot + "/experiments"
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("ava-") && $0.hasSuffix(".yaml") }.sorted()
        XCTAssertEqual(names, ["ava-r18-2d-acrn-mini.yaml", "ava-r18-2d-mini.yaml", "ava-r18-slowfast-mini.yaml", "ava-r18-slowonly-mini.yaml"])
        for n in names {
            let text = try String(contentsOfFile: dir + "/" + n, encoding: .utf8)
            XCTAssertTrue(text.hasPrefix("# "), "\(n) starts with a comment saying what it is for")
            let c = try ConfigLoader.load(AVAConfig.self, path: dir + "/" + n)
            XCTAssertNoThrow(try c.validate(file: n), n)
            for f in [c.data.annotations, c.data.labelmap, c.data.proposals] { XCTAssertTrue(FileManager.default.fileExists(atPath: repoRoot + "/" + f), "\(n): \(f)") }
        }
    }
}
