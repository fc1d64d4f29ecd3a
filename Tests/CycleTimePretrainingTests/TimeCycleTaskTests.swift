import CycleTimeCore
import CycleTimeNN
import CycleTimeTracking
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest
@testable import CycleTimeTraining
@testable import CycleTimePretraining

/// TimeCycle training on clips whose frames are known translations of a real image, in a faithful
/// miniature of the original geometry. Whether the localizer learns to track is tested where it can
/// be in a short time (TimeCycleProbeTests: the readout of Gaussian affinities; `cycletime bench
/// tracker`: the full cycle on positional features, 1500 steps): the original method does not learn
/// to track from a random encoder in a few hundred steps, so no test here asks that.
final class TimeCycleTaskTests: XCTestCase {
    /// 168 px frames and 56 px patches: 21 and 7 feature cells, 8 pixels a cell in both, as the
    /// original 240/80 -> 30/10 (the patch is cut at scale 1/3, so its pixels are the frame's).
    static let size = 168, patchSize = 56, offsets = [0, 2, 4, 6], target = 15, motion = 17

    /// The DAVIS frame at half resolution, normalized as in training: [3, 240, 427].
    func sourceImage() throws -> Tensor {
        let img = try Image.read(try requireSharedData("davis-mini/JPEGImages/480p/dog/00000.jpg"))
        let t = img.tensor(mean: TrainConfig().data.mean, std: TrainConfig().data.std).unsqueezed(axis: 0)
        return noGrad { F.avgPool2d(t, kernel: [2, 2]) }.squeezed(axis: 0)
    }

    /// A batch of synthetic clips: a window moving at a constant integer velocity over the image.
    /// Returns the batch and, per item, the velocity in pixels per frame.
    func batch(_ img: Tensor, size b: Int, config: TrainConfig, generator g: inout RandomGenerator) -> (TimeCycleBatch, [(Int, Int)]) {
        let s = Self.size, h = img.shape[1], w = img.shape[2], span = 2 * Self.motion
        var clips: [Tensor] = [], images: [Tensor] = [], motions: [Tensor] = [], vel: [(Int, Int)] = []
        for _ in 0..<b {
            let vx = g.int(below: 3) - 1, vy = g.int(below: 3) - 1
            let x0 = span + g.int(below: w - s - 2 * span), y0 = span + g.int(below: h - s - 2 * span)
            func frame(_ o: Int) -> Tensor {
                img.sliced(axis: 1, start: y0 + vy * o, end: y0 + vy * o + s).sliced(axis: 2, start: x0 + vx * o, end: x0 + vx * o + s)
            }
            clips.append(Tensor.stack(Self.offsets.map(frame), axis: 0))
            images.append(frame(Self.target))
            motions.append(frame(Self.motion))
            vel.append((vx, vy))
        }
        let image = Tensor.stack(images, axis: 0)
        let (theta, patch) = GroundTruthPatch.make(target: image, motion: Tensor.stack(motions, axis: 0),
                                                   flipped: Array(repeating: false, count: b), config: config.patch, generator: &g)
        return (TimeCycleBatch(clip: Tensor.stack(clips, axis: 0), image: image, patch: patch, theta: theta), vel)
    }

    /// Where the patch truly is in each clip frame relative to the target image, [B, T, 2]
    /// (normalized units of the frame, align_corners): the content at pixel p of the target image
    /// is at p + v (target - offset) in frame `offset`.
    func displacements(_ vel: [(Int, Int)]) -> Tensor {
        let t = Self.offsets.count, d = Tensor(uninitialized: [vel.count, t, 2])
        for (i, v) in vel.enumerated() {
            for (f, o) in Self.offsets.enumerated() {
                d.data[(i * t + f) * 2] = 2 * Float(v.0 * (Self.target - o)) / Float(Self.size - 1)
                d.data[(i * t + f) * 2 + 1] = 2 * Float(v.1 * (Self.target - o)) / Float(Self.size - 1)
            }
        }
        return d
    }

