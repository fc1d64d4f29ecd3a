import CycleTimeReport
import CycleTimeVideo
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import TestSupport
import XCTest

let noNbformat = "python3 has no nbformat (pip install nbformat): the nbformat validation was skipped (images were checked)"

final class NotebookTests: XCTestCase {
    func testSourceLinesKeepNewlines() {
        let nbJSON = try? Notebook.json([.markdown("a\nb\n")], title: "t")
        let nb = nbJSON.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        let cell = (nb?["cells"] as? [[String: Any]])?.first
        XCTAssertEqual(cell?["source"] as? [String], ["a\n", "b\n"])
        XCTAssertEqual(cell?["cell_type"] as? String, "markdown")
    }

    func testNotebookWithEveryOutputKindValidatesAndImagesDecode() throws {
        var canvas = Canvas(width: 30, height: 20, fill: .white)
        canvas.text("OK", x: 2, y: 2, .black)
        var plot = LinePlot(title: "t", xLabel: "step", yLabel: "loss")
        plot.series.append(PlotSeries(name: "loss", x: [1, 2, 3], y: [3, 2, 1], color: "#000"))
        let blocks: [ReportBlock] = [.markdown("# Title\n\ntext with | and `code`"), .figure(.svg("plot", "a plot", plot.svg())),
                                     .figure(try .png("grid", "a grid", canvas))]
        let dir = NSTemporaryDirectory() + "/nb-test-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (nbPath, mdPath) = try ReportWriter.write(blocks, title: "test", to: dir + "/demo")
        XCTAssertEqual(try checkNotebook(nbPath), 2)
        let md = try String(contentsOfFile: mdPath, encoding: .utf8)
        XCTAssertTrue(md.contains("![a plot](demo_files/plot.svg)"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/demo/demo_files/grid.png"))
        // Same blocks, same bytes.
        XCTAssertEqual(try Notebook.json(blocks, title: "test"), try Notebook.json(blocks, title: "test"))
        if try !validateWithNbformat(nbPath) { throw XCTSkip(noNbformat) }
    }

    /// The committed smoke-run report validates and every image in it decodes.
    func testCommittedSmokeReportValidates() throws {
        let p = repoRoot + "/notebooks-export/timecycle-r18-smoke/timecycle-r18-smoke.ipynb"
        let n = try checkNotebook(p)
        XCTAssertGreaterThanOrEqual(n, 10, "curves, correspondence, propagation figures")
        if try !validateWithNbformat(p) { throw XCTSkip(noNbformat) }
    }
}
