import Foundation
import CycleTimeCore
import CycleTimeNN

// What the TimeCycle localizer learns, on inputs whose answer is known (issue 18 part 5):
// - readout: the localizer alone, fed affinities that are Gaussians over the base grid peaked where
//   the ground-truth theta puts each patch cell, trained on the grid loss;
// - cycle: the whole model (every cycle, the original losses) with fixed positional features in
//   place of the encoder, so only the localizer learns; the clip's frames are translations of the
//   target image by known displacements.
//
// Frame of reference: the ground-truth theta is the transform that cut the patch from the target
// image (affine_grid, align_corners); the grid losses compare the localizer's raw theta with it, so
// the localizer's raw output is in that frame. The 227/210 factor belongs to the sampler only (it
// decides where features are cropped, and the inlier mask is warped by the same sampler), so errors
// compare the raw theta with the raw truth, never the scaled one.

/// Mean translation errors (normalized image units) of one forward pass.
public struct TrackingErrors: Sendable, Equatable, Codable {
    /// theta2, patch -> each clip frame directly, against the target's translation plus the frame's displacement.
    public var direct: Double
    /// theta3, each direct crop back into the target image, against the target's translation.
    public var skip: Double
    /// theta_c, the end of each long cycle in the target image, against the target's translation.
    public var long: Double

    public init(direct: Double, skip: Double, long: Double) {
        self.direct = direct
        self.skip = skip
        self.long = long
    }
}

public enum TimeCycleProbe {
    /// The optimizer of the authors' training script: Adam, lr 2e-4, betas (0.5, 0.999).
    public static func originalOptimizer(_ parameters: [(String, Tensor)], learningRate: Float = 2e-4) -> Adam {
        Adam(parameters: parameters.map { (name: $0.0, tensor: $0.1) }, learningRate: learningRate, betas: (0.5, 0.999))
    }

    /// n ground-truth thetas [n, 2, 3] drawn as the data recipe draws them
    /// (`GroundTruthPatch.sampleTheta`) from motion scores that are uniformly random, so every
    /// window is equally likely.
    public static func sampleTargets(_ n: Int, patch: GroundTruthPatchConfig = GroundTruthPatchConfig(),
                                     generator g: inout RandomGenerator) -> Tensor {
        let windows = max(patch.gridSize - 2, 1) * max(patch.gridSize - 2, 1)
        let out = Tensor(uninitialized: [n, 2, 3])
        for i in 0..<n {
            let scores = (0..<windows).map { _ in g.nextDouble() }
            let th = GroundTruthPatch.sampleTheta(scores: scores, flipped: false, config: patch, generator: &g)
            for k in 0..<6 { out.data[6 * i + k] = th[k] }
        }
        return out
    }

    /// linspace(-1, 1, n): normalized coordinates of the cells of an n-cell side (align_corners).
    public static func cellCoordinates(_ n: Int) -> [Double] {
        (0..<n).map { n == 1 ? 0 : -1 + 2 * Double($0) / Double(n - 1) }
    }

    /// Where theta [6 values of item b] puts patch cell (i, j) (row i, column j): (x, y).
    public static func warp(_ theta: Tensor, _ b: Int, _ x: Double, _ y: Double) -> (Double, Double) {
        let t = theta.data + 6 * b
        return (Double(t[0]) * x + Double(t[1]) * y + Double(t[2]), Double(t[3]) * x + Double(t[4]) * y + Double(t[5]))
    }

    /// Affinities [N, G*G, P, P] in the model's layout (base position k = x * G + y): for each patch
    /// cell a Gaussian of `sigma` base cells, normalized over the base grid, centred where theta
    /// [N, 2, 3] puts the cell (patch cell (i, j) at patch coordinates (s_j, s_i), base cell (x, y)
    /// at (s'_x, s'_y), s and s' linspaces over [-1, 1]).
    public static func gaussianAffinity(theta: Tensor, baseGrid g: Int, patchGrid p: Int, sigma: Double) -> Tensor {
        precondition(theta.rank == 3 && theta.shape[1] == 2 && theta.shape[2] == 3, "gaussianAffinity: theta must be [N, 2, 3]")
        let n = theta.shape[0], ps = cellCoordinates(p)
        let out = Tensor(uninitialized: [n, g * g, p, p])
        let cells = Double(g - 1) / 2
        for b in 0..<n {
            for i in 0..<p {
                for j in 0..<p {
                    let (wx, wy) = warp(theta, b, ps[j], ps[i])
                    let cx = (wx + 1) * cells, cy = (wy + 1) * cells
                    var weights = [Double](repeating: 0, count: g * g)
                    var total = 0.0
                    for x in 0..<g {
                        for y in 0..<g {
                            let dx = Double(x) - cx, dy = Double(y) - cy
                            let v = Foundation.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
                            weights[x * g + y] = v
                            total += v
                        }
                    }
                    for k in 0..<(g * g) {
                        out.data[((b * g * g + k) * p + i) * p + j] = Float(weights[k] / max(total, .leastNormalMagnitude))
                    }
                }
            }
        }
        return out
    }

