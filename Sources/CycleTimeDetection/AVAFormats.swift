import Foundation
import CycleTimeCore

/// A bad AVA input file: the message names the file, the line (1-based) when known, and the field.
public struct AVAError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let file: String
    public let line: Int?
    public let message: String
    public init(_ file: String, line: Int? = nil, _ message: String) {
        self.file = file; self.line = line; self.message = message
    }
    public var description: String { line.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)" }
    public var errorDescription: String? { description }
}

/// A keyframe: video id and integer second. Timestamps are compared as numbers, so "0902" == "902".
public struct AVAKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let videoID: String
    public let timestamp: Int
    public init(_ videoID: String, _ timestamp: Int) { self.videoID = videoID; self.timestamp = timestamp }
    /// The AVA key string ("%s,%04d"), as the official evaluation and mmaction2 write it.
    public var description: String { videoID + "," + String(format: "%04d", timestamp) }
    public static func < (a: AVAKey, b: AVAKey) -> Bool { (a.videoID, a.timestamp) < (b.videoID, b.timestamp) }

    /// Parses a `"video_id,timestamp"` key (the video id may itself contain commas: split at the last).
    public init?(parsing s: String) {
        guard let comma = s.lastIndex(of: ",") else { return nil }
        let vid = String(s[..<comma]).trimmingCharacters(in: .whitespaces)
        guard !vid.isEmpty, let t = parseTimestamp(String(s[s.index(after: comma)...])) else { return nil }
        self.init(vid, t)
    }
}

/// A box in normalized [0, 1] image coordinates (x1, y1, x2, y2), as AVA files store them.
public struct AVABox: Hashable, Sendable {
    public var x1, y1, x2, y2: Double
    public init(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double) { self.x1 = x1; self.y1 = y1; self.x2 = x2; self.y2 = y2 }
    public var area: Double { (x2 - x1) * (y2 - y1) }
    /// Intersection over union, as the official evaluation computes it (empty overlap = 0).
    public func iou(_ o: AVABox) -> Double {
        let iw = max(0, min(x2, o.x2) - max(x1, o.x1)), ih = max(0, min(y2, o.y2) - max(y1, o.y1))
        let inter = iw * ih
        let union = area + o.area - inter
        return union > 0 ? inter / union : 0
    }
}

/// A box with a score (a person proposal or a detection).
public struct ScoredBox: Hashable, Sendable {
    public var box: AVABox
    public var score: Double
    public init(_ box: AVABox, score: Double) { self.box = box; self.score = score }
}

func parseTimestamp(_ field: String) -> Int? {
    let s = field.trimmingCharacters(in: .whitespaces)
    // Bounded so that frame arithmetic on it (fps x seconds) cannot overflow.
    if let v = Int(s) { return abs(v) < 1_000_000_000 ? v : nil }
    // "902.0" style: an integral number written as a float.
    if let d = Double(s), d.isFinite, d == d.rounded(), abs(d) < 1e9 { return Int(d) }
    return nil
}

/// Lines of a text file, with their 1-based numbers; blank lines dropped. Missing, unreadable or
/// empty files are errors naming the file.
func readDataLines(_ path: String, what: String) throws -> [(number: Int, text: String)] {
    guard FileManager.default.fileExists(atPath: path) else { throw AVAError(path, "no such \(what) file") }
    guard let data = FileManager.default.contents(atPath: path) else { throw AVAError(path, "cannot read \(what) file") }
    guard let text = String(data: data, encoding: .utf8) else { throw AVAError(path, "\(what) file is not UTF-8 text") }
    var out: [(Int, String)] = []
    for (i, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
        let t = raw.trimmingCharacters(in: .whitespaces)
        if !t.isEmpty { out.append((i + 1, t)) }
    }
    if out.isEmpty { throw AVAError(path, "empty \(what) file") }
    return out
}

/// Comma-separated fields, trimmed.
func csvFields(_ line: String) -> [String] {
    line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
}

/// Parses box fields [x1, y1, x2, y2] (finite numbers) or throws naming the column.
func parseBox(_ f: ArraySlice<String>, file: String, line: Int) throws -> AVABox {
    let names = ["x1", "y1", "x2", "y2"]
    var v = [Double]()
    for (k, s) in f.enumerated() {
        guard let d = Double(s), d.isFinite else { throw AVAError(file, line: line, "field \(names[k]) '\(s)' is not a number") }
        v.append(d)
    }
    return AVABox(v[0], v[1], v[2], v[3])
}

// MARK: Label maps

