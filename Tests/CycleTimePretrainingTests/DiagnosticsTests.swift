import CycleTimeCore
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest
@testable import CycleTimeTraining
@testable import CycleTimePretraining

/// Tracker diagnostics during training (`diagnostics:`): held-out clips of known motion cut from
/// the run's own videos, measured every N steps.
final class DiagnosticsTests: XCTestCase {
    func rows(_ run: String) throws -> [[String: Any]] {
        try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    /// The steps at which TensorBoard got a picture with `tag`, each decoding as a PNG of `side` x `side`.
    func pictureSteps(_ run: String, tag: String, side: Int) throws -> [Int] {
        var steps: [Int] = []
        for file in EventFileWriter.files(in: run) {
            for e in try EventFileWriter.read(file) {
                for value in e.values where value.tag == tag {
                    guard case .image(let w, let h, _, let png) = value.content else { XCTFail("not an image"); continue }
                    XCTAssertEqual([w, h], [side, side])
                    let path = run + "/picture.png"
                    try png.write(to: URL(fileURLWithPath: path))
                    XCTAssertEqual(try Image.readPNG(path).width, side)
                    steps.append(e.step)
                }
            }
        }
        return steps
    }

    /// Crop f of a clip is the frame's content moved by the clip's velocity times f's offset: the
    /// target crop's pixel q is frame f's pixel q + (T - f) v (TimeCycle's convention, d_t = v (T - t)),
    /// byte for byte; the normalized crops are those bytes through the normalization.
    func testHeldOutCropsMoveByTheirKnownVelocity() throws {
        let video = try requireSharedData("videos") + "/vtest.avi"
        let t = 4, side = 48
        let clips = try MotionClips.make(videos: [video], count: 2, positions: t + 1, side: side, maxShift: 3, offset: { $0 - t },
                                         mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], seed: 7)
        XCTAssertEqual(clips.frames.shape, [2, t + 1, 3, side, side])
        XCTAssertTrue(clips.velocities.allSatisfy { abs($0.0) <= 3 && abs($0.1) <= 3 })
        let v = clips.velocities[0], rgb = clips.firstClipRGB
        var compared = 0
        for f in 0..<t {
            let dx = (t - f) * v.0, dy = (t - f) * v.1
            for y in 0..<side where y + dy >= 0 && y + dy < side {
                for x in 0..<side where x + dx >= 0 && x + dx < side {
                    for c in 0..<3 {
                        XCTAssertEqual(rgb[f][((y + dy) * side + x + dx) * 3 + c], rgb[t][(y * side + x) * 3 + c])
                        compared += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(compared, 4 * 30 * 30 * 3)
        for f in [0, t] {
            for i in stride(from: 0, to: side * side, by: 97) {
                for c in 0..<3 {
                    let expected = (Float(rgb[f][i * 3 + c]) / 255 - 0.5) / 0.25
                    XCTAssertEqual(clips.frames.data[(f * 3 + c) * side * side + i], expected, accuracy: 1e-5)
                }
            }
        }
    }

    func diagnostics(every: Int) -> String { "diagnostics:\n  every_steps: \(every)\n  clips: 2\n  max_shift: 4\n" }

    /// TimeCycle: diagnostics on or off give bitwise the same weights and buffers; with them the rows
    /// of steps 2 and 3 (the last) hold the diagnostics within their bounds, and TensorBoard a heat
    /// map at each.
    func testTimeCycleDiagnosticsLeaveTrainingUnchangedAndLogEveryNSteps() throws {
        let dir = temporaryDirectory("diagnostics-timecycle")
        let off = try makeTimeCycleTrainer(configPath: try writeTinyConfig(dir, output: dir + "/off", steps: 3))
        off.warn = { _ in }
        XCTAssertEqual(try off.train(resume: false), .finished(step: 3))
        try FileManager.default.createDirectory(atPath: dir + "/on-config", withIntermediateDirectories: true)
        let on = try makeTimeCycleTrainer(configPath: try writeTinyConfig(dir + "/on-config", output: dir + "/on", steps: 3,
                                                                          extra: diagnostics(every: 2)))
        on.warn = { _ in }
        XCTAssertEqual(on.validators.count, 1)
        XCTAssertEqual(try on.train(resume: false), .finished(step: 3))
        let wOff = off.task.model.stateDict(), wOn = on.task.model.stateDict()
        for (k, t) in wOff { XCTAssertEqual(try XCTUnwrap(wOn[k]).array, t.array, "\(k): diagnostics changed the trained weights or buffers") }
        XCTAssertTrue(on.task.model.modules().allSatisfy(\.training), "the model is back in training mode")

        let diag = try rows(dir + "/on").filter { $0["diag_entropy"] != nil }
        XCTAssertEqual(diag.compactMap { $0["step"] as? Int }, [2, 3])
        for r in diag {
            func value(_ k: String) throws -> Double { try XCTUnwrap(r[k] as? Double, k) }
            // A 96 px frame is a 12 x 12 base grid: K = 144.
            XCTAssertEqual(try value("diag_entropy_uniform"), log(144), accuracy: 1e-5)
            XCTAssertGreaterThan(try value("diag_entropy"), 0)
            XCTAssertLessThanOrEqual(try value("diag_entropy"), log(144) + 1e-4)
            XCTAssertTrue((0...1).contains(try value("diag_argmax_1cell")))
            XCTAssertEqual(try value("diag_argmax_chance"), pow(34.0 / 144, 2), accuracy: 1e-6)
            for k in ["diag_direct", "diag_skip", "diag_long", "diag_direct_const", "diag_skip_const", "diag_s"] {
                XCTAssertGreaterThanOrEqual(try value(k), 0, k)
            }
        }
        XCTAssertEqual(try pictureSteps(dir + "/on", tag: "diag/affinity", side: 96), [2, 3])
        XCTAssertTrue(try String(contentsOfFile: dir + "/on/train.log", encoding: .utf8).contains("validation at step 2: tracker diagnostics"))
    }

    /// CRW: the walk accuracy (no edge dropout) and the transition entropy, within their bounds,
    /// every 2 steps and at the end.
    func testCRWDiagnosticsLogWalkAccuracyAndTransitionEntropy() throws {
        let dir = temporaryDirectory("diagnostics-crw")
        let videos = try requireSharedData("videos")
        let cfg = dir + "/crw.yaml"
        try """
        seed: 2
        output_dir: \(dir)/run
        objective: crw
        data:
          videos: [\(videos)]
        crw:
          encoder_last_stage: layer2
          image_size: 64
          patch_size: 32
          patch_stride: 16
          clip_length: 3
        train:
          batch_size: 2
          steps: 3
          checkpoint_every: 3
        \(diagnostics(every: 2))
        """.write(toFile: cfg, atomically: true, encoding: .utf8)
        let t = try makeTrainer(configPath: cfg)
        t.warn = { _ in }
        XCTAssertEqual(try t.train(resume: false, stopAfter: nil), .finished(step: 3))
        let diag = try rows(dir + "/run").filter { $0["diag_walk_accuracy"] != nil }
        XCTAssertEqual(diag.compactMap { $0["step"] as? Int }, [2, 3])
        for r in diag {
            // 3 x 3 nodes per frame.
            XCTAssertEqual(try XCTUnwrap(r["diag_entropy_uniform"] as? Double), log(9), accuracy: 1e-5)
            XCTAssertEqual(try XCTUnwrap(r["diag_walk_chance"] as? Double), 1.0 / 9, accuracy: 1e-6)
            XCTAssertLessThanOrEqual(try XCTUnwrap(r["diag_entropy"] as? Double), log(9) + 1e-4)
            XCTAssertTrue((0...1).contains(try XCTUnwrap(r["diag_walk_accuracy"] as? Double)))
        }
        XCTAssertEqual(try pictureSteps(dir + "/run", tag: "diag/transition", side: 64), [2, 3])
    }

    func testABadDiagnosticsFieldIsOneLineNamingItAndMakesNoRun() throws {
        let dir = temporaryDirectory("diagnostics-bad")
        for (extra, field) in [("diagnostics:\n  every_steps: 2\n  clips: 0\n", "diagnostics.clips"),
                               ("diagnostics:\n  every_steps: 2\n  max_shift: 65\n", "diagnostics.max_shift"),
                               ("diagnostics:\n  every_steps: -1\n", "diagnostics.every_steps")] {
            let cfg = try writeTinyConfig(dir, output: dir + "/run", steps: 2, extra: extra)
            XCTAssertThrowsError(try makeTimeCycleTrainer(configPath: cfg)) { e in
                XCTAssertTrue("\(e)".contains("diagnostics"), "\(e)")
                XCTAssertTrue("\(e)".contains(field), "\(e)")
                XCTAssertFalse("\(e)".contains("\n"), "\(e)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run"), "no run directory for a bad config")
        }
    }
}
