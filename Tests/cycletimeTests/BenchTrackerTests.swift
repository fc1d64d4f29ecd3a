import Foundation
import TestSupport
import XCTest

/// `cycletime bench tracker` (Sources/cycletime/BenchTracker.swift), run as the executable on a
/// few steps (the figures of the full 1500-step run are quoted in README.md).
final class BenchTrackerTests: XCTestCase {
    func testShortRunReportsTheFiguresAsJSON() throws {
        let exe = try cycletimeExecutable()
        let r = try runProcess(exe, ["bench", "tracker", "--steps", "2", "--eval-every", "1", "--held-out", "2",
                                     "--readout-steps", "2", "--base-grid", "21", "--patch-grid", "7", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        let rows = try XCTUnwrap(obj["cycle_evaluations"] as? [[String: Double]])
        XCTAssertEqual(rows.map { $0["step"] }, [0, 1, 2])
        for key in ["readout_heldout_grid_loss", "readout_constant_grid_loss", "cycle_constant_direct", "cycle_median_direct_last5"] {
            XCTAssertTrue((obj[key] as? Double ?? .nan).isFinite, key)
        }
        XCTAssertTrue(r.stderr.contains("step   direct"), r.stderr)   // the table goes to stderr in JSON mode
    }

    func testBadArgumentsFailWithOneLine() throws {
        let exe = try cycletimeExecutable()
        let r = try runProcess(exe, ["bench", "tracker", "--patch-grid", "5"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--patch-grid"), r.stderr)
    }
}
