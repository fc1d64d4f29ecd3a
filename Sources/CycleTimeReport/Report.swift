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
        if let reference = runs.first, runs.count > 1 { b += lossAgreementBlocks(reference: reference, others: Array(runs.dropFirst())) }
        var rows: [[String]] = []
        for r in runs {
            let loss = smoothed(r.metrics.column("loss"), weight: 0.6).compactMap { $0 }.last
            let cps = r.metrics.column("clips_per_s").compactMap { $0 }
            rows.append([r.name, r.objective, r.config.map { $0.objective == .crw ? $0.crw.encoder : $0.timecycle.encoder } ?? r.avaConfig?.model.backbone ?? r.detectConfig.map(detectorName) ?? "?",
                         String(r.lastStep ?? 0), fmt(loss), fmt(cps.isEmpty ? nil : cps.reduce(0, +) / Double(cps.count)),
                         davisJF(r).map { fmt($0) } ?? "not run", lastValidation(r).map { "\(fmt($0.value)) (step \($0.step))" } ?? "not run",
                         avaMAP(r).map { fmt($0) } ?? "not run"])
        }
        b.append(.markdown("Final figures:\n\n" + table(["run", "objective", "encoder", "steps", "final loss (smoothed)", "mean clips/s",
                                                         "DAVIS J&F", "last validation J&F", "AVA mAP"], rows)))
        return b
    }

    /// The reference's loss trend with its noise band, each other run's trend on one plot, and a table
    /// of how far each other run's loss strays from the reference's, in units of the reference's own
    /// step-to-step spread (`LossAgreement`).
    static func lossAgreementBlocks(reference: RunRecord, others: [RunRecord]) -> [ReportBlock] {
        let window = LossAgreement.defaultWindow
        var rows: [[String]] = [], p = LinePlot(title: "loss trend (centred mean of \(window) steps) against \(reference.name)'s band",
                                                xLabel: stepAxis, yLabel: "loss value")
        let refTrend = LossAgreement.trend(reference.metrics.column("loss"), window: window)
        var spreadForBand: Double?
        for (i, r) in others.enumerated() {
            guard let a = LossAgreement.measure(reference: reference.metrics, other: r.metrics, window: window) else {
                rows.append([r.name, "fewer than \(window) shared steps with a loss", "", "", "", "", ""]); continue
            }
            spreadForBand = spreadForBand ?? a.spread
            rows.append([r.name, String(a.steps), fmt(a.spread), fmt(a.maxTrendGap), fmt(a.meanTrendGap),
                         String(format: "%.3f (reference %.3f)", a.withinTwoSpreads, a.referenceWithinTwoSpreads),
                         a.holds ? "yes" : "no (\(fmt(a.maxTrendGap / a.spread)) spreads)"])
            p.series.append(PlotSeries(name: r.name, x: r.metrics.steps, y: LossAgreement.trend(r.metrics.column("loss"), window: window),
                                       color: seriesColors[(i + 1) % seriesColors.count]))
        }
        guard let spread = spreadForBand else {
            return [.markdown("Loss against `\(reference.name)`: " + rows.map { "`\($0[0])` has \($0[1])" }.joined(separator: "; ") + ".")]
        }
        let xs = reference.metrics.steps
        p.series.insert(PlotSeries(name: reference.name, x: xs, y: refTrend, color: seriesColors[0]), at: 0)
        p.series.insert(PlotSeries(name: "\(reference.name) - spread", x: xs, y: refTrend.map { $0.map { $0 - spread } }, color: seriesColors[0],
                                   width: 1, opacity: 0.6, dashed: true), at: 1)
        p.series.insert(PlotSeries(name: "\(reference.name) + spread", x: xs, y: refTrend.map { $0.map { $0 + spread } }, color: seriesColors[0],
                                   width: 1, opacity: 0.6, dashed: true), at: 2)
        return [.figure(.svg("compare-loss-agreement", "each run's loss trend within \(reference.name)'s step-to-step spread", p.svg())),
                .markdown("Loss against the first run, `\(reference.name)`, on the steps both logged (matched by step number). "
                    + "Trend: the centred mean of \(window) steps. Spread: the root mean square of the reference's loss around "
                    + "its own trend, its step-to-step noise. A run agrees when its trend stays within one spread of the "
                    + "reference's at every shared step.\n\n"
                    + table(["run", "shared steps", "reference spread", "max trend gap", "mean trend gap (run - reference)",
                             "steps within 2 spreads of the reference trend", "within the spread"], rows))]
    }

    /// The last `val_jf` a run logged, with its step.
    static func lastValidation(_ r: RunRecord) -> (step: Int, value: Double)? {
        zip(r.metrics.steps, r.metrics.column("val_jf")).compactMap { s, v in v.map { (Int(s), $0) } }.last
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

/// How closely one run's loss follows a reference run's, in units of the reference's own noise.
///
/// Both losses are taken on the steps both runs logged (matched by step number, not by row). The
/// trend of a curve is its centred moving mean over `window` steps (truncated at the ends); the
/// reference's spread is the root mean square of its loss around its own trend, i.e. how much one
/// step's loss scatters. The other run agrees when its trend stays within one spread of the
/// reference's trend at every shared step (`holds`). `withinTwoSpreads` is the fraction of the
/// other run's single steps within two spreads of the reference trend; `referenceWithinTwoSpreads`
/// is the same for the reference's own steps, the figure to compare it with.
public struct LossAgreement: Equatable, Sendable {
    public static let defaultWindow = 21
    public var steps: Int
    public var window: Int
    public var spread: Double
    public var maxTrendGap: Double
    public var meanTrendGap: Double
    public var withinTwoSpreads: Double
    public var referenceWithinTwoSpreads: Double
    public var holds: Bool { maxTrendGap <= spread }

    /// The centred moving mean over `window` values (`window / 2` each side, fewer at the ends);
    /// missing values are skipped and stay missing.
    public static func trend(_ ys: [Double?], window: Int) -> [Double?] {
        let h = max(window, 1) / 2
        return ys.indices.map { i in
            guard ys[i] != nil else { return nil }
            let near = ys[max(0, i - h)...min(ys.count - 1, i + h)].compactMap { $0 }
            return near.reduce(0, +) / Double(near.count)
        }
    }

    /// `nil` when the runs share fewer than `window` steps with a finite `key`, or the reference's
    /// spread is zero (a constant curve has no noise to measure against).
    public static func measure(reference: MetricsTable, other: MetricsTable, key: String = "loss",
                               window: Int = defaultWindow) -> LossAgreement? {
        func byStep(_ m: MetricsTable) -> [Double: Double] {
            var d: [Double: Double] = [:]
            for (s, v) in zip(m.steps, m.column(key)) { if let v, v.isFinite { d[s] = v } }
            return d
        }
        let ref = byStep(reference), oth = byStep(other)
        let steps = Set(ref.keys).intersection(oth.keys).sorted()
        guard window >= 1, steps.count >= window else { return nil }
        let r = steps.map { ref[$0] }, o = steps.map { oth[$0] }
        let rt = trend(r, window: window).compactMap { $0 }, ot = trend(o, window: window).compactMap { $0 }
        let rv = r.compactMap { $0 }, ov = o.compactMap { $0 }
        let spread = (zip(rv, rt).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Double(rv.count)).squareRoot()
        guard spread > 0 else { return nil }
        let gaps = zip(ot, rt).map { $0 - $1 }
        func within(_ v: [Double]) -> Double { Double(zip(v, rt).filter { abs($0 - $1) <= 2 * spread }.count) / Double(v.count) }
        return LossAgreement(steps: steps.count, window: window, spread: spread, maxTrendGap: gaps.map(abs).max() ?? 0,
                             meanTrendGap: gaps.reduce(0, +) / Double(gaps.count), withinTwoSpreads: within(ov),
                             referenceWithinTwoSpreads: within(rv))
    }
}
