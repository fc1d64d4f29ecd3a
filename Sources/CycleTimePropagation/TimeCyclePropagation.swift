import CycleTimeCore
import Foundation

/// Label propagation of TimeCycle's released test code (test_davis.py), an option beside the
/// contrastive-random-walk procedure: the context is the first frame plus the `contextFrames`
/// preceding frames (copies of the first frame at the start). For every context frame t and query
/// cell q, affinities to all of t's cells, cosine / temperature, go through a softmax over t's cells;
/// the `topK` largest probabilities p (not renormalized) add p x label(t, cell) to the prediction.
/// The sum over the context is divided by the number of context frames, then each label channel is
/// min-max normalized over the cells; the result is kept soft and reused as context.
///
/// Differences from the released code, on purpose: there the padded video re-predicts frame 0 from
/// copies of itself and uses that prediction, not the annotation, as one of frame 1's context frames;
/// here frame 0 keeps its annotation. Frames are squashed with bilinear resizing (no antialiasing).
public final class TimeCyclePropagator: Propagator {
    public let options: PropagationOptions
    public let height: Int, width: Int, channels: Int, labelCount: Int
    let first: ContextFrame
    private(set) var recent: [ContextFrame]

    public init(firstFeatures: [Float], firstLabels: [Float], height: Int, width: Int, channels: Int,
                options: PropagationOptions = .defaults(.timecycle)) {
        precondition(firstFeatures.count == height * width * channels, "TimeCyclePropagator: features are not [h*w, C]")
        precondition(firstLabels.count % (height * width) == 0 && !firstLabels.isEmpty, "TimeCyclePropagator: labels are not [h*w, L]")
        precondition(options.topK >= 1 && options.contextFrames >= 0 && options.temperature > 0)
        self.options = options
        self.height = height; self.width = width; self.channels = channels
        labelCount = firstLabels.count / (height * width)
        first = ContextFrame(features: firstFeatures, labels: firstLabels)
        recent = Array(repeating: first, count: options.contextFrames)
    }

    public func step(_ features: [Float]) -> [Float] {
        let pred = predict(features)
        if options.contextFrames > 0 {
            recent.removeFirst()
            recent.append(ContextFrame(features: features, labels: pred))
        }
        return pred
    }

    /// Soft labels [h*w, L] from the current context (no state change).
    public func predict(_ q: [Float]) -> [Float] {
        precondition(q.count == height * width * channels, "TimeCyclePropagator: features are not [h*w, C]")
        let hw = height * width, c = channels, L = labelCount
        let K = min(options.topK, hw), invTemp = 1 / options.temperature
        let ctx = [first] + recent
        var out = [Float](repeating: 0, count: hw * L)
        // Queries in row chunks: the affinity block is chunk x hw, never hw x hw.
        let chunk = max(1, min(hw, (1 << 22) / max(hw, 1)))
        var scores = [Float](repeating: 0, count: chunk * hw)
        for frame in ctx {
            for r0 in stride(from: 0, to: hw, by: chunk) {
                let rows = min(chunk, hw - r0)
                q.withUnsafeBufferPointer { qb in
                    frame.features.withUnsafeBufferPointer { kb in
                        BLAS.sgemm(transA: false, transB: true, m: rows, n: hw, k: c, a: qb.baseAddress! + r0 * c, lda: c,
                                   b: kb.baseAddress!, ldb: c, c: &scores, ldc: hw)
                    }
                }
                scores.withUnsafeBufferPointer { sb in
                    let sp = UnsafeSendable(sb.baseAddress!)
                    out.withUnsafeMutableBufferPointer { ob in
                        let op = SendablePointer(ob.baseAddress!)
                        frame.labels.withUnsafeBufferPointer { lb in
                            let lp = UnsafeSendable(lb.baseAddress!)
                            Parallel.chunks(rows, costPerItem: hw) { range in
                                var top = [(Float, Int)]()
                                top.reserveCapacity(K + 1)
                                for i in range {
                                    let row = sp.p + i * hw
                                    var m = -Float.infinity
                                    for j in 0..<hw { m = max(m, row[j]) }
                                    var z: Float = 0
                                    for j in 0..<hw { z += expf((row[j] - m) * invTemp) }
                                    // Top-k of the row (largest first; ties: the earlier cell).
                                    top.removeAll(keepingCapacity: true)
                                    for j in 0..<hw {
                                        let v = row[j]
                                        if top.count == K && !(v > top[K - 1].0) { continue }
                                        var at = top.count
                                        while at > 0 && v > top[at - 1].0 { at -= 1 }
                                        top.insert((v, j), at: at)
                                        if top.count > K { top.removeLast() }
                                    }
                                    let o = op + (r0 + i) * L
                                    for (v, j) in top {
                                        let p = expf((v - m) * invTemp) / z
                                        for l in 0..<L { o[l] += p * lp.p[j * L + l] }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // Average over the context, then min-max normalize each label channel over the cells.
        let n = Float(ctx.count)
        for l in 0..<L {
            var lo = Float.infinity
            for p in 0..<hw { out[p * L + l] /= n; lo = min(lo, out[p * L + l]) }
            var hi = -Float.infinity
            for p in 0..<hw { out[p * L + l] -= lo; hi = max(hi, out[p * L + l]) }
            if hi > 0 { for p in 0..<hw { out[p * L + l] /= hi } }
        }
        return out
    }
}
