import Foundation
import CycleTimeCore
import CycleTimeNN
import CycleTimeTraining
import CycleTimeVideo

// `cycletime ava demo`: video in, actions out. A person detector (or precomputed proposals) gives
// the boxes of every keyframe second, the AVA action detector classifies them on the clip around
// the keyframe, as PySlowFast's and mmaction2's demos do; the results CSV and an mp4 with the boxes
// and their top actions drawn are written atomically into one folder.

/// Where the demo's person boxes come from.
public enum AVADemoPersons: Sendable {
    /// A torchvision-layout Faster R-CNN (safetensors) run on each keyframe: its boxes of class
    /// `personLabel` scoring above `boxes.scoreThreshold` (as `detect test` finds them).
    case detector(path: String, transform: RCNNTransform, boxes: BoxHeadSettings, personLabel: Int)
    /// Precomputed proposals (the JSON or CSV files of `detect test`), selected per keyframe as
    /// `ava test` selects them (score >= min(test.proposal_threshold, the keyframe's best)).
    case proposals(path: String)
}

/// What `runAVADemo` runs on and writes.
public struct AVADemoOptions: Sendable {
    public var video: String
    public var configPath: String
    public var overrides: [String] = []
    /// The action detector's checkpoint (default: the config's output_dir/checkpoints/latest.safetensors).
    public var checkpoint: String?
    public var persons: AVADemoPersons
    /// The video id of the results rows and of the proposal keys (default: the video's base name).
    public var videoID: String?
    /// The output folder (results.csv and demo.mp4), replaced atomically.
    public var out: String
    /// Actions drawn per box (best first).
    public var topK: Int = 3

    public init(video: String, configPath: String, persons: AVADemoPersons, out: String) {
        self.video = video; self.configPath = configPath; self.persons = persons; self.out = out
    }

    /// The video id used: `videoID`, else the video's file name without its extension.
    public var resolvedVideoID: String {
        videoID ?? URL(fileURLWithPath: video).deletingPathExtension().lastPathComponent
    }
}

/// What `runAVADemo` did.
public struct AVADemoSummary: Sendable {
    public let videoID: String
    /// Keyframe seconds processed (0, 1, ... while the video lasts).
    public let keyframes: Int
    /// Keyframe seconds without a person box (no rows, nothing drawn).
    public let keyframesWithoutBoxes: [Int]
    /// Boxes classified over all keyframes, and the rows written to results.csv.
    public let boxes: Int
    public let rows: Int
    /// The written video: frames (the input's count), size and frame rate.
    public let frames: Int
    public let width: Int
    public let height: Int
    public let fps: Double
    public let checkpoint: String
}

/// The frames of a video around its keyframes, decoded as `ava test` decodes its videos (frame
/// rate data.fps, short side data.decode_short_side; frame n, 1-based, shows time (n - 1) / fps)
/// and held in a sliding window: only the frames a clip still needs stay in memory.
struct DemoFrameWindow {
    let reader: VideoReader
    private(set) var frames: [Int: AVAFrame] = [:]
    private(set) var last = 0
    private(set) var ended = false

    init(reader: VideoReader) { self.reader = reader }

    /// Frames `numbers`, clamped to the video as the AVA sampler clamps them (before the first:
    /// the first; after the end: the last decoded).
    mutating func frames(_ numbers: [Int]) throws -> [AVAFrame] {
        let top = numbers.max() ?? 1
        while !ended && last < top {
            guard let f = try reader.nextFrame() else { ended = true; break }
            last = f.index + 1
            frames[last] = AVAFrame(width: f.width, height: f.height, rgb: f.rgb)
        }
        if last == 0 { throw AVAError(reader.path, "no frame could be decoded") }
        return try numbers.map { n in
            guard let f = frames[min(max(n, 1), last)] else { throw AVAError(reader.path, "frame \(n) was dropped from the decoding window") }
            return f
        }
    }

    /// Forgets frames before `first` (the last decoded one stays: the end clamps to it).
    mutating func drop(below first: Int) {
        for n in frames.keys where n < first && n != last { frames[n] = nil }
    }
}

/// One keyframe's boxes and the top actions drawn for each ("name score" lines).
struct DemoKeyframe {
    let second: Int
    let boxes: [AVABox]
    let labels: [[String]]
}

