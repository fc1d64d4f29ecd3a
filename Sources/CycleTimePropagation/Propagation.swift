import CycleTimeCore
import Foundation

/// Which test procedure propagates the labels.
public enum PropagationProcedure: String, Sendable, Equatable, CaseIterable {
    /// The contrastive random walk's test code (the default): joint top-k over all context nodes,
    /// radius on the preceding frames, softmax over the kept neighbours.
    case crw
    /// TimeCycle's test code: frames squashed to a square, per context frame a softmax over all its
    /// positions and the top-k of it, summed over the context, averaged and min-max normalized.
    case timecycle
}

/// Parameters of label propagation by feature affinity (defaults: the contrastive-random-walk test code).
public struct PropagationOptions: Sendable, Equatable {
    public var procedure: PropagationProcedure = .crw
    /// Frames are resized (squashed) to size x size before feature extraction when set (TimeCycle: 320).
    public var squareSize: Int? = nil
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

    /// The defaults of a procedure: CRW (context 20, radius 12, cosine / 0.05, top-10) or TimeCycle
    /// (frames squashed to 320 x 320, context 7, no radius, cosine / 512^-0.5 as its released
    /// test code divides by 512^-0.5 whatever the feature width, top-5 per context frame).
    public static func defaults(_ procedure: PropagationProcedure) -> PropagationOptions {
        var o = PropagationOptions()
        o.procedure = procedure
        if procedure == .timecycle {
            o.squareSize = 320; o.contextFrames = 7; o.radius = .infinity; o.temperature = 1 / Float(512).squareRoot(); o.topK = 5
        }
        return o
    }
}

/// A label propagator: soft labels [h*w, L] of the next frame from its features [h*w, C]; the
/// frame then joins the context.
public protocol Propagator: AnyObject {
    func step(_ features: [Float]) -> [Float]
}

