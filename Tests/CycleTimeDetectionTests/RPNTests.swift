import XCTest
@testable import CycleTimeDetection
import CycleTimeCore
import CycleTimeNN
import TestSupport

final class RPNTests: XCTestCase {
    /// torchvision's AnchorGenerator(((32,), (64,), ...), ((0.5, 1, 2),) * 5).cell_anchors, rounded
    /// half to even as torch.round.
    func testCellAnchorsMatchTorchvision() {
        let expected: [[Float]] = [
            [-23, -11, 23, 11, -16, -16, 16, 16, -11, -23, 11, 23],
            [-45, -23, 45, 23, -32, -32, 32, 32, -23, -45, 23, 45],
            [-91, -45, 91, 45, -64, -64, 64, 64, -45, -91, 45, 91],
            [-181, -91, 181, 91, -128, -128, 128, 128, -91, -181, 91, 181],
            [-362, -181, 362, 181, -256, -256, 256, 256, -181, -362, 181, 362],
        ]
        for level in 0..<5 { XCTAssertEqual(AnchorGenerator.fpnDefault.cellAnchors(level: level), expected[level], "level \(level)") }
    }

    /// Cells row-major, the anchors of a cell consecutive, shifted by the stride image / grid
    /// (integer division): cell (y 1, x 2) of a 3x4 grid in a 96x130 batch has stride (32, 32).
    func testGridAnchorsOrderAndStride() {
        let a = AnchorGenerator.fpnDefault.anchors(level: 0, grid: (3, 4), imageSize: (96, 130))
        XCTAssertEqual(a.shape, [36, 4])
        let row = (1 * 4 + 2) * 3 + 1     // cell (1, 2), second ratio (1.0)
        XCTAssertEqual(Array(a.array[(row * 4)..<(row * 4 + 4)]), [Float(48), 16, 80, 48])
    }

    /// Proposals are clipped to the image, at most postNMSTopN, in decreasing score order, and the
    /// head has torchvision's keys.
    func testProposalsAreClippedCappedAndSorted() {
        var g = RandomGenerator(seed: 3)
        var settings = RPNSettings()
        settings.postNMSTopN = 20
        let rpn = RegionProposalNetwork(inChannels: 8, anchorGenerator: AnchorGenerator(sizes: [[16], [32]], aspectRatios: [[0.5, 1, 2], [0.5, 1, 2]]),
                                        settings: settings, generator: &g)
        XCTAssertEqual(rpn.stateDictKeys(), ["head.conv.0.0.weight", "head.conv.0.0.bias", "head.cls_logits.weight", "head.cls_logits.bias",
                                             "head.bbox_pred.weight", "head.bbox_pred.bias"])
        let features = [randn([1, 8, 8, 8], seed: 1, requiresGrad: false), randn([1, 8, 4, 4], seed: 2, requiresGrad: false)]
        let out = rpn.proposals(features, batchSize: (64, 64), imageSizes: [(60, 50)])
        XCTAssertEqual(out.count, 1)
        let (boxes, scores) = out[0]
        XCTAssertEqual(boxes.shape, [20, 4])
        XCTAssertEqual(scores, scores.sorted(by: >))
        for i in 0..<20 {
            XCTAssertTrue((0...50).contains(boxes[i, 0]) && (0...50).contains(boxes[i, 2]), "box \(i) x")
            XCTAssertTrue((0...60).contains(boxes[i, 1]) && (0...60).contains(boxes[i, 3]), "box \(i) y")
        }
    }
}
