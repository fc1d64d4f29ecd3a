import ArgumentParser
import CycleTimeCore
import CycleTimeModels
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks; every figure is measured in the same run as its reference.",
        subcommands: [BenchCore.self, BenchVideo.self, BenchLoader.self, BenchTrain.self, BenchPropagate.self, BenchAVA.self, BenchDetect.self, BenchTracker.self],
        defaultSubcommand: BenchCore.self)
}

/// One convolution of the ResNet-18 trunk (batch 8, 240x240, layer3 stride 1).
struct ConvConfig {
    let name: String, cin: Int, cout: Int, k: Int, stride: Int, pad: Int, inSize: Int, inputNeedsGrad: Bool
    var outSize: Int { (inSize + 2 * pad - k) / stride + 1 }
    func forwardFLOPs(batch: Int) -> Double {
        2 * Double(batch * cout * outSize * outSize) * Double(cin * k * k)
    }
}

let resnet18TrunkConvs: [(ConvConfig, count: Int)] = [
    (ConvConfig(name: "conv1 7x7/2 3->64 @240", cin: 3, cout: 64, k: 7, stride: 2, pad: 3, inSize: 240, inputNeedsGrad: false), 1),
    (ConvConfig(name: "layer1 3x3 64->64 @60", cin: 64, cout: 64, k: 3, stride: 1, pad: 1, inSize: 60, inputNeedsGrad: true), 4),
    (ConvConfig(name: "layer2.0.conv1 3x3/2 64->128 @60", cin: 64, cout: 128, k: 3, stride: 2, pad: 1, inSize: 60, inputNeedsGrad: true), 1),
    (ConvConfig(name: "layer2.0.downsample 1x1/2 64->128 @60", cin: 64, cout: 128, k: 1, stride: 2, pad: 0, inSize: 60, inputNeedsGrad: true), 1),
    (ConvConfig(name: "layer2 3x3 128->128 @30", cin: 128, cout: 128, k: 3, stride: 1, pad: 1, inSize: 30, inputNeedsGrad: true), 3),
    (ConvConfig(name: "layer3.0.conv1 3x3 128->256 @30", cin: 128, cout: 256, k: 3, stride: 1, pad: 1, inSize: 30, inputNeedsGrad: true), 1),
    (ConvConfig(name: "layer3.0.downsample 1x1 128->256 @30", cin: 128, cout: 256, k: 1, stride: 1, pad: 0, inSize: 30, inputNeedsGrad: true), 1),
    (ConvConfig(name: "layer3 3x3 256->256 @30", cin: 256, cout: 256, k: 3, stride: 1, pad: 1, inSize: 30, inputNeedsGrad: true), 3),
]

/// FLOPs of one forward+backward of the trunk's convolutions (backward = weight gradient, plus the
/// input gradient where the input needs one).
func trunkConvFLOPs(batch: Int) -> (forward: Double, total: Double) {
    var f = 0.0, t = 0.0
    for (c, n) in resnet18TrunkConvs {
        let x = c.forwardFLOPs(batch: batch) * Double(n)
        f += x
        t += x * (c.inputNeedsGrad ? 3 : 2)
    }
    return (f, t)
}

