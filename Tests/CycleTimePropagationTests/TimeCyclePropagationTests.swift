import CycleTimeCore
import CycleTimePropagation
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest

final class TimeCyclePropagationTests: XCTestCase {
    /// TimeCycle's test procedure written plainly (in Double): per context frame a softmax over
    /// all its cells, the top-k probabilities (sorted) times the labels, summed; divided by the
    /// number of context frames; each label channel min-max normalized.
    func reference(_ q: [Float], context: [([Float], [Float])], hw: Int, c: Int, L: Int, k: Int, temperature: Double) -> [Float] {
        var out = [Double](repeating: 0, count: hw * L)
        for (f, lab) in context {
            for p in 0..<hw {
                var logits = [Double](repeating: 0, count: hw)
                for j in 0..<hw {
                    var d = 0.0
                    for x in 0..<c { d += Double(q[p * c + x]) * Double(f[j * c + x]) }
                    logits[j] = d / temperature
                }
                let m = logits.max()!
                let z = logits.reduce(0) { $0 + exp($1 - m) }
                let order = (0..<hw).sorted { logits[$0] > logits[$1] }
                for j in order.prefix(k) { for l in 0..<L { out[p * L + l] += exp(logits[j] - m) / z * Double(lab[j * L + l]) } }
            }
        }
        for l in 0..<L {
            var lo = Double.infinity, hi = -Double.infinity
            for p in 0..<hw { out[p * L + l] /= Double(context.count); lo = min(lo, out[p * L + l]) }
            for p in 0..<hw { out[p * L + l] -= lo; hi = max(hi, out[p * L + l]) }
            if hi > 0 { for p in 0..<hw { out[p * L + l] /= hi } }
        }
        return out.map { Float($0) }
    }

    func testMatchesPlainReference() {
        let h = 9, w = 11, c = 16, L = 3, hw = h * w
        var o = PropagationOptions.defaults(.timecycle)
        o.contextFrames = 3; o.topK = 4
        XCTAssertEqual(o.squareSize, 320)
        XCTAssertEqual(o.temperature, 1 / Float(512).squareRoot())
        let f0 = normalizedRandom(hw, c, seed: 3)
        var l0 = [Float](repeating: 0, count: hw * L)
        for p in 0..<hw { l0[p * L + (p * 5 % L)] = 1 }
        let prop = makePropagator(firstFeatures: f0, firstLabels: l0, height: h, width: w, channels: c, options: o)
        XCTAssertTrue(prop is TimeCyclePropagator)
        var context: [([Float], [Float])] = Array(repeating: (f0, l0), count: o.contextFrames)
        for t in 1...4 {
            let q = normalizedRandom(hw, c, seed: UInt64(40 + t))
            let expected = reference(q, context: [(f0, l0)] + context, hw: hw, c: c, L: L, k: o.topK, temperature: Double(o.temperature))
            let got = prop.step(q)
            assertClose(Tensor(shape: [hw, L], storage: Storage(got)), Tensor(shape: [hw, L], storage: Storage(expected)), rtol: 1e-4, atol: 1e-5, "frame \(t)")
            // Min-max normalized: every channel spans [0, 1].
            for l in 0..<L {
                let ch = (0..<hw).map { got[$0 * L + l] }
                XCTAssertEqual(ch.min()!, 0, accuracy: 1e-6); XCTAssertEqual(ch.max()!, 1, accuracy: 1e-6)
            }
            context.removeFirst(); context.append((q, got))
        }
    }

    /// The procedure end to end on a real image moved by known shifts (raw-pixel features, frames
    /// squashed to 320 x 320): the mask follows the motion.
    func testPixelsOnShiftedRealImage() throws {
        let root = try requireSharedData("davis-mini")
        let img = try Image.read(root + "/JPEGImages/480p/blackswan/00000.jpg")
        let mask = try Image.readPNG(root + "/Annotations/480p/blackswan/00000.png")
        let W = 400, H = 320
        let (frames, masks) = crops(img, mask, offsets: (0..<8).map { t in (200 + 6 * t, 80 + 3 * t) }, width: W, height: H)
        var js: [Double] = []
        try MaskPropagation.run(frameCount: frames.count, frame: { frames[$0] }, firstMask: masks[0], maskWidth: W, maskHeight: H,
                                extractor: .pixels(stride: 8, l2Normalize: true), options: .defaults(.timecycle)) { t, pred in
            XCTAssertEqual(pred.count, W * H)
            js.append(DAVISMetrics.jaccard(masks[t].map { $0 != 0 }, pred.map { $0 != 0 }))
        }
        print("timecycle procedure, pixel features, J per frame: \(js.map { String(format: "%.3f", $0) })")
        XCTAssertEqual(js.count, 7)
        XCTAssertGreaterThan(js.min() ?? 0, 0.7)
    }

}
