import CycleTimePropagation
import CycleTimeVideo
import Foundation

extension Report {
    // MARK: propagation

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
        if found.contains("vip") { b += try vipSection(root + "/vip") + taskNotes(root + "/vip") }
        return b
    }

    /// A result file of `cycletime eval`, decoded as the type the evaluator wrote.
    static func evaluation<T: Decodable>(_ type: T.Type, _ path: String) throws -> T {
        do { return try EvaluationFiles.read(type, from: path) } catch { throw ReportError("\(error)") }
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
        if let jsonName = names.first(where: EvaluationFiles.isDAVIS) {
            let r = try evaluation(DAVISEvaluationResult.self, dir + "/" + jsonName)
            var bySeq: [String: [DAVISObjectScore]] = [:]
            for o in r.objects { bySeq[o.sequence, default: []].append(o) }
            let seqs = bySeq.keys.sorted()
            func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(max(xs.count, 1)) }
            let perSeq = seqs.map { s -> (String, Double, Double, Double) in
                let os = bySeq[s] ?? []
                let j = mean(os.map(\.jMean)), f = mean(os.map(\.fMean))
                return (s, j, f, (j + f) / 2)
            }
            b.append(.markdown("From `\(jsonName)`: J&F-Mean **\(fmt(r.summary.jfMean))** (J-Mean \(fmt(r.summary.jMean)), F-Mean \(fmt(r.summary.fMean)), "
                + "J-Recall \(fmt(r.summary.jRecall)), F-Recall \(fmt(r.summary.fRecall))) over \(r.objects.count) object(s) in \(seqs.count) sequence(s)."))
            let chart = BarChart(title: "DAVIS J&F per sequence", xLabel: "sequence", yLabel: "J&F (mean of J-Mean and F-Mean)",
                                 bars: perSeq.map { ($0.0, $0.3) }, range: 0...1)
            b.append(.figure(.svg("davis-jf", "DAVIS J&F per sequence (sorted)", chart.svg())))
            b.append(.markdown(table(["sequence", "objects", "J-Mean", "F-Mean", "J&F"],
                                     perSeq.map { [$0.0, String(bySeq[$0.0]?.count ?? 0), fmt($0.1), fmt($0.2), fmt($0.3)] }
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
            guard let resolution = davisResolution(davisRoot, sequence: seq) else {
                b.append(.markdown("Frames with masks are not drawn for `\(seq)`: no `\(davisRoot)/JPEGImages/<resolution>/\(seq)` folder."))
                continue
            }
            var pred: [Canvas] = [], gt: [Canvas] = []
            for s in picks {
                let framePath = davisRoot + "/JPEGImages/\(resolution)/\(seq)/\(s).jpg", gtPath = davisRoot + "/Annotations/\(resolution)/\(seq)/\(s).png"
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

    /// The resolution folder (`JPEGImages/<resolution>/`) of a DAVIS root that holds `sequence`,
    /// the first in name order (`480p` before `Full-Resolution`).
    static func davisResolution(_ root: String, sequence: String) -> String? {
        let fm = FileManager.default
        let folders = ((try? fm.contentsOfDirectory(atPath: root + "/JPEGImages")) ?? []).sorted()
        return folders.first { fm.fileExists(atPath: "\(root)/JPEGImages/\($0)/\(sequence)") }
    }

    static func readImage(_ path: String) throws -> Image {
        do { return try Image.read(path) } catch { throw ReportError("\(error)") }
    }

    static func jhmdbSection(_ dir: String, options: ReportOptions) throws -> [ReportBlock] {
        var b: [ReportBlock] = [.markdown("### JHMDB")]
        let fm = FileManager.default
        let pckPath = dir + "/" + EvaluationFiles.jhmdb
        if fm.fileExists(atPath: pckPath) {
            let r = try evaluation(PCKResult.self, pckPath)
            let rows = zip(r.thresholds, r.pck).map { ["PCK@" + String(format: "%g", $0.0), fmt($0.1)] }
            b.append(.markdown("From `pck.json` (mean over joints of the fraction of predictions within threshold x 0.6 x the diagonal "
                + "of the ground-truth joints' box; frame 0 not scored):\n\n" + table(["threshold", "PCK"], rows)))
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
                guard let pts = try? JHMDBEvaluation.readKeypoints("\(dir)/\(cls)/\(clip)/keypoints.csv") else { continue }
                func drawn(_ p: Point2) -> Bool { p.x >= 0 && p.y >= 0 }
                let frames = pts.indices.filter { pts[$0].contains(where: drawn) }
                guard frames.count > 1 else { continue }
                var tiles: [Canvas] = []
                for k in 0..<4 {
                    let t = frames[min(frames.count - 1, k * (frames.count - 1) / 3)]
                    guard let img = try? Image.read(String(format: "%@/Frames/%@/%@/%05d.png", root, cls, clip, t + 1)) else { continue }
                    var c = Canvas(image: img)
                    let p = pts[t]
                    for (a, z) in JHMDBEvaluation.skeleton where a < p.count && z < p.count && drawn(p[a]) && drawn(p[z]) {
                        c.line(p[a].x, p[a].y, p[z].x, p[z].y, .yellow, thickness: 2)
                    }
                    for (j, q) in p.enumerated() where drawn(q) { c.fillCircle(cx: q.x, cy: q.y, radius: 3, RGB.cycle[j % RGB.cycle.count]) }
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

    /// VIP: mIoU and the IoU of each class present (bars and a table) from `miou.json`.
    static func vipSection(_ dir: String) throws -> [ReportBlock] {
        var b: [ReportBlock] = [.markdown("### VIP")]
        let path = dir + "/" + EvaluationFiles.vip
        guard FileManager.default.fileExists(atPath: path) else {
            b.append(.markdown("**Missing:** `propagation/vip/miou.json` (run `cycletime eval vip --results \(dir)`)."))
            return b
        }
        let r = try evaluation(VIPResult.self, path)
        let present = r.perClass.enumerated().filter { !$0.element.isNaN }
        b.append(.markdown("From `miou.json`: mIoU **\(fmt(r.mean))** over \(present.count) class(es) present of \(r.perClass.count) "
            + "(one confusion matrix over all scored frames; a class absent from ground truth and predictions is left out)."))
        guard !present.isEmpty else { return b }
        let chart = BarChart(title: "VIP IoU per class", xLabel: "class id", yLabel: "IoU", bars: present.map { (String($0.offset), $0.element) }, range: 0...1)
        b.append(.figure(.svg("vip-iou", "VIP IoU per class (sorted)", chart.svg())))
        b.append(.markdown(table(["class", "IoU"], present.map { [String($0.offset), fmt($0.element)] } + [["**mIoU**", fmt(r.mean)]])))
        return b
    }
}