struct BenchCore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core",
        abstract: "sgemm ceiling, ResNet-18 trunk convolutions and training step, memory, core usage, PyTorch reference.")

    @Flag(help: "Print the figures as one JSON object.") var json = false
    @Option(help: "Batch size of the trunk benchmark.") var batch = 8
    @Option(help: "Training steps for the memory measurement.") var memorySteps = 50
    @Flag(help: "Skip the PyTorch reference even when python3 has torch.") var noTorch = false
    @Flag(inversion: .prefixedNo, help: "Convolutions split the batch over the cores (else one multi-threaded GEMM per layer).")
    var convBatchParallel = ConvolutionPolicy().batchParallel
    @Flag(inversion: .prefixedNo, help: "3x3 stride-1 convolutions use Winograd F(2x2, 3x3).")
    var winograd = ConvolutionPolicy().winograd
    @Option(help: "Tiles per block of the Winograd path.") var winogradTileBlock = ConvolutionPolicy().winogradTileBlock
    @Flag(help: "Keep im2col columns from forward for the weight gradient (more memory, less work).")
    var keepColumns = false
    @Flag(help: "Only the trunk step (no per-convolution table, probes or memory run).") var trunkOnly = false
    @Option(help: "Interleaved rounds of sgemm / trunk step / PyTorch step.") var rounds = 3
    @Option(help: "fp32, or bf16: the trunk step is also measured inside Autocast.bf16 (oneDNN), next to PyTorch's autocast bf16.")
    var precision: Precision = .fp32
    @Option(help: "Library of the float32 convolutions: auto (the library default: oneDNN for kernels larger than 1, native for pointwise), native (im2col, Winograd) or onednn.") var convBackend: ConvolutionBackend = .auto

    func validate() throws {
        try checkOption("--batch", batch, 1...256)
        try checkOption("--memory-steps", memorySteps, 1...100_000)
        try checkOption("--winograd-tile-block", winogradTileBlock, 1...65_536)
        try checkOption("--rounds", rounds, 1...1000)
    }

    func run() throws {
        ConvolutionPolicy.current = ConvolutionPolicy().with {
            $0.batchParallel = convBatchParallel
            $0.keepColumns = keepColumns
            $0.winograd = winograd
            $0.winogradTileBlock = winogradTileBlock
            $0.backend = convBackend
        }
        try Autocast.check(precision, setting: "--precision bf16")
        let r = BenchReport(json: json)
        r.say("CycleTime core benchmark: \(Parallel.threadCount) worker threads, \(BLAS.threads) OpenBLAS threads, OpenMP wait \(OpenMPWait.policy)")
        r.add("openmp_wait", OpenMPWait.policy)
        let (gemm, gt) = sgemmGFLOPs()
        r.add("sgemm_2048_gflops", gemm, line: "sgemm 2048x2048x2048: \(fmt(gemm, 1)) GFLOP/s (cpu/wall \(fmt(gt.cpuRatio)))")

        if trunkOnly { try benchTrunk(report: r, gemm: gemm); r.emitJSON(); return }
        // Per-convolution forward and backward.
        r.say("\nResNet-18 trunk convolutions, batch \(batch) (GFLOP/s, share of sgemm):")
        var convRows: [[String: Any]] = []
        var gen = RandomGenerator(seed: 1)
        // Each convolution on the native paths, on oneDNN float32, and (with --precision bf16) in
        // autocast bf16, back to back so that their ratios see the same machine load.
        var variants: [(String, ConvolutionBackend, Bool)] = [("native", .native, false), ("onednn", .oneDNN, false)]
        if precision == .bf16 { variants.append(("bf16", .oneDNN, true)) }
        r.say("  (variants: \(variants.map { $0.0 }.joined(separator: ", ")); GFLOP/s forward / backward)")
        for (c, n) in resnet18TrunkConvs {
            let x = Tensor.randn([batch, c.cin, c.inSize, c.inSize], generator: &gen)
            let w = Tensor.randn([c.cout, c.cin, c.k, c.k], std: 0.05, generator: &gen)
            let ff = c.forwardFLOPs(batch: batch), bf = ff * (c.inputNeedsGrad ? 2 : 1)
            var row: [String: Any] = ["name": c.name, "count": n]
            var line = "  \(c.name.padding(toLength: 38, withPad: " ", startingAt: 0)) x\(n) "
            for (name, backend, autocast) in variants {
                let (fwd, bwd) = try ConvolutionPolicy.withPolicy(ConvolutionPolicy.current.with { $0.backend = backend }) {
                    try Autocast.run(autocast ? .bf16 : .fp32) { convTimings(c, x, w) }
                }
                let fg = ff / fwd.wall / 1e9, bg = bf / bwd.wall / 1e9
                let prefix = name == "native" ? "" : name + "_"
                row[prefix + "forward_gflops"] = fg; row[prefix + "backward_gflops"] = bg
                row[prefix + "forward_seconds"] = fwd.wall; row[prefix + "backward_seconds"] = bwd.wall
                row[prefix + "forward_cpu_ratio"] = fwd.cpuRatio; row[prefix + "backward_cpu_ratio"] = bwd.cpuRatio
                line += " \(name) \(fmt(fg, 1)) / \(fmt(bg, 1))"
                if name == "native" { line += " (\(fmt(100 * fg / gemm, 0)) / \(fmt(100 * bg / gemm, 0)) % of sgemm)" }
            }
            convRows.append(row)
            r.say(line)
        }
        r.add("convolutions", convRows)

        // CPU use of the non-GEMM families (2.0 = both cores busy on a 2-core machine).
        r.say("\nCores busy (CPU seconds / wall seconds) on 8x64x120x120:")
        let big = Tensor.randn([batch, 64, 120, 120], generator: &gen)
        let other = Tensor.randn([batch, 64, 120, 120], generator: &gen)
        let rm = Tensor.zeros([64]), rv = Tensor.ones([64]), gw = Tensor.ones([64]), gb = Tensor.zeros([64])
        var usage: [String: Double] = [:]
        let probes: [(String, () -> Void)] = [
            ("maxpool", { _ = noGrad { F.maxPool2d(big, kernel: [3, 3], stride: [2, 2], padding: [1, 1]) } }),
            ("batchnorm", { _ = noGrad { F.batchNorm(big, runningMean: rm, runningVar: rv, weight: gw, bias: gb, training: true) } }),
            ("relu", { _ = noGrad { big.relu() } }),
            ("add", { _ = noGrad { big + other } }),
            ("im2col_conv", { _ = noGrad { F.conv2d(big, weight: Tensor.ones([64, 64, 3, 3]), padding: [1, 1]) } }),
        ]
        for (name, body) in probes {
            let t = medianTiming(warmup: 1, runs: 3, body)
            usage[name] = t.cpuRatio
            r.say("  \(name.padding(toLength: 12, withPad: " ", startingAt: 0)) \(fmt(t.cpuRatio)) cores, \(fmt(t.wall * 1000, 1)) ms")
        }
        r.add("cpu_ratio", usage)

        try benchTrunk(report: r, gemm: gemm)
        r.emitJSON()
    }

    /// Forward (no grad, median of 3) and backward (best of 2 after a warm-up) of one convolution
    /// under the policy and autocast in force.
    func convTimings(_ c: ConvConfig, _ x: Tensor, _ w: Tensor) -> (Timing, Timing) {
        let fwd = medianTiming(warmup: 1, runs: 3) {
            _ = noGrad { F.conv2d(x, weight: w, stride: [c.stride, c.stride], padding: [c.pad, c.pad]) }
        }
        x.requiresGrad = c.inputNeedsGrad
        w.requiresGrad = true
        defer { x.requiresGrad = false; w.requiresGrad = false }
        var bwd = Timing(wall: .infinity, cpu: 0)
        for i in 0..<3 {
            let y = F.conv2d(x, weight: w, stride: [c.stride, c.stride], padding: [c.pad, c.pad])
            let g = Tensor.ones(y.shape)
            let t = measure { y.backward(g) }
            if i > 0 && t.wall < bwd.wall { bwd = t }
            x.grad = nil; w.grad = nil
        }
        return (fwd, bwd)
    }

    /// The ResNet-18 trunk (conv1..layer3, layer3 stride 1) of the issue's benchmark.
    static func trunk(seed: UInt64 = 0) -> ResNet {
        var g = RandomGenerator(seed: seed)
        return ResNet(config: ResNetConfig(depth: 18, lastStage: "layer3", strides: [1, 2, 1, 2]), generator: &g)
    }

    func benchTrunk(report r: BenchReport, gemm: Double) throws {
        let model = BenchCore.trunk().train()
        var gen = RandomGenerator(seed: 2)
        let x = Tensor.randn([batch, 3, 240, 240], generator: &gen)
        let flops = trunkConvFLOPs(batch: batch)
        let fwd = medianTiming(warmup: 1, runs: 3) { _ = noGrad { model(x) } }
        model.zeroGrad(); model(x).sum().backward()  // warm-up step
        let bf16 = precision == .bf16
        func bf16Step() throws { try Autocast.bf16 { model.zeroGrad(); model(x).sum().backward() } }
        if bf16 { try bf16Step() }  // builds and caches the oneDNN primitives

        // The machine's speed drifts by tens of percent within a minute, so each round measures
        // sgemm, our step and PyTorch's step back to back; ratios are taken within a round and the
        // median round is reported.
        let torchAvailable = !noTorch && runProcess("/usr/bin/env", ["python3", "-c", "import torch"]) != nil
        struct Round { var gemm: Double; var step: Timing; var bf16: Timing?; var torch: TorchFigures? }
        var rounds: [Round] = []
        r.say("\nResNet-18 trunk (conv1..layer3, layer3 stride 1), batch \(batch)x3x240x240, training mode, \(self.rounds) interleaved rounds, float32 convolutions on \(ConvolutionPolicy.current.backend.rawValue)\(bf16 ? ", and in autocast bf16 (oneDNN)" : ""):")
        for i in 0..<self.rounds {
            // PyTorch first (it warms up inside its own process), then ours after a warm-up step.
            let torch = torchAvailable ? runTorchReference() : nil
            let g = sgemmGFLOPs().gflops
            let step = medianTiming(warmup: 1, runs: 2) { model.zeroGrad(); model(x).sum().backward() }
            let stepBF16 = bf16 ? try medianTiming(warmup: 1, runs: 2, bf16Step) : nil
            rounds.append(Round(gemm: g, step: step, bf16: stepBF16, torch: torch))
            var line = "  round \(i + 1): sgemm \(fmt(g, 1)) GFLOP/s, step \(fmt(step.wall, 3)) s = \(fmt(100 * flops.total / step.wall / 1e9 / g, 1)) % of sgemm"
            if let b = stepBF16 { line += ", bf16 step \(fmt(b.wall, 3)) s" }
            if let t = torch { line += ", PyTorch default \(fmt(t.defaultSeconds, 3)) s, channels-last \(fmt(t.channelsLastSeconds, 3)) s" }
            if let a = torch?.autocastChannelsLastSeconds { line += ", autocast bf16 channels-last \(fmt(a, 3)) s" }
            r.say(line)
        }
        func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }
        let stepSeconds = median(rounds.map { $0.step.wall })
        let fraction = median(rounds.map { flops.total / $0.step.wall / 1e9 / $0.gemm })
        let cpuRatio = median(rounds.map { $0.step.cpuRatio })
        r.add("trunk_forward_seconds", fwd.wall, line: "  forward (no grad)     \(fmt(fwd.wall, 3)) s  \(fmt(flops.forward / fwd.wall / 1e9, 1)) GFLOP/s")
        r.add("trunk_step_seconds", stepSeconds, line: "  forward+backward      \(fmt(stepSeconds, 3)) s median  (cpu/wall \(fmt(cpuRatio)))")
        r.add("trunk_step_gflops", flops.total / stepSeconds / 1e9)
        r.add("trunk_step_fraction_of_sgemm", fraction,
              line: "  convolution GFLOP/s   \(fmt(flops.total / stepSeconds / 1e9, 1)); median of the rounds' ratios: \(fmt(100 * fraction, 1)) % of sgemm (target >= 75 %); \(fmt(flops.total / 1e9, 1)) GFLOP per step")
        r.add("trunk_rounds", rounds.map { ["sgemm_gflops": $0.gemm, "step_seconds": $0.step.wall,
                                            "torch_default_seconds": $0.torch?.defaultSeconds as Any,
                                            "torch_channels_last_seconds": $0.torch?.channelsLastSeconds as Any,
                                            "bf16_step_seconds": $0.bf16?.wall as Any,
                                            "torch_autocast_channels_last_seconds": $0.torch?.autocastChannelsLastSeconds as Any] })
        let bf16Rounds = rounds.compactMap { $0.bf16?.wall }
        if !bf16Rounds.isEmpty {
            let b = median(bf16Rounds)
            r.add("trunk_step_bf16_seconds", b, line: "  forward+backward bf16 \(fmt(b, 3)) s median (autocast: convolutions on oneDNN bf16)")
        }

        let withTorch = rounds.compactMap { rd in rd.torch.map { (rd.step.wall, $0) } }
        if let version = withTorch.first?.1.version {
            let sd = median(withTorch.map { $0.1.defaultSeconds / $0.0 })
            let sc = median(withTorch.map { $0.1.channelsLastSeconds / $0.0 })
            r.say("  PyTorch \(version), same step, same rounds (median of per-round ratios):")
            r.add("speedup_vs_torch_default", sd, line: "    vs default layout:  CycleTime is \(fmt(sd, 2))x as fast")
            r.add("speedup_vs_torch_channels_last", sc, line: "    vs channels-last:   CycleTime is \(fmt(sc, 2))x as fast")
            let auto = rounds.compactMap { rd in rd.bf16.flatMap { b in rd.torch?.autocastChannelsLastSeconds.map { (b.wall, $0) } } }
            if !auto.isEmpty {
                let ratio = median(auto.map { $0.0 / $0.1 })
                r.add("bf16_time_over_torch_autocast_channels_last", ratio,
                      line: "    bf16 vs PyTorch autocast bf16 channels-last: CycleTime takes \(fmt(ratio, 2))x its time (target <= 0.8)")
            }
            r.add("torch_version", version)
        } else {
            r.say("  PyTorch reference skipped (python3 with torch not found, or --no-torch)")
        }

        // Memory over training steps (forward, backward, SGD update): flat after the first step.
        if memorySteps > 0 && !trunkOnly {
            let opt = SGD(parameters: model.namedParameters().map { (name: $0.0, tensor: $0.1) }, learningRate: 0.01, momentum: 0.9)
            var rss: [Int] = [], live: [Int] = []
            r.say("\nResident memory over \(memorySteps) training steps (SGD, batch \(batch)):")
            for i in 0..<memorySteps {
                opt.zeroGrad()
                model(x).mean().backward()
                opt.step()
                rss.append(ProcessMemory.residentBytes)
                live.append(StorageStats.liveBytes)
                if i == 0 || (i + 1) % 10 == 0 { r.say("  step \(i + 1): \(mib(rss.last ?? 0)) resident, \(mib(live.last ?? 0)) in live tensors") }
            }
            let afterFirst = rss[0], last = rss.last ?? afterFirst, maxAfter = rss[1...].max() ?? afterFirst
            r.add("rss_after_step1_bytes", afterFirst)
            r.add("rss_last_step_bytes", last)
            r.add("rss_max_after_step1_bytes", maxAfter, line: "  after step 1 \(mib(afterFirst)), max after \(mib(maxAfter)), last \(mib(last)): growth \(mib(last - afterFirst)) (\(fmt(100 * Double(last - afterFirst) / Double(afterFirst), 1)) %)")
            r.add("rss_per_step_bytes", rss)
            r.add("live_tensor_bytes_per_step", live, line: "  live tensor storage between steps: min \(mib(live.min() ?? 0)), max \(mib(live.max() ?? 0)) (the graph is freed after each backward)")
        }
        r.add("peak_rss_bytes", ProcessMemory.peakResidentBytes, line: "\nPeak resident memory: \(mib(ProcessMemory.peakResidentBytes))")
    }

    struct TorchFigures {
        let version: String; let defaultSeconds: Double; let channelsLastSeconds: Double
        /// torch.autocast("cpu", torch.bfloat16), channels-last (with --precision bf16).
        let autocastChannelsLastSeconds: Double?
    }

    /// Runs scripts/bench/torch_trunk.py when python3 has torch.
    func runTorchReference() -> TorchFigures? {
        let script = repoPath("scripts/bench/torch_trunk.py")
        guard FileManager.default.fileExists(atPath: script) else { return nil }
        guard let obj = runJSONProcess("/usr/bin/env", ["python3", script, "\(Parallel.threadCount)", "\(batch)", "240", precision.rawValue]),
              let d = obj["default_seconds"] as? Double, let c = obj["channels_last_seconds"] as? Double
        else { return nil }
        return TorchFigures(version: obj["torch_version"] as? String ?? "?", defaultSeconds: d, channelsLastSeconds: c,
                            autocastChannelsLastSeconds: obj["autocast_channels_last_seconds"] as? Double)
    }
}
