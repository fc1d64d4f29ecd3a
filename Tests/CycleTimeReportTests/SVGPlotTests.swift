import CycleTimeReport
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import TestSupport
import XCTest


final class SVGPlotTests: XCTestCase {
    func testNiceAxisCoversDataWithRoundTicks() {
        let a = NiceAxis(lo: 0.013, hi: 0.437)
        XCTAssertLessThanOrEqual(a.lo, 0.013)
        XCTAssertGreaterThanOrEqual(a.hi, 0.437)
        XCTAssertEqual(a.step, 0.1, accuracy: 1e-12)
        XCTAssertEqual(a.ticks.map(a.label), ["0.0", "0.1", "0.2", "0.3", "0.4", "0.5"])
        let flat = NiceAxis(lo: 2e-4, hi: 2e-4)  // a constant learning rate still gets a range
        XCTAssertLessThan(flat.lo, 2e-4)
        XCTAssertGreaterThan(flat.hi, 2e-4)
        XCTAssertEqual(Double(flat.label(flat.ticks[1]))!, flat.ticks[1], accuracy: flat.step * 1e-6)
    }

    func testSmoothingIsDebiasedEMAAndKeepsGaps() {
        let s = smoothed([1, nil, 3], weight: 0.5)
        XCTAssertEqual(s[0]!, 1, accuracy: 1e-12)
        XCTAssertNil(s[1])
        XCTAssertEqual(s[2]!, (0.5 * 0.5 + 0.5 * 3) / 0.75, accuracy: 1e-12)
    }

    /// Curves regenerated from a real run's metrics.jsonl: every raw polyline point maps back,
    /// through the drawn tick labels, to the logged value; axes, title and legend are there.
    func testCurvesMatchMetricsAndAxesAreLabelled() throws {
        let path = repoRoot + "/Tests/Fixtures/report/timecycle-r18-smoke-metrics.jsonl"
        let (m, notes) = MetricsTable.parse(try String(contentsOfFile: path, encoding: .utf8), file: path)
        XCTAssertTrue(notes.isEmpty)
        XCTAssertEqual(m.rows.count, 40)
        let plots = Report.curvePlots(m, gradClip: 10)
        XCTAssertEqual(Array(plots.map(\.0).prefix(4)), ["loss", "loss_long", "loss_skip", "loss_inlier"])
        for k in ["lr", "grad_norm", "clips_per_s", "data_wait", "step_time"] { XCTAssertTrue(plots.contains { $0.0 == k }, k) }
        for (key, plot) in plots where key != "step_time" {
            let svg = try ParsedSVG(plot.svg())
            XCTAssertFalse(svg.title.isEmpty)
            XCTAssertEqual(svg.xLabel, "step (optimizer updates)")
            XCTAssertFalse(svg.yLabel.isEmpty, key)
            XCTAssertGreaterThanOrEqual(svg.xticks.count, 2)
            XCTAssertGreaterThanOrEqual(svg.yticks.count, 2)
            let name = key == "lr" ? "lr" : "\(key) (raw)"
            let lines = svg.polylines.filter { $0.series == name }
            XCTAssertEqual(lines.count, 1, "\(key): one polyline for \(name)")
            let pts = lines.first?.points ?? []
            XCTAssertEqual(pts.count, m.rows.count, key)
            let ys = m.column(key).map { $0! }, yspan = plot.yAxis.hi - plot.yAxis.lo
            for (i, p) in pts.enumerated() {
                let d = svg.data(p)
                XCTAssertEqual(d.0, m.steps[i], accuracy: 0.01, "\(key) step of point \(i)")
                XCTAssertEqual(d.1, ys[i], accuracy: yspan * 1e-4, "\(key) value at step \(i + 1)")
            }
            if key != "lr" { XCTAssertEqual(svg.polylines.filter { $0.series.hasPrefix("\(key) (smoothed") }.count, 1, key) }
        }
    }