    /// The model's tracking errors on a batch (`TimeCycleProbe.errors`: raw thetas against the raw
    /// truth, the frame the grid losses supervise; the sampler's 227/210 applies to neither side)
    /// and its total loss.
    func evaluate(_ task: TimeCycleTask, _ b: TimeCycleBatch, _ vel: [(Int, Int)]) -> (errors: TrackingErrors, loss: Double) {
        let m = task.timeCycle
        let (out, loss) = noGrad { () -> (TimeCycleOutputs, Float) in
            let out = m(clip: b.clip, patch: b.patch, image: b.image)
            return (out, TimeCycleLoss.compute(out, target: b.theta, config: m.config).total.item())
        }
        return (TimeCycleProbe.errors(out, target: b.theta, displacements: displacements(vel)), Double(loss))
    }

    /// timecycle.detach_steps reaches the model at the trainer's steps, a resumed run included:
    /// detached for steps 0 and 1, end to end from step 2.
    func testDetachStepsFollowTheTrainersStepAcrossResume() throws {
        let dir = temporaryDirectory("detach-steps")
        let cfg = try writeTinyConfig(dir, output: dir + "/run", steps: 4)
        let set = ["timecycle.detach_steps=2"]
        let a = try makeTimeCycleTrainer(configPath: cfg, overrides: set)
        a.warn = { _ in }
        XCTAssertTrue(a.task.timeCycle.detachEncoder)
        XCTAssertEqual(try a.train(resume: false, stopAfter: 2), .interrupted(step: 2))
        XCTAssertTrue(a.task.timeCycle.detachEncoder, "step 1 is detached")
        let b = try makeTimeCycleTrainer(configPath: cfg, overrides: set)
        b.warn = { _ in }
        XCTAssertEqual(try b.train(resume: true, stopAfter: 1), .interrupted(step: 3))
        XCTAssertFalse(b.task.timeCycle.detachEncoder, "step 2 trains end to end")
    }

    /// The miniature (original localizer, D = 256, the original Adam: lr 2e-4, betas (0.5, 0.999))
    /// on one clip of known translations: a few training steps on it lower its loss (at this
    /// geometry a step costs seconds, so the test trains on the clip it measures); the tracking
    /// errors against the known translations are printed.
    func testMiniatureTrainingOnKnownTranslationsLowersTheLossOfItsClip() throws {
        let img = try sourceImage()
        var config = TrainConfig()
        config.seed = 11
        config.timecycle.frameSize = Self.size
        config.timecycle.patchSize = Self.patchSize
        config.patch.patchSize = Self.patchSize
        XCTAssertEqual(config.timecycle.baseGrid, 21)
        XCTAssertEqual(config.timecycle.patchGrid, 7)
        XCTAssertEqual(config.optimizer.lr, 2e-4)
        XCTAssertEqual(config.timecycle.localizerWidths, [128, 64])
        let task = TimeCycleTask(config: config, videos: [])
        let optimizer = makeOptimizer(config.optimizer, parameters: task.model.namedParameters().map { (name: $0.0, tensor: $0.1) })
        var g = RandomGenerator(seed: 99)
        let clip = batch(img, size: 1, config: config, generator: &g)
        task.model.train()
        var first = Double.nan   // the loss of the first step's forward pass: before any update
        for s in 0..<Self.steps {
            var sg = Trainer<TimeCycleTask>.stepGenerator(seed: config.seed, step: s)
            let r = try trainingStep(task, batch: clip.0, optimizer: optimizer, gradClip: config.train.gradClip, generator: &sg)
            if s == 0 { first = r.terms[0].1 }
        }
        let after = evaluate(task, clip.0, clip.1)
        print(String(format: "miniature: loss %.4f -> %.4f after %d steps; direct error %.3f, skip %.3f, long %.3f",
                     first, after.loss, Self.steps, after.errors.direct, after.errors.skip, after.errors.long))
        XCTAssertTrue(after.errors.direct.isFinite && after.errors.skip.isFinite && after.errors.long.isFinite)
        XCTAssertLessThan(after.loss, first - Self.lossDrop * abs(first), "loss \(first) -> \(after.loss)")
    }
    static let steps = 2, lossDrop = 0.1
}
