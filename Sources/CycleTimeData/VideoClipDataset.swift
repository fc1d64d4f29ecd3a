import CycleTimeCore
import CycleTimeVideo
import Foundation

/// Clip sampling of unlabeled video (TimeCycle training data).
public struct ClipOptions: Sendable {
    /// Frames per clip (T).
    public var clipLength: Int = 4
    /// Frame rate the video is resampled to before sampling (nil: the video's own frames).
    public var fps: Double? = nil
    /// Distance between consecutive clip frames, in (resampled) frames.
    public var frameSpacing: Int = 1
    /// Explicit frame offsets from the clip's start, in (resampled) frames, increasing (e.g.
    /// TimeCycle's [0, 2, 4, 6, 15, 17]); when set, `clipLength` and `frameSpacing` are ignored.
    public var frameOffsets: [Int]? = nil
    /// Side of the square output crop.
    public var outputSize: Int = 240
    /// Frames are decoded with their short side resized to this (nil: native size).
    public var decodeShortSide: Int? = 256
    /// Crop side as a fraction of the short side, drawn uniformly in this range (one draw per clip).
    public var scaleRange: ClosedRange<Double> = 0.7...1.0
    /// Horizontal flip with probability 1/2 (one draw per clip).
    public var horizontalFlip: Bool = true
    public var mean: [Float]? = Normalization.imagenet.mean
    public var std: [Float]? = Normalization.imagenet.std
    /// FFmpeg decoding threads per clip (1 inside the multi-threaded loader).
    public var decoderThreads: Int = 1
    public init() {}

    /// The clip's frame offsets from its start.
    public var offsets: [Int] { frameOffsets ?? (0..<clipLength).map { $0 * frameSpacing } }
}

/// Something the prefetching loader can draw samples from.
public protocol ClipSource: Sendable {
    /// One sample; `collate` joins samples into a batch of the same type.
    associatedtype Sample = Tensor
    var count: Int { get }
    /// A name for warnings (e.g. the file path).
    func name(_ index: Int) -> String
    /// Sample `index` with randomness from `seed` (the same seed gives the same sample).
    func sample(_ index: Int, seed: UInt64) throws -> Sample
    /// A batch from samples (for tensors: stacked along a new first axis).
    func collate(_ samples: [Sample]) -> Sample
    /// Warnings about usable but imperfect samples (once per video); the loader sends them where
    /// its own warnings go.
    var notices: OnceNotices? { get }
}

extension ClipSource {
    public var notices: OnceNotices? { nil }
}

/// Warnings given once per key (a video is named once, however many clips it yields), from any
/// loader thread, to one sink (stderr until a loader connects its own).
public final class OnceNotices: @unchecked Sendable {
    private let lock = NSLock()
    private var seen = Set<String>()
    private var sink: @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
    public init() {}
    public func setSink(_ s: @escaping @Sendable (String) -> Void) { lock.lock(); sink = s; lock.unlock() }
    public func once(_ key: String, _ message: String) {
        lock.lock()
        let first = seen.insert(key).inserted
        let s = sink
        lock.unlock()
        if first { s(message) }
    }
}

extension ClipSource where Sample == Tensor {
    public func collate(_ samples: [Tensor]) -> Tensor { stackFrames(samples) }
}

/// Unlabeled videos: a folder (searched recursively) or a list file; each sample is a clip [T,3,S,S]
/// with one random crop, scale and horizontal flip for the whole clip, deterministic for a seed.
public struct VideoClipDataset: ClipSource {
    public static let videoExtensions: Set<String> = ["mp4", "avi", "mkv", "webm", "mov", "m4v", "mpg", "mpeg", "flv", "wmv", "3gp"]
    public let paths: [String]
    public var options: ClipOptions
    /// Shared by copies: a short video is named once per run.
    public let notices: OnceNotices? = OnceNotices()

    public init(paths: [String], options: ClipOptions = ClipOptions()) {
        self.paths = paths
        self.options = options
    }

