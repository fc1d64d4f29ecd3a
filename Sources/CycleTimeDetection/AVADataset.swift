import CycleTimeCore
import CycleTimeData
import CycleTimeVideo
import Foundation

/// Where the frames of AVA videos come from.
public enum AVAFrameSource: Sendable, Equatable {
    /// A folder of videos `<video_id>.<ext>` (the 900-1800 s cut, or any video whose frame 1 is
    /// second `windowStart`), decoded with FFmpeg at the sampler's frame rate.
    case videos(String)
    /// A root of frame folders: mmaction2's `<root>/<video_id>/img_00001.jpg`, PySlowFast's
    /// `<root>/<video_id>/<video_id>_000001.jpg`, or plain `00001.jpg` / `00001.png` (JHMDB's layout).
    case frameFolders(String)

    /// `kind`: "videos", "frame_folders" or "auto" (a folder holding a video file is a videos folder).
    public static func resolve(_ path: String, kind: String) throws -> AVAFrameSource {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            throw AVAError(path, "no such frames folder")
        }
        switch kind {
        case "videos": return .videos(path)
        case "frame_folders": return .frameFolders(path)
        default:
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            let hasVideo = names.contains { VideoClipDataset.videoExtensions.contains(($0 as NSString).pathExtension.lowercased()) }
            return hasVideo ? .videos(path) : .frameFolders(path)
        }
    }
}

/// How clips are cut around keyframes and augmented.
public struct AVAClipOptions: Sendable, Equatable {
    /// T frames at interval tau, numbered as `AVAClipSampler` numbers them.
    public var sampler = AVAClipSampler(frames: 8, interval: 8)
    /// Training: short side rescaled to a uniform integer in [low, high] (PySlowFast's
    /// TRAIN_JITTER_SCALES), then a random `cropSize` square crop and a horizontal flip.
    public var trainScales: ClosedRange<Int> = 256...320
    public var cropSize = 256
    public var flip = true
    /// Training: the clip centre moves by a uniform integer in [-temporalJitter, temporalJitter] frames.
    public var temporalJitter = 0
    /// Testing: the full frame with its short side at this size.
    public var testShortSide = 256
    /// Videos are decoded with their short side at this size (nil: native size); frame folders are read as they are.
    public var decodeShortSide: Int? = 320
    public var mean: [Float] = Normalization.imagenet.mean
    public var std: [Float] = Normalization.imagenet.std
    public init() {}
}

extension AVAClipOptions {
    /// The common size of a clip's frames; frames of different sizes are an error naming `name`.
    public static func frameSize(_ frames: [AVAFrame], name: String) throws -> (width: Int, height: Int) {
        guard let first = frames.first else { throw AVAError(name, "a clip without frames") }
        for f in frames where f.width != first.width || f.height != first.height {
            throw AVAError(name, "frames of different sizes (\(first.width)x\(first.height) and \(f.width)x\(f.height))")
        }
        return (first.width, first.height)
    }

    /// Test clips' size: the full frame with its short side at `testShortSide`.
    public func testSize(width w: Int, height h: Int) -> (width: Int, height: Int) {
        let scale = Double(testShortSide) / Double(max(1, min(w, h)))
        return (max(1, Int((Double(w) * scale).rounded())), max(1, Int((Double(h) * scale).rounded())))
    }

    /// Frames of one size as a clip [1, 3, T, outHeight, outWidth]: the crop of each resized
    /// bilinearly (mirrored when `flip`) and normalized with `mean` and `std`.
    public func clipTensor(_ frames: [AVAFrame], crop: (x: Int, y: Int, w: Int, h: Int), outWidth outW: Int, outHeight outH: Int,
                           flip: Bool) -> Tensor {
        let t = frames.count, plane = outW * outH
        let clip = Tensor(uninitialized: [1, 3, t, outH, outW])
        let lut = ColorLUT(mean: mean, std: std)
        let tmp = UnsafeMutablePointer<Float>.allocate(capacity: 3 * plane)
        defer { tmp.deallocate() }
        for (i, f) in frames.enumerated() {
            f.rgb.withUnsafeBufferPointer { src in
                guard let base = src.baseAddress else { return }
                cropResizeBilinear(base, width: f.width, height: f.height, cropX: crop.x, cropY: crop.y, cropWidth: crop.w, cropHeight: crop.h,
                                   outWidth: outW, outHeight: outH, flip: flip, lut: lut, out: tmp)
            }
            for c in 0..<3 { (clip.data + (c * t + i) * plane).update(from: tmp + c * plane, count: plane) }
        }
        return clip
    }

