import CycleTimeTraining
import Foundation

/// `cycletime ava check`: a custom AVA-format dataset checked before any training, for the
/// mistakes that make a run silently learn nothing (keyframe keys that do not match the proposal
/// file, timestamps mapped to frames the videos do not have, boxes in pixels, unknown action ids,
/// an empty split). Every problem names its file and line; errors make the check fail, warnings
/// are what training reports and skips.
public struct AVACheckReport: Sendable {
    public enum Severity: String, Sendable { case error, warning }
    public struct Problem: Sendable, Equatable {
        public var severity: Severity
        public var file: String
        public var line: Int?
        public var message: String
        public var location: String { line.map { "\(file):\($0)" } ?? file }
    }
    /// Boxes per class of a split (label-map ids; classes without boxes count 0), and the
    /// frequency bin of each class (`AVAFrequencyBins`).
    public struct SplitCounts: Sendable {
        public var split: String
        public var file: String
        public var keyframes: Int
        public var boxesPerClass: [Int: Int]
    }

    public var problems: [Problem] = []
    public var splits: [SplitCounts] = []
    public var labelMap: AVALabelMap?
    public var hasErrors: Bool { problems.contains { $0.severity == .error } }

    mutating func error(_ file: String, _ line: Int? = nil, _ message: String) { problems.append(Problem(severity: .error, file: file, line: line, message: message)) }
    mutating func warning(_ file: String, _ line: Int? = nil, _ message: String) { problems.append(Problem(severity: .warning, file: file, line: line, message: message)) }
    mutating func add(_ e: Error, _ severity: Severity = .error) {
        if let a = e as? AVAError { problems.append(Problem(severity: severity, file: a.file, line: a.line, message: a.message)) }
        else { problems.append(Problem(severity: severity, file: "", line: nil, message: "\(e)")) }
    }

    /// The problems as a table (severity, file:line, problem), then the class counts per split
    /// with the frequency bins of the training split, then one verdict line.
    public func table() -> String {
        var out = ""
        if problems.isEmpty {
            out += "no problems found\n"
        } else {
            let w = min(60, problems.map { $0.location.count }.max() ?? 0)
            out += "severity  " + "file:line".padding(toLength: w, withPad: " ", startingAt: 0) + "  problem\n"
            for p in problems {
                out += p.severity.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0) + "  "
                    + p.location.padding(toLength: max(w, p.location.count), withPad: " ", startingAt: 0) + "  " + p.message + "\n"
            }
        }
        if let labelMap, !splits.isEmpty {
            let bins = AVAFrequencyBins(counts: splits[0].boxesPerClass)
            out += "\nboxes per class (bins by the \(splits[0].split) split's counts: head, mid and tail thirds)\n"
            out += "id    name                            bin   " + splits.map { $0.split.padding(toLength: 8, withPad: " ", startingAt: 0) }.joined(separator: "  ") + "\n"
            for e in labelMap.entries {
                out += String(e.id).padding(toLength: 6, withPad: " ", startingAt: 0) + String(e.name.prefix(30)).padding(toLength: 32, withPad: " ", startingAt: 0)
                    + (bins.bin(of: e.id)?.rawValue ?? "-").padding(toLength: 6, withPad: " ", startingAt: 0)
                    + splits.map { String($0.boxesPerClass[e.id] ?? 0).padding(toLength: 8, withPad: " ", startingAt: 0) }.joined(separator: "  ") + "\n"
            }
            out += splits.map { "\($0.split): \($0.keyframes) keyframes in \($0.file)" }.joined(separator: "; ") + "\n"
        }
        let errors = problems.filter { $0.severity == .error }.count, warnings = problems.count - errors
        out += errors > 0 ? "FAILED: \(errors) error(s), \(warnings) warning(s); training on this data would learn nothing or the wrong thing\n"
                          : "OK: \(warnings) warning(s)\n"
        return out
    }
}

