import CycleTimeCore
import Foundation
import TestSupport
import XCTest

/// `cycletime bench ava` (Sources/cycletime/BenchAVA.swift), run as the executable.
final class BenchAVATests: XCTestCase {
    /// The tiny run: every case (the relation heads and the feature bank head too) in its own child process, figures in the JSON.
    func testQuickRunReportsEveryCase() throws {
        let exe = try cycletimeExecutable()
        let r = try runProcess(exe, ["bench", "ava", "--quick", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        let cases = try XCTUnwrap(obj["cases"] as? [String: [String: Any]])
        XCTAssertEqual(Set(cases.keys), ["2d", "slowonly", "slowfast", "2d-acrn", "2d-acar", "2d-lfb"])
        for (name, channels, frames) in [("2d", 512, 4), ("slowonly", 512, 4), ("slowfast", 576, 32), ("2d-acrn", 512, 4), ("2d-acar", 512, 4), ("2d-lfb", 512, 4)] {
            let c = try XCTUnwrap(cases[name])
            XCTAssertEqual(c["output_channels"] as? Int, channels, name)
            XCTAssertEqual(c["frames"] as? Int, frames, name)
            XCTAssertEqual(c["size"] as? Int, 64, name)
            XCTAssertGreaterThan(c["seconds_per_step"] as? Double ?? 0, 0, name)
            XCTAssertGreaterThan(c["peak_rss_bytes"] as? Double ?? 0, 0, name)
            XCTAssertTrue((c["loss"] as? Double ?? .nan).isFinite, name)
        }
        XCTAssertTrue(r.stderr.contains("PyTorch reference skipped"), r.stderr)
    }

    /// --precision and --conv-backend reach the child that times the case (3-D convolutions on oneDNN, bf16 autocast).
    func testPrecisionAndConvolutionBackendReachTheTimedCase() throws {
        let exe = try cycletimeExecutable()
        for (flags, precision, backend) in [(["--conv-backend", "onednn"], "fp32", "oneDNN"), (["--precision", "bf16"], "bf16", "auto"), (["--conv-backend", "native"], "fp32", "native")] {
            if precision == "bf16" && !OneDNN.hasNativeBF16 { continue }
            let r = try runProcess(exe, ["bench", "ava", "--quick", "--json", "--cases", "slowonly"] + flags)
            XCTAssertEqual(r.status, 0, r.stderr)
            let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
            let c = try XCTUnwrap((obj["cases"] as? [String: [String: Any]])?["slowonly"])
            XCTAssertEqual(c["precision"] as? String, precision)
            XCTAssertEqual(c["conv_backend"] as? String, backend)
            XCTAssertTrue((c["loss"] as? Double ?? .nan).isFinite)
        }
        let bad = try runProcess(exe, ["bench", "ava", "--conv-backend", "cudnn"])
        XCTAssertEqual(bad.status, 64)
        XCTAssertTrue(bad.stderr.contains("--conv-backend"), bad.stderr)
    }

    func testBadArgumentsFailWithOneLine() throws {
        let exe = try cycletimeExecutable()
        let r = try runProcess(exe, ["bench", "ava", "--cases", "slowfast", "i3d"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("unknown case 'i3d'"), r.stderr)
        let s = try runProcess(exe, ["bench", "ava", "--size", "100"])
        XCTAssertNotEqual(s.status, 0)
        XCTAssertTrue(s.stderr.contains("--size"), s.stderr)
        let acar = try runProcess(exe, ["bench", "ava", "--cases", "2d-acar", "--size", "32"])
        XCTAssertEqual(acar.status, 64)
        XCTAssertTrue(acar.stderr.contains("--size must be at least 48 with the 2d-acar case"), acar.stderr)
    }
}
