import CycleTimeCore
import CycleTimePropagation
import CycleTimeTracking
import CycleTimeTraining
import CycleTimePretraining
import CycleTimeVideo
import CycleTimeDetection
import Foundation

/// A report that cannot be made (not a run directory, unwritable output); the message names the path.
public struct ReportError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

// MARK: - options

/// Where a report finds what the run directory does not hold, and how it reports progress.
public struct ReportOptions {
    /// A video for the correspondence figures (default: the first video of the run's config).
    public var video: String?
    /// Seconds into the video where the correspondence clip starts.
    public var videoStart: Double = 2
    /// DAVIS root, for the frames under the propagated masks.
    public var davisRoot: String?
    /// JHMDB root, for the frames under the propagated keypoints.
    public var jhmdbRoot: String?
    /// AVA frames (PySlowFast layout `<video>/<video>_<frame:06d>.jpg`, 30 fps from second 900).
    public var avaFrames: String?
    /// Run the model for the correspondence figures.
    public var correspondence = true
    /// Width of one frame in PNG grids.
    public var tileWidth = 144
    /// Progress lines (steps, rate, ETA).
    public var progress: (String) -> Void = { _ in }
    public init() {}
}

// MARK: - the report

/// Builds the blocks (Markdown and figures) of a report; `ReportWriter` writes them.
public enum Report {
    static func fmt(_ v: Double?) -> String {
        guard let v, v.isFinite else { return "n/a" }
        if v == 0 { return "0" }
        return abs(v) >= 1e4 || abs(v) < 1e-3 ? String(format: "%.4g", v) : String(format: "%.4f", v)
    }

    /// A Markdown table.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        var s = "| " + header.joined(separator: " | ") + " |\n|" + header.map { _ in "---" }.joined(separator: "|") + "|\n"
        for r in rows { s += "| " + r.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |\n" }
        return s
    }

    /// The whole report of one run.
    public static func blocks(_ run: RunRecord, options: ReportOptions) throws -> [ReportBlock] {
        var b: [ReportBlock] = []
        var head = "# Run report: \(run.name)\n\n"
        head += "- run directory: `\(run.path)`\n- objective: \(run.objective)"
        if let c = run.config { head += ", encoder \(c.objective == .crw ? "crw" : c.timecycle.encoder)" }
        if let a = run.avaConfig { head += ", backbone \(a.model.backbone) (ResNet-\(a.model.depth))" }
        if let d = run.detectConfig { head += ", Faster R-CNN " + detectorName(d) }
        head += "\n- status: \(run.status)\n"
        head += "- made by `cycletime report` from the run's files (no Python run); figures are SVG (curves, bars) and PNG (frames)."
        b.append(.markdown(head))
        if !run.notes.isEmpty { b.append(.markdown("Notes:\n\n" + run.notes.map { "- " + $0 }.joined(separator: "\n"))) }
        b += try pretraining(run)
        // An AVA or detect run trains a detector: no encoder figures, no propagation.
        if !run.isAVA && !run.isDetect {
            b += try correspondence(run, options: options)
            b += try propagation(run, options: options)
        }
        b += run.isDetect ? try personDetection(run, options: options) : try detection(run, options: options)
        return b
    }

    // MARK: comparison

    /// Runs side by side: each shared training term smoothed on one plot, and a table of final figures.
    public static func compareBlocks(_ runs: [RunRecord]) -> [ReportBlock] {
        var b: [ReportBlock] = [.markdown("# Comparison of \(runs.count) runs\n\n" + runs.map { "- `\($0.name)`: `\($0.path)`; \($0.status)" }.joined(separator: "\n"))]
        let shared = ["loss"] + Set(runs.flatMap { terms($0.metrics) }).sorted().filter { $0 != "loss" } + ["clips_per_s"]
        for k in shared {
            let with = runs.filter { $0.metrics.keys.contains(k) }
            guard !with.isEmpty else { continue }
            var p = LinePlot(title: "\(k) by run (smoothed, EMA 0.6)", xLabel: stepAxis, yLabel: known[k]?.unit ?? "\(k) (loss value)")
            for (i, r) in with.enumerated() {
                p.series.append(PlotSeries(name: r.name, x: r.metrics.steps, y: smoothed(r.metrics.column(k), weight: 0.6),
                                           color: seriesColors[i % seriesColors.count]))
            }
            b.append(.figure(.svg("compare-" + k, "\(k) of each run against step", p.svg())))
        }
        var rows: [[String]] = []
        for r in runs {
            let loss = smoothed(r.metrics.column("loss"), weight: 0.6).compactMap { $0 }.last
            let cps = r.metrics.column("clips_per_s").compactMap { $0 }
            rows.append([r.name, r.objective, r.config.map { $0.objective == .crw ? $0.crw.encoder : $0.timecycle.encoder } ?? r.avaConfig?.model.backbone ?? r.detectConfig.map(detectorName) ?? "?",
                         String(r.lastStep ?? 0), fmt(loss), fmt(cps.isEmpty ? nil : cps.reduce(0, +) / Double(cps.count)),
                         davisJF(r).map { fmt($0) } ?? "not run", avaMAP(r).map { fmt($0) } ?? "not run"])
        }
        b.append(.markdown("Final figures:\n\n" + table(["run", "objective", "encoder", "steps", "final loss (smoothed)", "mean clips/s",
                                                         "DAVIS J&F", "AVA mAP"], rows)))
        return b
    }

    static func davisJF(_ r: RunRecord) -> Double? {
        let dir = r.path + "/propagation/davis"
        guard let n = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted().first(where: EvaluationFiles.isDAVIS) else { return nil }
        return (try? EvaluationFiles.read(DAVISEvaluationResult.self, from: dir + "/" + n))?.summary.jfMean
    }

    static func avaMAP(_ r: RunRecord) -> Double? {
        let dir = r.path + "/ava"
        for n in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() where n.hasSuffix(".json") {
            if let m = avaEvaluation(dir + "/" + n)?.mAP { return m }
        }
        return nil
    }
}