/// `cycletime ava demo`: reads `options.video` with FFmpeg, finds persons at every keyframe second
/// (second t's keyframe is the frame at t seconds; the clip around it as the config's sampler takes
/// it), classifies each box with the AVA detector of the config and checkpoint (as `ava test`
/// builds and feeds it), and writes `out`/results.csv (AVA results rows: video_id, timestamp,
/// normalized box, action_id, score >= test.score_threshold) and `out`/demo.mp4 (the input's
/// frames, size and frame rate, with each keyframe's boxes and top actions drawn from that keyframe
/// to the next), with a detector also `out`/proposals.json (its boxes of every keyframe, the JSON
/// proposal file), into a temporary folder renamed onto `out` when complete. Bad input is one error
/// naming the file, field or flag; nothing is written then.
public func runAVADemo(_ options: AVADemoOptions, report: @escaping (String) -> Void,
                       progress: @escaping (String) -> Void) throws -> AVADemoSummary {
    let config = try ConfigLoader.load(AVAConfig.self, path: options.configPath, overrides: options.overrides)
    try config.validate(file: options.configPath)
    if config.model.bank != "none" {
        throw ConfigError(options.configPath, "field 'model.bank' (\(config.model.bank)): the demo runs without a long-term feature bank (the video has none)")
    }
    guard options.topK >= 1 else { throw AVAError("--top-k", "must be >= 1") }
    try checkOutputFolder(options.out)
    let videoID = options.resolvedVideoID
    let native = try VideoReader(options.video)
    let decodeSide = config.data.decodeShortSide > 0 ? config.data.decodeShortSide : nil
    var window = DemoFrameWindow(reader: try VideoReader(options.video, fps: Double(config.data.fps),
                                                         resize: decodeSide.map { .shortSide($0) } ?? .none))
    let inputs = try AVAInputs(config: config, file: options.configPath, readsFrames: false)
    let (det, ckpt) = try inputs.trainedDetector(checkpoint: options.checkpoint)

    // Persons: a detector, or the proposals of this video.
    var detector: (model: FasterRCNN, personLabel: Int)?
    var proposals: AVAProposals?
    switch options.persons {
    case let .detector(path, transform, boxes, personLabel):
        let model = try FasterRCNN.load(path, transform: transform, boxes: boxes)
        guard personLabel >= 1, personLabel < model.config.numClasses else {
            throw AVAError("--person-label", "\(personLabel) is not a class of \(path) (labels 1...\(model.config.numClasses - 1))")
        }
        detector = (model, personLabel)
    case let .proposals(path):
        let all = try AVAProposals.read(path)
        let mine = all.boxes.filter { $0.key.videoID == videoID }
        if mine.isEmpty {
            let ids = Set(all.boxes.keys.map(\.videoID)).sorted()
            throw AVAError(path, "no keyframe of video id '\(videoID)' (its ids: \(ids.prefix(5).joined(separator: ", "))\(ids.count > 5 ? ", ..." : ""); pass --video-id)")
        }
        proposals = AVAProposals(path: path, boxes: mine)
    }

    let sampler = AVAClipSampler(frames: config.data.clipLength, interval: config.data.frameInterval, fps: config.data.fps, windowStart: 0)
    let clipOptions = config.clipOptions
    var detections: [AVADetection] = []
    var found: [AVAKey: [ScoredBox]] = [:]
    var withoutBoxes: [Int] = []
    var boxCount = 0

    /// Keyframe second t: its persons, their action scores (rows), the top-k labels drawn.
    func keyframe(_ t: Int) throws -> DemoKeyframe {
        let key = AVAKey(videoID, t)
        let clipNumbers = sampler.frameNumbers(t)
        let got = try window.frames(clipNumbers + [sampler.keyframe(t)])
        let next = sampler.frameNumbers(t + 1) + [sampler.keyframe(t + 1)]
        window.drop(below: next.min() ?? 1)
        let scored: [ScoredBox]?
        if let detector, let frame = got.last {
            let boxes = personBoxes(detector.model, frame: frame, personLabel: detector.personLabel)
            found[key] = boxes
            scored = boxes.isEmpty ? nil : boxes
        } else {
            scored = proposals?.select(key, threshold: config.test.proposalThreshold)
        }
        guard let scored, !scored.isEmpty else {
            withoutBoxes.append(t)
            return DemoKeyframe(second: t, boxes: [], labels: [])
        }
        let boxes = scored.map(\.box)
        let clip = try clipOptions.testClip(Array(got.dropLast()), name: "\(options.video) at \(t) s")
        let p = noGrad { inputs.scoring.probabilities(det.logits(clip, boxes: [boxes], longTerm: nil)) }
        detections += avaDetections(key: key, boxes: boxes, probabilities: p, classes: inputs.classes)
        boxCount += boxes.count
        let outputs = inputs.classes.outputs
        let labels = boxes.indices.map { k -> [String] in
            let slots = (1..<outputs).sorted { p.data[k * outputs + $0] > p.data[k * outputs + $1] }.prefix(options.topK)
            return slots.map { s in
                let id = inputs.classes.id(ofSlot: s)
                return "\(inputs.labelMap.name(of: id) ?? String(id)) \(String(format: "%.2f", p.data[k * outputs + s]))"
            }
        }
        return DemoKeyframe(second: t, boxes: boxes, labels: labels)
    }

    let meta = native.metadata
    // The encoder needs even sizes: an odd last row or column is dropped (reported).
    let outW = meta.width & ~1, outH = meta.height & ~1
    if outW != meta.width || outH != meta.height {
        report("\(options.video): \(meta.width)x\(meta.height) frames are written as \(outW)x\(outH) (the encoder needs even sizes)")
    }
    let counter = CountProgress(total: max(1, Int(meta.duration.rounded(.up))), unit: "keyframe", line: ProgressLine(write: progress))
    let scale = max(1, min(outW, outH) / 360 + 1)
    let thickness = Double(max(2, min(outW, outH) / 120))
    var written = 0, keyframes = 0, rows = 0
    try AtomicFile.withTemporary(for: options.out) { tmp in
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        let writer = try VideoWriter(path: tmp + "/demo.mp4", width: outW, height: outH, fps: meta.fps > 0 ? meta.fps : 25)
        var current: DemoKeyframe?
        var start: Double?
        while let f = try native.nextFrame() {
            let t0 = start ?? f.timestamp
            start = t0
            let second = max(0, Int((f.timestamp - t0 + 1e-6).rounded(.down)))
            while (current?.second ?? -1) < second {
                current = try keyframe((current?.second ?? -1) + 1)
                keyframes += 1
                counter.tick("demo", count: 1)
            }
            var canvas = Canvas(image: f.image)
            if let current {
                for (k, b) in current.boxes.enumerated() {
                    let w = Double(f.width), h = Double(f.height)
                    canvas.labeledBox(x0: b.x1 * w, y0: b.y1 * h, x1: b.x2 * w, y1: b.y2 * h, lines: current.labels[k],
                                      RGB.cycle[k % RGB.cycle.count], thickness: thickness, scale: scale)
                }
            }
            if outW != f.width || outH != f.height { canvas = canvas.cropped(x: 0, y: 0, width: outW, height: outH) }
            try writer.write(rgb: canvas.rgb)
            written += 1
        }
        try writer.finish()
        if written == 0 { throw AVAError(options.video, "no frame could be decoded") }
        rows = try writeAVAResults(detections, to: tmp + "/results.csv", threshold: config.test.scoreThreshold)
        // The detector's boxes as a proposal file: --proposals OUT/proposals.json runs another action model without detecting again.
        if detector != nil { try AVAProposals(path: tmp + "/proposals.json", boxes: found).write(to: tmp + "/proposals.json") }
    }
    counter.finish()
    if !withoutBoxes.isEmpty {
        let source: String
        switch options.persons {
        case let .detector(path, _, _, _): source = path
        case let .proposals(path): source = path
        }
        let shown = withoutBoxes.prefix(10).map(String.init).joined(separator: ", ")
        report("\(source): no person box at \(withoutBoxes.count) of \(keyframes) keyframe second\(keyframes == 1 ? "" : "s") (no rows, nothing drawn): \(shown)\(withoutBoxes.count > 10 ? ", ..." : "")")
    }
    return AVADemoSummary(videoID: videoID, keyframes: keyframes, keyframesWithoutBoxes: withoutBoxes, boxes: boxCount, rows: rows,
                          frames: written, width: outW, height: outH, fps: meta.fps, checkpoint: ckpt)
}

/// The demo's output folder can be made: an existing folder is replaced (its parent must be
/// writable), an existing file is an error, a new one needs a writable parent folder.
func checkOutputFolder(_ out: String) throws {
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: out, isDirectory: &isDir) {
        guard isDir.boolValue else { throw FileWriteError(out, "it is a file, not a folder") }
        let parent = URL(fileURLWithPath: out).deletingLastPathComponent().path
        guard access(parent, W_OK) == 0 else { throw FileWriteError(out, "folder \(parent) is not writable") }
    } else {
        try AtomicFile.checkWritable(out)
    }
}
