import Foundation
import XCTest
@testable import CycleTimeDetection
import CycleTimeCore
import CycleTimeTraining
import TestSupport

final class AVABankTests: XCTestCase {
    /// `ava bank` on the tiny run's 4 keyframes (one video, one proposal each): one file with
    /// seconds 0...3, each the RoI feature the detector pools for that keyframe's proposal; run
    /// again, the video is kept (not rewritten); an interrupted build (a temporary file only) is
    /// redone; the bank reads back through `FeatureBank`; an ACAR detector is refused.
    func testBankStoresEachKeyframesRoIFeaturesAndResumesByVideo() throws {
        let dir = temporaryDirectory("ava-bank")
        let cfg = try writeTinyAVARun(dir)
        let trainer = try makeAVATrainer(configPath: cfg, overrides: ["train.steps=2"]) { _ in }
        XCTAssertEqual(try trainer.train(resume: false), .finished(step: 2))
        let bank = dir + "/bank"
        let s = try runAVABank(configPath: cfg, overrides: ["train.steps=2"], checkpoint: nil, out: bank, split: .train,
                               report: { _ in }, progress: { _ in })
        XCTAssertEqual(s.written, [tinyAVAClip])
        XCTAssertEqual(s.keyframes, 4)
        XCTAssertEqual(s.features, 4)
        let store = FeatureBankStore(root: bank)
        let seconds = try store.read(video: tinyAVAClip, channels: s.channels)
        XCTAssertEqual(seconds.keys.sorted(), [0, 1, 2, 3])
        XCTAssertTrue(seconds.values.allSatisfy { $0.shape == [1, s.channels] })

        // The stored feature of second 2 is the detector's RoI feature of that keyframe's proposal.
        let config = try ConfigLoader.load(AVAConfig.self, path: cfg, overrides: ["train.steps=2"])
        let inputs = try AVAInputs(config: config, file: cfg)
        let (det, _) = try inputs.trainedDetector(checkpoint: nil)
        let data = try inputs.testDataset(report: { _ in })
        let i = try XCTUnwrap(data.entries.firstIndex { $0.key.timestamp == 2 })
        let b = try data.sample(i, seed: 0)
        let f = try XCTUnwrap(noGrad { det.roiFeatures(b.clips, boxes: b.boxes) })
        assertClose(try XCTUnwrap(seconds[2]), f, rtol: 1e-5, atol: 1e-6)

        let path = store.path(tinyAVAClip)
        let before = try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date
        let again = try runAVABank(configPath: cfg, overrides: ["train.steps=2"], checkpoint: nil, out: bank, split: .train,
                                   report: { _ in }, progress: { _ in })
        XCTAssertEqual(again.written, [])
        XCTAssertEqual(again.skipped, [tinyAVAClip])
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date, before)
        // An interrupted build left only a temporary file: the video is built again.
        try FileManager.default.removeItem(atPath: path)
        try Data([0, 1]).write(to: URL(fileURLWithPath: AtomicFile.temporaryPath(for: path)))
        XCTAssertEqual(try runAVABank(configPath: cfg, overrides: ["train.steps=2"], checkpoint: nil, out: bank, split: .train,
                                      report: { _ in }, progress: { _ in }).written, [tinyAVAClip])
        // A video in two splits: the training keyframes of seconds 0-1 first, then the test split (all
        // four) adds seconds 2 and 3 to the same file, keeping 0 and 1 as they were.
        let half = dir + "/half.csv"
        try String(try String(contentsOfFile: dir + "/gt.csv", encoding: .utf8).split(separator: "\n").prefix(2).joined(separator: "\n") + "\n")
            .write(toFile: half, atomically: true, encoding: .utf8)
        let two = dir + "/bank2"
        let a = try runAVABank(configPath: cfg, overrides: ["train.steps=2", "data.annotations=\(half)", "test.annotations=\(dir)/gt.csv"],
                               checkpoint: nil, out: two, split: .train, report: { _ in }, progress: { _ in })
        XCTAssertEqual(a.keyframes, 2)
        XCTAssertEqual(try FeatureBankStore(root: two).seconds(tinyAVAClip), [0, 1])
        let firstTwo = try FeatureBankStore(root: two).read(video: tinyAVAClip, channels: s.channels)
        let t = try runAVABank(configPath: cfg, overrides: ["train.steps=2", "data.annotations=\(half)", "test.annotations=\(dir)/gt.csv"],
                               checkpoint: nil, out: two, split: .test, report: { _ in }, progress: { _ in })
        XCTAssertEqual(t.keyframes, 2, "only the seconds the file lacks")
        let merged = try FeatureBankStore(root: two).read(video: tinyAVAClip, channels: s.channels)
        XCTAssertEqual(merged.keys.sorted(), [0, 1, 2, 3])
        for k in [0, 1] { XCTAssertEqual(try XCTUnwrap(merged[k]).array, try XCTUnwrap(firstTwo[k]).array) }

