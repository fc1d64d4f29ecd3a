import CycleTimeCore
import CycleTimeModels
import CycleTimeTracking
import CycleTimeTraining
import CycleTimePretraining
import CycleTimeVideo
import Foundation

/// The correspondence figures of a TimeCycle run, drawn with its checkpoint on real video frames:
/// affinity heat maps of a few query points on a later frame, and a patch tracked through a clip
/// by the localizer with its predicted box on each frame.
public enum CorrespondenceFigures {
    /// Frames of the clip (every `spacing`-th decoded frame).
    public static let clipFrames = 8

    /// Loads a training checkpoint (optimizer state ignored) into a TimeCycle model in eval mode.
    public static func loadModel(config: TrainConfig, checkpoint: String) throws -> TimeCycleModel {
        var g = RandomGenerator(seed: UInt64(config.seed))
        let model = TimeCycleModel(config: config.timecycle, generator: &g)
        let file: CheckpointFile
        do { file = try CheckpointFile(checkpoint) } catch { throw ReportError("\(error)") }
        do { try model.loadStateDict(file.modelState, strict: true) } catch {
            throw ReportError("\(checkpoint): does not fit the run's TimeCycle model (\(error))")
        }
        model.eval()
        return model
    }

    /// `clipFrames` frames from `video` starting at `start` seconds, decoded as in training (fps,
    /// short side) and centre-cropped to `size` x `size`.
    public static func readClip(video: String, config: TrainConfig, start: Double, size: Int) throws -> [Canvas] {
        let d = config.data
        let reader: VideoReader
        do {
            reader = try VideoReader(video, fps: d.fps > 0 ? d.fps : nil, resize: .shortSide(d.shortSide > 0 ? d.shortSide : size))
        } catch { throw ReportError("\(error)") }
        let spacing = max(1, d.clipOffsets.count > 1 ? d.clipOffsets[1] - d.clipOffsets[0] : 2)
        if start > 0 { try? reader.seek(to: start) }
        var frames: [Canvas] = []
        var i = 0
        while frames.count < clipFrames {
            let f: VideoFrame?
            do { f = try reader.nextFrame() } catch { throw ReportError("\(error)") }
            guard let f else { break }
            if i % spacing == 0 {
                let c = Canvas(image: f.image)
                let s = min(c.width, c.height)
                frames.append(c.cropped(x: (c.width - s) / 2, y: (c.height - s) / 2, width: s, height: s).resized(width: size, height: size))
            }
            i += 1
        }
        if frames.count < 2 { throw ReportError("\(video): fewer than 2 frames after \(start) s") }
        return frames
    }

    /// Progress with rate and ETA.
    static func tick(_ options: ReportOptions, _ what: String, _ done: Int, _ total: Int, since start: Date) {
        options.progress(CountProgress.text("correspondence", unit: what, done: done, total: total, seconds: Date().timeIntervalSince(start)))
    }

    /// Grid cells (x, y) of largest mean absolute difference between two frames, at least `minDist` cells apart.
    public static func motionPoints(_ a: Canvas, _ b: Canvas, grid g: Int, count: Int, minDist: Int) -> [(Int, Int)] {
        var score = [Double](repeating: 0, count: g * g)
        for y in 0..<a.height {
            for x in 0..<a.width {
                let i = 3 * (y * a.width + x)
                var d = 0
                for c in 0..<3 {
                    let u = Int(a.rgb[i + c]), v = Int(b.rgb[i + c])
                    d += abs(u - v)
                }
                let cy = min(g - 1, y * g / a.height), cx = min(g - 1, x * g / a.width)
                score[cy * g + cx] += Double(d)
            }
        }
        var picked: [(Int, Int)] = []
        // Keep away from the border (a query needs context around it).
        for idx in score.indices.sorted(by: { score[$0] != score[$1] ? score[$0] > score[$1] : $0 < $1 }) {
            let p = (idx % g, idx / g)
            guard p.0 >= 2, p.1 >= 2, p.0 < g - 2, p.1 < g - 2 else { continue }
            if picked.allSatisfy({ max(abs($0.0 - p.0), abs($0.1 - p.1)) >= minDist }) { picked.append(p) }
            if picked.count == count { break }
        }
        return picked
    }

