import CycleTimeCore
import Foundation

/// The optimizer (defaults: the original's Adam, lr 2e-4, betas 0.5/0.999).
public struct OptimizerConfig: Codable, Equatable, Sendable {
    /// adam, adamw or sgd.
    public var name: String = "adam"
    public var lr: Double = 2e-4
    public var betas: [Double] = [0.5, 0.999]
    public var eps: Double = 1e-8
    public var weightDecay: Double = 0
    /// SGD only.
    public var momentum: Double = 0.9
    public var nesterov: Bool = false
    public init() {}
}

/// Learning-rate schedule over steps.
public struct ScheduleConfig: Codable, Equatable, Sendable {
    /// constant, step (x gamma every step_size), multistep (x gamma at each milestone) or cosine
    /// (to min_lr at the last step).
    public var name: String = "constant"
    public var stepSize: Int = 0
    public var milestones: [Int] = []
    public var gamma: Double = 0.1
    public var minLr: Double = 0
    /// Linear warmup from warmup_factor x lr over this many steps (0: none).
    public var warmupSteps: Int = 0
    public var warmupFactor: Double = 1.0 / 3.0
    public init() {}
}

/// The training loop.
public struct LoopConfig: Codable, Equatable, Sendable {
    public var batchSize: Int = 4
    /// Number of steps; when 0, `epochs` passes over the data.
    public var steps: Int = 0
    public var epochs: Int = 0
    /// Gradient-norm clip (0: none).
    public var gradClip: Double = 10
    /// A checkpoint every this many steps (and always at the end).
    public var checkpointEvery: Int = 100
    /// Periodic checkpoints kept (the newest ones; `latest` is always kept).
    public var keepCheckpoints: Int = 3
    /// A plain progress line (and the log) every this many steps.
    public var logEvery: Int = 10
    /// fp32, or bf16: each step's forward and backward run in `Autocast.bf16` (conv2d, linear and
    /// matmul with bf16 inputs and float32 accumulation; the optimizer and master weights stay
    /// float32). bf16 needs a CPU with AVX512-BF16 and is refused at start-up without one.
    public var precision: Precision = .fp32
    public init() {}
}

/// Data-parallel training under `mpirun` (read only when the process is a rank of an MPI job).
public struct DistributedConfig: Codable, Equatable, Sendable {
    /// Batch norm with the statistics of all ranks (nn.SyncBatchNorm); false: per rank, as DDP.
    public var syncBatchnorm: Bool = false
    /// Seconds a rank waits for the others in a collective operation before it aborts the job.
    public var timeoutSeconds: Double = 300
    /// Gradient all-reduce bucket size, MiB.
    public var bucketMb: Double = 25
    public init() {}
}

/// What the pretraining and AVA configs share (seed, output_dir, data loading, the optimizer,
/// schedule and train sections): the bounds of their numbers and their checks, in one place.
public enum SharedConfigFields {
    public static let numberBounds: [String: ClosedRange<Double>] = [
        "seed": ConfigValidator.seeds, "data.workers": ConfigValidator.threads, "data.prefetch": ConfigValidator.queue,
        "optimizer.betas": 0...1, "optimizer.momentum": 0...1, "train.batch_size": ConfigValidator.channels,
    ]

    /// The checks after `checkNumbers` (which rejects non-finite and out-of-bounds numbers first).
    public static func validate(_ v: ConfigValidator, outputDir: String, workers: Int, prefetch: Int, mean: [Float], std: [Float],
                         optimizer o: OptimizerConfig, schedule s: ScheduleConfig, train t: LoopConfig,
                         distributed d: DistributedConfig) throws {
        try v.check(!outputDir.isEmpty, "output_dir", "must name a directory")
        try v.check(workers >= 1, "data.workers", "must be >= 1")
        try v.check(prefetch >= 1, "data.prefetch", "must be >= 1")
        try v.check(mean.count == 3, "data.mean", "must hold 3 values (R, G, B)")
        try v.check(std.count == 3 && std.allSatisfy { $0 > 0 }, "data.std", "must hold 3 positive values")
        try v.check(["adam", "adamw", "sgd"].contains(o.name), "optimizer.name", "'\(o.name)' is not adam, adamw or sgd")
        try v.check(o.betas.count == 2 && o.betas.allSatisfy { $0 >= 0 && $0 < 1 }, "optimizer.betas", "must be [beta1, beta2] in [0, 1)")
        try v.check(["constant", "step", "multistep", "cosine"].contains(s.name), "schedule.name",
                    "'\(s.name)' is not constant, step, multistep or cosine")
        try v.check(s.name != "step" || s.stepSize >= 1, "schedule.step_size", "must be >= 1 for the step schedule")
        try v.check(t.batchSize >= 1, "train.batch_size", "must be >= 1")
        try v.check(t.steps > 0 || t.epochs > 0, "train.steps", "or train.epochs must be set")
        try v.check(t.checkpointEvery >= 1, "train.checkpoint_every", "must be >= 1")
        try v.check(t.keepCheckpoints >= 1, "train.keep_checkpoints", "must be >= 1")
        try v.check(t.logEvery >= 1, "train.log_every", "must be >= 1")
        try v.check(d.timeoutSeconds > 0, "distributed.timeout_seconds", "must be > 0")
        try v.check(d.bucketMb > 0, "distributed.bucket_mb", "must be > 0")
    }
}

/// What the generic trainer needs of a task's config: the seed every random choice flows from,
/// the run directory, the optimizer, schedule and loop sections, data loading threads and the
/// data-parallel settings. Every task's config (pretraining, AVA) gives its own.
public struct LoopSettings: Sendable, Equatable {
    public var seed: Int
    public var outputDir: String
    public var optimizer: OptimizerConfig
    public var schedule: ScheduleConfig
    public var train: LoopConfig
    public var distributed: DistributedConfig
    /// Background loading threads and batches prepared ahead.
    public var workers: Int
    public var prefetch: Int

    public init(seed: Int, outputDir: String, optimizer: OptimizerConfig, schedule: ScheduleConfig, train: LoopConfig,
                distributed: DistributedConfig, workers: Int, prefetch: Int) {
        self.seed = seed; self.outputDir = outputDir; self.optimizer = optimizer; self.schedule = schedule
        self.train = train; self.distributed = distributed; self.workers = workers; self.prefetch = prefetch
    }
}
