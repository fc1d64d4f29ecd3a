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

    /// The numbers 0 and 1 are numbers (Foundation on Linux lets them cast to Bool); true and false are not.
    func testMetricsKeepZeroAndOneAndDropBooleans() {
        let (m, _) = MetricsTable.parse("{\"step\": 1, \"loss\": 0, \"acc\": 1.0, \"flag\": true}\n{\"step\": 7, \"loss\": 1, \"acc\": 0.5, \"flag\": false}\n", file: "m.jsonl")
        XCTAssertEqual(m.steps, [1, 7])
        XCTAssertEqual(m.column("loss"), [0, 1])
        XCTAssertEqual(m.column("acc"), [1, 0.5])
        XCTAssertEqual(m.column("flag"), [nil, nil])
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
        // 20 shared steps are fewer than the 21-step trend window: said, not measured.
        XCTAssertTrue(md.contains("Loss against `cmp-a`: `cmp-b` has fewer than 21 shared steps with a loss."), md)
        let c = try RunRecord.load(try makeRunDir("cmp-c", steps: nil))
        let same = Report.compareBlocks([a, c])
        XCTAssertTrue(same.figureNames.contains("compare-loss-agreement.svg"))
        XCTAssertTrue(same.markdownText.contains("| cmp-c | 40 |"), same.markdownText)
        XCTAssertTrue(same.markdownText.contains("| 0 | 0 | 1.000 (reference 1.000) | yes |"), same.markdownText)
    }

    /// Metrics rows `{"step": s, "loss": f(s)}` for the given steps, in the given order.
    private func lossTable(_ steps: [Int], _ f: (Int) -> Double) -> MetricsTable {
        MetricsTable.parse(steps.map { "{\"step\": \($0), \"loss\": \(f($0))}\n" }.joined(), file: "m.jsonl").0
    }

    /// A line falling 0.001 per step plus +-0.1 alternating noise: interior residuals around the
    /// 21-step centred mean are exactly 0.1 (1 - 1/21), so the spread is that within the end effects.
    func testLossAgreementSpreadIsTheReferencesOwnNoise() throws {
        let line = { (s: Int) in 2 - 0.001 * Double(s) + (s % 2 == 0 ? 0.1 : -0.1) }
        let ref = lossTable(Array(1...300), line)
        let same = try XCTUnwrap(LossAgreement.measure(reference: ref, other: ref))
        XCTAssertEqual(same.spread, 0.1 * 20 / 21, accuracy: 0.002)
        XCTAssertEqual(same.maxTrendGap, 0)
        XCTAssertTrue(same.holds)
        XCTAssertEqual(same.withinTwoSpreads, same.referenceWithinTwoSpreads)
        XCTAssertEqual(same.steps, 300)
    }

    /// A constant offset moves every trend point by exactly that offset: half a spread agrees, two do not.
    func testLossAgreementHoldsWithinOneSpreadOfTheReferenceTrend() throws {
        let line = { (s: Int) in 2 - 0.001 * Double(s) + (s % 2 == 0 ? 0.1 : -0.1) }
        let ref = lossTable(Array(1...300), line)
        let near = try XCTUnwrap(LossAgreement.measure(reference: ref, other: lossTable(Array(1...300)) { line($0) + 0.05 }))
        XCTAssertEqual(near.meanTrendGap, 0.05, accuracy: 1e-12)
        XCTAssertEqual(near.maxTrendGap, 0.05, accuracy: 1e-12)
        XCTAssertTrue(near.holds)
        let far = try XCTUnwrap(LossAgreement.measure(reference: ref, other: lossTable(Array(1...300)) { line($0) - 0.4 }))
        XCTAssertEqual(far.meanTrendGap, -0.4, accuracy: 1e-12)
        XCTAssertFalse(far.holds)
        XCTAssertEqual(far.withinTwoSpreads, 0, "every step 0.3 or 0.5 from the reference trend, beyond 2 x 0.095")
    }

    /// Steps are matched by number: rows in another order, steps only one run logged and
    /// non-finite losses change nothing; fewer shared steps than the window measure nothing.
    func testLossAgreementMatchesStepsByNumberNotByRow() throws {
        let line = { (s: Int) in 2 - 0.001 * Double(s) + (s % 2 == 0 ? 0.1 : -0.1) }
        let ref = lossTable(Array(1...100), line)
        let expected = try XCTUnwrap(LossAgreement.measure(reference: ref, other: lossTable(Array(1...100)) { line($0) + 0.03 }))
        let shuffled = lossTable(Array((1...130).reversed())) { line($0) + 0.03 }
        XCTAssertEqual(LossAgreement.measure(reference: ref, other: shuffled), expected)
        XCTAssertNil(LossAgreement.measure(reference: ref, other: lossTable(Array(90...130), line)))
        XCTAssertNil(LossAgreement.measure(reference: lossTable(Array(1...50)) { _ in 1 }, other: ref), "a constant reference has no spread")
    }
}
