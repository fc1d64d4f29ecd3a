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
