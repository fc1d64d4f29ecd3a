import ArgumentParser
import CycleTimeCore
import CycleTimeData
import CycleTimeVideo
import Foundation

/// Where the benchmark videos are: ../shared/data/videos beside the checkout, or Debian's
/// opencv-doc copy of vtest.avi.
func benchVideoFolder() -> String? {
    let candidates = [repoPath("../shared/data/videos"), "/usr/share/doc/opencv-doc/examples/data"]
    return candidates.first { FileManager.default.fileExists(atPath: $0 + "/vtest.avi") }
}

struct BenchVideo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "video",
        abstract: "Decode + resize to short side 256 as Float32 RGB, next to the ffmpeg command doing the same.")

    @Flag(help: "Print the figures as one JSON object.") var json = false
    @Option(help: "The video (default: vtest.avi from ../shared/data/videos or Debian's opencv-doc).") var video: String?
    @Option(help: "Short side of the decoded frames.") var shortSide = 256
    @Option(help: "Timed runs of each side (median reported).") var runs = 3

    func validate() throws {
        try checkOption("--short-side", shortSide, 16...VideoResize.maxSide)
        try checkOption("--runs", runs, 1...1000)
    }

    func run() throws {
        guard let path = video ?? benchVideoFolder().map({ $0 + "/vtest.avi" }) else {
            throw ValidationError("no benchmark video: pass --video FILE, or install Debian's opencv-doc (vtest.avi)")
        }
        guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("\(path): no such file") }
        let r = BenchReport(json: json)
        r.say("Decoding \(path), short side \(shortSide), \(runs) runs each (median):")
        var ours: [(Int, Double)] = []
        for _ in 0..<runs { ours.append(try benchmarkVideoDecode(path: path, shortSide: shortSide)) }
        ours.sort { $0.1 < $1.1 }
        let (frames, secs) = ours[ours.count / 2]
        var ff: [Double] = []
        let args = ["-v", "error", "-threads", "0", "-i", path, "-vf", "scale=-2:\(shortSide)", "-f", "rawvideo",
                    "-pix_fmt", "rgb24", "-y", "/dev/null"]
        for _ in 0..<runs {
            var ok = false
            let t = measure { ok = runProcess("/usr/bin/env", ["ffmpeg"] + args) != nil }
            // A failed reference run (no ffmpeg command, or it rejects the file) must not be timed as fast.
            guard ok else { throw ValidationError("the reference `ffmpeg \(args.joined(separator: " "))` failed; install Debian's ffmpeg") }
            ff.append(t.wall)
        }
        ff.sort()
        let ffs = ff[ff.count / 2]
        r.add("frames", frames)
        r.add("cycletime_seconds", secs, line: "  CycleTime (Float32 RGB tensors)  \(fmt(secs, 3)) s  \(fmt(Double(frames) / secs, 1)) frames/s")
        r.add("ffmpeg_seconds", ffs, line: "  ffmpeg -vf scale=-2:\(shortSide) rgb24  \(fmt(ffs, 3)) s  \(fmt(Double(frames) / ffs, 1)) frames/s")
        r.add("speedup_vs_ffmpeg", ffs / secs, line: "  CycleTime is \(fmt(ffs / secs, 2))x as fast as the ffmpeg command (target >= 1)")
        r.emitJSON()
    }
}

struct BenchLoader: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loader",
        abstract: "The prefetching loader making TimeCycle batches (4 clips x 5 frames, 240x240) while the trunk trains.")

    @Flag(help: "Print the figures as one JSON object.") var json = false
    @Option(help: "Folder of videos (default: ../shared/data/videos or Debian's opencv-doc).") var videos: String?
    @Option(help: "Training steps measured.") var steps = 8
    @Option(help: "Loader worker threads.") var workers = 2

    func validate() throws {
        try checkOption("--steps", steps, 1...100_000)
        try checkOption("--workers", workers, 1...256)
    }

    func run() throws {
        guard let folder = videos ?? benchVideoFolder() else {
            throw ValidationError("no benchmark videos: pass --videos DIR, or install Debian's opencv-doc (vtest.avi)")
        }
        let r = BenchReport(json: json)
        var opts = ClipOptions()
        opts.clipLength = 5
        opts.outputSize = 240
        opts.decodeShortSide = 256
        let source = try VideoClipDataset(folder: folder, options: opts)
        guard source.count > 0 else { throw ValidationError("\(folder): no video files found") }
        r.say("Loader: \(source.count) videos in \(folder), batches of 4 clips x 5 frames x 3 x 240 x 240, \(workers) workers")

        // 1. The loader alone.
        do {
            let loader = PrefetchLoader(source: source, batchSize: 4, workers: workers, queueDepth: 4, seed: 0, epochs: nil)
            _ = loader.next()
            var made = 0
            let t = measure { for _ in 0..<steps where loader.next() != nil { made += 1 } }
            loader.stop()
            guard made > 0 else { throw ValidationError("\(folder): the loader produced no batch (\(loader.skipped) videos skipped)") }
            r.add("loader_alone_seconds_per_batch", t.wall / Double(made),
                  line: "  loader alone: \(fmt(t.wall / Double(made), 3)) s per batch (\(fmt(Double(made) / t.wall, 2)) batches/s)")
        }

        // 2. The foundation benchmark's training step alone (ResNet-18 trunk, batch 8 images).
        let model = BenchCore.trunk().train()
        var gen = RandomGenerator(seed: 3)
        let x = Tensor.randn([8, 3, 240, 240], generator: &gen)
        let step = medianTiming(warmup: 1, runs: 3) { model.zeroGrad(); model(x).sum().backward() }
        r.add("train_step_seconds", step.wall, line: "  training step alone (trunk fwd+bwd, 8 images): \(fmt(step.wall, 3)) s")

        // 3. Both together: training consumes loader batches; how long does it wait for data?
        let loader = PrefetchLoader(source: source, batchSize: 4, workers: workers, queueDepth: 4, seed: 1, epochs: nil)
        _ = loader.next()
        var wait = 0.0, total = 0.0, done = 0
        for _ in 0..<steps {
            let w0 = wallSeconds()
            guard let batch = loader.next() else { break }
            let w1 = wallSeconds()
            let frames = batch.reshaped([-1, 3, 240, 240]).sliced(axis: 0, start: 0, end: 8)
            model.zeroGrad()
            model(frames).sum().backward()
            wait += w1 - w0
            total += wallSeconds() - w0
            done += 1
        }
        loader.stop()
        guard done > 0 else { throw ValidationError("\(folder): the loader produced no batch (\(loader.skipped) videos skipped)") }
        r.add("combined_seconds_per_step", total / Double(done),
              line: "  training fed by the loader: \(fmt(total / Double(done), 3)) s per step, waiting for data \(fmt(100 * wait / total, 1)) % of the time")
        r.add("data_wait_fraction", wait / total)
        r.add("skipped_videos", loader.skipped)
        r.emitJSON()
    }
}