    /// Translations of thetas [N, 2, 3].
    static func translations(_ theta: Tensor) -> [(Double, Double)] {
        (0..<theta.shape[0]).map { (Double(theta.data[6 * $0 + 2]), Double(theta.data[6 * $0 + 5])) }
    }

    /// Mean distance between the translations of predicted and true thetas ([N, 2, 3] each).
    public static func translationError(_ predicted: Tensor, _ truth: Tensor) -> Double {
        precondition(predicted.shape == truth.shape, "translationError: \(predicted.shape) vs \(truth.shape)")
        let p = translations(predicted), t = translations(truth)
        let total = zip(p, t).map { (($0.0 - $1.0) * ($0.0 - $1.0) + ($0.1 - $1.1) * ($0.1 - $1.1)).squareRoot() }.reduce(0, +)
        return total / Double(max(p.count, 1))
    }

    /// The same error for the constant prediction of the truth's mean translation.
    public static func constantTranslationError(_ truth: Tensor) -> Double {
        let t = translations(truth), n = Double(max(t.count, 1))
        let mx = t.map(\.0).reduce(0, +) / n, my = t.map(\.1).reduce(0, +) / n
        return t.map { (($0.0 - mx) * ($0.0 - mx) + ($0.1 - my) * ($0.1 - my)).squareRoot() }.reduce(0, +) / n
    }

    /// The truth of the direct thetas [B*T, 2, 3] (batch-major): the target theta [B, 2, 3] with
    /// frame t's displacement [B, T, 2] added to its translation (frame t shows the target image's
    /// content at position p at p + d_t).
    public static func directTargets(_ target: Tensor, displacements d: Tensor) -> Tensor {
        let b = target.shape[0], t = d.shape[1]
        precondition(d.shape == [b, t, 2], "directTargets: displacements must be [\(b), T, 2], got \(d.shape)")
        let out = Tensor(uninitialized: [b * t, 2, 3])
        for i in 0..<b {
            for f in 0..<t {
                let o = out.data + 6 * (i * t + f)
                for k in 0..<6 { o[k] = target.data[6 * i + k] }
                o[2] += d.data[(i * t + f) * 2]
                o[5] += d.data[(i * t + f) * 2 + 1]
            }
        }
        return out
    }

    /// The errors of a forward pass against the target thetas [B, 2, 3] and displacements [B, T, 2].
    public static func errors(_ out: TimeCycleOutputs, target: Tensor, displacements: Tensor) -> TrackingErrors {
        let t = displacements.shape[1]
        let long = out.cycleThetas.map { translationError($0, target) }.reduce(0, +) / Double(max(out.cycleThetas.count, 1))
        return TrackingErrors(direct: translationError(out.directThetas, directTargets(target, displacements: displacements)),
                              skip: translationError(out.skipThetas, TimeCycleModel.repeatEach(target, t)),
                              long: long)
    }

    /// The errors of the best constant predictions (the mean true translation of each kind).
    public static func constantErrors(target: Tensor, displacements: Tensor) -> TrackingErrors {
        let c = constantTranslationError(target)
        return TrackingErrors(direct: constantTranslationError(directTargets(target, displacements: displacements)), skip: c, long: c)
    }
}

// MARK: - Localizer readout

/// The readout experiment: the localizer alone on Gaussian affinities, grid loss.
public struct LocalizerReadoutSettings: Sendable, Equatable {
    /// Base and patch grids (the original's 30 and 10: 240 px frames, 80 px patches at stride 8).
    public var baseGrid = 30, patchGrid = 10
    /// Width of the Gaussian affinities in base cells.
    public var sigma = 3.0
    public var batch = 4, steps = 100, heldOut = 64
    public var learningRate: Float = 2e-4
    public var seed: UInt64 = 1

    public init(baseGrid: Int = 30, patchGrid: Int = 10) {
        self.baseGrid = baseGrid
        self.patchGrid = patchGrid
    }
}

