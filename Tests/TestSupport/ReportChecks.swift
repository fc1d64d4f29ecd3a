import CycleTimeVideo
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest

// Checks of report outputs (notebooks, SVG plots), shared by the report library tests and the
// tests of `cycletime report`.

/// Checks a notebook file: nbformat's validator (when python3 has nbformat) and every embedded
/// image decodes (PNG through libpng, SVG as XML). Returns the number of images checked.
@discardableResult
public func checkNotebook(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> Int {
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
public func validateWithNbformat(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> Bool {
    let probe = try runProcess("/usr/bin/env", ["python3", "-c", "import nbformat"])
    if probe.status != 0 { return false }
    let r = try runProcess("/usr/bin/env", ["python3", "-c", "import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))", path])
    XCTAssertEqual(r.status, 0, "nbformat rejects \(path): \(r.stderr)", file: file, line: line)
    return true
}

/// Reads an SVG back: tick labels and positions, axis labels, polylines by series name.
public struct ParsedSVG {
    public var xticks: [(pos: Double, value: Double)] = []
    public var yticks: [(pos: Double, value: Double)] = []
    public var xLabel = "", yLabel = "", title = ""
    public var polylines: [(series: String, points: [(Double, Double)])] = []
    public var bars: [(label: String, value: Double)] = []

    public init(_ svg: String) throws {
        final class Delegate: NSObject, XMLParserDelegate {
            var out: ParsedSVG
            var currentClass: String?, currentAttrs: [String: String] = [:], text = ""
            init(_ o: ParsedSVG) { out = o }
            func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                        attributes: [String: String] = [:]) {
                if name == "text" { currentClass = attributes["class"]; currentAttrs = attributes; text = "" }
                if name == "polyline", let s = attributes["data-series"], let p = attributes["points"] {
                    let pts = p.split(separator: " ").map { pair -> (Double, Double) in
                        let xy = pair.split(separator: ",").compactMap { Double($0) }
                        return (xy[0], xy[1])
                    }
                    out.polylines.append((s, pts))
                }
                if name == "rect", let l = attributes["data-label"], let v = attributes["data-value"].flatMap(Double.init) {
                    out.bars.append((l, v))
                }
            }
            func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }
            func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
                guard name == "text" else { return }
                switch currentClass {
                case "xtick": if let v = Double(text), let x = currentAttrs["x"].flatMap(Double.init) { out.xticks.append((x, v)) }
                case "ytick": if let v = Double(text), let y = currentAttrs["y"].flatMap(Double.init) { out.yticks.append((y - 4, v)) }
                case "xlabel": out.xLabel = text
                case "ylabel": out.yLabel = text
                case "title": out.title = text
                default: break
                }
                currentClass = nil
            }
        }
        let d = Delegate(self)
        let p = XMLParser(data: Data(svg.utf8))
        p.delegate = d
        guard p.parse() else { throw SVGParseError(description: "SVG does not parse as XML: \(p.parserError.map { "\($0)" } ?? "?")") }
        self = d.out
    }

    /// Data coordinates of a pixel, through the first and last tick of each axis.
    public func data(_ p: (Double, Double)) -> (Double, Double) {
        let (x0, x1) = (xticks.first!, xticks.last!), (y0, y1) = (yticks.first!, yticks.last!)
        return (x0.value + (p.0 - x0.pos) / (x1.pos - x0.pos) * (x1.value - x0.value),
                y0.value + (p.1 - y0.pos) / (y1.pos - y0.pos) * (y1.value - y0.value))
    }
}

/// An SVG that does not parse as XML.
public struct SVGParseError: Error, CustomStringConvertible {
    public let description: String
}
