import CycleTimeReport
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest

/// `cycletime report` through the executable, on run folders made as the library tests make them.
final class ReportCommandTests: XCTestCase {
    /// Config and metrics only: curves and config render; checkpoint, propagation and detection are stated missing.
    func testRunWithOnlyConfigAndMetricsStatesWhatIsMissing() throws {
        let dir = try makeRunDir("config-metrics", steps: nil)
        let run = try RunRecord.load(dir)
        XCTAssertEqual(run.lastStep, 40)
        let blocks = try Report.blocks(run, options: ReportOptions())
        let md = blocks.markdownText
        XCTAssertTrue(md.contains("40 step(s) logged of 40 planned (complete)"))
        XCTAssertTrue(md.contains("**Missing:** no checkpoint (`checkpoints/latest.safetensors`)"))
        XCTAssertTrue(md.contains("**Missing:** no propagation results yet"))
        XCTAssertTrue(md.contains("**Missing:** no detection results"))
        XCTAssertTrue(md.contains("```yaml\nseed: 0"))
        XCTAssertTrue(blocks.figureNames.contains("curve-loss.svg"))
        // Through the CLI: files in place, the notebook validates, no temporary folder left.
        let exe = try cycletimeExecutable()
        let out = dir + "-report/r"
        let r = try runProcess(exe, ["report", dir, "--out", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        try checkNotebook(out + "/r.ipynb")
        _ = try validateWithNbformat(out + "/r.ipynb")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/r.md"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/r_files/curve-loss.svg"))
        let siblings = try FileManager.default.contentsOfDirectory(atPath: dir + "-report")
        XCTAssertEqual(siblings, ["r"])
    }

    /// A folder that is not a run directory: one error line naming it, exit status 1, nothing written.
    func testNotARunDirectoryIsAClearError() throws {
        let exe = try cycletimeExecutable()
        let dir = NSTemporaryDirectory() + "/report-tests-\(getpid())/not-a-run"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let out = dir + "-out/x"
        for target in [dir, dir + "/missing"] {
            let r = try runProcess(exe, ["report", target, "--out", out])
            XCTAssertEqual(r.status, 1)
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(target), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        }
        XCTAssertTrue(try runProcess(exe, ["report", dir, "--out", out]).stderr.contains("not a run directory (no config.yaml"))
    }

    /// Propagation from a real evaluation: OSVOS's DAVIS-mini masks placed as the run's results and
    /// scored by `cycletime eval davis`; the section shows the official figures and draws frames.
    func testPropagationSectionFromRealEvaluation() throws {
        let davis = try requireSharedData("davis-mini")
        let exe = try cycletimeExecutable()
        let dir = try makeRunDir("with-propagation", steps: nil)
        let prop = dir + "/propagation/davis"
        try FileManager.default.createDirectory(atPath: prop, withIntermediateDirectories: true)
        for s in ["blackswan", "car-shadow", "dog", "libby"] {
            try FileManager.default.createSymbolicLink(atPath: prop + "/" + s, withDestinationPath: davis + "/results/osvos/" + s)
        }
        let e = try runProcess(exe, ["eval", "davis", "--davis-root", davis, "--results", prop])
        XCTAssertEqual(e.status, 0, e.stderr)
        var o = ReportOptions()
        o.davisRoot = davis
        o.correspondence = false
        let blocks = try Report.blocks(try RunRecord.load(dir), options: o)
        let md = blocks.markdownText
        XCTAssertTrue(md.contains("J&F-Mean **0.8174**"), md)
        XCTAssertTrue(md.contains("| blackswan | 1 | 0.9430 | 0.9741 | 0.9586 |"), md)
        XCTAssertTrue(blocks.figureNames.contains("davis-jf.svg"))
        XCTAssertTrue(blocks.figureNames.contains("davis-frames.png"))
        guard case .figure(let bars)? = blocks.first(where: { if case .figure(let f) = $0 { return f.name == "davis-jf.svg" }; return false }),
              case .svg(let svg) = bars.content else { return XCTFail("no bar chart") }
        let parsed = try ParsedSVG(svg)
        XCTAssertEqual(parsed.bars.map(\.label), ["blackswan", "car-shadow", "dog", "libby"])  // sorted by J&F
    }

