import CycleTimeCore
import Foundation

/// Parameters of label propagation by feature affinity (defaults: the contrastive-random-walk test code).
public struct PropagationOptions: Sendable, Equatable {
    /// Preceding frames in the context (besides the first frame).
    public var contextFrames: Int = 20
    /// Spatial radius (feature cells; a key counts when its distance to the query is < radius)
    /// applied to the preceding frames only; the first frame is searched densely.
    public var radius: Double = 12
    /// Logits = cosine / temperature.
    public var temperature: Float = 0.05
    /// Neighbours kept jointly over all context nodes; softmax over those.
    public var topK: Int = 10
    /// Query tile side (cells) for the blocked affinity: memory and speed only, never results.
    public var tile: Int = 8
    public init() {}
}

/// One frame's context node set: features [h*w, C] (L2-normalized rows) and soft labels [h*w, L].
public struct ContextFrame: Sendable {
    public let features: [Float]
    public let labels: [Float]
    /// Frames with the same serial are copies (the first frame filling the initial context).
    let serial: Int
    public init(features: [Float], labels: [Float]) { self.init(features: features, labels: labels, serial: 0) }
    init(features: [Float], labels: [Float], serial: Int) { self.features = features; self.labels = labels; self.serial = serial }
}

/// Label propagation of the contrastive random walk test procedure: context = first frame (dense)
/// + the `contextFrames` preceding frames (within `radius` of the query cell), initially filled
/// with copies of the first frame; top-k affinities jointly over all context nodes, softmax of
/// affinity / temperature over those, prediction = weighted sum of context labels, kept soft and
/// pushed as context for the next frames. Only the context is kept: memory does not grow with
/// the video's length, and affinities are computed per query tile (never the full matrix).
public final class LabelPropagator {
    public let options: PropagationOptions
    public let height: Int, width: Int, channels: Int, labelCount: Int
    let first: ContextFrame
    /// Preceding frames, oldest first.
    private(set) var recent: [ContextFrame]
    private var frameSerial = 0

    public init(firstFeatures: [Float], firstLabels: [Float], height: Int, width: Int, channels: Int,
                options: PropagationOptions = PropagationOptions()) {
        precondition(firstFeatures.count == height * width * channels, "LabelPropagator: features are not [h*w, C]")
        precondition(firstLabels.count % (height * width) == 0 && !firstLabels.isEmpty, "LabelPropagator: labels are not [h*w, L]")
        precondition(options.topK >= 1 && options.contextFrames >= 0 && options.tile >= 1 && options.temperature > 0)
        self.options = options
        self.height = height; self.width = width; self.channels = channels
        self.labelCount = firstLabels.count / (height * width)
        first = ContextFrame(features: firstFeatures, labels: firstLabels)
        recent = Array(repeating: first, count: options.contextFrames)
    }

    /// Cell offsets (dy, dx) with dy^2 + dx^2 < radius^2.
    var maxOffset: Int {
        var d = 0
        while Double((d + 1) * (d + 1)) < options.radius * options.radius { d += 1 }
        return d
    }

    /// Soft labels [h*w, L] of the next frame from its features [h*w, C]; the frame then joins the context.
    public func step(_ features: [Float]) -> [Float] {
        let pred = predict(features)
        if options.contextFrames > 0 {
            recent.removeFirst()
            frameSerial += 1
            recent.append(ContextFrame(features: features, labels: pred, serial: frameSerial))
        }
        return pred
    }