/// The propagator of `options.procedure`.
public func makePropagator(firstFeatures: [Float], firstLabels: [Float], height: Int, width: Int, channels: Int,
                           options: PropagationOptions) -> any Propagator {
    switch options.procedure {
    case .crw:
        return LabelPropagator(firstFeatures: firstFeatures, firstLabels: firstLabels, height: height, width: width, channels: channels, options: options)
    case .timecycle:
        return TimeCyclePropagator(firstFeatures: firstFeatures, firstLabels: firstLabels, height: height, width: width, channels: channels, options: options)
    }
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
public final class LabelPropagator: Propagator {
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
        while d < max(height, width) && Double((d + 1) * (d + 1)) < options.radius * options.radius { d += 1 }
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
    ///
    /// Work goes band by band (`tile` rows of queries at a time). Within a band, queries and the
    /// keys of each preceding frame's window rows are copied once into column-major order
    /// ([x][y][C]), so that every `tile` x `tile` query block and the keys within its radius window
    /// are contiguous matrices for one GEMM each, with no per-block gathering. The first frame is
    /// scored densely with one multithreaded GEMM per band.
    public func predict(_ q: [Float]) -> [Float] {
        precondition(q.count == height * width * channels, "LabelPropagator: features are not [h*w, C]")
        let h = height, w = width, c = channels, hw = h * w, L = labelCount
        let T = options.tile, R = maxOffset, K = min(options.topK, hw + recent.count * hw)
        let r2 = options.radius * options.radius
        // Largest |dx| with dy^2 + dx^2 < radius^2, per |dy| <= R.
        let halfWidth = (0...R).map { dy -> Int in
            var dx = 0
            while dx < w && Double(dy * dy + (dx + 1) * (dx + 1)) < r2 { dx += 1 }
            return dx
        }
        let ctx = [first] + recent
        // Slots whose scores are those of the slot before (copies of one frame).
        let isCopy = (0..<ctx.count).map { s in s > 1 && ctx[s].serial == ctx[s - 1].serial }
        let invTemp = 1 / options.temperature
        let tilesX = (w + T - 1) / T
        let maxBandKeys = min(h, T + 2 * R) * w
        var out = [Float](repeating: 0, count: hw * L)
        // Per-band buffers (a band holds at most T * w queries).
        var qT = [Float](repeating: 0, count: T * w * c)
        var kT = [Float](repeating: 0, count: maxBandKeys * c)
        var dense = [Float](repeating: 0, count: T * w * hw)
        let maxWin = (T + 2 * R) * (T + 2 * R)
        var local = [Float](repeating: 0, count: tilesX * T * T * maxWin)
        let top = TopKStore(queries: T * w, k: K)
        // OpenBLAS at one thread for the whole prediction: the dense GEMM is split over our workers.
        return BLAS.withThreads(1) { () -> [Float] in

            for y0 in stride(from: 0, to: h, by: T) {
                let y1 = min(y0 + T, h), bh = y1 - y0, nqBand = bh * w
                // Band queries in column-major order: index (x * bh + (y - y0)).
                q.withUnsafeBufferPointer { src in
                    let s = UnsafeSendable(src.baseAddress!)
                    qT.withUnsafeMutableBufferPointer { dst in
                        let d = SendablePointer(dst.baseAddress!)
                        Parallel.chunks(w, costPerItem: bh * c) { r in
                            for x in r { for y in y0..<y1 { (d + (x * bh + y - y0) * c).update(from: s.p + (y * w + x) * c, count: c) } }
                        }
                    }
                }
                top.reset(nqBand)
                // First frame: dense, one single-threaded GEMM per worker's rows (OpenBLAS stays at one
                // thread for the whole prediction: switching its pool on and off per band leaves its
                // idle thread spinning against ours), then the top-k scan of the same rows.
                qT.withUnsafeBufferPointer { qb in
                    let qp = UnsafeSendable(qb.baseAddress!)
                    ctx[0].features.withUnsafeBufferPointer { fb in
                        let fp = UnsafeSendable(fb.baseAddress!)
                        dense.withUnsafeMutableBufferPointer { d in
                            let dp = SendablePointer(d.baseAddress!)
                            Parallel.chunks(nqBand, costPerItem: hw * c) { r in
                                BLAS.sgemm(transA: false, transB: true, m: r.count, n: hw, k: c, a: qp.p + r.lowerBound * c, lda: c,
                                           b: fp.p, ldb: c, c: dp + r.lowerBound * hw, ldc: hw)
                                for i in r {
                                    let row = UnsafePointer(dp + i * hw)
                                    var j = 0
                                    while top.count(i) < K && j < hw { top.insert(row[j], Int32(j), i); j += 1 }
                                    var m = top.minimum(i)
                                    while j < hw {
                                        if row[j] > m { top.insert(row[j], Int32(j), i); m = top.minimum(i) }
                                        j += 1
                                    }
                                }
                            }
                        }
                    }
                }
                // Preceding frames: the window rows of the band, column-major, then one GEMM per query block.
                let ky0 = max(0, y0 - R), ky1 = min(h, y1 + R), kh = ky1 - ky0
                for s in 1..<ctx.count {
                    let copy = isCopy[s]
                    if !copy {
                        ctx[s].features.withUnsafeBufferPointer { src in
                            let sp = UnsafeSendable(src.baseAddress!)
                            kT.withUnsafeMutableBufferPointer { dst in
                                let d = SendablePointer(dst.baseAddress!)
                                Parallel.chunks(w, costPerItem: kh * c) { r in
                                    for x in r { for y in ky0..<ky1 { (d + (x * kh + y - ky0) * c).update(from: sp.p + (y * w + x) * c, count: c) } }
                                }
                            }
                        }
                    }
                    let base = Int32(s * hw)
                    qT.withUnsafeBufferPointer { qb in
                        let qp = UnsafeSendable(qb.baseAddress!)
                        kT.withUnsafeBufferPointer { kb in
                            let kp = UnsafeSendable(kb.baseAddress!)
                            local.withUnsafeMutableBufferPointer { lb in
                                let lp = SendablePointer(lb.baseAddress!)
                                Parallel.forEach(tilesX, costPerItem: T * T * maxWin * c) { tx in
                                    let x0 = tx * T, x1 = min(x0 + T, w), tw = x1 - x0, nq = tw * bh
                                    let kx0 = max(0, x0 - R), kx1 = min(w, x1 + R), nk = (kx1 - kx0) * kh
                                    let sc = lp + tx * T * T * maxWin
                                    // A copy of the previous slot (same features, same window): its scores are in `local` already.
                                    if !copy {
                                        BLAS.sgemm(transA: false, transB: true, m: nq, n: nk, k: c, a: qp.p + x0 * bh * c, lda: c,
                                                   b: kp.p + kx0 * kh * c, ldb: c, c: sc, ldc: nk)
                                    }
                                    for qx in x0..<x1 {
                                        for qy in y0..<y1 {
                                            let li = (qx - x0) * bh + (qy - y0), i = qx * bh + (qy - y0)
                                            for ky in max(ky0, qy - R)..<min(ky1, qy + R + 1) {
                                                let hx = halfWidth[abs(ky - qy)]
                                                let nodeBase = base + Int32(ky * w)
                                                var m = top.count(i) < K ? -Float.infinity : top.minimum(i)
                                                for kx in max(kx0, qx - hx)..<min(kx1, qx + hx + 1) {
                                                    let v = sc[li * nk + (kx - kx0) * kh + (ky - ky0)]
                                                    if v > m || top.count(i) < K {
                                                        top.insert(v, nodeBase + Int32(kx), i)
                                                        m = top.count(i) < K ? -Float.infinity : top.minimum(i)
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                // Softmax over the top-k logits, weighted sum of labels.
                out.withUnsafeMutableBufferPointer { ob in
                    let op = SendablePointer(ob.baseAddress!)
                    Parallel.chunks(nqBand, costPerItem: K * L) { r in
                        var wts = [Float](repeating: 0, count: K)
                        for i in r {
                            let qx = i / bh, qy = y0 + i % bh
                            let n = top.count(i)
                            var m = -Float.infinity
                            for j in 0..<n { m = max(m, top.value(i, j) * invTemp) }
                            var sum: Float = 0
                            for j in 0..<n { wts[j] = expf(top.value(i, j) * invTemp - m); sum += wts[j] }
                            let o = op + (qy * w + qx) * L
                            for l in 0..<L { o[l] = 0 }
                            for j in 0..<n {
                                let id = Int(top.node(i, j)), s = id / hw, pos = id % hw
                                let wt = wts[j] / sum
                                ctx[s].labels.withUnsafeBufferPointer { lb in
                                    for l in 0..<L { o[l] += wt * lb[pos * L + l] }
                                }
                            }
                        }
                    }
                }
            }
            return out
        }
    }
}

/// The k largest values per query (unordered), with the current minimum cached so that most
/// candidates are rejected by one comparison; a new value enters when larger than the minimum
/// (ties keep the earlier node). Raw storage: threads work on disjoint queries.
final class TopKStore: @unchecked Sendable {
    let K: Int
    private let v: UnsafeMutablePointer<Float>, id: UnsafeMutablePointer<Int32>
    private let n: UnsafeMutablePointer<Int>, minV: UnsafeMutablePointer<Float>, minJ: UnsafeMutablePointer<Int>
    init(queries: Int, k: Int) {
        K = k
        v = .allocate(capacity: queries * k); id = .allocate(capacity: queries * k)
        n = .allocate(capacity: queries); minV = .allocate(capacity: queries); minJ = .allocate(capacity: queries)
        n.initialize(repeating: 0, count: queries)
    }
    deinit { v.deallocate(); id.deallocate(); n.deallocate(); minV.deallocate(); minJ.deallocate() }
    func reset(_ count: Int) { n.update(repeating: 0, count: count) }
    @inline(__always) func count(_ i: Int) -> Int { n[i] }
    @inline(__always) func minimum(_ i: Int) -> Float { minV[i] }
    @inline(__always) func value(_ i: Int, _ j: Int) -> Float { v[i * K + j] }
    @inline(__always) func node(_ i: Int, _ j: Int) -> Int32 { id[i * K + j] }
    @inline(__always)
    func insert(_ x: Float, _ node: Int32, _ i: Int) {
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

struct UnsafeSendable<T>: @unchecked Sendable {
    let p: UnsafePointer<T>
    init(_ p: UnsafePointer<T>) { self.p = p }
}
