import CycleTimeCore
import CycleTimeData
import CycleTimeDistributed
import CycleTimeModels
import CycleTimeNN
import Foundation

/// What an objective gives the training loop.
public protocol TrainingTask: AnyObject {
    associatedtype Source: ClipSource
    /// The model; its state_dict is the checkpoint's model part.
    var model: Module { get }
    /// The data the loop draws batches from.
    var source: Source { get }
    /// Name stored in checkpoints (e.g. "timecycle").
    var objectiveName: String { get }
    /// The loss terms of a batch; the first is the total that is minimized ("loss"). Randomness
    /// (e.g. dropout) must come from `generator`.
    func losses(_ batch: Source.Sample, generator: inout RandomGenerator) throws -> [(String, Tensor)]
    /// Number of clips in a batch.
    func clipCount(_ batch: Source.Sample) -> Int
    /// Metadata the task adds to every checkpoint (e.g. its encoder spec); none by default.
    var checkpointMetadata: [String: String] { get }
    /// Called by the trainer before training step `step` (0-based; a resumed run calls it with
    /// the step it resumes at), for what changes with the step (e.g. a frozen warm-up); nothing by default.
    func prepare(step: Int)
}

extension TrainingTask {
    public var checkpointMetadata: [String: String] { [:] }
    public func prepare(step: Int) {}
}

/// Scores the model while it trains (a config's `eval:` section, where the pretraining tasks
/// propagate DAVIS masks, as mmaction2's `--validate` and PySlowFast's eval period; its
/// `diagnostics:` section, which measures tracking on clips of known motion). The trainer calls
/// each of its validators on rank 0 after every `everySteps` steps and after the last one, before
/// that step's metrics row is written (the scores join the row, with `secondsField`, the
/// validator's seconds) and before the step's checkpoint, so a resumed run repeats exactly the
/// validations an uninterrupted one makes.
public protocol TrainingValidator: AnyObject {
    var everySteps: Int { get }
    /// The metrics field of the validator's own seconds (not counted in `step_s`): `val_s`, `diag_s`.
    var secondsField: String { get }
    /// Scores the current weights of `model` after `step` steps. It must leave the model (weights,
    /// buffers, train/eval mode) and every random generator as they were: training continues
    /// exactly as without it.
    func validate(model: Module, step: Int) throws -> ValidationScores
    /// The field of its scores whose maximum the run keeps as checkpoints/best.safetensors
    /// (mmaction2's `save_best`); nil keeps none.
    var bestField: String? { get }
}

extension TrainingValidator {
    public var bestField: String? { nil }
}

/// What a validation gives the run: metrics fields, pictures and a line for the log.
public struct ValidationScores {
    /// Metrics fields ("val_jf", ...), added to the step's row of metrics.jsonl (and TensorBoard).
    public var fields: [(String, Double)]
    /// TensorBoard images at the step: (tag, PNG bytes).
    public var images: [(tag: String, png: Data)]
    /// A one-line summary for the log and the terminal.
    public var summary: String

    public init(fields: [(String, Double)], images: [(tag: String, png: Data)] = [], summary: String) {
        self.fields = fields; self.images = images; self.summary = summary
    }
}

/// A trainer of any task (what the command line drives).
public protocol AnyTrainer: AnyObject {
    var settings: LoopSettings { get }
    var progress: ProgressReporter? { get set }
    /// Whether this process writes the run directory (rank 0, or the single process).
    var isLeader: Bool { get }
    var mpi: MPIContext? { get }
    var shouldStop: () -> Bool { get set }
    var warn: @Sendable (String) -> Void { get set }
    func train(resume: Bool, stopAfter: Int?) throws -> TrainOutcome
}

/// The process's part in a run: under `mpirun` it joins the MPI job (a rank of data-parallel
/// training; the machine's cores shared among its ranks, collectives timed out after
/// `distributed.timeout_seconds`) and only rank 0 opens (and locks) the run directory; otherwise
/// it opens the run directory alone. Every task's trainer is set up here.
public enum RunSetup {
    /// `configFile` names the config in errors. A precision this CPU cannot run natively
    /// (`train.precision: bf16` without AVX512-BF16) is refused here, before anything is created.
    public static func open(_ settings: LoopSettings, configFile: String) throws -> (mpi: MPIContext?, run: RunDirectory) {
        try Autocast.check(settings.train.precision, setting: "\(configFile): field 'train.precision'")
        let mpi = try MPIContext.shared()
        if let mpi {
            mpi.timeout = settings.distributed.timeoutSeconds
            mpi.shareCores()
        }
        let run = (mpi?.rank ?? 0) == 0 ? try RunDirectory(path: settings.outputDir) : RunDirectory(unopened: settings.outputDir)
        return (mpi, run)
    }
}