    /// softmax over the cells of `base` [1, C, g, g] of <base_k, query> / T, for the query vector at
    /// cell (x, y) of `query` [1, C, g, g] (both L2-normalized per cell).
    public static func affinityMap(query: Tensor, at p: (Int, Int), base: Tensor, temperature: Float) -> [Float] {
        let c = base.shape[1], hw = base.shape[2] * base.shape[3], qw = query.shape[3], qhw = query.shape[2] * qw
        var logits = [Float](repeating: 0, count: hw)
        for k in 0..<hw {
            var s: Float = 0
            for ch in 0..<c { s += base.data[ch * hw + k] * query.data[ch * qhw + p.1 * qw + p.0] }
            logits[k] = s / temperature
        }
        let m = logits.max() ?? 0
        var e = logits.map { expf($0 - m) }
        let z = e.reduce(0, +)
        for i in e.indices { e[i] /= z }
        return e
    }

    public static func make(config: TrainConfig, checkpoint: String, video: String, options: ReportOptions) throws -> [Figure] {
        let tc = config.timecycle
        let size = tc.frameSize, g = tc.baseGrid
        options.progress("correspondence: loading \(checkpoint)")
        let model = try loadModel(config: config, checkpoint: checkpoint)
        let frames = try readClip(video: video, config: config, start: options.videoStart, size: size)
        let start = Date()
        var encoded: [(raw: Tensor, normalized: Tensor)] = []
        for (i, f) in frames.enumerated() {
            let x = f.image.tensor(mean: config.data.mean, std: config.data.std).reshaped([1, 3, size, size])
            encoded.append(noGrad { model.encode(x) })
            tick(options, "encoded frame", i + 1, frames.count, since: start)
        }
        var figures: [Figure] = []
        let spacing = max(1, config.data.clipOffsets.count > 1 ? config.data.clipOffsets[1] - config.data.clipOffsets[0] : 2)
        let last = frames.count - 1

        // Heat maps: query points where the scene moves, affinity on the last frame.
        let points = motionPoints(frames[0], frames[last], grid: g, count: 3, minDist: max(3, g / 5))
        let cell = Double(size) / Double(g)
        var q = frames[0]
        for (i, p) in points.enumerated() {
            let cx = (Double(p.0) + 0.5) * cell, cy = (Double(p.1) + 0.5) * cell
            q.fillCircle(cx: cx, cy: cy, radius: 7, .black)
            q.fillCircle(cx: cx, cy: cy, radius: 5, RGB.cycle[i])
            q.text("\(i + 1)", x: Int(cx) + 8, y: Int(cy) - 3, RGB.cycle[i])
        }
        var tiles = [q.resized(width: options.tileWidth)]
        var labels = ["T=0 QUERIES"]
        for (i, p) in points.enumerated() {
            let a = affinityMap(query: encoded[0].normalized, at: p, base: encoded[last].normalized, temperature: tc.temperature)
            var h = frames[last]
            h.overlayHeatmap(a, width: g, height: g)
            let best = a.indices.max(by: { a[$0] < a[$1] }) ?? 0
            let bx = (Double(best % g) + 0.5) * cell, by = (Double(best / g) + 0.5) * cell
            h.line(bx - 8, by, bx + 8, by, RGB.cycle[i], thickness: 3)
            h.line(bx, by - 8, bx, by + 8, RGB.cycle[i], thickness: 3)
            tiles.append(h.resized(width: options.tileWidth))
            labels.append("T=\(last * spacing) Q\(i + 1)")
        }
        if !points.isEmpty {
            figures.append(try .png("correspondence-affinity",
                                    "Affinity of \(points.count) query points (frame 0, where the scene moves) on frame \(last * spacing): softmax of feature similarity / temperature; crosses at the maximum",
                                    Canvas.grid([tiles], tileLabels: [labels])))
        }

        // A patch tracked through the clip: localizer transform frame to frame.
        let ps = tc.patchSize, pg = tc.patchGrid
        let centre = points.first.map { (Int((Double($0.0) + 0.5) * cell), Int((Double($0.1) + 0.5) * cell)) } ?? (size / 2, size / 2)
        let x0 = min(max(0, centre.0 - ps / 2), size - ps), y0 = min(max(0, centre.1 - ps / 2), size - ps)
        let patch = frames[0].cropped(x: x0, y: y0, width: ps, height: ps)
        let px = patch.image.tensor(mean: config.data.mean, std: config.data.std).reshaped([1, 3, ps, ps])
        var query = noGrad { model.encode(px).normalized }
        var boxes: [[(Double, Double)]] = [[(Double(x0), Double(y0)), (Double(x0 + ps), Double(y0)), (Double(x0 + ps), Double(y0 + ps)), (Double(x0), Double(y0 + ps))]]
        let k = Double(pg) / Double(max(pg - 1, 1))
        let trackStart = Date()
        for t in 1..<frames.count {
            let (theta, next) = noGrad { () -> (Tensor, Tensor) in
                let th = model.predictTheta(model.affinity(query: query, base: encoded[t].normalized))
                return (th, F.normalize(model.crop(encoded[t].raw, theta: th), axis: 1))
            }
            query = next
            let s = model.scaledTheta(theta).array.map(Double.init)
            boxes.append([(-k, -k), (k, -k), (k, k), (-k, k)].map { u, v in
                let xn = s[0] * u + s[1] * v + s[2], yn = s[3] * u + s[4] * v + s[5]
                return (((xn + 1) / 2 * Double(g - 1) + 0.5) * cell, ((yn + 1) / 2 * Double(g - 1) + 0.5) * cell)
            })
            tick(options, "tracked frame", t, frames.count - 1, since: trackStart)
        }
        var trackTiles: [Canvas] = [], trackLabels: [String] = []
        for (t, f) in frames.enumerated() {
            var c = f
            c.polygon(boxes[t], .black, thickness: 4)
            c.polygon(boxes[t], t == 0 ? .green : .yellow, thickness: 2)
            trackTiles.append(c.resized(width: options.tileWidth))
            trackLabels.append("T=\(t * spacing)")
        }
        let half = (trackTiles.count + 1) / 2
        figures.append(try .png("correspondence-track",
                                "A \(ps)x\(ps) patch (green, frame 0) tracked through \(frames.count) frames (\(spacing) decoded frames apart) by the localizer: predicted box in yellow",
                                Canvas.grid([Array(trackTiles[..<half]), Array(trackTiles[half...])],
                                            tileLabels: [Array(trackLabels[..<half]), Array(trackLabels[half...])])))
        return figures
    }
}