    /// The smoke run's metrics with validation scores (the `eval:` section's val_* fields) added to
    /// every 10th row: the validation figures against steps and against training hours (the sum
    /// of step_s) map back to the logged scores; the training curves are unchanged (val_* are not terms).
    func testValidationCurvesMatchTheValidationRowsAgainstStepsAndTrainingHours() throws {
        let path = repoRoot + "/Tests/Fixtures/report/timecycle-r18-smoke-metrics.jsonl"
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        var text = ""
        for (i, line) in lines.enumerated() {
            let s = i + 1
            text += s % 10 == 0 ? line.dropLast() + ", \"val_jf\": \(0.5 + Double(s) / 400), \"val_j\": \(0.52 + Double(s) / 400), \"val_f\": \(0.48 + Double(s) / 400), \"val_s\": 3.5}\n" : line + "\n"
        }
        let (m, notes) = MetricsTable.parse(text, file: "metrics.jsonl")
        XCTAssertTrue(notes.isEmpty)
        XCTAssertEqual(Report.terms(m), ["loss", "loss_long", "loss_skip", "loss_inlier"])
        let plots = Report.validationPlots(m)
        XCTAssertEqual(plots.map(\.0), ["validation", "validation-hours"])
        var hours: [Double] = [], total = 0.0
        for r in m.rows { total += r["step_s"]!; hours.append(total / 3600) }
        for (name, plot) in plots {
            let svg = try ParsedSVG(plot.svg())
            XCTAssertEqual(svg.xLabel, name == "validation" ? "step (optimizer updates)" : "training hours (sum of step times)")
            let xspan = plot.xAxis.hi - plot.xAxis.lo, yspan = plot.yAxis.hi - plot.yAxis.lo
            for (k, offset) in [("val_jf", 0.5), ("val_j", 0.52), ("val_f", 0.48)] {
                let pts = try XCTUnwrap(svg.polylines.first { $0.series.hasPrefix(k + " (") }).points
                XCTAssertEqual(pts.count, 4, "\(name) \(k): one point per validation (steps 10, 20, 30, 40)")
                for (i, p) in pts.enumerated() {
                    let s = 10 * (i + 1), d = svg.data(p)
                    XCTAssertEqual(d.0, name == "validation" ? Double(s) : hours[s - 1], accuracy: xspan * 1e-4, "\(name) \(k) x of step \(s)")
                    XCTAssertEqual(d.1, offset + Double(s) / 400, accuracy: yspan * 1e-4, "\(name) \(k) at step \(s)")
                }
            }
        }
        XCTAssertTrue(Report.validationPlots(MetricsTable.parse(lines.joined(separator: "\n"), file: "m").0).isEmpty, "no validation rows, no figure")
    }

