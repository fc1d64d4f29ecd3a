import CycleTimeCore
import CycleTimeTracking
import CycleTimeTraining
import CycleTimeVideo
import Foundation

/// A report that cannot be made (not a run directory, unwritable output); the message names the path.
public struct ReportError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

// MARK: - run directories

/// The rows of a `metrics.jsonl`: keys in the order first seen, one value per key and row (nil when
/// absent or null).
public struct MetricsTable: Sendable {
    public var keys: [String] = []
    public var rows: [[String: Double]] = []

    public func column(_ key: String) -> [Double?] { rows.map { $0[key] } }
    /// The x axis: `step` when present, else the row number.
    public var steps: [Double] { rows.enumerated().map { $0.element["step"] ?? Double($0.offset + 1) } }

    /// Parses JSON lines; unreadable lines are skipped and reported in `notes` (an interrupted run
    /// may leave a half-written last line).
    public static func parse(_ text: String, file: String) -> (MetricsTable, notes: [String]) {
        var t = MetricsTable(), notes: [String] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let s = line.trimmingCharacters(in: .whitespaces)
            if s.isEmpty { continue }
            guard let obj = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] else {
                notes.append("\(file) line \(i + 1) is not a JSON object (skipped)")
                continue
            }
            var row: [String: Double] = [:]
            // Key order of the line as written (JSONSerialization loses it).
            for k in orderedKeys(s) where obj[k] != nil {
                if !t.keys.contains(k) { t.keys.append(k) }
                if let n = obj[k] as? NSNumber, !(obj[k] is Bool) { row[k] = n.doubleValue }
            }
            t.rows.append(row)
        }
        return (t, notes)
    }

    /// The top-level keys of a flat JSON object line in written order.
    static func orderedKeys(_ line: String) -> [String] {
        var keys: [String] = [], depth = 0, inString = false, escaped = false, current = "", expectKey = true
        for c in line {
            if inString {
                if escaped { escaped = false; current.append(c); continue }
                if c == "\\" { escaped = true; continue }
                if c == "\"" { inString = false; if depth == 1 && expectKey { keys.append(current) } ; continue }
                current.append(c)
                continue
            }
            switch c {
            case "\"": inString = true; current = ""
            case "{", "[": depth += 1; if depth == 1 { expectKey = true }
            case "}", "]": depth -= 1
            case ":": if depth == 1 { expectKey = false }
            case ",": if depth == 1 { expectKey = true }
            default: break
            }
        }
        return keys
    }
}

/// A training run directory as `cycletime train` leaves it.
public struct RunRecord {
    public var path: String
    public var name: String
    public var configText: String
    public var config: TrainConfig?
    public var notes: [String] = []
    public var metrics = MetricsTable()
    public var hasMetricsFile = false
    public var checkpointSteps: [Int] = []
    public var latestCheckpoint: String?

    /// Reads the run directory at `path`. A folder without `config.yaml` is not a run directory.
    public static func load(_ path: String) throws -> RunRecord {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else { throw ReportError("\(path): no such folder") }
        guard isDir.boolValue else { throw ReportError("\(path): not a folder (expected a run directory)") }
        let configPath = path + "/config.yaml", metricsPath = path + "/metrics.jsonl"
        guard fm.fileExists(atPath: configPath) else {
            throw ReportError("\(path): not a run directory (no config.yaml; `cycletime train` writes config.yaml and metrics.jsonl there)")
        }
        guard let data = fm.contents(atPath: configPath), let text = String(data: data, encoding: .utf8) else {
            throw ReportError("\(configPath): cannot read the run's config as UTF-8 text")
        }
        let trimmed = path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path
        var r = RunRecord(path: path, name: (trimmed as NSString).lastPathComponent, configText: text)
        do { r.config = try ConfigLoader.decode(TrainConfig.self, yaml: text, file: configPath) } catch {
            r.notes.append("The config could not be read as a training config (\(error)); sections that need it are left out.")
        }
        if let m = fm.contents(atPath: metricsPath) {
            r.hasMetricsFile = true
            let (t, notes) = MetricsTable.parse(String(decoding: m, as: UTF8.self), file: "metrics.jsonl")
            r.metrics = t
            r.notes += notes
        }
        r.checkpointSteps = RunDirectory.periodicSteps(path)
        let latest = path + "/checkpoints/latest.safetensors"
        if fm.fileExists(atPath: latest) { r.latestCheckpoint = latest }
        return r
    }

