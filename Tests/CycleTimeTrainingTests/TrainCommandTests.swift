import Foundation
import TestSupport
import XCTest

/// `cycletime train` as a user runs it (the real executable).
final class TrainCommandTests: XCTestCase {
    /// Acceptance 5: one clear line and a non-zero exit for each kind of bad input.
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
        let r = try runProcess(exe, ["train", "--config", cfg]) { p in
            let deadline = Date().addingTimeInterval(120)
            while Date() < deadline {
                if let t = try? String(contentsOfFile: metrics, encoding: .utf8), t.split(separator: "\n").count >= 2 { break }
                usleep(50_000)
            }
            p.interrupt()
        }
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
}