    /// The test clip of `frames` (the frames `sampler` numbers around a keyframe), as `ava test`
    /// feeds its keyframes: the full frame, short side `testShortSide`, normalized. Frames of
    /// different sizes are an error naming `name`.
    public func testClip(_ frames: [AVAFrame], name: String) throws -> Tensor {
        let (w, h) = try Self.frameSize(frames, name: name)
        let (outW, outH) = testSize(width: w, height: h)
        return clipTensor(frames, crop: (0, 0, w, h), outWidth: outW, outHeight: outH, flip: false)
    }
}

/// A decoded frame (packed RGB24).
public struct AVAFrame: Sendable {
    public let width: Int
    public let height: Int
    public let rgb: [UInt8]
}

/// Frames of AVA videos by 1-based frame number, from videos or frame folders, with a cache of
/// decoded frames bounded in bytes (least recently used frames go first). Videos decode only the
/// window a clip needs (seek, then decode to its last frame). Thread-safe.
public final class AVAFrameStore: @unchecked Sendable {
    public let source: AVAFrameSource
    public let fps: Int
    public let decodeShortSide: Int?
    public let cacheBytes: Int

    private struct Resolved { let path: String; let pattern: FramePattern?; let frameCount: Int }
    private struct Key: Hashable { let video: String; let frame: Int }
    private let lock = NSLock()
    private var resolved: [String: Resolved] = [:]
    private var videoFiles: [String: String]?
    private var cache: [Key: (frame: AVAFrame, used: UInt64)] = [:]
    private var cachedBytes = 0
    private var clock: UInt64 = 0
    /// Frames decoded or read from disk so far (cache misses).
    public private(set) var framesLoaded = 0
    /// Bytes of frames held in the cache.
    public var cachedFrameBytes: Int { lock.lock(); defer { lock.unlock() }; return cachedBytes }

    public init(source: AVAFrameSource, fps: Int = 30, decodeShortSide: Int? = 320, cacheBytes: Int = 512 << 20) {
        self.source = source; self.fps = fps; self.decodeShortSide = decodeShortSide; self.cacheBytes = cacheBytes
    }

    /// A frame-file naming scheme of frame folders: [video id] + prefix + zero-padded number + suffix.
    public struct FramePattern: Sendable, Equatable {
        public let videoPrefix: Bool, prefix: String, digits: Int, suffix: String
        public func name(video: String, _ n: Int) -> String {
            let num = String(n)
            return (videoPrefix ? video : "") + prefix + String(repeating: "0", count: max(0, digits - num.count)) + num + suffix
        }
    }
    /// Tried in order: mmaction2 (img_00001.jpg), PySlowFast (<video_id>_000001.jpg), plain numbers (00001.jpg/png).
    public static let framePatterns: [FramePattern] = [
        FramePattern(videoPrefix: false, prefix: "img_", digits: 5, suffix: ".jpg"),
        FramePattern(videoPrefix: true, prefix: "_", digits: 6, suffix: ".jpg"),
        FramePattern(videoPrefix: false, prefix: "", digits: 5, suffix: ".jpg"),
        FramePattern(videoPrefix: false, prefix: "", digits: 5, suffix: ".png"),
        FramePattern(videoPrefix: false, prefix: "img_", digits: 5, suffix: ".png"),
        FramePattern(videoPrefix: true, prefix: "_", digits: 6, suffix: ".png"),
        FramePattern(videoPrefix: false, prefix: "", digits: 6, suffix: ".jpg"),
    ]