    /// The tracker diagnostics' figures plot exactly the diagnostic rows (read back from the SVG),
    /// each with its dashed reference; the training terms leave the diagnostics out.
    func testDiagnosticsCurvesMatchTheDiagnosticRowsWithTheirReferences() throws {
        let path = repoRoot + "/Tests/Fixtures/report/timecycle-r18-smoke-metrics.jsonl"
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        let keys = ["diag_entropy", "diag_entropy_uniform", "diag_argmax_1cell", "diag_argmax_chance", "diag_direct", "diag_skip",
                    "diag_long", "diag_direct_const", "diag_skip_const"]
        func value(_ k: String, _ s: Int) -> Double { Double(keys.firstIndex(of: k) ?? 0) / 10 + Double(s) / 1000 }
        var text = ""
        for (i, line) in lines.enumerated() {
            let s = i + 1
            text += s % 10 == 0 ? line.dropLast() + ", " + keys.map { "\"\($0)\": \(value($0, s))" }.joined(separator: ", ") + ", \"diag_s\": 2.5}\n" : line + "\n"
        }
        let (m, notes) = MetricsTable.parse(text, file: "metrics.jsonl")
        XCTAssertTrue(notes.isEmpty)
        XCTAssertEqual(Report.terms(m), ["loss", "loss_long", "loss_skip", "loss_inlier"])
        let plots = Report.diagnosticsPlots(m)
        XCTAssertEqual(plots.map(\.name), ["diag-entropy", "diag-argmax", "diag-localizer"])
        XCTAssertTrue(plots.allSatisfy { !$0.reading.isEmpty })
        for d in plots {
            let svg = try ParsedSVG(d.plot.svg())
            let yspan = d.plot.yAxis.hi - d.plot.yAxis.lo, xspan = d.plot.xAxis.hi - d.plot.xAxis.lo
            XCTAssertFalse(svg.polylines.isEmpty)
            for line in svg.polylines {
                XCTAssertTrue(keys.contains(line.series), line.series)
                XCTAssertEqual(line.points.count, 4, "\(line.series): one point per diagnostic (steps 10, 20, 30, 40)")
                for (i, p) in line.points.enumerated() {
                    let s = 10 * (i + 1), v = svg.data(p)
                    XCTAssertEqual(v.0, Double(s), accuracy: xspan * 1e-4)
                    XCTAssertEqual(v.1, value(line.series, s), accuracy: yspan * 1e-4, "\(line.series) at step \(s)")
                }
            }
        }
        XCTAssertEqual(Set(plots.flatMap { d in d.plot.series.map(\.name) }), Set(keys))
        XCTAssertTrue(plots.flatMap(\.plot.series).filter { $0.name.hasSuffix("_const") || $0.name.hasSuffix("_uniform") || $0.name.hasSuffix("_chance") }
            .allSatisfy(\.dashed), "references are dashed")
        XCTAssertTrue(Report.diagnosticsPlots(MetricsTable.parse(lines.joined(separator: "\n"), file: "m").0).isEmpty, "no diagnostic rows, no figure")
    }

    /// The committed report of the smoke run: its curve figures are exactly what metrics.jsonl gives.
    func testCommittedSmokeReportCurvesAreRegenerated() throws {
        let dir = repoRoot + "/notebooks-export/timecycle-r18-smoke/timecycle-r18-smoke_files"
        let path = repoRoot + "/Tests/Fixtures/report/timecycle-r18-smoke-metrics.jsonl"
        let (m, _) = MetricsTable.parse(try String(contentsOfFile: path, encoding: .utf8), file: path)
        for (key, plot) in Report.curvePlots(m, gradClip: 10) {
            let committed = try String(contentsOfFile: dir + "/curve-\(key).svg", encoding: .utf8)
            XCTAssertEqual(committed, plot.svg(), "curve-\(key).svg differs from the curves of metrics.jsonl")
        }
    }

    func testBarChartSortsAndLabels() throws {
        let c = BarChart(title: "J&F", xLabel: "sequence", yLabel: "J&F", bars: [("a", 0.2), ("b", 0.9), ("c", 0.5)], range: 0...1)
        let svg = try ParsedSVG(c.svg())
        XCTAssertEqual(svg.bars.map(\.label), ["b", "c", "a"])
        XCTAssertEqual(svg.bars.map(\.value), [0.9, 0.5, 0.2])
        XCTAssertEqual(svg.title, "J&F")
        XCTAssertEqual(svg.xLabel, "sequence")
        XCTAssertEqual(svg.yticks.first?.value, 0)
        XCTAssertEqual(svg.yticks.last?.value, 1)
    }

    func testMissingValuesBreakTheLineAndTextIsEscaped() throws {
        var p = LinePlot(title: "a <b> & c", xLabel: "x", yLabel: "y")
        p.series.append(PlotSeries(name: "s", x: [1, 2, 3, 4, 5], y: [1, 2, nil, 4, 5], color: "#000"))
        let svg = try ParsedSVG(p.svg())
        XCTAssertEqual(svg.title, "a <b> & c")
        XCTAssertEqual(svg.polylines.map(\.points.count), [2, 2])
    }
}
