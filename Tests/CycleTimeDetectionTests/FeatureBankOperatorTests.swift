import Foundation
import XCTest
@testable import CycleTimeDetection
import CycleTimeCore
import CycleTimeNN
import TestSupport

final class FeatureBankOperatorTests: XCTestCase {
    /// mmaction2's FBOHead (evaluation mode) with each operator: non-local with 2 pre-activated
    /// layers, non-local with 1 post-activated layer (layer norm after out_conv, ReLU after the sum),
    /// average and maximum: the output and the gradients of every parameter, of the RoI features and
    /// of the long-term features against the float64 PyTorch module of scripts/fixtures/lfb.py
    /// (written from the paper and mmaction2's code), within 1e-4 relative; the parameter names are
    /// mmaction2's.
    func testFeatureBankOperatorsMatchPyTorch() throws {
        let fx = try Fixtures.load("lfb")
        let cases: [(String, FeatureBankOperatorKind, Int, Bool)] = [("nl", .nonLocal, 2, true), ("nlpost", .nonLocal, 1, false),
                                                                      ("avg", .avg, 2, true), ("max", .max, 2, true)]
        for (name, kind, layers, pre) in cases {
            var g = RandomGenerator(seed: 0)
            let head = FBOHead(kind: kind, stChannels: 6, ltChannels: 5, latentChannels: 4, longTerm: 7, layers: layers, preActivate: pre,
                               generator: &g)
            head.eval()
            let params = head.namedParameters()
            let stored = Set(fx.keys.filter { $0.hasPrefix(name + ".") && !$0.hasPrefix(name + ".d.") }.map { String($0.dropFirst(name.count + 1)) })
            XCTAssertEqual(Set(params.map(\.0)), stored.subtracting(["x", "lt", "out", "g"]), name)
            for (k, p) in params { p.assign(fx.t(name + "." + k)) }
            let x = fx.t(name + ".x").requiringGrad(), lt = fx.t(name + ".lt").requiringGrad()
            let out = head(x, longTerm: lt)
            func close(_ a: Tensor, _ ref: Tensor, _ what: String) { assertCloseRelativeToLargest(a, ref, relative: 1e-4, "\(name) \(what)") }
            XCTAssertEqual(out.shape, [3, FBOHead.outChannels(kind: kind, stChannels: 6, ltChannels: 5, latentChannels: 4), 1, 1, 1])
            close(out, fx.t(name + ".out"), "output")
            out.backward(fx.t(name + ".g"))
            // phi's bias adds the same <theta, b> to every long-term feature's logit, which the softmax
            // removes: its exact gradient is 0 (the reference's is float64 rounding, ~1e-17). Ours is
            // float32 rounding of sums of terms as large as the other gradients: below 1e-4 of the largest.
            let largest = params.map { k, _ in fx.t(name + ".d." + k).array.map(abs).max() ?? 0 }.max() ?? 0
            for (k, p) in params {
                let grad = try XCTUnwrap(p.grad, k), ref = fx.t(name + ".d." + k)
                if k.hasSuffix("lt_feat_conv.conv.bias") {
                    XCTAssertLessThan(ref.array.map(abs).max() ?? 1, 1e-12 * largest, "\(name) d.\(k) is 0 in float64")
                    XCTAssertLessThan(grad.array.map(abs).max() ?? 1, 1e-4 * largest, "\(name) d.\(k)")
                } else {
                    close(grad, ref, "d." + k)
                }
            }
            close(try XCTUnwrap(x.grad), fx.t(name + ".d.x"), "d.x")
            close(try XCTUnwrap(lt.grad), fx.t(name + ".d.lt"), "d.lt")
        }
    }

    /// In training mode the dropouts draw from their own seeded generators: two heads built from
    /// the same seed give the same output, and it differs from evaluation mode.
    func testNonLocalDropoutIsSeeded() {
        func make() -> FBOHead {
            var g = RandomGenerator(seed: 5)
            return FBOHead(kind: .nonLocal, stChannels: 6, ltChannels: 5, latentChannels: 4, longTerm: 7, generator: &g)
        }
        let x = randn([2, 6, 2, 3, 3], seed: 1), lt = randn([2, 5, 7, 1, 1], seed: 2)
        let a = make(), b = make()
        XCTAssertEqual(a(x, longTerm: lt).array, b(x, longTerm: lt).array)
        XCTAssertNotEqual(a.eval()(x, longTerm: lt).array, b(x, longTerm: lt).array)
    }
}