    /// Number of frames of `video` (an error names the video and the folder when it is missing).
    public func frameCount(_ video: String) throws -> Int { try resolve(video).frameCount }

    private func resolve(_ video: String) throws -> Resolved {
        lock.lock()
        if let r = resolved[video] { lock.unlock(); return r }
        lock.unlock()
        let r: Resolved
        switch source {
        case .videos(let dir):
            lock.lock()
            if videoFiles == nil {
                var m: [String: String] = [:]
                for name in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() {
                    let ext = (name as NSString).pathExtension.lowercased()
                    if VideoClipDataset.videoExtensions.contains(ext) { m[(name as NSString).deletingPathExtension] = m[(name as NSString).deletingPathExtension] ?? dir + "/" + name }
                }
                videoFiles = m
            }
            let path = videoFiles?[video]
            lock.unlock()
            guard let path else { throw AVAError(dir, "no video file for video id '\(video)' (expected \(dir)/\(video).mp4 or another video extension)") }
            let meta = try VideoReader.probe(path)
            let n = Int((meta.duration * Double(fps)).rounded(.down))
            guard n > 0 else { throw AVAError(path, "video has no frames") }
            r = Resolved(path: path, pattern: nil, frameCount: n)
        case .frameFolders(let root):
            let dir = root + "/" + video
            guard let pattern = Self.framePatterns.first(where: { FileManager.default.fileExists(atPath: dir + "/" + $0.name(video: video, 1)) }) else {
                throw AVAError(dir, "no frame folder for video id '\(video)' (expected \(dir)/img_00001.jpg, \(dir)/\(video)_000001.jpg or \(dir)/00001.jpg|png)")
            }
            func exists(_ n: Int) -> Bool { FileManager.default.fileExists(atPath: dir + "/" + pattern.name(video: video, n)) }
            // Frames are numbered 1...count without gaps: find the count by doubling then bisection.
            var lo = 1, hi = 2
            while exists(hi) { lo = hi; hi *= 2 }
            while hi - lo > 1 { let mid = (lo + hi) / 2; if exists(mid) { lo = mid } else { hi = mid } }
            r = Resolved(path: dir, pattern: pattern, frameCount: lo)
        }
        lock.lock()
        resolved[video] = r
        lock.unlock()
        return r
    }

    /// Frames `numbers` (1-based, clamped to the video) of `video`.
    public func frames(_ video: String, _ numbers: [Int]) throws -> [AVAFrame] {
        let r = try resolve(video)
        let wanted = numbers.map { min(max($0, 1), r.frameCount) }
        var got: [Int: AVAFrame] = [:]
        lock.lock()
        for n in Set(wanted) {
            if let c = cache[Key(video: video, frame: n)] {
                clock += 1
                cache[Key(video: video, frame: n)] = (c.frame, clock)
                got[n] = c.frame
            }
        }
        lock.unlock()
        let missing = Set(wanted).subtracting(got.keys).sorted()
        if !missing.isEmpty {
            let loaded = try load(r, video: video, missing)
            lock.lock()
            framesLoaded += loaded.count
            for (n, f) in loaded {
                got[n] = f
                clock += 1
                if cache.updateValue((f, clock), forKey: Key(video: video, frame: n)) == nil { cachedBytes += f.rgb.count }
            }
            evict()
            lock.unlock()
        }
        return try wanted.map { n in
            guard let f = got[n] else { throw AVAError(r.path, "frame \(n) of video '\(video)' could not be read") }
            return f
        }
    }

    /// Drops least recently used frames until the cache holds at most 3/4 of its budget (caller holds the lock).
    private func evict() {
        guard cachedBytes > cacheBytes else { return }
        for (k, v) in cache.sorted(by: { $0.value.used < $1.value.used }) {
            if cachedBytes <= cacheBytes * 3 / 4 { break }
            cache[k] = nil
            cachedBytes -= v.frame.rgb.count
        }
    }

