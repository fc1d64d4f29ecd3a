import ArgumentParser
import CycleTimeCore
import CycleTimeDetection
import CycleTimeModels
import CycleTimeNN
import Foundation

/// `cycletime bench ava`: seconds per AVA training iteration (forward, backward, SGD step) and peak
/// memory of the detector with each backbone (ResNet-18): 2D per frame averaged over time (clip
/// 4x16: 4 frames), SlowOnly (4 frames) and SlowFast (32x2: fast 32 frames, slow 4), batch 2,
/// 256x256, 2 boxes per clip, mmaction2's RoI head and BCE loss over 80 classes. Each case runs in
/// its own process (peak memory is the case's own), next to the PyTorch implementation of the
/// same network (scripts/bench/torch_ava.py, in the default and the channels-last layout; the
/// ratio `speedup_vs_torch` is against the faster) when python3 has torch. The relation heads on the 2D
/// backbone: `2d-acrn` (mmaction2's ACRNHead, 512 channels, then BBoxHeadAVA's pooling and
/// classifier) and `2d-acar` (ACAR-Net's ACARHead: reduce 1024, hidden 512, two HR2O layers, roi 7,
/// dropout 0 before fc2), and `2d-lfb`, the long-term feature bank head (`model.bank non_local`: mmaction2's
/// FBOHead with FBO-NL as its AVA LFB recipe: latent 512, two non-local layers, pre-activation,
/// dropout 0.2, over 300 fixed bank features per box, 60 s x 5) between the pooled RoI feature and
/// the classifier; the same BCE loss. With --precision bf16 PyTorch runs inside
/// torch.autocast("cpu", torch.bfloat16) too.
struct BenchAVA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ava",
        abstract: "AVA training iteration time and peak memory: 2D / SlowOnly / SlowFast ResNet-18 backbones, the ACRN / ACAR relation heads and the LFB head, batch 2, 256x256, vs PyTorch.")

    static let known = ["2d", "slowonly", "slowfast", "2d-acrn", "2d-acar", "2d-lfb"]
    static let classes = 80
    /// The 2d-lfb case's bank window per box (mmaction2's AVA LFB: 60 s x 5 features) and FBO-NL width.
    static let lfbLongTerm = 300, lfbLatent = 512

    @Option(parsing: .upToNextOption, help: "Cases: 2d (4 frames), slowonly (4 frames), slowfast (32 frames, slow 4), 2d-acrn, 2d-acar (the 2d backbone with a relation head), 2d-lfb (with the long-term feature bank head).")
    var cases: [String] = BenchAVA.known
    @Option(help: "Timed iterations per case (after one warm-up iteration).") var steps = 3
    @Option(help: "Clips per batch.") var batch = 2
    @Option(help: "Input height and width (a multiple of 16).") var size = 256
    @Flag(help: "A tiny run (64x64, one timed iteration, no PyTorch) that checks the command works.") var quick = false
    @Flag(help: "Print the figures as one JSON object.") var json = false
    @Option(help: "fp32, or bf16: each iteration's forward and backward inside Autocast.bf16 (oneDNN; conv2d, conv3d, linear, matmul), PyTorch's inside torch.autocast(\"cpu\", torch.bfloat16).")
    var precision: Precision = .fp32
    @Option(help: "Library of the float32 2-D and 3-D convolutions: auto (the library default: oneDNN for kernels larger than 1, native for pointwise), native (im2col, Winograd) or onednn.") var convBackend: ConvolutionBackend = .auto
    @Flag(help: "Skip the PyTorch reference even when python3 has torch.") var noTorch = false
    @Option(help: .hidden) var child: String?

    func validate() throws {
        for c in cases where !Self.known.contains(c) {
            throw ValidationError("unknown case '\(c)' (known: \(Self.known.joined(separator: ", ")))")
        }
        if let c = child, !Self.known.contains(c) { throw ValidationError("--child: unknown case '\(c)'") }
        try checkOption("--steps", steps, 1...100_000)
        try checkOption("--batch", batch, 1...256)
        guard size >= 32, size <= 4096, size % 16 == 0 else { throw ValidationError("--size must be a multiple of 16 of at least 32, got \(size)") }
        if size < 48 && (cases.contains("2d-acar") || child == "2d-acar") {
            throw ValidationError("--size must be at least 48 with the 2d-acar case (ACAR's unpadded 3x3 convolution needs a 3x3 feature map at stride 16), got \(size)")
        }
    }

    static func frames(_ c: String) -> Int { c == "slowfast" ? 32 : 4 }

    func run() throws {
        if let c = child { return try runCase(c) }
        let (size, steps) = quick ? (64, 1) : (self.size, self.steps)
        let r = BenchReport(json: json)
        let torchAvailable = !quick && !noTorch && runProcess("/usr/bin/env", ["python3", "-c", "import torch, torchvision, safetensors"]) != nil
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        try Autocast.check(precision, setting: "--precision bf16")
        r.say("AVA training iterations (forward, backward, SGD; CycleTime \(precision.rawValue), \(convBackend.rawValue) float32 convolutions), ResNet-18 backbones, batch \(batch), \(size)x\(size), 2 boxes per clip, "
              + "\(steps) timed after 1 warm-up, each case in its own process; threads: \(Parallel.threadCount); OpenMP wait \(OpenMPWait.policy)")
        var results: [String: Any] = [:]
        for (i, c) in cases.enumerated() {
            r.say("[\(i + 1)/\(cases.count)] \(c): running…")
            // PyTorch first (default and channels-last layouts), then ours, back to back (the machine's speed drifts).
            var torch: [TorchRun] = []
            if torchAvailable {
                for layout in ["default", "channels_last"] {
                    let args = [repoPath("scripts/bench/torch_ava.py"), "--case", c, "--threads", "\(Parallel.threadCount)",
                                "--batch", "\(batch)", "--size", "\(size)", "--steps", "\(steps)", "--classes", "\(Self.classes)",
                                "--precision", precision.rawValue, "--lfb-long-term", "\(Self.lfbLongTerm)", "--lfb-latent", "\(Self.lfbLatent)"]
                        + (layout == "channels_last" ? ["--channels-last"] : [])
                    if let t = TorchRun(runJSONProcess("/usr/bin/env", ["python3"] + args), layout: layout) {
                        torch.append(t)
                    }
                }
            }
            let childArgs = ["bench", "ava", "--child", c, "--steps", "\(steps)", "--batch", "\(batch)", "--size", "\(size)",
                             "--precision", precision.rawValue, "--conv-backend", convBackend.rawValue]
            guard let ours = runJSONProcess(me, childArgs), let sec = ours["seconds_per_step"] as? Double, let peak = ours["peak_rss_bytes"] as? Double else {
                throw ValidationError("the \(c) case failed (run `cycletime \(childArgs.joined(separator: " "))` to see why)")
            }
            var text = "  \(c) (clip \(Self.frames(c)) frames, \(ours["output_channels"] ?? "?") channels): \(fmt(sec, 2)) s/iteration "
                + "(forward \(fmt(ours["forward"] as? Double ?? 0, 2)), backward \(fmt(ours["backward"] as? Double ?? 0, 2)), "
                + "SGD \(fmt(ours["optimizer"] as? Double ?? 0, 3))), peak \(mib(Int(peak)))"
            var entry = ours
            text += compareWithTorch(seconds: sec, peak: peak, torch, unit: "iteration", into: &entry)
            if torch.isEmpty {
                text += "\n    PyTorch reference skipped (\(quick ? "--quick" : torchAvailable ? "its run failed" : "python3 with torch, torchvision and safetensors not found, or --no-torch"))"
            }
            r.say(text)
            results[c] = entry
        }
        r.add("batch", batch)
        r.add("size", size)
        r.add("cases", results)
        r.emitJSON()
    }

    /// One case in this process: prints its JSON.
    func runCase(_ c: String) throws {
        guard Self.known.contains(c) else { throw ValidationError("unknown case '\(c)'") }
        var g = RandomGenerator(seed: 0)
        let backbone: Module
        let channels: Int
        switch c {
        case "2d", "2d-acrn", "2d-acar", "2d-lfb":
            backbone = FrameAveragedBackbone(encoder: ResNet(config: ResNetConfig(depth: 18, lastStage: "layer4", strides: [1, 2, 2, 1]), generator: &g))
            channels = 512
        case "slowonly":
            let m = ResNet3d(config: ResNet3dConfig(depth: 18), generator: &g)
            backbone = m; channels = m.outChannels
        default:
            let m = SlowFastBackbone(config: SlowFastConfig(depth: 18), generator: &g)
            backbone = m; channels = m.outChannels
        }
        let head: Module
        var bankParams: [(String, Tensor)] = []
        let logits: (Tensor, [[AVABox]], Tensor) -> Tensor
        if c == "2d-lfb" {
            let bank = FBOHead(kind: .nonLocal, stChannels: channels, ltChannels: channels, latentChannels: Self.lfbLatent,
                               longTerm: Self.lfbLongTerm, generator: &g)
            let roi = AVARoIHead(inChannels: FBOHead.outChannels(kind: .nonLocal, stChannels: channels, ltChannels: channels, latentChannels: Self.lfbLatent),
                                 classes: Self.classes, generator: &g)
            // Each box's window of bank features (2 boxes per clip): fixed (the bank is read, not trained).
            let longTerm = Tensor.randn([batch * 2, channels, Self.lfbLongTerm, 1, 1], generator: &g)
            head = roi
            bankParams = bank.namedParameters().map { ("bank_head." + $0.0, $0.1) }
            bank.train()
            logits = { f, _, rois in roi.classify(bank(shortTerm: roi.pooled(f, rois: rois), longTerm: longTerm)) }
        } else if c == "2d-acar" {
            let acar = ACARHead(width: channels, outputs: Self.classes + 1, roiSpatial: 7, reduceDim: 1024, hiddenDim: 512, depth: 2, generator: &g)
            head = acar
            logits = { f, boxes, _ in acar(features: f.rank == 5 ? f.mean(axis: 2) : f, boxes: boxes) }
        } else {
            let roi = AVARoIHead(inChannels: channels, classes: Self.classes, acrn: c == "2d-acrn" ? (channels, 1, 1) : nil, generator: &g)
            head = roi
            logits = { f, _, rois in roi.logits(f, rois: rois) }
        }
        let x = Tensor.randn([batch, 3, Self.frames(c), size, size], generator: &g)
        let boxes = (0..<batch).map { _ in [AVABox(0.1, 0.2, 0.6, 0.9), AVABox(0.4, 0.1, 0.95, 0.8)] }
        let rois = AVARoIHead.rois(boxes, imageHeight: size, imageWidth: size)
        // Random multi-hot targets (5 % positives), every region with at least one positive.
        let actions = (0..<rois.shape[0]).map { _ in [1] + (2...Self.classes).filter { _ in g.nextDouble() < 0.05 } }
        let targets = AVAClassIndex(ids: Array(1...Self.classes)).targets(actions)
        let params = backbone.namedParameters().map { (name: "backbone." + $0.0, tensor: $0.1) }
            + head.namedParameters().map { (name: "head." + $0.0, tensor: $0.1) } + bankParams.map { (name: $0.0, tensor: $0.1) }
        let opt = SGD(parameters: params, learningRate: 0.01, momentum: 0.9)
        backbone.train(); head.train()
        var rows: [(forward: Double, backward: Double, optimizer: Double)] = []
        var lastLoss: Float = 0
        for i in 0...steps {
            opt.zeroGrad()
            let t0 = wallSeconds()
            guard let loss = try ConvolutionPolicy.withPolicy(.current.with { $0.backend = convBackend }, {
                try Autocast.run(precision) { AVARoIHead.loss(logits(backbone(x), boxes, rois), targets: targets) }
            }) else {
                throw ValidationError("no region with a positive label")
            }
            let t1 = wallSeconds()
            try ConvolutionPolicy.withPolicy(.current.with { $0.backend = convBackend }) { loss.backward() }
            let t2 = wallSeconds()
            opt.step()
            let t3 = wallSeconds()
            lastLoss = loss.item()
            if i > 0 { rows.append((t1 - t0, t2 - t1, t3 - t2)) }
            FileHandle.standardError.write(Data("\(c) iteration \(i)\(i == 0 ? " (warm-up)" : ""): \(fmt(t3 - t0, 2)) s, loss \(lastLoss)\n".utf8))
        }
        func med(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }
        let out: [String: Any] = [
            "case": c, "batch": batch, "frames": Self.frames(c), "size": size, "output_channels": channels,
            "precision": precision.rawValue, "conv_backend": convBackend.rawValue,
            "parameters": params.reduce(0) { $0 + $1.tensor.count }, "timed_steps": rows.count,
            "seconds_per_step": med(rows.map { $0.forward + $0.backward + $0.optimizer }),
            "forward": med(rows.map { $0.forward }), "backward": med(rows.map { $0.backward }), "optimizer": med(rows.map { $0.optimizer }),
            "loss": Double(lastLoss),
            "peak_rss_bytes": Double(ProcessMemory.peakResidentBytes),
            "peak_tensor_bytes": Double(StorageStats.peakBytes),
        ]
        let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
