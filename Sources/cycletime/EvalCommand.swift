import ArgumentParser
import CycleTimeCore
import CycleTimeData
import CycleTimePropagation
import Foundation

/// `cycletime eval davis|jhmdb|vip`: scores propagation results as the official evaluators do.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Score propagated labels as the official benchmarks do (table on the terminal, JSON and CSV beside the results).",
        subcommands: [EvalDAVIS.self, EvalJHMDB.self, EvalVIP.self])
}

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
    @Option(help: "Only these sequences (comma-separated), as propagated with `propagate davis --sequences`") var sequences: String?
    @Option(name: .customLong("max-frames"), help: "Score only the annotations of each sequence's first N frames, as propagated with `propagate davis --max-frames N`")
    var maxFrames: Int?
    @Flag(help: "Do not write CSV/JSON files") var noWrite = false

    func validate() throws {
        try checkOption("--bound-th", boundTh, 1e-6...1000)
        try checkOption("--max-frames", maxFrames, 3...10_000_000)
    }

    func run() throws {
        let line = ProgressLine()
        let r = try DAVISEvaluation.evaluate(davisRoot: davisRoot, results: results, set: set, resolution: resolution,
                                             sequences: sequences?.split(separator: ",").map(String.init), maxFrames: maxFrames,
                                             boundThreshold: boundTh, progress: { line.show($0) })
        line.finish()
        print(r.table(), terminator: "")
        if !noWrite {
            try AtomicFile.write(r.globalCSV(), to: results + "/global_results-\(set).csv")
            try AtomicFile.write(r.perSequenceCSV(), to: results + "/per-sequence_results-\(set).csv")
            try EvaluationFiles.write(r, to: results + "/" + EvaluationFiles.davis(set: set))
        }
    }
}

struct EvalJHMDB: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jhmdb",
        abstract: "JHMDB PCK@0.1...0.5 (frame 0 skipped; scale 0.6 x diagonal of the visible ground-truth joints' box).",
        discussion: "Reads <results>/<class>/<clip>/keypoints.csv; writes pck.json and pck.csv into the results folder.")

    @Option(help: "JHMDB root") var root: String
    @Option(help: "Results folder") var results: String
    @Option(name: .customLong("split-dir"), help: "Folder of <class>_test_split<k>.txt lists (default: every clip)") var splitDir: String?
    @Option(help: "Split number") var split = 1
    @Flag(help: "Do not write CSV/JSON files") var noWrite = false

    func validate() throws { try checkOption("--split", split, 1...3) }

    func run() throws {
        let ds: JHMDBDataset
        do { ds = try JHMDBDataset(root: root, splitDir: splitDir, split: split, train: false) } catch { throw EvaluationError("\(error)") }
        if ds.clips.isEmpty { throw EvaluationError("\(root): no JHMDB clips with joint_positions.mat") }
        var clips: [(groundTruth: [[Point2]], predictions: [[Point2]])] = []
        for clip in ds.clips {
            let path = results + "/\(clip.className)/\(clip.name)/keypoints.csv"
            guard FileManager.default.fileExists(atPath: path) else { throw EvaluationError("\(path): missing keypoints of clip '\(clip.name)'") }
            let pred = try JHMDBEvaluation.readKeypoints(path)
            let gt = Array(try JHMDBEvaluation.groundTruth(clip).prefix(clip.frameCount))
            guard pred.count == gt.count else { throw EvaluationError("\(path): \(pred.count) frames, the clip has \(gt.count)") }
            clips.append((gt, pred))
        }
        let r = try JHMDBEvaluation.pck(clips: clips)
        let header = r.thresholds.map { "PCK@\($0)" }
        let values = r.pck.map { String(format: "%.6f", $0) }
        print(header.joined(separator: "  "))
        print(values.joined(separator: "   "))
        if !noWrite {
            try AtomicFile.write(header.joined(separator: ",") + "\n" + values.joined(separator: ",") + "\n", to: results + "/pck.csv")
            try EvaluationFiles.write(r, to: results + "/" + EvaluationFiles.jhmdb)
        }
    }
}

struct EvalVIP: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vip",
        abstract: "VIP mIoU over the 20 classes from one confusion matrix over all frames (first frames excluded).",
        discussion: "Reads <results>/<video>/<frame>.png; writes miou.json and miou.csv into the results folder.")

    @Option(help: "VIP root (Images/, Annotations/Category_ids/)") var root: String
    @Option(help: "Results folder") var results: String
    @Option(help: "Split list lists/<split>_videos.txt when present") var split = "val"
    @Flag(help: "Do not write CSV/JSON files") var noWrite = false

    func run() throws {
        let r = try VIPEvaluation.evaluate(root: root, results: results, split: split)
        print("mIoU \(String(format: "%.6f", r.mean))")
        for (k, v) in r.perClass.enumerated() { print("  class \(k): \(v.isNaN ? "absent" : String(format: "%.6f", v))") }
        if !noWrite {
            let csv = "class,iou\n" + r.perClass.enumerated().map { "\($0.offset),\($0.element)" }.joined(separator: "\n") + "\nmean,\(r.mean)\n"
            try AtomicFile.write(csv, to: results + "/miou.csv")
            try EvaluationFiles.write(r, to: results + "/" + EvaluationFiles.vip)
        }
    }
}
