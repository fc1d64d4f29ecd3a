import ArgumentParser
import CycleTimeReport
import CycleTimeCore
import Foundation

/// `cycletime report RUN_DIR`: a notebook and a Markdown page with figures from a run directory.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Turn a run directory into a notebook (NAME.ipynb) and a Markdown page (NAME.md) with figures.",
        discussion: """
            Writes OUT/NAME.ipynb (nbformat 4.5, code-free: Markdown and display_data outputs with SVG/PNG), \
            OUT/NAME.md and the figures in OUT/NAME_files/ (NAME = last component of --out, default \
            notebooks-export/<run folder name>), atomically. Sections: pretraining curves from metrics.jsonl and \
            the config; correspondence figures from checkpoints/latest.safetensors (TimeCycle) on a video of the \
            config or --video; propagation from RUN/propagation/{davis,jhmdb,vip}/ (eval JSON inside); detection \
            from RUN/ava/ (the `ava eval --json` output saved as *.json and the detections CSV). A missing part \
            is stated in its section. A run of `ava train` gets its curves, config and detection section. \
            --compare RUN_A RUN_B ... puts runs side by side.
            """)

    @Argument(help: "Run directory (config.yaml, metrics.jsonl, checkpoints/)") var runDirectory: String?
    @Option(parsing: .upToNextOption, help: "Compare these run directories (curves on one plot, a table of final figures)")
    var compare: [String] = []
    @Option(help: "Output folder: writes <out>/<name>.ipynb, <out>/<name>.md, <out>/<name>_files/") var out: String?
    @Option(help: "Video for the correspondence figures (default: the first video of the run's config)") var video: String?
    @Option(name: .customLong("video-start"), help: "Seconds into the video where the correspondence clip starts") var videoStart: Double = 2
    @Option(name: .customLong("davis-root"), help: "DAVIS root, to draw frames under the propagated masks") var davisRoot: String?
    @Option(name: .customLong("jhmdb-root"), help: "JHMDB root, to draw frames under the propagated keypoints") var jhmdbRoot: String?
    @Option(name: .customLong("ava-frames"), help: "AVA frames (<video>/<video>_<frame:06d>.jpg), to draw detections on keyframes") var avaFrames: String?
    @Flag(name: .customLong("no-correspondence"), help: "Do not run the model (no correspondence figures)") var noCorrespondence = false
    @Option(name: .customLong("tile-width"), help: "Width of one frame in PNG grids (pixels)") var tileWidth = 144

    func validate() throws {
        if runDirectory == nil && compare.isEmpty { throw ValidationError("give a run directory, or --compare RUN_A RUN_B ...") }
        if runDirectory != nil && !compare.isEmpty { throw ValidationError("give either a run directory or --compare, not both") }
        try checkOption("--tile-width", tileWidth, 32...1024)
        try checkOption("--video-start", videoStart, 0...1e6)
    }

    func run() throws {
        var options = ReportOptions()
        options.video = video
        options.videoStart = videoStart
        options.davisRoot = davisRoot
        options.jhmdbRoot = jhmdbRoot
        options.avaFrames = avaFrames
        options.correspondence = !noCorrespondence
        options.tileWidth = tileWidth
        let line = ProgressLine()
        options.progress = { line.show($0) }
        let blocks: [ReportBlock], title: String, dest: String
        if let runDirectory {
            let r = try RunRecord.load(runDirectory)
            blocks = try Report.blocks(r, options: options)
            line.finish()
            title = "Run report: \(r.name)"
            dest = out ?? "notebooks-export/\(r.name)"
        } else {
            let runs = try compare.map { try RunRecord.load($0) }
            blocks = Report.compareBlocks(runs)
            title = "Comparison: " + runs.map(\.name).joined(separator: ", ")
            dest = out ?? "notebooks-export/compare-" + runs.map(\.name).joined(separator: "-vs-")
        }
        let (nb, md) = try ReportWriter.write(blocks, title: title, to: dest)
        print("report: \(nb) and \(md) (figures in \((md as NSString).deletingPathExtension)_files/)")
    }
}
