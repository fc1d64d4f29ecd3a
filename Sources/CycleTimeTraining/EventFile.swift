import CycleTimeCore
import Foundation

/// CRC-32C (Castagnoli: the reflected polynomial 0x82F63B78), the checksum of TFRecord frames.
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { i in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    public static func checksum<S: Sequence>(_ bytes: S) -> UInt32 where S.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    /// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
    public static func masked<S: Sequence>(_ bytes: S) -> UInt32 where S.Element == UInt8 {
        let c = checksum(bytes)
        return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
    }
}

/// TFRecord framing: uint64 length, masked CRC-32C of the length, the data, masked CRC-32C of
/// the data (all little-endian).
public enum TFRecord {
    public static func frame(_ data: Data) -> Data {
        let length = littleEndian(UInt64(data.count))
        var out = Data(capacity: data.count + 16)
        out += length
        out += littleEndian(CRC32C.masked(length))
        out += data
        out += littleEndian(CRC32C.masked(data))
        return out
    }

    /// The records of `data` in order, up to the first one that is cut short or fails its CRC:
    /// `validBytes` is the length of the readable part, `problem` says what stopped the reading.
    public static func records(_ data: Data) -> (records: [Data], validBytes: Int, problem: String?) {
        let bytes = [UInt8](data)
        var out: [Data] = []
        var at = 0
        while at < bytes.count {
            guard bytes.count - at >= 12 else { return (out, at, "record \(out.count): cut short in its header") }
            let lengthBytes = bytes[at..<(at + 8)]
            guard readUInt32(bytes, at + 8) == CRC32C.masked(lengthBytes) else {
                return (out, at, "record \(out.count): wrong CRC of its length")
            }
            let length = lengthBytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let room = bytes.count - at - 16
            guard room >= 0, length <= UInt64(room) else { return (out, at, "record \(out.count): cut short (\(length) bytes announced)") }
            let start = at + 12, end = start + Int(length)
            guard readUInt32(bytes, end) == CRC32C.masked(bytes[start..<end]) else {
                return (out, at, "record \(out.count): wrong CRC of its data")
            }
            out.append(Data(bytes[start..<end]))
            at = end + 4
        }
        return (out, at, nil)
    }

    static func readUInt32(_ b: [UInt8], _ at: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) }
    }

    static func littleEndian<T: FixedWidthInteger>(_ v: T) -> Data {
        withUnsafeBytes(of: v.littleEndian) { Data($0) }
    }
}

/// A TensorBoard `Event` holding a `Summary` (or, first in a file, the file version), the few
/// fields of tensorflow/core/util/event.proto and summary.proto that CycleTime writes, encoded
/// and decoded by hand: Event {wall_time = 1 double, step = 2 int64, file_version = 3 string,
/// summary = 5 Summary}, Summary {value = 1 repeated Value}, Value {tag = 1 string,
/// simple_value = 2 float, image = 4 Image}, Image {height = 1, width = 2, colorspace = 3 int32,
/// encoded_image_string = 4 bytes}.
public struct SummaryEvent: Equatable, Sendable {
    public enum Content: Equatable, Sendable {
        case scalar(Float)
        /// PNG bytes; colorspace as TensorBoard's: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
        case image(width: Int, height: Int, colorspace: Int, png: Data)
    }

    public struct Value: Equatable, Sendable {
        public var tag: String
        public var content: Content
        public init(tag: String, _ content: Content) { self.tag = tag; self.content = content }
    }

    public static let fileVersion = "brain.Event:2"

    public var wallTime: Double
    public var step: Int
    public var fileVersion: String?
    public var values: [Value]

    public init(wallTime: Double, step: Int, fileVersion: String? = nil, values: [Value] = []) {
        self.wallTime = wallTime
        self.step = step
        self.fileVersion = fileVersion
        self.values = values
    }

    /// The protobuf encoding.
    public func encoded() -> Data {
        var e = ProtoWriter()
        e.fixed64(1, wallTime.bitPattern)
        e.varint(2, UInt64(bitPattern: Int64(step)))
        if let fileVersion { e.bytes(3, Data(fileVersion.utf8)) }
        if !values.isEmpty {
            var summary = ProtoWriter()
            for v in values {
                var value = ProtoWriter()
                value.bytes(1, Data(v.tag.utf8))
                switch v.content {
                case .scalar(let x):
                    value.fixed32(2, x.bitPattern)
                case let .image(width, height, colorspace, png):
                    var image = ProtoWriter()
                    image.varint(1, UInt64(height))
                    image.varint(2, UInt64(width))
                    image.varint(3, UInt64(colorspace))
                    image.bytes(4, png)
                    value.bytes(4, image.data)
                }
                summary.bytes(1, value.data)
            }
            e.bytes(5, summary.data)
        }
        return e.data
    }

