import ArgumentParser
import CycleTimeCore
import CycleTimeData
import CycleTimeModels
import CycleTimeNN
import CycleTimePropagation
import CycleTimeVideo
import Foundation

/// `cycletime bench propagate`: frames per second and peak memory of DAVIS label propagation at
/// 480p with a resnet18 (random init, seeded), next to the straightforward PyTorch procedure
/// (scripts/bench/torch_propagate.py, same weights) when python3 has torch; the two outputs'
/// masks are compared pixel by pixel.
struct BenchPropagate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "propagate",
        abstract: "Label propagation on davis-mini at 480p (resnet18 layer3, stride 8): frames/s and peak memory vs PyTorch.")

    @Flag(help: "Print the figures as one JSON object.") var json = false
    @Option(name: .customLong("davis-root"), help: "DAVIS root (default ../shared/data/davis-mini)") var davisRoot: String?
    @Option(help: "Sequence") var sequence = "blackswan"
    @Option(help: "Frames of the sequence (frame 0 plus frames-1 propagated)") var frames = 10
    @Flag(help: "Skip the PyTorch reference even when python3 has torch.") var noTorch = false
    @Option(help: "Query tile side of the blocked affinity (speed only)") var tile = PropagationOptions().tile

    func run() throws {
        let root = davisRoot ?? repoPath("../shared/data/davis-mini")
        guard FileManager.default.fileExists(atPath: root) else { throw EvaluationError("\(root): no DAVIS data (give --davis-root)") }
        let ds: DAVISDataset
        let seq: DAVISSequence
        do { ds = try DAVISDataset(root: root); seq = try ds.sequence(sequence) } catch { throw EvaluationError("\(error)") }
        let n = min(frames, seq.frameCount)
        if n < 2 { throw EvaluationError("--frames: at least 2 frames are needed") }
        let r = BenchReport(json: json)
        r.say("CycleTime propagation benchmark: \(sequence), \(n) frames at 480p, resnet18 layer3 stride 8, random init seed 0, context 20, radius 12, top-10")
        var g = RandomGenerator(seed: 0)
        let model = ResNet(config: ResNetConfig(name: "resnet18", lastStage: "layer3", strides: [1, 2, 1, 1])!, initialize: true, generator: &g)
        model.eval()
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("ct-bench-prop-\(getpid())").path
        try FileManager.default.createDirectory(atPath: tmp + "/swift/" + sequence, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let weights = tmp + "/resnet18.safetensors"
        try SafeTensors.write(model.stateDict(), to: weights)

        let first = try Image.readPNG(seq.annotationPaths[0] ?? "")
        let stems = seq.framePaths.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension }
        var swiftMasks: [[Int]] = []
        var options = PropagationOptions()
        options.tile = tile
        let t = try measure {
            try MaskPropagation.run(frameCount: n, frame: { try Image.read(seq.framePaths[$0]) }, firstMask: first.pixels.map(Int.init),
                                    maskWidth: first.width, maskHeight: first.height, extractor: .encoder(model, l2Normalize: true),
                                    options: options) { i, ids in
                swiftMasks.append(ids)
                try Image(width: first.width, height: first.height, channels: 1, pixels: ids.map { UInt8(clamping: $0) }, palette: first.palette)
                    .writePNG(tmp + "/swift/\(sequence)/\(stems[i]).png")
                if !json { progressLine("  swift: frame \(i)/\(n - 1)") }
            }
        }
        if !json { progressDone() }
        let fps = Double(n - 1) / t.wall
        let rss = peakRSSBytes()
        r.add("swift_fps", fps, line: "CycleTime: \(fmt(fps, 3)) frames/s (\(fmt(t.wall / Double(n - 1), 2)) s/frame, cpu/wall \(fmt(t.cpuRatio))), peak RSS \(mib(rss))")
        r.add("swift_peak_rss_bytes", rss)

        let torchAvailable = !noTorch && runProcess("/usr/bin/env", ["python3", "-c", "import torch, torchvision, safetensors"]) != nil
        if !torchAvailable {
            r.say("PyTorch reference: skipped: no torch")
            r.add("torch", "skipped: no torch")
            r.emitJSON()
            return
        }
        guard let out = runProcess("/usr/bin/env", ["python3", repoPath("scripts/bench/torch_propagate.py"), "--weights", weights,
                                                     "--davis-root", root, "--sequence", sequence, "--frames", String(n), "--out", tmp + "/torch"]),
              let line = out.split(separator: "\n").last, let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let tfps = obj["fps"] as? Double, let trss = obj["peak_rss_bytes"] as? Int else {
            throw EvaluationError("scripts/bench/torch_propagate.py failed or printed no figures: no timed reference")
        }
        r.add("torch_fps", tfps, line: "PyTorch:   \(fmt(tfps, 3)) frames/s, peak RSS \(mib(trss))")
        r.add("torch_peak_rss_bytes", trss)
        r.add("speedup", fps / tfps, line: "speed-up \(fmt(fps / tfps, 1))x")
        // Same masks?
        var same = 0, total = 0, worstJ = 1.0
        for i in 1..<n {
            let tp = try Image.readPNG(tmp + "/torch/\(sequence)/\(stems[i]).png").pixels
            let sp = swiftMasks[i - 1]
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
