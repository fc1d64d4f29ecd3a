import ArgumentParser
import CycleTimeCore
import Foundation

@main
struct CycleTimeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cycletime",
        abstract: "Self-supervised video representation learning on the CPU.",
        subcommands: [TrainCommand.self, Bench.self, VideoCommand.self, FeaturesCommand.self, PropagateCommand.self,
                      EvalCommand.self, AVACommand.self, DetectCommand.self, ReportCommand.self])

    /// A mistyped command name (`cycletime trian --config x`) is named as such, before the parser
    /// would blame the first option it does not know.
    static func main() {
        OpenMPWait.preferPassive()
        let arguments = Array(CommandLine.arguments.dropFirst())
        if let message = CommandNames.unknownCommand(in: arguments, root: CycleTimeCommand.self) {
            FileHandle.standardError.write(Data("error: \(message)\n".utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
        main(arguments)
    }
}

/// The command tree's names, for the one check above.
enum CommandNames {
    /// The message for the first word that should name a subcommand and names none; nil when the
    /// words are fine (options and positional arguments are left to the parser).
    static func unknownCommand(in arguments: [String], root: ParsableCommand.Type) -> String? {
        var command: ParsableCommand.Type = root
        var path = [root._commandName]
        for word in arguments {
            let subcommands: [ParsableCommand.Type] = command.configuration.subcommands
            if subcommands.isEmpty || word.hasPrefix("-") || word == "help" { return nil }
            var names: [String] = []
            var found: ParsableCommand.Type?
            for sub in subcommands {
                let name = sub._commandName
                names.append(name)
                if name == word || sub.configuration.aliases.contains(word) { found = sub }
            }
            guard let next = found else {
                let close = names.map { ($0, editDistance($0, word)) }.filter { $0.1 <= 2 }.min { $0.1 < $1.1 }
                let hint = close.map { " (did you mean '\($0.0)'?)" } ?? ""
                return "unknown command '\(word)' for '\(path.joined(separator: " "))'\(hint); the commands are \(names.joined(separator: ", "))"
            }
            command = next
            path.append(word)
        }
        return nil
    }

    /// Levenshtein distance (insertions, deletions, substitutions).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        var row = Array(0...y.count)
        for i in 1...max(x.count, 1) where !x.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in 1...max(y.count, 1) where !y.isEmpty {
                let kept = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (x[i - 1] == y[j - 1] ? 0 : 1))
                previous = kept
            }
        }
        return row[y.count]
    }
}