    /// Decodes an event (the fields above; others are skipped). Throws on malformed bytes.
    public init(decoding data: Data) throws {
        self.init(wallTime: 0, step: 0)
        try ProtoReader.fields(data) { field, value in
            switch (field, value) {
            case (1, .fixed64(let b)): wallTime = Double(bitPattern: b)
            case (2, .varint(let v)): step = Int(Int64(bitPattern: v))
            case (3, .bytes(let b)): fileVersion = String(decoding: b, as: UTF8.self)
            case (5, .bytes(let b)):
                try ProtoReader.fields(b) { f, v in
                    if f == 1, case .bytes(let valueBytes) = v { values.append(try Self.value(valueBytes)) }
                }
            default: break
            }
        }
    }

    static func value(_ data: Data) throws -> Value {
        var tag = "", content: Content?
        try ProtoReader.fields(data) { field, value in
            switch (field, value) {
            case (1, .bytes(let b)): tag = String(decoding: b, as: UTF8.self)
            case (2, .fixed32(let b)): content = .scalar(Float(bitPattern: b))
            case (4, .bytes(let b)):
                var w = 0, h = 0, cs = 0, png = Data()
                try ProtoReader.fields(b) { f, v in
                    switch (f, v) {
                    case (1, .varint(let x)): h = Int(truncatingIfNeeded: x)
                    case (2, .varint(let x)): w = Int(truncatingIfNeeded: x)
                    case (3, .varint(let x)): cs = Int(truncatingIfNeeded: x)
                    case (4, .bytes(let x)): png = x
                    default: break
                    }
                }
                content = .image(width: w, height: h, colorspace: cs, png: png)
            default: break
            }
        }
        guard let content else { throw EventFileError("summary value '\(tag)' has neither a simple_value nor an image") }
        return Value(tag: tag, content)
    }

    /// An image value from PNG bytes: width, height and colorspace are read from its IHDR chunk.
    public static func image(tag: String, png: Data) throws -> Value {
        let b = [UInt8](png.prefix(26))
        let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        guard b.count == 26, Array(b[0..<8]) == signature, Array(b[12..<16]) == Array("IHDR".utf8) else {
            throw EventFileError("image '\(tag)': not PNG bytes")
        }
        func be32(_ at: Int) -> Int { (0..<4).reduce(0) { $0 << 8 | Int(b[at + $1]) } }
        // PNG colour types: 0 gray, 2 RGB, 3 palette (shown as RGB), 4 gray + alpha, 6 RGBA.
        let colorspace: [UInt8: Int] = [0: 1, 2: 3, 3: 3, 4: 2, 6: 4]
        guard let cs = colorspace[b[25]] else { throw EventFileError("image '\(tag)': unknown PNG colour type \(b[25])") }
        return Value(tag: tag, .image(width: be32(16), height: be32(20), colorspace: cs, png: png))
    }
}

/// An error reading or writing an event file; names the file or the value.
public struct EventFileError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

/// A TensorBoard event file (`events.out.tfevents.<unix seconds>.<hostname>`): an append-only
/// log of TFRecord-framed `SummaryEvent`s, the first holding the file version. Every record is
/// written through to the file at once, so `tensorboard --logdir` shows a run live.
public final class EventFileWriter {
    public static let prefix = "events.out.tfevents."
    public let path: String
    private let handle: FileHandle

