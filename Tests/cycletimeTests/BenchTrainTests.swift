@testable import cycletime
import CycleTimeCore
import Foundation
import TestSupport
import XCTest

/// `cycletime bench train` (Sources/cycletime/BenchTrain.swift), run as the executable, and the
/// comparison with PyTorch it shares with `bench ava` (BenchSupport.swift).
final class BenchTrainTests: XCTestCase {
    /// One TimeCycle r18 step at each precision this CPU runs natively, in its own child process:
    /// the figures and the precision in the JSON, and the PyTorch reference said to be skipped.
    func testTimeCycleCaseReportsItsStepAtEachPrecision() throws {
        let exe = try cycletimeExecutable()
        for precision in ["fp32", "bf16"] where precision == "fp32" || OneDNN.hasNativeBF16 {
            let r = try TestSupport.runProcess(exe, ["bench", "train", "--cases", "timecycle-r18", "--steps", "1", "--json", "--no-torch", "--precision", precision])
            XCTAssertEqual(r.status, 0, r.stderr)
            let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
            let c = try XCTUnwrap((obj["cases"] as? [String: [String: Any]])?["timecycle-r18"], r.stdout)
            XCTAssertEqual(c["precision"] as? String, precision)
            XCTAssertEqual(c["batch"] as? Int, 4)
            XCTAssertGreaterThan(c["seconds_per_step"] as? Double ?? 0, 0)
            XCTAssertGreaterThan(c["peak_rss_bytes"] as? Double ?? 0, 0)
            XCTAssertNil(c["speedup_vs_torch"])
            // The case's own process was started by this one, which removed the variable it had set
            // for itself, so the case's process set passive waiting for itself in turn.
            if getenv("OMP_WAIT_POLICY") == nil && getenv("GOMP_SPINCOUNT") == nil {
                XCTAssertEqual(c["openmp_wait"] as? String, "passive (set by cycletime)")
            }
            XCTAssertTrue(r.stderr.contains("PyTorch reference skipped"), r.stderr)
        }
    }

    /// A user's OpenMP wait policy stands (cycletime does not replace it with passive waiting), in
    /// the process started and in the case's process it starts.
    func testAUsersOpenMPWaitPolicyStands() throws {
        let exe = try cycletimeExecutable()
        let r = try TestSupport.runProcess(exe, ["bench", "train", "--cases", "timecycle-r18", "--steps", "1", "--json", "--no-torch"],
                                           environment: ["OMP_WAIT_POLICY": "active"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("OpenMP wait OMP_WAIT_POLICY=active"), r.stderr)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        let c = try XCTUnwrap((obj["cases"] as? [String: [String: Any]])?["timecycle-r18"], r.stdout)
        XCTAssertEqual(c["openmp_wait"] as? String, "OMP_WAIT_POLICY=active")
    }

    func testBadArgumentsFailWithOneLine() throws {
        let exe = try cycletimeExecutable()
        let r = try TestSupport.runProcess(exe, ["bench", "train", "--cases", "timecycle-r18", "i3d"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("unknown case 'i3d'"), r.stderr)
        let p = try TestSupport.runProcess(exe, ["bench", "train", "--precision", "fp16"])
        XCTAssertEqual(p.status, 64)
        XCTAssertTrue(p.stderr.contains("--precision"), p.stderr)
    }

    /// Each PyTorch layout gets its own ratios; the headline ratio is against the faster one (PyTorch
    /// at its fastest here), for time and for memory; a failed reference run counts for nothing.
    func testRatiosAreAgainstEachLayoutAndTheFasterOne() throws {
        let runs = [TorchRun(["seconds_per_step": 3.0, "peak_rss_bytes": 1000.0, "torch_version": "2.x"], layout: "default"),
                    TorchRun(["seconds_per_step": 2.0, "peak_rss_bytes": 4000.0], layout: "channels_last"),
                    TorchRun(["error": "no torch"], layout: "default"), TorchRun(nil, layout: "default")].compactMap { $0 }
        XCTAssertEqual(runs.map(\.layout), ["default", "channels_last"])
        var entry: [String: Any] = [:]
        let text = compareWithTorch(seconds: 1.0, peak: 2000, runs, unit: "step", into: &entry)
        XCTAssertEqual(entry["speedup_vs_torch_default"] as? Double, 3)
        XCTAssertEqual(entry["speedup_vs_torch_channels_last"] as? Double, 2)
        XCTAssertEqual(entry["torch_fastest_layout"] as? String, "channels_last")
        XCTAssertEqual(entry["speedup_vs_torch"] as? Double, 2)
        XCTAssertEqual(entry["memory_vs_torch"] as? Double, 0.5)
        XCTAssertTrue(text.contains("PyTorch 2.x default: 3.00 s/step"), text)
        XCTAssertTrue(text.contains("against PyTorch's faster layout (channels_last): 2.00x as fast, 0.50x the memory"), text)
        var none: [String: Any] = [:]
        XCTAssertEqual(compareWithTorch(seconds: 1, peak: 1, [], unit: "step", into: &none), "")
        XCTAssertTrue(none.isEmpty)
    }
}