    /// Video files under `folder`, recursively, sorted.
    public init(folder: String, options: ClipOptions = ClipOptions()) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw DatasetError(folder, "no such folder")
        }
        var found: [String] = []
        if let e = FileManager.default.enumerator(atPath: folder) {
            while let rel = e.nextObject() as? String {
                if Self.videoExtensions.contains((rel as NSString).pathExtension.lowercased()) { found.append(folder + "/" + rel) }
            }
        }
        self.init(paths: found.sorted(), options: options)
    }

    /// Paths from a list file, one per line (relative paths are relative to the list's folder).
    public init(listFile: String, options: ClipOptions = ClipOptions()) throws {
        let base = (listFile as NSString).deletingLastPathComponent
        let lines = try readLines(listFile).map { $0.split(separator: " ").first.map(String.init) ?? $0 }
        self.init(paths: lines.map { $0.hasPrefix("/") ? $0 : base + "/" + $0 }, options: options)
    }

    public var count: Int { paths.count }
    public func name(_ index: Int) -> String { paths[index] }

    public func sample(_ index: Int, seed: UInt64) throws -> Tensor { try clip(index, seed: seed) }

    /// Clip [T,3,S,S] of video `index`.
    public func clip(_ index: Int, seed: UInt64) throws -> Tensor { try clipAndFlip(index, seed: seed).clip }

    /// Clip [T,3,S,S] of video `index` (T = number of offsets) and whether it was mirrored.
    public func clipAndFlip(_ index: Int, seed: UInt64) throws -> (clip: Tensor, flipped: Bool) {
        let o = options
        let offsets = o.offsets
        guard !offsets.isEmpty && zip(offsets, offsets.dropFirst()).allSatisfy({ $0 < $1 }) && offsets[0] >= 0 else {
            throw DatasetError(paths[index], "the clip's frame offsets must be increasing and non-negative, got \(offsets)")
        }
        var rng = RandomGenerator(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index) &* 0xBF58_476D_1CE4_E5B9 &+ 1)
        let resize: VideoResize = o.decodeShortSide.map { .shortSide($0) } ?? .none
        let reader = try VideoReader(paths[index], fps: o.fps, resize: resize, threads: o.decoderThreads)
        let rate = o.fps ?? reader.metadata.fps
        let total = o.fps == nil ? reader.metadata.frameCount : Int((reader.metadata.duration * rate).rounded(.down))
        let span = (offsets.last ?? 0) + 1
        let start = rng.int(below: max(1, total - span + 1))
        // Crop, scale and flip drawn once for the whole clip.
        let w = reader.outputWidth, h = reader.outputHeight
        let scale = rng.uniform(o.scaleRange.lowerBound, o.scaleRange.upperBound)
        let side = max(1, min(min(w, h), Int((Double(min(w, h)) * scale).rounded())))
        let cx = rng.int(below: w - side + 1), cy = rng.int(below: h - side + 1)
        let flip = o.horizontalFlip && rng.nextDouble() < 0.5
        if start > 0 && rate > 0 {
            try reader.seek(to: Double(start) / rate)
        }
        let s = o.outputSize
        let per = 3 * s * s
        let n = offsets.count
        let out = Tensor(uninitialized: [n, 3, s, s])
        let lut = ColorLUT(mean: o.mean, std: o.std)
        var got = 0
        var i = 0
        while got < n {
            guard let f = try reader.nextFrame() else { break }
            if i == offsets[got] {
                f.rgb.withUnsafeBufferPointer { src in
                    cropResizeBilinear(src.baseAddress!, width: f.width, height: f.height, cropX: cx, cropY: cy,
                                       cropWidth: side, cropHeight: side, outWidth: s, outHeight: s, flip: flip,
                                       lut: lut, out: out.data + got * per)
                }
                got += 1
            }
            i += 1
        }
        if got == 0 { throw DatasetError(paths[index], "no frames decoded for a clip") }
        // A video shorter than the clip repeats its last frame, and says so once.
        if got < n {
            notices?.once(paths[index], "warning: \(paths[index]): \(i) frame(s) at the clip's rate, shorter than the clip's \(span); its last frame is repeated")
        }
        for k in got..<n { (out.data + k * per).update(from: out.data + (got - 1) * per, count: per) }
        return (out, flip)
    }
}

/// Bilinear resize of an RGB24 crop (PyTorch `interpolate(mode="bilinear", align_corners=False)`
/// sampling) to planar Float [3,outH,outW] through a colour lookup table, optionally mirrored.
public func cropResizeBilinear(_ src: UnsafePointer<UInt8>, width: Int, height: Int, cropX: Int, cropY: Int,
                               cropWidth: Int, cropHeight: Int, outWidth: Int, outHeight: Int, flip: Bool,
                               lut: ColorLUT, out: UnsafeMutablePointer<Float>) {
    let sx = Float(cropWidth) / Float(outWidth), sy = Float(cropHeight) / Float(outHeight)
    var x0s = [Int](repeating: 0, count: outWidth), x1s = x0s
    var wxs = [Float](repeating: 0, count: outWidth)
    for ox in 0..<outWidth {
        let fx = max(0, (Float(ox) + 0.5) * sx - 0.5)
        let x0 = min(Int(fx), cropWidth - 1)
        x0s[ox] = (cropX + x0) * 3
        x1s[ox] = (cropX + min(x0 + 1, cropWidth - 1)) * 3
        wxs[ox] = fx - Float(x0)
    }
    let plane = outWidth * outHeight
    lut.table.withUnsafeBufferPointer { tb in
        let l = tb.baseAddress!
        for oy in 0..<outHeight {
            let fy = max(0, (Float(oy) + 0.5) * sy - 0.5)
            let y0 = min(Int(fy), cropHeight - 1)
            let y1 = min(y0 + 1, cropHeight - 1)
            let wy = fy - Float(y0)
            let r0 = src + (cropY + y0) * width * 3, r1 = src + (cropY + y1) * width * 3
            for ox in 0..<outWidth {
                let a = x0s[ox], b = x1s[ox], wx = wxs[ox]
                let dst = oy * outWidth + (flip ? outWidth - 1 - ox : ox)
                for c in 0..<3 {
                    let top = Float(r0[a + c]) * (1 - wx) + Float(r0[b + c]) * wx
                    let bot = Float(r1[a + c]) * (1 - wx) + Float(r1[b + c]) * wx
                    let v = top * (1 - wy) + bot * wy
                    // Interpolate in byte space, then map through the (affine) lookup table.
                    let lo = min(Int(v), 254), f = v - Float(lo)
                    out[c * plane + dst] = l[c * 256 + lo] * (1 - f) + l[c * 256 + lo + 1] * f
                }
            }
        }
    }
}
