import CycleTimeCore
import CycleTimeDistributed
import CycleTimeNN
import CycleTimeTracking
import CycleTimeTraining
import Foundation

/// TimeCycle pretraining: the model of `CycleTimeTracking` on clips of `TimeCycleClipSource`.
public final class TimeCycleTask: TrainingTask {
    public let timeCycle: TimeCycleModel
    public let source: TimeCycleClipSource
    public var model: Module { timeCycle }
    public var objectiveName: String { "timecycle" }
    public let checkpointMetadata: [String: String]

    /// The model is initialized from the config's seed.
    public init(config: TrainConfig, videos: [String]) {
        checkpointMetadata = config.encoderSpec.metadata
        var g = RandomGenerator(seed: UInt64(config.seed))
        timeCycle = TimeCycleModel(config: config.timecycle, generator: &g)
        source = TimeCycleClipSource(paths: videos, config: config)
    }

    public func losses(_ b: TimeCycleBatch, generator: inout RandomGenerator) -> [(String, Tensor)] {
        let l = timeCycle.losses(clip: b.clip, patch: b.patch, image: b.image, target: b.theta)
        let third = timeCycle.config.objective == .inlier ? "loss_inlier" : "loss_similarity"
        return [("loss", l.total), ("loss_long", l.long), ("loss_skip", l.skip), (third, l.inlier)]
    }

    public func clipCount(_ b: TimeCycleBatch) -> Int { b.size }

    /// The encoder is detached at this step or not (`timecycle.detach_network`, `timecycle.detach_steps`).
    public func prepare(step: Int) {
        timeCycle.detachEncoder = timeCycle.config.detachesEncoder(atStep: step)
    }
}

/// Loads and checks a training config, resolves its videos and builds the objective's task and
/// trainer, on the run set-up every task shares (`RunSetup`: MPI under `mpirun`, the locked run
/// directory on rank 0).
public func makeTrainer(configPath: String, overrides: [String] = []) throws -> any AnyTrainer {
    let config = try ConfigLoader.load(TrainConfig.self, path: configPath, overrides: overrides)
    try config.validate(file: configPath)
    let videos = try resolveVideos(config.data.videos, file: configPath)
    var validators: [TrainingValidator] = []
    if config.eval.everySteps > 0 { validators.append(try DAVISValidator(config: config, file: configPath)) }
    if config.diagnostics.everySteps > 0 { validators.append(try TrackerDiagnostics(config: config, videos: videos, file: configPath)) }
    let (mpi, run) = try RunSetup.open(config.loopSettings, configFile: configPath)
    let text = try ConfigLoader.encode(config)
    func with<T>(_ t: Trainer<T>) -> Trainer<T> {
        t.validators = validators
        return t
    }
    switch config.objective {
    case .timecycle:
        return with(try Trainer(settings: config.loopSettings, configFile: configPath, configText: text,
                                task: TimeCycleTask(config: config, videos: videos), run: run, mpi: mpi))
    case .crw:
        return with(try Trainer(settings: config.loopSettings, configFile: configPath, configText: text,
                                task: CRWTask(config: config, videos: videos), run: run, mpi: mpi))
    }
}

/// `makeTrainer` for a TimeCycle config (tests reach the typed task through it).
public func makeTimeCycleTrainer(configPath: String, overrides: [String] = []) throws -> Trainer<TimeCycleTask> {
    guard let t = try makeTrainer(configPath: configPath, overrides: overrides) as? Trainer<TimeCycleTask> else {
        throw ConfigError(configPath, "field 'objective' is not timecycle")
    }
    return t
}
