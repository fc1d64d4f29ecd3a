import Foundation

extension Report {
    /// Metrics that are not training terms, with their titles, axis labels and units.
    static let known: [String: (title: String, unit: String)] = [
        "lr": ("Learning rate", "learning rate"),
        "grad_norm": ("Gradient norm (global L2, before clipping)", "L2 norm"),
        "clips_per_s": ("Throughput", "clips / s"),
        "data_wait": ("Data-wait fraction", "fraction of step time waiting for data"),
        "step_s": ("Step time", "seconds"), "forward_s": ("Forward time", "seconds"),
        "backward_s": ("Backward time", "seconds"), "elapsed_s": ("Elapsed time", "seconds"),
    ]
    public static let stepAxis = "step (optimizer updates)"

    /// The training terms of a metrics table: total `loss` first, then the others in logged order
    /// (validation scores, `val_*`, and tracker diagnostics, `diag_*`, are not training terms).
    public static func terms(_ m: MetricsTable) -> [String] {
        let t = m.keys.filter { $0 != "step" && known[$0] == nil && !$0.hasPrefix("val_") && !$0.hasPrefix("diag_") }
        return t.contains("loss") ? ["loss"] + t.filter { $0 != "loss" } : t
    }

    /// The curve figures of the pretraining section: (figure name, plot). Each training term raw and
    /// smoothed, then learning rate, gradient norm, clips/s, data wait and step times.
    public static func curvePlots(_ m: MetricsTable, gradClip: Double? = nil) -> [(String, LinePlot)] {
        let x = m.steps
        var out: [(String, LinePlot)] = []
        for (i, k) in terms(m).enumerated() {
            var p = LinePlot(title: k == "loss" ? "Total loss (loss)" : "Training term \(k)", xLabel: stepAxis,
                             yLabel: k.contains("loss") ? "\(k) (loss value)" : k)
            p.addRawAndSmoothed(name: k, x: x, y: m.column(k), color: seriesColors[i % seriesColors.count])
            out.append((k, p))
        }
        for (i, k) in ["lr", "grad_norm", "clips_per_s", "data_wait"].enumerated() where m.keys.contains(k) {
            guard let info = known[k] else { continue }
            var p = LinePlot(title: info.title, xLabel: stepAxis, yLabel: info.unit)
            let color = seriesColors[(i + 4) % seriesColors.count]
            if k == "lr" {
                p.series.append(PlotSeries(name: "lr", x: x, y: m.column(k), color: color))
            } else {
                p.addRawAndSmoothed(name: k, x: x, y: m.column(k), color: color)
            }
            if k == "grad_norm", let c = gradClip, c > 0, let x0 = x.first, let x1 = x.last {
                p.series.append(PlotSeries(name: "grad_clip (max norm)", x: [x0, x1], y: [c, c], color: "#555555", width: 1.2, dashed: true))
            }
            out.append((k, p))
        }
        let timings = ["step_s", "forward_s", "backward_s"].filter { m.keys.contains($0) }
        if !timings.isEmpty {
            var p = LinePlot(title: "Time per step", xLabel: stepAxis, yLabel: "seconds")
            for (i, k) in timings.enumerated() {
                p.series.append(PlotSeries(name: k, x: x, y: m.column(k), color: seriesColors[(i + 7) % seriesColors.count], width: 1.5))
            }
            out.append(("step_time", p))
        }
        return out
    }

    /// The validation scores logged during training (the `eval:` section): J&F, J and F against
    /// steps, and against training hours (the sum of the steps' `step_s` up to that step, so
    /// validations, checkpoint writes and the time between a kill and its resume are left out):
    /// time to accuracy. Empty when the run has no validation rows.
    public static func validationPlots(_ m: MetricsTable) -> [(String, LinePlot)] {
        let keys = [("val_jf", "J&F"), ("val_j", "J (region)"), ("val_f", "F (boundary)")].filter { m.keys.contains($0.0) }
        guard !keys.isEmpty else { return [] }
        let rows = m.rows.enumerated().filter { $0.element["val_jf"] != nil || $0.element["val_j"] != nil }.map(\.offset)
        let steps = m.steps
        var hours: [Double] = [], total = 0.0
        for r in m.rows { total += r["step_s"] ?? 0; hours.append(total / 3600) }
        var out: [(String, LinePlot)] = []
        for (axis, name, xs) in [(stepAxis, "validation", steps), ("training hours (sum of step times)", "validation-hours", hours)] {
            var p = LinePlot(title: "DAVIS validation during training against " + (name == "validation" ? "step" : "training hours"),
                             xLabel: axis, yLabel: "score (davis2017-evaluation)")
            for (i, (k, label)) in keys.enumerated() {
                p.series.append(PlotSeries(name: "\(k) (\(label))", x: rows.map { xs[$0] }, y: rows.map { m.rows[$0][k] },
                                           color: seriesColors[i % seriesColors.count], width: i == 0 ? 2.4 : 1.5))
            }
            out.append((name, p))
        }
        return out
    }

