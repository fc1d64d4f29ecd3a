import CycleTimeCore
import CycleTimeDetection
import Foundation
import TestSupport
import XCTest
@testable import CycleTimeTraining
@testable import CycleTimePretraining

/// `cycletime train` as a user runs it (the real executable).
final class TrainCommandTests: XCTestCase {
    /// One clear line and a non-zero exit for each kind of bad input.
    func testBadInputGivesOneLineAndNonZeroExit() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("bad")
        let videos = try requireSharedData("videos")
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: dir + "/notavideo.txt"))
        try FileManager.default.createDirectory(atPath: dir + "/unreadable", withIntermediateDirectories: true)
        try Data("not a video at all".utf8).write(to: URL(fileURLWithPath: dir + "/unreadable/clip.mp4"))
        try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
        try Data().write(to: URL(fileURLWithPath: dir + "/afile"))

        let cases: [(String, String, String)] = [
            ("unknown field", tinyConfigYAML(output: dir + "/r1", videos: videos, extra: "optimiser:\n  lr: 0.1\n"), "unknown field 'optimiser'"),
            ("wrong type", tinyConfigYAML(output: dir + "/r2", videos: videos).replacingOccurrences(of: "batch_size: 2", with: "batch_size: two"),
             "field 'train.batch_size' has the wrong type"),
            ("missing data folder", tinyConfigYAML(output: dir + "/r3", videos: dir + "/nowhere"), "no such file or folder: \(dir)/nowhere"),
            ("folder without videos", tinyConfigYAML(output: dir + "/r4", videos: dir + "/empty"), "no video files"),
            ("no readable video", tinyConfigYAML(output: dir + "/r5", videos: dir + "/unreadable"), "no readable video"),
            ("unwritable output", tinyConfigYAML(output: dir + "/afile/run", videos: videos), "cannot create the output directory"),
        ]
        for (name, yaml, expected) in cases {
            let cfg = dir + "/\(name.replacingOccurrences(of: " ", with: "-")).yaml"
            try yaml.write(toFile: cfg, atomically: true, encoding: .utf8)
            let r = try runProcess(exe, ["train", "--config", cfg])
            XCTAssertNotEqual(r.status, 0, name)
            let lines = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("warning:") }
            XCTAssertEqual(lines.count, 1, "\(name): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(expected), "\(name): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Usage:"), name)
        }
        let missing = try runProcess(exe, ["train", "--config", dir + "/none.yaml"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("none.yaml: no such config file"), missing.stderr)
    }

    /// Ctrl-C finishes the step, writes a checkpoint and exits 130; --resume then completes the run.
    func testInterruptWritesCheckpointAndResumeFinishes() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("sigint")
        let cfg = try writeTinyConfig(dir, output: dir + "/run", steps: 40)
        let metrics = dir + "/run/metrics.jsonl"
        let r = try runProcessInterrupted(exe, ["train", "--config", cfg], metrics: metrics)
        XCTAssertEqual(r.status, 130, r.stderr)
        XCTAssertTrue(r.stderr.contains("interrupted at step"), r.stderr)
        let steps = try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n").count
        XCTAssertGreaterThanOrEqual(steps, 2)
        XCTAssertLessThan(steps, 40)
        let ckpt = try XCTUnwrap(try? String(contentsOfFile: cfg, encoding: .utf8)).isEmpty ? nil : dir + "/run/checkpoints/latest.safetensors"
        XCTAssertTrue(FileManager.default.fileExists(atPath: ckpt!))
        // Resume with fewer total steps than 40 to keep the test short.
        let resumed = try runProcess(exe, ["train", "--config", cfg, "--resume", "--set", "train.steps=\(steps + 2)"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resuming at step \(steps)"), resumed.stderr)
        XCTAssertEqual(try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n").count, steps + 2)
    }

    /// A run directory is locked while a process uses it: a second train, --resume or ava train
    /// fails at once with one line naming the directory and the holder's pid, and changes
    /// nothing; after the holder is killed with kill -9 the lock is free.
    func testASecondProcessOnALockedRunDirectoryFailsAndTheLockDiesWithItsHolder() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("lock")
        let run = dir + "/run"
        let cfg = try writeTinyConfig(dir, output: run, steps: 200)
        let ava = try writeTinyAVARun(dir)
        let holder = try startProcess(exe, ["train", "--config", cfg])
        defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() } }
        let latest = run + "/checkpoints/latest.safetensors"
        waitUntil(seconds: 120) { FileManager.default.fileExists(atPath: latest) || !holder.isRunning }
        XCTAssertTrue(holder.isRunning)
        // Frozen, the holder cannot change the directory while the others try it.
        kill(holder.processIdentifier, SIGSTOP)
        let before = try snapshot(run)
        for args in [["train", "--config", cfg], ["train", "--config", cfg, "--resume"],
                     ["ava", "train", "--config", ava, "--set", "output_dir=\(run)"]] {
            let start = Date()
            let r = try runProcess(exe, args)
            XCTAssertEqual(r.status, 1, "\(args): \(r.stderr)")
            let lines = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("warning:") }
            XCTAssertEqual(lines.count, 1, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(run) && r.stderr.contains("in use by process \(holder.processIdentifier)"), r.stderr)
            XCTAssertLessThan(Date().timeIntervalSince(start), 20, "\(args) waited for the lock")
        }
        XCTAssertEqual(try snapshot(run), before, "a refused process changed the run directory")
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        let step = try XCTUnwrap(Int(try SafeTensors.read(latest).metadata["step"] ?? ""))
        let resumed = try runProcess(exe, ["train", "--config", cfg, "--resume", "--set", "train.steps=\(step + 1)"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try metricsSteps(run), Array(1...(step + 1)))
    }

    /// kill -9 at random moments of a run that checkpoints every step, each followed by a
    /// restart (--resume once a checkpoint exists): in the end every step has exactly one metrics
    /// line, every checkpoint loads and no temporary file remains.
    func testKill9AtRandomMomentsThenResumeLeavesAConsistentRun() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("kill9")
        let run = dir + "/run"
        // Long enough that 20 lives of at most a second cannot finish it on any machine of this kind.
        let steps = 30
        let cfg = try writeTinyConfig(dir, output: run, steps: steps)
        let latest = run + "/checkpoints/latest.safetensors"
        var delays: [Int] = [], kills = 0
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let resume = FileManager.default.fileExists(atPath: latest)
            let p = try startProcess(exe, ["train", "--config", cfg, "--set", "train.checkpoint_every=1"] + (resume ? ["--resume"] : []))
            let ms = Int.random(in: 100...1000, using: &generator)
            delays.append(ms)
            waitUntil(seconds: Double(ms) / 1000) { !p.isRunning }
            if p.isRunning { kill(p.processIdentifier, SIGKILL); kills += 1 }
            p.waitUntilExit()
            if p.terminationReason == .exit {
                XCTAssertEqual(p.terminationStatus, 0, "kill delays \(delays) ms")
                break
            }
        }
        XCTAssertEqual(kills, 20, "the run finished before 20 kills (delays \(delays) ms)")
        let resume = FileManager.default.fileExists(atPath: latest)
        let last = try runProcess(exe, ["train", "--config", cfg, "--set", "train.checkpoint_every=1"] + (resume ? ["--resume"] : []))
        XCTAssertEqual(last.status, 0, "kill delays \(delays) ms: \(last.stderr)")
        XCTAssertEqual(try metricsSteps(run), Array(1...steps), "kill delays \(delays) ms")
        // The TensorBoard event files hold each step once too (resuming drops the later steps of the old files).
        var eventSteps: [Int] = []
        for file in EventFileWriter.files(in: run) {
            eventSteps += try EventFileWriter.read(file).filter { !$0.values.isEmpty }.map(\.step)
        }
        XCTAssertEqual(eventSteps.sorted(), Array(1...steps), "kill delays \(delays) ms")
        let folder = run + "/checkpoints"
        let names = try FileManager.default.contentsOfDirectory(atPath: folder)
        XCTAssertTrue(names.contains("latest.safetensors"))
        for name in names {
            let file = try SafeTensors.read(folder + "/" + name)
            let step = try XCTUnwrap(Int(file.metadata["step"] ?? ""), name)
            XCTAssertEqual(name == "latest.safetensors" ? steps : Int(name.dropFirst(5).dropLast(12)), step, name)
        }
        let leftovers = (try FileManager.default.contentsOfDirectory(atPath: run) + names).filter { AtomicFile.isTemporary($0) || $0.contains("tmp") }
        XCTAssertEqual(leftovers, [], "kill delays \(delays) ms")
    }

    /// --resume checks the checkpoint's metadata before touching any file (one line naming the
    /// file and the key), and a run already at its last step says so and changes nothing (but the
    /// lock file, which names its new holder).
    func testResumeValidatesTheCheckpointFirstAndReportsACompleteRun() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("resume-check")
        let run = dir + "/run"
        let cfg = try writeTinyConfig(dir, output: run, steps: 2)
        XCTAssertEqual(try runProcess(exe, ["train", "--config", cfg]).status, 0)
        let latest = run + "/checkpoints/latest.safetensors"
        let good = try SafeTensors.read(latest)
        for bad in ["-3", "two", ""] {
            var meta = good.metadata
            meta["step"] = bad
            try SafeTensors.write(good.tensors, metadata: meta, to: latest)
            let before = try snapshot(run).filter { $0.key != ".lock" }
                let r = try runProcess(exe, ["train", "--config", cfg, "--resume", "--set", "train.steps=4"])
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(latest) && r.stderr.contains("'step'"), r.stderr)
            XCTAssertEqual(try snapshot(run).filter { $0.key != ".lock" }, before, "step \(bad): the run directory changed")
        }
        try SafeTensors.write(good.tensors, metadata: good.metadata, to: latest)
        let before = try snapshot(run).filter { $0.key != ".lock" }
        for steps in [2, 1] {
            let r = try runProcess(exe, ["train", "--config", cfg, "--resume", "--set", "train.steps=\(steps)"])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stderr.contains("already complete at step 2"), r.stderr)
        }
        XCTAssertEqual(try snapshot(run).filter { $0.key != ".lock" }, before)
        XCTAssertEqual(try metricsSteps(run), [1, 2])
    }

    func testEveryBadNumberIsOneLineNamingItsKey() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("numbers")
        let train = dir + "/train.yaml", ava = dir + "/ava.yaml"
        try "seed: 1\ndata:\n  videos: [v.mp4]\ntrain:\n  steps: 2\n".write(toFile: train, atomically: true, encoding: .utf8)
        try "data:\n  annotations: a.csv\n  labelmap: l.pbtxt\n  frames: f\ntrain:\n  steps: 2\n".write(toFile: ava, atomically: true, encoding: .utf8)
        let cases: [(command: [String], config: String, numbers: [ConfigValidator.Number], bounds: [String: ClosedRange<Double>])] = [
            (["train"], train, ConfigValidator.numbers(in: TrainConfig()).filter { TrainConfig.unusedFields[$0.key] == nil }, TrainConfig.numberBounds),
            (["ava", "train"], ava, ConfigValidator.numbers(in: AVAConfig()), AVAConfig.numberBounds),
        ]
        var checked = 0
        for c in cases {
            // One entry per key (a list's elements share their key); a list keeps its length.
            var keys: [String] = [], length: [String: Int] = [:], integer: [String: Bool] = [:]
            for n in c.numbers {
                if length[n.key] == nil { keys.append(n.key) }
                length[n.key, default: 0] += 1
                integer[n.key] = n.isInteger
            }
            XCTAssertTrue(keys.contains("optimizer.lr") && keys.contains("train.grad_clip"), "\(keys)")
            for key in keys {
                let bounds = c.bounds[key] ?? 0...ConfigValidator.maxNumber
                var values = bounds.contains(-1) ? [] : ["-1"]
                values.append("1" + String(repeating: "0", count: 17))
                values.append("0")
                if integer[key] == false { values += [".nan", ".inf", "-.inf"] }
                for value in values {
                    let count = length[key] ?? 1
                    let yaml = count == 1 ? value : "[" + Array(repeating: value, count: count).joined(separator: ", ") + "]"
                    let out = dir + "/run-\(checked)"
                    let r = try runProcess(exe, c.command + ["--config", c.config, "--set", "output_dir=\(out)", "--set", "\(key)=\(yaml)"])
                    let what = "\(c.command.joined(separator: " ")) \(key)=\(yaml)"
                    XCTAssertEqual(r.status, 1, "\(what): \(r.stderr)")
                    XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(what): \(r.stderr)")
                    // A zero the bounds allow passes validation and meets the missing data next.
                    let accepted = value == "0" && bounds.contains(0) && !r.stderr.contains("field '\(key)'")
                    XCTAssertTrue(accepted ? r.stderr.contains("no such") : r.stderr.contains("field '\(key)'"), "\(what): \(r.stderr)")
                    XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(what) created the run directory")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 200)
    }
}

/// A process started in the background (output discarded).
func startProcess(_ executable: String, _ arguments: [String]) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    return p
}

/// Polls `condition` every 20 ms for at most `seconds`.
func waitUntil(seconds: Double, _ condition: () -> Bool) {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline && !condition() { usleep(20_000) }
}

/// Every file under `folder` with its size and modification time.
func snapshot(_ folder: String) throws -> [String: String] {
    var out: [String: String] = [:]
    let fm = FileManager.default
    for rel in fm.subpaths(atPath: folder) ?? [] {
        let a = try fm.attributesOfItem(atPath: folder + "/" + rel)
        out[rel] = "\(a[.size] ?? "") \(a[.modificationDate] ?? "")"
    }
    return out
}

/// The steps of a run's metrics.jsonl, in file order.
func metricsSteps(_ run: String) throws -> [Int] {
    try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map { line in
        let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        return (obj?["step"] as? NSNumber)?.intValue ?? -1
    }
}
