import Foundation
import CycleTimeCore

// The data recipe's ground-truth patch (authors' code): the sum of |I(s+15) - I(s+17)| over a
// (g-2) x (g-2) grid of windows of 3 * (side / g) pixels with stride side / g (g = 9: 7x7 windows of
// 78 pixels, stride 26, on 240x240 frames); one of the 10 largest picked uniformly; location
// idx / (g-3) plus uniform jitter in [-1/12, 1/12), clamped to [0, 1]; x mirrored (idx -> g-3-idx)
// when the clip is flipped; translation (2 loc - 1) * (1 - scale); rotation uniform in +-45 degrees;
// scale 1/3. The patch is cut from the target image with affine_grid + grid_sample
// (align_corners, bilinear, zero padding). Every random choice comes from the given generator, in
// the order: window, x jitter, y jitter, angle (per batch item).

public struct GroundTruthPatchConfig: Sendable, Equatable, Codable {
    /// g: the frame side is divided into g boxes; windows are 3 boxes wide, (g - 2)^2 of them.
    public var gridSize: Int = 9
    /// Pick uniformly among this many highest-motion windows.
    public var topK: Int = 10
    /// Half-width of the uniform location jitter (1/12).
    public var jitter: Double = 1.0 / 12.0
    /// Largest rotation in radians (45 degrees).
    public var maxRotation: Double = Double.pi / 4
    /// Patch scale relative to the frame (1/3).
    public var scale: Double = 1.0 / 3.0
    /// Side of the cut patch in pixels (80).
    public var patchSize: Int = 80

    public init() {}
}

public enum GroundTruthPatch {
    /// Motion score of every window: sum over channels and pixels of |target - motion| ([3, H, W]
    /// each). Index ix * (g - 2) + iy, ix the window column (x), iy its row (y).
    public static func motionScores(target: Tensor, motion: Tensor, gridSize g: Int) -> [Double] {
        precondition(target.shape == motion.shape && target.rank == 3, "motionScores: expected two [C, H, W] tensors")
        let c = target.shape[0], h = target.shape[1], w = target.shape[2]
        let box = min(h, w) / g, n = g - 2
        // Per-pixel |difference| summed over channels, then an integral image.
        var integral = [Double](repeating: 0, count: (h + 1) * (w + 1))
        for y in 0..<h {
            var rowAcc = 0.0
            for x in 0..<w {
                var d = 0.0
                for ch in 0..<c {
                    let o = (ch * h + y) * w + x
                    d += Double(Swift.abs(target.data[o] - motion.data[o]))
                }
                rowAcc += d
                integral[(y + 1) * (w + 1) + x + 1] = integral[y * (w + 1) + x + 1] + rowAcc
            }
        }
        func boxSum(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int) -> Double {
            let xa = min(x0, w), ya = min(y0, h), xb = min(x1, w), yb = min(y1, h)
            return integral[yb * (w + 1) + xb] - integral[ya * (w + 1) + xb] - integral[yb * (w + 1) + xa] + integral[ya * (w + 1) + xa]
        }
        var scores = [Double](repeating: 0, count: n * n)
        for ix in 0..<n {
            for iy in 0..<n {
                scores[ix * n + iy] = boxSum(ix * box, iy * box, ix * box + 3 * box, iy * box + 3 * box)
            }
        }
        return scores
    }

    /// The window indices of the `k` largest scores in ascending score order (ties: lower index first).
    public static func topWindows(_ scores: [Double], k: Int) -> [Int] {
        let order = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] < scores[$1] : $0 < $1 }
        return Array(order.suffix(k))
    }

    /// theta (6 values, row-major [2, 3]) for one item, drawing window, jitter and angle from `generator`.
    public static func sampleTheta(scores: [Double], flipped: Bool, config c: GroundTruthPatchConfig,
                                   generator: inout RandomGenerator) -> [Float] {
        let n = Int(Double(scores.count).squareRoot().rounded())
        let top = topWindows(scores, k: min(c.topK, scores.count))
        let idx = top[generator.int(below: top.count)]
        var ix = idx / n
        let iy = idx % n
        if flipped { ix = n - 1 - ix }
        let denom = Double(max(n - 1, 1))
        var xloc = Double(ix) / denom + generator.uniform(-c.jitter, c.jitter)
        var yloc = Double(iy) / denom + generator.uniform(-c.jitter, c.jitter)
        xloc = min(max(xloc, 0), 1)
        yloc = min(max(yloc, 0), 1)
        let alpha = generator.uniform(-c.maxRotation, c.maxRotation)
        let s = c.scale
        return [Float(s * cos(alpha)), Float(-s * sin(alpha)), Float((xloc * 2 - 1) * (1 - s)),
                Float(s * sin(alpha)), Float(s * cos(alpha)), Float((yloc * 2 - 1) * (1 - s))]
    }

    /// Cuts patches [B, C, size, size] from images [B, C, H, W] under theta [B, 2, 3].
    public static func cut(_ images: Tensor, theta: Tensor, size: Int) -> Tensor {
        let grid = F.affineGrid(theta, size: [images.shape[0], images.shape[1], size, size], alignCorners: true)
        return F.gridSample(images, grid: grid, mode: .bilinear, alignCorners: true)
    }

    /// Ground-truth thetas [B, 2, 3] and patches [B, C, p, p] for target frames and motion frames
    /// [B, C, H, W] (already cropped, flipped and normalized) and each item's flip flag.
    public static func make(target: Tensor, motion: Tensor, flipped: [Bool], config: GroundTruthPatchConfig = GroundTruthPatchConfig(),
                            generator: inout RandomGenerator) -> (theta: Tensor, patch: Tensor) {
        precondition(target.rank == 4 && target.shape == motion.shape && flipped.count == target.shape[0],
                     "GroundTruthPatch.make: target and motion must be [B, C, H, W] with one flip flag per item")
        let b = target.shape[0], per = Array(target.shape.dropFirst())
        let theta = Tensor(uninitialized: [b, 2, 3])
        for i in 0..<b {
            let ti = target.sliced(axis: 0, start: i, end: i + 1).reshaped(per)
            let mi = motion.sliced(axis: 0, start: i, end: i + 1).reshaped(per)
            let scores = motionScores(target: ti, motion: mi, gridSize: config.gridSize)
            let th = sampleTheta(scores: scores, flipped: flipped[i], config: config, generator: &generator)
            for k in 0..<6 { theta.data[i * 6 + k] = th[k] }
        }
        return (theta, noGrad { cut(target, theta: theta, size: config.patchSize) })
    }
}
