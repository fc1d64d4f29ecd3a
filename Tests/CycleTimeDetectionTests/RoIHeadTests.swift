import Foundation
import XCTest
@testable import CycleTimeDetection
import CycleTimeNN
import TestSupport

final class RoIHeadTests: XCTestCase {
    /// Logits, focal loss and gradients vs the PyTorch head of scripts/fixtures/ava.py.
    func testHeadMatchesPyTorch() throws {
        let fx = try Fixtures.load("ava")
        var g = RandomGenerator(seed: 1)
        let head = AVARoIHead(inChannels: 16, classes: 4, generator: &g)
        try head.loadStateDict(["fc_cls.weight": fx.t("head.weight"), "fc_cls.bias": fx.t("head.bias")])
        head.eval()
        let boxes = [[AVABox(0.1, 0.2, 0.6, 0.9), AVABox(0.5, 0.0, 1.0, 0.7)], [AVABox(0.05, 0.1, 0.4, 0.5)]]
        let rois = AVARoIHead.rois(boxes, imageHeight: 96, imageWidth: 112)
        let feats = fx.t("head.features").clone().requiringGrad()
        let logits = head.logits(feats, rois: rois)
        assertClose(logits, fx.t("head.logits"), rtol: 1e-4, atol: 1e-5)
        let loss = try XCTUnwrap(AVARoIHead.loss(logits, targets: fx.t("head.targets"), focal: (3, 1)))
        assertClose(loss.reshaped([1]), fx.t("head.loss"), rtol: 1e-5)
        loss.backward()
        assertClose(feats.grad!, fx.t("head.dfeatures"), rtol: 1e-4, atol: 1e-6)
        assertClose(head.fc_cls.weight.grad!, fx.t("head.dweight"), rtol: 1e-4, atol: 1e-6)
        XCTAssertNil(AVARoIHead.loss(logits, targets: Tensor.zeros(logits.shape)))
    }

    /// Slot 0 unused; custom subsets map ids to slots 1...; unknown ids are ignored in targets.
    func testClassIndexTargets() {
        let c = AVAClassIndex(ids: [12, 17, 80])
        XCTAssertEqual(c.outputs, 4)
        XCTAssertEqual(c.slot(of: 80), 3)
        XCTAssertEqual(c.id(ofSlot: 1), 12)
        XCTAssertEqual(c.targets([[17, 80], [74]]).array, [0, 0, 1, 1, 0, 0, 0, 0])
    }

    /// GT boxes always; a proposal >= 0.9 with IoU >= 0.9 to a GT takes its labels; a low-scoring or
    /// poorly overlapping one is not used.
    func testTrainingRegions() {
        let gtA = LabeledBox(box: AVABox(0, 0, 0.5, 1), personID: 0, actions: [12, 17])
        let gtB = LabeledBox(box: AVABox(0.5, 0, 1, 1), personID: 1, actions: [80])
        let near = AVABox(0.5, 0, 0.98, 1)      // IoU with B = 0.96
        let lowIoU = AVABox(0.5, 0, 0.9, 1)     // IoU with B = 0.8
        let r = trainingRegions(groundTruth: [gtA, gtB], proposals: [ScoredBox(near, score: 0.95), ScoredBox(near, score: 0.85), ScoredBox(lowIoU, score: 0.99)])
        XCTAssertEqual(r, [TrainingRegion(box: gtA.box, actions: [12, 17], fromProposal: false),
                           TrainingRegion(box: gtB.box, actions: [80], fromProposal: false),
                           TrainingRegion(box: near, actions: [80], fromProposal: true)])
        XCTAssertEqual(trainingRegions(groundTruth: [], proposals: [ScoredBox(near, score: 1)]), [])
    }

