import CycleTimePropagation
import Foundation
import TestSupport
import XCTest

final class DAVISEvaluationTests: XCTestCase {
    /// The official figures of davis2017-evaluation for the OSVOS results on davis-mini
    /// (from ../shared/data/README.md, parsed there, never typed here).
    func testOSVOSMatchesOfficialFigures() throws {
        let root = try requireSharedData("davis-mini")
        let readme = try String(contentsOfFile: root + "/../README.md", encoding: .utf8)
        let r = try DAVISEvaluation.evaluate(davisRoot: root, results: root + "/results/osvos")
        /// The first number after `label` in the README (label not preceded by a letter, '&' or '-').
        func official(_ label: String) throws -> Double {
            let pattern = "(?<![&\\w-])" + NSRegularExpression.escapedPattern(for: label) + " ([0-9]+\\.[0-9]+)"
            let re = try NSRegularExpression(pattern: pattern)
            let m = try XCTUnwrap(re.firstMatch(in: readme, range: NSRange(readme.startIndex..., in: readme)), "README has no \(label)")
            return try XCTUnwrap(Double(readme[Range(m.range(at: 1), in: readme)!]))
        }
        let s = r.summary
        let pairs: [(String, Double)] = [("J&F-Mean", s.jfMean), ("J-Mean", s.jMean), ("J-Recall", s.jRecall), ("J-Decay", s.jDecay),
                                         ("F-Mean", s.fMean), ("F-Recall", s.fRecall), ("F-Decay", s.fDecay)]
        for (label, value) in pairs { XCTAssertEqual(value, try official(label), accuracy: 1e-4, label) }
        // Per sequence: "blackswan 0.943020 0.974096;"
        XCTAssertEqual(r.objects.count, 4)
        for o in r.objects {
            let re = try NSRegularExpression(pattern: NSRegularExpression.escapedPattern(for: o.sequence) + " ([0-9]\\.[0-9]+) ([0-9]\\.[0-9]+)")
            let m = try XCTUnwrap(re.firstMatch(in: readme, range: NSRange(readme.startIndex..., in: readme)), "README has no \(o.sequence)")
            let jm = try XCTUnwrap(Double(readme[Range(m.range(at: 1), in: readme)!]))
            let fm = try XCTUnwrap(Double(readme[Range(m.range(at: 2), in: readme)!]))
            XCTAssertEqual(o.jMean, jm, accuracy: 1e-4, o.sequence)
            XCTAssertEqual(o.fMean, fm, accuracy: 1e-4, o.sequence)
        }
    }

    func testGroundTruthAgainstItselfIsOne() throws {
        let root = try requireSharedData("davis-mini")
        let r = try DAVISEvaluation.evaluate(davisRoot: root, results: root + "/Annotations/480p")
        XCTAssertEqual(r.summary.jfMean, 1); XCTAssertEqual(r.summary.jMean, 1); XCTAssertEqual(r.summary.fMean, 1)
        XCTAssertEqual(r.summary.jRecall, 1); XCTAssertEqual(r.summary.jDecay, 0)
    }

    func testMissingResultFrameIsNamed() throws {
        let root = try requireSharedData("davis-mini")
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("davis-eval-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        for s in ["blackswan", "car-shadow", "dog", "libby"] {
            try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: root + "/results/osvos/" + s, toPath: tmp + "/" + s)
        }
        try FileManager.default.removeItem(atPath: tmp + "/dog/00007.png")
        XCTAssertThrowsError(try DAVISEvaluation.evaluate(davisRoot: root, results: tmp)) { e in
            XCTAssertTrue("\(e)".contains("dog/00007.png"), "\(e)")
        }
    }

    /// Sparse ground truth (as pumavos-caps): only annotated frames are scored, minus the first and
    /// the last annotated ones; frames without annotation need no result.
    func testSparseAnnotationsScoreAnnotatedFramesOnly() throws {
        let root = try requireSharedData("davis-mini")
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("davis-sparse-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let fm = FileManager.default
        for d in ["JPEGImages/480p", "Annotations/480p/s", "ImageSets/2017", "res/s"] { try fm.createDirectory(atPath: tmp + "/" + d, withIntermediateDirectories: true) }
        try fm.createSymbolicLink(atPath: tmp + "/JPEGImages/480p/s", withDestinationPath: root + "/JPEGImages/480p/blackswan")
        try "s\n".write(toFile: tmp + "/ImageSets/2017/val.txt", atomically: true, encoding: .utf8)
        for f in ["00000", "00010", "00020", "00030"] {
            try fm.copyItem(atPath: root + "/Annotations/480p/blackswan/\(f).png", toPath: tmp + "/Annotations/480p/s/\(f).png")
            try fm.copyItem(atPath: root + "/results/osvos/blackswan/\(f).png", toPath: tmp + "/res/s/\(f).png")
        }
        try fm.removeItem(atPath: tmp + "/res/s/00030.png")  // the last annotated frame is not scored
        let r = try DAVISEvaluation.evaluate(davisRoot: tmp, results: tmp + "/res")
        XCTAssertEqual(r.objects.map(\.frames), [["00010", "00020"]])
    }

    func testStatisticsDecayBins() {
        // 8 values: bins [0,2], [2,4], [4,6], [6,8)... ids = round(linspace(1,8,5)) - 1 = [0, 2, 4, 5, 7]
        let v: [Double] = [1, 1, 1, 0.4, 0.6, 0, 0, 0]
        let s = DAVISMetrics.statistics(v)
        XCTAssertEqual(s.mean, 4.0 / 8, accuracy: 1e-12)
        XCTAssertEqual(s.recall, 4.0 / 8, accuracy: 1e-12)
        XCTAssertEqual(s.decay, 1 - 0, accuracy: 1e-12)
    }

    func testBoundaryFOfShiftedSquare() {
        // A 10x10 square and the same square shifted by 2 px in a 100x100 image: radius ceil(0.008*141.4)=2,
        // so every boundary pixel has a match within the tolerance.
        let w = 100, h = 100
        var a = [Bool](repeating: false, count: w * h), b = a
        for y in 40..<50 { for x in 40..<50 { a[y * w + x] = true; b[y * w + x + 2] = true } }
        XCTAssertEqual(DAVISMetrics.boundRadius(width: w, height: h), 2)
        XCTAssertEqual(DAVISMetrics.boundaryF(a, b, width: w, height: h), 1, accuracy: 1e-12)
        XCTAssertEqual(DAVISMetrics.jaccard(a, b), 80.0 / 120.0, accuracy: 1e-12)
        var c = a
        for y in 40..<50 { for x in 40..<50 { c[y * w + x] = false; c[y * w + x + 20] = true } }
        XCTAssertEqual(DAVISMetrics.boundaryF(a, c, width: w, height: h), 0, accuracy: 1e-12)
    }
}
