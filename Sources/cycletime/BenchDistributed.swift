import ArgumentParser
import CycleTimeCore
import CycleTimeDistributed
import CycleTimeNN
import CycleTimeTracking
import CycleTimeTraining
import CycleTimePretraining
import Foundation

/// `cycletime bench train --ranks N`: data-parallel TimeCycle resnet18 training steps on this
/// machine under `mpirun` (1 rank with all cores, then N ranks sharing them), the gradient
/// all-reduce time per step and its share, the scaling efficiency, and the all-reduce bandwidth
/// measured for the gradients of the resnet18 and resnet50 TimeCycle models, from which the
/// closing note projects the all-reduce time and efficiency on N machines.
extension BenchTrain {
    /// mpirun's arguments for `n` ranks on this machine: oversubscription allowed, no core binding
    /// (the ranks split the cores themselves), root allowed when root.
    static func mpirunArguments(ranks n: Int) -> [String] {
        ["--oversubscribe", "--bind-to", "none", "-np", "\(n)"] + (getuid() == 0 ? ["--allow-run-as-root"] : [])
    }

    func runDistributed(ranks n: Int) throws {
        let r = BenchReport(json: json)
        guard let mpirun = findExecutable("mpirun") else {
            throw ValidationError("mpirun was not found on PATH (Debian: openmpi-bin; scripts/install-deps.sh installs it)")
        }
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        r.say("Data-parallel TimeCycle resnet18 training (synthetic batches of \(batch) per rank, \(steps) timed steps after 1 warm-up) under mpirun on \(ProcessInfo.processInfo.activeProcessorCount) cores")
        var runs: [Int: [String: Any]] = [:]
        for k in [1, n] {
            let args = Self.mpirunArguments(ranks: k) + [me, "bench", "train", "--child", "mpi", "--config", config,
                                                         "--steps", "\(steps)", "--batch", "\(batch)", "--cache-mib", "\(cacheMib)"]
            guard let j = runJSONProcess(mpirun, args) else {
                throw ValidationError("the \(k)-rank run failed (run `mpirun \(args.joined(separator: " "))` to see why)")
            }
            runs[k] = j
        }
        guard let one = runs[1], let many = runs[n] else { throw ValidationError("the 1-rank or \(n)-rank run gave no figures") }
        func d(_ j: [String: Any], _ k: String) -> Double { j[k] as? Double ?? .nan }
        let t1 = d(one, "seconds_per_step"), tn = d(many, "seconds_per_step"), ar = d(many, "allreduce_seconds")
        let clips1 = Double(batch) / t1, clipsN = Double(batch * n) / tn
        let efficiency = clipsN / clips1
        let perRank = (tn - ar) / tn
        r.say("1 rank (\(one["threads"] ?? "?") threads): \(fmt(t1, 2)) s/step, \(fmt(clips1, 2)) clips/s")
        r.say("\(n) ranks (\(many["threads"] ?? "?") threads each): \(fmt(tn, 2)) s/step, \(fmt(clipsN, 2)) clips/s; gradient all-reduce \(fmt(ar * 1000, 1)) ms/step = \(fmt(100 * ar / tn, 1)) % of the step (\(mib(Int(d(many, "gradient_bytes")))) in \(many["buckets"] ?? "?") buckets)")
        r.say("scaling efficiency on this machine: \(fmt(efficiency, 2)) (throughput of \(n) ranks / 1 rank, same cores); communication efficiency \(fmt(perRank, 3)) (step time without / with the all-reduce)")
        r.add("one_rank", one)
        r.add("ranks", many)
        r.add("scaling_efficiency", efficiency)
        r.add("communication_efficiency", perRank)
        var models: [String: Any] = [:]
        let compute = tn - ar  // one rank's step without communication
        for (name, bytes, secs) in [("resnet18", d(many, "r18_bytes"), d(many, "r18_allreduce_seconds")),
                                    ("resnet50", d(many, "r50_bytes"), d(many, "r50_allreduce_seconds"))] {
            // Bus bandwidth of a ring all-reduce: each rank sends and receives 2 (n-1)/n of the data.
            let bus = 2 * Double(n - 1) / Double(n) * bytes / secs
            r.say("all-reduce of the TimeCycle \(name) gradient (\(mib(Int(bytes)))): \(fmt(secs * 1000, 1)) ms over \(n) ranks = \(fmt(bus / 1e9, 2)) GB/s bus bandwidth (loopback)")
            models[name] = ["gradient_bytes": bytes, "allreduce_seconds": secs, "bus_bandwidth_bytes_per_s": bus]
        }
        r.add("allreduce", models)
        // Projection: a ring all-reduce over N machines moves 2 (N-1)/N x S per machine.
        let links: [(String, Double)] = [("measured loopback", 2 * Double(n - 1) / Double(n) * d(many, "r18_bytes") / d(many, "r18_allreduce_seconds")),
                                          ("10 Gb/s Ethernet", 1.25e9)]
        var note = "Projection (ring all-reduce after the backward pass, no overlap; one rank per machine with this machine's step compute of \(fmt(compute, 2)) s for resnet18 b\(batch)): t_allreduce(N) = 2 (N-1)/N x gradient bytes / link bandwidth, efficiency = compute / (compute + t_allreduce)."
        var proj: [[String: Any]] = []
        for (linkName, bw) in links {
            for (name, bytes) in [("resnet18", d(many, "r18_bytes")), ("resnet50", d(many, "r50_bytes"))] {
                var parts: [String] = []
                for machines in [2, 4, 8, 16] {
                    let t = 2 * Double(machines - 1) / Double(machines) * bytes / bw
                    parts.append("N=\(machines): \(fmt(t * 1000, 0)) ms, \(fmt(compute / (compute + t), 3))")
                    proj.append(["link": linkName, "model": name, "machines": machines, "allreduce_seconds": t, "efficiency": compute / (compute + t)])
                }
                note += "\n    \(name) over \(linkName) (\(fmt(bw / 1e9, 2)) GB/s): " + parts.joined(separator: "; ")
            }
        }
        note += "\n    (resnet50's compute per step is larger than resnet18's, so its real efficiency is higher than this bound.)"
        r.say(note)
        r.add("projection", proj)
        r.emitJSON()
    }

