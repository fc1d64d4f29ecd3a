import CycleTimeReport
import CycleTimeVideo
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import TestSupport
import XCTest

/// Checks a notebook file: nbformat's validator (when python3 has nbformat) and every embedded
/// image decodes (PNG through libpng, SVG as XML). Returns the number of images checked.
@discardableResult
func checkNotebook(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> Int {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    guard let nb = try JSONSerialization.jsonObject(with: data) as? [String: Any], let cells = nb["cells"] as? [[String: Any]] else {
        XCTFail("\(path): not a JSON notebook", file: file, line: line)
        return 0
    }
    XCTAssertEqual(nb["nbformat"] as? Int, 4, file: file, line: line)
    XCTAssertEqual(nb["nbformat_minor"] as? Int, 5, file: file, line: line)
    var images = 0
    for cell in cells {
        XCTAssertNotNil(cell["id"] as? String, "nbformat 4.5 needs cell ids", file: file, line: line)
        for out in (cell["outputs"] as? [[String: Any]]) ?? [] {
            let d = out["data"] as? [String: Any] ?? [:]
            if let b64 = d["image/png"] as? String {
                guard let png = Data(base64Encoded: b64) else { XCTFail("bad base64", file: file, line: line); continue }
                let tmp = NSTemporaryDirectory() + "/nb-png-\(getpid())-\(images).png"
                try png.write(to: URL(fileURLWithPath: tmp))
                defer { try? FileManager.default.removeItem(atPath: tmp) }
                let img = try Image.readPNG(tmp)
                let meta = (out["metadata"] as? [String: Any])?["image/png"] as? [String: Any]
                XCTAssertEqual(meta?["width"] as? Int, img.width, file: file, line: line)
                XCTAssertEqual(meta?["height"] as? Int, img.height, file: file, line: line)
                images += 1
            }
            if let svg = d["image/svg+xml"] {
                let text = (svg as? [String])?.joined() ?? (svg as? String) ?? ""
                let parser = XMLParser(data: Data(text.utf8))
                XCTAssertTrue(parser.parse(), "SVG does not parse: \(parser.parserError.map { "\($0)" } ?? "")", file: file, line: line)
                XCTAssertTrue(text.hasPrefix("<svg"), file: file, line: line)
                images += 1
            }
        }
    }
    return images
}

/// Runs nbformat's validator on `path` with the python3 on PATH; false (nothing checked) when
/// python3 or its nbformat is missing.
func validateWithNbformat(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> Bool {
    let probe = try runProcess("/usr/bin/env", ["python3", "-c", "import nbformat"])
    if probe.status != 0 { return false }
    let r = try runProcess("/usr/bin/env", ["python3", "-c", "import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))", path])
    XCTAssertEqual(r.status, 0, "nbformat rejects \(path): \(r.stderr)", file: file, line: line)
    return true
}

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
