import CycleTimeCore
import CycleTimeData
import CycleTimeVideo
import Foundation

/// The frames of one propagated sequence, read in order (each frame once): image files, or a video
/// decoded by FFmpeg. `stem(t)` names frame t's output file.
public struct FrameSource {
    public let name: String
    public let count: Int
    public let stem: (Int) -> String
    public let frame: (Int) throws -> Image

    public init(name: String, count: Int, stem: @escaping (Int) -> String, frame: @escaping (Int) throws -> Image) {
        self.name = name; self.count = count; self.stem = stem; self.frame = frame
    }

    /// Image files (PNG or JPEG), output files named after them.
    public static func files(_ paths: [String], name: String) -> FrameSource {
        FrameSource(name: name, count: paths.count, stem: { ((paths[$0] as NSString).lastPathComponent as NSString).deletingPathExtension },
                    frame: { try Image.read(paths[$0]) })
    }

    /// Every decoded frame of a video (at most `maxFrames`), output files named 00000, 00001, ...
    /// The frames are counted by a first decoding pass, so memory holds one frame at a time
    /// whatever the video's length. A video without frames is an error naming it.
    public static func video(_ path: String, maxFrames: Int = Int.max) throws -> FrameSource {
        var count = 0
        let counter = try VideoReader(path)
        while count < maxFrames, try counter.nextFrame() != nil { count += 1 }
        if count == 0 { throw MediaError(file: path, "no video frames could be decoded") }
        let reader = try VideoReader(path)
        var next = 0
        let stemName = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        return FrameSource(name: stemName, count: count, stem: { String(format: "%05d", $0) }, frame: { t in
            guard t == next else { throw MediaError(file: path, "frame \(t) asked for out of order (next is \(next))") }
            guard let f = try reader.nextFrame() else { throw MediaError(file: path, "ended at frame \(t) of the \(count) counted") }
            next += 1
            return f.image
        })
    }
}

/// First-frame labels for `propagate video`: a palette PNG mask, or a box.
public enum FirstFrameLabels {
    /// The DAVIS palette's first colours (background black, then red, green, ...).
    public static let palette: [[UInt8]] = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128], [0, 128, 128], [128, 128, 128]]

    /// A mask of `width` x `height` with label 1 inside the box (pixel corners x1,y1 - x2,y2,
    /// inclusive of the pixels they cover) and 0 elsewhere. The box must be finite, have
    /// x1 < x2 and y1 < y2, and overlap the frame; `flag` names it in errors.
    public static func box(_ b: [Double], width: Int, height: Int, flag: String = "--first-box") throws -> Image {
        guard b.count == 4, b.allSatisfy(\.isFinite) else { throw EvaluationError("\(flag): four finite numbers x1,y1,x2,y2 (pixels), not \(b)") }
        guard b[0] < b[2], b[1] < b[3] else { throw EvaluationError("\(flag): x1 < x2 and y1 < y2 needed, got \(b)") }
        let x0 = max(0, Int(b[0].rounded(.down))), y0 = max(0, Int(b[1].rounded(.down)))
        let x1 = min(width, Int(b[2].rounded(.up))), y1 = min(height, Int(b[3].rounded(.up)))
        guard x0 < x1, y0 < y1 else { throw EvaluationError("\(flag): the box \(b) lies outside the \(width)x\(height) frame") }
        var px = [UInt8](repeating: 0, count: width * height)
        for y in y0..<y1 { for x in x0..<x1 { px[y * width + x] = 1 } }
        return Image(width: width, height: height, channels: 1, pixels: px, palette: palette)
    }

    /// A palette (or gray) PNG of label ids, which must be `width` x `height` when they are given.
    public static func mask(_ path: String, width: Int? = nil, height: Int? = nil) throws -> Image {
        let m = try Image.readPNG(path)
        guard m.channels == 1 else { throw EvaluationError("\(path): not a palette or gray PNG") }
        if let width, let height, m.width != width || m.height != height {
            throw EvaluationError("\(path): the mask is \(m.width)x\(m.height), the frames are \(width)x\(height)")
        }
        return m
    }
}