    private func load(_ r: Resolved, video: String, _ numbers: [Int]) throws -> [Int: AVAFrame] {
        var out: [Int: AVAFrame] = [:]
        if let pattern = r.pattern {
            for n in numbers {
                let img = try Image.read(r.path + "/" + pattern.name(video: video, n))
                out[n] = AVAFrame(width: img.width, height: img.height, rgb: img.channels == 3 && !img.isIndexed ? img.pixels : img.rgbBytes())
            }
            return out
        }
        // A video: decode the window first...last only.
        guard let first = numbers.first, let last = numbers.last else { return out }
        let reader = try VideoReader(r.path, fps: Double(fps), resize: decodeShortSide.map { .shortSide($0) } ?? .none, threads: 1)
        if first > 1 { try reader.seek(to: Double(first - 1) / Double(fps)) }
        let want = Set(numbers)
        var lastFrame: AVAFrame?
        while let f = try reader.nextFrame() {
            let n = f.index + 1
            let frame = AVAFrame(width: f.width, height: f.height, rgb: f.rgb)
            lastFrame = frame
            if want.contains(n) { out[n] = frame }
            if n >= last { break }
        }
        // The container's duration can overstate the frames it holds: the tail repeats the last decoded frame.
        if let lastFrame { for n in numbers where out[n] == nil && n > (out.keys.max() ?? 0) { out[n] = lastFrame } }
        if out.isEmpty { throw AVAError(r.path, "no frame decoded for frames \(first)...\(last) of video '\(video)'") }
        return out
    }
}

/// A keyframe to train or test on: its boxes (normalized) and, for training, their actions.
public struct AVAEntry: Sendable, Equatable {
    public var key: AVAKey
    public var boxes: [AVABox]
    public var actions: [[Int]]
    public init(key: AVAKey, boxes: [AVABox], actions: [[Int]]) { self.key = key; self.boxes = boxes; self.actions = actions }
}

/// Keyframes of an annotation file, as training and testing use them.
public enum AVAEntries {
    /// Training: the keyframes with ground truth (excluded ones dropped), regions = ground-truth
    /// boxes with at least one class of `classes` plus matching proposals (`trainingRegions`).
    /// With a proposal file, keyframes it lacks are returned in `missingProposals` (report and skip).
    public static func training(groundTruth: [AVAKey: [LabeledBox]], proposals: AVAProposals?, excluded: Set<AVAKey>,
                                classes: AVAClassIndex, minScore: Double = 0.9, minIoU: Double = 0.9)
        -> (entries: [AVAEntry], missingProposals: [AVAKey], excluded: Int) {
        var entries: [AVAEntry] = [], missing: [AVAKey] = []
        var ex = 0
        for key in groundTruth.keys.sorted() {
            if excluded.contains(key) { ex += 1; continue }
            let gt = (groundTruth[key] ?? []).compactMap { b -> LabeledBox? in
                var b = b
                b.actions = b.actions.filter { classes.slot(of: $0) != nil }
                return b.actions.isEmpty ? nil : b
            }
            if gt.isEmpty { continue }
            var props: [ScoredBox] = []
            if let proposals {
                // An empty list is as missing (reported), never a keyframe trained on boxes it lacks.
                guard let p = proposals.boxes[key], !p.isEmpty else { missing.append(key); continue }
                props = p
            }
            let regions = trainingRegions(groundTruth: gt, proposals: props, minScore: minScore, minIoU: minIoU)
            entries.append(AVAEntry(key: key, boxes: regions.map(\.box), actions: regions.map(\.actions)))
        }
        return (entries, missing, ex)
    }

    /// Testing: `keys` (excluded ones dropped) with the proposals mmaction2 selects (score >=
    /// min(threshold, best)); keyframes without proposals are returned in `missingProposals`.
    public static func testing(keys: [AVAKey], proposals: AVAProposals, excluded: Set<AVAKey>, threshold: Double = 0.9)
        -> (entries: [AVAEntry], missingProposals: [AVAKey]) {
        var entries: [AVAEntry] = [], missing: [AVAKey] = []
        for key in keys.sorted() where !excluded.contains(key) {
            guard let sel = proposals.select(key, threshold: threshold), !sel.isEmpty else { missing.append(key); continue }
            entries.append(AVAEntry(key: key, boxes: sel.map(\.box), actions: sel.map { _ in [] }))
        }
        return (entries, missing)
    }

