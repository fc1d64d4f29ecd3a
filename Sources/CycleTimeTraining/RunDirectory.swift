import CycleTimeCore
import Foundation

/// A run directory: `config.yaml` (the resolved configuration), `metrics.jsonl` (one JSON object
/// per step), the same scalars for TensorBoard in `events.out.tfevents.*` (one file per process
/// that wrote to the run; see `appendMetrics`), `train.log` (plain progress lines) and
/// `checkpoints/step-NNNNNNNN.safetensors` with `checkpoints/latest.safetensors` (a hard link to
/// the newest), and `checkpoints/best.safetensors` (the best validation's, `eval.save_best`).
/// Every file is written atomically, but for the logs (metrics, events, train.log), appended to a
/// record at a time.
public final class RunDirectory {
    public let path: String
    public var checkpointsPath: String { path + "/checkpoints" }
    public var latestCheckpointPath: String { checkpointsPath + "/latest.safetensors" }
    /// The checkpoint of the best validation so far (`eval.save_best`, as mmaction2's `save_best`).
    public var bestCheckpointPath: String { checkpointsPath + "/best.safetensors" }
    public var metricsPath: String { path + "/metrics.jsonl" }
    public var logPath: String { path + "/train.log" }
    public var configPath: String { path + "/config.yaml" }
    private var metricsHandle: FileHandle?
    private var logHandle: FileHandle?
    private var events: EventFileWriter?

    /// The lock file (`.lock`, holding the pid of the process that uses the run).
    public var lockPath: String { path + "/.lock" }
    private var lock: RunDirectoryLock?