/// Label propagation jobs: what `cycletime propagate` runs, one call per sequence.
public enum PropagationJobs {
    /// Propagates `firstMask` (frame 0's labels) through `frames`, writing `<out>/<name>/<stem>.png`
    /// (frame 0 = the given mask; its palette, or gray when it has none) atomically: the folder
    /// appears complete or not at all. With `overlayFps`, the labels drawn on the frames go to
    /// `<out>/overlays/<name>/` and `<out>/overlays/<name>.mp4`. A first mask of another size than
    /// the frames is an error naming both. `tick` is called once per frame written.
    public static func masks(_ frames: FrameSource, firstMask: Image, firstMaskName: String, extractor: FeatureExtractor,
                             options: PropagationOptions, out: String, maxFrames: Int? = nil, overlayFps: Double? = nil,
                             tick: () -> Void) throws {
        let n = min(frames.count, maxFrames ?? Int.max)
        guard n > 0 else { throw EvaluationError("\(frames.name): no frames") }
        let frame0 = try frames.frame(0)
        guard firstMask.width == frame0.width && firstMask.height == frame0.height else {
            throw EvaluationError("\(firstMaskName): the first mask of '\(frames.name)' is \(firstMask.width)x\(firstMask.height), its frames are \(frame0.width)x\(frame0.height)")
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        EvaluationFiles.removeStale(in: out)
        let overlay = try overlayFps.map { fps -> OverlayWriter in
            try FileManager.default.createDirectory(atPath: out + "/overlays", withIntermediateDirectories: true)
            return try OverlayWriter(dir: out + "/overlays/" + frames.name, fps: fps)
        }
        try AtomicFile.withTemporary(for: out + "/" + frames.name) { folder in
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
            var current = (0, frame0)
            func write(_ ids: [Int], _ t: Int) throws {
                let img = Image(width: firstMask.width, height: firstMask.height, channels: 1, pixels: ids.map { UInt8(clamping: $0) },
                                palette: firstMask.palette)
                try img.writePNG(folder + "/" + frames.stem(t) + ".png")
                if let overlay {
                    try overlay.add(OverlayWriter.mask(current.1, labels: ids, width: firstMask.width, height: firstMask.height,
                                                       palette: firstMask.palette), stem: frames.stem(t))
                }
            }
            try write(firstMask.pixels.map(Int.init), 0)
            tick()
            try MaskPropagation.run(frameCount: n, frame: { t in
                if t == 0 { return frame0 }
                current = (t, try frames.frame(t))
                return current.1
            }, firstMask: firstMask.pixels.map(Int.init), maskWidth: firstMask.width, maskHeight: firstMask.height,
               extractor: extractor, options: options) { t, ids in
                try write(ids, t)
                tick()
            }
        }
        try overlay?.finish()
    }

    /// Propagates a JHMDB clip's first-frame joints (Gaussian heat maps of `sigma` cells, decoded
    /// from the `decodeTopK` best cells) and writes `<out>/<class>/<clip>/keypoints.csv`
    /// (0-based pixels), with overlays when `overlayFps` is given. `tick` is called once per frame.
    public static func keypoints(_ clip: JHMDBClip, extractor: FeatureExtractor, options: PropagationOptions, out: String,
                                 sigma: Double, decodeTopK: Int, overlayFps: Double? = nil, tick: () -> Void) throws {
        let gt = try JHMDBEvaluation.groundTruth(clip)
        guard gt.count >= clip.frameCount else { throw EvaluationError("\(clip.jointsPath): \(gt.count) frames of joints, \(clip.frameCount) frames") }
        let frames = FrameSource.files(clip.framePaths, name: clip.name)
        let first = try frames.frame(0)
        let W = Double(first.width), H = Double(first.height)
        var keypoints: [[Point2]] = [gt[0]]
        tick()
        try MaskPropagation.runSoft(frameCount: clip.frameCount, frame: { t in t == 0 ? first : try frames.frame(t) },
                                    extractor: extractor, options: options, firstLabels: { h, w in
            // Pixels -> cells by the real grid size.
            KeypointLabels.labels(joints: gt[0].map { Point2($0.x * Double(w) / W, $0.y * Double(h) / H) }, gridHeight: h, gridWidth: w, sigma: sigma)
        }) { _, soft, h, w in
            let cells = KeypointLabels.decode(soft, gridHeight: h, gridWidth: w, joints: gt[0].count, topK: decodeTopK)
            keypoints.append(cells.map { $0.x < 0 ? $0 : Point2($0.x / Double(w) * W, $0.y / Double(h) * H) })
            tick()
        }
        let dir = out + "/\(clip.className)/\(clip.name)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        EvaluationFiles.removeStale(in: out)
        try JHMDBEvaluation.writeKeypoints(keypoints, to: dir + "/keypoints.csv")
        if let overlayFps {
            let overlay = try OverlayWriter(dir: dir + "/overlays", fps: overlayFps)
            for (t, points) in keypoints.enumerated() {
                try overlay.add(OverlayWriter.keypoints(try Image.read(clip.framePaths[t]), points), stem: frames.stem(t))
            }
            try overlay.finish()
        }
    }
}

extension DAVISDataset {
    /// The set of a DAVIS root, or an error naming the root when it has no such set or no sequence in it.
    public static func open(root: String, set: String = "val", resolution: String = "480p") throws -> DAVISDataset {
        let dataset: DAVISDataset
        do { dataset = try DAVISDataset(root: root, set: set, resolution: resolution) } catch { throw EvaluationError("\(error)") }
        if dataset.sequenceNames.isEmpty { throw EvaluationError("\(root): no sequences in set '\(set)'") }
        return dataset
    }

