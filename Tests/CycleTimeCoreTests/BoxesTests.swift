import XCTest
@testable import CycleTimeCore
import TestSupport

/// Box ops against torchvision.ops (fixture boxes.safetensors of scripts/fixtures/detector.py).
final class BoxesTests: XCTestCase {
    func indices(_ t: Tensor) -> [Int] { t.array.map { Int($0) } }

    func testIoUMatchesTorchvision() throws {
        let fx = try Fixtures.load("boxes")
        assertClose(Boxes.iou(fx.t("iou_a"), fx.t("iou_b")), fx.t("iou"), rtol: 1e-6, atol: 1e-7)
    }

    /// 300 clustered boxes whose scores take 5 values (equal scores everywhere), a duplicate box and
    /// a pair with IoU exactly 0.5: the same kept indices in the same order at three thresholds.
    func testNMSMatchesTorchvisionOnTies() throws {
        let fx = try Fixtures.load("boxes")
        for t in ["0.3", "0.5", "0.7"] {
            let keep = Boxes.nms(fx.t("nms_boxes"), scores: fx.t("nms_scores"), iouThreshold: Float(t) ?? 0)
            XCTAssertEqual(keep, indices(fx.t("nms_keep_\(t)")), "threshold \(t)")
        }
    }

    /// Equal scores are visited in index order, and IoU equal to the threshold does not suppress.
    func testNMSTieOrderAndThresholdByHand() {
        let boxes = Tensor([0, 0, 10, 10, 1, 0, 11, 10, 0, 0, 10, 5, 50, 50, 60, 60], shape: [4, 4])
        XCTAssertEqual(Boxes.nms(boxes, scores: Tensor([0.5, 0.5, 0.5, 0.9], shape: [4]), iouThreshold: 0.5), [3, 0, 2])
        XCTAssertEqual(Boxes.nms(boxes, scores: Tensor([0.5, 0.6, 0.5, 0.5], shape: [4]), iouThreshold: 0.5), [1, 2, 3])
        XCTAssertEqual(Boxes.nms(Tensor.zeros([0, 4]), scores: Tensor.zeros([0]), iouThreshold: 0.5), [])
    }

    /// Both of torchvision's CPU paths: coordinate offsets (250 boxes, tied scores) and per class
    /// (1500 boxes).
    func testBatchedNMSMatchesTorchvision() throws {
        let fx = try Fixtures.load("boxes")
        let small = fx.t("nms_boxes").sliced(axis: 0, start: 0, end: 250)
        let smallScores = fx.t("nms_scores").sliced(axis: 0, start: 0, end: 250)
        XCTAssertEqual(Boxes.batchedNMS(small, scores: smallScores, classes: indices(fx.t("bnms_small_classes")), iouThreshold: 0.5),
                       indices(fx.t("bnms_small_keep")))
        XCTAssertEqual(Boxes.batchedNMS(fx.t("bnms_large_boxes"), scores: fx.t("bnms_large_scores"),
                                        classes: indices(fx.t("bnms_large_classes")), iouThreshold: 0.5),
                       indices(fx.t("bnms_large_keep")))
    }

    func testClipAndRemoveSmallMatchTorchvision() throws {
        let fx = try Fixtures.load("boxes")
        XCTAssertEqual(Boxes.clipToImage(fx.t("clip_boxes"), height: 37, width: 51).array, fx.t("clip").array)
        XCTAssertEqual(Boxes.removeSmall(fx.t("clip_boxes"), minSize: 10), indices(fx.t("small_keep")))
    }

    /// Weights (10, 10, 5, 5); two codes beyond bbox_xform_clip after division by the weights.
    func testBoxCoderMatchesTorchvision() throws {
        let fx = try Fixtures.load("boxes")
        let coder = BoxCoder(weights: [10, 10, 5, 5])
        assertClose(coder.encode(reference: fx.t("enc_reference"), proposals: fx.t("enc_proposals")), fx.t("encoded"), rtol: 1e-5, atol: 1e-5)
        assertClose(coder.decode(fx.t("dec_codes"), boxes: fx.t("enc_proposals")), fx.t("decoded"), rtol: 1e-5, atol: 1e-4)
        XCTAssertEqual(BoxCoder.defaultXformClip, Float(log(1000.0 / 16.0)))
    }

    /// decode(encode(b)) = b.
    func testBoxCoderRoundTrip() {
        let coder = BoxCoder(weights: [10, 10, 5, 5])
        let ref = Tensor([3, 4, 30, 50, 10, 10, 12, 40], shape: [2, 4])
        let prop = Tensor([0, 0, 20, 20, 8, 15, 30, 30], shape: [2, 4])
        assertClose(coder.decode(coder.encode(reference: ref, proposals: prop), boxes: prop).reshaped([2, 4]), ref, rtol: 1e-5, atol: 1e-4)
    }
}
