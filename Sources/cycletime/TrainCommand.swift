import ArgumentParser
import CycleTimeCore
import CycleTimeDistributed
import CycleTimeTraining
import CycleTimePretraining
import Dispatch
import Foundation

/// `cycletime train --config experiments/NAME.yaml [--resume] [--set key=value ...]`
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Pretrain an encoder on unlabeled video (objective timecycle or crw) from a YAML config.",
        discussion: """
            The run directory (the config's output_dir) receives config.yaml (the resolved config), \
            metrics.jsonl (one JSON object per step), train.log and checkpoints/ (safetensors: model \
            state_dict with torchvision encoder keys under 'encoder.', optimizer state under \
            'optimizer.', step and RNG in the metadata; latest.safetensors is the newest). Ctrl-C \
            finishes the current step, writes a checkpoint and exits with status 130; --resume \
            continues from the latest checkpoint exactly as an uninterrupted run would. \
            `mpirun -np N cycletime train --config C` trains data-parallel on N ranks (batch_size per \
            rank; only rank 0 writes the run directory; config section 'distributed').
            """)

    @OptionGroup var args: TrainArguments

    func run() throws {
        if args.printConfig { return print(try ConfigLoader.resolvedText(TrainConfig.self, path: args.config, overrides: args.overrides), terminator: "") }
        try drive(try makeTrainer(configPath: args.configPath, overrides: args.overrides), resume: args.resume, unit: "clips")
    }
}

/// The options of `train` and `ava train`.
struct TrainArguments: ParsableArguments {
    @Option(help: "The run config (YAML).") var config: String?
    @Flag(help: "Continue the run in output_dir from its latest checkpoint.") var resume = false
    @Option(name: .customLong("set"), help: "Override a config field, e.g. --set train.steps=500 (repeatable).")
    var overrides: [String] = []
    @Flag(name: .customLong("print-config"), help: "Print every field of the config (--config and --set applied, or the defaults) as YAML, and exit.")
    var printConfig = false

    func validate() throws {
        if config == nil && !printConfig { throw ValidationError("Missing expected argument '--config <config>'") }
    }

    var configPath: String { config ?? "" }

    /// `--print-config` prints the resolved `C` config; otherwise drives the trainer `make` builds
    /// from the config path, the overrides and a reporter of warnings (to stderr).
    func run<C: RunConfiguration>(_ type: C.Type, unit: String,
                                  make: (String, [String], @escaping (String) -> Void) throws -> any AnyTrainer) throws {
        if printConfig { return print(try ConfigLoader.resolvedText(type, path: config, overrides: overrides), terminator: "") }
        try drive(try make(configPath, overrides) { FileHandle.standardError.write(Data(("warning: " + $0 + "\n").utf8)) },
                  resume: resume, unit: unit)
    }
}

/// Runs a trainer of any task: progress on rank 0, Ctrl-C and SIGTERM (a checkpoint, then exit
/// status 130), MPI_Finalize only after a run every rank ended the same way (after an error the
/// process exits non-zero and mpirun ends the other ranks).
func drive(_ trainer: any AnyTrainer, resume: Bool, unit: String) throws {
    if trainer.isLeader { trainer.progress = ProgressReporter(every: trainer.settings.train.logEvery, unit: unit) }
    let interrupt = Interrupt.install(what: trainer.mpi.map {
        "\($0.label): stop requested (Ctrl-C, or mpirun ending the job because a rank ended): finishing the step with the other ranks; rank 0 writes a checkpoint"
    } ?? "finishing the current step and writing a checkpoint")
    trainer.shouldStop = { interrupt.requested }
    let outcome = try trainer.train(resume: resume, stopAfter: nil)
    trainer.mpi?.finalize()
    if case .interrupted = outcome { throw ExitCode(130) }
}

/// Ctrl-C (SIGINT) and SIGTERM: the first asks the loop to stop after the current step; a second
/// one exits at once (the last checkpoint stays valid: checkpoints are written atomically).
final class Interrupt: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    private var sources: [DispatchSourceSignal] = []

    var requested: Bool { lock.lock(); defer { lock.unlock() }; return flag }

    static func install(what: String = "finishing the current step and writing a checkpoint") -> Interrupt {
        let i = Interrupt()
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { [i] in
                i.lock.lock()
                let again = i.flag
                i.flag = true
                i.lock.unlock()
                if again {
                    FileHandle.standardError.write(Data("\ninterrupted again: exiting now; the last checkpoint is kept\n".utf8))
                    _exit(128 + sig)
                }
                FileHandle.standardError.write(Data("\ninterrupt: \(what) (again to abort)\n".utf8))
            }
            s.resume()
            i.sources.append(s)
        }
        return i
    }
}
