import Foundation
import XCTest
@testable import CycleTimeDetection
import TestSupport

final class AVAFormatsTests: XCTestCase {
    func write(_ text: String, _ name: String) throws -> String {
        let p = temporaryDirectory() + "/" + name
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    func assertError(_ body: @autoclosure () throws -> Any, contains parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { e in
            for p in parts { XCTAssert("\(e)".contains(p), "'\(e)' lacks '\(p)'", file: file, line: line) }
        }
    }

    /// The mmaction2 sample: rows of one box grouped, the unknown action 74 skipped and reported,
    /// "0902" read as 902.
    func testSampleAnnotationsGroupedWithReportedSkips() throws {
        let dir = try requireSharedData("ava-mini/sample")
        let labels = try AVALabelMap.read(dir + "/action_list.txt")
        XCTAssertEqual(labels.ids, [12, 17, 79, 80])
        let csv = try AVACSV.read(dir + "/ava_sample.csv", labelMap: labels)
        XCTAssertEqual(csv.rows.count, 7)
        XCTAssertEqual(csv.skippedActions, [74: 1])
        XCTAssert(csv.skipReport.contains("skipped 1 row with action ids not in the label map: 74 (1 row)"), csv.skipReport)
        XCTAssertEqual(csv.keys, [AVAKey("0f39OWEqJ24", 902), AVAKey("0f39OWEqJ24", 903), AVAKey("_-Z6wFjXtGQ", 902)])
        let g = csv.groupedBoxes()
        XCTAssertEqual(g[AVAKey("0f39OWEqJ24", 902)], [LabeledBox(box: AVABox(0.031, 0.162, 0.670, 0.995), personID: 0, actions: [12, 17, 79])])
        XCTAssertEqual(g[AVAKey("0f39OWEqJ24", 903)]?.first?.actions, [12, 17])
        XCTAssertEqual(g[AVAKey("_-Z6wFjXtGQ", 902)]?.first?.actions, [12, 80])
        // Without a label map nothing is skipped.
        XCTAssertEqual(try AVACSV.read(dir + "/ava_sample.csv").rows.count, 8)
    }

    func testSampleExcludedAndProposals() throws {
        let dir = try requireSharedData("ava-mini/sample")
        let ex = try readAVAExcluded(dir + "/ava_excluded_timestamps_sample.csv")
        XCTAssertEqual(ex, [AVAKey("0f39OWEqJ24", 903), AVAKey("_-Z6wFjXtGQ", 902)])
        let p = try AVAProposals.read(dir + "/ava_proposals_sample.json")
        XCTAssertEqual(p.boxes.count, 3)
        // The 0.281 proposal is below 0.9 and dropped; the other two stay in file order.
        let s = try XCTUnwrap(p.select(AVAKey("_-Z6wFjXtGQ", 902), threshold: 0.9))
        XCTAssertEqual(s.map(\.score), [0.994488, 0.996238])
        // A keyframe whose best proposal is below the threshold keeps its best one (mmaction2).
        XCTAssertEqual(p.select(AVAKey("_-Z6wFjXtGQ", 902), threshold: 0.999)?.map(\.score), [0.996238])
        // A keyframe without proposals is reported, never given a whole-frame box.
        let plan = p.select([AVAKey("0f39OWEqJ24", 902), AVAKey("0f39OWEqJ24", 904)], threshold: 0.9)
        XCTAssertEqual(plan.missing, [AVAKey("0f39OWEqJ24", 904)])
        XCTAssertEqual(plan.selected.count, 1)
    }

    /// All three label-map forms: the official pbtxt, mmaction2's `id: name`, and `label { }` blocks.
    func testLabelMapForms() throws {
        let root = try requireSharedData("ava-mini")
        let official = try AVALabelMap.read(root + "/ava_action_list_v2.1_for_activitynet_2018.pbtxt")
        let text = try AVALabelMap.read(root + "/label_map.txt")
        XCTAssertEqual(official.entries.count, 60)
        XCTAssertEqual(official.entries, text.entries)
        XCTAssertEqual(official.name(of: 1), "bend/bow (at the waist)")
        let labelForm = try write("""
            label {
              name: "bend/bow (at the waist)"
              label_id: 1
              label_type: PERSON_MOVEMENT
            }
            label {
              name: "answer phone"
              label_id: 80
              label_type: PERSON_INTERACTION
            }
            """, "labels.pbtxt")
        XCTAssertEqual(try AVALabelMap.read(labelForm).entries, [.init(id: 1, name: "bend/bow (at the waist)"), .init(id: 80, name: "answer phone")])
    }

    func testLabelMapErrors() throws {
        let truncated = try write("item {\n  name: \"a\"\n  id: 1\n}\nitem {\n  name: \"b\"\n", "t.pbtxt")
        assertError(try AVALabelMap.read(truncated), contains: ["t.pbtxt:5", "not closed"])
        let noID = try write("item {\n  name: \"a\"\n}\n", "n.pbtxt")
        assertError(try AVALabelMap.read(noID), contains: ["n.pbtxt:1", "without an id"])
        let dup = try write("1: a\n1: b\n", "d.txt")
        assertError(try AVALabelMap.read(dup), contains: ["d.txt", "duplicate class id 1"])
        let bad = try write("1: a\nfoo\n", "b.txt")
        assertError(try AVALabelMap.read(bad), contains: ["b.txt:2", "expected 'id: name'"])
        assertError(try AVALabelMap.read(try write("\n", "e.txt")), contains: ["e.txt", "empty label map"])
        assertError(try AVALabelMap.read("/nonexistent/x.pbtxt"), contains: ["/nonexistent/x.pbtxt", "no such"])
    }

    /// Malformed rows: the error names file, line and field.
    func testMalformedCSVRows() throws {
        let ok = "v,0902,0.1,0.1,0.5,0.5,12,0\n"
        assertError(try AVACSV.read(try write(ok + "v,0902,0.1,0.1,0.5\n", "a.csv")), contains: ["a.csv:2", "got 5"])
        assertError(try AVACSV.read(try write(ok + "v,09x2,0.1,0.1,0.5,0.5,12,0\n", "b.csv")), contains: ["b.csv:2", "timestamp '09x2'"])
        assertError(try AVACSV.read(try write(ok + "v,0902,0.1,zz,0.5,0.5,12,0\n", "c.csv")), contains: ["c.csv:2", "field y1 'zz'"])
        assertError(try AVACSV.read(try write(ok + "v,0902,0.1,0.1,0.5,0.5,run,0\n", "d.csv")), contains: ["d.csv:2", "action_id 'run'"])
        assertError(try AVACSV.read(try write("v,0902,0.1,0.1,0.5,0.5,12\n", "e.csv"), scoreColumn: true), contains: ["e.csv:1", "missing score"])
        assertError(try AVACSV.read(try write(",0902,0.1,0.1,0.5,0.5,12,0\n", "f.csv")), contains: ["f.csv:1", "empty video_id"])
        assertError(try AVACSV.read(try write("", "g.csv")), contains: ["g.csv", "empty AVA CSV"])
        assertError(try readAVAExcluded(try write("v,0902,1\n", "x.csv")), contains: ["x.csv:1", "expected 2 fields"])
    }

    /// The LFB/PySlowFast proposal CSV (one row per box, action column empty) and proposal errors.
    func testProposalCSVAndErrors() throws {
        let csv = try write("""
            1j20qq1JyX4,0902,0.002,0.118,0.714,0.977,,0.996513
            1j20qq1JyX4,0902,0.002,0.118,0.714,0.977,,0.996513
            1j20qq1JyX4,902,0.5,0.1,0.9,0.9,,0.5
            """, "p.csv")
        let p = try AVAProposals.read(csv)
        XCTAssertEqual(p.boxes[AVAKey("1j20qq1JyX4", 902)]?.map(\.score), [0.996513, 0.5])
        assertError(try AVAProposals.read(try write("{\"v,0902\": [[0.1, 0.2, 0.3]]}", "p1.json")), contains: ["p1.json", "key 'v,0902', box 0"])
        assertError(try AVAProposals.read(try write("{\"v0902\": []}", "p2.json")), contains: ["p2.json", "key 'v0902'"])
        assertError(try AVAProposals.read(try write("{\"v,0902\": [[0.1, 0.2, 0.3, 0.4, 0.9]", "p3.json")), contains: ["p3.json", "malformed JSON"])
        assertError(try AVAProposals.read(try write("v,0902,0.1,0.1,0.5,0.5,0.9\n", "p4.csv")), contains: ["p4.csv:1", "expected 8 fields"])
    }

    /// `ava test --boxes gt`: the annotation's boxes, each once per keyframe, score 1.
    func testGroundTruthBoxesAsProposalsKeepEachBoxOnce() throws {
        let dir = temporaryDirectory("gt-proposals")
        try "v,0902,0.1,0.2,0.5,0.9,12,0\nv,0902,0.1,0.2,0.5,0.9,17,0\nv,0902,0.6,0.2,0.9,0.9,12,1\nv,0903,0.1,0.2,0.5,0.9,12,0\n"
            .write(toFile: dir + "/gt.csv", atomically: true, encoding: .utf8)
        let p = AVAProposals.groundTruth(try AVACSV.read(dir + "/gt.csv"))
        XCTAssertEqual(p.boxes[AVAKey("v", 902)], [ScoredBox(AVABox(0.1, 0.2, 0.5, 0.9), score: 1), ScoredBox(AVABox(0.6, 0.2, 0.9, 0.9), score: 1)])
        XCTAssertEqual(p.boxes[AVAKey("v", 903)]?.count, 1)
        XCTAssertEqual(p.select(AVAKey("v", 902), threshold: 0.9)?.count, 2)
    }

    /// Proposals written as JSON and as the LFB/PySlowFast CSV (chosen by the extension) read back
    /// through `read` as the same boxes and scores (6 decimals); a keyframe without boxes stays in
    /// the JSON as an empty list and has no CSV row.
    func testWrittenProposalsReadBackInBothFormats() throws {
        let dir = temporaryDirectory("proposals-write")
        let boxes: [AVAKey: [ScoredBox]] = [
            AVAKey("1j20qq1JyX4", 902): [ScoredBox(AVABox(0.002, 0.118, 0.714, 0.977), score: 0.996513), ScoredBox(AVABox(0.5, 0.1, 0.9, 0.9), score: 0.5)],
            AVAKey("1j20qq1JyX4", 903): [ScoredBox(AVABox(0.25, 0.125, 0.75, 1), score: 0.731058)],
            AVAKey("_-Z6wFjXtGQ", 1800): [],
        ]
        let p = AVAProposals(path: "x", boxes: boxes)
        try p.write(to: dir + "/p.json")
        try p.write(to: dir + "/p.csv")
        XCTAssertEqual(try AVAProposals.read(dir + "/p.json").boxes, boxes)
        XCTAssertEqual(try AVAProposals.read(dir + "/p.csv").boxes, boxes.filter { !$0.value.isEmpty })
        XCTAssertTrue(try String(contentsOfFile: dir + "/p.csv", encoding: .utf8).hasPrefix("1j20qq1JyX4,0902,0.002000,0.118000,0.714000,0.977000,,0.996513\n"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["p.csv", "p.json"])
    }
}
