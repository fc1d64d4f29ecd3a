import Foundation

/// The error of an output that could not be written; names the path and the system's reason
/// (e.g. "No space left on device", "Permission denied").
public struct FileWriteError: Error, CustomStringConvertible, LocalizedError, Equatable {
    public let path: String
    public let reason: String
    public init(_ path: String, _ reason: String) { self.path = path; self.reason = reason }
    /// From a Foundation or POSIX error: the system's own words for its errno ("No space left on
    /// device", "Permission denied"), not a Cocoa error number.
    public init(path: String, underlying error: Error) {
        self.path = path
        if let e = error as? FileWriteError { reason = e.reason; return }
        let ns = error as NSError
        let posix = ns.domain == NSPOSIXErrorDomain ? ns : (ns.userInfo[NSUnderlyingErrorKey] as? NSError).flatMap { $0.domain == NSPOSIXErrorDomain ? $0 : nil }
        if let posix { reason = String(cString: strerror(Int32(truncatingIfNeeded: posix.code))) }
        else if ns.domain == NSCocoaErrorDomain && ns.code == NSFileWriteOutOfSpaceError { reason = String(cString: strerror(ENOSPC)) }
        else if ns.domain == NSCocoaErrorDomain && ns.code == NSFileWriteNoPermissionError { reason = String(cString: strerror(EACCES)) }
        else { reason = ns.localizedDescription }
    }
    public var description: String { "\(path): cannot write: \(reason)" }
    public var errorDescription: String? { description }
}

/// An error met while writing an output, told with the output's own name.
public struct OutputError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public var errorDescription: String? { description }
}

/// The one way CycleTime writes an output file or folder: into a hidden temporary beside the final
/// path (`.<name>.tmp-<pid>`), renamed into place only when complete, so an interrupted or failed
/// write never leaves something under the final name that looks complete. An existing file or
/// folder at the final path is replaced.
public enum AtomicFile {
    /// The hidden temporary of `path` for this process.
    public static func temporaryPath(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        return url.deletingLastPathComponent().path + "/." + url.lastPathComponent + ".tmp-\(getpid())"
    }

    /// Whether `name` (a file name) is a temporary left by `temporaryPath`, of any process.
    public static func isTemporary(_ name: String) -> Bool {
        guard name.hasPrefix("."), let r = name.range(of: ".tmp-", options: .backwards) else { return false }
        let pid = name[r.upperBound...]
        return !pid.isEmpty && pid.allSatisfy(\.isNumber)
    }

    /// Removes the temporaries that `temporaryPath` left in `folder` (a process killed mid-write).
    /// Returns the names removed.
    @discardableResult
    public static func removeTemporaries(in folder: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        let stale = names.filter(isTemporary)
        for n in stale { try? FileManager.default.removeItem(atPath: folder + "/" + n) }
        return stale
    }

    /// Fails early, before any work, when a file could not be written at `path`: its folder must
    /// exist and be writable, and `path` must not be a folder.
    public static func checkWritable(_ path: String) throws {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw FileWriteError(path, "folder \(dir) does not exist")
        }
        guard access(dir, W_OK) == 0 else { throw FileWriteError(path, "folder \(dir) is not writable") }
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { throw FileWriteError(path, "it is a folder") }
    }

    /// Writes `data` to `path` atomically.
    public static func write(_ data: Data, to path: String) throws {
        try withTemporary(for: path) { tmp in
            // open/write (not FileManager, whose own atomic write adds a second temporary under
            // another name), so `tmp` is the only file an interrupted write can leave.
            let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o666)
            guard fd >= 0 else { throw FileWriteError(path, String(cString: strerror(errno))) }
            let failure: String? = data.withUnsafeBytes { (buf: UnsafeRawBufferPointer) -> String? in
                guard let base = buf.baseAddress else { return nil }
                var done = 0
                while done < buf.count {
                    let n = Foundation.write(fd, base + done, buf.count - done)
                    if n < 0 {
                        if errno == EINTR { continue }
                        return String(cString: strerror(errno))
                    }
                    done += n
                }
                return nil
            }
            if close(fd) != 0 || failure != nil { throw FileWriteError(path, failure ?? String(cString: strerror(errno))) }
        }
    }

    /// Writes `text` (UTF-8) to `path` atomically.
    public static func write(_ text: String, to path: String) throws {
        try write(Data(text.utf8), to: path)
    }

    /// Runs `body` with the temporary path (the body creates a file or a folder there); when it
    /// returns, the temporary is renamed onto `path`. When the body throws, or the rename fails,
    /// the temporary is removed and nothing changes at `path`. The containing folder must exist.
    @discardableResult
    public static func withTemporary<T>(for path: String, _ body: (String) throws -> T) throws -> T {
        let fm = FileManager.default
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw FileWriteError(path, "folder \(dir) does not exist")
        }
        let tmp = temporaryPath(for: path)
        try? fm.removeItem(atPath: tmp)
        let result: T
        do { result = try body(tmp) } catch {
            try? fm.removeItem(atPath: tmp)
            // The user knows the output by its own name, not by the hidden temporary's.
            let text = "\(error)"
            if text.contains(tmp) { throw OutputError(description: text.replacingOccurrences(of: tmp, with: path)) }
            throw error
        }
        try commit(tmp, to: path)
        return result
    }

    /// Renames a finished temporary (`temporaryPath(for: path)`, written piece by piece by its
    /// owner) onto `path`; a folder already at `path` is moved aside first and removed after. On
    /// failure the temporary is removed. `withTemporary` does this for work done in one call.
    public static func commit(_ tmp: String, to path: String) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        var aside: String?
        if fm.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            let old = URL(fileURLWithPath: path).deletingLastPathComponent().path + "/." + URL(fileURLWithPath: path).lastPathComponent + ".old-\(getpid())"
            try? fm.removeItem(atPath: old)
            guard rename(path, old) == 0 else {
                let why = String(cString: strerror(errno))
                try? fm.removeItem(atPath: tmp)
                throw FileWriteError(path, "cannot replace the existing folder: \(why)")
            }
            aside = old
        }
        guard rename(tmp, path) == 0 else {
            let why = String(cString: strerror(errno))
            if let aside { _ = rename(aside, path) }
            try? fm.removeItem(atPath: tmp)
            throw FileWriteError(path, why)
        }
        if let aside { try? fm.removeItem(atPath: aside) }
    }
}