public enum AVADatasetCheck {
    /// Checks the files of `config` (read from `file`): the label map, the training split
    /// (data.annotations, data.proposals, data.excluded) and the test split (test.* or the data
    /// files), the frames each keyframe's clip needs.
    public static func run(_ config: AVAConfig, file: String) -> AVACheckReport {
        var r = AVACheckReport()
        do { r.labelMap = try AVALabelMap.read(config.data.labelmap) } catch { r.add(error) }
        for id in config.data.customClasses where r.labelMap.map({ !$0.contains(id) }) ?? false {
            r.error(file, nil, "field 'data.custom_classes': class \(id) is not in the label map \(config.data.labelmap)")
        }
        var store: AVAFrameStore?
        do {
            store = AVAFrameStore(source: try AVAFrameSource.resolve(config.data.frames, kind: config.data.framesKind), fps: config.data.fps,
                                  decodeShortSide: config.clipOptions.decodeShortSide, cacheBytes: 0)
        } catch { r.add(error) }
        let test = (annotations: config.test.annotations.isEmpty ? config.data.annotations : config.test.annotations,
                    proposals: config.test.proposals.isEmpty ? config.data.proposals : config.test.proposals,
                    excluded: config.test.excluded.isEmpty ? config.data.excluded : config.test.excluded)
        var splits = [("train", config.data.annotations, config.data.proposals, config.data.excluded)]
        if test.annotations != config.data.annotations || test.proposals != config.data.proposals || test.excluded != config.data.excluded {
            splits.append(("test", test.annotations, test.proposals, test.excluded))
        }
        // Proposal keyframes of another split (one proposal file for train and test) are fine.
        let parsed = splits.map { checkSplit($0.0, annotations: $0.1, excluded: $0.3, config: config, store: store, into: &r) }
        let everyKey = parsed.reduce(into: Set<AVAKey>()) { $0.formUnion($1.keys) }
        for ((_, annotations, proposals, _), p) in zip(splits, parsed) where !proposals.isEmpty {
            checkProposals(proposals, keys: p.keys.subtracting(p.excluded), everyKey: everyKey, firstLine: p.firstLine, annotations: annotations, into: &r)
        }
        if splits.count == 1, test.proposals.isEmpty {
            r.error(file, nil, "no proposals for testing: set test.proposals or data.proposals (ava test needs person boxes)")
        }
        return r
    }

    /// A split's annotations, frames and excluded timestamps; returns its keyframes (with the line
    /// of each one's first row) and the excluded ones.
    static func checkSplit(_ split: String, annotations: String, excluded: String, config: AVAConfig,
                           store: AVAFrameStore?, into r: inout AVACheckReport) -> (keys: Set<AVAKey>, firstLine: [AVAKey: Int], excluded: Set<AVAKey>) {
        // Rows, each checked on its own line.
        var rows: [AVARow] = []
        let lines: [(number: Int, text: String)]
        do { lines = try readDataLines(annotations, what: "AVA CSV") } catch {
            r.add(error)
            r.error(annotations, nil, "the \(split) split is empty: nothing to train or test on")
            return ([], [:], [])
        }
        var unknown: [Int: (count: Int, line: Int)] = [:]
        for l in lines {
            let row: AVARow
            do { row = try AVACSV.parseRow(l, path: annotations, scoreColumn: false) } catch { r.add(error); continue }
            if let problem = boxProblem(row.box) { r.error(annotations, l.number, problem); continue }
            if let m = r.labelMap, !m.contains(row.actionID) {
                unknown[row.actionID] = (unknown[row.actionID].map { $0.count + 1 } ?? 1, unknown[row.actionID]?.line ?? l.number)
            }
            rows.append(row)
        }
        for (id, u) in unknown.sorted(by: { $0.key < $1.key }) {
            r.warning(annotations, u.line, "action id \(id) is not in the label map (\(u.count) row\(u.count == 1 ? "" : "s"), first here): training and evaluation skip them")
        }
        let known = rows.filter { r.labelMap?.contains($0.actionID) ?? true }
        if known.isEmpty { r.error(annotations, nil, "the \(split) split has no row with an action of the label map: nothing to train or test on") }
        var firstLine: [AVAKey: Int] = [:]
        for row in rows where firstLine[row.key] == nil { firstLine[row.key] = row.line }
        let keys = Set(firstLine.keys)

        // Frames: the keyframe must be in its video, and the clip's window should be.
        if let store {
            let sampler = config.clipOptions.sampler
            var counts: [String: Int] = [:]
            for video in Set(keys.map(\.videoID)).sorted() {
                do { counts[video] = try store.frameCount(video) } catch {
                    let line = firstLine.filter { $0.key.videoID == video }.map(\.value).min()
                    r.error(annotations, line, "video '\(video)' has no frames: \((error as? AVAError)?.description ?? "\(error)")")
                }
            }
            for key in keys.sorted() {
                guard let n = counts[key.videoID] else { continue }
                let k = sampler.keyframe(key.timestamp)
                let clip = sampler.frameNumbers(key.timestamp)
                if k < 1 || k > n {
                    r.error(annotations, firstLine[key], "keyframe \(key) is frame \(k) (fps \(sampler.fps) x (\(key.timestamp) - window_start \(sampler.windowStart)) + 1) but video '\(key.videoID)' has frames 1...\(n)")
                } else if let lo = clip.first, let hi = clip.last, lo < 1 || hi > n {
                    r.warning(annotations, firstLine[key], "the clip of keyframe \(key) needs frames \(lo)...\(hi), video '\(key.videoID)' has 1...\(n) (the ends repeat the first or last frame)")
                }
            }
        }

        // Excluded timestamps should name annotated keyframes.
        var excludedKeys = Set<AVAKey>()
        if !excluded.isEmpty {
            do {
                for l in try readDataLines(excluded, what: "excluded timestamps") {
                    do {
                        let k = try parseExcludedRow(l, path: excluded)
                        excludedKeys.insert(k)
                        if !keys.contains(k) { r.warning(excluded, l.number, "excluded keyframe \(k) is not a keyframe of \(annotations)") }
                    } catch { r.add(error) }
                }
            } catch { r.add(error) }
        }


        let perClass = AVACSV(path: annotations, rows: known, skippedActions: [:]).boxesPerClass
        r.splits.append(.init(split: split, file: annotations, keyframes: keys.count, boxesPerClass: perClass))
        return (keys, firstLine, excludedKeys)
    }