    /// The results CSV: %04d timestamps, 3-decimal boxes, 4-decimal scores, threshold 0.002 (kept at
    /// equality), readable back by the evaluator's reader.
    func testResultsWriter() throws {
        let dir = temporaryDirectory()
        let path = dir + "/results.csv"
        let key = AVAKey("vid", 902)
        let probs = Tensor([0, 0.51234, 0.0019, 0, 0.002, 0.9], shape: [2, 3])
        let dets = avaDetections(key: key, boxes: [AVABox(0.1, 0.2, 0.3, 0.4), AVABox(0.5, 0.5, 1, 1)], probabilities: probs, classes: AVAClassIndex(ids: [12, 79]))
        XCTAssertEqual(try writeAVAResults(dets, to: path), 3)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertEqual(text, "vid,0902,0.100,0.200,0.300,0.400,12,0.5123\nvid,0902,0.500,0.500,1.000,1.000,12,0.0020\nvid,0902,0.500,0.500,1.000,1.000,79,0.9000\n")
        XCTAssertEqual(try AVACSV.read(path, scoreColumn: true).rows.count, 3)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["results.csv"])
        // Overwrites atomically; an unwritable destination is an error naming it.
        XCTAssertEqual(try writeAVAResults(dets, to: path, threshold: 0.6), 1)
        XCTAssertThrowsError(try writeAVAResults(dets, to: dir + "/missing/r.csv")) { XCTAssert("\($0)".contains("missing/r.csv"), "\($0)") }
    }

    /// The ACRN relation head (training-mode batch norm), BBoxHeadAVA's pooling and classifier:
    /// logits and the gradients of every parameter, of the RoI features and of the feature maps
    /// against the float64 PyTorch module of scripts/fixtures/acrn.py (written from mmaction2's
    /// ACRNHead), within 1e-4 relative (float32 rounding through three batch norms).
    func testACRNHeadMatchesPyTorch() throws {
        let fx = try Fixtures.load("acrn")
        var g = RandomGenerator(seed: 0)
        let head = ACRNHead(inChannels: 8, outChannels: 6, stride: 2, convs: 2, generator: &g)
        let fc = Linear(6, 5, generator: &g)
        let params = head.namedParameters()
        XCTAssertEqual(params.map(\.0).sorted(), ["conv1.bn.bias", "conv1.bn.weight", "conv1.conv.weight", "conv2.bn.bias", "conv2.bn.weight",
                                                  "conv2.conv.weight", "convs.0.bn.bias", "convs.0.bn.weight", "convs.0.conv.weight"])
        for (k, p) in params { p.assign(fx.t(k)) }
        fc.weight.assign(fx.t("fc_cls.weight")); fc.bias?.assign(fx.t("fc_cls.bias"))
        head.train()
        let x = fx.t("x").requiringGrad(), feat = fx.t("feat").requiringGrad()
        let idx = (0..<5).map { Int(fx.t("idx").data[$0]) }
        let r = head(roiFeatures: x, context: feat, batchIndex: idx)
        XCTAssertEqual(r.shape, [5, 6, 1, 4, 4])
        let out = fc(r.reshaped([5, 6, 16]).max(axis: 2))
        func close(_ a: Tensor, _ ref: Tensor, _ what: String) { assertCloseRelativeToLargest(a, ref, relative: 1e-4, what) }
        close(out, fx.t("out"), "logits")
        out.backward(fx.t("g"))
        for (k, p) in params { close(p.grad!, fx.t("d." + k), "d." + k) }
        close(fc.weight.grad!, fx.t("d.fc_cls.weight"), "d.fc_cls.weight")
        close(x.grad!, fx.t("d.x"), "d.x")
        close(feat.grad!, fx.t("d.feat"), "d.feat")
    }

    /// ACAR-Net's ava_pose_softmax with the 14 pose classes of AVA's label map (ids 1-14) first:
    /// loss, its gradient and the test-time scores against scripts/fixtures/acar.py (written from
    /// the released losses.py), within float32 rounding; the gradient against central differences;
    /// with the classes in another order (pose slots not first, not contiguous) the same loss and
    /// the scores permuted alike; rows without a positive label do not count.
    func testPoseSoftmaxLossMatchesACARNet() throws {
        let fx = try Fixtures.load("acar")
        let classes = AVAClassIndex(ids: Array(1...17))
        XCTAssertEqual(classes.poseSlots, Array(1...14))
        let scoring = AVAScoring.poseSoftmax(poseSlots: classes.poseSlots)
        let logits = fx.t("loss.logits").clone().requiringGrad(), targets = fx.t("loss.targets")
        let loss = try XCTUnwrap(scoring.loss(logits, targets: targets))
        assertClose(loss.reshaped([1]), fx.t("loss.value").reshaped([1]), rtol: 1e-5, atol: 0)
        loss.backward()
        assertCloseRelativeToLargest(logits.grad!, fx.t("loss.dlogits"), relative: 1e-5, "d logits")
        let probs = scoring.probabilities(fx.t("loss.logits"))
        assertClose(probs, fx.t("loss.probs"), rtol: 1e-5, atol: 1e-7)
        for r in 0..<probs.shape[0] { XCTAssertEqual((1...14).map { probs.data[r * 18 + $0] }.reduce(0, +), 1, accuracy: 1e-5, "pose scores of box \(r) are a softmax") }
        gradcheck([fx.t("loss.logits").clone().requiringGrad()], eps: 1e-2, rtol: 1e-2, atol: 1e-4) { scoring.loss($0[0], targets: targets)! }

        // The same classes listed in another order: slot s of the permuted run is slot perm[s] here.
        let ids = [15, 3, 16, 1, 2, 17] + Array(4...14)
        let permuted = AVAClassIndex(ids: ids)
        let perm = [0] + ids
        XCTAssertEqual(permuted.poseSlots, [2, 4, 5] + Array(7...17))
        let pScoring = AVAScoring.poseSoftmax(poseSlots: permuted.poseSlots)
        let pl = try XCTUnwrap(pScoring.loss(fx.t("loss.logits").indexSelect(axis: 1, indices: perm), targets: targets.indexSelect(axis: 1, indices: perm)))
        assertClose(pl.reshaped([1]), fx.t("loss.value").reshaped([1]), rtol: 1e-5, atol: 0)
        assertClose(pScoring.probabilities(fx.t("loss.logits").indexSelect(axis: 1, indices: perm)), fx.t("loss.probs").indexSelect(axis: 1, indices: perm), rtol: 1e-5, atol: 1e-7)
        XCTAssertNil(scoring.loss(logits, targets: Tensor.zeros(logits.shape)))
    }
}