    /// Opens (creating when needed) the directory, locks it for this process's life (a run
    /// directory is written by one process at a time; another one fails here, having changed
    /// nothing) and removes the temporaries an interrupted write left.
    public init(path: String) throws {
        self.path = path
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
            throw ConfigError(path, "output_dir exists and is not a directory")
        }
        try Self.createDirectory(path, run: path)
        lock = try RunDirectoryLock.acquire(run: path, file: path + "/.lock")
        try Self.createDirectory(checkpointsPath, run: path)
        removeTemporaries()
    }

    /// Creates `folder` (and its parents); errors name the first existing ancestor, which is where creation failed.
    private static func createDirectory(_ folder: String, run path: String) throws {
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            var ancestor = (folder as NSString).deletingLastPathComponent
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
    }

    /// Removes the temporaries of atomic writes (`AtomicFile.isTemporary`) in the run directory and
    /// its checkpoints: a process killed while writing leaves them; the lock makes every one a leftover.
    private func removeTemporaries() {
        for folder in [path, checkpointsPath] { AtomicFile.removeTemporaries(in: folder) }
    }

    /// The directory of a run this process only reads from or reports about (a data-parallel
    /// rank other than 0): nothing is created or checked.
    public init(unopened path: String) {
        self.path = path
    }

    deinit {
        try? metricsHandle?.close()
        try? logHandle?.close()
        lock?.release()
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
        try point(latestCheckpointPath, at: p, "the latest checkpoint")
        let old = periodicCheckpoints().dropLast(keep)
        for (_, file) in old { try? FileManager.default.removeItem(atPath: file) }
        return p
    }

    /// Makes `name` a hard link to the written file `file` (a copy where links fail), swapped in by
    /// rename: never a half-written file.
    private func point(_ name: String, at file: String, _ what: String) throws {
        let tmp = AtomicFile.temporaryPath(for: name)
        unlink(tmp)
        if link(file, tmp) != 0 {
            try FileManager.default.copyItem(atPath: file, toPath: tmp)
        }
        guard rename(tmp, name) == 0 else {
            unlink(tmp)
            throw ConfigError(name, "cannot update \(what): \(String(cString: strerror(errno)))")
        }
    }

    /// Writes the best validation's checkpoint atomically (`eval.save_best`). When the step's
    /// periodic checkpoint `sameAs` holds the same tensors and metadata, best is a hard link to it
    /// (written once).
    public func saveBestCheckpoint(tensors: @autoclosure () -> [String: Tensor], metadata: @autoclosure () -> [String: String],
                                   sameAs periodic: String?) throws {
        if let periodic {
            try point(bestCheckpointPath, at: periodic, "the best checkpoint")
        } else {
            try SafeTensors.write(tensors(), metadata: metadata(), to: bestCheckpointPath)
        }
    }

    /// The step and metadata of the best checkpoint (nil without one); an error naming the file
    /// when it is not a training checkpoint.
    public func bestCheckpoint() throws -> (step: Int, metadata: [String: String])? {
        let path = bestCheckpointPath
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let metadata = try SafeTensors.readHeader(path).metadata
        guard let s = metadata["step"].flatMap({ Int($0) }), s >= 0 else {
            throw ConfigError(path, "no 'step' in its metadata (not a best checkpoint of this run; move it away to resume)")
        }
        return (s, metadata)
    }

    /// Makes the best checkpoint the periodic checkpoint of `step` when that is still on disk;
    /// otherwise removes it. Returns whether one is left.
    @discardableResult
    public func restoreBestCheckpoint(step: Int) throws -> Bool {
        let periodic = checkpointPath(step: step)
        if FileManager.default.fileExists(atPath: periodic) {
            try point(bestCheckpointPath, at: periodic, "the best checkpoint")
            return true
        }
        try removeBestCheckpoint()
        return false
    }

    /// Removes the best checkpoint (nothing when there is none).
    public func removeBestCheckpoint() throws {
        if unlink(bestCheckpointPath) != 0 && errno != ENOENT {
            throw ConfigError(bestCheckpointPath, "cannot remove a stale best checkpoint: \(String(cString: strerror(errno)))")
        }
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

    /// Appends one metrics line (a JSON object with keys in the given order) and, when the fields
    /// hold a "step", the same values as TensorBoard scalars at that step under the same names
    /// (all but "step"; a non-finite value, `null` in the line, is left out). The first call of
    /// this object starts its event file.
    public func appendMetrics(_ fields: [(String, Double)]) throws {
        let body = fields.map { k, v in "\"\(k)\": " + Self.json(v) }.joined(separator: ", ")
        try append("{" + body + "}\n", to: metricsPath, handle: &metricsHandle)
        guard let step = fields.first(where: { $0.0 == "step" })?.1, step.isFinite, abs(step) < 1e15 else { return }
        try eventWriter().writeScalars(step: Int(step), fields.filter { $0.0 != "step" })
    }

    /// Appends a TensorBoard image at `step` from PNG bytes (e.g. `Canvas.pngData()`); its size
    /// and colours are read from the PNG.
    public func appendImage(tag: String, step: Int, png: Data) throws {
        let value = try SummaryEvent.image(tag: tag, png: png)
        try eventWriter().write(SummaryEvent(wallTime: Date().timeIntervalSince1970, step: step, values: [value]))
    }

    /// The event files of the run, oldest first.
    public var eventFiles: [String] { EventFileWriter.files(in: path) }

    private func eventWriter() throws -> EventFileWriter {
        if let events { return events }
        let w = try EventFileWriter(folder: path)
        events = w
        return w
    }

    public func log(_ line: String) {
        try? append(line + "\n", to: logPath, handle: &logHandle)
    }

    /// Keeps only the metrics lines of steps <= `step` (after resuming from that step), one per
    /// step (the last one written), dropping unreadable lines (a write cut short by a kill). The
    /// event files likewise keep only the steps <= `step` (rewritten atomically when they hold
    /// more); the resumed run's scalars go to a new event file.
    public func truncateMetrics(afterStep step: Int) throws {
        events = nil
        try EventFileWriter.keepSteps(upTo: step, in: path)
        guard let data = FileManager.default.contents(atPath: metricsPath), let text = String(data: data, encoding: .utf8) else { return }
        var lineOfStep: [Int: Substring] = [:]
        for line in text.split(separator: "\n") {
            guard let d = line.data(using: .utf8), let obj = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
                  let s = (obj["step"] as? NSNumber)?.intValue, s <= step else { continue }
            lineOfStep[s] = line
        }
        let kept = lineOfStep.keys.sorted().compactMap { lineOfStep[$0] }
        try? metricsHandle?.close()
        metricsHandle = nil
        try AtomicFile.write(Data((kept.map { $0 + "\n" }.joined()).utf8), to: metricsPath)
    }

    /// A fresh run (no `latest` checkpoint): removes what an earlier run killed before its first
    /// checkpoint left (metrics, event files, log, a periodic checkpoint written just before `latest` would be),
    /// so the new run's files start over.
    public func startOver() throws {
        try? metricsHandle?.close()
        try? logHandle?.close()
        metricsHandle = nil
        logHandle = nil
        events = nil
        for file in [metricsPath, logPath, bestCheckpointPath] + eventFiles + periodicCheckpoints().map(\.1) where unlink(file) != 0 && errno != ENOENT {
            throw ConfigError(file, "cannot remove the file of an earlier run that wrote no checkpoint: \(String(cString: strerror(errno)))")
        }
    }

    static func json(_ v: Double) -> String {
        guard v.isFinite else { return "null" }
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return String(format: "%.7g", v)
    }

    private func append(_ text: String, to file: String, handle: inout FileHandle?) throws {
        let h: FileHandle
        if let open = handle { h = open } else {
            if !FileManager.default.fileExists(atPath: file) { _ = FileManager.default.createFile(atPath: file, contents: nil) }
            guard let opened = FileHandle(forWritingAtPath: file) else { throw ConfigError(file, "cannot open for writing") }
            opened.seekToEndOfFile()
            handle = opened
            h = opened
        }
        // The throwing write: a full disk is an error naming the file, not a trap in Foundation.
        do { try h.write(contentsOf: Data(text.utf8)) } catch { throw FileWriteError(path: file, underlying: error) }
    }
}

