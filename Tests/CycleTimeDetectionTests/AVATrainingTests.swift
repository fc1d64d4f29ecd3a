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
        XCTAssertEqual(t.task.detector.roi_head!.fc_cls.weight.shape[0], 2)
        XCTAssertEqual(t.task.source.count, 2)
        XCTAssertEqual(t.task.classes.ids, [12])
        let all = try makeAVATrainer(configPath: try writeTinyRun(temporaryDirectory("ava-all"))) { _ in }
        XCTAssertEqual(all.task.detector.roi_head!.fc_cls.weight.shape[0], 4)
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

    /// A 4-step run with `set` and one stopped after 2 steps and resumed end with the same weights,
    /// bit for bit, `key` among them; returns the second run's config.
    func assertResumesExactly(_ set: [String], name: String, key: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let a = temporaryDirectory(name + "-a"), b = temporaryDirectory(name + "-b")
        let full = try makeAVATrainer(configPath: try writeTinyRun(a), overrides: set) { _ in }
        XCTAssertEqual(try full.train(resume: false), .finished(step: 4), file: file, line: line)
        let cfgB = try writeTinyRun(b)
        XCTAssertEqual(try makeAVATrainer(configPath: cfgB, overrides: set) { _ in }.train(resume: false, stopAfter: 2), .interrupted(step: 2), file: file, line: line)
        let second = try makeAVATrainer(configPath: cfgB, overrides: set) { _ in }
        XCTAssertEqual(try second.train(resume: true), .finished(step: 4), file: file, line: line)
        let wa = full.task.detector.stateDict(), wb = second.task.detector.stateDict()
        XCTAssertTrue(wa.keys.contains(key), key, file: file, line: line)
        XCTAssertEqual(Set(wa.keys), Set(wb.keys), file: file, line: line)
        for (k, v) in wa { assertClose(wb[k]!, v, rtol: 0, atol: 0, k, file: file, line: line) }
        return cfgB
    }

    /// model.head acrn trains through the same trainer, and a run stopped and resumed ends with
    /// the weights of an uninterrupted one, bit for bit (the relation head's batch norms included).
    func testACRNHeadTrainsAndResumesExactly() throws {
        let cfgB = try assertResumesExactly(["model.head=acrn", "model.acrn_channels=32", "model.acrn_convs=2"], name: "acrn",
                                            key: "roi_head.shared_head.convs.0.bn.running_mean")
        XCTAssertThrowsError(try makeAVATrainer(configPath: cfgB, overrides: ["model.head=acrn", "model.context=true"]) { _ in }) {
            XCTAssertTrue("\($0)".contains("model.context"), "\($0)")
        }
        XCTAssertThrowsError(try makeAVATrainer(configPath: cfgB, overrides: ["model.head=relation"]) { _ in }) {
            XCTAssertTrue("\($0)".contains("model.head"), "\($0)")
        }
    }

    /// model.head acar trains through the same trainer; with its dropouts on (model.dropout before
    /// fc2, HR2O's 0.2), a run stopped and resumed ends with the weights of an uninterrupted one,
    /// bit for bit (every dropout draws from the step's generator). Bad head and loss settings are
    /// errors naming the key.
    func testACARHeadTrainsAndResumesExactly() throws {
        let cfgB = try assertResumesExactly(["model.head=acar", "model.acar_reduce_dim=16", "model.acar_hidden_dim=8", "model.roi_size=3", "model.dropout=0.3"],
                                            name: "acar", key: "acar_head.hr2o.1.norm.weight")
        for (overrides, key) in [(["model.head=relation"], "field 'model.head'"), (["model.loss=softmax"], "field 'model.loss'"),
                                 (["model.head=acar", "model.context=true"], "field 'model.context'"),
                                 (["model.acar_downsample=avg"], "field 'model.acar_downsample'"), (["model.acar_kernel_size=2"], "field 'model.acar_kernel_size'"),
                                 (["model.loss=ava_pose_softmax"], "field 'model.loss': ava_pose_softmax is a softmax over AVA's pose classes"),
                                 (["model.loss=ava_pose_softmax", "model.focal=true"], "field 'model.focal'"),
                                 (["model.head=acar", "model.last_stage=layer4", "model.strides=[1, 2, 2, 2]"], "field 'data.train_crop' (48) gives a 1-cell feature map at stride 32")] {
            XCTAssertThrowsError(try makeAVATrainer(configPath: cfgB, overrides: overrides) { _ in }) {
                XCTAssertTrue("\($0)".contains(key) && !"\($0)".contains("\n"), "\(overrides): \($0)")
            }
        }
    }

    /// model.loss ava_pose_softmax with AVA's label map (classes 1-14 are poses): the run trains,
    /// and `ava test` scores the pose classes of every box by a softmax (they sum to 1), the
    /// others by a sigmoid.
    func testPoseSoftmaxTrainsAndTestScoresArePoseSoftmax() throws {
        let dir = temporaryDirectory("ava-pose")
        let cfg = try writeTinyRun(dir)
        try (1...16).map { "\($0): action \($0)" }.joined(separator: "\n").write(toFile: dir + "/ava-labels.txt", atomically: true, encoding: .utf8)
        let set = ["data.labelmap=\(dir)/ava-labels.txt", "model.loss=ava_pose_softmax", "train.steps=2", "test.score_threshold=0"]
        let t = try makeAVATrainer(configPath: cfg, overrides: set) { _ in }
        XCTAssertEqual(try t.train(resume: false), .finished(step: 2))
        let s = try runAVATest(configPath: cfg, overrides: set, checkpoint: nil, out: dir + "/results.csv", report: { _ in }, progress: { _ in })
        XCTAssertEqual(s.keyframes, 4)
        let rows = try AVACSV.read(dir + "/results.csv", scoreColumn: true).rows
        XCTAssertEqual(rows.count, 4 * 16)
        for key in Set(rows.map(\.key)) {
            let pose = rows.filter { $0.key == key && $0.actionID <= 14 }.compactMap(\.extra).reduce(0, +)
            XCTAssertEqual(pose, 1, accuracy: 14 * 1e-4, "\(key): pose scores (4 decimals) sum to 1")
        }
    }

    /// Every committed AVA experiment reads and validates as an AVA config, and its files exist
    /// (relative to the repository, the shared data next to it; a feature bank is built by a run
    /// first, so its folder is checked when a run starts, not here).
    func testEveryAVAExperimentConfigLoadsAndValidates() throws {
        let dir = repoRoot + "/experiments"
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("ava-") && $0.hasSuffix(".yaml") }.sorted()
        XCTAssertEqual(names, ["ava-r18-2d-acar-mini.yaml", "ava-r18-2d-acrn-mini.yaml", "ava-r18-2d-lfb-mini.yaml", "ava-r18-2d-mini.yaml",
                               "ava-r18-slowfast-mini.yaml", "ava-r18-slowonly-mini.yaml"])
        for n in names {
            let text = try String(contentsOfFile: dir + "/" + n, encoding: .utf8)
            XCTAssertTrue(text.hasPrefix("# "), "\(n) starts with a comment saying what it is for")
            let c = try ConfigLoader.load(AVAConfig.self, path: dir + "/" + n)
            XCTAssertNoThrow(try c.validate(file: n), n)
            for f in [c.data.annotations, c.data.labelmap, c.data.proposals] { XCTAssertTrue(FileManager.default.fileExists(atPath: repoRoot + "/" + f), "\(n): \(f)") }
        }
    }
}
