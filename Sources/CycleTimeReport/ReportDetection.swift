import CycleTimeDetection
import CycleTimeVideo
import Foundation

extension Report {
    // MARK: detection

    /// An `ava eval --json` output, or nil for a file that is not one.
    static func avaEvaluation(_ path: String) -> AVAEvalResult? {
        guard let d = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(AVAEvalResult.self, from: d)
    }

    static func detection(_ run: RunRecord, options: ReportOptions) throws -> [ReportBlock] {
        var b: [ReportBlock] = [.markdown("## Detection")]
        let dir = run.path + "/ava"
        let fm = FileManager.default
        let names = ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted()
        var classNames: [Int: String] = [:]
        var evalFound = false
        for n in names where n.hasSuffix(".json") {
            guard let r = avaEvaluation(dir + "/" + n) else { continue }
            evalFound = true
            var bars: [(label: String, value: Double)] = [], rows: [[String]] = []
            for c in r.classes {
                classNames[c.id] = c.name
                guard c.groundTruth > 0 else { continue }
                bars.append(("\(c.id) \(c.name)", c.ap ?? 0))
                rows.append([String(c.id), c.name, String(c.groundTruth), String(c.detections), fmt(c.ap)])
            }
            b.append(.markdown("From `ava/\(n)`: frame-mAP@0.5IoU **\(fmt(r.mAP))** (protocol \(r.protocolName ?? "?"), "
                + "\(r.evaluatedFrames) keyframes evaluated), \(bars.count) class(es) with ground truth."))
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
            for d in dets[key] ?? [] { byBox[d.box, default: []].append((d.action, d.score)) }
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
}

extension Report {
    // MARK: person detection (detect runs)

    static func detectorName(_ d: DetectConfig) -> String {
        d.detector.checkpoint.isEmpty ? "ResNet-\(d.detector.depth)-FPN" : "from \((d.detector.checkpoint as NSString).lastPathComponent)"
    }

    /// A `detect train` run: each `detect test` summary in `detect/` (person AP@0.5, its
    /// precision-recall curve) and a few keyframes with the ground-truth boxes (green) and the
    /// detector's boxes with their scores, read back from the proposal file the summary names.
    static func personDetection(_ run: RunRecord, options: ReportOptions) throws -> [ReportBlock] {
        var b: [ReportBlock] = [.markdown("## Person detection")]
        let dir = run.path + "/detect"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted().filter { $0.hasSuffix(".json") }
        let summaries = names.compactMap { n -> (String, DetectTestSummary)? in
            guard let d = FileManager.default.contents(atPath: dir + "/" + n),
                  let s = try? JSONDecoder().decode(DetectTestSummary.self, from: d) else { return nil }
            return (n, s)
        }
        if summaries.isEmpty {
            b.append(.markdown("**Missing:** no `detect test` summary in `detect/` (run `cycletime detect test --config \(run.path)/config.yaml "
                + "--checkpoint \(run.path)/checkpoints/latest.safetensors --out proposals.json`; it saves one there)."))
            return b
        }
        for (n, s) in summaries {
            let stem = (n as NSString).deletingPathExtension
            guard let ap = s.personAP else {
                b.append(.markdown("From `detect/\(n)`: \(s.boxes) person boxes on \(s.keyframes) keyframes of `\(s.checkpoint)`; no ground truth to score."))
                continue
            }
            b.append(.markdown("From `detect/\(n)`: person AP@0.5 **\(fmt(ap.ap))** (PASCAL VOC all-point) of `\(s.checkpoint)` on "
                + "\(s.keyframes) keyframes of `\(s.annotations)`: \(ap.groundTruth) ground-truth boxes, \(ap.detections) detections, "
                + "\(ap.truePositives) true positives; proposals in `\(s.proposals)`."))
            if !ap.recall.isEmpty {
                var p = LinePlot(title: "Person precision-recall at IoU 0.5 (AP \(fmt(ap.ap)))", xLabel: "recall", yLabel: "precision")
                p.series.append(PlotSeries(name: "detections by descending score", x: ap.recall, y: ap.precision, color: seriesColors[0]))
                b.append(.figure(.svg("detect-pr-" + stem, "Precision against recall of the person boxes, \(n)", p.svg())))
            }
            if let tiles = personTiles(run, summary: s, options: options, into: &b), !tiles.isEmpty {
                b.append(.figure(try .png("detect-boxes-" + stem, "Keyframes: ground truth (green), detections (colour, with scores)",
                                          Canvas.grid([tiles]))))
            }
        }
        return b
    }

    /// Up to four keyframes of the summary's proposals, drawn; nil (with a line in `b` saying why)
    /// when the proposals, the annotations or the frames cannot be read.
    static func personTiles(_ run: RunRecord, summary s: DetectTestSummary, options: ReportOptions, into b: inout [ReportBlock]) -> [Canvas]? {
        guard let config = run.detectConfig else { return nil }
        let proposals: AVAProposals, gt: [AVAKey: [AVABox]], store: AVAFrameStore
        do {
            proposals = try AVAProposals.read(s.proposals)
            let csv = try AVACSV.read(s.annotations)
            gt = try personGroundTruth(csv, excluded: [])
            store = try config.data.frameStore()
        } catch {
            b.append(.markdown("Boxes are not drawn: \(error)"))
            return nil
        }
        var tiles: [Canvas] = []
        for key in proposals.boxes.keys.sorted().prefix(4) {
            guard let frame = try? store.frames(key.videoID, [config.sampler.keyframe(key.timestamp)]).first else { continue }
            var c = Canvas(image: Image(width: frame.width, height: frame.height, channels: 3, pixels: frame.rgb)).resized(width: 2 * options.tileWidth)
            let w = Double(c.width), h = Double(c.height)
            for g in gt[key] ?? [] { c.box(x0: g.x1 * w, y0: g.y1 * h, x1: g.x2 * w, y1: g.y2 * h, .green, thickness: 3) }
            for (i, d) in (proposals.boxes[key] ?? []).sorted(by: { $0.score > $1.score }).prefix(6).enumerated() {
                let color = RGB.cycle[(i + 2) % RGB.cycle.count]
                c.box(x0: d.box.x1 * w, y0: d.box.y1 * h, x1: d.box.x2 * w, y1: d.box.y2 * h, color)
                c.text(String(format: "%.2f", d.score), x: Int(d.box.x1 * w) + 2, y: Int(d.box.y1 * h) + 2, color)
            }
            c.text("\(key.videoID) \(key.timestamp)", x: 2, y: c.height - 9)
            tiles.append(c)
        }
        if tiles.isEmpty { b.append(.markdown("Boxes are not drawn: no keyframe of `\(s.proposals)` could be read from `\(config.data.frames)`.")) }
        return tiles
    }
}
