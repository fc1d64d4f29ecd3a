import CycleTimeCore
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest
@testable import CycleTimeTraining

final class RunDirectoryTests: XCTestCase {
    func testCheckpointsKeepTheNewestAndLatestPointsToTheLastOne() throws {
        let run = try RunDirectory(path: temporaryDirectory("rundir") + "/run")
        for step in [10, 20, 30, 40] {
            try run.saveCheckpoint(step: step, tensors: ["w": Tensor([Float(step)], shape: [1])], metadata: ["step": "\(step)"], keep: 2)
        }
        XCTAssertEqual(run.periodicCheckpoints().map(\.0), [30, 40])
        XCTAssertEqual(RunDirectory.periodicSteps(run.path), [30, 40])
        let latest = try SafeTensors.read(run.latestCheckpointPath)
        XCTAssertEqual(latest.metadata["step"], "40")
        XCTAssertEqual(latest.tensors["w"]?.item(), 40)
        XCTAssertTrue(run.hasCheckpoint)
        // No temporary files are left behind.
        let names = try FileManager.default.contentsOfDirectory(atPath: run.checkpointsPath)
        XCTAssertFalse(names.contains { $0.contains("tmp") }, "\(names)")
    }

    func testMetricsLinesAndTruncationOnResume() throws {
        let run = try RunDirectory(path: temporaryDirectory("metrics") + "/run")
        for s in 1...5 { try run.appendMetrics([("step", Double(s)), ("loss", 1.0 / Double(s)), ("bad", .nan)]) }
        try run.truncateMetrics(afterStep: 3)
        try run.appendMetrics([("step", 4), ("loss", 0.5), ("bad", 1)])
        let lines = try String(contentsOfFile: run.metricsPath, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 4)
        XCTAssertEqual(lines[0], "{\"step\": 1, \"loss\": 1, \"bad\": null}")
        XCTAssertEqual(lines[3], "{\"step\": 4, \"loss\": 0.5, \"bad\": 1}")
        // The same scalars for TensorBoard: the old file keeps steps 1...3, the resumed object writes a new one.
        XCTAssertEqual(run.eventFiles.count, 2)
        try assertEventsMatchMetrics(run.path)
        XCTAssertEqual(try eventScalars(run.path)["loss"], [1: 1, 2: 0.5, 3: Float(1.0 / 3), 4: 0.5])
    }

    /// An image goes into the run's event file with its size from the PNG; a fresh run removes old event files.
    func testImagesAndStartOverOfEventFiles() throws {
        let run = try RunDirectory(path: temporaryDirectory("images") + "/run")
        let png = try Canvas(width: 7, height: 4, fill: .green).pngData()
        try run.appendImage(tag: "val/frame", step: 3, png: png)
        let events = try EventFileWriter.read(try XCTUnwrap(run.eventFiles.first))
        XCTAssertEqual(events.last?.step, 3)
        XCTAssertEqual(events.last?.values, [.init(tag: "val/frame", .image(width: 7, height: 4, colorspace: 3, png: png))])
        XCTAssertThrowsError(try run.appendImage(tag: "broken", step: 4, png: Data([1, 2, 3]))) { XCTAssertTrue("\($0)".contains("'broken'"), "\($0)") }
        try run.startOver()
        XCTAssertEqual(run.eventFiles, [])
    }

    func testAPathUnderAFileIsAClearError() throws {
        let dir = temporaryDirectory("file")
        try Data().write(to: URL(fileURLWithPath: dir + "/f"))
        XCTAssertThrowsError(try RunDirectory(path: dir + "/f/run")) { e in
            XCTAssertTrue("\(e)".contains("is a file, not a folder"), "\(e)")
        }
        XCTAssertThrowsError(try RunDirectory(path: dir + "/f")) { e in
            XCTAssertTrue("\(e)".contains("not a directory"), "\(e)")
        }
    }

    /// Opening a run directory removes the temporaries of interrupted atomic writes (and only them).
    func testOpeningRemovesLeftoverTemporaries() throws {
        let path = temporaryDirectory("leftovers") + "/run"
        try FileManager.default.createDirectory(atPath: path + "/checkpoints", withIntermediateDirectories: true)
        let leftovers = [path + "/.config.yaml.tmp-123", path + "/checkpoints/.step-00000002.safetensors.tmp-77",
                         path + "/checkpoints/.latest.safetensors.tmp-77"]
        let kept = [path + "/notes.tmp-1", path + "/checkpoints/step-00000001.safetensors"]
        for f in leftovers + kept { XCTAssertTrue(FileManager.default.createFile(atPath: f, contents: Data("x".utf8))) }
        XCTAssertEqual(URL(fileURLWithPath: AtomicFile.temporaryPath(for: "/a/b.yaml")).lastPathComponent, ".b.yaml.tmp-\(getpid())")
        _ = try RunDirectory(path: path)
        for f in leftovers { XCTAssertFalse(FileManager.default.fileExists(atPath: f), f) }
        for f in kept { XCTAssertTrue(FileManager.default.fileExists(atPath: f), f) }
    }

    /// A fresh run removes the metrics, log and periodic checkpoints of a run that never wrote `latest`.
    func testStartOverRemovesTheFilesOfARunWithoutCheckpoint() throws {
        let run = try RunDirectory(path: temporaryDirectory("over") + "/run")
        for s in 1...2 { try run.appendMetrics([("step", Double(s))]) }
        run.log("old")
        try SafeTensors.write(["w": Tensor([1], shape: [1])], metadata: ["step": "2"], to: run.checkpointPath(step: 2))
        try run.startOver()
        try run.appendMetrics([("step", 1)])
        XCTAssertEqual(try String(contentsOfFile: run.metricsPath, encoding: .utf8), "{\"step\": 1}\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.logPath))
        XCTAssertEqual(run.periodicCheckpoints().count, 0)
    }

    /// The lock file holds this process's pid; objects of one process share the lock.
    func testTheLockHoldsThePidAndIsSharedWithinTheProcess() throws {
        let path = temporaryDirectory("lock") + "/run"
        let a = try RunDirectory(path: path)
        let b = try RunDirectory(path: path)
        XCTAssertEqual(try String(contentsOfFile: a.lockPath, encoding: .utf8), "\(getpid())\n")
        XCTAssertEqual(a.lockPath, b.lockPath)
    }
}