    /// One report line for keyframes skipped for lack of proposals ("" when none).
    public static func missingReport(_ missing: [AVAKey], proposals: String) -> String {
        if missing.isEmpty { return "" }
        let shown = missing.prefix(5).map(\.description).joined(separator: "; ")
        return "\(proposals): no proposals for \(missing.count) keyframe\(missing.count == 1 ? "" : "s") (skipped): \(shown)\(missing.count > 5 ? "; ..." : "")"
    }
}

/// A batch of clips with their boxes: clips [N, 3, T, H, W] (ImageNet-normalized), boxes
/// normalized to each clip's frame, actions per box (empty at test time).
public struct AVABatch: @unchecked Sendable {
    public var clips: Tensor
    public var boxes: [[AVABox]]
    public var actions: [[[Int]]]
    public var keys: [AVAKey]
    public var regionCount: Int { boxes.reduce(0) { $0 + $1.count } }
    /// (video, second) of every box, clip after clip (a feature bank's keys).
    public var boxKeys: [(video: String, timestamp: Int)] {
        zip(keys, boxes).flatMap { k, list in list.map { _ in (video: k.videoID, timestamp: k.timestamp) } }
    }
}

/// AVA keyframes as clips for the prefetching loader: training samples (scale jitter, random crop,
/// flip, boxes transformed alike) or test samples (full frame, short side `testShortSide`).
/// Sample i with seed s is always the same clip.
public struct AVADataset: ClipSource {
    public let entries: [AVAEntry]
    public let store: AVAFrameStore
    public let options: AVAClipOptions
    public let training: Bool

    public init(entries: [AVAEntry], store: AVAFrameStore, options: AVAClipOptions, training: Bool) {
        self.entries = entries; self.store = store; self.options = options; self.training = training
    }

    public var count: Int { entries.count }
    public func name(_ index: Int) -> String { entries[index].key.description }