    /// Starts a new event file in `folder`. Its seconds are those of now, or one more than the
    /// newest event file of the folder has: TensorBoard reads a folder's files in name order, so
    /// a later file always sorts after the earlier ones (and never replaces one).
    public init(folder: String, now: Date = Date()) throws {
        let newest = Self.files(in: folder).compactMap(Self.seconds).max() ?? 0
        let seconds = max(Int(now.timeIntervalSince1970), newest + 1)
        path = folder + "/" + Self.prefix + "\(seconds)." + Self.hostname()
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileWriteError(path, String(cString: strerror(errno))) }
        handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        try write(SummaryEvent(wallTime: now.timeIntervalSince1970, step: 0, fileVersion: SummaryEvent.fileVersion))
    }

    /// Appends one event (one `write` of its whole record).
    public func write(_ event: SummaryEvent) throws {
        do { try handle.write(contentsOf: TFRecord.frame(event.encoded())) } catch { throw FileWriteError(path: path, underlying: error) }
    }

    /// The finite values as scalars at `step` (a non-finite one, `null` in metrics.jsonl, is left out).
    public func writeScalars(step: Int, _ values: [(String, Double)], wallTime: Double = Date().timeIntervalSince1970) throws {
        let kept = values.filter(\.1.isFinite).map { SummaryEvent.Value(tag: $0.0, .scalar(Float($0.1))) }
        if kept.isEmpty { return }
        try write(SummaryEvent(wallTime: wallTime, step: step, values: kept))
    }

    /// The event files of `folder`, in name order (TensorBoard's reading order).
    public static func files(in folder: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.hasPrefix(prefix) && !AtomicFile.isTemporary($0) }.sorted().map { folder + "/" + $0 }
    }

    /// The events of a file; throws when a record is cut short, fails its CRC or does not decode.
    public static func read(_ path: String) throws -> [SummaryEvent] {
        guard let data = FileManager.default.contents(atPath: path) else { throw EventFileError("\(path): cannot read") }
        let r = TFRecord.records(data)
        if let problem = r.problem { throw EventFileError("\(path): \(problem)") }
        return try r.records.enumerated().map { i, record in
            do { return try SummaryEvent(decoding: record) } catch { throw EventFileError("\(path): record \(i): \(error)") }
        }
    }

    /// After resuming from `step`: rewrites (atomically) every event file of `folder` that holds
    /// summaries of later steps, or a record cut short by a kill, keeping only the readable records
    /// of steps <= `step` (and the file version), so the new file's steps appear once.
    public static func keepSteps(upTo step: Int, in folder: String) throws {
        for file in files(in: folder) {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            let r = TFRecord.records(data)
            let kept = r.records.filter { record in
                guard let e = try? SummaryEvent(decoding: record) else { return false }
                return e.values.isEmpty || e.step <= step
            }
            if kept.count == r.records.count && r.problem == nil { continue }
            try AtomicFile.write(kept.reduce(into: Data()) { $0 += TFRecord.frame($1) }, to: file)
        }
    }

    static func seconds(_ path: String) -> Int? {
        Int(URL(fileURLWithPath: path).lastPathComponent.dropFirst(prefix.count).prefix { $0.isNumber })
    }

    static func hostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "localhost" }
        let name = String(cString: buf).replacingOccurrences(of: "/", with: "_")
        return name.isEmpty ? "localhost" : name
    }
}

/// The protobuf wire format, as far as event files need it.
struct ProtoWriter {
    var data = Data()

    mutating func raw(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            data.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        data.append(UInt8(v))
    }

    mutating func varint(_ field: Int, _ v: UInt64) { raw(UInt64(field << 3)); raw(v) }
    mutating func fixed64(_ field: Int, _ v: UInt64) { raw(UInt64(field << 3 | 1)); data += TFRecord.littleEndian(v) }
    mutating func fixed32(_ field: Int, _ v: UInt32) { raw(UInt64(field << 3 | 5)); data += TFRecord.littleEndian(v) }
    mutating func bytes(_ field: Int, _ v: Data) { raw(UInt64(field << 3 | 2)); raw(UInt64(v.count)); data += v }
}

enum ProtoReader {
    enum Value { case varint(UInt64), fixed64(UInt64), fixed32(UInt32), bytes(Data) }

    /// Calls `body` with each field of a message in order; throws on malformed bytes.
    static func fields(_ data: Data, _ body: (Int, Value) throws -> Void) throws {
        let b = [UInt8](data)
        var at = 0
        func raw() throws -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard at < b.count, shift < 64 else { throw EventFileError("protobuf: a varint is cut short") }
                let byte = b[at]
                at += 1
                v |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return v }
                shift += 7
            }
        }
        func take(_ n: UInt64) throws -> [UInt8] {
            guard n <= UInt64(b.count - at) else { throw EventFileError("protobuf: a field is cut short") }
            defer { at += Int(n) }
            return Array(b[at..<(at + Int(n))])
        }
        func little(_ bytes: [UInt8]) -> UInt64 { bytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
        while at < b.count {
            let key = try raw()
            let field = Int(truncatingIfNeeded: key >> 3)
            switch key & 7 {
            case 0: try body(field, .varint(try raw()))
            case 1: try body(field, .fixed64(little(try take(8))))
            case 2: try body(field, .bytes(Data(try take(try raw()))))
            case 5: try body(field, .fixed32(UInt32(little(try take(4)))))
            default: throw EventFileError("protobuf: unsupported wire type \(key & 7)")
            }
        }
    }
}
