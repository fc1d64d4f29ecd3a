import CycleTimeCore
import CycleTimeData
import CycleTimeNN
import CycleTimeTracking
import CycleTimeTraining
import CycleTimeVideo
import Foundation

/// Tracker diagnostics during training (the `diagnostics:` section): every `every_steps` steps
/// and after the last one, the model runs (eval mode, no gradient) on a fixed held-out set of
/// clips that the run cuts from its own videos with known synthetic motion: one frame per clip,
/// seeded from the config's seed, and square crops of it that move by a constant velocity of
/// whole pixels per frame, drawn uniformly in [-max_shift, max_shift] per axis. Off when
/// `every_steps` is 0.
public struct DiagnosticsConfig: Codable, Equatable, Sendable {
    /// Steps between diagnostics (0: none).
    public var everySteps: Int = 0
    /// Held-out clips (each from one frame of the run's videos, the videos taken in turn).
    public var clips: Int = 8
    /// Largest motion per frame and axis, in pixels of the training crop.
    public var maxShift: Int = 8
    public init() {}

    func validate(_ v: ConfigValidator) throws {
        guard everySteps > 0 else { return }
        try v.check(clips >= 1, "diagnostics.clips", "must be >= 1")
    }
}

/// The held-out clips: frames [B, T(+1), 3, S, S] (normalized) and each clip's velocity in pixels.
struct MotionClips {
    /// Normalized crops [B, F, 3, S, S]: the F positions of each clip.
    var frames: Tensor
    /// The crops' RGB bytes of the first clip (for pictures), each S * S * 3.
    var firstClipRGB: [[UInt8]]
    /// Per clip (vx, vy), pixels per frame.
    var velocities: [(Int, Int)]
    var side: Int

    /// `count` clips of `positions` crops of side `side`; crop f of a clip is displaced by
    /// `offset(f) * v` pixels from the frame's centre crop. One frame of video i % videos.count
    /// per clip, at a seeded time; the frame is decoded with its short side resized so that every
    /// crop fits.
    static func make(videos: [String], count: Int, positions: Int, side: Int, maxShift: Int, offset: (Int) -> Int,
                     mean: [Float], std: [Float], seed: UInt64) throws -> MotionClips {
        var g = RandomGenerator(seed: seed)
        let reach = (0..<positions).map { abs(offset($0)) }.max() ?? 0
        let margin = reach * maxShift  // both bounded by the caller
        let short = side + 2 * margin
        let lut = ColorLUT(mean: mean, std: std)
        let per = 3 * side * side
        let frames = Tensor(uninitialized: [count, positions, 3, side, side])
        var rgb: [[UInt8]] = []
        var velocities: [(Int, Int)] = []
        for c in 0..<count {
            let path = videos[c % videos.count]
            let reader = try VideoReader(path, resize: .shortSide(short), threads: 1)
            let u = g.nextDouble()
            if reader.metadata.duration > 0 { try reader.seek(to: u * 0.9 * reader.metadata.duration) }
            guard let f = try reader.nextFrame() else { throw DatasetError(path, "no frame decoded for the diagnostic clips") }
            let v = (g.int(below: 2 * maxShift + 1) - maxShift, g.int(below: 2 * maxShift + 1) - maxShift)
            velocities.append(v)
            let cx = (f.width - side) / 2, cy = (f.height - side) / 2
            for p in 0..<positions {
                let x = cx + offset(p) * v.0, y = cy + offset(p) * v.1
                guard x >= 0, y >= 0, x + side <= f.width, y + side <= f.height else {
                    throw DatasetError(path, "a \(f.width)x\(f.height) frame cannot hold the diagnostic crops")
                }
                f.rgb.withUnsafeBufferPointer { src in
                    cropResizeBilinear(src.baseAddress!, width: f.width, height: f.height, cropX: x, cropY: y, cropWidth: side,
                                       cropHeight: side, outWidth: side, outHeight: side, flip: false, lut: lut,
                                       out: frames.data + (c * positions + p) * per)
                }
                if c == 0 {
                    var bytes = [UInt8](repeating: 0, count: per)
                    for yy in 0..<side {
                        let row = ((y + yy) * f.width + x) * 3
                        for i in 0..<(side * 3) { bytes[yy * side * 3 + i] = f.rgb[row + i] }
                    }
                    rgb.append(bytes)
                }
            }
        }
        return MotionClips(frames: frames, firstClipRGB: rgb, velocities: velocities, side: side)
    }

