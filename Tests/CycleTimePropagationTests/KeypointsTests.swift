import CycleTimeData
import CycleTimePropagation
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest

final class KeypointsTests: XCTestCase {
    func clip() throws -> JHMDBClip {
        let root = try requireSharedData("jhmdb-mini")
        let ds = try JHMDBDataset(root: root)
        return try XCTUnwrap(ds.clips.first)
    }

    func testGroundTruthAgainstItselfIsOne() throws {
        let gt = try JHMDBEvaluation.groundTruth(try clip())
        let r = try JHMDBEvaluation.pck(groundTruth: gt, predictions: gt)
        XCTAssertEqual(r.pck, [1, 1, 1, 1, 1])
    }

    /// Joint 0 moved by 0.15 x the frame's scale and joint 1 by 0.35 x: at 0.1 both fail, at 0.2
    /// and 0.3 joint 1 fails, from 0.4 all pass: PCK = 13/15, 14/15, 14/15, 1, 1.
    func testKnownPerturbation() throws {
        let gt = try JHMDBEvaluation.groundTruth(try clip())
        var pred = gt
        for t in 0..<gt.count {
            let xs = gt[t].map(\.x), ys = gt[t].map(\.y)
            let scale = 0.6 * (pow(xs.max()! - xs.min()!, 2) + pow(ys.max()! - ys.min()!, 2)).squareRoot()
            pred[t][0].x += 0.15 * scale
            pred[t][1].y -= 0.35 * scale
        }
        let r = try JHMDBEvaluation.pck(groundTruth: gt, predictions: pred)
        let expected = [13.0 / 15, 14.0 / 15, 14.0 / 15, 1, 1]
        for (a, b) in zip(r.pck, expected) { XCTAssertEqual(a, b, accuracy: 1e-12) }
    }

    func testGaussianLabelsAndDecoding() {
        // A joint at cell (5.2, 3.0) on a 10x8 grid: centre cell trunc(5.2 - 1.5) + 2 = 5, row 3.
        let l = KeypointLabels.labels(joints: [Point2(5.2, 3.0)], gridHeight: 8, gridWidth: 10)
        XCTAssertEqual(l[(3 * 10 + 5) * 2 + 1], 1)
        XCTAssertEqual(l[(3 * 10 + 6) * 2 + 1], Float(exp(-2.0)), accuracy: 1e-7)
        XCTAssertEqual(l[(3 * 10 + 5) * 2], 0)
        XCTAssertEqual(l[0], 1)  // far cell: background
        let p = KeypointLabels.decode(l, gridHeight: 8, gridWidth: 10, joints: 1)
        XCTAssertEqual(p[0].y, 3, accuracy: 0.5)
        XCTAssertEqual(p[0].x, 5, accuracy: 0.5)
        // No mass: no prediction.
        let z = KeypointLabels.decode([Float](repeating: 0, count: 80 * 2), gridHeight: 8, gridWidth: 10, joints: 1)
        XCTAssertEqual(z[0], Point2(-1, -1))
    }

    func testKeypointsFileRoundTrip() throws {
        let k = [[Point2(1.5, 2), Point2(-1, -1)], [Point2(3, 4.25), Point2(0, 0)]]
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kp-\(UUID().uuidString).csv").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try JHMDBEvaluation.writeKeypoints(k, to: path)
        XCTAssertEqual(try JHMDBEvaluation.readKeypoints(path), k)
        try "frame,joint,x,y\n0,zero,1,2\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try JHMDBEvaluation.readKeypoints(path)) { XCTAssertTrue("\($0)".contains("line 2"), "\($0)") }
    }

    /// The jhmdb-mini clip propagates (raw pixels) and scores end to end.
    func testPixelPropagationScoresEndToEnd() throws {
        let c = try clip()
        let gt = try JHMDBEvaluation.groundTruth(c)
        let first = try CycleTimeVideo.Image.read(c.framePaths[0])
        let W = Double(first.width), H = Double(first.height)
        var kp: [[Point2]] = [gt[0]]
        try MaskPropagation.runSoft(frameCount: c.frameCount, frame: { try CycleTimeVideo.Image.read(c.framePaths[$0]) },
                                    extractor: .pixels(stride: 8, l2Normalize: true), options: PropagationOptions(),
                                    firstLabels: { h, w in KeypointLabels.labels(joints: gt[0].map { Point2($0.x * Double(w) / W, $0.y * Double(h) / H) }, gridHeight: h, gridWidth: w) }) { _, soft, h, w in
            kp.append(KeypointLabels.decode(soft, gridHeight: h, gridWidth: w, joints: 15).map { $0.x < 0 ? $0 : Point2($0.x / Double(w) * W, $0.y / Double(h) * H) })
        }
        XCTAssertEqual(kp.count, c.frameCount)
        let r = try JHMDBEvaluation.pck(groundTruth: Array(gt.prefix(c.frameCount)), predictions: kp)
        print("jhmdb-mini pixel PCK: \(r.pck)")
        XCTAssertTrue(r.pck.allSatisfy { $0 > 0 && $0 <= 1 })
        XCTAssertEqual(r.pck, r.pck.sorted())  // non-decreasing in the threshold
    }
}