    /// Detection from a real AVA evaluation (`ava eval --json`) and its detections CSV.
    func testDetectionSectionFromRealAVAEvaluation() throws {
        let ava = try requireSharedData("ava-mini") + "/eval-golden"
        let exe = try cycletimeExecutable()
        let dir = try makeRunDir("with-ava", steps: nil)
        try FileManager.default.createDirectory(atPath: dir + "/ava", withIntermediateDirectories: true)
        let r = try runProcess(exe, ["ava", "eval", "--gt", ava + "/gt.csv", "--detections", ava + "/pred.csv", "--labelmap", ava + "/action_list.txt", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        try r.stdout.write(toFile: dir + "/ava/eval.json", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: ava + "/pred.csv", toPath: dir + "/ava/detections.csv")
        var o = ReportOptions()
        o.correspondence = false
        let blocks = try Report.blocks(try RunRecord.load(dir), options: o)
        let md = blocks.markdownText
        XCTAssertTrue(md.contains("frame-mAP@0.5IoU **0.0939**"), md)
        XCTAssertTrue(md.contains("are not drawn: pass `--ava-frames FRAMES`"), md)
        guard case .figure(let f)? = blocks.first(where: { if case .figure(let f) = $0 { return f.name.hasPrefix("ava-ap") }; return false }),
              case .svg(let svg) = f.content else { return XCTFail("no AP chart") }
        let values = try ParsedSVG(svg).bars.map(\.value)
        XCTAssertEqual(values, values.sorted(by: >))
        XCTAssertEqual(values.first ?? 0, 0.170455, accuracy: 1e-5)
    }

    /// A run of `cycletime ava train` (AVA config, metrics, `ava eval --json` output) gets curves, its config and per-class AP.
    func testAVARunReportsCurvesConfigAndPerClassAP() throws {
        let ava = try requireSharedData("ava-mini") + "/eval-golden"
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("ava-run") + "/ava-r18-2d-mini"
        try FileManager.default.createDirectory(atPath: dir + "/ava", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: repoRoot + "/experiments/ava-r18-2d-mini.yaml", toPath: dir + "/config.yaml")
        let metrics = (1...6).map { "{\"step\": \($0 * 5), \"loss\": \(1.0 / Double($0)), \"lr\": 0.01, \"grad_norm\": 2.5, \"clips_per_s\": 1.5}\n" }.joined()
        try metrics.write(toFile: dir + "/metrics.jsonl", atomically: true, encoding: .utf8)
        let r = try runProcess(exe, ["ava", "eval", "--gt", ava + "/gt.csv", "--detections", ava + "/pred.csv", "--labelmap", ava + "/action_list.txt", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        try r.stdout.write(toFile: dir + "/ava/eval.json", atomically: true, encoding: .utf8)

        let run = try RunRecord.load(dir)
        XCTAssertTrue(run.isAVA)
        XCTAssertEqual(run.notes, [])
        XCTAssertEqual(run.plannedSteps, 30)
        let blocks = try Report.blocks(run, options: ReportOptions())
        let md = blocks.markdownText
        XCTAssertTrue(md.contains("- objective: ava, backbone 2d (ResNet-18)"), md)
        XCTAssertTrue(md.contains("30 step(s) logged of 30 planned (complete)"), md)
        XCTAssertTrue(md.contains("## Training (AVA detector)"), md)
        XCTAssertTrue(md.contains("```yaml\n# AVA pipeline"), md)
        XCTAssertFalse(md.contains("## Propagation"), md)
        XCTAssertTrue(md.contains("frame-mAP@0.5IoU **0.0939**"), md)
        XCTAssertTrue(blocks.figureNames.contains("curve-loss.svg"))
        guard case .figure(let f)? = blocks.first(where: { if case .figure(let f) = $0 { return f.name.hasPrefix("ava-ap") }; return false }),
              case .svg(let svg) = f.content else { return XCTFail("no AP chart") }
        let values = try ParsedSVG(svg).bars.map(\.value)
        XCTAssertEqual(values.count, 3)
        for (v, expected) in zip(values, [0.170455, 0.111111, 0]) { XCTAssertEqual(v, expected, accuracy: 1e-6) }
        // Through the command line, as `cycletime report RUN`.
        let out = dir + "-report/r"
        let c = try runProcess(exe, ["report", dir, "--out", out])
        XCTAssertEqual(c.status, 0, c.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/r_files/curve-loss.svg"))
    }
}
