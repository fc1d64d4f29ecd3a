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
    /// (validation scores, `val_*`, are not training terms).
    public static func terms(_ m: MetricsTable) -> [String] {
        let t = m.keys.filter { $0 != "step" && known[$0] == nil && !$0.hasPrefix("val_") }
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

    // MARK: pretraining

    static func pretraining(_ run: RunRecord) throws -> [ReportBlock] {
        var b: [ReportBlock] = [.markdown(run.isAVA ? "## Training (AVA detector)" : "## Pretraining")]
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
