import CycleTimeCore
import CycleTimeData
import CycleTimeTracking
import CycleTimeTraining
import Foundation

/// One TimeCycle training batch: clip frames [B, T, 3, S, S], target images I [B, 3, S, S], the
/// ground-truth patches cut from I [B, 3, p, p] and their transforms theta [B, 2, 3].
public struct TimeCycleBatch: @unchecked Sendable {
    public var clip: Tensor
    public var image: Tensor
    public var patch: Tensor
    public var theta: Tensor
    public init(clip: Tensor, image: Tensor, patch: Tensor, theta: Tensor) {
        self.clip = clip; self.image = image; self.patch = patch; self.theta = theta
    }
    public var size: Int { clip.shape[0] }
}

/// TimeCycle clips from unlabeled videos: the clip frames, the target frame I and the motion frame
/// are cut with one crop and flip; the ground-truth patch is chosen from |I - motion| and cut from
/// I, all on the loader's threads. `clipsPerVideo` samples per video and epoch.
public struct TimeCycleClipSource: ClipSource {
    public typealias Sample = TimeCycleBatch
    public let videos: VideoClipDataset
    public let clipsPerVideo: Int
    public var notices: OnceNotices? { videos.notices }
    public let clipFrames: Int
    public let patch: GroundTruthPatchConfig
    let targetIndex: Int, motionIndex: Int

    public init(paths: [String], config c: TrainConfig) {
        videos = VideoClipDataset(paths: paths, options: c.clipOptions)
        clipsPerVideo = c.data.clipsPerVideo
        clipFrames = c.data.clipOffsets.count
        patch = c.patch
        // The two extra frames are decoded in offset order after the clip.
        let targetFirst = c.data.targetOffset <= c.data.motionOffset
        targetIndex = clipFrames + (targetFirst ? 0 : 1)
        motionIndex = clipFrames + (targetFirst ? 1 : 0)
    }

    public var count: Int { videos.count * clipsPerVideo }
    public func name(_ index: Int) -> String { videos.paths[index % videos.count] }

    public func sample(_ index: Int, seed: UInt64) throws -> TimeCycleBatch {
        let (frames, flipped) = try videos.clipAndFlip(index % videos.count, seed: seed)
        let rest = Array(frames.shape.dropFirst())
        func frame(_ i: Int) -> Tensor { frames.sliced(axis: 0, start: i, end: i + 1) }
        let clip = frames.sliced(axis: 0, start: 0, end: clipFrames).reshaped([1, clipFrames] + rest)
        let image = frame(targetIndex)
        var g = RandomGenerator(seed: seed ^ 0x7A3D_9C41_E5B2_0F68)
        let (theta, patchImage) = GroundTruthPatch.make(target: image, motion: frame(motionIndex), flipped: [flipped],
                                                        config: patch, generator: &g)
        return TimeCycleBatch(clip: clip, image: image, patch: patchImage, theta: theta)
    }

    public func collate(_ samples: [TimeCycleBatch]) -> TimeCycleBatch {
        TimeCycleBatch(clip: Tensor.cat(samples.map(\.clip), axis: 0), image: Tensor.cat(samples.map(\.image), axis: 0),
                       patch: Tensor.cat(samples.map(\.patch), axis: 0), theta: Tensor.cat(samples.map(\.theta), axis: 0))
    }
}

/// The video files named by `entries` (video files, folders searched recursively, or .txt list
/// files). Errors name the entry and the config field.
public func resolveVideos(_ entries: [String], field: String = "data.videos", file: String) throws -> [String] {
    var out: [String] = []
    let fm = FileManager.default
    for e in entries {
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: e, isDirectory: &isDir) else {
            throw ConfigError(file, "field '\(field)': no such file or folder: \(e)")
        }
        if isDir.boolValue {
            let found = try VideoClipDataset(folder: e).paths
            if found.isEmpty {
                throw ConfigError(file, "field '\(field)': no video files (\(VideoClipDataset.videoExtensions.sorted().joined(separator: ", "))) in folder \(e)")
            }
            out += found
        } else if ["txt", "list", "lst"].contains((e as NSString).pathExtension.lowercased()) {
            let listed: [String]
            do { listed = try VideoClipDataset(listFile: e).paths } catch {
                throw ConfigError(file, "field '\(field)': cannot read list file \(e): \(error)")
            }
            if listed.isEmpty { throw ConfigError(file, "field '\(field)': list file \(e) names no videos") }
            if let missing = listed.first(where: { !fm.fileExists(atPath: $0) }) {
                throw ConfigError(file, "field '\(field)': list file \(e) names \(missing), which does not exist")
            }
            out += listed
        } else {
            out.append(e)
        }
    }
    return out
}