/// Why training stopped.
public enum TrainOutcome: Equatable, Sendable {
    case finished(step: Int)
    case interrupted(step: Int)
}

/// An error during training: names what failed.
public struct TrainingError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// Wall-clock seconds of the phases of one training step.
public struct StepTimings: Sendable {
    public var forward = 0.0, backward = 0.0, clip = 0.0, optimizer = 0.0
    /// The gradient all-reduce of data-parallel training (0 in a single process).
    public var allReduce = 0.0
    public var total: Double { forward + backward + allReduce + clip + optimizer }
}

/// The optimizer named by the config over `parameters`.
public func makeOptimizer(_ c: OptimizerConfig, parameters: [(name: String, tensor: Tensor)]) -> Optimizer {
    let lr = Float(c.lr)
    switch c.name {
    case "sgd":
        return SGD(parameters: parameters, learningRate: lr, momentum: c.momentum, weightDecay: c.weightDecay,
                   nesterov: c.nesterov)
    case "adamw":
        return AdamW(parameters: parameters, learningRate: lr, betas: (c.betas[0], c.betas[1]), eps: c.eps, weightDecay: c.weightDecay)
    default:
        return Adam(parameters: parameters, learningRate: lr, betas: (c.betas[0], c.betas[1]), eps: c.eps, weightDecay: c.weightDecay)
    }
}

/// The learning-rate schedule named by the config, over `totalSteps` steps.
public func makeSchedule(_ s: ScheduleConfig, lr: Double, totalSteps: Int) -> any LRSchedule {
    let base = Float(lr)
    let main: any LRSchedule
    switch s.name {
    case "step": main = StepLR(baseLR: base, stepSize: s.stepSize, gamma: Float(s.gamma))
    case "multistep": main = MultiStepLR(baseLR: base, milestones: s.milestones, gamma: Float(s.gamma))
    case "cosine": main = CosineAnnealingLR(baseLR: base, tMax: max(1, totalSteps), etaMin: Float(s.minLr))
    default: main = ConstantLR(baseLR: base)
    }
    return s.warmupSteps > 0 ? LinearWarmup(warmupSteps: s.warmupSteps, startFactor: Float(s.warmupFactor), then: main) : main
}

/// One optimization step: forward and backward at `precision` (bf16: inside `Autocast.bf16`),
/// (data-parallel: `reduceGradients`, the all-reduce of the gradients), gradient-norm clipping,
/// optimizer update, all in float32 on the float32 master weights.
/// Returns the loss terms' values, the total gradient norm before clipping and the timings.
/// Throws only when bf16 is asked for on a CPU without AVX512-BF16 (before anything runs).
public func trainingStep<T: TrainingTask>(_ task: T, batch: T.Source.Sample, optimizer: Optimizer, gradClip: Double,
                                          precision: Precision = .fp32, generator: inout RandomGenerator,
                                          reduceGradients: (() -> Void)? = nil) throws
    -> (terms: [(String, Double)], gradNorm: Double, timings: StepTimings) {
    var tm = StepTimings()
    var t0 = DispatchTime.now().uptimeNanoseconds
    func lap() -> Double {
        let t = DispatchTime.now().uptimeNanoseconds
        defer { t0 = t }
        return Double(t - t0) / 1e9
    }
    optimizer.zeroGrad()
    let values = try Autocast.run(precision) { () -> [(String, Double)] in
        let terms = try task.losses(batch, generator: &generator)
        let values = terms.map { ($0.0, Double($0.1.item())) }
        tm.forward = lap()
        terms[0].1.backward()
        tm.backward = lap()
        return values
    }
    if let reduceGradients {
        reduceGradients()
        tm.allReduce = lap()
    }
    let params = optimizer.parameters.map(\.tensor)
    let norm = gradClip > 0 ? clipGradNorm(params, maxNorm: Float(gradClip)) : clipGradNorm(params, maxNorm: .infinity)
    tm.clip = lap()
    optimizer.step()
    tm.optimizer = lap()
    return (values, Double(norm), tm)
}

