import Foundation
import XCTest
@testable import CycleTimeDetection
import TestSupport

final class AVAEvaluationTests: XCTestCase {
    func row(_ v: String, _ t: Int, _ b: AVABox, _ a: Int, _ s: Double? = nil) -> AVARow {
        AVARow(key: AVAKey(v, t), box: b, actionID: a, extra: s, line: 0)
    }
    let A = AVABox(0.0, 0.0, 0.5, 0.5), B = AVABox(0.5, 0.5, 1.0, 1.0)
    /// IoU with A: 0.25*0.5 / (0.25 + 0.125 - 0.125)... = 0.5 exactly (box half of A's area inside A).
    let Ahalf = AVABox(0.0, 0.0, 0.5, 0.25)
    let labels2 = AVALabelMap([.init(id: 1, name: "one"), .init(id: 2, name: "two")])

    /// VOC all-point AP by hand: scores 0.9 TP, 0.8 FP, 0.7 TP with 3 GT ->
    /// precision envelope [1, 2/3, 2/3], recall steps 1/3, 1/3 -> 1/3 + 2/9 = 5/9.
    func testVOCAllPointAP() {
        XCTAssertEqual(vocAveragePrecision([(0.8, false), (0.9, true), (0.7, true)], numGT: 3), 5.0 / 9, accuracy: 1e-12)
        // A later higher precision lifts the earlier one (the envelope): FP, TP, TP with 2 GT ->
        // precisions 0, 1/2, 2/3 -> envelope 2/3 at both recall steps -> AP 2/3.
        XCTAssertEqual(vocAveragePrecision([(0.9, false), (0.8, true), (0.7, true)], numGT: 2), 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(vocAveragePrecision([], numGT: 2), 0)
    }

    /// Greedy matching: the second detection whose best box is already taken is a false positive even
    /// though another box overlaps it; IoU exactly 0.5 matches.
    func testGreedyMatchingTakenBoxIsFalsePositive() {
        let near = AVABox(0.0, 0.0, 0.5, 0.45) // IoU with A 0.9, with Ahalf 0.25/0.45*... best A
        XCTAssertEqual(A.iou(Ahalf), 0.5, accuracy: 1e-12)
        XCTAssertEqual(matchDetections([A, near], to: [A, Ahalf], iouThreshold: 0.5), [true, false])
        XCTAssertEqual(matchDetections([Ahalf], to: [A], iouThreshold: 0.5), [true])
        XCTAssertEqual(matchDetections([B], to: [A], iouThreshold: 0.5), [false])
    }

    /// Frames: k1 has GT (class 1 at A, class 2 at B); k2 has no GT but a high-scoring class-1
    /// detection; class 2 has no detection.
    func protocolCase() -> (gt: [AVARow], det: [AVARow]) {
        let gt = [row("v", 902, A, 1), row("v", 902, B, 2)]
        let det = [row("v", 902, A, 1, 0.5), row("v", 903, A, 1, 0.9)]
        return (gt, det)
    }

    /// Per-class APs and mAP of `protocolCase` under a protocol.
    func checkProtocol(_ p: AVAEvalProtocol, aps: [Double?], mAP: Double, file: StaticString = #filePath, line: UInt = #line) {
        let (gt, det) = protocolCase()
        let r = evaluateAVA(groundTruth: gt, detections: det, labelMap: labels2, protocol: p)
        XCTAssertEqual(r.classes.map(\.ap), aps, file: file, line: line)
        XCTAssertEqual(r.mAP, mAP, file: file, line: line)
        XCTAssertEqual(r.framesWithoutGroundTruth, 1, file: file, line: line)
    }

    /// Official: class 1's only counted detection is a TP -> AP 1; class 2 (GT, no detection) -> 0.
    func testOfficialIgnoresFramesWithoutGTAndScoresMissingClassZero() {
        checkProtocol(.official, aps: [1, 0], mAP: 0.5)
    }

    /// mmaction2 0.x: class 1 = 0.9 FP (frame without GT) then 0.5 TP, 1 GT -> precision 1/2 at recall 1.
    func testMMAction2v0CountsFramesWithoutGT() {
        checkProtocol(.mmaction2v0, aps: [0.5, 0], mAP: 0.25)
    }

    /// mmaction2 1.x: class 2 has no detection and leaves the mean.
    func testMMAction2v1DropsClassesWithoutDetections() {
        checkProtocol(.mmaction2v1, aps: [1, nil], mAP: 1)
    }

    /// The cap keeps the 50 highest-scoring detections of a keyframe across classes: 50 class-2 FPs at
    /// B scoring above the class-1 TP push it out (AP 0); without the cap it counts (AP 1).
    func testCapOf50PerKeyframe() {
        let gt = [row("v", 902, A, 1), row("v", 902, AVABox(0.6, 0.0, 0.9, 0.3), 2)]
        var det = [row("v", 902, A, 1, 0.1)]
        for i in 0..<50 { det.append(row("v", 902, B, 2, 0.5 + Double(i) * 0.001)) }
        let capped = evaluateAVA(groundTruth: gt, detections: det, labelMap: labels2, protocol: .official)
        XCTAssertEqual(capped.classes[0].ap, 0)
        XCTAssertEqual(capped.classes[0].detections, 0)
        XCTAssertEqual(capped.classes[1].detections, 50)
        var p = AVAEvalProtocol.official
        p.maxDetectionsPerFrame = 0
        let uncapped = evaluateAVA(groundTruth: gt, detections: det, labelMap: labels2, protocol: p)
        XCTAssertEqual(uncapped.classes[0].ap, 1)
        // 51 detections: the 51st (lowest) is dropped, so with 49 class-2 ones the TP survives.
        let r49 = evaluateAVA(groundTruth: gt, detections: Array(det.prefix(50)), labelMap: labels2, protocol: .official)
        XCTAssertEqual(r49.classes[0].ap, 1)
    }

    /// Ties at the cap follow Python's heapq: with equal scores, a new detection does not replace the
    /// smallest kept one (strictly greater score needed).
    func testHeapTiesKeepEarlierDetections() {
        var h = PyHeap(capacity: 2)
        h.offer(FrameDetection(score: 0.5, action: 3, box: A))
        h.offer(FrameDetection(score: 0.5, action: 1, box: A))
        h.offer(FrameDetection(score: 0.5, action: 2, box: A))
        XCTAssertEqual(Set(h.items.map(\.action)), [1, 3])
        h.offer(FrameDetection(score: 0.6, action: 2, box: A))
        // heapreplace pops the smallest tuple (0.5, 1, ...).
        XCTAssertEqual(h.sortedDescending().map(\.action), [2, 3])
    }

    /// The `ava eval --json` contract: snake_case keys, a missing AP and mAP written as null, read back unchanged.
    func testResultJSONKeepsKeysAndNullsAndReadsBack() throws {
        let r = AVAEvalResult(classes: [.init(id: 3, name: "talk", groundTruth: 0, detections: 2, ap: nil)], mAP: nil,
                              evaluatedFrames: 4, excludedFrames: 1, framesWithoutGroundTruth: 2, protocolName: "official")
        let data = try JSONEncoder().encode(r)
        let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(Set(o.keys), ["classes", "mAP", "evaluated_frames", "excluded_frames", "frames_without_gt", "protocol"])
        XCTAssertTrue(o["mAP"] is NSNull)
        let c = try XCTUnwrap((o["classes"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(c.keys), ["id", "name", "ground_truth", "detections", "ap"])
        XCTAssertTrue(c["ap"] is NSNull)
        let back = try JSONDecoder().decode(AVAEvalResult.self, from: data)
        XCTAssertEqual(back.classes.first?.groundTruth, 0)
        XCTAssertNil(back.classes.first?.ap)
        XCTAssertEqual(back.framesWithoutGroundTruth, 2)
        XCTAssertEqual(back.protocolName, "official")
    }

    /// Bins by training counts: thirds of the scored classes, most boxes first (ties by id), and
    /// each bin's mean over its classes' APs.
    func testMAPByFrequencyBinsIsTheMeanAPOfEachThird() {
        func c(_ id: Int, _ gt: Int, _ ap: Double?) -> AVAEvalResult.ClassResult {
            AVAEvalResult.ClassResult(id: id, name: "c\(id)", groundTruth: gt, detections: 1, ap: ap)
        }
        let r = AVAEvalResult(classes: [c(1, 5, 0.2), c(2, 3, 0.4), c(3, 7, 0.6), c(4, 0, nil), c(5, 2, 0.1), c(6, 9, nil), c(7, 1, 0.3)],
                              mAP: nil, evaluatedFrames: 1, excludedFrames: 0, framesWithoutGroundTruth: 0)
        // Ground-truth counts: 6 (9), 3 (7) | 1 (5), 2 (3) | 5 (2), 7 (1); class 4 has no ground truth and is not scored.
        let own = r.byFrequency()
        XCTAssertEqual(own.map(\.classes), [[3, 6], [1, 2], [5, 7]])
        let maps = own.map { $0.mAP ?? -1 }
        XCTAssertEqual(maps[0], 0.6, accuracy: 1e-12, "class 6 has no AP (dropped for lack of detections): the head's mean is class 3's")
        XCTAssertEqual(maps[1], 0.3, accuracy: 1e-12)
        XCTAssertEqual(maps[2], 0.2, accuracy: 1e-12)
        // Training counts reorder them.
        let train = r.byFrequency(counts: [7: 100, 5: 90, 2: 80, 1: 1, 3: 1, 6: 0])
        XCTAssertEqual(train.map(\.classes), [[5, 7], [1, 2], [3, 6]])
        XCTAssertEqual(train[2].mAP ?? -1, 0.6, accuracy: 1e-12)
    }

    /// Person AP by hand. GT: k1 {A, B}, k2 {whole}, k3 {whole}; k4 none. Detections by score:
    /// k4 0.95 (no GT: FP), k1 A 0.9 (TP), k2 whole 0.85 (TP), k1 A 0.8 (A taken: FP), k1 near B
    /// 0.6 (IoU 0.04: FP), k3 top half 0.5 (IoU exactly 0.5: TP). Precisions 0, 1/2, 2/3, 1/2, 2/5,
    /// 1/2 at recalls 0, 1/4, 1/2, 1/2, 1/2, 3/4: envelope 2/3, 2/3, 1/2 over the recall steps
    /// -> AP = 2/3 * 1/4 + 2/3 * 1/4 + 1/2 * 1/4 = 11/24.
    func testPersonAPByHand() throws {
        let whole = AVABox(0, 0, 1, 1), top = AVABox(0, 0, 1, 0.5), corner = AVABox(0.9, 0.9, 1, 1)
        let k1 = AVAKey("v", 1), k2 = AVAKey("v", 2), k3 = AVAKey("w", 3), k4 = AVAKey("w", 4)
        let gt = [k1: [A, B], k2: [whole], k3: [whole]]
        let dets = [k1: [ScoredBox(A, score: 0.8), ScoredBox(corner, score: 0.6), ScoredBox(A, score: 0.9)],
                    k2: [ScoredBox(whole, score: 0.85)], k3: [ScoredBox(top, score: 0.5)], k4: [ScoredBox(A, score: 0.95)]]
        let r = try XCTUnwrap(evaluatePersonAP(groundTruth: gt, detections: dets))
        XCTAssertEqual(r.ap, 11.0 / 24, accuracy: 1e-12)
        XCTAssertEqual([r.groundTruth, r.detections, r.truePositives], [4, 6, 3])
        // The curve is the raw one, a point per detection by descending score.
        for (got, want) in zip(r.precision, [0, 1.0 / 2, 2.0 / 3, 1.0 / 2, 2.0 / 5, 1.0 / 2]) { XCTAssertEqual(got, want, accuracy: 1e-12) }
        for (got, want) in zip(r.recall, [0, 1.0 / 4, 1.0 / 2, 1.0 / 2, 1.0 / 2, 3.0 / 4]) { XCTAssertEqual(got, want, accuracy: 1e-12) }
        XCTAssertEqual([r.precision.count, r.recall.count], [6, 6])
        // Perfect detections give 1, none give 0, no ground truth gives nil.
        let perfect = gt.mapValues { $0.map { ScoredBox($0, score: 1) } }
        XCTAssertEqual(try XCTUnwrap(evaluatePersonAP(groundTruth: gt, detections: perfect)).ap, 1, accuracy: 1e-12)
        XCTAssertEqual(evaluatePersonAP(groundTruth: gt, detections: [:])?.ap, 0)
        XCTAssertNil(evaluatePersonAP(groundTruth: [:], detections: dets))
        // At IoU 0.75 the top-half box no longer matches: TPs at 0.9, 0.85 only -> 2/3 * 1/2 = 1/3.
        XCTAssertEqual(try XCTUnwrap(evaluatePersonAP(groundTruth: gt, detections: dets, iouThreshold: 0.75)).ap, 1.0 / 3, accuracy: 1e-12)
    }
}