/// The exclusive lock of a run directory: `flock` on its lock file, taken without waiting and held
/// until the process ends (the kernel releases it, even after kill -9) or the last `RunDirectory`
/// of this process on that directory is released. The lock file holds the holder's pid. Several
/// `RunDirectory` objects of one process share the lock (flock would otherwise conflict with itself).
final class RunDirectoryLock: @unchecked Sendable {
    private static let registryLock = NSLock()
    nonisolated(unsafe) private static var held: [String: (lock: RunDirectoryLock, users: Int)] = [:]

    let key: String
    let fd: Int32

    private init(key: String, fd: Int32) { self.key = key; self.fd = fd }

    /// Locks the run directory `run` through `file`; throws one line naming the directory and the
    /// holder's pid when another process holds it. Nothing is written unless the lock is taken.
    static func acquire(run: String, file: String) throws -> RunDirectoryLock {
        let key = realpath(run, nil).map { p in defer { free(p) }; return String(cString: p) } ?? run
        registryLock.lock()
        defer { registryLock.unlock() }
        if let h = held[key] {
            held[key] = (h.lock, h.users + 1)
            return h.lock
        }
        let fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let why = errno == EACCES || errno == EROFS ? "the output directory is not writable" : "cannot open the lock file \(file): \(String(cString: strerror(errno)))"
            throw ConfigError(run, "\(why) (field 'output_dir')")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let busy = errno == EWOULDBLOCK
            let why = String(cString: strerror(errno))
            let holder = busy ? holderPid(fd) : nil
            close(fd)
            guard busy else { throw ConfigError(run, "cannot lock the run directory (\(file)): \(why)") }
            throw ConfigError(run, "the run directory is in use by process \(holder ?? "?") (lock \(file)); wait for that run to end or choose another output_dir")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        let lock = RunDirectoryLock(key: key, fd: fd)
        held[key] = (lock, 1)
        return lock
    }

    /// The pid written by the holder (it writes it right after locking: wait briefly for it).
    private static func holderPid(_ fd: Int32) -> String? {
        for _ in 0..<50 {
            var buf = [UInt8](repeating: 0, count: 32)
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                let text = String(decoding: buf.prefix(n), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                if !text.isEmpty { return text }
            }
            usleep(10_000)
        }
        return nil
    }

    /// One user of the lock is done; the last one unlocks.
    func release() {
        Self.registryLock.lock()
        defer { Self.registryLock.unlock() }
        guard let h = Self.held[key] else { return }
        if h.users > 1 {
            Self.held[key] = (h.lock, h.users - 1)
        } else {
            Self.held[key] = nil
            close(fd)
        }
    }
}
