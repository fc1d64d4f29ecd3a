import CycleTimeTraining
import CycleTimePretraining
import CycleTimeDetection
import Foundation

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
                // A JSON boolean is an NSNumber of type "c"; `is Bool` would also take the numbers 0 and 1.
                if let n = obj[k] as? NSNumber, String(cString: n.objCType) != "c" { row[k] = n.doubleValue }
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

/// A run directory as `cycletime train` or `cycletime ava train` leaves it.
public struct RunRecord {
    public var path: String
    public var name: String
    public var configText: String
    /// The config of a pretraining run (`cycletime train`).
    public var config: TrainConfig?
    /// The config of an AVA detection run (`cycletime ava train`).
    public var avaConfig: AVAConfig?
    /// The config of a person-detector run (`cycletime detect train`).
    public var detectConfig: DetectConfig?
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
        // The config says the kind of run: the loader is strict, so at most one of the two reads it.
        do { r.config = try ConfigLoader.decode(TrainConfig.self, yaml: text, file: configPath) } catch {
            if let ava = try? ConfigLoader.decode(AVAConfig.self, yaml: text, file: configPath) {
                r.avaConfig = ava
            } else if let detect = try? ConfigLoader.decode(DetectConfig.self, yaml: text, file: configPath) {
                r.detectConfig = detect
            } else {
                r.notes.append("The config could not be read as a training config (\(error)); sections that need it are left out.")
            }
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
    public var plannedSteps: Int? {
        guard let steps = config?.train.steps ?? avaConfig?.train.steps ?? detectConfig?.train.steps else { return nil }
        return steps > 0 ? steps : nil
    }
    public var lastStep: Int? { metrics.steps.last.map { Int($0) } }
    public var objective: String { config?.objective.rawValue ?? (avaConfig != nil ? "ava" : detectConfig != nil ? "detect" : "unknown") }
    /// An AVA detection run (`cycletime ava train`).
    public var isAVA: Bool { avaConfig != nil }
    /// A person-detector run (`cycletime detect train`).
    public var isDetect: Bool { detectConfig != nil }
    /// The gradient clipping of the run's config (0 = none), when known.
    public var gradClip: Double? { config?.train.gradClip ?? avaConfig?.train.gradClip ?? detectConfig?.train.gradClip }

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