    /// `wanted` (every sequence of the set when nil or empty), each checked to be in the set.
    public func names(_ wanted: [String]?) throws -> [String] {
        guard let wanted, !wanted.isEmpty else { return sequenceNames }
        for w in wanted where !sequenceNames.contains(w) { throw EvaluationError("\(root): no sequence '\(w)' in the set") }
        return wanted
    }
}

extension PropagationJobs {
    /// Propagates the first-frame masks of DAVIS `sequences` (at most `maxFrames` frames each)
    /// into `<out>/<sequence>/<frame>.png`, as `cycletime propagate davis`; `tick(i, name)` is
    /// called once per frame written, `i` the sequence's index.
    public static func davis(_ dataset: DAVISDataset, sequences names: [String], extractor: FeatureExtractor, options: PropagationOptions,
                             out: String, maxFrames: Int? = nil, overlayFps: Double? = nil, tick: (Int, String) -> Void) throws {
        let seqs = try names.map { n -> DAVISSequence in
            do { return try dataset.sequence(n) } catch { throw EvaluationError("\(error)") }
        }
        for (si, seq) in seqs.enumerated() {
            guard let firstPath = seq.annotationPaths[0] else { throw EvaluationError("\(seq.name): no annotation of the first frame") }
            try masks(.files(seq.framePaths, name: seq.name), firstMask: try FirstFrameLabels.mask(firstPath), firstMaskName: firstPath,
                      extractor: extractor, options: options, out: out, maxFrames: maxFrames, overlayFps: overlayFps) { tick(si, seq.name) }
        }
    }

    /// The frames `davis` propagates for `sequences`: sum of min(frames, maxFrames).
    public static func davisFrameCount(_ dataset: DAVISDataset, sequences names: [String], maxFrames: Int? = nil) throws -> Int {
        try names.map { n -> Int in
            do { return min(try dataset.sequence(n).frameCount, maxFrames ?? Int.max) } catch { throw EvaluationError("\(error)") }
        }.reduce(0, +)
    }
}
