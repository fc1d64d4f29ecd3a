import CycleTimeCore
import Foundation
import TestSupport
import XCTest

/// `cycletime bench detect` (Sources/cycletime/BenchDetect.swift), run as the executable at tiny
/// sizes (ResNet-18 body, 64-pixel short side, 50 proposals, 32 sampled RoIs, one timed step) on the JHMDB test frame.
final class BenchDetectTests: XCTestCase {
    /// Both cases run in their own processes; the table has its columns; with python3, torch and
    /// torchvision present, every PyTorch/CycleTime ratio is a finite positive number (else the
    /// reference is reported as skipped).
    func testTinyRunPrintsTheTableWithFiniteRatios() throws {
        let exe = try cycletimeExecutable()
        let image = try detectorTestFrame()
        let r = try runProcess(exe, ["bench", "detect", "--json", "--image", image, "--depth", "18", "--min-size", "64", "--max-size", "96",
                                     "--steps", "1", "--precisions", "fp32", "--torch-layout", "default",
                                     "--rpn-post-nms-top-n", "50", "--box-batch-size-per-image", "32"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let header = try XCTUnwrap(r.stderr.split(separator: "\n").first { $0.contains("CycleTime s") }, r.stderr)
        for column in ["case", "precision", "CycleTime s", "peak MiB", "PyTorch s (layout)", "PyTorch/CycleTime time", "CycleTime/PyTorch memory"] {
            XCTAssertTrue(header.contains(column), "\(column) in \(header)")
        }
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        XCTAssertEqual(obj["resized"] as? [Int], [64, 85])   // 320x240 -> short side 64
        let rows = try XCTUnwrap(obj["rows"] as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["case"] as? String }, ["infer", "train"])
        let torch = try runProcess("/usr/bin/env", ["python3", "-c", "import torch, torchvision, PIL"]).status == 0
        for row in rows {
            let c = row["case"] as? String ?? "?"
            XCTAssertEqual(row["precision"] as? String, "fp32", c)
            XCTAssertGreaterThan(row["seconds_per_step"] as? Double ?? 0, 0, c)
            XCTAssertGreaterThan(row["peak_rss_bytes"] as? Double ?? 0, 0, c)
            if torch {
                for key in ["speedup_vs_torch", "memory_vs_torch"] {
                    let v = row[key] as? Double ?? .nan
                    XCTAssertTrue(v.isFinite && v > 0, "\(c) \(key): \(v)")
                }
            }
        }
        let losses = try XCTUnwrap(rows.last?["losses"] as? [String: Double])
        XCTAssertEqual(Set(losses.keys), ["loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"])
        XCTAssertTrue(losses.values.allSatisfy(\.isFinite), "\(losses)")
        if !torch { XCTAssertTrue(r.stderr.contains("PyTorch reference skipped"), r.stderr) }
    }

    /// The detector's inference and training iteration run inside bf16 autocast (where the CPU has
    /// AVX512-BF16), with finite losses.
    func testBF16CasesRunUnderAutocast() throws {
        guard OneDNN.hasNativeBF16 else { throw XCTSkip("bf16 autocast needs a CPU with AVX512-BF16") }
        let exe = try cycletimeExecutable()
        let image = try detectorTestFrame()
        let r = try runProcess(exe, ["bench", "detect", "--json", "--image", image, "--depth", "18", "--min-size", "64", "--max-size", "96",
                                     "--steps", "1", "--precisions", "bf16", "--no-torch",
                                     "--rpn-post-nms-top-n", "50", "--box-batch-size-per-image", "32"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        let rows = try XCTUnwrap(obj["rows"] as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["precision"] as? String }, ["bf16", "bf16"])
        let losses = try XCTUnwrap(rows.last?["losses"] as? [String: Double])
        XCTAssertTrue(losses.count == 4 && losses.values.allSatisfy(\.isFinite), "\(losses)")
    }

    func testBadArgumentsFailWithOneLine() throws {
        let exe = try cycletimeExecutable()
        for (args, message) in [(["--cases", "infer", "segment"], "unknown case 'segment'"), (["--depth", "20"], "--depth"),
                                (["--min-size", "480", "--max-size", "100"], "--max-size"), (["--precisions", "fp16"], "--precisions")] {
            let r = try runProcess(exe, ["bench", "detect"] + args)
            XCTAssertEqual(r.status, 64, "\(args)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }
}
