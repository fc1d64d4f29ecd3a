import Foundation
import XCTest
@testable import CycleTimeTracking
import CycleTimeCore
import TestSupport

final class TimeCycleLossTests: XCTestCase {
    func testGridLossByHand() {
        // A pure translation difference (0.3, -0.1) moves every point by the same vector.
        let a = Tensor([1, 0, 0.3, 0, 1, -0.1, 0.5, 0.1, 0.2, -0.1, 0.5, 0.4], shape: [2, 2, 3])
        let b = Tensor([1, 0, 0, 0, 1, 0, 0.5, 0.1, 0.2, -0.1, 0.5, 0.4], shape: [2, 2, 3])
        assertClose(TimeCycleLoss.gridLoss(a, b, gridSize: 20), Tensor(scalar: 0.1 / 2), rtol: 1e-6, atol: 1e-7)
        // A scale difference s: |(s x, s y)|^2 averaged over the grid = s^2 * 2 * mean(x^2).
        let s = 0.25
        let c = Tensor([Float(1 + s), 0, 0, 0, Float(1 + s), 0], shape: [1, 2, 3])
        let id = Tensor([1, 0, 0, 0, 1, 0], shape: [1, 2, 3])
        for g in [2, 5, 20] {
            let xs = (0..<g).map { -1 + 2 * Double($0) / Double(g - 1) }
            let meanSq = xs.map { $0 * $0 }.reduce(0, +) / Double(g)
            assertClose(TimeCycleLoss.gridLoss(c, id, gridSize: g), Tensor(scalar: Float(s * s * 2 * meanSq)), rtol: 1e-5, atol: 1e-7)
        }
    }

    func testGridLossGradcheck() {
        let a = randn([3, 2, 3], seed: 1, scale: 0.5)
        let b = randn([3, 2, 3], seed: 2, requiresGrad: false, scale: 0.5)
        gradcheck([a], eps: 1e-2, rtol: 1e-2, atol: 1e-3) { xs in TimeCycleLoss.gridLoss(xs[0], b, gridSize: 4) }
    }

    /// The original's formulation: warp one-hot masks of every base position (channel k = x * H + y)
    /// with grid_sample and normalize them by sum(mask + eps).
    func naiveInlier(affinity: Tensor, theta: Tensor, hb: Int, wb: Int, f: Float, eps: Float) -> Tensor {
        let n = affinity.shape[0], k = hb * wb, h = affinity.shape[2], w = affinity.shape[3]
        let maskId = Tensor.zeros([n, k, hb, wb])
        for b in 0..<n { for y in 0..<hb { for x in 0..<wb { maskId[b, x * hb + y, y, x] = 1 } } }
        let scaled = theta * Tensor([1, 1, f, 1, 1, f], shape: [1, 2, 3])
        let grid = F.affineGrid(scaled, size: [n, k, h, w], alignCorners: true)
        let mask = F.gridSample(maskId, grid: grid, mode: .bilinear, alignCorners: true)
        let norm = (mask + eps).sum(axes: [1, 2, 3], keepdim: true)
        return -((mask / norm) * affinity).sum(axes: [1, 2, 3]).mean()
    }

    func testInlierLossEqualsTheMaskFormulation() {
        // Non-square base (3 x 4) so that a wrong position order shows; thetas with points inside
        // and outside the map.
        let hb = 3, wb = 4
        let aff = randn([2, hb * wb, 2, 3], seed: 3).softmax(axis: 1).detach().requiringGrad()
        let theta = Tensor([0.4, -0.1, 0.13, 0.12, 0.35, -0.21, 0.9, 0.2, 0.6, -0.3, 0.7, 0.45], shape: [2, 2, 3], requiresGrad: true)
        let fast = TimeCycleLoss.inlierLoss(affinity: aff, theta: theta, baseHeight: hb, baseWidth: wb, translationFactor: 227.0 / 210.0, eps: 1e-5)
        fast.backward()
        let (ga, gt) = (aff.grad!, theta.grad!)
        aff.grad = nil; theta.grad = nil
        let naive = naiveInlier(affinity: aff, theta: theta, hb: hb, wb: wb, f: 227.0 / 210.0, eps: 1e-5)
        naive.backward()
        assertClose(fast, naive, rtol: 1e-5, atol: 1e-7)
        assertClose(ga, aff.grad!, rtol: 1e-5, atol: 1e-7)
        assertClose(gt, theta.grad!, rtol: 1e-4, atol: 1e-6)
        XCTAssertLessThan(fast.item(), 0)
    }