    /// Soft labels [h*w, L] from the current context (no state change).
    public func predict(_ q: [Float]) -> [Float] {
        precondition(q.count == height * width * channels, "LabelPropagator: features are not [h*w, C]")
        let h = height, w = width, c = channels, hw = h * w, L = labelCount
        let T = options.tile, R = maxOffset, K = min(options.topK, hw + recent.count * hw)
        let r2 = options.radius * options.radius
        // Largest |dx| with dy^2 + dx^2 < radius^2, per |dy| <= R.
        let halfWidth = (0...R).map { dy -> Int in
            var dx = 0
            while Double(dy * dy + (dx + 1) * (dx + 1)) < r2 { dx += 1 }
            return dx
        }
        let tilesY = (h + T - 1) / T, tilesX = (w + T - 1) / T, nTiles = tilesY * tilesX
        let win = (T + 2 * R) * (T + 2 * R)
        var out = [Float](repeating: 0, count: hw * L)
        let ctx = [first] + recent
        let invTemp = 1 / options.temperature
        let workers = max(1, min(Parallel.threadCount, nTiles))
        let saved = BLAS.threads
        BLAS.threads = 1
        defer { BLAS.threads = saved }
        let next = TileCounter()
        out.withUnsafeMutableBufferPointer { ob in
            let op = SendablePointer(ob.baseAddress!)
            q.withUnsafeBufferPointer { qb in
                let qp = UnsafeSendable(qb.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: workers) { _ in
                    var qbuf = [Float](repeating: 0, count: T * T * c)
                    var kbuf = [Float](repeating: 0, count: win * c)
                    var dense = [Float](repeating: 0, count: T * T * hw)
                    var local = [Float](repeating: 0, count: T * T * win)
                    var top = TopK(queries: T * T, k: K)
                    while true {
                        let tile = next.take()
                        if tile >= nTiles { break }
                        let y0 = (tile / tilesX) * T, x0 = (tile % tilesX) * T
                        let y1 = min(y0 + T, h), x1 = min(x0 + T, w)
                        let tw = x1 - x0, nq = (y1 - y0) * tw
                        // Gather the query rows.
                        qbuf.withUnsafeMutableBufferPointer { qd in
                            for y in y0..<y1 { (qd.baseAddress! + (y - y0) * tw * c).update(from: qp.p + (y * w + x0) * c, count: tw * c) }
                        }
                        top.reset(nq)
                        // First frame: dense.
                        ctx[0].features.withUnsafeBufferPointer { fb in
                            BLAS.sgemm(transA: false, transB: true, m: nq, n: hw, k: c, a: qbuf, lda: c, b: fb.baseAddress!, ldb: c,
                                       c: &dense, ldc: hw)
                        }
                        dense.withUnsafeBufferPointer { d in
                            for i in 0..<nq {
                                let row = d.baseAddress! + i * hw
                                var j = 0
                                while top.n[i] < K && j < hw { top.insert(row[j], Int32(j), i); j += 1 }
                                var m = top.minV[i]
                                while j < hw {
                                    if row[j] > m { top.insert(row[j], Int32(j), i); m = top.minV[i] }
                                    j += 1
                                }
                            }
                        }
                        // Preceding frames: the window of cells within the radius of the tile.
                        let ky0 = max(0, y0 - R), ky1 = min(h, y1 + R), kx0 = max(0, x0 - R), kx1 = min(w, x1 + R)
                        let kw = kx1 - kx0, nk = (ky1 - ky0) * kw
                        for s in 1..<ctx.count {
                            // A copy of the previous slot (same features, same window): its scores are in `local` already.
                            let copy = s > 1 && ctx[s].serial == ctx[s - 1].serial
                            if !copy {
                            ctx[s].features.withUnsafeBufferPointer { fb in
                                kbuf.withUnsafeMutableBufferPointer { kd in
                                    for y in ky0..<ky1 { (kd.baseAddress! + (y - ky0) * kw * c).update(from: fb.baseAddress! + (y * w + kx0) * c, count: kw * c) }
                                }
                            }
                            BLAS.sgemm(transA: false, transB: true, m: nq, n: nk, k: c, a: qbuf, lda: c, b: kbuf, ldb: c, c: &local, ldc: nk)
                            }
                            let base = Int32(s * hw)
                            for qy in y0..<y1 {
                                for qx in x0..<x1 {
                                    let i = (qy - y0) * tw + (qx - x0)
                                    for ky in max(ky0, qy - R)..<min(ky1, qy + R + 1) {
                                        let hx = halfWidth[abs(ky - qy)]
                                        let rowBase = i * nk + (ky - ky0) * kw - kx0
                                        let nodeBase = base + Int32(ky * w)
                                        var m = top.n[i] < K ? -Float.infinity : top.minV[i]
                                        for kx in max(kx0, qx - hx)..<min(kx1, qx + hx + 1) {
                                            let v = local[rowBase + kx]
                                            if v > m || top.n[i] < K {
                                                top.insert(v, nodeBase + Int32(kx), i)
                                                m = top.n[i] < K ? -Float.infinity : top.minV[i]
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    // Softmax over the top-k logits, weighted sum of labels.
                        for qy in y0..<y1 {
                            for qx in x0..<x1 {
                                let i = (qy - y0) * tw + (qx - x0)
                                let n = top.n[i]
                                var m = -Float.infinity
                                for j in 0..<n { m = max(m, top.v[i * K + j] * invTemp) }
                                var wts = [Float](repeating: 0, count: n)
                                var sum: Float = 0
                                for j in 0..<n { wts[j] = expf(top.v[i * K + j] * invTemp - m); sum += wts[j] }
                                let o = op + (qy * w + qx) * L
                                for l in 0..<L { o[l] = 0 }
                                for j in 0..<n {
                                    let id = Int(top.id[i * K + j]), s = id / hw, pos = id % hw
                                    let wt = wts[j] / sum
                                    ctx[s].labels.withUnsafeBufferPointer { lb in
                                        for l in 0..<L { o[l] += wt * lb[pos * L + l] }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

/// The k largest values per query (unordered), with the current minimum cached so that most
/// candidates are rejected by one comparison; a new value enters when larger than the minimum
/// (ties keep the earlier node).
struct TopK {
    let K: Int
    var v: [Float], id: [Int32], n: [Int], minV: [Float], minJ: [Int]
    init(queries: Int, k: Int) {
        K = k
        v = [Float](repeating: 0, count: queries * k); id = [Int32](repeating: 0, count: queries * k)
        n = [Int](repeating: 0, count: queries); minV = [Float](repeating: 0, count: queries); minJ = n
    }
    mutating func reset(_ count: Int) { for i in 0..<count { n[i] = 0 } }
    @inline(__always)
    mutating func insert(_ x: Float, _ node: Int32, _ i: Int) {
        let c = n[i], b = i * K
        if c == K {
            if !(x > minV[i]) { return }
            v[b + minJ[i]] = x; id[b + minJ[i]] = node
        } else {
            v[b + c] = x; id[b + c] = node; n[i] = c + 1
            if c + 1 < K { return }
        }
        var mi = 0, mv = v[b]
        for j in 1..<K where v[b + j] < mv { mv = v[b + j]; mi = j }
        minV[i] = mv; minJ[i] = mi
    }
}

/// A shared work counter for the tile loop.
final class TileCounter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func take() -> Int { lock.lock(); defer { lock.unlock() }; value += 1; return value - 1 }
}

struct UnsafeSendable<T>: @unchecked Sendable {
    let p: UnsafePointer<T>
    init(_ p: UnsafePointer<T>) { self.p = p }
}