    /// Steps the config asks for (train.steps), when known.
    public var plannedSteps: Int? { config.flatMap { $0.train.steps > 0 ? $0.train.steps : nil } }
    public var lastStep: Int? { metrics.steps.last.map { Int($0) } }
    public var objective: String { config?.objective.rawValue ?? "unknown" }

    /// One line on where the run stands.
    public var status: String {
        let done = lastStep ?? 0
        var s = "\(done) step(s) logged"
        if let p = plannedSteps { s += " of \(p) planned" + (done >= p ? " (complete)" : " (interrupted or still running)") }
        if latestCheckpoint == nil {
            s += "; no checkpoint (checkpoints/latest.safetensors is missing)"
        } else if let c = checkpointSteps.last {
            s += "; latest checkpoint at step \(c)"
        }
        return s
    }
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

    /// The training terms of a metrics table: total `loss` first, then the others in logged order.
    public static func terms(_ m: MetricsTable) -> [String] {
        let t = m.keys.filter { $0 != "step" && known[$0] == nil }
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
            let info = known[k]!
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
        head += "\n- status: \(run.status)\n"
        head += "- made by `cycletime report` from the run's files (no Python run); figures are SVG (curves, bars) and PNG (frames)."
        b.append(.markdown(head))
        if !run.notes.isEmpty { b.append(.markdown("Notes:\n\n" + run.notes.map { "- " + $0 }.joined(separator: "\n"))) }
        b += try pretraining(run)
        b += try correspondence(run, options: options)
        b += try propagation(run, options: options)
        b += try detection(run, options: options)
        return b
    }

    // MARK: pretraining