public struct LocalizerReadoutResult: Sendable {
    /// The training grid loss of every step.
    public var losses: [Double]
    /// The grid loss on the held-out items after training.
    public var heldOutLoss: Double
    /// The held-out grid loss of the best constant theta (the held-out targets' mean).
    public var constantLoss: Double
}

extension TimeCycleProbe {
    /// A model config whose maps have the given grids (frames 8 G pixels, patches 8 P) and the
    /// original localizer.
    public static func config(baseGrid: Int, patchGrid: Int) -> TimeCycleConfig {
        var c = TimeCycleConfig()
        c.frameSize = 8 * baseGrid
        c.patchSize = 8 * patchGrid
        return c
    }

    /// Trains a fresh localizer (seeded) on the grid loss against Gaussian affinities of sampled targets.
    public static func trainReadout(_ s: LocalizerReadoutSettings) -> LocalizerReadoutResult {
        let c = config(baseGrid: s.baseGrid, patchGrid: s.patchGrid)
        var g = RandomGenerator(seed: s.seed)
        let localizer = Localizer(config: c, generator: &g)
        let opt = originalOptimizer(localizer.namedParameters(), learningRate: s.learningRate)
        func predict(_ a: Tensor) -> Tensor { similarityTheta(localizer(a), scale: c.thetaScale) }
        var losses: [Double] = []
        for _ in 0..<s.steps {
            let target = sampleTargets(s.batch, generator: &g)
            let a = gaussianAffinity(theta: target, baseGrid: s.baseGrid, patchGrid: s.patchGrid, sigma: s.sigma)
            opt.zeroGrad()
            let loss = TimeCycleLoss.gridLoss(predict(a), target, gridSize: c.lossGridSize)
            loss.backward()
            opt.step()
            losses.append(Double(loss.item()))
        }
        var hg = RandomGenerator(seed: s.seed &+ 1_000_003)
        let held = sampleTargets(s.heldOut, generator: &hg)
        let a = gaussianAffinity(theta: held, baseGrid: s.baseGrid, patchGrid: s.patchGrid, sigma: s.sigma)
        let heldOut = noGrad { TimeCycleLoss.gridLoss(predict(a), held, gridSize: c.lossGridSize).item() }
        let mean = held.mean(axes: [0], keepdim: true).expanded(to: held.shape)
        let constant = noGrad { TimeCycleLoss.gridLoss(mean, held, gridSize: c.lossGridSize).item() }
        return LocalizerReadoutResult(losses: losses, heldOutLoss: Double(heldOut), constantLoss: Double(constant))
    }
}

// MARK: - The full cycle on positional features

/// Fixed positional features: at a point p (normalized coordinates), channel c is
/// exp(-|p - q_c|^2 / (2 width^2)) for centres q_c on a side x side lattice over [-extent, extent]^2.
public struct PositionalEncoding: Sendable, Equatable {
    public var side = 12
    public var extent = 1.5
    public var width = 0.3

    public init() {}

    public var channels: Int { side * side }

    /// Raw features [N, D, H, W] of the points position(n, row, column) -> (x, y).
    public func features(_ n: Int, _ h: Int, _ w: Int, position: (Int, Int, Int) -> (Double, Double)) -> Tensor {
        let d = channels
        let out = Tensor(uninitialized: [n, d, h, w])
        let centres = (0..<side).map { side == 1 ? 0 : -extent + 2 * extent * Double($0) / Double(side - 1) }
        for b in 0..<n {
            for i in 0..<h {
                for j in 0..<w {
                    let (x, y) = position(b, i, j)
                    for cy in 0..<side {
                        let ey = (y - centres[cy]) * (y - centres[cy])
                        for cx in 0..<side {
                            let ex = (x - centres[cx]) * (x - centres[cx])
                            out.data[((b * d + cy * side + cx) * h + i) * w + j] = Float(Foundation.exp(-(ex + ey) / (2 * width * width)))
                        }
                    }
                }
            }
        }
        return out
    }
}

/// The cycle experiment: the model's forward pass and original losses on positional features,
/// only the localizer trained.
public struct CycleProbeSettings: Sendable, Equatable {
    public var baseGrid = 30, patchGrid = 10
    /// Clip frames before the target image.
    public var clipLength = 4
    public var batch = 2, steps = 1500
    /// Held-out evaluation every this many steps (and at the last step).
    public var evalEvery = 100
    public var heldOut = 16
    /// Largest speed of the clip's motion per frame and axis (normalized units); frame t of T is
    /// displaced by v (T - t) from the target image, v uniform per item.
    public var maxSpeed = 0.05
    public var encoding = PositionalEncoding()
    public var learningRate: Float = 2e-4
    public var seed: UInt64 = 1

