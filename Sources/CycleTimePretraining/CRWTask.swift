import CycleTimeCore
import CycleTimeData
import CycleTimeNN
import CycleTimeTracking
import CycleTimeTraining
import Foundation

/// Contrastive-random-walk clips: T frames at crw.fps, then per frame a random resized crop and a
/// grid of jittered patches (CRWClipSampler), on the loader's threads. Sample: [T, N, 3, p, p].
public struct CRWClipSource: ClipSource {
    public let videos: VideoClipDataset
    public let clipsPerVideo: Int
    public var notices: OnceNotices? { videos.notices }
    public let sampler: CRWClipSampler

    public init(paths: [String], config c: TrainConfig) {
        videos = VideoClipDataset(paths: paths, options: c.crwClipOptions)
        clipsPerVideo = c.data.clipsPerVideo
        sampler = CRWClipSampler(config: c.crw)
    }

    public var count: Int { videos.count * clipsPerVideo }
    public func name(_ index: Int) -> String { videos.paths[index % videos.count] }

    public func sample(_ index: Int, seed: UInt64) throws -> Tensor {
        let clip = try videos.clip(index % videos.count, seed: seed)
        var g = RandomGenerator(seed: seed ^ 0x3C6E_F372_FE94_F82B)
        return sampler.patches(frames: clip, generator: &g)
    }
}

/// Contrastive-random-walk pretraining: `CRWModel` on batches of patches [B, T, N, 3, p, p].
public final class CRWTask: TrainingTask {
    public let crw: CRWModel
    public let source: CRWClipSource
    public var model: Module { crw }
    public var objectiveName: String { "crw" }
    public let checkpointMetadata: [String: String]

    public init(config: TrainConfig, videos: [String]) {
        checkpointMetadata = config.encoderSpec.metadata
        var g = RandomGenerator(seed: UInt64(config.seed))
        crw = CRWModel(config: config.crw, generator: &g)
        source = CRWClipSource(paths: videos, config: config)
    }

    /// The loss (edge-dropout masks drawn from the step's generator) and the walk accuracy.
    public func losses(_ patches: Tensor, generator: inout RandomGenerator) -> [(String, Tensor)] {
        let out = crw(patches: patches, generator: &generator)
        return [("loss", out.loss), ("walk_accuracy", Tensor(scalar: out.walkAccuracy))]
    }

    public func clipCount(_ patches: Tensor) -> Int { patches.shape[0] }
}
