import Foundation
import XCTest
@testable import CycleTimeReport
import CycleTimeCore
import CycleTimeDetection
import CycleTimeVideo
import TestSupport

/// The report of a `detect train` run: training curves, then the person AP of each `detect test`
/// summary saved in the run, its precision-recall curve and keyframes with the boxes drawn.
final class ReportDetectionTests: XCTestCase {
    func testDetectRunReportShowsPersonAPCurveAndBoxesOfItsTestSummary() throws {
        let dir = temporaryDirectory("report-detect")
        let cfg = try writeTinyDetectRun(dir, detector: "")
        let trainer = try makeDetectTrainer(configPath: cfg, overrides: ["train.steps=1"]) { _ in }
        XCTAssertEqual(try trainer.train(resume: false), .finished(step: 1))
        let run = dir + "/run"
        let before = try Report.blocks(try RunRecord.load(run), options: ReportOptions()).markdownText
        XCTAssertTrue(before.contains("**Missing:** no `detect test` summary in `detect/`"), before)

        let s = try runDetectTest(configPath: cfg, checkpoint: run + "/checkpoints/latest.safetensors", out: dir + "/p.json",
                                  report: { _ in }, progress: { _ in })
        XCTAssertEqual(s.saved, run + "/detect/p.json")
        let ap = try XCTUnwrap(s.personAP)
        XCTAssertEqual(ap.recall.count, ap.detections)
        let record = try RunRecord.load(run)
        XCTAssertTrue(record.isDetect)
        XCTAssertEqual(record.objective, "detect")
        let blocks = try Report.blocks(record, options: ReportOptions())
        let md = blocks.markdownText
        XCTAssertTrue(md.contains("## Training (person detector)"), md)
        XCTAssertTrue(md.contains("person AP@0.5 **\(Report.fmt(ap.ap))**"), md)
        XCTAssertTrue(md.contains("\(ap.groundTruth) ground-truth boxes"), md)
        let figures = blocks.compactMap { b -> Figure? in if case .figure(let f) = b { return f } else { return nil } }
        let pr = try XCTUnwrap(figures.first { $0.name == "detect-pr-p.svg" }, "\(figures.map(\.name))")
        guard case .svg(let svg) = pr.content else { return XCTFail("not an SVG") }
        let parsed = try ParsedSVG(svg)
        let line = try XCTUnwrap(parsed.polylines.first { $0.series == "detections by descending score" })
        XCTAssertEqual(line.points.count, ap.recall.count)
        for (i, p) in line.points.enumerated() {
            let (r, q) = parsed.data(p)
            XCTAssertEqual(r, ap.recall[i], accuracy: 2e-3)
            XCTAssertEqual(q, ap.precision[i], accuracy: 2e-3)
        }
        let boxes = try XCTUnwrap(figures.first { $0.name == "detect-boxes-p.png" }, "\(figures.map(\.name))")
        guard case .png(let data, let w, let h) = boxes.content else { return XCTFail("not a PNG") }
        try data.write(to: URL(fileURLWithPath: dir + "/boxes.png"))
        let img = try Image.readPNG(dir + "/boxes.png")
        XCTAssertEqual([img.width, img.height], [w, h])
    }
}
