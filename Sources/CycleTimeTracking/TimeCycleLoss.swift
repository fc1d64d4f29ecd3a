import Foundation
import CycleTimeCore

// The TimeCycle losses, as in the authors' code:
// - grid loss: mean over a G x G grid of points in [-1, 1]^2 (and the batch) of the squared
//   distance between the points moved by the predicted and by the ground-truth theta;
// - L_long: grid loss of theta_c averaged over the cycles c; L_skip: grid loss of theta3 against
//   the ground truth repeated per frame;
// - L_inlier: minus the mean over (batch, frame) of sum(M * A), A the patch->frame affinity and M
//   the bilinear weights of the one-hot base positions warped by theta2 (sampled like the crops,
//   translation factor included), normalized by sum(M + eps);
// - total = 0.02 L_long + 1.0 L_inlier + 0.1 L_skip (weights from the config).
// Option: the paper's feature-similarity term in place of L_inlier.

/// The loss terms of one batch.
public struct TimeCycleLosses {
    public var long: Tensor
    /// The grid loss of each cycle (c = 1..T), shape [T].
    public var longTerms: Tensor
    public var skip: Tensor
    /// L_inlier (objective .inlier) or the feature-similarity term (objective .featureSimilarity).
    public var inlier: Tensor
    public var total: Tensor
}

public enum TimeCycleLoss {
    /// Points of the G x G loss grid in homogeneous coordinates, [3, G*G]: rows x, y, 1 (x fastest).
    public static func gridPoints(_ g: Int) -> Tensor {
        let t = Tensor(uninitialized: [3, g * g])
        for i in 0..<g {
            for j in 0..<g {
                let x = g == 1 ? -1 : -1 + 2 * Float(j) / Float(g - 1)
                let y = g == 1 ? -1 : -1 + 2 * Float(i) / Float(g - 1)
                t.data[i * g + j] = x
                t.data[g * g + i * g + j] = y
                t.data[2 * g * g + i * g + j] = 1
            }
        }
        return t
    }

    /// Mean over the batch and the grid points of |theta p - target p|^2: theta, target [N, 2, 3].
    public static func gridLoss(_ theta: Tensor, _ target: Tensor, gridSize: Int = 20) -> Tensor {
        precondition(theta.shape == target.shape && theta.rank == 3 && theta.shape[1] == 2 && theta.shape[2] == 3,
                     "gridLoss: expected two [N, 2, 3] tensors, got \(theta.shape) and \(target.shape)")
        let d = (theta - target).matmul(gridPoints(gridSize))                     // [N, 2, G*G]
        return (d * d).sum() / Tensor(scalar: Float(theta.shape[0] * gridSize * gridSize))
    }

    /// The inlier loss: -mean_n sum_{k,i,j} M[n,k,i,j] A[n,k,i,j] with M the warped one-hot base
    /// positions normalized by sum(M + eps). affinity [N, H*W, h, w] (base position k = x * H + y),
    /// theta [N, 2, 3] (translation not yet scaled), base map H x W.
    ///
    /// Computed without materializing M: sum_k M[k,i,j] A[k,i,j] is the bilinear sample of the
    /// base-position map A[:, i, j] at the warped point (i, j), and sum_k M[k,i,j] is the sample of
    /// a map of ones; both through grid_sample with one point per (n, i, j).
    public static func inlierLoss(affinity: Tensor, theta: Tensor, baseHeight hb: Int, baseWidth wb: Int,
                                  translationFactor f: Float, eps: Float) -> Tensor {
        let n = affinity.shape[0], k = affinity.shape[1], h = affinity.shape[2], w = affinity.shape[3]
        precondition(k == hb * wb, "inlierLoss: affinity has \(k) channels, base map is \(hb)x\(wb)")
        let scaled = theta * Tensor([1, 1, f, 1, 1, f], shape: [1, 2, 3])
        let grid = F.affineGrid(scaled, size: [n, 1, h, w], alignCorners: true)      // [N, h, w, (x, y)]
        // The map of base positions of each query point, indexed [x][y] (k = x * H + y): sample it
        // at (y, x).
        let swapped = grid.indexSelect(axis: 3, indices: [1, 0]).reshaped([n * h * w, 1, 1, 2])
        let maps = affinity.permuted(0, 2, 3, 1).reshaped([n * h * w, 1, wb, hb])
        let score = F.gridSample(maps, grid: swapped, mode: .bilinear, alignCorners: true)
            .reshaped([n, h * w]).sum(axis: 1)
        let ones = Tensor.ones([n * h * w, 1, wb, hb])
        let mass = F.gridSample(ones, grid: swapped, mode: .bilinear, alignCorners: true)
            .reshaped([n, h * w]).sum(axis: 1) + Float(k * h * w) * eps
        return -(score / mass).mean()
    }

    /// The paper's feature-similarity term: minus the mean (over tracked crops and batch) of the
    /// Frobenius inner product between the normalized crop and the normalized patch features.
    public static func featureSimilarity(crops: [Tensor], patch: Tensor) -> Tensor {
        precondition(!crops.isEmpty, "featureSimilarity: no crops")
        let terms = crops.map { (F.normalize($0, axis: 1) * patch).sum(axes: [1, 2, 3]).mean() }
        let acc = terms.dropFirst().reduce(terms[0], +)
        return -(acc / Tensor(scalar: Float(crops.count)))
    }

    /// All terms and the weighted total for a forward pass against the ground-truth theta [B, 2, 3].
    public static func compute(_ out: TimeCycleOutputs, target: Tensor, config c: TimeCycleConfig) -> TimeCycleLosses {
        let tl = out.cycleThetas.count
        let terms = out.cycleThetas.map { gridLoss($0, target, gridSize: c.lossGridSize) }
        let longTerms = Tensor.stack(terms, axis: 0)
        let long = longTerms.mean()
        let targetRep = TimeCycleModel.repeatEach(target, tl)
        let skip = gridLoss(out.skipThetas, targetRep, gridSize: c.lossGridSize)
        let third: Tensor
        switch c.objective {
        case .inlier:
            third = inlierLoss(affinity: out.directAffinity, theta: out.directThetas, baseHeight: c.baseGrid, baseWidth: c.baseGrid,
                               translationFactor: c.translationFactor, eps: c.inlierEpsilon)
        case .featureSimilarity:
            third = featureSimilarity(crops: out.backCrops, patch: out.patchFeatures)
        }
        let total = long * c.longWeight + third * c.inlierWeight + skip * c.skipWeight
        return TimeCycleLosses(long: long, longTerms: longTerms, skip: skip, inlier: third, total: total)
    }
}
