import Foundation

// Box operations on [N, 4] (x1, y1, x2, y2) tensors with torchvision.ops semantics (float32
// arithmetic as its CPU kernels): IoU, non-maximum suppression (plain and per class), clipping,
// small-box removal, and the R-CNN box coder. Not differentiable (detection post-processing).

public enum Boxes {
    /// (x2 - x1) * (y2 - y1) of every box (torchvision.ops.box_area).
    public static func area(_ boxes: Tensor) -> [Float] {
        checkBoxes(boxes, "area")
        let p = boxes.data
        return (0..<boxes.shape[0]).map { (p[$0 * 4 + 2] - p[$0 * 4]) * (p[$0 * 4 + 3] - p[$0 * 4 + 1]) }
    }

    /// torchvision.ops.box_iou: [N, M] intersection over union of every pair.
    public static func iou(_ a: Tensor, _ b: Tensor) -> Tensor {
        checkBoxes(a, "iou"); checkBoxes(b, "iou")
        let n = a.shape[0], m = b.shape[0]
        let areaA = area(a), areaB = area(b)
        let out = Tensor(uninitialized: [n, m])
        let pa = a.data, pb = b.data, po = out.data
        for i in 0..<n {
            for j in 0..<m {
                let w = max(min(pa[i * 4 + 2], pb[j * 4 + 2]) - max(pa[i * 4], pb[j * 4]), 0)
                let h = max(min(pa[i * 4 + 3], pb[j * 4 + 3]) - max(pa[i * 4 + 1], pb[j * 4 + 1]), 0)
                let inter = w * h
                po[i * m + j] = inter / (areaA[i] + areaB[j] - inter)
            }
        }
        return out
    }

    /// torchvision.ops.nms (its CPU kernel): indices of the kept boxes in decreasing score order.
    /// Boxes are visited by a stable descending sort of the scores (equal scores: lower index
    /// first); a box is suppressed when its IoU with a kept box is strictly greater than
    /// `iouThreshold`.
    public static func nms(_ boxes: Tensor, scores: Tensor, iouThreshold: Float) -> [Int] {
        checkBoxes(boxes, "nms")
        precondition(scores.count == boxes.shape[0], "nms: \(boxes.shape[0]) boxes but \(scores.count) scores")
        return nms(boxes.data, scores: scores.array, iouThreshold: iouThreshold)
    }

    static func nms(_ p: UnsafeMutablePointer<Float>, scores: [Float], iouThreshold: Float) -> [Int] {
        let n = scores.count
        let order = stableDescendingOrder(scores)
        var areas = [Float](repeating: 0, count: n)
        for i in 0..<n { areas[i] = (p[i * 4 + 2] - p[i * 4]) * (p[i * 4 + 3] - p[i * 4 + 1]) }
        var suppressed = [Bool](repeating: false, count: n)
        var keep: [Int] = []
        for a in 0..<n {
            let i = order[a]
            if suppressed[i] { continue }
            keep.append(i)
            let ix1 = p[i * 4], iy1 = p[i * 4 + 1], ix2 = p[i * 4 + 2], iy2 = p[i * 4 + 3], iarea = areas[i]
            for b in (a + 1)..<n {
                let j = order[b]
                if suppressed[j] { continue }
                let w = max(Float(0), min(ix2, p[j * 4 + 2]) - max(ix1, p[j * 4]))
                let h = max(Float(0), min(iy2, p[j * 4 + 3]) - max(iy1, p[j * 4 + 1]))
                let inter = w * h
                if inter / (iarea + areas[j] - inter) > iouThreshold { suppressed[j] = true }
            }
        }
        return keep
    }

    /// torchvision.ops.batched_nms: NMS within each class only; indices of the kept boxes in
    /// decreasing score order. As torchvision on the CPU: up to 1000 boxes (4000 coordinates) it
    /// offsets each class's boxes by class x (max coordinate + 1) and runs one NMS; above, it runs
    /// NMS per class and sorts the union by score (stable here; torchvision's sort leaves the order
    /// of equal scores unspecified).
    public static func batchedNMS(_ boxes: Tensor, scores: Tensor, classes: [Int], iouThreshold: Float) -> [Int] {
        checkBoxes(boxes, "batchedNMS")
        let n = boxes.shape[0]
        precondition(scores.count == n && classes.count == n, "batchedNMS: \(n) boxes, \(scores.count) scores, \(classes.count) classes")
        if n == 0 { return [] }
        let s = scores.array
        if n * 4 > 4000 {
            var keep: [Int] = []
            for c in Set(classes).sorted() {
                let members = (0..<n).filter { classes[$0] == c }
                let sub = boxes.indexSelect(axis: 0, indices: members)
                keep += nms(sub.data, scores: members.map { s[$0] }, iouThreshold: iouThreshold).map { members[$0] }
            }
            keep.sort()
            return stableDescendingOrder(keep.map { s[$0] }).map { keep[$0] }
        }
        var maxCoordinate = -Float.infinity
        for i in 0..<(n * 4) { maxCoordinate = max(maxCoordinate, boxes.data[i]) }
        let shifted = Tensor(uninitialized: [n, 4])
        for i in 0..<n {
            let offset = Float(classes[i]) * (maxCoordinate + 1)
            for k in 0..<4 { shifted.data[i * 4 + k] = boxes.data[i * 4 + k] + offset }
        }
        return nms(shifted.data, scores: s, iouThreshold: iouThreshold)
    }