    public init(baseGrid: Int = 30, patchGrid: Int = 10) {
        self.baseGrid = baseGrid
        self.patchGrid = patchGrid
    }
}

public struct CycleProbeEvaluation: Sendable {
    public var step: Int
    public var errors: TrackingErrors
    /// Mean training loss (total) since the previous evaluation.
    public var loss: Double
}

public struct CycleProbeResult: Sendable {
    public var evaluations: [CycleProbeEvaluation]
    /// The best constant predictions' errors on the held-out set.
    public var constant: TrackingErrors

    /// Median held-out direct error over the last `count` evaluations.
    public func medianDirect(last count: Int = 5) -> Double {
        let v = evaluations.suffix(count).map(\.errors.direct).sorted()
        guard !v.isEmpty else { return .nan }
        return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
    }
}

/// One batch of the cycle experiment: features, targets and displacements.
public struct CycleProbeBatch {
    public var features: TimeCycleFeatures
    public var target: Tensor
    public var displacements: Tensor
}

extension TimeCycleProbe {
    /// n items: targets drawn as the data recipe does, per-item velocities, features of the target
    /// image, of each frame (the image translated by its displacement) and of the patch (the image's
    /// positions under the target theta).
    public static func cycleBatch(_ n: Int, settings s: CycleProbeSettings, generator g: inout RandomGenerator) -> CycleProbeBatch {
        let target = sampleTargets(n, generator: &g)
        let t = s.clipLength
        let d = Tensor(uninitialized: [n, t, 2])
        for b in 0..<n {
            let vx = g.uniform(-s.maxSpeed, s.maxSpeed), vy = g.uniform(-s.maxSpeed, s.maxSpeed)
            for f in 0..<t {
                d.data[(b * t + f) * 2] = Float(vx * Double(t - f))
                d.data[(b * t + f) * 2 + 1] = Float(vy * Double(t - f))
            }
        }
        let bs = cellCoordinates(s.baseGrid), ps = cellCoordinates(s.patchGrid), e = s.encoding
        let image = e.features(n, s.baseGrid, s.baseGrid) { _, i, j in (bs[j], bs[i]) }
        let clip = e.features(n * t, s.baseGrid, s.baseGrid) { bf, i, j in
            (bs[j] - Double(d.data[bf * 2]), bs[i] - Double(d.data[bf * 2 + 1]))
        }
        let patch = e.features(n, s.patchGrid, s.patchGrid) { b, i, j in warp(target, b, ps[j], ps[i]) }
        let features = TimeCycleFeatures(clip: clip.reshaped([n, t, e.channels, s.baseGrid, s.baseGrid]), patch: patch, image: image)
        return CycleProbeBatch(features: features, target: target, displacements: d)
    }

    /// Trains the localizer of a fresh model (seeded) through the whole cycle on positional
    /// features; `progress` sees each held-out evaluation as it is made.
    public static func trainCycle(_ s: CycleProbeSettings, progress: (CycleProbeEvaluation) -> Void = { _ in }) -> CycleProbeResult {
        let c = config(baseGrid: s.baseGrid, patchGrid: s.patchGrid)
        var g = RandomGenerator(seed: s.seed)
        let model = TimeCycleModel(config: c, generator: &g)
        let opt = originalOptimizer(model.localizer.namedParameters(), learningRate: s.learningRate)
        var hg = RandomGenerator(seed: s.seed &+ 1_000_003)
        let held = cycleBatch(s.heldOut, settings: s, generator: &hg)
        let constant = constantErrors(target: held.target, displacements: held.displacements)
        var evaluations: [CycleProbeEvaluation] = []
        var lossSum = 0.0, lossCount = 0
        func evaluate(_ step: Int) {
            let out = noGrad { model(features: held.features) }
            let e = CycleProbeEvaluation(step: step, errors: errors(out, target: held.target, displacements: held.displacements),
                                         loss: lossSum / Double(max(lossCount, 1)))
            evaluations.append(e)
            progress(e)
            lossSum = 0
            lossCount = 0
        }
        evaluate(0)
        for step in 1...max(s.steps, 1) where s.steps > 0 {
            let b = cycleBatch(s.batch, settings: s, generator: &g)
            opt.zeroGrad()
            let loss = model.losses(features: b.features, target: b.target).total
            loss.backward()
            opt.step()
            lossSum += Double(loss.item())
            lossCount += 1
            if step % max(s.evalEvery, 1) == 0 || step == s.steps { evaluate(step) }
        }
        return CycleProbeResult(evaluations: evaluations, constant: constant)
    }
}