    /// Nil for a box inside [0, 1] with x1 < x2 and y1 < y2; else what is wrong with it.
    static func boxProblem(_ b: AVABox) -> String? {
        let v = [b.x1, b.y1, b.x2, b.y2]
        if v.contains(where: { $0 > 1 }) { return "box (\(v.map { "\($0)" }.joined(separator: ", "))) is not normalized to [0, 1] (pixels? divide by the frame's width and height)" }
        if v.contains(where: { $0 < 0 }) { return "box (\(v.map { "\($0)" }.joined(separator: ", "))) has a negative coordinate" }
        if !(b.x1 < b.x2 && b.y1 < b.y2) { return "box (\(v.map { "\($0)" }.joined(separator: ", "))) needs x1 < x2 and y1 < y2" }
        return nil
    }

    /// Proposal keys must match the split's keyframes (`keys`, excluded ones left out) and vice
    /// versa (keys of another split, `everyKey`, are no problem), their boxes normalized.
    static func checkProposals(_ path: String, keys: Set<AVAKey>, everyKey: Set<AVAKey>, firstLine: [AVAKey: Int], annotations: String,
                               into r: inout AVACheckReport) {
        guard let data = FileManager.default.contents(atPath: path) else { return r.error(path, nil, "no such proposal file") }
        var found: [(AVAKey, Int?)] = []
        let text = String(decoding: data, as: UTF8.self)
        if text.first(where: { !$0.isWhitespace }) == "{" {
            let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
            // The line of each key: the first quoted string of a line that a ':' follows (one pass over the file).
            var lineOfKey: [String: Int] = [:]
            for (i, l) in lines.enumerated() {
                guard let open = l.firstIndex(of: "\""), let close = l[l.index(after: open)...].firstIndex(of: "\""),
                      l[l.index(after: close)...].drop(while: \.isWhitespace).first == ":" else { continue }
                let key = String(l[l.index(after: open)..<close])
                if lineOfKey[key] == nil { lineOfKey[key] = i + 1 }
            }
            func line(of key: String) -> Int? { lineOfKey[key] }
            guard let dict = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                return r.error(path, nil, "not a JSON object of \"video_id,timestamp\" keys (truncated file?)")
            }
            for (k, v) in dict.sorted(by: { $0.key < $1.key }) {
                do {
                    let (key, boxes) = try AVAProposals.parseJSONEntry(k, v, path: path)
                    let n = line(of: k)
                    for b in boxes { if let p = boxProblem(b.box) { r.error(path, n, "keyframe \(key): \(p)"); break } }
                    found.append((key, n))
                } catch let e as AVAError { r.error(path, line(of: k), e.message) } catch { r.add(error) }
            }
        } else {
            do {
                for l in try readDataLines(path, what: "proposal CSV") {
                    do {
                        let (key, b) = try AVAProposals.parseCSVRow(l, path: path)
                        if let p = boxProblem(b.box) { r.error(path, l.number, p) }
                        found.append((key, l.number))
                    } catch { r.add(error) }
                }
            } catch { r.add(error) }
        }
        let proposalKeys = Set(found.map(\.0))
        var reported = Set<AVAKey>()
        let stray = found.filter { !everyKey.contains($0.0) && reported.insert($0.0).inserted }
        for (key, line) in stray.prefix(10) {
            r.warning(path, line, "proposal keyframe \(key) is not a keyframe of any split's annotations")
        }
        if stray.count > 10 { r.warning(path, nil, "\(stray.count - 10) more proposal keyframes are not keyframes of any split") }
        let missing = keys.subtracting(proposalKeys).sorted()
        if !keys.isEmpty && missing.count == keys.count {
            let example = stray.first.map { " (e.g. '\($0.0)' here, '\(keys.sorted()[0])' there)" } ?? ""
            r.error(path, nil, "no keyframe of \(annotations) has a proposal: the keys do not match\(example)")
        } else {
            for key in missing.prefix(10) { r.warning(annotations, firstLine[key], "keyframe \(key) has no proposal in \(path) (training and testing skip it)") }
            if missing.count > 10 { r.warning(annotations, nil, "\(missing.count - 10) more keyframes have no proposal in \(path)") }
        }
    }
}

/// Loads and validates the AVA config at `configPath` (errors name the field), then checks its data.
public func checkAVADataset(configPath: String, overrides: [String] = []) throws -> AVACheckReport {
    let config = try ConfigLoader.load(AVAConfig.self, path: configPath, overrides: overrides)
    try config.validate(file: configPath)
    return AVADatasetCheck.run(config, file: configPath)
}