    static func pretraining(_ run: RunRecord) throws -> [ReportBlock] {
        var b: [ReportBlock] = [.markdown("## Pretraining")]
        let m = run.metrics
        if !run.hasMetricsFile {
            b.append(.markdown("**Missing:** no `metrics.jsonl` in the run directory yet (the run has not logged a step), so there are no curves."))
        } else if m.rows.isEmpty {
            b.append(.markdown("**Missing:** `metrics.jsonl` is empty (no step logged yet), so there are no curves."))
        } else {
            b.append(.markdown("Curves from `metrics.jsonl` (\(m.rows.count) logged steps): each training term raw (faint) and smoothed "
                + "(exponential moving average with debiasing, weight 0.6, as TensorBoard's slider), then learning rate, gradient norm, "
                + "clips/s, data-wait fraction and time per step."))
            for (name, plot) in curvePlots(m, gradClip: run.config?.train.gradClip) {
                b.append(.figure(.svg("curve-" + name, plot.title + " against step", plot.svg())))
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

    // MARK: correspondence

    static func correspondence(_ run: RunRecord, options: ReportOptions) throws -> [ReportBlock] {
        var b: [ReportBlock] = [.markdown("## Correspondence")]
        guard options.correspondence else {
            b.append(.markdown("**Not drawn:** the correspondence figures were switched off (`--no-correspondence`)."))
            return b
        }
        guard let config = run.config else {
            b.append(.markdown("**Missing:** the run's config could not be read, so the model cannot be built."))
            return b
        }
        guard config.objective == .timecycle else {
            b.append(.markdown("**Not drawn:** the correspondence figures use the TimeCycle model (affinity and localizer); this run's objective is `\(config.objective.rawValue)`."))
            return b
        }
        guard let ckpt = run.latestCheckpoint else {
            b.append(.markdown("**Missing:** no checkpoint (`checkpoints/latest.safetensors`), e.g. a run interrupted before its first checkpoint; the correspondence figures need trained weights."))
            return b
        }
        let video: String
        if let v = options.video {
            video = v
        } else {
            let resolved = try? resolveVideos(config.data.videos, file: run.path + "/config.yaml")
            guard let v = resolved?.first else {
                b.append(.markdown("**Missing:** no video of the run's config (`data.videos`) is readable here; pass `--video FILE`."))
                return b
            }
            video = v
        }
        let figs = try CorrespondenceFigures.make(config: config, checkpoint: ckpt, video: video, options: options)
        b.append(.markdown("Model: TimeCycle from `\(ckpt)` (step \(run.checkpointSteps.last.map(String.init) ?? "?")); video `\(video)` "
            + "from second \(String(format: "%.1f", options.videoStart)), \(config.timecycle.frameSize)x\(config.timecycle.frameSize) centre crops "
            + "at \(String(format: "%g", config.data.fps > 0 ? config.data.fps : 0)) fps as in training."))
        for f in figs { b.append(.figure(f)) }
        return b
    }

    // MARK: propagation

    struct DAVISObject: Decodable { var sequence: String; var object: Int; var jMean: Double; var fMean: Double }
    struct DAVISSummaryJSON: Decodable { var jfMean: Double; var jMean: Double; var fMean: Double; var jRecall: Double; var fRecall: Double }
    struct DAVISResultJSON: Decodable { var objects: [DAVISObject]; var summary: DAVISSummaryJSON }

    static func propagation(_ run: RunRecord, options: ReportOptions) throws -> [ReportBlock] {
        var b: [ReportBlock] = [.markdown("## Propagation")]
        let root = run.path + "/propagation"
        let fm = FileManager.default
        let davis = root + "/davis"
        let found = ["davis", "jhmdb", "vip"].filter { fm.fileExists(atPath: root + "/" + $0) }
        if found.isEmpty {
            b.append(.markdown("**Missing:** no propagation results yet (`propagation/davis/` etc. in the run directory). Make them with\n\n```sh\n"
                + "cycletime propagate davis --checkpoint \(run.path) --root DAVIS --out \(run.path)/propagation/davis\n"
                + "cycletime eval davis --davis-root DAVIS --results \(run.path)/propagation/davis\n```"))
            return b
        }
        if found.contains("davis") { b += try davisSection(davis, options: options) + taskNotes(davis) }
        if found.contains("jhmdb") { b += try jhmdbSection(root + "/jhmdb", options: options) + taskNotes(root + "/jhmdb") }
        if found.contains("vip") {
            if let d = fm.contents(atPath: root + "/vip/miou.json"), let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
               let mean = (o["mean"] as? NSNumber)?.doubleValue {
                b.append(.markdown("### VIP\n\nmIoU \(fmt(mean)) (`propagation/vip/miou.json`)."))
            } else {
                b.append(.markdown("### VIP\n\n**Missing:** `propagation/vip/miou.json` (run `cycletime eval vip --results \(root)/vip`)."))
            }
        }
        return b
    }

    /// `notes.md` of a results folder (how the results were made), quoted in the report.
    static func taskNotes(_ dir: String) -> [ReportBlock] {
        guard let d = FileManager.default.contents(atPath: dir + "/notes.md") else { return [] }
        return [.markdown("Notes (`\((dir as NSString).lastPathComponent)/notes.md`): " + String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))]
    }

    static func davisSection(_ dir: String, options: ReportOptions) throws -> [ReportBlock] {
        var b: [ReportBlock] = [.markdown("### DAVIS")]
        let fm = FileManager.default
        let names = ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted()
        if let jsonName = names.first(where: { $0.hasPrefix("davis-eval-") && $0.hasSuffix(".json") }) {
            let path = dir + "/" + jsonName
            let r: DAVISResultJSON
            do { r = try JSONDecoder().decode(DAVISResultJSON.self, from: fm.contents(atPath: path) ?? Data()) } catch {
                throw ReportError("\(path): not a `cycletime eval davis` result (\(error))")
            }
            var bySeq: [String: [DAVISObject]] = [:]
            for o in r.objects { bySeq[o.sequence, default: []].append(o) }
            let seqs = bySeq.keys.sorted()
            func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(max(xs.count, 1)) }
            let perSeq = seqs.map { s -> (String, Double, Double, Double) in
                let os = bySeq[s]!
                let j = mean(os.map(\.jMean)), f = mean(os.map(\.fMean))
                return (s, j, f, (j + f) / 2)
            }
            b.append(.markdown("From `\(jsonName)`: J&F-Mean **\(fmt(r.summary.jfMean))** (J-Mean \(fmt(r.summary.jMean)), F-Mean \(fmt(r.summary.fMean)), "
                + "J-Recall \(fmt(r.summary.jRecall)), F-Recall \(fmt(r.summary.fRecall))) over \(r.objects.count) object(s) in \(seqs.count) sequence(s)."))
            let chart = BarChart(title: "DAVIS J&F per sequence", xLabel: "sequence", yLabel: "J&F (mean of J-Mean and F-Mean)",
                                 bars: perSeq.map { ($0.0, $0.3) }, range: 0...1)
            b.append(.figure(.svg("davis-jf", "DAVIS J&F per sequence (sorted)", chart.svg())))
            b.append(.markdown(table(["sequence", "objects", "J-Mean", "F-Mean", "J&F"],
                                     perSeq.map { [$0.0, String(bySeq[$0.0]!.count), fmt($0.1), fmt($0.2), fmt($0.3)] }
                                         + [["**all**", String(r.objects.count), fmt(r.summary.jMean), fmt(r.summary.fMean), fmt(r.summary.jfMean)]])))
        } else {
            b.append(.markdown("**Missing:** no `davis-eval-<set>.json` in `\(dir)` (score the masks with `cycletime eval davis --results \(dir)`)."))
        }
        let seqDirs = names.filter { n in
            var d: ObjCBool = false
            return !n.hasPrefix(".") && fm.fileExists(atPath: dir + "/" + n, isDirectory: &d) && d.boolValue
        }
        guard !seqDirs.isEmpty else { return b }
        guard let davisRoot = options.davisRoot else {
            b.append(.markdown("Frames with masks are not drawn: pass `--davis-root DAVIS` (the dataset the masks were propagated on)."))
            return b
        }
        var rows: [[Canvas]] = [], labels: [[String]] = [], rowLabels: [String] = []
        for seq in seqDirs {
            let stems = ((try? fm.contentsOfDirectory(atPath: dir + "/" + seq)) ?? []).filter { $0.hasSuffix(".png") }.sorted()
                .map { ($0 as NSString).deletingPathExtension }
            guard stems.count > 1 else { continue }
            let picks = (1...4).map { stems[min(stems.count - 1, $0 * (stems.count - 1) / 4)] }
            var pred: [Canvas] = [], gt: [Canvas] = []
            for s in picks {
                let framePath = davisRoot + "/JPEGImages/480p/\(seq)/\(s).jpg", gtPath = davisRoot + "/Annotations/480p/\(seq)/\(s).png"
                guard let frame = try? Image.read(framePath) else {
                    b.append(.markdown("Frames with masks are not drawn for `\(seq)`: `\(framePath)` is missing or unreadable."))
                    pred = []; break
                }
                let base = Canvas(image: frame)
                let mask = try readImage(dir + "/\(seq)/\(s).png")
                var p = base
                p.overlayLabels(mask.pixels, width: mask.width, height: mask.height, palette: mask.palette, alpha: 0.5)
                pred.append(p.resized(width: options.tileWidth))
                var g = base
                if let gm = try? Image.readPNG(gtPath), gm.channels == 1 {
                    g.overlayLabels(gm.pixels, width: gm.width, height: gm.height, palette: gm.palette, alpha: 0.5)
                }
                gt.append(g.resized(width: options.tileWidth))
            }
            guard !pred.isEmpty else { continue }
            rows.append(pred); labels.append(picks.map { "\($0)" }); rowLabels.append("\(seq) PRED")
            rows.append(gt); labels.append(picks.map { _ in "" }); rowLabels.append("\(seq) GT")
        }
        if !rows.isEmpty {
            let grid = Canvas.grid(rows, tileLabels: labels, rowLabels: rowLabels)
            b.append(.figure(try .png("davis-frames", "Propagated masks (PRED rows) next to the ground truth (GT rows), four frames per sequence", grid)))
        }
        return b
    }

    static func readImage(_ path: String) throws -> Image {
        do { return try Image.read(path) } catch { throw ReportError("\(error)") }
    }

    static func jhmdbSection(_ dir: String, options: ReportOptions) throws -> [ReportBlock] {
        var b: [ReportBlock] = [.markdown("### JHMDB")]
        let fm = FileManager.default
        if let d = fm.contents(atPath: dir + "/pck.json"), let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any] {
            let rows = o.keys.sorted().compactMap { k -> [String]? in (o[k] as? NSNumber).map { [k, fmt($0.doubleValue)] } }
            b.append(.markdown("From `pck.json`:\n\n" + table(["metric", "value"], rows)))
        } else {
            b.append(.markdown("**Missing:** `propagation/jhmdb/pck.json` (run `cycletime eval jhmdb --results \(dir)`)."))
        }
        // Keypoints drawn on frames: <dir>/<class>/<clip>/keypoints.csv over <root>/Frames/<class>/<clip>/NNNNN.png.
        guard let root = options.jhmdbRoot else {
            b.append(.markdown("Keypoints on frames are not drawn: pass `--jhmdb-root JHMDB`."))
            return b
        }
        var rows: [[Canvas]] = [], rowLabels: [String] = []
        for cls in ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted() where !cls.hasPrefix(".") {
            for clip in ((try? fm.contentsOfDirectory(atPath: dir + "/" + cls)) ?? []).sorted() {
                guard let text = try? String(contentsOfFile: "\(dir)/\(cls)/\(clip)/keypoints.csv", encoding: .utf8) else { continue }
                var pts: [Int: [Int: (Double, Double)]] = [:]
                for line in text.split(separator: "\n").dropFirst() {
                    let f = line.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
                    guard f.count >= 4, let t = Int(f[0]), let j = Int(f[1]), let x = Double(f[2]), let y = Double(f[3]), x >= 0, y >= 0 else { continue }
                    pts[t, default: [:]][j] = (x, y)
                }
                let frames = pts.keys.sorted()
                guard frames.count > 1 else { continue }
                var tiles: [Canvas] = []
                for k in 0..<4 {
                    let t = frames[min(frames.count - 1, k * (frames.count - 1) / 3)]
                    guard let img = try? Image.read(String(format: "%@/Frames/%@/%@/%05d.png", root, cls, clip, t + 1)) else { continue }
                    var c = Canvas(image: img)
                    let p = pts[t] ?? [:]
                    for (a, z) in jhmdbSkeleton { if let pa = p[a], let pz = p[z] { c.line(pa.0, pa.1, pz.0, pz.1, .yellow, thickness: 2) } }
                    for (j, q) in p { c.fillCircle(cx: q.0, cy: q.1, radius: 3, RGB.cycle[j % RGB.cycle.count]) }
                    c.text("T\(t)", x: 3, y: 3)
                    tiles.append(c.resized(width: options.tileWidth))
                }
                if !tiles.isEmpty { rows.append(tiles); rowLabels.append(clip.count > 18 ? String(clip.prefix(18)) : clip) }
                if rows.count >= 4 { break }
            }
        }
        if rows.isEmpty {
            b.append(.markdown("Keypoints on frames are not drawn: no `keypoints.csv` with frames under `\(root)/Frames/`."))
        } else {
            b.append(.figure(try .png("jhmdb-keypoints", "Propagated JHMDB keypoints (15 joints, skeleton in yellow)", Canvas.grid(rows, rowLabels: rowLabels))))
        }
        return b
    }