// MARK: - Diagnostics of a forward pass on clips of known motion

/// What one forward pass on clips of known motion says about the tracker (issue 18 part 2).
public struct TimeCycleDiagnostics: Sendable, Equatable {
    /// Mean entropy (nats) of the patch -> frame affinities over the frame's positions: log K for
    /// uniform affinities (K base positions), 0 for one-hot ones.
    public var affinityEntropy: Double
    /// log K, the entropy of uniform affinities.
    public var maxEntropy: Double
    /// Share of the patch cells whose affinity argmax lies within one cell (in each axis) of the
    /// cell's true position in the frame.
    public var argmaxWithinOneCell: Double
    /// The same share for an argmax drawn uniformly over the frame's positions (chance).
    public var chanceWithinOneCell: Double
    /// The localizer's errors, and those of the best constant predictions.
    public var errors: TrackingErrors
    public var constant: TrackingErrors
}

extension TimeCycleProbe {
    /// Mean entropy (nats) over axis 1 of affinities [N, K, h, w] (each column sums to 1).
    public static func affinityEntropy(_ a: Tensor) -> Double {
        precondition(a.rank == 4, "affinityEntropy: affinities must be [N, K, h, w], got \(a.shape)")
        let n = a.shape[0], k = a.shape[1], hw = a.shape[2] * a.shape[3]
        var total = 0.0
        for b in 0..<n {
            for q in 0..<hw {
                for i in 0..<k {
                    let x = Double(a.data[(b * k + i) * hw + q])
                    if x > 0 { total -= x * Foundation.log(x) }
                }
            }
        }
        return total / Double(max(n * hw, 1))
    }

    /// Share of the query cells (i, j) of affinities [N, G*G, P, P] (base position k = x * G + y)
    /// whose argmax (first maximum) lies within `radius` cells, in each axis, of where theta
    /// [N, 2, 3] puts the cell (as `gaussianAffinity` centres it).
    public static func argmaxShare(_ a: Tensor, truth theta: Tensor, radius: Double = 1) -> Double {
        precondition(a.rank == 4 && a.shape[2] == a.shape[3] && theta.shape == [a.shape[0], 2, 3],
                     "argmaxShare: affinities \(a.shape) and thetas \(theta.shape) do not agree")
        let n = a.shape[0], k = a.shape[1], p = a.shape[2], hw = p * p
        let g = Int(Double(k).squareRoot().rounded())
        precondition(g * g == k, "argmaxShare: \(k) base positions are not a square grid")
        let ps = cellCoordinates(p), cells = Double(g - 1) / 2
        var hits = 0
        for b in 0..<n {
            for i in 0..<p {
                for j in 0..<p {
                    let q = i * p + j
                    var best = 0
                    var bestValue = a.data[(b * k) * hw + q]
                    for m in 1..<k where a.data[(b * k + m) * hw + q] > bestValue {
                        best = m
                        bestValue = a.data[(b * k + m) * hw + q]
                    }
                    let (wx, wy) = warp(theta, b, ps[j], ps[i])
                    if abs(Double(best / g) - (wx + 1) * cells) <= radius && abs(Double(best % g) - (wy + 1) * cells) <= radius { hits += 1 }
                }
            }
        }
        return Double(hits) / Double(max(n * hw, 1))
    }

    /// The diagnostics of a forward pass against the target thetas [B, 2, 3] and the clip's
    /// displacements [B, T, 2] (normalized units: frame t shows the target's content at p at p + d_t).
    public static func diagnostics(_ out: TimeCycleOutputs, target: Tensor, displacements: Tensor) -> TimeCycleDiagnostics {
        let k = out.directAffinity.shape[1]
        let g = Int(Double(k).squareRoot().rounded())
        // Cells within one cell in each axis of a uniformly drawn base cell, averaged over a
        // true position at a cell centre inside the grid: (sum over x of the cells within 1)^2 / K^2.
        let perAxis = Double(max(3 * g - 2, 1)) / Double(max(g * g, 1))
        return TimeCycleDiagnostics(affinityEntropy: affinityEntropy(out.directAffinity), maxEntropy: Foundation.log(Double(max(k, 1))),
                                    argmaxWithinOneCell: argmaxShare(out.directAffinity, truth: directTargets(target, displacements: displacements)),
                                    chanceWithinOneCell: perAxis * perAxis,
                                    errors: errors(out, target: target, displacements: displacements),
                                    constant: constantErrors(target: target, displacements: displacements))
    }
}
