@testable import CycleTimeCore
import CycleTimeModels
import CycleTimeNN
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest
@testable import CycleTimeTraining
@testable import CycleTimePretraining

final class TrainerTests: XCTestCase {
    func makeTrainer(_ config: String, overrides: [String] = []) throws -> Trainer<TimeCycleTask> {
        let t = try makeTimeCycleTrainer(configPath: config, overrides: overrides)
        t.warn = { _ in }
        return t
    }

    func metrics(_ run: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    /// N steps, stop, resume, N more = an uninterrupted 2N-step run.
    func testResumeEqualsUninterruptedRun() throws {
        _ = try checkResumeEqualsUninterruptedRun("resume", steps: 6, overrides: [])
    }

    /// The same in bf16 training (acceptance 5 of #17), kept short (1 step, stop, resume, 1 more):
    /// the checkpoint written at the interruption records the precision and resumes to the
    /// uninterrupted bf16 run's weights.
    func testBF16ResumeEqualsUninterruptedBF16Run() throws {
        try XCTSkipUnless(OneDNN.hasNativeBF16, "this CPU has no AVX512-BF16: bf16 training is refused here")
        let dir = try checkResumeEqualsUninterruptedRun("resume-bf16", steps: 2, overrides: ["train.precision=bf16"])
        XCTAssertEqual(try SafeTensors.read(dir + "/split/checkpoints/latest.safetensors").metadata["precision"], "bf16")
    }

    /// Runs the comparison in a new folder, which it returns.
    func checkResumeEqualsUninterruptedRun(_ name: String, steps: Int, overrides: [String]) throws -> String {
        let dir = temporaryDirectory(name)
        let straight = try writeTinyConfig(dir, output: dir + "/straight", steps: steps)
        let a = try makeTrainer(straight, overrides: overrides)
        XCTAssertEqual(try a.train(resume: false), .finished(step: steps))

        let cfgB = dir + "/b.yaml"
        try String(contentsOfFile: straight, encoding: .utf8).replacingOccurrences(of: dir + "/straight", with: dir + "/split")
            .write(toFile: cfgB, atomically: true, encoding: .utf8)
        let b1 = try makeTrainer(cfgB, overrides: overrides)
        XCTAssertEqual(try b1.train(resume: false, stopAfter: steps / 2), .interrupted(step: steps / 2))
        XCTAssertEqual(try metrics(dir + "/split").count, steps / 2)
        // Without --resume an existing run is refused; with it the run continues.
        XCTAssertThrowsError(try makeTrainer(cfgB, overrides: overrides).train(resume: false)) { XCTAssertTrue("\($0)".contains("--resume"), "\($0)") }
        let b2 = try makeTrainer(cfgB, overrides: overrides)
        XCTAssertEqual(try b2.train(resume: true), .finished(step: steps))

        let wa = a.task.model.stateDict(), wb = b2.task.model.stateDict()
        XCTAssertEqual(Set(wa.keys), Set(wb.keys))
        for (k, t) in wa { assertClose(wb[k]!, t, rtol: 1e-5, atol: 1e-7, k) }
        let ma = try metrics(dir + "/straight"), mb = try metrics(dir + "/split")
        XCTAssertEqual(mb.count, steps)
        for (x, y) in zip(ma, mb) {
            XCTAssertEqual(x["step"] as? Int, y["step"] as? Int)
            XCTAssertEqual((x["loss"] as! Double), (y["loss"] as! Double), accuracy: 1e-6)
        }
        return dir
    }

    func testCheckpointHoldsTorchvisionEncoderKeysOptimizerStepAndRNG() throws {
        let dir = temporaryDirectory("ckpt")
        let cfg = try writeTinyConfig(dir, output: dir + "/run", steps: 4)
        let t = try makeTrainer(cfg)
        XCTAssertEqual(try t.train(resume: false), .finished(step: 4))
        let file = try SafeTensors.read(dir + "/run/checkpoints/latest.safetensors")
        XCTAssertNotNil(file.tensors["encoder.conv1.weight"])
        XCTAssertNotNil(file.tensors["encoder.layer1.0.bn1.running_mean"])
        XCTAssertNotNil(file.tensors["encoder.layer3.1.conv2.weight"])
        XCTAssertNotNil(file.tensors["head.weight"])
        XCTAssertNotNil(file.tensors["optimizer.exp_avg.encoder.conv1.weight"])
        XCTAssertEqual(file.tensors["optimizer.step"]?.item(), 4)
        XCTAssertEqual(file.metadata["step"], "4")
        XCTAssertEqual(file.metadata["objective"], "timecycle")
        XCTAssertEqual(file.metadata["precision"], "fp32")
        XCTAssertEqual(file.metadata["rng_next_step_state"]?.split(separator: " ").count, 4)
        XCTAssertNotNil(file.metadata["config"])
        XCTAssertEqual(file.metadata["encoder_arch"], "resnet18")
        XCTAssertEqual(file.metadata["encoder_last_stage"], "layer3")
        XCTAssertEqual(file.metadata["encoder_padding"], "zeros")
        XCTAssertEqual(file.metadata["encoder_normalization"], Normalization.imagenet.description)
        // Periodic checkpoints every 2 steps, the newest kept, latest = the last one.
        let periodic = RunDirectory.periodicSteps(dir + "/run")
        XCTAssertEqual(periodic, [2, 4])
        // The metrics line has every field the issue lists.
        let m = try metrics(dir + "/run")
        XCTAssertEqual(m.count, 4)
        for key in ["step", "loss", "loss_long", "loss_skip", "loss_inlier", "lr", "grad_norm", "clips_per_s", "data_wait"] {
            XCTAssertNotNil(m[0][key], key)
        }
        XCTAssertEqual(m[0]["lr"] as? Double ?? 0, 2e-4, accuracy: 1e-12)
        // The resolved config is written and reads back.
        let back = try ConfigLoader.load(TrainConfig.self, path: dir + "/run/config.yaml")
        XCTAssertEqual(back.train.steps, 4)
        XCTAssertEqual(back.timecycle.featureDim, 32)
    }

    /// A run stopped after step 3 whose last checkpoint is step 2 (a kill between checkpoints,
    /// with a record cut short at the end of its event file) and then resumed: the event files
    /// hold every scalar of metrics.jsonl at its step, each step once.
    func testEventFilesHoldEveryMetricsScalarOnceAcrossAKillAndResume() throws {
        let run = try killedAndResumedRun("events")
        XCTAssertEqual(try metrics(run).compactMap { $0["step"] as? Int }, Array(1...6))
        XCTAssertEqual(try eventScalars(run)["loss"].map { $0.keys.sorted() }, Array(1...6))
        try assertEventsMatchMetrics(run)
    }

    /// TensorBoard's own reader (EventAccumulator, without purging, so a repeated step would show)
    /// reads the run's scalars at the metrics' steps, and an image that decodes. Skips when the
    /// `tensorboard` Python package is missing.
    func testTensorBoardReadsTheEventFiles() throws {
        guard (try? runProcess("/usr/bin/env", ["python3", "-c", "import tensorboard"]))?.status == 0 else {
            throw XCTSkip("python3 cannot import tensorboard (pip install tensorboard): TensorBoard's own reader is not checked")
        }
        let run = try killedAndResumedRun("tensorboard")
        let canvas = Canvas(width: 6, height: 5, fill: .cyan)
        do {
            let r = try RunDirectory(path: run)
            try r.appendImage(tag: "frames", step: 6, png: try canvas.pngData())
        }
        let script = """
            import json, sys
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
            acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0}, purge_orphaned_data=False)
            acc.Reload()
            tags = acc.Tags()
            out = {"scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]}, "images": []}
            for e in acc.Images("frames"):
                path = sys.argv[1] + "/decoded-%d.png" % e.step
                open(path, "wb").write(e.encoded_image_string)
                out["images"].append([e.step, e.width, e.height, path])
            print(json.dumps(out))
            """
        let r = try runProcess("/usr/bin/env", ["python3", "-c", script, run])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let read = try XCTUnwrap(obj["scalars"] as? [String: [[Double]]])
        let ours = try eventScalars(run)
        XCTAssertEqual(Set(read.keys), Set(ours.keys))
        for (tag, points) in read {
            XCTAssertEqual(points.map { Int($0[0]) }, ours[tag]?.keys.sorted(), "\(tag): each step once, in order")
            for p in points { XCTAssertEqual(Float(p[1]), ours[tag]?[Int(p[0])] ?? .nan, tag) }
        }
        XCTAssertEqual(read["loss"]?.count, 6)
        let images = try XCTUnwrap(obj["images"] as? [[Any]])
        XCTAssertEqual(images.count, 1)
        XCTAssertEqual(images.first?[0] as? Int, 6)
        XCTAssertEqual(images.first?[1] as? Int, 6)
        XCTAssertEqual(images.first?[2] as? Int, 5)
        let decoded = try Image.readPNG(try XCTUnwrap(images.first?[3] as? String))
        XCTAssertEqual(decoded.pixels, canvas.image.pixels)
    }

    /// A tiny 6-step run stopped after step 3, rolled back to its step-2 checkpoint with a
    /// record cut short in its event file (as a kill between checkpoints leaves it), and resumed.
    func killedAndResumedRun(_ name: String) throws -> String {
        let dir = temporaryDirectory(name)
        let run = dir + "/run"
        let cfg = try writeTinyConfig(dir, output: run, steps: 6)
        XCTAssertEqual(try makeTrainer(cfg).train(resume: false, stopAfter: 3), .interrupted(step: 3))
        let latest = run + "/checkpoints/latest.safetensors"
        try FileManager.default.removeItem(atPath: latest)
        try FileManager.default.copyItem(atPath: run + "/checkpoints/step-00000002.safetensors", toPath: latest)
        let events = try XCTUnwrap(EventFileWriter.files(in: run).last)
        XCTAssertEqual(try EventFileWriter.read(events).last?.step, 3)
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: events))
        handle.seekToEndOfFile()
        handle.write(Data([7, 0, 0, 0]))
        try handle.close()
        XCTAssertEqual(try makeTrainer(cfg).train(resume: true), .finished(step: 6))
        return run
    }

    /// `train.precision: bf16` on a CPU without AVX512-BF16 is refused in one line naming the
    /// config and the key, before the run directory is made; fp32 runs as before.
    func testBF16IsRefusedWithoutAVX512BF16BeforeTheRunDirectoryIsMade() throws {
        Autocast.nativeBF16Override = false
        defer { Autocast.nativeBF16Override = nil }
        let dir = temporaryDirectory("nobf16")
        let cfg = try writeTinyConfig(dir, output: dir + "/run", steps: 2)
        XCTAssertThrowsError(try makeTrainer(cfg, overrides: ["train.precision=bf16"])) { e in
            let text = "\(e)"
            XCTAssertEqual(text.split(separator: "\n").count, 1, text)
            XCTAssertTrue(text.hasPrefix("\(cfg): field 'train.precision': precision bf16 needs a CPU with AVX512-BF16"), text)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run"))
        XCTAssertEqual(try makeTrainer(cfg).settings.train.precision, .fp32)
    }

    func testAFolderWithNoReadableVideoIsAnError() throws {
        let dir = temporaryDirectory("noread")
        try FileManager.default.createDirectory(atPath: dir + "/videos", withIntermediateDirectories: true)
        try Data("this is not a video".utf8).write(to: URL(fileURLWithPath: dir + "/videos/broken.mp4"))
        let cfg = dir + "/c.yaml"
        try tinyConfigYAML(output: dir + "/run", videos: dir + "/videos").write(toFile: cfg, atomically: true, encoding: .utf8)
        let t = try makeTrainer(cfg)
        XCTAssertThrowsError(try t.train(resume: false)) { e in
            XCTAssertTrue("\(e)".contains("no readable video"), "\(e)")
            XCTAssertTrue("\(e)".contains("broken.mp4"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run/checkpoints/latest.safetensors"))
    }

    /// Scores by step from a script (not from the model), so the best checkpoint's bookkeeping is
    /// checked without DAVIS.
    final class ScriptedValidator: TrainingValidator {
        let everySteps = 1
        let secondsField = "script_s"
        var bestField: String? { "score" }
        let scores: [Int: Double]
        init(_ scores: [Int: Double]) { self.scores = scores }
        func validate(model: Module, step: Int) throws -> ValidationScores {
            ValidationScores(fields: [("score", scores[step] ?? 0)], summary: "score \(scores[step] ?? 0)")
        }
    }

    func inode(_ path: String) throws -> Int {
        try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? Int)
    }

    /// A best validation on a checkpoint step is that checkpoint (one file, hard-linked); one
    /// between checkpoints is a file of its own; every checkpoint records the best as of its step.
    func testBestOnACheckpointStepIsThatCheckpointAndEveryCheckpointRecordsTheBest() throws {
        let dir = temporaryDirectory("best-link")
        let cfg = try writeTinyConfig(dir, output: dir + "/run", steps: 4)
        let t = try makeTrainer(cfg, overrides: ["train.keep_checkpoints=5"])
        t.validators = [ScriptedValidator([1: 0.1, 2: 0.5, 3: 0.3, 4: 0.2])]
        XCTAssertEqual(try t.train(resume: false), .finished(step: 4))
        let ckpt = dir + "/run/checkpoints"
        XCTAssertEqual(try inode(ckpt + "/best.safetensors"), try inode(ckpt + "/step-00000002.safetensors"))
        let best = try CheckpointFile(ckpt + "/best.safetensors")
        XCTAssertEqual(best.metadata["step"], "2")
        XCTAssertEqual(best.metadata["best_step"], "2")
        XCTAssertEqual(best.metadata["best_field"], "score")
        XCTAssertEqual(try CheckpointFile(ckpt + "/latest.safetensors").metadata["best_step"], "2", "the best as of step 4")

        let dir2 = temporaryDirectory("best-own-file")
        let t2 = try makeTrainer(try writeTinyConfig(dir2, output: dir2 + "/run", steps: 4), overrides: ["train.keep_checkpoints=5"])
        t2.validators = [ScriptedValidator([1: 0.1, 2: 0.5, 3: 0.9, 4: 0.2])]
        XCTAssertEqual(try t2.train(resume: false), .finished(step: 4))
        let own = try CheckpointFile(dir2 + "/run/checkpoints/best.safetensors")
        XCTAssertEqual(own.metadata["step"], "3")
        XCTAssertEqual(Double(own.metadata["best_value"] ?? ""), 0.9)
        XCTAssertEqual(try CheckpointFile(dir2 + "/run/checkpoints/step-00000002.safetensors").metadata["best_step"], "2")
    }

    /// A 4-step run with checkpoints every 2 steps, trained and validated by `scores` up to step
    /// 3 and killed there (latest of step 2, best.safetensors as step 3 left it), then resumed
    /// with validations scored by `after`. Returns the resumed trainer and the checkpoints folder.
    func resumeAfterAKillAtStep3(_ name: String, keep: Int, scores: [Int: Double], after: [Int: Double]) throws -> (Trainer<TimeCycleTask>, String) {
        let dir = temporaryDirectory(name)
        let cfg = try writeTinyConfig(dir, output: dir + "/run", steps: 4)
        func trainer(_ s: [Int: Double]) throws -> Trainer<TimeCycleTask> {
            let t = try makeTrainer(cfg, overrides: ["train.keep_checkpoints=\(keep)"])
            t.validators = [ScriptedValidator(s)]
            return t
        }
        XCTAssertEqual(try trainer(scores).train(resume: false, stopAfter: 2), .interrupted(step: 2))
        let ckpt = dir + "/run/checkpoints"
        let atTwo = try Data(contentsOf: URL(fileURLWithPath: ckpt + "/latest.safetensors"))
        XCTAssertEqual(try trainer(scores).train(resume: true, stopAfter: 1), .interrupted(step: 3))
        // The kill: step 3's checkpoint (written by the stop above) never was.
        for f in try FileManager.default.contentsOfDirectory(atPath: ckpt) where f.hasPrefix("step-00000003") || f == "latest.safetensors" {
            try FileManager.default.removeItem(atPath: ckpt + "/" + f)
        }
        try atTwo.write(to: URL(fileURLWithPath: ckpt + "/latest.safetensors"))
        let resumed = try trainer(after)
        XCTAssertEqual(try resumed.train(resume: true), .finished(step: 4))
        return (resumed, ckpt)
    }

    /// A run killed after a best validation between checkpoints (best.safetensors of step 3,
    /// latest of step 2) resumes from the best as of step 2: the step-3 best of the lost future
    /// does not outrank the resumed run's own validations (here they score lower, as a run resumed
    /// with another config may).
    func testAResumedRunDropsABestNewerThanItsCheckpoint() throws {
        for keep in [5, 1] {
            let (_, ckpt) = try resumeAfterAKillAtStep3("best-resume-\(keep)", keep: keep, scores: [1: 0.1, 2: 0.5, 3: 0.9], after: [3: 0.6, 4: 0.7])
            let best = try CheckpointFile(ckpt + "/best.safetensors")
            XCTAssertEqual(best.metadata["step"], "4", "keep \(keep)")
            XCTAssertEqual(Double(best.metadata["best_value"] ?? ""), 0.7)
            let latest = try CheckpointFile(ckpt + "/latest.safetensors")
            for (k, w) in latest.modelState { XCTAssertEqual(try XCTUnwrap(best.modelState[k]).array, w.array, k) }
        }
    }

    /// Without the best step's checkpoint on disk (keep_checkpoints 1), a resumed run whose
    /// validations never beat the recorded best has no best.safetensors rather than one of a
    /// step it discarded.
    func testAResumedRunWithoutTheBestStepsCheckpointKeepsNoStaleBest() throws {
        let (resumed, ckpt) = try resumeAfterAKillAtStep3("best-stale", keep: 1, scores: [1: 0.8, 2: 0.5, 3: 0.9], after: [3: 0.6, 4: 0.7])
        XCTAssertFalse(FileManager.default.fileExists(atPath: ckpt + "/best.safetensors"))
        XCTAssertEqual(resumed.best?.step, 1, "the best as of step 2 is step 1's 0.8")
    }
}