    /// The tracker diagnostics logged during training (the `diagnostics:` section), against steps:
    /// (figure name, plot, how to read it). Each measured curve comes with its reference, dashed
    /// (uniform affinities, chance, the best constant prediction). Empty without diagnostic rows.
    public static func diagnosticsPlots(_ m: MetricsTable) -> [(name: String, plot: LinePlot, reading: String)] {
        let rows = m.rows.enumerated().filter { $0.element.keys.contains { $0.hasPrefix("diag_") && $0 != "diag_s" } }.map(\.offset)
        guard !rows.isEmpty else { return [] }
        let x = rows.map { m.steps[$0] }
        func column(_ k: String) -> [Double?] { rows.map { m.rows[$0][k] } }
        let figures: [(name: String, title: String, unit: String, curves: [(String, String)], reading: String)] = [
            ("diag-entropy", "Affinity entropy on held-out clips of known motion", "entropy (nats)",
             [("diag_entropy", "diag_entropy_uniform")],
             "Entropy of the patch -> frame affinities (TimeCycle) or of the frame-to-frame transitions (CRW): near the dashed "
                + "uniform value the features do not tell positions apart; it falls as they become distinctive."),
            ("diag-argmax", "Affinity argmax within one cell of the true position", "share of patch cells",
             [("diag_argmax_1cell", "diag_argmax_chance")],
             "The share of patch cells whose most similar frame position is within one cell of where the known motion put them: "
                + "above the dashed chance level the features already track, before the localizer reads them."),
            ("diag-localizer", "Localizer errors against the best constant prediction", "translation error (normalized units)",
             [("diag_direct", "diag_direct_const"), ("diag_skip", "diag_skip_const"), ("diag_long", "diag_skip_const")],
             "The localizer's translation errors (patch -> frame direct, back to the target skip, end of the long cycles): below "
                + "their dashed constant-prediction line it reads the transform off the affinities; at or above it, it predicts the mean."),
            ("diag-walk", "Walk accuracy on held-out clips of known motion", "share of nodes",
             [("diag_walk_accuracy", "diag_walk_chance")],
             "The share of nodes whose palindrome walk (no edge dropout) returns to them, on clips the run does not train on: "
                + "above the dashed chance level (1/N) the walk finds its way back."),
        ]
        var out: [(name: String, plot: LinePlot, reading: String)] = []
        for f in figures where f.curves.contains(where: { m.keys.contains($0.0) }) {
            var p = LinePlot(title: f.title, xLabel: stepAxis, yLabel: f.unit)
            var references = Set<String>()
            for (i, (k, reference)) in f.curves.enumerated() where m.keys.contains(k) {
                let color = seriesColors[i % seriesColors.count]
                p.series.append(PlotSeries(name: k, x: x, y: column(k), color: color, width: 2))
                if m.keys.contains(reference) && references.insert(reference).inserted {
                    p.series.append(PlotSeries(name: reference, x: x, y: column(reference), color: color, width: 1.2, dashed: true))
                }
            }
            out.append((f.name, p, f.reading))
        }
        return out
    }

    // MARK: pretraining

    static func pretraining(_ run: RunRecord) throws -> [ReportBlock] {
        var b: [ReportBlock] = [.markdown(run.isAVA ? "## Training (AVA detector)" : run.isDetect ? "## Training (person detector)" : "## Pretraining")]
        let m = run.metrics
        if !run.hasMetricsFile {
            b.append(.markdown("**Missing:** no `metrics.jsonl` in the run directory yet (the run has not logged a step), so there are no curves."))
        } else if m.rows.isEmpty {
            b.append(.markdown("**Missing:** `metrics.jsonl` is empty (no step logged yet), so there are no curves."))
        } else {
            b.append(.markdown("Curves from `metrics.jsonl` (\(m.rows.count) logged steps): each training term raw (faint) and smoothed "
                + "(exponential moving average with debiasing, weight 0.6, as TensorBoard's slider), then learning rate, gradient norm, "
                + "clips/s, data-wait fraction and time per step."))
            for (name, plot) in curvePlots(m, gradClip: run.gradClip) {
                b.append(.figure(.svg("curve-" + name, plot.title + " against step", plot.svg())))
            }
            let validation = validationPlots(m)
            if !validation.isEmpty {
                let n = m.column("val_jf").compactMap { $0 }.count
                b.append(.markdown("### Validation during training\n\nDAVIS label propagation with the encoder of the step (`eval:` of the config; "
                    + "\(n) validation(s)), scored as `cycletime eval davis`: against steps, and against training hours (the sum of step times, "
                    + "validation excluded), the time to accuracy."))
                for (name, plot) in validation {
                    b.append(.figure(.svg("curve-" + name, plot.title, plot.svg())))
                }
            }
            let diagnostics = diagnosticsPlots(m)
            if !diagnostics.isEmpty {
                b.append(.markdown("### Tracker diagnostics\n\nThe model (eval mode) on held-out clips the run cut from its own videos, "
                    + "moving by known translations (`diagnostics:` of the config), against steps. How to read each figure:\n\n"
                    + diagnostics.map { "- **\($0.plot.title)**: \($0.reading)" }.joined(separator: "\n")))
                for d in diagnostics {
                    b.append(.figure(.svg("curve-" + d.name, d.plot.title, d.plot.svg())))
                }
            }
            let last = m.rows.count, tail = max(1, last / 10)
            var rows: [[String]] = []
            for k in m.keys where k != "step" {
                let col = m.column(k)
                let vals = col.compactMap { $0 }
                let recent = col.suffix(tail).compactMap { $0 }
                rows.append([k, fmt(col.last ?? nil), fmt(recent.isEmpty ? nil : recent.reduce(0, +) / Double(recent.count)),
                             fmt(vals.min()), fmt(vals.max())])
            }
            b.append(.markdown("Final figures (last logged step \(run.lastStep ?? 0); mean over the last \(tail) step(s)):\n\n"
                + table(["metric", "last", "mean of last \(tail)", "min", "max"], rows)))
        }
        b.append(.markdown("### Config\n\nThe resolved `config.yaml` of the run:\n\n```yaml\n"
            + run.configText.trimmingCharacters(in: .newlines) + "\n```"))
        return b
    }
}
