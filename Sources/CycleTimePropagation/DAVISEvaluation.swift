import CycleTimeCore
import CycleTimeData
import CycleTimeVideo
import Foundation

/// A bad input of an evaluator or of propagation: one line naming the file, key or field.
public struct EvaluationError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// Region (J) and boundary (F) measures of one binary mask pair, and the per-object statistics,
/// with the semantics of davisvideochallenge/davis2017-evaluation (semi-supervised task).
public enum DAVISMetrics {
    /// Jaccard index of two binary masks; 1 when both are empty.
    public static func jaccard(_ gt: [Bool], _ pred: [Bool]) -> Double {
        precondition(gt.count == pred.count)
        var inter = 0, union = 0
        for i in 0..<gt.count {
            let a = gt[i], b = pred[i]
            if a && b { inter += 1 }
            if a || b { union += 1 }
        }
        return union == 0 ? 1 : Double(inter) / Double(union)
    }

    /// One-pixel-wide boundary map: a pixel is on the boundary when it differs from its east,
    /// south or south-east neighbour; on the last row only the east neighbour counts, on the last
    /// column only the south one; the bottom-right pixel is never a boundary.
    public static func boundaryMap(_ seg: [Bool], width w: Int, height h: Int) -> [Bool] {
        var b = [Bool](repeating: false, count: w * h)
        for y in 0..<h {
            for x in 0..<w {
                let s = seg[y * w + x]
                let lastRow = y == h - 1, lastCol = x == w - 1
                if lastRow && lastCol { continue }
                if lastRow { b[y * w + x] = s != seg[y * w + x + 1]; continue }
                if lastCol { b[y * w + x] = s != seg[(y + 1) * w + x]; continue }
                b[y * w + x] = s != seg[y * w + x + 1] || s != seg[(y + 1) * w + x] || s != seg[(y + 1) * w + x + 1]
            }
        }
        return b
    }

    /// Tolerance radius in pixels: `boundThreshold` itself when >= 1, else
    /// ceil(boundThreshold x image diagonal).
    public static func boundRadius(width: Int, height: Int, boundThreshold: Double = 0.008) -> Int {
        if boundThreshold >= 1 { return Int(boundThreshold) }
        return Int((boundThreshold * (Double(width * width + height * height)).squareRoot()).rounded(.up))
    }

    /// Number of `points` pixels within the disk of radius r (x^2 + y^2 <= r^2) of a `target` pixel,
    /// i.e. the sum of `points` x dilate(target, disk(r)).
    static func matched(_ points: [Bool], near target: [Bool], width w: Int, height h: Int, radius r: Int) -> Int {
        // Row prefix sums of the target map, then each point checks 2r+1 row intervals.
        var prefix = [Int32](repeating: 0, count: h * (w + 1))
        for y in 0..<h {
            var acc: Int32 = 0
            let base = y * (w + 1)
            for x in 0..<w {
                if target[y * w + x] { acc += 1 }
                prefix[base + x + 1] = acc
            }
        }
        var half = [Int](repeating: 0, count: 2 * r + 1)
        for dy in -r...r {
            var dx = 0
            while (dx + 1) * (dx + 1) + dy * dy <= r * r { dx += 1 }
            half[dy + r] = dx
        }
        var count = 0
        for y in 0..<h {
            for x in 0..<w where points[y * w + x] {
                for dy in max(-r, -y)...min(r, h - 1 - y) {
                    let hw = half[dy + r]
                    let base = (y + dy) * (w + 1)
                    if prefix[base + min(x + hw, w - 1) + 1] - prefix[base + max(x - hw, 0)] > 0 { count += 1; break }
                }
            }
        }
        return count
    }

    /// Boundary F-measure of a predicted mask against the ground truth (tolerance
    /// `boundThreshold` x diagonal); the empty-boundary cases as the official code defines them.
    public static func boundaryF(_ gt: [Bool], _ pred: [Bool], width: Int, height: Int, boundThreshold: Double = 0.008) -> Double {
        let r = boundRadius(width: width, height: height, boundThreshold: boundThreshold)
        let fgB = boundaryMap(pred, width: width, height: height)
        let gtB = boundaryMap(gt, width: width, height: height)
        let nFg = fgB.reduce(0) { $0 + ($1 ? 1 : 0) }, nGt = gtB.reduce(0) { $0 + ($1 ? 1 : 0) }
        let precision: Double, recall: Double
        if nFg == 0 && nGt > 0 { precision = 1; recall = 0 }
        else if nFg > 0 && nGt == 0 { precision = 0; recall = 1 }
        else if nFg == 0 && nGt == 0 { precision = 1; recall = 1 }
        else {
            precision = Double(matched(fgB, near: gtB, width: width, height: height, radius: r)) / Double(nFg)
            recall = Double(matched(gtB, near: fgB, width: width, height: height, radius: r)) / Double(nGt)
        }
        return precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall)
    }

    /// Mean, recall (share of values > 0.5) and decay (mean of the first minus mean of the last of
    /// four overlapping quantile bins) of per-frame values.
    public static func statistics(_ v: [Double]) -> (mean: Double, recall: Double, decay: Double) {
        let n = v.count
        guard n > 0 else { return (.nan, .nan, .nan) }
        let mean = v.reduce(0, +) / Double(n)
        let recall = Double(v.filter { $0 > 0.5 }.count) / Double(n)
        // Bin edges: round(linspace(1, n, 5) + 1e-10) - 1, each bin inclusive of both edges.
        let ids = (0...4).map { i -> Int in
            let x = 1 + Double(i) * Double(n - 1) / 4 + 1e-10
            return Int(x.rounded(.toNearestOrEven)) - 1
        }
        func binMean(_ a: Int, _ b: Int) -> Double {
            let s = v[a...b]
            return s.reduce(0, +) / Double(s.count)
        }
        return (mean, recall, binMean(ids[0], ids[1]) - binMean(ids[3], ids[4]))
    }
}

