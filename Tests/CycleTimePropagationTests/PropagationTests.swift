import CycleTimeCore
import CycleTimePropagation
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest

/// Crops of `img` (and its mask) at the given offsets: a real image moving by known shifts.
func crops(_ img: Image, _ mask: Image, offsets: [(Int, Int)], width: Int, height: Int) -> ([Image], [[Int]]) {
    var frames: [Image] = [], masks: [[Int]] = []
    for (ox, oy) in offsets {
        var px = [UInt8](repeating: 0, count: width * height * 3), m = [Int](repeating: 0, count: width * height)
        for y in 0..<height {
            for x in 0..<width {
                let s = (y + oy) * img.width + (x + ox)
                for c in 0..<3 { px[(y * width + x) * 3 + c] = img.pixels[s * 3 + c] }
                m[y * width + x] = Int(mask.pixels[s])
            }
        }
        frames.append(Image(width: width, height: height, channels: 3, pixels: px)); masks.append(m)
    }
    return (frames, masks)
}

final class PropagationTests: XCTestCase {
    /// Raw-pixel (Lab) features keep J above 0.9 on a real image moved by known shifts.
    func testPixelPropagationOnShiftedRealImage() throws {
        let root = try requireSharedData("davis-mini")
        let img = try Image.read(root + "/JPEGImages/480p/blackswan/00000.jpg")
        let mask = try Image.readPNG(root + "/Annotations/480p/blackswan/00000.png")
        let offsets = (0..<12).map { t in (200 + 6 * t, 80 + 3 * t) }  // 6 px right, 3 px down per frame
        let (frames, masks) = crops(img, mask, offsets: offsets, width: 400, height: 320)
        var js: [Double] = []
        try MaskPropagation.run(frameCount: frames.count, frame: { frames[$0] }, firstMask: masks[0], maskWidth: 400, maskHeight: 320,
                                extractor: .pixels(stride: 4, l2Normalize: true), options: PropagationOptions()) { t, pred in
            js.append(DAVISMetrics.jaccard(masks[t].map { $0 != 0 }, pred.map { $0 != 0 }))
        }
        XCTAssertEqual(js.count, 11)
        let mean = js.reduce(0, +) / Double(js.count)
        print("pixel propagation J per frame: \(js.map { String(format: "%.3f", $0) }), mean \(mean)")
        XCTAssertGreaterThan(js.min() ?? 0, 0.9)
    }
}

/// n random rows of c values, each L2-normalized: features [n, C] for propagator tests.
func normalizedRandom(_ n: Int, _ c: Int, seed: UInt64) -> [Float] {
    let t = randn([n, c], seed: seed)
    var v = Array(UnsafeBufferPointer(start: t.data, count: n * c))
    for i in 0..<n {
        var s: Float = 0
        for k in 0..<c { s += v[i * c + k] * v[i * c + k] }
        for k in 0..<c { v[i * c + k] /= s.squareRoot() }
    }
    return v
}

final class LabelPropagatorTests: XCTestCase {

    /// The dense procedure written plainly: every context node scored, radius mask on the preceding
    /// frames only, top-k by sorting, softmax, weighted labels.
    func reference(_ q: [Float], context: [([Float], [Float])], h: Int, w: Int, c: Int, L: Int, o: PropagationOptions) -> [Float] {
        let hw = h * w
        var out = [Float](repeating: 0, count: hw * L)
        for p in 0..<hw {
            var cand: [(Float, Int, Int)] = []
            for (s, (f, _)) in context.enumerated() {
                for j in 0..<hw {
                    if s > 0 {
                        let dy = Double(j / w - p / w), dx = Double(j % w - p % w)
                        if (dy * dy + dx * dx).squareRoot() >= o.radius { continue }
                    }
                    var d: Float = 0
                    for k in 0..<c { d += q[p * c + k] * f[j * c + k] }
                    cand.append((d / o.temperature, s, j))
                }
            }
            let top = cand.sorted { $0.0 > $1.0 }.prefix(o.topK)
            let m = top.first!.0
            let z = top.reduce(Float(0)) { $0 + expf($1.0 - m) }
            for (v, s, j) in top { for l in 0..<L { out[p * L + l] += expf(v - m) / z * context[s].1[j * L + l] } }
        }
        return out
    }

    func testTiledAffinityMatchesDenseReference() {
        let h = 13, w = 17, c = 8, L = 3, hw = h * w
        var o = PropagationOptions()
        o.contextFrames = 3; o.radius = 4.5; o.topK = 5; o.tile = 4; o.temperature = 0.1
        let f0 = normalizedRandom(hw, c, seed: 1)
        var l0 = [Float](repeating: 0, count: hw * L)
        for p in 0..<hw { l0[p * L + (p * 7 % L)] = 1 }
        let prop = LabelPropagator(firstFeatures: f0, firstLabels: l0, height: h, width: w, channels: c, options: o)
        var context: [([Float], [Float])] = Array(repeating: (f0, l0), count: o.contextFrames)
        for t in 1...5 {
            let q = normalizedRandom(hw, c, seed: UInt64(10 + t))
            let expected = reference(q, context: [(f0, l0)] + context, h: h, w: w, c: c, L: L, o: o)
            let got = prop.step(q)
            assertClose(Tensor(shape: [hw, L], storage: Storage(got)), Tensor(shape: [hw, L], storage: Storage(expected)), rtol: 1e-4, atol: 1e-5, "frame \(t)")
            context.removeFirst(); context.append((q, got))
        }
    }
}