    /// Crops [B, 3, S, S] at position `p` of every clip.
    func position(_ p: Int) -> Tensor {
        frames.sliced(axis: 1, start: p, end: p + 1).reshaped([frames.shape[0], 3, side, side])
    }

    /// The crops at positions 0..<n: [B, n, 3, S, S].
    func first(_ n: Int) -> Tensor { frames.sliced(axis: 1, start: 0, end: n) }
}

/// The `diagnostics:` section's validator. TimeCycle: the clip is T crops and the target image
/// a last one, frame t displaced by v (T - t) from the target (its content at p is at p + d_t, as
/// `TimeCycleProbe` defines it); the patch is cut from the target under a theta drawn as the data
/// recipe draws them. Logged: `diag_entropy` (patch -> frame affinity entropy, nats) and
/// `diag_entropy_uniform` (log K), `diag_argmax_1cell` (share of affinity argmaxes within one cell
/// of the truth) and `diag_argmax_chance`, the localizer's `diag_direct`, `diag_skip`, `diag_long`
/// errors and the best constant predictions' `diag_direct_const`, `diag_skip_const` (also the long
/// one's). CRW: the clip is T crops, frame t displaced by v t; patches on the model's grid without
/// jitter; logged: `diag_walk_accuracy` (palindrome walks that return, no edge dropout),
/// `diag_walk_chance` (1/N), `diag_entropy` (transition entropy, nats) and `diag_entropy_uniform`
/// (log N). One picture per diagnostic: the affinity of the first clip's central patch cell
/// (TimeCycle) or central node (CRW) over a later frame, the true position boxed.
public final class TrackerDiagnostics: TrainingValidator {
    public let config: DiagnosticsConfig
    public var everySteps: Int { config.everySteps }
    public var secondsField: String { "diag_s" }
    let clips: MotionClips
    let objective: TrainingObjective
    let timecycle: TimeCycleConfig
    let crw: CRWConfig
    /// TimeCycle: the targets [B, 2, 3], patches [B, 3, p, p] and displacements [B, T, 2].
    let target: Tensor?, patch: Tensor?, displacements: Tensor?
    /// CRW: patches [B, T, N, 3, p, p].
    let patches: Tensor?
    let seed: UInt64