/// The training loop: batches from a prefetching loader, steps, metrics, progress, checkpoints,
/// resume and clean interruption. Every random choice flows from the config's seed: batch b's
/// samples are drawn from (seed, b) and step s's generator from (seed, s), so a resumed run
/// continues exactly as an uninterrupted one.
///
/// Under `mpirun` (`mpi` set) each rank trains on its slice of every global batch of
/// ranks x batch_size clips (PrefetchLoader's shard: disjoint, reshuffled every epoch from the
/// seed), starts from rank 0's weights and optimizer state, averages the gradients after the
/// backward pass, and only rank 0 writes the run directory. Checkpoints do not depend on the
/// number of ranks, so a run resumes with any number.
public final class Trainer<Task: TrainingTask>: AnyTrainer {
    public let settings: LoopSettings
    public let configFile: String
    public let task: Task
    public let run: RunDirectory
    public let optimizer: Optimizer
    public let totalSteps: Int
    public private(set) var step = 0
    /// The step of the last checkpoint written (or restored).
    public private(set) var lastCheckpointStep = 0
    /// The best validation so far of the validator with a `bestField`: its field, value and step.
    /// Every checkpoint records it (`best_field`, `best_value`, `best_step`), so a resumed run
    /// continues from the best as of its checkpoint, as mmcv's EvalHook keeps `best_score` in the
    /// checkpoint's meta.
    var best: (field: String, value: Double, step: Int)?
    /// The MPI job when this process is one of its ranks, else nil.
    public let mpi: MPIContext?
    /// Rank and number of ranks (0 and 1 in a single process).
    public var rank: Int { mpi?.rank ?? 0 }
    public var ranks: Int { mpi?.size ?? 1 }
    /// Whether this process writes the run directory (metrics, log, checkpoints, progress).
    public var isLeader: Bool { rank == 0 }
    /// The gradient all-reduce (data-parallel only).
    public let averager: GradientAverager?
    /// Where progress goes (a terminal line, or plain lines).
    public var progress: ProgressReporter?
    /// Polled after each step; true makes the loop write a checkpoint and return `.interrupted`.
    public var shouldStop: () -> Bool = { false }
    /// The resolved configuration (YAML) written to config.yaml and into checkpoints.
    public let configText: String
    /// Score the model during training, in this order (rank 0 only; the other ranks wait at the next
    /// step's all-reduce, so the validations of a step must take less than `distributed.timeout_seconds`).
    public var validators: [TrainingValidator] = []
    /// Warnings (skipped videos, config changes on resume).
    public var warn: @Sendable (String) -> Void = { FileHandle.standardError.write(Data(("warning: " + $0 + "\n").utf8)) }

    /// `mpi`: the job when this process is a rank of data-parallel training (see `makeTrainer`).
    /// `configText`: the task's resolved config as YAML (`ConfigLoader.encode`); `run` and `mpi`
    /// from `RunSetup.open`.
    public init(settings: LoopSettings, configFile: String, configText: String, task: Task, run: RunDirectory, mpi: MPIContext? = nil) throws {
        let config = settings
        self.settings = settings
        self.configFile = configFile
        self.configText = configText
        self.task = task
        self.run = run
        self.mpi = mpi
        let ranks = mpi?.size ?? 1
        let perEpoch = task.source.count / (config.train.batchSize * ranks)
        if perEpoch == 0 {
            let across = ranks > 1 ? " x \(ranks) ranks" : ""
            throw ConfigError(configFile, "field 'train.batch_size' (\(config.train.batchSize)\(across)) is larger than the clips per epoch (\(task.source.count) = videos x data.clips_per_video); raise data.clips_per_video or lower the batch size")
        }
        totalSteps = config.train.steps > 0 ? config.train.steps : config.train.epochs * perEpoch
        optimizer = makeOptimizer(config.optimizer, parameters: task.model.namedParameters().filter { $0.1.requiresGrad }.map { (name: $0.0, tensor: $0.1) })
        if let mpi {
            averager = GradientAverager(mpi, parameters: optimizer.parameters.map(\.tensor),
                                        bucketBytes: max(1, Int(config.distributed.bucketMb * 1_048_576)))
            if config.distributed.syncBatchnorm { task.model.synchronizeBatchNorm(MPIBatchStatistics(mpi)) }
        } else {
            averager = nil
        }
    }

