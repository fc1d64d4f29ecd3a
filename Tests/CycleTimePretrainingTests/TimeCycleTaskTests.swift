import CycleTimeCore
import CycleTimeNN
import CycleTimeTracking
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest
@testable import CycleTimeTraining
@testable import CycleTimePretraining

/// On clips whose frames are known translations of a real image, 300 training steps lower the
/// total loss clearly. The tracking errors (where the localizer puts the patch in each frame,
/// against the known translation) are printed; at this scale (64x64 frames, random-init encoder)
/// they do not improve within 300 steps, as the original method does not learn to track that fast.
final class TimeCycleTaskTests: XCTestCase {
    static let size = 64, offsets = [0, 2, 4, 6], target = 15, motion = 17

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

    /// Mean distance (normalized units) between where the model crops the patch in each clip frame
    /// (patch -> frame, translation x the sampler's factor) and where the patch truly is there.
    func trackingError(_ task: TimeCycleTask, _ batches: [(TimeCycleBatch, [(Int, Int)])]) -> Double {
        let m = task.timeCycle, c = m.config
        var err = 0.0, n = 0
        var skipErr = 0.0, longErr = 0.0, ns = 0, nl = 0
        defer { print("errors: direct \(err / Double(max(n, 1))) skip \(skipErr / Double(max(ns, 1))) long \(longErr / Double(max(nl, 1)))") }
        for (b, vel) in batches {
            let out = noGrad { m(clip: b.clip, patch: b.patch, image: b.image) }
            for i in 0..<b.size {
                let gx = Double(b.theta.data[i * 6 + 2]), gy = Double(b.theta.data[i * 6 + 5])
                for t in 0..<Self.offsets.count {
                    let k = (i * Self.offsets.count + t) * 6
                    let px = Double(out.skipThetas.data[k + 2]), py = Double(out.skipThetas.data[k + 5])
                    skipErr += ((px - gx) * (px - gx) + (py - gy) * (py - gy)).squareRoot(); ns += 1
                }
                for th in out.cycleThetas {
                    let px = Double(th.data[i * 6 + 2]), py = Double(th.data[i * 6 + 5])
                    longErr += ((px - gx) * (px - gx) + (py - gy) * (py - gy)).squareRoot(); nl += 1
                }
            }
            let th = out.directThetas  // [B*T, 2, 3], batch-major
            for i in 0..<b.size {
                let gx = Double(b.theta.data[i * 6 + 2]), gy = Double(b.theta.data[i * 6 + 5])
                for (t, o) in Self.offsets.enumerated() {
                    let k = (i * Self.offsets.count + t) * 6
                    let dx = 2 * Double(vel[i].0 * (Self.target - o)) / Double(c.frameSize - 1)
                    let dy = 2 * Double(vel[i].1 * (Self.target - o)) / Double(c.frameSize - 1)
                    let px = Double(th.data[k + 2]) * Double(c.translationFactor), py = Double(th.data[k + 5]) * Double(c.translationFactor)
                    err += ((px - gx - dx) * (px - gx - dx) + (py - gy - dy) * (py - gy - dy)).squareRoot()
                    n += 1
                }
            }
        }
        return err / Double(n)
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

    func testTrainingOnKnownTranslationsLowersTheLoss() throws {
        let img = try sourceImage()
        var config = TrainConfig()
        config.seed = 11
        config.timecycle.frameSize = Self.size
        config.timecycle.patchSize = 32
        config.patch.patchSize = 32
        config.timecycle.featureDim = 32
        config.timecycle.localizerWidths = [32, 16]
        config.timecycle.localizerKernels = [2, 2]
        config.optimizer.lr = 1e-3
        let steps = 300, bsz = 2
        let task = TimeCycleTask(config: config, videos: [])
        let optimizer = makeOptimizer(config.optimizer, parameters: task.model.namedParameters().map { (name: $0.0, tensor: $0.1) })
        var evalGen = RandomGenerator(seed: 99)
        let evalSet = (0..<4).map { _ in batch(img, size: 4, config: config, generator: &evalGen) }
        task.model.train()
        let before = trackingError(task, evalSet)
        var g = RandomGenerator(seed: 5)
        var losses: [Double] = []
        for s in 0..<steps {
            let (b, _) = batch(img, size: bsz, config: config, generator: &g)
            var sg = Trainer<TimeCycleTask>.stepGenerator(seed: config.seed, step: s)
            let r = try trainingStep(task, batch: b, optimizer: optimizer, gradClip: config.train.gradClip, generator: &sg)
            losses.append(r.terms[0].1)
        }
        let after = trackingError(task, evalSet)
        XCTAssertTrue(after.isFinite && before.isFinite)
        let first = losses.prefix(30).reduce(0, +) / 30, last = losses.suffix(30).reduce(0, +) / 30
        print("synthetic training: loss \(first) -> \(last); tracking error \(before) -> \(after)")
        XCTAssertLessThan(last, first - 0.2 * abs(first), "the loss must fall clearly: first 30 steps \(first), last 30 \(last)")
    }
}