    /// torchvision.ops.clip_boxes_to_image: x clamped to [0, width], y to [0, height]; any shape
    /// [..., 4k] of (x1, y1, x2, y2) groups.
    public static func clipToImage(_ boxes: Tensor, height: Int, width: Int) -> Tensor {
        precondition(boxes.rank >= 1 && boxes.shape[boxes.rank - 1] % 2 == 0, "clipToImage: last dimension must hold (x, y) pairs, got \(boxes.shape)")
        let out = boxes.detach().clone()
        let w = Float(width), h = Float(height)
        for i in 0..<out.count {
            let v = out.data[i], hi = i % 2 == 0 ? w : h
            out.data[i] = min(max(v, 0), hi)
        }
        return out
    }

    /// torchvision.ops.remove_small_boxes: indices of the boxes whose width and height are both at
    /// least `minSize`.
    public static func removeSmall(_ boxes: Tensor, minSize: Float) -> [Int] {
        checkBoxes(boxes, "removeSmall")
        let p = boxes.data
        return (0..<boxes.shape[0]).filter { p[$0 * 4 + 2] - p[$0 * 4] >= minSize && p[$0 * 4 + 3] - p[$0 * 4 + 1] >= minSize }
    }

    /// Indices sorting `values` in decreasing order, equal values keeping their index order (torch's
    /// sort(stable=True, descending=True), which torchvision's NMS kernel uses). NaN sorts first, as
    /// torch treats it as the largest value.
    public static func stableDescendingOrder(_ values: [Float]) -> [Int] {
        Array(values.indices).sorted { a, b in
            let va = values[a], vb = values[b]
            if va.isNaN != vb.isNaN { return va.isNaN }
            return va > vb || (!(va < vb) && a < b)
        }
    }

    static func checkBoxes(_ boxes: Tensor, _ op: String) {
        precondition(boxes.rank == 2 && boxes.shape[1] == 4, "\(op): boxes must be [N, 4] (x1, y1, x2, y2), got \(boxes.shape)")
    }
}

/// torchvision's detection BoxCoder: box regression targets (dx, dy, dw, dh) relative to reference
/// boxes, scaled by `weights`; decoding clamps dw and dh at `bboxXformClip` (log(1000 / 16)) so
/// exp does not overflow.
public struct BoxCoder: Sendable, Equatable {
    public var weights: [Float]
    public var bboxXformClip: Float

    public static let defaultXformClip = Float(Foundation.log(1000.0 / 16.0))

    public init(weights: [Float], bboxXformClip: Float = BoxCoder.defaultXformClip) {
        precondition(weights.count == 4, "BoxCoder: weights needs 4 values (wx, wy, ww, wh), got \(weights)")
        self.weights = weights; self.bboxXformClip = bboxXformClip
    }

    /// encode_boxes: targets [N, 4] of `reference` boxes (e.g. ground truth) w.r.t. `proposals` [N, 4].
    public func encode(reference: Tensor, proposals: Tensor) -> Tensor {
        Boxes.checkBoxes(reference, "BoxCoder.encode"); Boxes.checkBoxes(proposals, "BoxCoder.encode")
        precondition(reference.shape[0] == proposals.shape[0], "BoxCoder.encode: \(reference.shape[0]) references, \(proposals.shape[0]) proposals")
        let n = reference.shape[0], r = reference.data, p = proposals.data
        let out = Tensor(uninitialized: [n, 4])
        for i in 0..<n {
            let exW = p[i * 4 + 2] - p[i * 4], exH = p[i * 4 + 3] - p[i * 4 + 1]
            let exX = p[i * 4] + 0.5 * exW, exY = p[i * 4 + 1] + 0.5 * exH
            let gtW = r[i * 4 + 2] - r[i * 4], gtH = r[i * 4 + 3] - r[i * 4 + 1]
            let gtX = r[i * 4] + 0.5 * gtW, gtY = r[i * 4 + 1] + 0.5 * gtH
            out.data[i * 4] = weights[0] * (gtX - exX) / exW
            out.data[i * 4 + 1] = weights[1] * (gtY - exY) / exH
            out.data[i * 4 + 2] = weights[2] * Foundation.log(gtW / exW)
            out.data[i * 4 + 3] = weights[3] * Foundation.log(gtH / exH)
        }
        return out
    }

    /// decode_single: `relCodes` [N, 4K] (K boxes per reference, e.g. one per class) applied to
    /// `boxes` [N, 4]; returns [N, K, 4].
    public func decode(_ relCodes: Tensor, boxes: Tensor) -> Tensor {
        Boxes.checkBoxes(boxes, "BoxCoder.decode")
        let n = boxes.shape[0]
        precondition(relCodes.rank == 2 && relCodes.shape[0] == n && relCodes.shape[1] % 4 == 0,
                     "BoxCoder.decode: codes must be [\(n), 4K], got \(relCodes.shape)")
        let k = relCodes.shape[1] / 4, b = boxes.data, c = relCodes.data
        let out = Tensor(uninitialized: [n, k, 4])
        for i in 0..<n {
            let w = b[i * 4 + 2] - b[i * 4], h = b[i * 4 + 3] - b[i * 4 + 1]
            let cx = b[i * 4] + 0.5 * w, cy = b[i * 4 + 1] + 0.5 * h
            for j in 0..<k {
                let q = (i * k + j) * 4
                let dx = c[q] / weights[0], dy = c[q + 1] / weights[1]
                let dw = min(c[q + 2] / weights[2], bboxXformClip), dh = min(c[q + 3] / weights[3], bboxXformClip)
                let px = dx * w + cx, py = dy * h + cy
                let halfW = 0.5 * (Foundation.exp(dw) * w), halfH = 0.5 * (Foundation.exp(dh) * h)
                out.data[q] = px - halfW; out.data[q + 1] = py - halfH
                out.data[q + 2] = px + halfW; out.data[q + 3] = py + halfH
            }
        }
        return out
    }
}
