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
        var g = RandomGenerator(seed: 0)
        let w = try FeatureBank(store: store, channels: s.channels, windowSize: 4, maxPerSecond: 1).window(video: tinyAVAClip, timestamp: 2, generator: &g)
        XCTAssertEqual(Array(w.array[(2 * s.channels)..<(3 * s.channels)]), try XCTUnwrap(seconds[2]).array)

        XCTAssertThrowsError(try runAVABank(configPath: cfg, overrides: ["model.head=acar", "model.acar_reduce_dim=8", "model.acar_hidden_dim=8"],
                                            checkpoint: nil, out: bank, split: .train, report: { _ in }, progress: { _ in })) { e in
            XCTAssertTrue("\(e)".contains("field 'model.head'"), "\(e)")
            XCTAssertFalse("\(e)".contains("\n"), "\(e)")
        }
    }
}