    /// Cuts the held-out clips from `videos` (errors name `file` and the field) before any run
    /// directory is made.
    public init(config c: TrainConfig, videos: [String], file: String) throws {
        config = c.diagnostics
        objective = c.objective
        timecycle = c.timecycle
        crw = c.crw
        seed = UInt64(c.seed) ^ 0xD1A6_0571_C5E7_7A3B
        let d = c.diagnostics
        let reach = c.objective == .timecycle ? c.data.clipOffsets.count : c.crw.clipLength
        let (margin, overflow) = reach.multipliedReportingOverflow(by: d.maxShift)
        guard !overflow, margin <= 4096 else {
            throw ConfigError(file, "field 'diagnostics.max_shift': \(d.maxShift) pixels per frame over \(reach) frames moves the crops too far")
        }
        do {
            switch c.objective {
            case .timecycle:
                let t = c.data.clipOffsets.count
                clips = try MotionClips.make(videos: videos, count: d.clips, positions: t + 1, side: c.timecycle.frameSize, maxShift: d.maxShift,
                                             offset: { $0 - t }, mean: c.data.mean, std: c.data.std, seed: seed)
                var g = RandomGenerator(seed: seed &+ 1)
                let th = TimeCycleProbe.sampleTargets(d.clips, patch: c.patch, generator: &g)
                target = th
                patch = GroundTruthPatch.cut(clips.position(t), theta: th, size: c.timecycle.patchSize)
                // Whole pixels to normalized feature coordinates: cell stride frame / G, G - 1 cells span 2.
                let grid = Double(c.timecycle.baseGrid), stride = Double(c.timecycle.frameSize) / grid
                let dd = Tensor(uninitialized: [d.clips, t, 2])
                for b in 0..<d.clips {
                    for f in 0..<t {
                        let v = clips.velocities[b], k = Double(t - f) / stride * 2 / max(grid - 1, 1)
                        dd.data[(b * t + f) * 2] = Float(Double(v.0) * k)
                        dd.data[(b * t + f) * 2 + 1] = Float(Double(v.1) * k)
                    }
                }
                displacements = dd
                patches = nil
            case .crw:
                clips = try MotionClips.make(videos: videos, count: d.clips, positions: c.crw.clipLength, side: c.crw.imageSize,
                                             maxShift: d.maxShift, offset: { $0 }, mean: c.crw.mean, std: c.crw.std, seed: seed)
                patches = Self.gridPatches(clips.frames, config: c.crw)
                target = nil; patch = nil; displacements = nil
            }
        } catch let e as ConfigError { throw e } catch {
            throw ConfigError(file, "field 'diagnostics.every_steps': cannot cut the held-out clips: \(error)")
        }
    }

    /// Patches [B, T, N, 3, p, p] of frames [B, T, 3, S, S] on the CRW grid, without jitter.
    static func gridPatches(_ frames: Tensor, config c: CRWConfig) -> Tensor {
        let b = frames.shape[0], t = frames.shape[1], s = frames.shape[3]
        let p = c.patchSize, grid = c.gridSide, n = grid * grid
        let out = Tensor(uninitialized: [b, t, n, 3, p, p])
        for f in 0..<(b * t) {
            for gy in 0..<grid {
                for gx in 0..<grid {
                    CRWClipSampler.resizeCrop(frames.data + f * 3 * s * s, channels: 3, height: s, width: s,
                                              box: CropBox(top: gy * c.patchStride, left: gx * c.patchStride, height: p, width: p),
                                              outHeight: p, outWidth: p, into: out.data + (f * n + gy * grid + gx) * 3 * p * p)
                }
            }
        }
        return out
    }

    public func validate(model: Module, step: Int) throws -> ValidationScores {
        let modes = model.modules().map(\.training)
        model.eval()
        defer { for (m, mode) in zip(model.modules(), modes) { m.train(mode) } }
        if let tc = model as? TimeCycleModel, let target, let patch, let displacements {
            return try timeCycle(tc, target: target, patch: patch, displacements: displacements)
        }
        if let walk = model as? CRWModel, let patches {
            return try crw(walk, patches: patches)
        }
        throw TrainingError("diagnostics: the model is not the config's \(objective.rawValue) model")
    }

