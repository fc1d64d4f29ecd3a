import CycleTimeReport
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest



final class ReportTests: XCTestCase {
    override class func tearDown() {
        try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "/report-tests-\(getpid())")
    }

    func testMetricsKeepLoggedKeyOrderAndSkipBadLines() {
        let (m, notes) = MetricsTable.parse("{\"step\": 1, \"loss\": 2, \"b\": null, \"a\": 3}\n{\"step\": 2, \"lo", file: "m.jsonl")
        XCTAssertEqual(m.keys, ["step", "loss", "b", "a"])
        XCTAssertEqual(m.rows.count, 1)
        XCTAssertEqual(m.column("b"), [nil])
        XCTAssertEqual(notes, ["m.jsonl line 2 is not a JSON object (skipped)"])
        XCTAssertEqual(Report.terms(m), ["loss", "b", "a"])
    }

    /// An interrupted run: 7 of 40 steps, a half-written last line, no checkpoint yet; and one with no step logged.
    func testInterruptedRunsRender() throws {
        let dir = try makeRunDir("interrupted", steps: 7, partialLine: true)
        let run = try RunRecord.load(dir)
        XCTAssertEqual(run.metrics.rows.count, 7)
        let md = try Report.blocks(run, options: ReportOptions()).markdownText
        XCTAssertTrue(md.contains("7 step(s) logged of 40 planned (interrupted or still running)"))
        XCTAssertTrue(md.contains("metrics.jsonl line 8 is not a JSON object (skipped)"))
        XCTAssertTrue(md.contains("no checkpoint"))

        let empty = try makeRunDir("empty-metrics", steps: 0)
        let md2 = try Report.blocks(try RunRecord.load(empty), options: ReportOptions()).markdownText
        XCTAssertTrue(md2.contains("**Missing:** `metrics.jsonl` is empty"))
        let none = try makeRunDir("no-metrics", steps: nil, metrics: false)
        let md3 = try Report.blocks(try RunRecord.load(none), options: ReportOptions()).markdownText
        XCTAssertTrue(md3.contains("**Missing:** no `metrics.jsonl`"))
    }

    func testCompareTwoRuns() throws {
        let a = try RunRecord.load(try makeRunDir("cmp-a", steps: nil)), b = try RunRecord.load(try makeRunDir("cmp-b", steps: 20))
        let blocks = Report.compareBlocks([a, b])
        XCTAssertTrue(blocks.figureNames.contains("compare-loss.svg"))
        let md = blocks.markdownText
        XCTAssertTrue(md.contains("| cmp-a | timecycle | resnet18 | 40 |"), md)
        XCTAssertTrue(md.contains("| cmp-b | timecycle | resnet18 | 20 |"), md)
        guard case .figure(let f)? = blocks.first(where: { if case .figure(let f) = $0 { return f.name == "compare-loss.svg" }; return false }),
              case .svg(let svg) = f.content else { return XCTFail("no comparison plot") }
        XCTAssertEqual(try ParsedSVG(svg).polylines.map(\.series), ["cmp-a", "cmp-b"])
    }
}
