import ArgumentParser
import CycleTimePropagation
import Foundation

/// `cycletime eval davis|jhmdb|vip`: scores propagation results as the official evaluators do.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Score propagated labels as the official benchmarks do (table on the terminal, JSON and CSV beside the results).",
        subcommands: [EvalDAVIS.self])
}

/// Prints a progress line on standard error (one line per step; overwritten on a terminal).
func progressLine(_ s: String) {
    let tty = isatty(STDERR_FILENO) != 0
    FileHandle.standardError.write(Data(((tty ? "\r\u{1B}[K" : "") + s + (tty ? "" : "\n")).utf8))
}
func progressDone() { if isatty(STDERR_FILENO) != 0 { FileHandle.standardError.write(Data("\n".utf8)) } }

struct EvalDAVIS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "davis",
        abstract: "DAVIS-2017 semi-supervised J and F (davis2017-evaluation semantics).",
        discussion: """
            Frames scored: those with a ground-truth annotation, minus the first and the last of them \
            (sparse annotations are scored only where they exist). Objects: ids 1...max of the first \
            annotation. Writes global_results-<set>.csv, per-sequence_results-<set>.csv and \
            davis-eval-<set>.json into the results folder.
            """)

    @Option(name: .customLong("davis-root"), help: "DAVIS root (JPEGImages/, Annotations/, ImageSets/2017/)") var davisRoot: String
    @Option(help: "Results folder: <sequence>/<frame>.png") var results: String
    @Option(help: "Image set (ImageSets/2017/<set>.txt)") var set: String = "val"
    @Option(help: "Resolution folder") var resolution: String = "480p"
    @Option(name: .customLong("bound-th"), help: "Boundary tolerance: fraction of the diagonal (< 1) or pixels") var boundTh: Double = 0.008
    @Flag(help: "Do not write CSV/JSON files") var noWrite = false

    func run() throws {
        let r = try DAVISEvaluation.evaluate(davisRoot: davisRoot, results: results, set: set, resolution: resolution,
                                             boundThreshold: boundTh, progress: progressLine)
        progressDone()
        print(r.table(), terminator: "")
        if !noWrite {
            try writeAtomically(r.globalCSV(), to: results + "/global_results-\(set).csv")
            try writeAtomically(r.perSequenceCSV(), to: results + "/per-sequence_results-\(set).csv")
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try writeAtomically(try enc.encode(r), to: results + "/davis-eval-\(set).json")
        }
    }
}
