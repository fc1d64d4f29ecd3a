import CycleTimeCore
import CycleTimeData
import CycleTimeVideo
import Foundation

/// A 2-D point (pixels or feature cells); x < 0 marks a joint with no prediction.
public struct Point2: Sendable, Equatable, Codable {
    public var x: Double, y: Double
    public init(_ x: Double, _ y: Double) { self.x = x; self.y = y }
}

/// JHMDB keypoint labels: each joint a Gaussian on the feature grid plus a background channel,
/// decoded as the weighted mean of the top cells (the contrastive-random-walk test code's scheme).
public enum KeypointLabels {
    /// Soft labels [h*w, 1 + J]: channel 0 = background (1 where no joint's Gaussian reaches),
    /// channel 1 + j = joint j's unnormalized Gaussian (peak 1) over a (6 sigma + 1)-cell window
    /// whose centre cell is trunc(p - 3 sigma) + floor((6 sigma + 1) / 2), `joints` in cells.
    public static func labels(joints: [Point2], gridHeight h: Int, gridWidth w: Int, sigma: Double = 0.5) -> [Float] {
        let J = joints.count, L = J + 1
        var out = [Float](repeating: 0, count: h * w * L)
        let size = 6 * sigma + 1
        let n = Int(size.rounded(.up))             // arange(0, size): ceil(size) samples
        let c0 = (size / 2).rounded(.down)          // size // 2
        for (j, p) in joints.enumerated() {
            let ulx = Int(p.x - 3 * sigma), uly = Int(p.y - 3 * sigma)
            let brx = Int(p.x + 3 * sigma + 1), bry = Int(p.y + 3 * sigma + 1)
            if ulx >= w || uly >= h || brx < 0 || bry < 0 { continue }
            for gy in 0..<n {
                let y = uly + gy
                if y < max(0, uly) || y >= min(bry, h) || y < 0 { continue }
                for gx in 0..<n {
                    let x = ulx + gx
                    if x < max(0, ulx) || x >= min(brx, w) || x < 0 { continue }
                    let d2 = (Double(gx) - c0) * (Double(gx) - c0) + (Double(gy) - c0) * (Double(gy) - c0)
                    out[(y * w + x) * L + 1 + j] = Float(exp(-d2 / (2 * sigma * sigma)))
                }
            }
        }
        for p in 0..<(h * w) {
            var s: Float = 0
            for j in 0..<J { s += out[p * L + 1 + j] }
            if s == 0 { out[p * L] = 1 }
        }
        return out
    }

    /// Joint positions (cells) from soft labels [h*w, 1 + J]: the weighted mean of the `topK`
    /// highest cells of each joint channel (weights normalized over those); (-1, -1) when the
    /// channel is all zero.
    public static func decode(_ soft: [Float], gridHeight h: Int, gridWidth w: Int, joints J: Int, topK: Int = 3) -> [Point2] {
        let L = J + 1, hw = h * w, k = min(topK, hw)
        return (0..<J).map { j in
            var idx = Array(0..<hw)
            var total: Float = 0
            for p in 0..<hw { total += soft[p * L + 1 + j] }
            if total == 0 { return Point2(-1, -1) }
            idx.sort { soft[$0 * L + 1 + j] > soft[$1 * L + 1 + j] || (soft[$0 * L + 1 + j] == soft[$1 * L + 1 + j] && $0 < $1) }
            let top = idx.prefix(k)
            let vs = top.map { Double(soft[$0 * L + 1 + j]) }
            let z = vs.reduce(0, +)
            var x = 0.0, y = 0.0
            for (p, v) in zip(top, vs) { x += Double(p % w) * v / z; y += Double(p / w) * v / z }
            return Point2(x, y)
        }
    }
}

/// PCK on JHMDB as the contrastive-random-walk evaluation computes it.
public struct PCKResult: Sendable, Codable {
    public var thresholds: [Double]
    /// Mean over joints of the per-joint PCK (fraction of predictions within threshold x scale), per threshold.
    public var pck: [Double]
    /// Per-joint PCK [threshold][joint] (nan for a joint never scored).
    public var perJoint: [[Double]]
}

public enum JHMDBEvaluation {
    public static let thresholds = [0.1, 0.2, 0.3, 0.4, 0.5]

    /// JHMDB's skeleton as pairs of 0-based joints (neck, belly, face, shoulders R/L, hips R/L,
    /// elbows R/L, knees R/L, wrists R/L, ankles R/L).
    public static let skeleton = [(0, 2), (0, 1), (0, 3), (0, 4), (1, 5), (1, 6), (3, 7), (7, 11), (4, 8), (8, 12),
                                  (5, 9), (9, 13), (6, 10), (10, 14)]

