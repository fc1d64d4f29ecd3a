import CycleTimeReport
import Foundation
import TestSupport
import XCTest

/// The propagation sections read the files `cycletime eval jhmdb|vip` write, through the command line.
final class ReportPropagationTests: XCTestCase {
    /// A JSON object file written by `cycletime eval`, read here independently of the report.
    func jsonObject(_ path: String) throws -> [String: Any] {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: path), "\(path) is missing")
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(path) is not a JSON object")
    }

    /// The rows `| first | number |` of the Markdown tables in `md` whose first cell starts with `prefix`.
    func tableValues(_ md: String, prefix: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in md.split(separator: "\n") where line.hasPrefix("| " + prefix) {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            if cells.count == 2, let v = Double(cells[1]) { out[cells[0]] = v }
        }
        return out
    }

    /// `cycletime propagate TASK` from a random encoder into `results`, then `cycletime eval TASK` on them.
    func propagateAndEvaluate(_ task: String, root: String, results: String, _ exe: String) throws {
        let p = try runProcess(exe, ["propagate", task, "--random-init", "--seed", "0", "--root", root, "--out", results])
        XCTAssertEqual(p.status, 0, p.stderr)
        let e = try runProcess(exe, ["eval", task, "--root", root, "--results", results])
        XCTAssertEqual(e.status, 0, e.stderr)
    }

    func report(_ run: String, _ exe: String) throws -> String {
        let out = run + "-report/r"
        let r = try runProcess(exe, ["report", run, "--out", out, "--no-correspondence"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return try String(contentsOfFile: out + "/r.md", encoding: .utf8)
    }

    /// JHMDB-mini propagated from a random encoder and scored: the report's PCK table holds pck.json's value at each threshold.
    func testJHMDBSectionTabulatesPCKAtEachThresholdOfTheEvaluation() throws {
        let jhmdb = try requireSharedData("jhmdb-mini")
        let exe = try cycletimeExecutable()
        let run = try makeRunDir("jhmdb-run", steps: nil, in: temporaryDirectory())
        let results = run + "/propagation/jhmdb"
        try propagateAndEvaluate("jhmdb", root: jhmdb, results: results, exe)
        let pck = try jsonObject(results + "/pck.json")
        let thresholds = try XCTUnwrap(pck["thresholds"] as? [Double]), values = try XCTUnwrap(pck["pck"] as? [Double])
        XCTAssertEqual(thresholds, [0.1, 0.2, 0.3, 0.4, 0.5])

        let md = try report(run, exe)
        XCTAssertTrue(md.contains("### JHMDB\n\nFrom `pck.json`"), md)
        let table = tableValues(md, prefix: "PCK@")
        XCTAssertEqual(table.count, thresholds.count, md)
        for (t, v) in zip(thresholds, values) {
            let shown = try XCTUnwrap(table["PCK@" + String(format: "%g", t)], "no row for PCK@\(t)")
            XCTAssertEqual(shown, v, accuracy: 5e-5, "PCK@\(t)")
        }
    }

    /// A tiny VIP folder (DAVIS-mini's first blackswan frames and masks in the VIP layout), propagated and
    /// scored: the report shows miou.json's mIoU and a bar per class present.
    func testVIPSectionShowsTheMIoUOfTheEvaluation() throws {
        let davis = try requireSharedData("davis-mini")
        let exe = try cycletimeExecutable()
        let vip = temporaryDirectory("vip-root")
        let fm = FileManager.default
        for d in ["Images/blackswan", "Annotations/Category_ids/blackswan"] {
            try fm.createDirectory(atPath: vip + "/" + d, withIntermediateDirectories: true)
        }
        for f in 0..<5 {
            let stem = String(format: "%05d", f)
            try fm.createSymbolicLink(atPath: "\(vip)/Images/blackswan/\(stem).jpg", withDestinationPath: "\(davis)/JPEGImages/480p/blackswan/\(stem).jpg")
            try fm.createSymbolicLink(atPath: "\(vip)/Annotations/Category_ids/blackswan/\(stem).png",
                                      withDestinationPath: "\(davis)/Annotations/480p/blackswan/\(stem).png")
        }
        let run = try makeRunDir("vip-run", steps: nil, in: temporaryDirectory())
        let results = run + "/propagation/vip"
        try propagateAndEvaluate("vip", root: vip, results: results, exe)
        let miou = try jsonObject(results + "/miou.json")
        let mean = try XCTUnwrap(miou["miou"] as? Double, "miou.json has no number 'miou'")
        XCTAssertEqual(try XCTUnwrap(miou["per_class"] as? [Any]).count, 20)

        let md = try report(run, exe)
        XCTAssertFalse(md.contains("**Missing:** `propagation/vip/miou.json`"), md)
        let table = tableValues(md, prefix: "")
        XCTAssertEqual(try XCTUnwrap(table["**mIoU**"], md), mean, accuracy: 5e-5)
        XCTAssertNotNil(table["0"], "background IoU row")
        XCTAssertNotNil(table["1"], "object IoU row")
        XCTAssertTrue(fm.fileExists(atPath: run + "-report/r/r_files/vip-iou.svg"))
    }
}