/// Scores of one object of one sequence.
public struct DAVISObjectScore: Sendable, Codable {
    public var sequence: String
    public var object: Int
    public var frames: [String]
    public var j: [Double]
    public var f: [Double]
    public var jMean: Double, jRecall: Double, jDecay: Double
    public var fMean: Double, fRecall: Double, fDecay: Double
    /// `<sequence>_<object>`, as the official per-sequence table names it.
    public var name: String { "\(sequence)_\(object)" }
}

/// The official summary: means over all objects of all sequences.
public struct DAVISSummary: Sendable, Codable {
    public var jfMean: Double
    public var jMean: Double, jRecall: Double, jDecay: Double
    public var fMean: Double, fRecall: Double, fDecay: Double
}

public struct DAVISEvaluationResult: Sendable, Codable {
    public var objects: [DAVISObjectScore]
    public var summary: DAVISSummary
}

/// `cycletime eval davis`: semi-supervised DAVIS-2017 evaluation of result PNGs
/// (`<results>/<sequence>/<frame>.png`, object ids as palette indices).
///
/// Semantics of davisvideochallenge/davis2017-evaluation: the frames scored are those with a
/// ground-truth annotation, minus the first and the last of them; the objects are the ids 1...max
/// of the first annotation (255 = void counts as background); results are matched by sequence
/// and frame name; an id in a result above the number of objects is an error.
public enum DAVISEvaluation {
    /// Reads a one-channel (palette or gray) PNG as its values.
    static func readLabels(_ path: String) throws -> Image {
        let img: Image
        do { img = try Image.readPNG(path) } catch { throw EvaluationError("\(error)") }
        guard img.channels == 1 else {
            throw EvaluationError("\(path): \(img.channels)-channel PNG; a mask must be a palette or gray PNG of object ids")
        }
        return img
    }

