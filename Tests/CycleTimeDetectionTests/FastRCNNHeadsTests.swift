import XCTest
@testable import CycleTimeDetection
import CycleTimeCore
import CycleTimeNN
import TestSupport

final class FastRCNNHeadsTests: XCTestCase {
    /// torchvision's LevelMapper(2, 5) on boxes of side 224, 112, 1, 2000, 447.99, 448: 2, 1, 0, 3, 2, 3.
    func testLevelMapperMatchesTorchvision() {
        let boxes = Tensor([0, 0, 224, 224, 0, 0, 112, 112, 0, 0, 1, 1, 0, 0, 2000, 2000,
                            10, 10, 10 + 447.99, 10 + 447.99, 0, 0, 448, 448], shape: [6, 4])
        XCTAssertEqual(MultiScaleRoIAlign().levelIndices(boxes, kMin: 2, kMax: 5), [2, 1, 0, 3, 2, 3])
    }

    /// _infer_scale: 2^round(log2(feature / image)).
    func testInferScale() {
        XCTAssertEqual(MultiScaleRoIAlign.inferScale(featureHeight: 64, imageHeight: 256), 0.25)
        XCTAssertEqual(MultiScaleRoIAlign.inferScale(featureHeight: 33, imageHeight: 256), 0.125)
        XCTAssertEqual(MultiScaleRoIAlign.inferScale(featureHeight: 8, imageHeight: 250), 0.03125)
    }

    /// Each box is pooled from its own level with that level's scale: the same as roiAlign on that
    /// level alone (sampling ratio 2, not aligned).
    func testPoolsEachBoxFromItsLevel() {
        let features = [randn([2, 3, 32, 32], seed: 1, requiresGrad: false), randn([2, 3, 16, 16], seed: 2, requiresGrad: false)]
        let small = Tensor([4, 4, 60, 70], shape: [1, 4]), large = Tensor([0, 0, 120, 110], shape: [1, 4])
        let pooled = MultiScaleRoIAlign()(features, boxes: [small, large], imageSizes: [(128, 128), (100, 128)])
        XCTAssertEqual(pooled.shape, [2, 3, 7, 7])
        let expectSmall = F.roiAlign(features[0], rois: Tensor([0, 4, 4, 60, 70], shape: [1, 5]), outputSize: [7, 7], spatialScale: 0.25, samplingRatio: 2)
        let expectLarge = F.roiAlign(features[1], rois: Tensor([1, 0, 0, 120, 110], shape: [1, 5]), outputSize: [7, 7], spatialScale: 0.125, samplingRatio: 2)
        XCTAssertEqual(pooled.sliced(axis: 0, start: 0, end: 1).array, expectSmall.array)
        XCTAssertEqual(pooled.sliced(axis: 0, start: 1, end: 2).array, expectLarge.array)
    }

    /// Pooling is differentiable w.r.t. every level's features (boxes given in an order that mixes
    /// the levels): finite differences.
    func testPoolingGradientsReachEveryLevel() {
        let features = [randn([1, 2, 32, 32], seed: 3), randn([1, 2, 16, 16], seed: 4)]
        let boxes = Tensor([0, 0, 120, 110, 2, 3, 20, 30, 4, 2, 124, 126], shape: [3, 4])
        XCTAssertEqual(MultiScaleRoIAlign().levelIndices(boxes, kMin: 2, kMax: 3), [1, 0, 1])
        let weights = randn([3, 2, 7, 7], seed: 5, requiresGrad: false)
        gradcheck(features) { f in (MultiScaleRoIAlign()(f, boxes: [boxes], imageSizes: [(128, 128)]) * weights).sum() }
    }

    /// No proposals: no detections (and no crash on the empty matrices).
    func testNoProposalsGiveNoDetections() {
        var g = RandomGenerator(seed: 2)
        let heads = BoxRoIHeads(inChannels: 4, numClasses: 3, representationSize: 8, settings: BoxHeadSettings(), generator: &g)
        let features = (0..<4).map { randn([1, 4, 16 >> $0, 16 >> $0], seed: UInt64($0), requiresGrad: false) }
        let d = heads.detect(features, proposals: [Tensor.zeros([0, 4])], imageSizes: [(64, 64)])
        XCTAssertEqual(d.count, 1)
        XCTAssertEqual(d[0].boxes.shape, [0, 4])
        XCTAssertEqual(d[0].scores, [])
    }
}