/// The action classes: `item { name id }` or `label { name label_id label_type }` pbtxt, or
/// `id: name` lines (mmaction2's label_map.txt). Order is the file's.
public struct AVALabelMap: Sendable {
    public struct Entry: Hashable, Sendable { public let id: Int; public let name: String }
    public let entries: [Entry]
    public var ids: [Int] { entries.map(\.id) }
    public func name(of id: Int) -> String? { entries.first { $0.id == id }?.name }
    public func contains(_ id: Int) -> Bool { entries.contains { $0.id == id } }

    public init(_ entries: [Entry]) { self.entries = entries }

    public static func read(_ path: String) throws -> AVALabelMap {
        let lines = try readDataLines(path, what: "label map")
        let entries = lines.contains(where: { $0.text.contains("{") })
            ? try parsePbtxt(lines, path: path) : try parseIDName(lines, path: path)
        var seen = Set<Int>()
        for e in entries where !seen.insert(e.id).inserted { throw AVAError(path, "duplicate class id \(e.id)") }
        if entries.isEmpty { throw AVAError(path, "no classes in label map") }
        return AVALabelMap(entries)
    }

    static func parseIDName(_ lines: [(number: Int, text: String)], path: String) throws -> [Entry] {
        try lines.filter { !$0.text.hasPrefix("#") }.map { l in
            guard let colon = l.text.firstIndex(of: ":"),
                  let id = Int(l.text[..<colon].trimmingCharacters(in: .whitespaces)) else {
                throw AVAError(path, line: l.number, "expected 'id: name', got '\(l.text)'")
            }
            let name = l.text[l.text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if name.isEmpty { throw AVAError(path, line: l.number, "class \(id) has an empty name") }
            return Entry(id: id, name: name)
        }
    }

    /// Blocks `item { ... }` / `label { ... }` with fields `name: "..."`, `id: N` or `label_id: N`
    /// (other fields such as label_type or display_name are read and ignored).
    static func parsePbtxt(_ lines: [(number: Int, text: String)], path: String) throws -> [Entry] {
        var out: [Entry] = []
        var inBlock = false, blockLine = 0
        var name: String?, id: Int?
        for l in lines where !l.text.hasPrefix("#") {
            var t = l.text
            if !inBlock {
                guard t.hasSuffix("{") else { throw AVAError(path, line: l.number, "expected 'item {' or 'label {', got '\(t)'") }
                inBlock = true; blockLine = l.number; name = nil; id = nil
                t = String(t.dropLast()).trimmingCharacters(in: .whitespaces)
                let head = t
                guard head == "item" || head == "label" else { throw AVAError(path, line: l.number, "unknown block '\(head)' (item or label)") }
                continue
            }
            if t == "}" {
                guard let n = name else { throw AVAError(path, line: blockLine, "block without a name") }
                guard let i = id else { throw AVAError(path, line: blockLine, "block '\(n)' without an id or label_id") }
                out.append(Entry(id: i, name: n))
                inBlock = false
                continue
            }
            guard let colon = t.firstIndex(of: ":") else { throw AVAError(path, line: l.number, "expected 'field: value', got '\(t)'") }
            let key = t[..<colon].trimmingCharacters(in: .whitespaces)
            var value = t[t.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch key {
            case "name":
                guard value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") else {
                    throw AVAError(path, line: l.number, "name must be a quoted string, got \(value)")
                }
                value = String(value.dropFirst().dropLast())
                name = value
            case "id", "label_id":
                guard let v = Int(value) else { throw AVAError(path, line: l.number, "\(key) '\(value)' is not an integer") }
                id = v
            default: break
            }
        }
        if inBlock { throw AVAError(path, line: blockLine, "block not closed (truncated file?)") }
        return out
    }
}

// MARK: Annotation / detection CSV

/// One row of an AVA CSV: a box at a keyframe with one action; `extra` is column 8 (the person id
/// in annotations, the score in detections), nil when the row has 7 columns.
public struct AVARow: Sendable {
    public let key: AVAKey
    public let box: AVABox
    public let actionID: Int
    public let extra: Double?
    public let line: Int
}

/// A ground-truth person box at a keyframe with all its actions (rows of the same box grouped).
public struct LabeledBox: Sendable, Equatable {
    public var box: AVABox
    public var personID: Int?
    public var actions: [Int]
}

/// The rows of an AVA annotation or results CSV (no header: video_id, timestamp, x1, y1, x2, y2,
/// action_id[, person_id or score]). Rows whose action is not in the label map are skipped and
/// counted in `skippedActions` (id -> rows), as the official evaluation's class whitelist does.
public struct AVACSV: Sendable {
    public let path: String
    public let rows: [AVARow]
    public let skippedActions: [Int: Int]

