import CycleTimeCore
import CycleTimeModels
import CycleTimePropagation
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest
@testable import CycleTimeTraining
@testable import CycleTimePretraining

/// Validation during training (`eval:`): DAVIS propagation with the current encoder every N steps.
final class ValidationTests: XCTestCase {
    /// Two steps between validations on the first 3 frames of one davis-mini sequence, squashed to
    /// 192 x 192 before the encoder (the masks are scored at full size). metrics.jsonl holds 7
    /// significant digits.
    func evalSection(_ davis: String, every: Int = 2) -> String {
        """
        eval:
          every_steps: \(every)
          davis_root: \(davis)
          sequences: [blackswan]
          max_frames: 3
          square_size: 192
        """
    }

    func trainer(_ config: String) throws -> Trainer<TimeCycleTask> {
        let t = try makeTimeCycleTrainer(configPath: config)
        t.warn = { _ in }
        return t
    }

    func rows(_ run: String) throws -> [[String: Any]] {
        try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    /// The validation rows: step -> (val_jf, val_j, val_f).
    func validations(_ run: String) throws -> [Int: [Double]] {
        var out: [Int: [Double]] = [:]
        for r in try rows(run) {
            guard let s = r["step"] as? Int, let jf = r["val_jf"] as? Double, let j = r["val_j"] as? Double, let f = r["val_f"] as? Double else { continue }
            out[s] = [jf, j, f]
        }
        return out
    }

    func testValidationOnOrOffGivesIdenticalWeightsAndLogsScoresEveryNSteps() throws {
        let davis = try requireSharedData("davis-mini")
        let dir = temporaryDirectory("validation-on-off")
        let off = try trainer(try writeTinyConfig(dir, output: dir + "/off", steps: 3))
        XCTAssertEqual(try off.train(resume: false), .finished(step: 3))
        try FileManager.default.createDirectory(atPath: dir + "/on-config", withIntermediateDirectories: true)
        let on = try trainer(try writeTinyConfig(dir + "/on-config", output: dir + "/on", steps: 3, extra: evalSection(davis)))
        XCTAssertEqual(on.validators.count, 1)
        XCTAssertEqual(try on.train(resume: false), .finished(step: 3))

        let wOff = off.task.model.stateDict(), wOn = on.task.model.stateDict()
        XCTAssertEqual(Set(wOff.keys), Set(wOn.keys))
        for (k, t) in wOff {
            XCTAssertEqual(try XCTUnwrap(wOn[k]).array, t.array, "\(k): validation changed the trained weights or buffers")
        }
        // Scores after step 2 and after the last step (3), in [0, 1], J&F their mean.
        let v = try validations(dir + "/on")
        XCTAssertEqual(v.keys.sorted(), [2, 3])
        for (_, s) in v {
            XCTAssertTrue(s.allSatisfy { $0 >= 0 && $0 <= 1 }, "\(s)")
            XCTAssertEqual(s[0], (s[1] + s[2]) / 2, accuracy: 1e-6)
        }
        XCTAssertTrue(try rows(dir + "/off").allSatisfy { $0["val_jf"] == nil })
        XCTAssertTrue(try rows(dir + "/on").filter { $0["val_jf"] != nil }.allSatisfy { ($0["val_s"] as? Double ?? -1) > 0 })
        // The latest validation's masks stay in the run, scorable by `eval davis` with the same restriction.
        let again = try DAVISEvaluation.evaluate(davisRoot: davis, results: dir + "/on/val/masks", sequences: ["blackswan"], maxFrames: 3)
        XCTAssertEqual(again.summary.jfMean, try XCTUnwrap(v[3])[0], accuracy: 1e-6)
        // TensorBoard gets, at each validation, the sequence's middle propagated frame drawn on the
        // frame (854 x 480), a PNG that decodes.
        var pictures: [Int] = []
        for file in EventFileWriter.files(in: dir + "/on") {
            for e in try EventFileWriter.read(file) {
                for value in e.values where value.tag == "val/blackswan" {
                    guard case .image(let w, let h, _, let png) = value.content else { XCTFail("not an image"); continue }
                    XCTAssertEqual([w, h], [854, 480])
                    let path = dir + "/picture.png"
                    try png.write(to: URL(fileURLWithPath: path))
                    XCTAssertEqual(try Image.readPNG(path).width, 854)
                    pictures.append(e.step)
                }
            }
        }
        XCTAssertEqual(pictures, [2, 3])
        let log = try String(contentsOfFile: dir + "/on/train.log", encoding: .utf8)
        XCTAssertTrue(log.contains("validation at step 2: DAVIS J&F"), log)
    }

    func testAResumedRunRepeatsTheValidationRowsOfAnUninterruptedOne() throws {
        let davis = try requireSharedData("davis-mini")
        let dir = temporaryDirectory("validation-resume")
        let straight = try trainer(try writeTinyConfig(dir, output: dir + "/straight", steps: 3, extra: evalSection(davis)))
        XCTAssertEqual(try straight.train(resume: false), .finished(step: 3))
        try FileManager.default.createDirectory(atPath: dir + "/split-config", withIntermediateDirectories: true)
        let cfg = try writeTinyConfig(dir + "/split-config", output: dir + "/split", steps: 3, extra: evalSection(davis))
        XCTAssertEqual(try trainer(cfg).train(resume: false, stopAfter: 2), .interrupted(step: 2))
        XCTAssertEqual(try trainer(cfg).train(resume: true), .finished(step: 3))
        let a = try validations(dir + "/straight"), b = try validations(dir + "/split")
        XCTAssertEqual(a.keys.sorted(), [2, 3])
        XCTAssertEqual(b.keys.sorted(), [2, 3], "each validation once, none lost or repeated by the resume")
        // The resumed weights equal the uninterrupted run's to float rounding (TrainerTests); the
        // scores are then those of the same masks.
        for (s, x) in a { for (p, q) in zip(x, try XCTUnwrap(b[s])) { XCTAssertEqual(p, q, accuracy: 1e-3, "step \(s)") } }
    }

    /// eval.save_best (default on): checkpoints/best.safetensors holds the weights of the step with
    /// the highest val_jf (the first, on a tie), with its field and value in the metadata; a run
    /// interrupted and resumed keeps the same best; save_best false writes none.
    func testBestCheckpointHoldsTheWeightsOfTheBestValidationAcrossAResume() throws {
        let davis = try requireSharedData("davis-mini")
        let dir = temporaryDirectory("validation-best")
        func config(_ name: String, _ extra: String = "") throws -> String {
            try FileManager.default.createDirectory(atPath: dir + "/\(name)-config", withIntermediateDirectories: true)
            return try writeTinyConfig(dir + "/\(name)-config", output: dir + "/\(name)", steps: 3, extra: evalSection(davis, every: 1) + "\n" + extra)
        }
        XCTAssertEqual(try trainer(try config("straight")).train(resume: false), .finished(step: 3))
        let v = try validations(dir + "/straight")
        XCTAssertEqual(v.keys.sorted(), [1, 2, 3])
        let top = try XCTUnwrap(v.values.map { $0[0] }.max())
        let bestStep = try XCTUnwrap(v.keys.sorted().first { v[$0]?[0] == top })
        let best = try CheckpointFile(dir + "/straight/checkpoints/best.safetensors")
        XCTAssertEqual(best.metadata["step"], String(bestStep))
        XCTAssertEqual(best.metadata["best_field"], "val_jf")
        XCTAssertEqual(try XCTUnwrap(Double(best.metadata["best_value"] ?? "")), top, accuracy: 1e-6)
        // The same run stopped after that step: its latest checkpoint is the best one's weights.
        let cfg = try config("until-best")
        _ = try trainer(cfg).train(resume: false, stopAfter: bestStep)
        let then = try CheckpointFile(dir + "/until-best/checkpoints/latest.safetensors")
        XCTAssertEqual(Set(then.modelState.keys), Set(best.modelState.keys))
        for (k, t) in then.modelState { XCTAssertEqual(try XCTUnwrap(best.modelState[k]).array, t.array, k) }
        // Interrupted after step 1 and resumed: the same best step and value.
        let split = try config("split")
        XCTAssertEqual(try trainer(split).train(resume: false, stopAfter: 1), .interrupted(step: 1))
        XCTAssertEqual(try trainer(split).train(resume: true), .finished(step: 3))
        let resumed = try CheckpointFile(dir + "/split/checkpoints/best.safetensors")
        XCTAssertEqual(resumed.metadata["step"], String(bestStep))
        XCTAssertEqual(try XCTUnwrap(Double(resumed.metadata["best_value"] ?? "")), top, accuracy: 1e-3)
        // Off: no best checkpoint.
        XCTAssertEqual(try trainer(try config("off", "  save_best: false\n")).train(resume: false), .finished(step: 3))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/off/checkpoints/best.safetensors"))
    }

    func testABadDAVISRootOrSequenceIsOneLineNamingTheFieldAndMakesNoRun() throws {
        let davis = try requireSharedData("davis-mini")
        let dir = temporaryDirectory("validation-bad")
        func section(root: String = davis, sequence: String = "blackswan", more: String = "") -> String {
            "eval:\n  every_steps: 2\n  davis_root: \(root)\n  sequences: [\(sequence)]\n" + more
        }
        for (extra, field) in [(section(root: dir + "/no-such-davis"), "eval.davis_root"),
                               (section(sequence: "no-such-sequence"), "eval.sequences"),
                               (section(more: "  procedure: walk\n"), "eval.procedure"),
                               (section(more: "  max_frames: 2\n"), "eval.max_frames"),
                               (section(more: "  strides: [1, 2]\n"), "eval.strides")] {
            let cfg = try writeTinyConfig(dir, output: dir + "/run", steps: 2, extra: extra)
            XCTAssertThrowsError(try makeTimeCycleTrainer(configPath: cfg)) { e in
                XCTAssertTrue("\(e)".contains("field '\(field)'"), "\(e)")
                XCTAssertFalse("\(e)".contains("\n"), "\(e)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run"), "no run directory for a bad config")
        }
    }
}
