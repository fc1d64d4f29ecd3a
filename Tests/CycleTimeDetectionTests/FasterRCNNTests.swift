import Foundation
import XCTest
@testable import CycleTimeDetection
import CycleTimeCore
import CycleTimeNN
import CycleTimeVideo
import TestSupport

/// scripts/fixtures/detector.py's (offset, scale) of the hash formula for a state-dict entry of the
/// Faster R-CNN (uniform values with the std of torchvision's own init of that layer).
func detectorOffsetScale(key: String, shape: [Int]) -> (offset: Double, scale: Double) {
    let body = "backbone.body."
    if key.hasPrefix(body) { return resnetOffsetScale(key: String(key.dropFirst(body.count)), shape: shape) }
    let uniform = 3.0.squareRoot() / 1000
    switch key {
    case "rpn.head.conv.0.0.weight", "rpn.head.cls_logits.weight", "roi_heads.box_predictor.cls_score.weight":
        return (0, 0.01 * uniform)
    case "rpn.head.bbox_pred.weight", "roi_heads.box_predictor.bbox_pred.weight":
        return (0, 0.001 * uniform)
    default:
        if shape.count >= 2 { return (0, (1.0 / Double(shape.dropFirst().reduce(1, *))).squareRoot() * uniform) }
        return (0, 1e-5)
    }
}