    /// Scores `results` against the set's annotations. `sequences` (default: every sequence of the
    /// set) and `maxFrames` (default: all) restrict the scoring to those sequences and to the
    /// annotations of their first `maxFrames` frames, as propagated by `propagate davis
    /// --sequences ... --max-frames N` (the first and last of those annotations are not scored).
    public static func evaluate(davisRoot: String, results: String, set: String = "val", resolution: String = "480p",
                                sequences: [String]? = nil, maxFrames: Int? = nil,
                                boundThreshold: Double = 0.008, progress: ((String) -> Void)? = nil) throws -> DAVISEvaluationResult {
        let dataset = try DAVISDataset.open(root: davisRoot, set: set, resolution: resolution)
        let names = try dataset.names(sequences)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: results, isDirectory: &isDir), isDir.boolValue else {
            throw EvaluationError("\(results): no such results folder")
        }
        var objects: [DAVISObjectScore] = []
        for (si, name) in names.enumerated() {
            var annotations: [String]
            do { annotations = try dataset.annotationFiles(of: name) } catch { throw EvaluationError("\(error)") }
            if let maxFrames {
                let seq: DAVISSequence
                do { seq = try dataset.sequence(name) } catch { throw EvaluationError("\(error)") }
                let kept = Set(seq.framePaths.prefix(maxFrames).map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension })
                annotations = annotations.filter { kept.contains((($0 as NSString).lastPathComponent as NSString).deletingPathExtension) }
            }
            objects += try evaluateSequence(name, annotations: annotations, results: results, boundThreshold: boundThreshold)
            progress?("[\(si + 1)/\(names.count)] \(name)")
        }
        func mean(_ k: KeyPath<DAVISObjectScore, Double>) -> Double { objects.map { $0[keyPath: k] }.reduce(0, +) / Double(objects.count) }
        let s = DAVISSummary(jfMean: (mean(\.jMean) + mean(\.fMean)) / 2,
                             jMean: mean(\.jMean), jRecall: mean(\.jRecall), jDecay: mean(\.jDecay),
                             fMean: mean(\.fMean), fRecall: mean(\.fRecall), fDecay: mean(\.fDecay))
        return DAVISEvaluationResult(objects: objects, summary: s)
    }

    /// One sequence; `annotations` are its ground-truth files in frame order (the frame list, as
    /// the official evaluator takes it from the annotations, not from the JPEGs).
    static func evaluateSequence(_ name: String, annotations annotated: [String], results: String, boundThreshold: Double) throws -> [DAVISObjectScore] {
        guard annotated.count >= 3 else {
            throw EvaluationError("\(name): \(annotated.count) annotated frame(s); the first and last are not scored, so at least 3 are needed")
        }
        let firstPath = annotated[0]
        let first = try readLabels(firstPath)
        let w = first.width, h = first.height
        let nObjects = Int(first.pixels.map { $0 == 255 ? 0 : $0 }.max() ?? 0)
        if nObjects == 0 { throw EvaluationError("\(firstPath): no object in the first annotation") }
        let scored = Array(annotated[1..<(annotated.count - 1)])
        let seqDir = results + "/" + name
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: seqDir, isDirectory: &isDir), isDir.boolValue else {
            throw EvaluationError("\(seqDir): no results folder for sequence '\(name)'")
        }
        var gts: [Image] = [], preds: [Image] = [], frameNames: [String] = []
        for gp in scored {
            let stem = ((gp as NSString).lastPathComponent as NSString).deletingPathExtension
            let pp = seqDir + "/" + stem + ".png"
            guard FileManager.default.fileExists(atPath: pp) else {
                throw EvaluationError("\(pp): missing result frame (sequence '\(name)', frame '\(stem)')")
            }
            let g = try readLabels(gp), p = try readLabels(pp)
            guard g.width == w && g.height == h else { throw EvaluationError("\(gp): \(g.width)x\(g.height), the first annotation is \(w)x\(h)") }
            guard p.width == w && p.height == h else { throw EvaluationError("\(pp): result is \(p.width)x\(p.height), the annotation is \(w)x\(h)") }
            if let m = p.pixels.max(), Int(m) > nObjects {
                throw EvaluationError("\(pp): object id \(m) but sequence '\(name)' has \(nObjects) object(s)")
            }
            gts.append(g); preds.append(p); frameNames.append(stem)
        }
        let n = scored.count
        var jv = [Double](repeating: 0, count: n * nObjects), fv = jv
        jv.withUnsafeMutableBufferPointer { jb in
            fv.withUnsafeMutableBufferPointer { fb in
                let jp = SendablePointer(jb.baseAddress!), fp = SendablePointer(fb.baseAddress!)
                Parallel.forEach(n * nObjects, costPerItem: 1 << 20) { k in
                    let t = k / nObjects, o = UInt8(k % nObjects + 1)
                    let g = gts[t].pixels.map { $0 == o }, p = preds[t].pixels.map { $0 == o }
                    jp[t * nObjects + Int(o) - 1] = DAVISMetrics.jaccard(g, p)
                    fp[t * nObjects + Int(o) - 1] = DAVISMetrics.boundaryF(g, p, width: w, height: h, boundThreshold: boundThreshold)
                }
            }
        }
        return (1...nObjects).map { o in
            let j = (0..<n).map { jv[$0 * nObjects + o - 1] }, f = (0..<n).map { fv[$0 * nObjects + o - 1] }
            let js = DAVISMetrics.statistics(j), fs = DAVISMetrics.statistics(f)
            return DAVISObjectScore(sequence: name, object: o, frames: frameNames, j: j, f: f,
                                    jMean: js.mean, jRecall: js.recall, jDecay: js.decay,
                                    fMean: fs.mean, fRecall: fs.recall, fDecay: fs.decay)
        }
    }
}

extension DAVISEvaluationResult {
    /// The terminal table: the global figures, then one row per object.
    public func table() -> String {
        let s = summary
        func f(_ x: Double) -> String { String(format: "%.6f", x) }
        var out = "J&F-Mean  J-Mean    J-Recall  J-Decay   F-Mean    F-Recall  F-Decay\n"
        out += [s.jfMean, s.jMean, s.jRecall, s.jDecay, s.fMean, s.fRecall, s.fDecay].map(f).joined(separator: "  ") + "\n\n"
        let width = max(8, objects.map { $0.name.count }.max() ?? 0)
        out += "Sequence".padding(toLength: width, withPad: " ", startingAt: 0) + "  J-Mean    F-Mean\n"
        for o in objects {
            out += o.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  \(f(o.jMean))  \(f(o.fMean))\n"
        }
        return out
    }

    /// The official CSV files: global figures and per-object J-Mean/F-Mean.
    public func globalCSV() -> String {
        let s = summary
        return "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n"
            + [s.jfMean, s.jMean, s.jRecall, s.jDecay, s.fMean, s.fRecall, s.fDecay].map { String(format: "%.6f", $0) }.joined(separator: ",") + "\n"
    }
    public func perSequenceCSV() -> String {
        "Sequence,J-Mean,F-Mean\n" + objects.map { "\($0.name),\(String(format: "%.6f", $0.jMean)),\(String(format: "%.6f", $0.fMean))" }.joined(separator: "\n") + "\n"
    }
}