    /// JHMDB's 15 joints (0-based): neck, belly, face, r/l shoulder, l/r hip, l/r elbow, r/l knee, r/l wrist, l/r ankle.
    static let jhmdbSkeleton: [(Int, Int)] = [(0, 2), (0, 1), (0, 3), (0, 4), (1, 5), (1, 6), (3, 7), (4, 8), (7, 11), (8, 12),
                                               (5, 9), (6, 10), (9, 13), (10, 14)]

    // MARK: detection

    static func detection(_ run: RunRecord, options: ReportOptions) throws -> [ReportBlock] {
        var b: [ReportBlock] = [.markdown("## Detection")]
        let dir = run.path + "/ava"
        let fm = FileManager.default
        let names = ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted()
        var classNames: [Int: String] = [:]
        var evalFound = false
        for n in names where n.hasSuffix(".json") {
            guard let d = fm.contents(atPath: dir + "/" + n), let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
                  let classes = o["classes"] as? [[String: Any]] else { continue }
            evalFound = true
            var bars: [(label: String, value: Double)] = [], rows: [[String]] = []
            for c in classes {
                let id = (c["id"] as? NSNumber)?.intValue ?? 0, name = c["name"] as? String ?? "class \(id)"
                classNames[id] = name
                guard let gt = (c["ground_truth"] as? NSNumber)?.intValue, gt > 0 else { continue }
                let ap = (c["ap"] as? NSNumber)?.doubleValue
                bars.append(("\(id) \(name)", ap ?? 0))
                rows.append([String(id), name, String(gt), String((c["detections"] as? NSNumber)?.intValue ?? 0), fmt(ap)])
            }
            let mAP = (o["mAP"] as? NSNumber)?.doubleValue
            b.append(.markdown("From `ava/\(n)`: frame-mAP@0.5IoU **\(fmt(mAP))** (protocol \(o["protocol"] as? String ?? "?"), "
                + "\((o["evaluated_frames"] as? NSNumber)?.intValue ?? 0) keyframes evaluated), \(bars.count) class(es) with ground truth."))
            let chart = BarChart(title: "AVA per-class AP@0.5IoU", xLabel: "class (id name)", yLabel: "average precision", bars: bars, range: 0...1)
            b.append(.figure(.svg("ava-ap-" + (n as NSString).deletingPathExtension, "AVA per-class AP (sorted), \(n)", chart.svg())))
            b.append(.markdown(table(["id", "class", "ground truth", "detections", "AP"], rows)))
        }
        let csvs = names.filter { $0.hasSuffix(".csv") }
        if !evalFound && csvs.isEmpty {
            b.append(.markdown("**Missing:** no detection results (`ava/` in the run directory with the `cycletime ava eval --json` output and the detections CSV)."))
            return b
        }
        if !evalFound { b.append(.markdown("**Missing:** no AVA evaluation JSON (`cycletime ava eval … --json > \(dir)/eval.json`).")) }
        // Detections: video,timestamp,x1,y1,x2,y2,action,score (normalized boxes).
        var dets: [String: [(box: [Double], action: Int, score: Double)]] = [:]
        for n in csvs {
            guard let text = try? String(contentsOfFile: dir + "/" + n, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                let f = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                guard f.count == 8, let ts = Int(f[1]), let x1 = Double(f[2]), let y1 = Double(f[3]), let x2 = Double(f[4]), let y2 = Double(f[5]),
                      let a = Int(f[6]), let s = Double(f[7]) else { continue }
                dets["\(f[0]),\(ts)", default: []].append(([x1, y1, x2, y2], a, s))
            }
        }
        if dets.isEmpty {
            b.append(.markdown("No detections CSV (8 columns: video, timestamp, x1, y1, x2, y2, action, score) in `ava/`."))
            return b
        }
        guard let frames = options.avaFrames else {
            b.append(.markdown("Detections (\(dets.values.map(\.count).reduce(0, +)) rows on \(dets.count) keyframes) are not drawn: pass `--ava-frames FRAMES`."))
            return b
        }
        var tiles: [Canvas] = []
        for key in dets.keys.sorted() {
            let parts = key.split(separator: ","), video = String(parts[0]), ts = Int(parts[1]) ?? 900
            let frame = String(format: "%@/%@/%@_%06d.jpg", frames, video, video, 30 * (ts - 900) + 1)
            guard let img = try? Image.read(frame) else { continue }
            var c = Canvas(image: img).resized(width: 2 * options.tileWidth)
            // The best actions of each box (boxes grouped by coordinates), top 2 labels.
            var byBox: [[Double]: [(Int, Double)]] = [:]
            for d in dets[key]! { byBox[d.box, default: []].append((d.action, d.score)) }
            for (i, (box, acts)) in byBox.sorted(by: { ($0.value.map(\.1).max() ?? 0) > ($1.value.map(\.1).max() ?? 0) }).prefix(6).enumerated() {
                let color = RGB.cycle[i % RGB.cycle.count]
                let w = Double(c.width), h = Double(c.height)
                c.box(x0: box[0] * w, y0: box[1] * h, x1: box[2] * w, y1: box[3] * h, color)
                for (j, a) in acts.sorted(by: { $0.1 > $1.1 }).prefix(2).enumerated() {
                    let label = (classNames[a.0] ?? "action \(a.0)") + String(format: " %.2f", a.1)
                    c.text(label, x: Int(box[0] * w) + 2, y: Int(box[1] * h) + 2 + 9 * j, color)
                }
            }
            c.text("\(video) \(ts)", x: 2, y: c.height - 9)
            tiles.append(c)
            if tiles.count >= 4 { break }
        }
        if tiles.isEmpty {
            b.append(.markdown("Detections are not drawn: no keyframe image found under `\(frames)` (layout `<video>/<video>_<frame:06d>.jpg`)."))
        } else {
            b.append(.figure(try .png("ava-detections", "Detections on keyframes (top 2 actions per box with scores)", Canvas.grid([tiles]))))
        }
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
            rows.append([r.name, r.objective, r.config.map { $0.objective == .crw ? $0.crw.encoder : $0.timecycle.encoder } ?? "?",
                         String(r.lastStep ?? 0), fmt(loss), fmt(cps.isEmpty ? nil : cps.reduce(0, +) / Double(cps.count)),
                         davisJF(r).map { fmt($0) } ?? "not run", avaMAP(r).map { fmt($0) } ?? "not run"])
        }
        b.append(.markdown("Final figures:\n\n" + table(["run", "objective", "encoder", "steps", "final loss (smoothed)", "mean clips/s",
                                                         "DAVIS J&F", "AVA mAP"], rows)))
        return b
    }

    static func davisJF(_ r: RunRecord) -> Double? {
        let dir = r.path + "/propagation/davis"
        guard let n = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted().first(where: { $0.hasPrefix("davis-eval-") && $0.hasSuffix(".json") }),
              let d = FileManager.default.contents(atPath: dir + "/" + n) else { return nil }
        return (try? JSONDecoder().decode(DAVISResultJSON.self, from: d))?.summary.jfMean
    }

    static func avaMAP(_ r: RunRecord) -> Double? {
        let dir = r.path + "/ava"
        for n in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() where n.hasSuffix(".json") {
            if let d = FileManager.default.contents(atPath: dir + "/" + n), let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
               let m = (o["mAP"] as? NSNumber)?.doubleValue { return m }
        }
        return nil
    }
}