final class FasterRCNNTests: XCTestCase {
    /// torchvision's keys and shapes in order, by model name (scripts/fixtures/detector.py).
    static func manifest(_ name: String) throws -> [(String, [Int])] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.directory + "/detector_manifest.json"))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: [[Any]]])
        return try XCTUnwrap(json[name]).map { entry in
            (entry[0] as? String ?? "", (entry[1] as? [Int]) ?? [])
        }
    }

    /// fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None) has BatchNorm2d (with
    /// num_batches_tracked); around a pretrained body torchvision uses FrozenBatchNorm2d (no
    /// num_batches_tracked): the same keys and shapes, in the same order, as each.
    func testStateDictKeysMatchTorchvision() throws {
        for (name, frozen) in [("fasterrcnn_resnet50_fpn", false), ("fasterrcnn_resnet50_fpn_frozen", true)] {
            var config = FasterRCNNConfig()
            config.frozenBatchNorm = frozen
            var g = RandomGenerator(seed: 0)
            let model = FasterRCNN(config: config, initialize: false, generator: &g)
            let ours = model.namedStateEntries().map { ($0.0, $0.1.shape) }
            let theirs = try Self.manifest(name)
            XCTAssertEqual(ours.map(\.0), theirs.map(\.0), name)
            XCTAssertEqual(ours.map(\.1), theirs.map(\.1), name)
        }
    }

    /// Trainable layers 3 (torchvision's default): layer2..layer4 of the body, the FPN and the heads
    /// get gradients; conv1, layer1 and every frozen batch norm do not.
    func testTrainableBackboneLayers() {
        var g = RandomGenerator(seed: 0)
        var config = FasterRCNNConfig()
        config.depth = 18
        let model = FasterRCNN(config: config, initialize: false, generator: &g)
        for (key, t) in model.namedParameters() {
            let bodyKey = key.hasPrefix("backbone.body.") ? String(key.dropFirst("backbone.body.".count)) : nil
            let trainable = bodyKey.map { k in ["layer2.", "layer3.", "layer4."].contains { k.hasPrefix($0) } && !k.contains("bn") && !k.contains("downsample.1") } ?? true
            XCTAssertEqual(t.requiresGrad, trainable, key)
        }
    }

    /// Eval-mode parity with torchvision on a real frame (JHMDB, one person) and a cropped, flipped
    /// copy (a batch with padding), with identical formula weights: the same number of RPN proposals
    /// and detections, the same labels, and each box paired with a reference box whose score agrees,
    /// against torchvision's float32 run and its float64 run. Skips without ../shared/data.
    ///
    /// Tolerances: torchvision's own float32 run differs from its float64 run by at most g = 1.05e-3
    /// px (proposals, in the resized image: a delta's float32 noise is multiplied by the anchor
    /// size, up to 724 px) and 3.7e-4 px (detections), by 1.1e-5 (objectness) and 3.7e-6 (scores), with the same
    /// counts (the fixture script prints these). Any float32 run (another accumulation order, any
    /// BLAS) lies within about g of the exact values, so two float32 runs within about 2g: 2.5e-3 px
    /// for proposals, 1e-3 px for detections, 5e-5 and 2e-5 for the scores. Boxes are paired rather
    /// than compared index by index: both lists are sorted by score, and scores 2.4e-7 apart in
    /// float64 (image 0 has such pairs) may come out in either order in float32. A box flipping at an
    /// NMS or top-k boundary would change a count or leave a box unpaired.
    func testDetectionsMatchTorchvision() throws {
        let fx = try Fixtures.load("detector")
        let model = try Self.formulaModel(Self.parityConfig())
        model.eval()
        let results = model.detect(try Self.parityImages())
        for (i, r) in results.enumerated() {
            for suffix in ["", "_f64"] {
                let what = "image \(i) vs torchvision" + (suffix.isEmpty ? " float32" : " float64")
                let refProposals = fx.t("rpn_boxes_\(i)\(suffix)"), refBoxes = fx.t("boxes_\(i)\(suffix)")
                XCTAssertEqual(r.proposals.shape, refProposals.shape, what + " proposals")
                XCTAssertEqual(r.detections.boxes.shape, refBoxes.shape, what + " detections")
                XCTAssertEqual(r.detections.labels, fx.t("labels_\(i)\(suffix)").array.map { Int($0) }, what + " labels")
                guard r.proposals.shape == refProposals.shape, r.detections.boxes.shape == refBoxes.shape else { continue }
                let p = Self.paired(r.proposals, r.proposalScores, refProposals, fx.t("rpn_scores_\(i)\(suffix)").array)
                let d = Self.paired(r.detections.boxes, r.detections.scores, refBoxes, fx.t("scores_\(i)\(suffix)").array)
                print("\(what): \(refProposals.shape[0]) proposals (max box diff \(p.box) px, score diff \(p.score), \(p.moved) at another index), "
                      + "\(refBoxes.shape[0]) detections (max box diff \(d.box) px, score diff \(d.score), \(d.moved) at another index)")
                XCTAssertLessThanOrEqual(p.box, 2.5e-3, what + " proposals")
                XCTAssertLessThanOrEqual(p.score, 5e-5, what + " objectness")
                XCTAssertLessThanOrEqual(d.box, 1e-3, what + " boxes")
                XCTAssertLessThanOrEqual(d.score, 2e-5, what + " scores")
            }
        }
    }

    /// The fixture script's SETTINGS and TRAIN_SETTINGS: 2 classes, min_size 256, max_size 400,
    /// 300 proposals after NMS (test and train), 1000 before in training (test: the default 1000).
    static func parityConfig() -> FasterRCNNConfig {
        var config = FasterRCNNConfig()
        config.numClasses = 2
        config.transform.minSize = 256
        config.transform.maxSize = 400
        config.rpn.postNMSTopN = 300
        config.rpn.preNMSTopNTrain = 1000
        config.rpn.postNMSTopNTrain = 300
        return config
    }

    /// A detector whose every state-dict entry comes from the fixture script's hash formula.
    static func formulaModel(_ config: FasterRCNNConfig) throws -> FasterRCNN {
        var g = RandomGenerator(seed: 0)
        let model = FasterRCNN(config: config, initialize: false, generator: &g)
        var sd: [String: Tensor] = [:]
        for (k, (key, t)) in model.namedStateEntries().enumerated() {
            let (o, s) = detectorOffsetScale(key: key, shape: t.shape)
            sd[key] = hashTensor(k: k, shape: t.shape, offset: o, scale: s)
        }
        try model.loadStateDict(sd)
        return model
    }

    /// The fixture script's two images: the JHMDB frame and its 240x160 crop (rows 40..199,
    /// columns 80..319) flipped vertically. Skips without ../shared/data.
    static func parityImages() throws -> [Tensor] {
        let frame = try Image.read(try detectorTestFrame()).tensor()
        let crop = frame.sliced(axis: 1, start: 40, end: 200).sliced(axis: 2, start: 80, end: 320)
        return [frame, crop.indexSelect(axis: 1, indices: Array((0..<160).reversed()))]
    }

    /// Pairs each box with the nearest unpaired reference box: the largest coordinate and score
    /// differences of the pairs (infinity when a box has no reference within 1 px), and how many
    /// boxes sit at another index than their partner.
    static func paired(_ a: Tensor, _ scores: [Float], _ ref: Tensor, _ refScores: [Float]) -> (box: Float, score: Float, moved: Int) {
        let n = a.shape[0]
        var used = [Bool](repeating: false, count: n), box: Float = 0, score: Float = 0, moved = 0
        for i in 0..<n {
            var best = -1, bestDiff = Float.infinity
            for j in 0..<n where !used[j] {
                let d = (0..<4).map { Swift.abs(a.data[i * 4 + $0] - ref.data[j * 4 + $0]) }.max() ?? 0
                if d < bestDiff { best = j; bestDiff = d }
            }
            guard best >= 0, bestDiff <= 1 else { return (.infinity, .infinity, moved) }
            used[best] = true
            box = max(box, bestDiff)
            score = max(score, Swift.abs(scores[i] - refScores[best]))
            if best != i { moved += 1 }
        }
        return (box, score, moved)
    }
}
