import Foundation
import XCTest
@testable import CycleTimeDetection
import CycleTimeNN
import TestSupport

final class ACARHeadTests: XCTestCase {
    /// ACAR-Net's head (two HR2O layers, evaluation mode) on two clips with 2 and 3 actors: logits
    /// and the gradients of every parameter and of the features against the float64 PyTorch module
    /// of scripts/fixtures/acar.py (written from the released code), within 1e-4 relative.
    func testACARHeadMatchesPyTorch() throws {
        let fx = try Fixtures.load("acar")
        var g = RandomGenerator(seed: 0)
        let head = ACARHead(width: 6, outputs: 5, roiSpatial: 3, reduceDim: 8, hiddenDim: 6, depth: 2, generator: &g)
        let params = head.namedParameters()
        XCTAssertEqual(Set(params.map(\.0)), Set(fx.keys.filter { !$0.hasPrefix("d.") && !$0.hasPrefix("loss.") && !["feat", "boxes", "out", "g"].contains($0) }))
        for (k, p) in params { p.assign(fx.t(k)) }
        head.eval()
        let feat = fx.t("feat").requiringGrad()
        let b = fx.t("boxes")
        var boxes: [[AVABox]] = [[], []]
        for r in 0..<b.shape[0] {
            boxes[Int(b.data[r * 5])].append(AVABox(Double(b.data[r * 5 + 1]), Double(b.data[r * 5 + 2]), Double(b.data[r * 5 + 3]), Double(b.data[r * 5 + 4])))
        }
        let out = head(features: feat, boxes: boxes)
        func close(_ a: Tensor, _ ref: Tensor, _ what: String) { assertCloseRelativeToLargest(a, ref, relative: 1e-4, what) }
        close(out, fx.t("out"), "logits")
        out.backward(fx.t("g"))
        for (k, p) in params { close(p.grad!, fx.t("d." + k), "d." + k) }
        close(feat.grad!, fx.t("d.feat"), "d.feat")
    }
}