    /// Generator of step `s` (0-based), derived from the seed only.
    public static func stepGenerator(seed: Int, step: Int) -> RandomGenerator {
        RandomGenerator(seed: UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 ^ (UInt64(step) &+ 1) &* 0xD1B5_4A32_D192_ED03)
    }

    // MARK: checkpoints

    func checkpointTensors() -> [String: Tensor] {
        var t = task.model.stateDict()
        for (k, v) in optimizer.stateDict() { t[CheckpointFile.optimizerPrefix + k] = v }
        return t
    }

    func checkpointMetadata(configYAML: String) -> [String: String] {
        let next = Self.stepGenerator(seed: settings.seed, step: step)
        return task.checkpointMetadata.merging([
            "format": "cycletime-checkpoint-1",
            "objective": task.objectiveName,
            "step": String(step),
            "seed": String(settings.seed),
            "precision": settings.train.precision.rawValue,
            "data_next_batch": String(step),
            "ranks_when_written": String(ranks),
            "rng_next_step_state": next.stateArray.map { String(format: "%016llx", $0) }.joined(separator: " "),
            "rng_scheme": "batch b is sampled from (seed, b); step s uses a generator derived from (seed, s)",
            "config": configYAML,
        ].merging(best.map { ["best_field": $0.field, "best_value": String($0.value), "best_step": String($0.step)] } ?? [:]) { a, _ in a }
        ) { _, trainer in trainer }
    }

    @discardableResult
    func saveCheckpoint(configYAML: String) throws -> String {
        try run.saveCheckpoint(step: step, tensors: checkpointTensors(), metadata: checkpointMetadata(configYAML: configYAML),
                               keep: settings.train.keepCheckpoints)
    }

    /// Takes this step's validation fields as the best so far when they beat it; returns whether
    /// they did (the step's checkpoint is then also checkpoints/best.safetensors).
    func noteBest(_ fields: [(String, Double)]) -> Bool {
        guard let field = validators.lazy.compactMap(\.bestField).first,
              let value = fields.last(where: { $0.0 == field })?.1, value.isFinite, value > (best?.value ?? -.infinity) else { return false }
        best = (field, value, step)
        return true
    }

    /// The best validation as of the checkpoint just restored (its `best_*` metadata; for a
    /// checkpoint written before those keys, best.safetensors's own when not newer), and
    /// best.safetensors made to agree with it: one of a later step (a validation the resumed run
    /// repeats, or one of a run resumed with another config) is replaced by the periodic
    /// checkpoint of the recorded best step when that is kept, or removed.
    func restoreBest(_ metadata: [String: String]) throws {
        let path = run.latestCheckpointPath
        best = nil
        let file = try run.bestCheckpoint()
        if let field = metadata["best_field"] {
            guard let value = metadata["best_value"].flatMap(Double.init), let s = metadata["best_step"].flatMap({ Int($0) }), s >= 0, s <= step else {
                throw TrainingError("\(path): 'best_field' in its metadata without a valid 'best_value' and 'best_step' (at most its step \(step))")
            }
            best = (field, value, s)
        } else if let file, file.step <= step, let field = file.metadata["best_field"],
                  let value = file.metadata["best_value"].flatMap(Double.init) {
            best = (field, value, file.step)
        }
        guard let fileStep = file?.step else { return }
        if let best, best.step == fileStep { return }
        var kept = false
        if let best { kept = try run.restoreBestCheckpoint(step: best.step) } else { try run.removeBestCheckpoint() }
        run.log("best.safetensors was of step \(fileStep), not the best as of step \(step): " +
                (kept ? "now the checkpoint of step \(best?.step ?? 0)" : "removed (its step's checkpoint is no longer kept)"))
    }

    /// Restores model, optimizer and step from the run's latest checkpoint; returns its metadata.
    func restore() throws -> [String: String] {
        let file = try CheckpointFile(run.latestCheckpointPath)
        try load(file)
        lastCheckpointStep = step
        return file.metadata
    }

    /// Model, optimizer and step from a checkpoint (its path names it in errors).
    func load(_ file: CheckpointFile) throws {
        let path = file.path
        guard let s = try file.step() else {
            throw TrainingError("\(path): not a CycleTime training checkpoint (no 'step' in its metadata)")
        }
        if let o = file.metadata["objective"], o != task.objectiveName {
            throw TrainingError("\(path): the checkpoint is of objective '\(o)', the config trains '\(task.objectiveName)'")
        }
        try file.requireFinite(file.tensors, prefix: "")
        do {
            try task.model.loadStateDict(file.modelState, strict: true)
        } catch {
            throw TrainingError("\(path): the checkpoint does not fit the configured model: \(error)")
        }
        do {
            try optimizer.loadStateDict(file.optimizerState)
        } catch {
            throw TrainingError("\(path): optimizer state: \(error) (key prefix 'optimizer.')")
        }
        step = s
    }