    func timeCycle(_ model: TimeCycleModel, target: Tensor, patch: Tensor, displacements: Tensor) throws -> ValidationScores {
        let t = displacements.shape[1]
        let out = noGrad { model(clip: clips.first(t), patch: patch, image: clips.position(t)) }
        let d = TimeCycleProbe.diagnostics(out, target: target, displacements: displacements)
        let fields: [(String, Double)] = [
            ("diag_entropy", d.affinityEntropy), ("diag_entropy_uniform", d.maxEntropy),
            ("diag_argmax_1cell", d.argmaxWithinOneCell), ("diag_argmax_chance", d.chanceWithinOneCell),
            ("diag_direct", d.errors.direct), ("diag_skip", d.errors.skip), ("diag_long", d.errors.long),
            ("diag_direct_const", d.constant.direct), ("diag_skip_const", d.constant.skip),
        ]
        // The first clip's last frame: the affinity of the patch's central cell, its true position boxed.
        let g = model.config.baseGrid, p = model.config.patchGrid, k = g * g, c = p / 2, hw = p * p
        let row = (t - 1) * k  // item 0, frame t - 1 (batch-major [B*T, K, p, p])
        var heat = [Float](repeating: 0, count: k)
        for x in 0..<g { for y in 0..<g { heat[y * g + x] = out.directAffinity.data[(row + x * g + y) * hw + c * p + c] } }
        let truth = TimeCycleProbe.directTargets(target, displacements: displacements)
        let (wx, wy) = TimeCycleProbe.warp(truth, t - 1, TimeCycleProbe.cellCoordinates(p)[c], TimeCycleProbe.cellCoordinates(p)[c])
        let cell = Double(clips.side) / Double(g)
        let png = try picture(clips.firstClipRGB[t - 1], heat: heat, grid: g,
                              truth: (((wx + 1) * Double(g - 1) / 2 + 0.5) * cell, ((wy + 1) * Double(g - 1) / 2 + 0.5) * cell))
        let summary = String(format: "tracker diagnostics: affinity entropy %.3f of %.3f nats, argmax within 1 cell %.3f (chance %.3f), direct error %.3f (constant %.3f)",
                             d.affinityEntropy, d.maxEntropy, d.argmaxWithinOneCell, d.chanceWithinOneCell, d.errors.direct, d.constant.direct)
        return ValidationScores(fields: fields, images: [(tag: "diag/affinity", png: png)], summary: summary)
    }

    func crw(_ model: CRWModel, patches: Tensor) throws -> ValidationScores {
        var g = RandomGenerator(seed: seed &+ 2)
        let out = noGrad { model(patches: patches, generator: &g) }
        let n = patches.shape[2], grid = crw.gridSide, d = crw.featureDim
        let fields: [(String, Double)] = [
            ("diag_walk_accuracy", Double(out.walkAccuracy)), ("diag_walk_chance", 1 / Double(n)),
            ("diag_entropy", Double(out.transitionEntropy)), ("diag_entropy_uniform", Foundation.log(Double(n))),
        ]
        // The first clip: the transition of frame 0's central node over frame 1's nodes.
        let centre = (grid / 2) * grid + grid / 2
        var logits = [Double](repeating: 0, count: n)
        for m in 0..<n {
            var dot = 0.0
            for i in 0..<d { dot += Double(out.nodes.data[centre * d + i]) * Double(out.nodes.data[(n + m) * d + i]) }
            logits[m] = dot / Double(crw.temperature)
        }
        let top = logits.max() ?? 0
        let e = logits.map { Foundation.exp($0 - top) }, z = e.reduce(0, +)
        let heat = e.map { Float($0 / z) }
        let v = clips.velocities[0]
        let centreX = Double((grid / 2) * crw.patchStride + crw.patchSize / 2)
        let png = try picture(clips.firstClipRGB[1], heat: heat, grid: grid, truth: (centreX - Double(v.0), centreX - Double(v.1)))
        let summary = String(format: "tracker diagnostics: walk accuracy %.3f (chance %.3f), transition entropy %.3f of %.3f nats",
                             out.walkAccuracy, 1 / Double(n), out.transitionEntropy, Foundation.log(Double(n)))
        return ValidationScores(fields: fields, images: [(tag: "diag/transition", png: png)], summary: summary)
    }

    /// A crop with a heat map (grid x grid, row-major) over it and the true position boxed.
    func picture(_ rgb: [UInt8], heat: [Float], grid: Int, truth: (Double, Double)) throws -> Data {
        var canvas = Canvas(image: Image(width: clips.side, height: clips.side, channels: 3, pixels: rgb))
        canvas.overlayHeatmap(heat, width: grid, height: grid)
        let r = Double(clips.side) / 24
        canvas.box(x0: truth.0 - r, y0: truth.1 - r, x1: truth.0 + r, y1: truth.1 + r, .white)
        return try canvas.pngData()
    }
}
