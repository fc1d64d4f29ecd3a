import ArgumentParser
import CycleTimeCore
import CycleTimeData
import CycleTimeModels
import CycleTimeNN
import CycleTimePropagation
import CycleTimeVideo
import Foundation

/// `cycletime bench propagate`: frames per second and peak memory of DAVIS label propagation at
/// 480p with a resnet18 (random init, seeded) over every sequence of davis-mini (the figure the
/// issue asks for), with the rate on frames whose context is all distinct frames (t > 20, the
/// steady state of long videos) given separately; next to the straightforward PyTorch procedure
/// (scripts/bench/torch_propagate.py, same weights) when python3 has torch. PyTorch's cost per
/// frame does not depend on the frame (it scores every context frame densely), so it runs on the
/// first `--torch-frames` frames of the first sequence only, and the two outputs' masks are
/// compared pixel by pixel on those frames.
struct BenchPropagate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "propagate",
        abstract: "Label propagation on davis-mini at 480p (resnet18 layer3, stride 8): frames/s and peak memory vs PyTorch.")

    @Flag(help: "Print the figures as one JSON object.") var json = false
    @Option(name: .customLong("davis-root"), help: "DAVIS root (default ../shared/data/davis-mini)") var davisRoot: String?
    @Option(help: "Sequences, comma-separated (default: every sequence of the DAVIS root)") var sequences: String?
    @Option(help: "Frames per sequence at most (default: all)") var frames: Int?
    @Option(name: .customLong("torch-frames"), help: "Frames of the first sequence for the PyTorch reference (frame 0 plus frames-1 propagated)")
    var torchFrames = 8
    @Flag(help: "Skip the PyTorch reference even when python3 has torch.") var noTorch = false
    @Option(help: "Query tile side of the blocked affinity (speed only)") var tile = PropagationOptions().tile
    @Option(help: "Precision of CycleTime's encoder: fp32 or bf16 (the PyTorch reference stays float32)") var precision: Precision = .fp32

    func validate() throws {
        try checkOption("--frames", frames, 2...100_000)
        try checkOption("--torch-frames", torchFrames, 1...100_000)
        try checkOption("--tile", tile, 1...1024)
    }

    func run() throws {
        try Autocast.check(precision, setting: "--precision bf16")
        let root = davisRoot ?? repoPath("../shared/data/davis-mini")
        guard FileManager.default.fileExists(atPath: root) else { throw EvaluationError("\(root): no DAVIS data (give --davis-root)") }
        let ds: DAVISDataset
        var seqs: [DAVISSequence] = []
        do {
            ds = try DAVISDataset(root: root)
            let names = sequences.map { $0.split(separator: ",").map(String.init) } ?? ds.sequenceNames
            for n in names { seqs.append(try ds.sequence(n)) }
        } catch { throw EvaluationError("\(error)") }
        if seqs.isEmpty { throw EvaluationError("\(root): no sequences") }
        if let f = frames, f < 2 { throw EvaluationError("--frames: at least 2 frames are needed") }
        if torchFrames < 2 { throw EvaluationError("--torch-frames: at least 2 frames are needed") }
        var options = PropagationOptions()
        options.tile = tile
        let r = BenchReport(json: json)
        r.say("CycleTime propagation benchmark: \(seqs.map(\.name).joined(separator: ", ")) at 480p, resnet18 layer3 stride 8 in \(precision.rawValue), random init seed 0, context \(options.contextFrames), radius \(Int(options.radius)), top-\(options.topK)")
        var g = RandomGenerator(seed: 0)
        let model = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer3", strides: [1, 2, 1, 1]), initialize: true, generator: &g)
        model.eval()
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("ct-bench-prop-\(getpid())").path
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let weights = tmp + "/resnet18.safetensors"
        try SafeTensors.write(model.stateDict(), to: weights)

        var firstMasks: [[Int]] = []  // the first sequence's predictions, for the comparison with PyTorch
        let line = ProgressLine()
        var propagated = 0, steadyFrames = 0
        var steadySeconds = 0.0
        let t = try measure {
            for (k, seq) in seqs.enumerated() {
                let first = try Image.readPNG(seq.annotationPaths[0] ?? "")
                let n = min(frames ?? seq.frameCount, seq.frameCount)
                let stems = seq.framePaths.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension }
                try FileManager.default.createDirectory(atPath: tmp + "/swift/" + seq.name, withIntermediateDirectories: true)
                var last = wallSeconds()
                try MaskPropagation.run(frameCount: n, frame: { try Image.read(seq.framePaths[$0]) }, firstMask: first.pixels.map(Int.init),
                                        maskWidth: first.width, maskHeight: first.height, extractor: .encoder(model, l2Normalize: true, precision: precision),
                                        options: options) { i, ids in
                    // Written as the propagate command writes them (PyTorch's time includes its PNGs too).
                    try Image(width: first.width, height: first.height, channels: 1, pixels: ids.map { UInt8(clamping: $0) }, palette: first.palette)
                        .writePNG(tmp + "/swift/\(seq.name)/\(stems[i]).png")
                    let now = wallSeconds()
                    if i > options.contextFrames { steadyFrames += 1; steadySeconds += now - last }
                    last = now
                    propagated += 1
                    if k == 0 && i < torchFrames { firstMasks.append(ids) }
                    if !json { line.show("  swift: \(seq.name) frame \(i)/\(n - 1)") }
                }
            }
        }
        if !json { line.finish() }
        let fps = Double(propagated) / t.wall
        let rss = peakRSSBytes()
        r.add("precision", precision.rawValue)
        r.add("swift_frames", propagated)
        r.add("swift_fps", fps, line: "CycleTime: \(propagated) frames in \(fmt(t.wall, 1)) s: \(fmt(fps, 3)) frames/s (\(fmt(t.wall / Double(propagated), 2)) s/frame, cpu/wall \(fmt(t.cpuRatio))), peak RSS \(mib(rss))")
        if steadyFrames > 0 {
            let sfps = Double(steadyFrames) / steadySeconds
            r.add("swift_full_context_fps", sfps, line: "           \(steadyFrames) frames with a full context (t > \(options.contextFrames)): \(fmt(sfps, 3)) frames/s")
        }
        r.add("swift_peak_rss_bytes", rss)

        let torchAvailable = !noTorch && runProcess("/usr/bin/env", ["python3", "-c", "import torch, torchvision, safetensors"]) != nil
        if !torchAvailable {
            r.say("PyTorch reference: skipped: no torch")
            r.add("torch", "skipped: no torch")
            r.emitJSON()
            return
        }
        let seq = seqs[0]
        let tn = min(torchFrames, frames ?? seq.frameCount, seq.frameCount)
        guard let obj = runJSONProcess("/usr/bin/env", ["python3", repoPath("scripts/bench/torch_propagate.py"), "--weights", weights,
                                                        "--davis-root", root, "--sequence", seq.name, "--frames", String(tn), "--out", tmp + "/torch"]),
              let tfps = obj["fps"] as? Double, let trss = obj["peak_rss_bytes"] as? Int else {
            throw EvaluationError("scripts/bench/torch_propagate.py failed or printed no figures: no timed reference")
        }
        r.add("torch_fps", tfps, line: "PyTorch:   \(fmt(tfps, 3)) frames/s (\(tn - 1) frames of \(seq.name)), peak RSS \(mib(trss))")
        r.add("torch_peak_rss_bytes", trss)
        r.add("speedup", fps / tfps, line: "speed-up \(fmt(fps / tfps, 1))x over davis-mini" + (steadyFrames > 0 ? String(format: ", %.1fx on full-context frames", Double(steadyFrames) / steadySeconds / tfps) : ""))
        if steadyFrames > 0 { r.add("speedup_full_context", Double(steadyFrames) / steadySeconds / tfps) }
        // Same masks?
        let stems = seq.framePaths.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension }
        var same = 0, total = 0, worstJ = 1.0
        for i in 1..<tn {
            let tp = try Image.readPNG(tmp + "/torch/\(seq.name)/\(stems[i]).png").pixels
            let sp = firstMasks[i - 1]
            for k in 0..<tp.count where Int(tp[k]) == sp[k] { same += 1 }
            total += tp.count
            worstJ = min(worstJ, DAVISMetrics.jaccard(tp.map { $0 != 0 }, sp.map { $0 != 0 }))
        }
        let agree = Double(same) / Double(max(total, 1))
        r.add("mask_agreement", agree, line: "masks: \(fmt(agree * 100, 4))% of pixels identical, worst per-frame J(Swift, PyTorch) \(fmt(worstJ, 4))")
        r.emitJSON()
    }
}

/// Peak resident memory of this process (bytes).
func peakRSSBytes() -> Int {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Int(u.ru_maxrss) * 1024
}