    // MARK: the loop

    /// Rank 0 (or the single process): checks the run directory, restores a checkpoint when
    /// resuming and writes the resolved config. Every check (the checkpoint's metadata and
    /// tensors) comes before any file changes; a resumed run that is already complete changes
    /// nothing. A fresh run starts the metrics and log over; a resumed one keeps the metrics
    /// of the steps up to its checkpoint.
    func prepareRun(resume: Bool, configYAML: String) throws {
        if resume {
            guard run.hasCheckpoint else {
                throw TrainingError("\(run.path): --resume given but the run has no checkpoint (checkpoints/latest.safetensors)")
            }
            let metadata = try restore()
            if step >= totalSteps { return }
            try restoreBest(metadata)
            if let old = try? String(contentsOfFile: run.configPath, encoding: .utf8), old != configYAML {
                warn("the configuration differs from the one the run started with (\(run.configPath)); continuing with the new one")
            }
            try run.truncateMetrics(afterStep: step)
            run.log("resumed from step \(step)")
        } else if run.hasCheckpoint {
            throw TrainingError("\(run.path) already holds a run (checkpoints/latest.safetensors); pass --resume to continue it, or choose another output_dir")
        } else {
            try run.startOver()
        }
        try run.writeConfig(configYAML)
    }

    /// Data-parallel start: every rank gets rank 0's model, optimizer state and step (one
    /// broadcast of a checkpoint's bytes; empty when rank 0 failed to prepare the run).
    func shareLeaderState(_ mpi: MPIContext, leaderFailed: Bool) throws {
        let payload = isLeader && !leaderFailed ? SafeTensors.serialize(checkpointTensors(), metadata: ["step": String(step)]) : Data()
        let got = try mpi.broadcast(payload, "the broadcast of rank 0's weights")
        if leaderFailed { return }
        guard !got.isEmpty else { throw TrainingError("\(mpi.label): rank 0 could not start the run (its message says why)") }
        if !isLeader {
            let f = try SafeTensors.parse(got, path: "rank 0's weights")
            try load(CheckpointFile(path: "rank 0's weights", metadata: f.metadata, tensors: f.tensors))
            lastCheckpointStep = step
        }
    }