    /// One rank of the distributed benchmark (under mpirun): rank 0 prints the JSON.
    func runDistributedChild() throws {
        guard let mpi = try MPIContext.shared() else { throw ValidationError("--child mpi runs under mpirun") }
        mpi.shareCores()
        StorageCache.limitBytes = cacheMib << 20
        let cfg = try ConfigLoader.load(TrainConfig.self, path: repoPath(config))
        var g = RandomGenerator(seed: UInt64(1 + mpi.rank))
        let task = TimeCycleTask(config: cfg, videos: [])
        let params = task.model.namedParameters().map { (name: $0.0, tensor: $0.1) }
        let optimizer = makeOptimizer(cfg.optimizer, parameters: params)
        let averager = GradientAverager(mpi, parameters: params.map(\.tensor), bucketBytes: Int(cfg.distributed.bucketMb * 1_048_576))
        let b = timeCycleBenchBatch(cfg, batch: batch, generator: &g)
        task.model.train()
        var stepSeconds: [Double] = [], reduceSeconds: [Double] = []
        for i in 0...max(1, steps) {
            try mpi.barrier()
            var sg = RandomGenerator(seed: UInt64(i))
            let s = try trainingStep(task, batch: b, optimizer: optimizer, gradClip: cfg.train.gradClip, generator: &sg,
                                 reduceGradients: mpi.size > 1 ? { averager.average() } : nil)
            // The slowest rank's step is the job's step; the all-reduce time is the slowest rank's
            // (the least, as it arrives last: the others' include waiting for it).
            let v = try mpi.allReduce([s.timings.total, -s.timings.allReduce], max: true)
            if i > 0 { stepSeconds.append(v[0]); reduceSeconds.append(-v[1]) }
        }
        func med(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
        // All-reduce of the whole gradient of the resnet18 and resnet50 TimeCycle models, as buckets.
        var r50 = cfg
        r50.timecycle = TimeCycleConfig.resnet50()
        r50.timecycle.patchSize = cfg.timecycle.patchSize
        var sizes: [String: Any] = [:]
        for (key, c) in [("r18", cfg), ("r50", r50)] {
            let model = TimeCycleTask(config: c, videos: []).model
            let ps = model.parameters()
            for p in ps { p.grad = Tensor.ones(p.shape) }
            let avg = GradientAverager(mpi, parameters: ps, bucketBytes: Int(cfg.distributed.bucketMb * 1_048_576))
            var secs: [Double] = []
            for i in 0..<4 {
                try mpi.barrier()
                let t = avg.average()
                if i > 0 { secs.append(try mpi.allReduce([t], max: true)[0]) }
            }
            sizes[key + "_bytes"] = Double(avg.bytes)
            sizes[key + "_allreduce_seconds"] = med(secs)
        }
        if mpi.rank == 0 {
            var out: [String: Any] = [
                "ranks": mpi.size, "threads": Parallel.threadCount, "batch_per_rank": batch, "timed_steps": stepSeconds.count,
                "seconds_per_step": med(stepSeconds), "allreduce_seconds": med(reduceSeconds),
                "gradient_bytes": Double(averager.bytes), "buckets": averager.buckets.count,
            ]
            for (k, v) in sizes { out[k] = v }
            let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
        mpi.finalize()
    }
}

/// A synthetic TimeCycle batch at the config's sizes: random clip, image and patch, a fixed theta.
func timeCycleBenchBatch(_ cfg: TrainConfig, batch: Int, generator g: inout RandomGenerator) -> TimeCycleBatch {
    func randn(_ shape: [Int]) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.data[i] = Float(g.normal()) }
        return t
    }
    let s = cfg.timecycle.frameSize, p = cfg.timecycle.patchSize
    let theta = Tensor(uninitialized: [batch, 2, 3])
    for i in 0..<batch { for (k, v) in [Float(1.0 / 3), 0, 0.2, 0, Float(1.0 / 3), -0.1].enumerated() { theta.data[i * 6 + k] = v } }
    return TimeCycleBatch(clip: randn([batch, cfg.data.clipOffsets.count, 3, s, s]), image: randn([batch, 3, s, s]),
                          patch: randn([batch, 3, p, p]), theta: theta)
}

/// The first executable named `name` on PATH.
func findExecutable(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let p = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}
