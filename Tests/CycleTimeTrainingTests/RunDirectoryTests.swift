import CycleTimeCore
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
}