    /// Trains to `totalSteps` (or until `shouldStop`, or `stopAfter` more steps for tests).
    public func train(resume: Bool, stopAfter: Int? = nil) throws -> TrainOutcome {
        let configYAML = configText
        var setupError: Error?
        if isLeader {
            do { try prepareRun(resume: resume, configYAML: configYAML) } catch { setupError = error }
        }
        if let mpi {
            try shareLeaderState(mpi, leaderFailed: setupError != nil)
            mpi.abortNote = { [unowned self] in isLeader ? "the last checkpoint (step \(lastCheckpointStep)) is intact" : "" }
        }
        if let setupError { throw setupError }
        if step >= totalSteps {
            if isLeader {
                progress?.finish(message: "\(run.path): the run is already complete at step \(step) (it trains \(totalSteps) steps); nothing to do")
            }
            return .finished(step: step)
        }
        task.model.train()
        let scheduler = LRScheduler(optimizer, schedule: makeSchedule(settings.schedule, lr: settings.optimizer.lr, totalSteps: totalSteps),
                                    lastStep: step)
        let loader = PrefetchLoader(source: task.source, batchSize: settings.train.batchSize, workers: settings.workers,
                                    queueDepth: settings.prefetch, seed: UInt64(settings.seed), epochs: nil, startBatch: step,
                                    shard: (rank, ranks))
        loader.warn = { [warn] in warn($0.hasPrefix("warning: ") ? String($0.dropFirst(9)) : $0) }
        defer { loader.stop() }
        let startStep = step
        var started = false
        let wallStart = DispatchTime.now().uptimeNanoseconds
        while step < totalSteps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            guard let batch = loader.next() else {
                let why = loader.lastFailureMessage.map { " (last error: \($0))" } ?? ""
                throw TrainingError("no readable video in data.videos: all \(task.source.count) clips failed to decode\(why)")
            }
            if !started && isLeader {
                progress?.start(step: step, total: totalSteps)
                started = true
            }
            let wait = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let lr = Double(optimizer.learningRate)
            var g = Self.stepGenerator(seed: settings.seed, step: step)
            if rank > 0 { g = RandomGenerator(seed: g.next() ^ UInt64(rank) &* 0xA24B_AED4_963E_E407) }
            DefaultRandom.generator = Self.stepGenerator(seed: settings.seed &+ 1, step: step)
            task.prepare(step: step)
            var (terms, norm, tm) = try trainingStep(task, batch: batch, optimizer: optimizer, gradClip: settings.train.gradClip,
                                                     precision: settings.train.precision, generator: &g, reduceGradients: averager.map { a in { a.average() } })
            scheduler.step()
            var interrupt = shouldStop()
            if let mpi {
                // The loss terms averaged over the ranks (the global batch's), and whether any rank was interrupted.
                let v = try mpi.allReduce(terms.map(\.1) + [interrupt ? 1 : 0], "the loss all-reduce")
                for i in terms.indices { terms[i].1 = v[i] / Double(ranks) }
                interrupt = v[terms.count] > 0
            }
            guard terms[0].1.isFinite else {
                throw TrainingError("the loss is not finite at step \(step + 1) (\(terms.map { "\($0.0) \($0.1)" }.joined(separator: ", "))); the last checkpoint (step \(lastCheckpointStep)) is intact")
            }
            step += 1
            let stepSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let clips = Double(task.clipCount(batch) * ranks)
            var fields: [(String, Double)] = [("step", Double(step))]
            fields += terms
            fields += [("lr", lr), ("grad_norm", norm), ("clips_per_s", clips / stepSeconds),
                       ("data_wait", wait / stepSeconds), ("step_s", stepSeconds),
                       ("forward_s", tm.forward), ("backward_s", tm.backward),
                       ("elapsed_s", Double(DispatchTime.now().uptimeNanoseconds - wallStart) / 1e9)]
            if mpi != nil { fields += [("ranks", Double(ranks)), ("allreduce_s", tm.allReduce)] }
            let stop = interrupt || (stopAfter.map { step - startStep >= $0 } ?? false)
            let checkpointDue = step % settings.train.checkpointEvery == 0 || step == totalSteps || stop
            var validationImages: [(tag: String, png: Data)] = []
            for validator in validators where isLeader && (step % validator.everySteps == 0 || step == totalSteps) {
                let v0 = DispatchTime.now().uptimeNanoseconds
                let scores: ValidationScores
                do { scores = try validator.validate(model: task.model, step: step) } catch {
                    throw TrainingError("validation at step \(step): \(error); the last checkpoint (step \(lastCheckpointStep)) is intact")
                }
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - v0) / 1e9
                fields += scores.fields + [(validator.secondsField, seconds)]
                validationImages += scores.images
                let line = "validation at step \(step): \(scores.summary) (\(String(format: "%.1f", seconds)) s)"
                run.log(line)
                progress?.note(line)
            }
            if isLeader {
                try run.appendMetrics(fields)
                for (tag, png) in validationImages { try run.appendImage(tag: tag, step: step, png: png) }
                if let line = progress?.update(step: step, stepSeconds: stepSeconds, clips: clips, dataWait: wait / stepSeconds, terms: terms) {
                    run.log(line)
                }
                let improved = noteBest(fields)
                var periodic: String?
                if checkpointDue {
                    let p = try saveCheckpoint(configYAML: configYAML)
                    run.log("checkpoint step \(step): \(p)")
                    periodic = p
                }
                if improved, let best {
                    try run.saveBestCheckpoint(tensors: checkpointTensors(), metadata: checkpointMetadata(configYAML: configYAML), sameAs: periodic)
                    run.log("best \(best.field) \(String(format: "%.4f", best.value)) at step \(step): \(run.bestCheckpointPath)")
                }
            }
            if checkpointDue { lastCheckpointStep = step }
            if stop && step < totalSteps {
                if isLeader {
                    progress?.finish(message: "interrupted at step \(step)/\(totalSteps); checkpoint written to \(run.latestCheckpointPath)")
                }
                return .interrupted(step: step)
            }
        }
        if isLeader {
            progress?.finish(message: "finished \(totalSteps) steps; checkpoint \(run.latestCheckpointPath), metrics \(run.metricsPath)")
        }
        return .finished(step: step)
    }
}