    /// `scoreColumn`: column 8 is a detection score (required) rather than an optional person id.
    public static func read(_ path: String, labelMap: AVALabelMap? = nil, scoreColumn: Bool = false) throws -> AVACSV {
        var rows: [AVARow] = []
        var skipped: [Int: Int] = [:]
        let allowed = labelMap.map { Set($0.ids) }
        for l in try readDataLines(path, what: "AVA CSV") {
            let row = try parseRow(l, path: path, scoreColumn: scoreColumn)
            if let allowed, !allowed.contains(row.actionID) { skipped[row.actionID, default: 0] += 1; continue }
            rows.append(row)
        }
        return AVACSV(path: path, rows: rows, skippedActions: skipped)
    }

    /// One data line as a row, or the error naming the file, the line and the field.
    static func parseRow(_ l: (number: Int, text: String), path: String, scoreColumn: Bool) throws -> AVARow {
        let f = csvFields(l.text)
        guard f.count == 7 || f.count == 8 else {
            throw AVAError(path, line: l.number, "expected 7 or 8 comma-separated fields (video_id, timestamp, x1, y1, x2, y2, action_id[, \(scoreColumn ? "score" : "person_id")]), got \(f.count)")
        }
        if scoreColumn && f.count != 8 { throw AVAError(path, line: l.number, "missing score (column 8)") }
        guard !f[0].isEmpty else { throw AVAError(path, line: l.number, "empty video_id") }
        guard let ts = parseTimestamp(f[1]) else { throw AVAError(path, line: l.number, "timestamp '\(f[1])' is not an integer number of seconds (below 10^9)") }
        let box = try parseBox(f[2..<6], file: path, line: l.number)
        guard let action = Int(f[6]) else { throw AVAError(path, line: l.number, "action_id '\(f[6])' is not an integer") }
        var extra: Double?
        if f.count == 8 {
            if scoreColumn {
                guard let s = Double(f[7]), s.isFinite else { throw AVAError(path, line: l.number, "score '\(f[7])' is not a number") }
                extra = s
            } else if !f[7].isEmpty {
                guard let p = Int(f[7]) else { throw AVAError(path, line: l.number, "person_id '\(f[7])' is not an integer") }
                extra = Double(p)
            }
        }
        return AVARow(key: AVAKey(f[0], ts), box: box, actionID: action, extra: extra, line: l.number)
    }

    /// A one-line report of skipped rows ("" when none), e.g. for the CLI.
    public var skipReport: String {
        if skippedActions.isEmpty { return "" }
        let n = skippedActions.values.reduce(0, +)
        let ids = skippedActions.sorted(by: { $0.key < $1.key }).map { "\($0.key) (\($0.value) row\($0.value == 1 ? "" : "s"))" }
        return "\(path): skipped \(n) row\(n == 1 ? "" : "s") with action ids not in the label map: \(ids.joined(separator: ", "))"
    }

    /// Keyframes in order of first appearance.
    public var keys: [AVAKey] {
        var seen = Set<AVAKey>(), out: [AVAKey] = []
        for r in rows where seen.insert(r.key).inserted { out.append(r.key) }
        return out
    }

    /// Boxes per action id (a box with several actions counts once for each).
    public var boxesPerClass: [Int: Int] {
        var out: [Int: Int] = [:]
        for (_, boxes) in groupedBoxes() { for b in boxes { for a in b.actions { out[a, default: 0] += 1 } } }
        return out
    }