    func testInlierLossGradcheck() {
        let aff = randn([1, 6, 2, 2], seed: 5).softmax(axis: 1).detach().requiringGrad()
        let theta = Tensor([0.4, -0.1, 0.13, 0.12, 0.35, -0.21], shape: [1, 2, 3], requiresGrad: true)
        gradcheck([aff, theta], eps: 1e-3, rtol: 2e-2, atol: 1e-3) { xs in
            TimeCycleLoss.inlierLoss(affinity: xs[0], theta: xs[1], baseHeight: 2, baseWidth: 3, translationFactor: 1.1, eps: 1e-5)
        }
    }

    func testFeatureSimilarityByHand() {
        // Crops equal to the patch: every position contributes |p|^2 = 1, so the term is -(h * w).
        let p = F.normalize(randn([2, 4, 3, 3], seed: 6, requiresGrad: false), axis: 1)
        let crop = p * 2.5
        assertClose(TimeCycleLoss.featureSimilarity(crops: [crop, crop], patch: p), Tensor(scalar: -9), rtol: 1e-5, atol: 1e-6)
        // Opposite crops give +h*w; the average of the two is 0.
        assertClose(TimeCycleLoss.featureSimilarity(crops: [crop, -crop], patch: p), Tensor(scalar: 0), rtol: 1e-5, atol: 1e-5)
        let c = randn([2, 4, 3, 3], seed: 7)
        gradcheck([c], eps: 1e-2, rtol: 2e-2, atol: 1e-3) { xs in TimeCycleLoss.featureSimilarity(crops: [xs[0]], patch: p) }
    }

    func testComputeCombinesTheTermsWithTheConfigWeights() {
        var cfg = TimeCycleConfig()
        cfg.frameSize = 24; cfg.patchSize = 8  // base 3x3, patch 1x1
        let target = Tensor([0.3, 0, 0.1, 0, 0.3, -0.2], shape: [1, 2, 3])
        let thetas = (0..<2).map { i in Tensor([0.3, 0.01 * Float(i), 0.2, 0, 0.3, 0], shape: [1, 2, 3]) }
        let direct = Tensor([0.3, 0, 0.1, 0, 0.3, 0.1, 0.3, 0, -0.1, 0, 0.3, 0.1], shape: [2, 2, 3])
        let aff = randn([2, 9, 1, 1], seed: 8, requiresGrad: false).softmax(axis: 1)
        let skip = Tensor([0.3, 0, 0.0, 0, 0.3, 0.1, 0.3, 0, -0.1, 0, 0.3, 0.1], shape: [2, 2, 3])
        let crops = [randn([1, 4, 1, 1], seed: 9, requiresGrad: false)]
        let patch = F.normalize(randn([1, 4, 1, 1], seed: 10, requiresGrad: false), axis: 1)
        let out = TimeCycleOutputs(cycleThetas: thetas, directThetas: direct, directAffinity: aff, skipThetas: skip,
                                   backCrops: crops, patchFeatures: patch)
        let l = TimeCycleLoss.compute(out, target: target, config: cfg)
        let long = (TimeCycleLoss.gridLoss(thetas[0], target).item() + TimeCycleLoss.gridLoss(thetas[1], target).item()) / 2
        XCTAssertEqual(l.long.item(), long, accuracy: 1e-6)
        let skipExpected = TimeCycleLoss.gridLoss(skip, Tensor.cat([target, target], axis: 0)).item()
        XCTAssertEqual(l.skip.item(), skipExpected, accuracy: 1e-6)
        let inl = TimeCycleLoss.inlierLoss(affinity: aff, theta: direct, baseHeight: 3, baseWidth: 3,
                                           translationFactor: cfg.translationFactor, eps: cfg.inlierEpsilon).item()
        XCTAssertEqual(l.inlier.item(), inl, accuracy: 1e-6)
        XCTAssertEqual(l.total.item(), 0.02 * long + inl + 0.1 * skipExpected, accuracy: 1e-6)
        cfg.objective = .featureSimilarity
        cfg.inlierWeight = 0.5
        let l2 = TimeCycleLoss.compute(out, target: target, config: cfg)
        let sim = TimeCycleLoss.featureSimilarity(crops: crops, patch: patch).item()
        XCTAssertEqual(l2.inlier.item(), sim, accuracy: 1e-6)
        XCTAssertEqual(l2.total.item(), 0.02 * long + 0.5 * sim + 0.1 * skipExpected, accuracy: 1e-6)
    }
}
