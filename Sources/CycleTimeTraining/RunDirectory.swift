import CycleTimeCore
import Foundation

/// A run directory: `config.yaml` (the resolved configuration), `metrics.jsonl` (one JSON object
/// per step), `train.log` (plain progress lines) and `checkpoints/step-NNNNNNNN.safetensors` with
/// `checkpoints/latest.safetensors` (a hard link to the newest). Every file is written atomically.
public final class RunDirectory {
    public let path: String
    public var checkpointsPath: String { path + "/checkpoints" }
    public var latestCheckpointPath: String { checkpointsPath + "/latest.safetensors" }
    public var metricsPath: String { path + "/metrics.jsonl" }
    public var logPath: String { path + "/train.log" }
    public var configPath: String { path + "/config.yaml" }
    private var metricsHandle: FileHandle?
    private var logHandle: FileHandle?

    /// Opens (creating when needed) the directory and checks that it is writable.
    public init(path: String) throws {
        self.path = path
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
            throw ConfigError(path, "output_dir exists and is not a directory")
        }
        do {
            try fm.createDirectory(atPath: checkpointsPath, withIntermediateDirectories: true)
        } catch {
            // Name the first existing ancestor, which is where creation failed.
            var ancestor = (path as NSString).deletingLastPathComponent
            while !ancestor.isEmpty && ancestor != "/" && !fm.fileExists(atPath: ancestor) {
                ancestor = (ancestor as NSString).deletingLastPathComponent
            }
            let base = ancestor.isEmpty ? "." : ancestor
            var isDir: ObjCBool = false
            let why: String
            if fm.fileExists(atPath: base, isDirectory: &isDir), !isDir.boolValue {
                why = "\(base) is a file, not a folder"
            } else if !fm.isWritableFile(atPath: base) {
                why = "\(base) is not writable"
            } else {
                why = (error as NSError).localizedDescription
            }
            throw ConfigError(path, "cannot create the output directory (field 'output_dir'): \(why)")
        }
        let probe = path + "/.write-test-\(getpid())"
        guard fm.createFile(atPath: probe, contents: Data()) else {
            throw ConfigError(path, "the output directory is not writable (field 'output_dir')")
        }
        try? fm.removeItem(atPath: probe)
    }

    /// The directory of a run this process only reads from or reports about (a data-parallel
    /// rank other than 0): nothing is created or checked.
    public init(unopened path: String) {
        self.path = path
    }

    deinit {
        try? metricsHandle?.close()
        try? logHandle?.close()
    }

    /// Whether a previous run left a checkpoint here.
    public var hasCheckpoint: Bool { FileManager.default.fileExists(atPath: latestCheckpointPath) }

    public func writeConfig(_ yaml: String) throws {
        try AtomicFile.write(Data(yaml.utf8), to: configPath)
    }

    // MARK: checkpoints

    public func checkpointPath(step: Int) -> String {
        checkpointsPath + "/" + String(format: "step-%08d.safetensors", step)
    }

    /// Writes a checkpoint atomically, points `latest` at it and keeps the newest `keep` periodic ones.
    @discardableResult
    public func saveCheckpoint(step: Int, tensors: [String: Tensor], metadata: [String: String], keep: Int) throws -> String {
        let p = checkpointPath(step: step)
        try SafeTensors.write(tensors, metadata: metadata, to: p)
        // latest: a hard link to the new file, swapped in by rename (never a half-written file).
        let tmp = AtomicFile.temporaryPath(for: latestCheckpointPath)
        unlink(tmp)
        if link(p, tmp) != 0 {
            try FileManager.default.copyItem(atPath: p, toPath: tmp)
        }
        guard rename(tmp, latestCheckpointPath) == 0 else {
            unlink(tmp)
            throw ConfigError(latestCheckpointPath, "cannot update the latest checkpoint: \(String(cString: strerror(errno)))")
        }
        let old = periodicCheckpoints().dropLast(keep)
        for (_, file) in old { try? FileManager.default.removeItem(atPath: file) }
        return p
    }

    /// Periodic checkpoints (step, path), oldest first.
    public func periodicCheckpoints() -> [(Int, String)] { Self.periodicCheckpoints(in: checkpointsPath) }

    /// Steps of the periodic checkpoints of the run directory at `path` (nothing is created).
    public static func periodicSteps(_ path: String) -> [Int] { periodicCheckpoints(in: path + "/checkpoints").map(\.0) }

    static func periodicCheckpoints(in folder: String) -> [(Int, String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.compactMap { n -> (Int, String)? in
            guard n.hasPrefix("step-"), n.hasSuffix(".safetensors"), let s = Int(n.dropFirst(5).dropLast(12)) else { return nil }
            return (s, folder + "/" + n)
        }.sorted { $0.0 < $1.0 }
    }

    // MARK: metrics and log

    /// Appends one metrics line (a JSON object with keys in the given order).
    public func appendMetrics(_ fields: [(String, Double)]) throws {
        let body = fields.map { k, v in "\"\(k)\": " + Self.json(v) }.joined(separator: ", ")
        try append("{" + body + "}\n", to: metricsPath, handle: &metricsHandle)
    }

    public func log(_ line: String) {
        try? append(line + "\n", to: logPath, handle: &logHandle)
    }

    /// Keeps only the metrics lines of steps <= `step` (after resuming from that step).
    public func truncateMetrics(afterStep step: Int) throws {
        guard let data = FileManager.default.contents(atPath: metricsPath), let text = String(data: data, encoding: .utf8) else { return }
        let kept = text.split(separator: "\n").filter { line in
            guard let d = line.data(using: .utf8), let obj = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
                  let s = (obj["step"] as? NSNumber)?.intValue else { return false }
            return s <= step
        }
        try? metricsHandle?.close()
        metricsHandle = nil
        try AtomicFile.write(Data((kept.map { $0 + "\n" }.joined()).utf8), to: metricsPath)
    }

    static func json(_ v: Double) -> String {
        guard v.isFinite else { return "null" }
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return String(format: "%.7g", v)
    }

    private func append(_ text: String, to file: String, handle: inout FileHandle?) throws {
        if handle == nil {
            if !FileManager.default.fileExists(atPath: file) { _ = FileManager.default.createFile(atPath: file, contents: nil) }
            guard let h = FileHandle(forWritingAtPath: file) else { throw ConfigError(file, "cannot open for writing") }
            h.seekToEndOfFile()
            handle = h
        }
        handle!.write(Data(text.utf8))
    }
}