    /// Ground-truth boxes per keyframe: rows with the same keyframe, box and person id are one box
    /// with several actions (actions in file order, duplicates dropped).
    public func groupedBoxes() -> [AVAKey: [LabeledBox]] {
        var out: [AVAKey: [LabeledBox]] = [:]
        for r in rows {
            let pid = r.extra.map { Int($0) }
            var list = out[r.key, default: []]
            if let i = list.firstIndex(where: { $0.box == r.box && $0.personID == pid }) {
                if !list[i].actions.contains(r.actionID) { list[i].actions.append(r.actionID) }
            } else {
                list.append(LabeledBox(box: r.box, personID: pid, actions: [r.actionID]))
            }
            out[r.key] = list
        }
        return out
    }
}

/// Excluded keyframes (CSV video_id,timestamp).
public func readAVAExcluded(_ path: String) throws -> Set<AVAKey> {
    var out = Set<AVAKey>()
    for l in try readDataLines(path, what: "excluded timestamps") { out.insert(try parseExcludedRow(l, path: path)) }
    return out
}

/// One line of an excluded-timestamps CSV.
func parseExcludedRow(_ l: (number: Int, text: String), path: String) throws -> AVAKey {
    let f = csvFields(l.text)
    guard f.count == 2 else { throw AVAError(path, line: l.number, "expected 2 fields (video_id, timestamp), got \(f.count)") }
    guard !f[0].isEmpty else { throw AVAError(path, line: l.number, "empty video_id") }
    guard let t = parseTimestamp(f[1]) else { throw AVAError(path, line: l.number, "timestamp '\(f[1])' is not an integer number of seconds (below 10^9)") }
    return AVAKey(f[0], t)
}

// MARK: Proposals

/// Person proposals per keyframe: JSON (`"video_id,timestamp"` -> [[x1,y1,x2,y2(,score)], …], as
/// mmaction2's proposal pickles converted) or the LFB/PySlowFast CSV (video_id, timestamp, x1, y1,
/// x2, y2, action (ignored, may be empty), score).
public struct AVAProposals: Sendable {
    public let path: String
    public let boxes: [AVAKey: [ScoredBox]]

    public init(path: String, boxes: [AVAKey: [ScoredBox]]) { self.path = path; self.boxes = boxes }

    /// Reads JSON when the file starts with '{', the proposal CSV otherwise.
    public static func read(_ path: String) throws -> AVAProposals {
        guard FileManager.default.fileExists(atPath: path) else { throw AVAError(path, "no such proposal file") }
        guard let data = FileManager.default.contents(atPath: path) else { throw AVAError(path, "cannot read proposal file") }
        let first = data.first { !($0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09) }
        if first == UInt8(ascii: "{") { return try readJSON(path, data: data) }
        return try readCSV(path)
    }

    static func readJSON(_ path: String, data: Data) throws -> AVAProposals {
        let obj: Any
        do { obj = try JSONSerialization.jsonObject(with: data) } catch {
            throw AVAError(path, "malformed JSON (truncated file?): \(error.localizedDescription)")
        }
        guard let dict = obj as? [String: Any] else { throw AVAError(path, "expected a JSON object of \"video_id,timestamp\" keys") }
        var out: [AVAKey: [ScoredBox]] = [:]
        for (k, v) in dict {
            let (key, boxes) = try parseJSONEntry(k, v, path: path)
            if out[key] != nil { throw AVAError(path, "keyframe \(key) appears twice (keys '\(k)')") }
            out[key] = boxes
        }
        if out.isEmpty { throw AVAError(path, "no keyframes in proposal file") }
        return AVAProposals(path: path, boxes: out)
    }

    /// One `"video_id,timestamp": [[x1, y1, x2, y2(, score)], ...]` entry of a JSON proposal file.
    static func parseJSONEntry(_ k: String, _ v: Any, path: String) throws -> (AVAKey, [ScoredBox]) {
        guard let key = AVAKey(parsing: k) else { throw AVAError(path, "key '\(k)' is not \"video_id,timestamp\" (an integer number of seconds)") }
        guard let list = v as? [Any] else { throw AVAError(path, "key '\(k)': expected a list of boxes") }
        var boxes: [ScoredBox] = []
        for (i, item) in list.enumerated() {
            guard let nums = item as? [Any], nums.count == 4 || nums.count == 5 else {
                throw AVAError(path, "key '\(k)', box \(i): expected [x1, y1, x2, y2, score]")
            }
            let vals = nums.compactMap { ($0 as? NSNumber)?.doubleValue }.filter(\.isFinite)
            guard vals.count == nums.count else { throw AVAError(path, "key '\(k)', box \(i): non-numeric value") }
            boxes.append(ScoredBox(AVABox(vals[0], vals[1], vals[2], vals[3]), score: vals.count == 5 ? vals[4] : 1))
        }
        return (key, boxes)
    }

    static func readCSV(_ path: String) throws -> AVAProposals {
        var out: [AVAKey: [ScoredBox]] = [:]
        for l in try readDataLines(path, what: "proposal CSV") {
            let (key, sb) = try parseCSVRow(l, path: path)
            // The CSV repeats a box once per action: keep each box once.
            if !(out[key]?.contains(sb) ?? false) { out[key, default: []].append(sb) }
        }
        return AVAProposals(path: path, boxes: out)
    }