// MARK: - writing

public enum ReportWriter {
    /// Writes `<out>/<name>.ipynb`, `<out>/<name>.md` and `<out>/<name>_files/` (name = last path
    /// component of `out`). Everything is written into a temporary folder beside `out`, then renamed
    /// into place, so an interrupted report leaves the previous one (or none), never half of one.
    @discardableResult
    public static func write(_ blocks: [ReportBlock], title: String, to out: String) throws -> (notebook: String, markdown: String) {
        let fm = FileManager.default
        var outPath = out
        while outPath.count > 1 && outPath.hasSuffix("/") { outPath.removeLast() }
        let name = (outPath as NSString).lastPathComponent
        let parent = (outPath as NSString).deletingLastPathComponent
        let parentDir = parent.isEmpty ? "." : parent
        do { try fm.createDirectory(atPath: parentDir, withIntermediateDirectories: true) } catch {
            throw ReportError("\(parentDir): cannot create the output folder (\(error.localizedDescription))")
        }
        let tmp = parentDir + "/.\(name).tmp-\(getpid())"
        try? fm.removeItem(atPath: tmp)
        do {
            let files = name + "_files"
            try fm.createDirectory(atPath: tmp + "/" + files, withIntermediateDirectories: true)
            var used = Set<String>()
            var unique: [ReportBlock] = []
            for blk in blocks {
                guard case .figure(var f) = blk else { unique.append(blk); continue }
                let base = (f.name as NSString).deletingPathExtension, ext = (f.name as NSString).pathExtension
                var n = f.name, i = 2
                while used.contains(n) { n = "\(base)-\(i).\(ext)"; i += 1 }
                used.insert(n)
                f.name = n
                try f.data.write(to: URL(fileURLWithPath: tmp + "/" + files + "/" + n))
                unique.append(.figure(f))
            }
            try Notebook.json(unique, title: title).write(to: URL(fileURLWithPath: tmp + "/\(name).ipynb"))
            try Data(Notebook.markdown(unique, figuresFolder: files).utf8).write(to: URL(fileURLWithPath: tmp + "/\(name).md"))
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw ReportError("\(outPath): cannot write the report (\(error.localizedDescription))")
        }
        let old = parentDir + "/.\(name).old-\(getpid())"
        if fm.fileExists(atPath: outPath) {
            guard rename(outPath, old) == 0 else {
                try? fm.removeItem(atPath: tmp)
                throw ReportError("\(outPath): cannot replace the previous report: \(String(cString: strerror(errno)))")
            }
        }
        guard rename(tmp, outPath) == 0 else {
            let why = String(cString: strerror(errno))
            _ = rename(old, outPath)
            try? fm.removeItem(atPath: tmp)
            throw ReportError("\(outPath): cannot move the report into place: \(why)")
        }
        try? fm.removeItem(atPath: old)
        return (outPath + "/\(name).ipynb", outPath + "/\(name).md")
    }
}
