import CycleTimePropagation
import CycleTimeVideo
import Foundation
import XCTest

final class VIPEvaluationTests: XCTestCase {
    func testConfusionMatrixIoU() {
        var cm = ConfusionMatrix(classes: 3)
        // gt:   0 0 1 1 2 255
        // pred: 0 1 1 1 7 0
        cm.add(groundTruth: [0, 0, 1, 1, 2, 255], prediction: [0, 1, 1, 1, 7, 0])
        let r = cm.iou()
        XCTAssertEqual(r.perClass[0], 1.0 / 2, accuracy: 1e-12)   // tp 1, gt 2, pred 1
        XCTAssertEqual(r.perClass[1], 2.0 / 3, accuracy: 1e-12)   // tp 2, gt 2, pred 3
        XCTAssertEqual(r.perClass[2], 0, accuracy: 1e-12)         // gt 1, predicted outside
        XCTAssertEqual(r.mean, (0.5 + 2.0 / 3 + 0) / 3, accuracy: 1e-12)
    }

    /// A tiny VIP layout written here: ground truth against itself is 1.0; a missing frame is named.
    func testEvaluateFolder() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("vip-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        for d in ["Images/v1", "Annotations/Category_ids/v1"] { try FileManager.default.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true) }
        for f in 0..<3 {
            let px = (0..<64).map { UInt8(($0 + f) % 5) }
            try Image(width: 8, height: 8, channels: 3, pixels: [UInt8](repeating: 128, count: 192)).writePNG(root + "/Images/v1/\(f).png")
            try Image(width: 8, height: 8, channels: 1, pixels: px).writePNG(root + "/Annotations/Category_ids/v1/\(f).png")
        }
        let r = try VIPEvaluation.evaluate(root: root, results: root + "/Annotations/Category_ids")
        XCTAssertEqual(r.mean, 1)
        try FileManager.default.createDirectory(atPath: root + "/res/v1", withIntermediateDirectories: true)
        XCTAssertThrowsError(try VIPEvaluation.evaluate(root: root, results: root + "/res")) { XCTAssertTrue("\($0)".contains("v1/1.png"), "\($0)") }
    }
}