    /// One line of the proposal CSV (video_id, timestamp, x1, y1, x2, y2, action, score).
    static func parseCSVRow(_ l: (number: Int, text: String), path: String) throws -> (AVAKey, ScoredBox) {
        let f = csvFields(l.text)
        guard f.count == 8 else {
            throw AVAError(path, line: l.number, "expected 8 fields (video_id, timestamp, x1, y1, x2, y2, action, score), got \(f.count)")
        }
        guard !f[0].isEmpty else { throw AVAError(path, line: l.number, "empty video_id") }
        guard let t = parseTimestamp(f[1]) else { throw AVAError(path, line: l.number, "timestamp '\(f[1])' is not an integer number of seconds (below 10^9)") }
        let box = try parseBox(f[2..<6], file: path, line: l.number)
        guard let s = Double(f[7]), s.isFinite else { throw AVAError(path, line: l.number, "score '\(f[7])' is not a number") }
        return (AVAKey(f[0], t), ScoredBox(box, score: s))
    }

    /// The proposal file's text: the JSON object (`"video_id,timestamp"` -> [[x1, y1, x2, y2, score], ...],
    /// keyframes in order, an empty list for a keyframe without boxes) or, with `csv`, the
    /// LFB/PySlowFast CSV (video_id, timestamp, x1, y1, x2, y2, empty action, score; a keyframe
    /// without boxes has no row). Numbers with 6 decimals; `read` reads both back.
    public func text(csv: Bool) -> String {
        func f(_ v: Double) -> String { String(format: "%.6f", v) }
        let keys = boxes.keys.sorted()
        if csv {
            return keys.map { k in
                (boxes[k] ?? []).map { b in
                    "\(k.videoID),\(String(format: "%04d", k.timestamp)),\(f(b.box.x1)),\(f(b.box.y1)),\(f(b.box.x2)),\(f(b.box.y2)),,\(f(b.score))\n"
                }.joined()
            }.joined()
        }
        func quoted(_ s: String) -> String {
            let data = (try? JSONSerialization.data(withJSONObject: [s], options: [])) ?? Data()
            return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
        }
        let entries = keys.map { k in
            let list = (boxes[k] ?? []).map { b in "[\(f(b.box.x1)), \(f(b.box.y1)), \(f(b.box.x2)), \(f(b.box.y2)), \(f(b.score))]" }
            return "  \(quoted(k.description)): [\(list.joined(separator: ", "))]"
        }
        return "{\n" + entries.joined(separator: ",\n") + "\n}\n"
    }

    /// Writes the proposals atomically: the LFB/PySlowFast CSV when `path` ends in .csv, JSON otherwise.
    public func write(to path: String) throws {
        try AtomicFile.write(text(csv: (path as NSString).pathExtension.lowercased() == "csv"), to: path)
    }

    /// The ground-truth boxes of an annotation CSV as proposals (score 1, each box once per
    /// keyframe): the oracle boxes of `ava test --boxes gt`.
    public static func groundTruth(_ csv: AVACSV) -> AVAProposals {
        var out: [AVAKey: [ScoredBox]] = [:]
        for r in csv.rows where !(out[r.key]?.contains { $0.box == r.box } ?? false) { out[r.key, default: []].append(ScoredBox(r.box, score: 1)) }
        return AVAProposals(path: csv.path + " (ground-truth boxes)", boxes: out)
    }

    /// The proposals used at a keyframe, as mmaction2 selects them: those scoring at least
    /// min(threshold, best score) (so the best box always stays), at most `maxCount`, in file
    /// order. nil when the keyframe has no proposal at all (the caller reports and skips it).
    public func select(_ key: AVAKey, threshold: Double, maxCount: Int = 1000) -> [ScoredBox]? {
        guard let list = boxes[key], let best = list.map(\.score).max() else { return nil }
        let thr = min(threshold, best)
        return Array(list.filter { $0.score >= thr }.prefix(maxCount))
    }

    /// Selection for a list of keyframes: the keyframes without proposals are returned separately
    /// (to be reported and skipped, never replaced by a whole-frame box).
    public func select(_ keys: [AVAKey], threshold: Double, maxCount: Int = 1000) -> (selected: [AVAKey: [ScoredBox]], missing: [AVAKey]) {
        var sel: [AVAKey: [ScoredBox]] = [:], missing: [AVAKey] = []
        for k in keys {
            if let s = select(k, threshold: threshold, maxCount: maxCount) { sel[k] = s } else { missing.append(k) }
        }
        return (sel, missing)
    }
}