extension Report {

    // MARK: correspondence

    static func correspondence(_ run: RunRecord, options: ReportOptions) throws -> [ReportBlock] {
        var b: [ReportBlock] = [.markdown("## Correspondence")]
        guard options.correspondence else {
            b.append(.markdown("**Not drawn:** the correspondence figures were switched off (`--no-correspondence`)."))
            return b
        }
        guard let config = run.config else {
            b.append(.markdown("**Missing:** the run's config could not be read, so the model cannot be built."))
            return b
        }
        guard config.objective == .timecycle else {
            b.append(.markdown("**Not drawn:** the correspondence figures use the TimeCycle model (affinity and localizer); this run's objective is `\(config.objective.rawValue)`."))
            return b
        }
        guard let ckpt = run.latestCheckpoint else {
            b.append(.markdown("**Missing:** no checkpoint (`checkpoints/latest.safetensors`), e.g. a run interrupted before its first checkpoint; the correspondence figures need trained weights."))
            return b
        }
        let video: String
        if let v = options.video {
            video = v
        } else {
            let resolved = try? resolveVideos(config.data.videos, file: run.path + "/config.yaml")
            guard let v = resolved?.first else {
                b.append(.markdown("**Missing:** no video of the run's config (`data.videos`) is readable here; pass `--video FILE`."))
                return b
            }
            video = v
        }
        let figs = try CorrespondenceFigures.make(config: config, checkpoint: ckpt, video: video, options: options)
        b.append(.markdown("Model: TimeCycle from `\(ckpt)` (step \(run.checkpointSteps.last.map(String.init) ?? "?")); video `\(video)` "
            + "from second \(String(format: "%.1f", options.videoStart)), \(config.timecycle.frameSize)x\(config.timecycle.frameSize) centre crops "
            + "at \(String(format: "%g", config.data.fps > 0 ? config.data.fps : 0)) fps as in training."))
        for f in figs { b.append(.figure(f)) }
        return b
    }
}
