import CycleTimeCore
import Foundation

/// A long-term feature bank on disk (Wu et al., CVPR 2019; mmaction2's LFB, whose pickle holds
/// video -> second -> [k, C] RoI features): one safetensors file per video, `<root>/<video>.safetensors`,
/// with one tensor per second that has features, named by the second ("902": [k, C]), and the
/// metadata `video`, `channels` and `format` ("cycletime-lfb-1"). Each file is written atomically
/// once its video is done, so a bank built by an interrupted run is resumed video by video
/// (`seconds`) and a file under its final name is always complete. A video in several splits (the
/// same video's training and test keyframes) has one file holding the seconds of all of them.
public struct FeatureBankStore: Sendable {
    public static let format = "cycletime-lfb-1"
    public let root: String

    public init(root: String) { self.root = root }

    /// The file of `video` (its id with path separators replaced, as frame folders are named).
    public func path(_ video: String) -> String {
        root + "/" + video.replacingOccurrences(of: "/", with: "_") + ".safetensors"
    }

    /// Whether `video`'s features are in the bank (a complete file exists).
    public func contains(_ video: String) -> Bool { FileManager.default.fileExists(atPath: path(video)) }

    /// Writes `video`'s features (second -> [k, C], k >= 1) atomically.
    public func write(video: String, seconds: [Int: Tensor], channels: Int) throws {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var tensors: [String: Tensor] = [:]
        for (s, t) in seconds {
            guard t.rank == 2, t.shape[1] == channels, t.shape[0] >= 1 else {
                throw FeatureBankError("\(video) second \(s): features \(t.shape), expected [k, \(channels)]")
            }
            tensors[String(s)] = t
        }
        try SafeTensors.write(tensors, metadata: ["video": video, "channels": String(channels), "format": Self.format], to: path(video))
    }

    /// The seconds `video`'s file holds (empty without a file), from its header only.
    public func seconds(_ video: String) throws -> Set<Int> {
        guard contains(video) else { return [] }
        let h: SafeTensors.Header
        do { h = try SafeTensors.readHeader(path(video)) } catch { throw FeatureBankError("bank file of video '\(video)': \(error)") }
        return Set(h.entries.compactMap { Int($0.key) })
    }

    /// Reads `video`'s features; a missing or foreign file is one error naming the video and the file.
    public func read(video: String, channels: Int) throws -> [Int: Tensor] {
        let p = path(video)
        guard FileManager.default.fileExists(atPath: p) else {
            throw FeatureBankError("no bank file for video '\(video)': \(p) (build it with `cycletime ava bank`)")
        }
        let f: SafeTensors.File
        do { f = try SafeTensors.read(p) } catch { throw FeatureBankError("bank file of video '\(video)': \(error)") }
        guard f.metadata["format"] == Self.format else { throw FeatureBankError("\(p) is not a CycleTime feature bank file (no format \(Self.format))") }
        guard f.metadata["channels"] == String(channels) else {
            throw FeatureBankError("\(p) holds \(f.metadata["channels"] ?? "?")-channel features, the model reads \(channels)")
        }
        var out: [Int: Tensor] = [:]
        for (k, t) in f.tensors {
            guard let s = Int(k), t.rank == 2, t.shape[1] == channels, t.shape[0] >= 1 else {
                throw FeatureBankError("\(p): entry '\(k)' \(t.shape) is not a second's [k, \(channels)] features")
            }
            out[s] = t
        }
        return out
    }
}

public struct FeatureBankError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Reads windows of long-term features around keyframes, as mmaction2's `LFB.sample_long_term_features`:
/// the seconds [t - W/2, t - W/2 + W), each given `maxPerSecond` slots; a second with features fills
/// min(k, K) of its slots with features drawn without replacement (in drawn order), the other slots
/// stay zero. The draw comes from the caller's generator (the step's in training; a generator
/// seeded from the key at test time, so results are reproducible). Memory: at most `cachedVideos`
/// videos' features are held (least recently used dropped), so a bank larger than memory is read
/// video by video.
public final class FeatureBank {
    public let store: FeatureBankStore
    public let channels: Int, windowSize: Int, maxPerSecond: Int, cachedVideos: Int
    var cache: [String: [Int: Tensor]] = [:]
    var recent: [String] = []
    let lock = NSLock()

    public init(store: FeatureBankStore, channels: Int, windowSize: Int = 60, maxPerSecond: Int = 5, cachedVideos: Int = 8) {
        self.store = store
        self.channels = channels
        self.windowSize = windowSize
        self.maxPerSecond = maxPerSecond
        self.cachedVideos = max(1, cachedVideos)
    }

    /// Number of long-term features per keyframe: W * K.
    public var windowFeatures: Int { windowSize * maxPerSecond }

    func features(_ video: String) throws -> [Int: Tensor] {
        lock.lock()
        defer { lock.unlock() }
        if let f = cache[video] {
            recent.removeAll { $0 == video }
            recent.append(video)
            return f
        }
        let f = try store.read(video: video, channels: channels)
        cache[video] = f
        recent.append(video)
        while recent.count > cachedVideos { cache[recent.removeFirst()] = nil }
        return f
    }

    /// The window of `video` around second `timestamp`: [W * K, C].
    public func window(video: String, timestamp: Int, generator g: inout RandomGenerator) throws -> Tensor {
        let f = try features(video)
        let k = maxPerSecond, c = channels
        let out = Tensor.zeros([windowSize * k, c])
        let start = timestamp - windowSize / 2
        for (i, s) in (start..<(start + windowSize)).enumerated() {
            guard let t = f[s] else { continue }
            let n = t.shape[0]
            // min(n, K) distinct indices in drawn order (a partial Fisher-Yates shuffle).
            var idx = Array(0..<n)
            for j in 0..<min(n, k) {
                let r = j + g.int(below: n - j)
                idx.swapAt(j, r)
                (out.data + (i * k + j) * c).update(from: t.data + idx[j] * c, count: c)
            }
        }
        return out
    }

    /// `window` for each (video, timestamp): [N, C, W * K, 1, 1], the long-term input of `FBOHead`.
    public func windows(_ keys: [(video: String, timestamp: Int)], generator g: inout RandomGenerator) throws -> Tensor {
        let w = try keys.map { try window(video: $0.video, timestamp: $0.timestamp, generator: &g) }
        return Tensor.stack(w, axis: 0).transposed(1, 2).reshaped([keys.count, channels, windowFeatures, 1, 1])
    }
}