    /// PCK of predictions against ground truth, both [T][J] in 0-based pixels. Frame 0 is skipped;
    /// a joint is scored where its prediction exists (x >= 0); distances are normalized per frame
    /// by 0.6 x the diagonal of the box of that frame's scored ground-truth joints; per-joint
    /// PCK averaged over the joints that have scored entries.
    public static func pck(groundTruth gt: [[Point2]], predictions pred: [[Point2]], thresholds: [Double] = thresholds) throws -> PCKResult {
        try pck(clips: [(gt, pred)], thresholds: thresholds)
    }

    /// PCK over several clips, the normalized distances of each joint pooled over all clips.
    public static func pck(clips: [(groundTruth: [[Point2]], predictions: [[Point2]])], thresholds: [Double] = thresholds) throws -> PCKResult {
        let J = clips.first?.groundTruth.first?.count ?? 0
        var dists = [[Double]](repeating: [], count: J)
        for (gt, pred) in clips {
        guard gt.count == pred.count else { throw EvaluationError("PCK: \(pred.count) predicted frames, \(gt.count) ground-truth frames") }
        for t in 1..<max(gt.count, 1) {
            guard gt[t].count == J && pred[t].count == J else { throw EvaluationError("PCK: frame \(t) has \(pred[t].count) predicted joints, \(gt[t].count) ground-truth joints") }
            var minx = 1e6, miny = 1e6, maxx = -1.0, maxy = -1.0
            for j in 0..<J where pred[t][j].x >= 0 {
                minx = min(minx, gt[t][j].x); miny = min(miny, gt[t][j].y); maxx = max(maxx, gt[t][j].x); maxy = max(maxy, gt[t][j].y)
            }
            let scale = 0.6 * ((maxx - minx) * (maxx - minx) + (maxy - miny) * (maxy - miny)).squareRoot()
            for j in 0..<J where pred[t][j].x >= 0 {
                let dx = pred[t][j].x - gt[t][j].x, dy = pred[t][j].y - gt[t][j].y
                dists[j].append((dx * dx + dy * dy).squareRoot() / scale)
            }
        }
        }
        var perJoint: [[Double]] = [], means: [Double] = []
        for th in thresholds {
            let pj = dists.map { d in d.isEmpty ? Double.nan : Double(d.filter { $0 <= th }.count) / Double(d.count) }
            let scored = pj.filter { !$0.isNaN }
            perJoint.append(pj)
            means.append(scored.isEmpty ? .nan : scored.reduce(0, +) / Double(scored.count))
        }
        return PCKResult(thresholds: thresholds, pck: means, perJoint: perJoint)
    }

    /// Ground-truth joints of a clip, [T][J] in 0-based pixels (`pos_img` - 1).
    public static func groundTruth(_ clip: JHMDBClip) throws -> [[Point2]] {
        let j: Tensor
        do { j = try clip.joints() } catch { throw EvaluationError("\(error)") }
        let T = j.shape[0], J = j.shape[1]
        return (0..<T).map { t in (0..<J).map { k in Point2(Double(j.data[(t * J + k) * 2]) - 1, Double(j.data[(t * J + k) * 2 + 1]) - 1) } }
    }

    /// Predicted keypoints file: lines `frame,joint,x,y` (0-based pixels; -1 = no prediction) after a header.
    public static func writeKeypoints(_ k: [[Point2]], to path: String) throws {
        var s = "frame,joint,x,y\n"
        for (t, js) in k.enumerated() { for (j, p) in js.enumerated() { s += "\(t),\(j),\(p.x),\(p.y)\n" } }
        try AtomicFile.write(s, to: path)
    }

    public static func readKeypoints(_ path: String) throws -> [[Point2]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw EvaluationError("\(path): cannot read keypoints file") }
        var rows: [(Int, Int, Point2)] = []
        for (n, line) in text.split(whereSeparator: \.isNewline).enumerated() where n > 0 {
            let f = line.split(separator: ",")
            guard f.count == 4, let t = Int(f[0]), let j = Int(f[1]), let x = Double(f[2]), let y = Double(f[3]), t >= 0, j >= 0 else {
                throw EvaluationError("\(path): line \(n + 1): expected frame,joint,x,y")
            }
            // The table below is frames x joints: bound both before allocating it.
            guard t < 1_000_000, j < 1_000 else {
                throw EvaluationError("\(path): line \(n + 1): frame \(t) or joint \(j) out of range (frames < 1000000, joints < 1000)")
            }
            rows.append((t, j, Point2(x, y)))
        }
        if rows.isEmpty { throw EvaluationError("\(path): no keypoints") }
        let T = (rows.map { $0.0 }.max() ?? 0) + 1, J = (rows.map { $0.1 }.max() ?? 0) + 1
        var out = [[Point2]](repeating: [Point2](repeating: Point2(-1, -1), count: J), count: T)
        for (t, j, p) in rows { out[t][j] = p }
        return out
    }
}
