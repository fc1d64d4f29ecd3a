import CFFmpeg
import Foundation

/// Every failure of video/image/.mat I/O: the file concerned and a readable message (FFmpeg's own
/// message from `av_strerror` for FFmpeg error codes).
public struct MediaError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let file: String
    public let message: String
    /// FFmpeg's error code, when the error came from FFmpeg.
    public let code: Int32?

    public init(file: String, _ message: String, code: Int32? = nil) {
        self.file = file
        self.message = message
        self.code = code
    }

    /// The error of an FFmpeg return code, with FFmpeg's message.
    public init(file: String, ffmpeg code: Int32, during what: String) {
        self.init(file: file, "\(what): \(ffmpegMessage(code))", code: code)
    }

    public var description: String { "\(file): \(message)" }
    public var errorDescription: String? { description }
}

/// FFmpeg's text for an error code.
public func ffmpegMessage(_ code: Int32) -> String {
    var buf = [CChar](repeating: 0, count: 256)
    ct_av_strerror(code, &buf, buf.count)
    return cstr(buf)
}

/// Throws a `MediaError` when `code` is negative (FFmpeg convention).
@inline(__always) @discardableResult
func check(_ code: Int32, _ file: String, _ what: @autoclosure () -> String) throws -> Int32 {
    if code < 0 { throw MediaError(file: file, ffmpeg: code, during: what()) }
    return code
}

/// FFmpeg logging: quiet by default (every problem is reported as a thrown error instead).
public enum FFmpegLog {
    public static func setLevel(_ level: Int32) { av_log_set_level(level) }
    public static let quiet: Int32 = AV_LOG_QUIET
    public static let error: Int32 = AV_LOG_ERROR
    public static let warning: Int32 = AV_LOG_WARNING
    nonisolated(unsafe) static var configured = false
    static let lock = NSLock()
    static func ensureConfigured() {
        lock.lock(); defer { lock.unlock() }
        if !configured {
            configured = true
            if ProcessInfo.processInfo.environment["CYCLETIME_FFMPEG_LOG"] == nil { av_log_set_level(AV_LOG_QUIET) }
        }
    }
}

/// A NUL-terminated C buffer as a Swift string.
func cstr(_ b: [CChar]) -> String {
    String(decoding: b.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