        var g = RandomGenerator(seed: 0)
        let w = try FeatureBank(store: store, channels: s.channels, windowSize: 4, maxPerSecond: 1).window(video: tinyAVAClip, timestamp: 2, generator: &g)
        XCTAssertEqual(Array(w.array[(2 * s.channels)..<(3 * s.channels)]), try XCTUnwrap(seconds[2]).array)

        XCTAssertThrowsError(try runAVABank(configPath: cfg, overrides: ["model.head=acar", "model.acar_reduce_dim=8", "model.acar_hidden_dim=8"],
                                            checkpoint: nil, out: bank, split: .train, report: { _ in }, progress: { _ in })) { e in
            XCTAssertTrue("\(e)".contains("field 'model.head'"), "\(e)")
            XCTAssertFalse("\(e)".contains("\n"), "\(e)")
        }
    }

    /// Training with the bank (`model.bank: non_local`, a 4-second window, 1 feature per second):
    /// the detector's classifier sees [RoI feature, FBO-NL output]; stopping after 2 steps and
    /// resuming gives exactly the weights of an uninterrupted 4-step run (the windows' draws come from
    /// the step's generator); `ava test` reads the bank too; a video without a bank file, a bad
    /// operator name or a missing folder is one line naming the field.
    func testTrainingWithTheBankResumesExactlyAndTestsAndMissingFilesAreNamed() throws {
        let dir = temporaryDirectory("ava-bank-train")
        let cfg = try writeTinyAVARun(dir)
        XCTAssertEqual(try makeAVATrainer(configPath: cfg, overrides: ["train.steps=2"]) { _ in }.train(resume: false), .finished(step: 2))
        let bank = dir + "/bank"
        _ = try runAVABank(configPath: cfg, overrides: ["train.steps=2"], checkpoint: nil, out: bank, split: .train, report: { _ in }, progress: { _ in })
        let set = ["model.bank=non_local", "model.bank_path=\(bank)", "model.bank_window=4", "model.bank_per_second=1", "model.bank_latent=8"]
        let full = try makeAVATrainer(configPath: cfg, overrides: set + ["output_dir=\(dir)/full"]) { _ in }
        let head = try XCTUnwrap(full.task.detector.bank_head)
        XCTAssertEqual(full.task.detector.roi_head?.fc_cls.weight.shape[1], full.task.detector.featureChannels + 8)
        XCTAssertTrue(full.task.detector.namedParameters().contains { $0.0 == "bank_head.fbo.non_local_layer_2.out_conv.conv.weight" })
        XCTAssertNotNil(head.fbo)
        XCTAssertEqual(try full.train(resume: false), .finished(step: 4))
        let first = try makeAVATrainer(configPath: cfg, overrides: set + ["output_dir=\(dir)/split"]) { _ in }
        XCTAssertEqual(try first.train(resume: false, stopAfter: 2), .interrupted(step: 2))
        let second = try makeAVATrainer(configPath: cfg, overrides: set + ["output_dir=\(dir)/split"]) { _ in }
        XCTAssertEqual(try second.train(resume: true), .finished(step: 4))
        let wa = full.task.detector.stateDict(), wb = second.task.detector.stateDict()
        for (k, v) in wa { assertClose(try XCTUnwrap(wb[k]), v, rtol: 0, atol: 0, k) }
        let t = try runAVATest(configPath: cfg, overrides: set + ["output_dir=\(dir)/full"], checkpoint: nil, out: dir + "/results.csv",
                               report: { _ in }, progress: { _ in })
        XCTAssertEqual(t.keyframes, 4)
        XCTAssertGreaterThan(t.rows, 0)

        try FileManager.default.createDirectory(atPath: dir + "/empty-bank", withIntermediateDirectories: true)
        for (extra, field, text) in [(["model.bank_path=\(dir)/empty-bank"], "model.bank_path", "no bank file for video '\(tinyAVAClip)'"),
                                     (["model.bank=lstm"], "model.bank", "is not none, non_local, avg or max"),
                                     (["model.bank_path=\(dir)/nowhere"], "model.bank_path", "is not a folder"),
                                     (["model.context=true"], "model.bank", "linear")] {
            XCTAssertThrowsError(try makeAVATrainer(configPath: cfg, overrides: set + extra + ["output_dir=\(dir)/bad"]) { _ in }) { e in
                XCTAssertTrue("\(e)".contains("field '\(field)'") && "\(e)".contains(text), "\(e)")
                XCTAssertFalse("\(e)".contains("\n"), "\(e)")
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad"))
    }
}
