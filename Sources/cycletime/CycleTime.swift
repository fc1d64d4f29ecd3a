import ArgumentParser
import CycleTimeCore

@main
struct CycleTimeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cycletime",
        abstract: "Self-supervised video representation learning on the CPU.",
        subcommands: [TrainCommand.self, Bench.self, VideoCommand.self, FeaturesCommand.self, PropagateCommand.self,
                      EvalCommand.self, AVACommand.self, ReportCommand.self])
}
