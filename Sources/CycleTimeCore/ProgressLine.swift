import Foundation

/// The one progress line of every long command: on a terminal a single line rewritten in place;
/// otherwise (a log, a pipe) plain lines, at most one every `plainInterval` seconds plus the last.
/// Written to standard error unless `write` says otherwise.
public final class ProgressLine: @unchecked Sendable {
    public let terminal: Bool
    public let plainInterval: Double
    let write: (String) -> Void
    private var lastPlain = -Double.infinity
    private var open = false
    private let lock = NSLock()

    public init(terminal: Bool? = nil, plainInterval: Double = 5,
                write: @escaping (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }) {
        self.terminal = terminal ?? (isatty(STDERR_FILENO) == 1)
        self.plainInterval = plainInterval
        self.write = write
    }

    /// Shows `line`. On a terminal it replaces the current line; otherwise it is written when
    /// `force` is set or `plainInterval` seconds have passed since the last plain line.
    public func show(_ line: String, force: Bool = false) {
        lock.lock(); defer { lock.unlock() }
        if terminal {
            write("\r\u{1B}[2K" + line)
            open = true
            return
        }
        let now = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        guard force || now - lastPlain >= plainInterval else { return }
        lastPlain = now
        write(line + "\n")
    }

    /// Ends the rewritten line (a newline on a terminal) and writes `message` as a line of its own.
    public func finish(_ message: String? = nil) {
        lock.lock(); defer { lock.unlock() }
        if terminal && open { write("\n") }
        open = false
        if let message { write(message + "\n") }
    }

    /// "1h02m", "3m05s", "12s"; "?" when unknown.
    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let s = Int(seconds.rounded())
        if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
        if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return "\(s)s"
    }
}

/// Progress over a known number of items (frames, keyframes, clips): "label  unit done/total
/// rate unit/s  ETA" on one `ProgressLine`.
public final class CountProgress: @unchecked Sendable {
    public let total: Int
    public let unit: String
    public let line: ProgressLine
    public private(set) var done = 0
    private let start = DispatchTime.now().uptimeNanoseconds

    public init(total: Int, unit: String, line: ProgressLine = ProgressLine()) {
        self.total = total; self.unit = unit; self.line = line
    }

    /// Counts `count` more items done and shows the line.
    public func tick(_ label: String, count: Int = 1) {
        done += count
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        line.show(Self.text(label, unit: unit, done: done, total: total, seconds: elapsed), force: done >= total)
    }

    /// "label  unit done/total  rate units/s  ETA ..." after `seconds` of work.
    public static func text(_ label: String, unit: String, done: Int, total: Int, seconds: Double) -> String {
        let rate = Double(done) / max(seconds, 1e-9)
        let eta = Double(total - done) / max(rate, 1e-9)
        return (label.isEmpty ? "" : label + "  ") + "\(unit) \(done)/\(total)  " + String(format: "%.2f", rate) + " \(unit)s/s  ETA " + ProgressLine.duration(eta)
    }

    public func finish(_ message: String? = nil) { line.finish(message) }
}
