import CycleTimeCore
import CycleTimeTraining
import Foundation
import TestSupport
import XCTest

/// `mpirun -np N cycletime train`: the real executable under Open MPI on loopback.
final class DistributedTrainingTests: XCTestCase {
    func mpirun() throws -> String {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/mpirun"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        XCTFail("mpirun was not found on PATH: scripts/install-deps.sh installs Open MPI (openmpi-bin)")
        throw XCTSkip("no mpirun")
    }

    func mpiArgs(_ n: Int) -> [String] {
        ["--oversubscribe", "--bind-to", "none", "-np", "\(n)"] + (getuid() == 0 ? ["--allow-run-as-root"] : [])
    }

    /// The tiny config with `batch` per rank, written as `name`.yaml with output dir/name; `temperature`
    /// sets timecycle.temperature.
    func config(_ dir: String, _ name: String, batch: Int, steps: Int, extra: String, temperature: Double? = nil) throws -> String {
        let videos = try requireSharedData("videos")
        let p = dir + "/\(name).yaml"
        try tinyConfigYAML(output: dir + "/" + name, videos: videos, steps: steps, extra: extra)
            .replacingOccurrences(of: "batch_size: 2", with: "batch_size: \(batch)")
            .replacingOccurrences(of: "  feature_dim: 32\n", with: "  feature_dim: 32\n" + (temperature.map { "  temperature: \($0)\n" } ?? ""))
            .write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    func metricLines(_ run: String) -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// ||a - b|| / ||a|| over the model's parameters (or its running statistics) in two checkpoints.
    func relativeDifference(_ a: [String: Tensor], _ b: [String: Tensor], buffers: Bool) -> Double {
        var num = 0.0, den = 0.0
        for (k, x) in a where !k.hasPrefix("optimizer.") && !k.hasSuffix("num_batches_tracked") && k.contains("running_") == buffers {
            guard let y = b[k], y.count == x.count else { return .infinity }
            for i in 0..<x.count {
                let d = Double(x.data[i]) - Double(y.data[i])
                num += d * d
                den += Double(x.data[i]) * Double(x.data[i])
            }
        }
        return (num / max(den, 1e-300)).squareRoot()
    }

    /// 2 ranks with batch 1 each, synchronized batch norm, give the weights of one
    /// process with batch 2 after 20 steps. Float32 sums in another order (the batch split over
    /// ranks, the batch-norm statistics summed over ranks) change the last bits, and this tiny
    /// TimeCycle run amplifies such differences: the same 20 steps in one process with the
    /// synchronized batch-norm formulation (mpirun -np 1) differ from the plain run by as much.
    /// So the check is 1e-4 relative over all parameters, and no more than that noise floor.
    func testTwoRanksGiveTheWeightsOfOneRankWithTheDoubleBatch() throws {
        let exe = try cycletimeExecutable(), mpirun = try mpirun()
        let dir = temporaryDirectory("ddp")
        let extra = """
            optimizer:
              name: sgd
              lr: 0.005
            distributed:
              sync_batchnorm: true
              timeout_seconds: 120
            """
        // The softmax temperature D^-0.5 (D = 32) this comparison was calibrated with: the default
        // 512^-0.5 sharpens the affinities 4x and amplifies the float noise about fortyfold (the
        // one-process floor below grows from ~2e-5 to ~1e-3).
        let t = 1 / 32.0.squareRoot()
        let two = try config(dir, "two", batch: 1, steps: 20, extra: extra, temperature: t)
        let one = try config(dir, "one", batch: 2, steps: 20, extra: extra, temperature: t)
        let floor = try config(dir, "floor", batch: 2, steps: 20, extra: extra, temperature: t)
        let r2 = try runProcess(mpirun, mpiArgs(2) + [exe, "train", "--config", two])
        XCTAssertEqual(r2.status, 0, r2.stderr)
        let r1 = try runProcess(exe, ["train", "--config", one])
        XCTAssertEqual(r1.status, 0, r1.stderr)
        let rf = try runProcess(mpirun, mpiArgs(1) + [exe, "train", "--config", floor])
        XCTAssertEqual(rf.status, 0, rf.stderr)

        // Only rank 0 wrote metrics (20 lines, not 40) and progress; the loss is the global batch's.
        let m2 = metricLines(dir + "/two"), m1 = metricLines(dir + "/one")
        XCTAssertEqual(m2.count, 20)
        XCTAssertEqual(m1.count, 20)
        XCTAssertEqual(m2.first?["ranks"] as? Int, 2)
        XCTAssertNotNil(m2.first?["allreduce_s"])
        XCTAssertEqual(r2.stderr.components(separatedBy: "training for 20 steps").count - 1, 1, r2.stderr)
        // Only rank 0 wrote TensorBoard events: one file, each step once.
        let events = EventFileWriter.files(in: dir + "/two")
        XCTAssertEqual(events.count, 1, "\(events)")
        XCTAssertEqual(try events.flatMap { try EventFileWriter.read($0) }.filter { !$0.values.isEmpty }.map(\.step), Array(1...20))
        for i in 0..<3 {
            let a = m1[i]["loss"] as! Double, b = m2[i]["loss"] as! Double
            XCTAssertEqual(b, a, accuracy: 1e-5 * abs(a), "step \(i + 1)")
        }
        let w1 = try SafeTensors.load(dir + "/one/checkpoints/latest.safetensors")
        let w2 = try SafeTensors.load(dir + "/two/checkpoints/latest.safetensors")
        let wf = try SafeTensors.load(dir + "/floor/checkpoints/latest.safetensors")
        XCTAssertEqual(Set(w1.keys), Set(w2.keys))
        let params = relativeDifference(w1, w2, buffers: false), paramsFloor = relativeDifference(w1, wf, buffers: false)
        let stats = relativeDifference(w1, w2, buffers: true), statsFloor = relativeDifference(w1, wf, buffers: true)
        print("2 ranks vs 1 rank after 20 steps: parameters \(params) relative (one-process noise floor \(paramsFloor)), running statistics \(stats) (floor \(statsFloor))")
        XCTAssertLessThanOrEqual(params, 1e-4)
        XCTAssertLessThanOrEqual(params, 3 * paramsFloor + 1e-7)
        XCTAssertLessThanOrEqual(stats, 3 * statsFloor + 1e-7)
        XCTAssertEqual(w2["encoder.bn1.num_batches_tracked"]?.data[0], w1["encoder.bn1.num_batches_tracked"]?.data[0])
    }

    /// The pid of rank `rank` of the job whose command line names `marker`.
    func rankPid(_ rank: Int, marker: String) -> pid_t? {
        let fm = FileManager.default
        for entry in (try? fm.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let cmd = fm.contents(atPath: "/proc/\(entry)/cmdline"),
                  String(decoding: cmd, as: UTF8.self).contains(marker), !String(decoding: cmd, as: UTF8.self).hasPrefix("mpirun"),
                  let env = fm.contents(atPath: "/proc/\(entry)/environ") else { continue }
            if env.split(separator: 0).contains(where: { String(decoding: $0, as: UTF8.self) == "OMPI_COMM_WORLD_RANK=\(rank)" }) { return pid }
        }
        return nil
    }

    /// Runs the job until rank 0 has written `lines` metric lines, then sends `signal` to rank 1.
    /// Returns the result and the seconds from the signal to the end of mpirun.
    func runAndSignalRank1(_ args: [String], run: String, marker: String, lines: Int, signal sig: Int32) throws -> (ProcessResult, Double) {
        var signalled = Date()
        nonisolated(unsafe) var sent = false
        let r = try runProcess(try mpirun(), args) { p in
            let deadline = Date().addingTimeInterval(240)
            while Date() < deadline && p.isRunning && self.metricLines(run).count < lines { usleep(100_000) }
            if let pid = self.rankPid(1, marker: marker) {
                kill(pid, sig)
                signalled = Date()
                sent = true
            }
        }
        XCTAssertTrue(sent, "rank 1 was not found")
        return (r, Date().timeIntervalSince(signalled))
    }

    /// A rank killed mid-run ends the job within the timeout with a message, the last
    /// checkpoint stays valid and --resume continues (here on another number of ranks). A rank
    /// that hangs (stopped) makes the survivor abort the job after distributed.timeout_seconds with
    /// its own message.
    func testADeadRankEndsTheJobWithinTheTimeoutAndResumeContinues() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("ddp-kill")
        let timeout = 10.0
        let cfg = try config(dir, "run", batch: 1, steps: 200, extra: "distributed:\n  timeout_seconds: \(timeout)\n")
        let run = dir + "/run"

        // SIGKILL of rank 1: mpirun sees it die and ends the job.
        let (killed, afterKill) = try runAndSignalRank1(mpiArgs(2) + [exe, "train", "--config", cfg], run: run, marker: cfg, lines: 3, signal: SIGKILL)
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertLessThan(afterKill, timeout + 20, killed.stderr)
        XCTAssertTrue(killed.stderr.contains("rank 1") && killed.stderr.contains("signal 9"), killed.stderr)
        let afterFirst = try XCTUnwrap(try SafeTensors.read(run + "/checkpoints/latest.safetensors").metadata["step"].flatMap(Int.init))
        XCTAssertGreaterThanOrEqual(afterFirst, 2)

        // --resume on 2 ranks, then rank 1 hangs (SIGSTOP): rank 0 times out and aborts the job.
        let (hung, afterStop) = try runAndSignalRank1(mpiArgs(2) + [exe, "train", "--config", cfg, "--resume"], run: run, marker: cfg,
                                                      lines: afterFirst + 2, signal: SIGSTOP)
        XCTAssertNotEqual(hung.status, 0)
        XCTAssertTrue(hung.stderr.contains("resuming at step \(afterFirst)"), hung.stderr)
        XCTAssertTrue(hung.stderr.contains("timed out after \(Int(timeout)) s waiting for the other ranks"), hung.stderr)
        XCTAssertTrue(hung.stderr.contains("the last checkpoint (step"), hung.stderr)
        XCTAssertGreaterThanOrEqual(afterStop, timeout - 1)
        XCTAssertLessThan(afterStop, timeout + 20, hung.stderr)

        // The last checkpoint is valid: one process (a different number of ranks) resumes from it.
        let last = try XCTUnwrap(try SafeTensors.read(run + "/checkpoints/latest.safetensors").metadata["step"].flatMap(Int.init))
        XCTAssertGreaterThan(last, afterFirst)
        let resumed = try runProcess(exe, ["train", "--config", cfg, "--resume", "--set", "train.steps=\(last + 2)"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resuming at step \(last)"), resumed.stderr)
        let m = metricLines(run)
        XCTAssertEqual(m.count, last + 2)
        XCTAssertEqual(m.map { $0["step"] as? Int ?? -1 }, Array(1...(last + 2)))
    }

    /// `mpirun -np 2 cycletime ava train` trains data-parallel on the run set-up every task shares:
    /// one run directory written by rank 0 (metrics with ranks 2, each step once, one log line per
    /// step), a checkpoint that does not depend on the rank count, and a resume in a single process
    /// (another rank count, the same global batch) that continues to the end.
    func testAVATrainsDataParallelAndResumesWithAnotherRankCount() throws {
        let exe = try cycletimeExecutable(), mpirun = try mpirun()
        let dir = temporaryDirectory("ava-ddp")
        let cfg = try writeTinyAVARun(dir)
        let run = dir + "/run"
        let first = try runProcess(mpirun, mpiArgs(2) + [exe, "ava", "train", "--config", cfg,
                                                          "--set", "train.batch_size=1", "--set", "train.steps=2"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let ranked = metricLines(run)
        XCTAssertEqual(ranked.compactMap { ($0["step"] as? NSNumber)?.intValue }, [1, 2])
        XCTAssertTrue(ranked.allSatisfy { ($0["ranks"] as? NSNumber)?.intValue == 2 }, "\(ranked)")
        let log = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
        XCTAssertEqual(log.components(separatedBy: "step 2/2").count - 1, 1, log)
        let ckpt = try SafeTensors.read(run + "/checkpoints/latest.safetensors")
        XCTAssertEqual(ckpt.metadata["step"], "2")
        XCTAssertEqual(ckpt.metadata["objective"], "ava")
        XCTAssertEqual(ckpt.metadata["ranks_when_written"], "2")

        let second = try runProcess(exe, ["ava", "train", "--config", cfg, "--resume"])
        XCTAssertEqual(second.status, 0, second.stderr)
        let all = metricLines(run)
        XCTAssertEqual(all.compactMap { ($0["step"] as? NSNumber)?.intValue }, [1, 2, 3, 4])
        XCTAssertNil(all[2]["ranks"])
        let last = try SafeTensors.read(run + "/checkpoints/latest.safetensors")
        XCTAssertEqual(last.metadata["step"], "4")
        XCTAssertEqual(Set(last.tensors.keys), Set(ckpt.tensors.keys))
    }
}
