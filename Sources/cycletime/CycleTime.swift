import ArgumentParser
import CycleTimeCore

@main
struct CycleTimeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cycletime", abstract: "CycleTime", subcommands: [VideoCommand.self])
}
