import ArgumentParser
import CycleTimeCore
import CycleTimeNN
import CycleTimeTracking
import CycleTimeTraining
import CycleTimePretraining
import Foundation

/// `cycletime bench train`: seconds per training step (forward, backward, gradient clipping,
/// optimizer) and peak memory of the pretraining objectives at their benchmark sizes, each case in
/// its own process (so peak memory is the case's own), next to the PyTorch implementation of the
/// same model from the fixture scripts, run in the same benchmark at the same precision (float32, or
/// inside `torch.autocast("cpu", torch.bfloat16)` with `--precision bf16`), in its default and
/// channels-last layouts; ratios against each and against the faster.
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training step time and peak memory: TimeCycle resnet18 b4 / resnet50 b2, CRW resnet18 b4, vs PyTorch.")

    @Option(help: "The run config whose model and optimizer settings are benchmarked.")
    var config = "experiments/timecycle-r18-smoke.yaml"
    @Option(parsing: .upToNextOption, help: "Cases: timecycle-r18 (batch 4), timecycle-r50 (batch 2), crw-r18 (batch 4, clip 4, 49 patches).")
    var cases: [String] = ["timecycle-r18", "timecycle-r50", "crw-r18"]
    @Option(help: "Timed steps per TimeCycle case (after one warm-up step).") var steps = 3
    @Option(help: "Timed steps of the CRW case (after one warm-up step).") var crwSteps = 1
    @Flag(help: "Print the figures as one JSON object.") var json = false
    @Flag(help: "Skip the PyTorch reference even when python3 has torch.") var noTorch = false
    @Option(help: .hidden) var child: String?
    @Option(help: "Data-parallel benchmark under mpirun with this many ranks (BenchDistributed.swift): all-reduce time and share, scaling efficiency, bandwidth.")
    var ranks: Int?
    @Option(help: "Batch per rank of the --ranks benchmark.") var batch = 2
    @Option(help: "Upper bound of the storage cache (freed buffers kept for reuse), MiB.") var cacheMib = StorageCache.limitBytes >> 20
    @Option(help: "fp32, or bf16: CycleTime's steps run in Autocast.bf16 (train.precision bf16), PyTorch's inside torch.autocast(\"cpu\", torch.bfloat16).")
    var precision: Precision = .fp32

    static let known = ["timecycle-r18", "timecycle-r50", "crw-r18"]

    func validate() throws {
        if let c = child, c != "mpi", !Self.known.contains(c) { throw ValidationError("--child: unknown case '\(c)'") }
        try checkOption("--ranks", ranks, 2...64)
        try checkOption("--batch", batch, 1...256)
        try checkOption("--steps", steps, 1...100_000)
        try checkOption("--crw-steps", crwSteps, 1...100_000)
        try checkOption("--cache-mib", cacheMib, 1...1_048_576)
        for c in cases where !Self.known.contains(c) {
            throw ValidationError("unknown case '\(c)' (known: \(Self.known.joined(separator: ", ")))")
        }
    }

    func run() throws {
        try Autocast.check(precision, setting: "--precision bf16")
        if child == "mpi" { return try runDistributedChild() }
        if let c = child { return try runCase(c) }
        if let n = ranks { return try runDistributed(ranks: n) }
        let r = BenchReport(json: json)
        let torchAvailable = !noTorch && runProcess("/usr/bin/env", ["python3", "-c", "import torch, torchvision, safetensors"]) != nil
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        r.say("Training steps (forward, backward, gradient clipping, optimizer), each case in its own process; threads: \(Parallel.threadCount); CycleTime precision \(precision.rawValue); OpenMP wait \(OpenMPWait.policy)")
        var results: [String: Any] = [:]
        for c in cases {
            let n = c.hasPrefix("crw") ? crwSteps : steps
            // PyTorch first, then ours, back to back (the machine's speed drifts).
            var torch: [TorchRun] = []
            if torchAvailable {
                for layout in ["default", "channels_last"] {
                    if let t = TorchRun(torchCase(c, channelsLast: layout == "channels_last", steps: n), layout: layout) { torch.append(t) }
                }
            }
            guard let out = runProcess(me, ["bench", "train", "--child", c, "--config", config, "--steps", "\(n)", "--cache-mib", "\(cacheMib)", "--precision", precision.rawValue]),
                  let ours = (try? JSONSerialization.jsonObject(with: Data(out.utf8))) as? [String: Any],
                  let sec = ours["seconds_per_step"] as? Double, let peak = ours["peak_rss_bytes"] as? Double else {
                throw ValidationError("the \(c) case failed (run `cycletime bench train --child \(c) --config \(config)` to see why)")
            }
            var line = "\(c) (batch \(ours["batch"] ?? "?")): \(fmt(sec, 2)) s/step (forward \(fmt(ours["forward"] as? Double ?? 0, 2)), backward \(fmt(ours["backward"] as? Double ?? 0, 2)), clip \(fmt(ours["clip"] as? Double ?? 0, 3)), optimizer \(fmt(ours["optimizer"] as? Double ?? 0, 3))), peak \(mib(Int(peak)))"
            var entry: [String: Any] = ours
            line += compareWithTorch(seconds: sec, peak: peak, torch, unit: "step", into: &entry)
            if torch.isEmpty { line += "\n    PyTorch reference skipped (python3 with torch, torchvision and safetensors not found, or --no-torch)" }
            r.say(line)
            results[c] = entry
        }
        r.add("cases", results)
        r.emitJSON()
    }

    /// Runs the PyTorch reference script of a case at `precision` (bf16: under autocast); its JSON, or nil when it fails.
    func torchCase(_ c: String, channelsLast: Bool, steps: Int) -> [String: Any]? {
        var args: [String]
        switch c {
        case "timecycle-r18": args = [repoPath("scripts/bench/torch_timecycle.py"), "--depth", "18", "--batch", "4"]
        case "timecycle-r50": args = [repoPath("scripts/bench/torch_timecycle.py"), "--depth", "50", "--batch", "2"]
        default: args = [repoPath("scripts/bench/torch_crw.py"), "--batch", "4", "--clip", "4", "--patches", "49", "--padding", "reflect"]
        }
        args += ["--threads", "\(Parallel.threadCount)", "--steps", "\(steps)", "--precision", precision.rawValue] + (channelsLast ? ["--channels-last"] : [])
        return runJSONProcess("/usr/bin/env", ["python3"] + args)
    }

    /// One case in this process: prints its JSON.
    func runCase(_ c: String) throws {
        StorageCache.limitBytes = cacheMib << 20
        var cfg = try ConfigLoader.load(TrainConfig.self, path: repoPath(config))
        var g = RandomGenerator(seed: 0)
        func randn(_ shape: [Int]) -> Tensor {
            let t = Tensor(uninitialized: shape)
            for i in 0..<t.count { t.data[i] = Float(g.normal()) }
            return t
        }
        let timings: [StepTimings]
        let batch: Int
        var params = 0
        switch c {
        case "timecycle-r18", "timecycle-r50":
            if c == "timecycle-r50" {
                let keepPatch = cfg.timecycle.patchSize
                cfg.timecycle = TimeCycleConfig.resnet50()
                cfg.timecycle.patchSize = keepPatch
            }
            batch = c == "timecycle-r50" ? 2 : 4
            let task = TimeCycleTask(config: cfg, videos: [])
            params = task.model.parameterCount
            let b = timeCycleBenchBatch(cfg, batch: batch, generator: &g)
            timings = try measureSteps(task, batch: b, optimizer: makeOptimizer(cfg.optimizer, parameters: task.model.namedParameters().map { (name: $0.0, tensor: $0.1) }),
                                   gradClip: cfg.train.gradClip)
        default:
            batch = 4
            var oc = OptimizerConfig()
            oc.lr = 1e-4
            oc.betas = [0.9, 0.999]
            let task = CRWTask(config: cfg, videos: [])
            params = task.model.parameterCount
            let x = randn([batch, cfg.crw.clipLength, cfg.crw.nodesPerFrame, 3, cfg.crw.patchSize, cfg.crw.patchSize])
            timings = try measureSteps(task, batch: x, optimizer: makeOptimizer(oc, parameters: task.model.namedParameters().map { (name: $0.0, tensor: $0.1) }),
                                   gradClip: 0)
        }
        func med(_ f: (StepTimings) -> Double) -> Double { let v = timings.map(f).sorted(); return v[v.count / 2] }
        let out: [String: Any] = [
            "case": c, "precision": precision.rawValue, "batch": batch, "parameters": params, "timed_steps": timings.count,
            "seconds_per_step": med { $0.total }, "forward": med { $0.forward }, "backward": med { $0.backward },
            "clip": med { $0.clip }, "optimizer": med { $0.optimizer },
            "peak_rss_bytes": Double(ProcessMemory.peakResidentBytes),
            "peak_tensor_bytes": Double(StorageStats.peakBytes),
            "openmp_wait": OpenMPWait.policy,
        ]
        let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }

    /// One warm-up step, then `steps` timed ones.
    func measureSteps<T: TrainingTask>(_ task: T, batch: T.Source.Sample, optimizer: Optimizer, gradClip: Double) throws -> [StepTimings] {
        task.model.train()
        var out: [StepTimings] = []
        for i in 0...max(1, steps) {
            var g = RandomGenerator(seed: UInt64(i))
            let r = try trainingStep(task, batch: batch, optimizer: optimizer, gradClip: gradClip, precision: precision, generator: &g)
            if i > 0 { out.append(r.timings) }
        }
        return out
    }
}