    public func sample(_ index: Int, seed: UInt64) throws -> AVABatch {
        let e = entries[index]
        var rng = RandomGenerator(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index) &* 0xBF58_476D_1CE4_E5B9 &+ 7)
        let o = options
        let jitter = training && o.temporalJitter > 0 ? rng.int(below: 2 * o.temporalJitter + 1) - o.temporalJitter : 0
        let count = try store.frameCount(e.key.videoID)
        let frames = try store.frames(e.key.videoID, o.sampler.frameNumbers(e.key.timestamp, jitter: jitter, frameCount: count))
        let (w, h) = try AVAClipOptions.frameSize(frames, name: e.key.description)
        let short = Double(min(w, h))
        var crop = (x: 0, y: 0, w: w, h: h), outW: Int, outH: Int, flip = false
        var boxes = e.boxes, actions = e.actions
        if training {
            let s = Double(o.trainScales.lowerBound + rng.int(below: o.trainScales.count))
            let scale = s / short
            crop.w = min(w, Int((Double(o.cropSize) / scale).rounded()))
            crop.h = min(h, Int((Double(o.cropSize) / scale).rounded()))
            outW = min(o.cropSize, Int((Double(w) * scale).rounded()))
            outH = min(o.cropSize, Int((Double(h) * scale).rounded()))
            flip = o.flip && rng.nextDouble() < 0.5
            // A crop that keeps at least one box (a few draws, then one centred on the first box).
            var kept: (boxes: [AVABox], actions: [[Int]]) = ([], [])
            for attempt in 0..<10 {
                if attempt < 9 {
                    crop.x = rng.int(below: w - crop.w + 1); crop.y = rng.int(below: h - crop.h + 1)
                } else {
                    let b = e.boxes[0]
                    crop.x = min(max(0, Int(((b.x1 + b.x2) / 2 * Double(w)).rounded()) - crop.w / 2), w - crop.w)
                    crop.y = min(max(0, Int(((b.y1 + b.y2) / 2 * Double(h)).rounded()) - crop.h / 2), h - crop.h)
                }
                kept = Self.cropBoxes(e.boxes, e.actions, crop: crop, width: w, height: h, flip: flip)
                if !kept.boxes.isEmpty { break }
            }
            boxes = kept.boxes; actions = kept.actions
        } else {
            (outW, outH) = o.testSize(width: w, height: h)
        }
        let clip = o.clipTensor(frames, crop: crop, outWidth: outW, outHeight: outH, flip: flip)
        return AVABatch(clips: clip, boxes: [boxes], actions: [actions], keys: [e.key])
    }

    /// Boxes (normalized to the frame) mapped into a crop (normalized to the crop), clipped to it,
    /// mirrored when `flip`; boxes left without area are dropped with their actions.
    public static func cropBoxes(_ boxes: [AVABox], _ actions: [[Int]], crop: (x: Int, y: Int, w: Int, h: Int), width: Int, height: Int,
                                 flip: Bool) -> (boxes: [AVABox], actions: [[Int]]) {
        var ob: [AVABox] = [], oa: [[Int]] = []
        for (b, a) in zip(boxes, actions) {
            func nx(_ v: Double) -> Double { min(max((v * Double(width) - Double(crop.x)) / Double(crop.w), 0), 1) }
            func ny(_ v: Double) -> Double { min(max((v * Double(height) - Double(crop.y)) / Double(crop.h), 0), 1) }
            var c = AVABox(nx(b.x1), ny(b.y1), nx(b.x2), ny(b.y2))
            if flip { c = AVABox(1 - c.x2, c.y1, 1 - c.x1, c.y2) }
            if c.x2 - c.x1 > 1e-3 && c.y2 - c.y1 > 1e-3 { ob.append(c); oa.append(a) }
        }
        return (ob, oa)
    }

    /// Clips stacked along the batch axis (they must have one size: training crops, or test clips of one video size).
    public func collate(_ samples: [AVABatch]) -> AVABatch {
        let clips = samples.count == 1 ? samples[0].clips : Tensor.cat(samples.map(\.clips), axis: 0)
        return AVABatch(clips: clips, boxes: samples.flatMap(\.boxes), actions: samples.flatMap(\.actions), keys: samples.flatMap(\.keys))
    }
}

extension AVALabelMap {
    /// The classes `ids` of this map, in that order (custom class subsets).
    public func restricted(to ids: [Int]) -> AVALabelMap {
        AVALabelMap(ids.map { Entry(id: $0, name: name(of: $0) ?? String($0)) })
    }
}

extension AVAFrameStore {
    /// The keyframes of `keys` inside their video: every video must be readable (errors name the
    /// video and the folder); keyframes outside their video (a shorter or cut video) are reported
    /// in one line and dropped, since their frames would otherwise be the first or last frame
    /// repeated with no word. An error when none is left.
    public func keyframesInVideos(_ keys: [AVAKey], sampler: AVAClipSampler, annotations: String, report: (String) -> Void) throws -> [AVAKey] {
        var counts: [String: Int] = [:]
        for v in Set(keys.map(\.videoID)).sorted() { counts[v] = try frameCount(v) }
        var kept: [AVAKey] = [], outside: [String] = []
        for key in keys {
            let k = sampler.keyframe(key.timestamp), n = counts[key.videoID] ?? 0
            if k >= 1 && k <= n { kept.append(key) } else { outside.append("\(key) (frame \(k) of \(n))") }
        }
        if !outside.isEmpty {
            report("\(annotations): \(outside.count) keyframe\(outside.count == 1 ? "" : "s") outside \(outside.count == 1 ? "its" : "their") video (skipped): "
                   + outside.prefix(5).joined(separator: ", ") + (outside.count > 5 ? "; ..." : ""))
        }
        if kept.isEmpty { throw AVAError(annotations, "no keyframe lies inside its video (frames counted at \(sampler.fps) per second from second \(sampler.windowStart))") }
        return kept
    }
}
