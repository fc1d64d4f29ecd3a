import Foundation

/// Errors from reading or writing safetensors files; each names the file.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case malformed(path: String, reason: String)
    case unsupportedDType(path: String, key: String, dtype: String)
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let p, let r): return "\(p): cannot open safetensors file: \(r)"
        case .malformed(let p, let r): return "\(p): not a valid safetensors file: \(r)"
        case .unsupportedDType(let p, let k, let d): return "\(p): tensor '\(k)' has unsupported dtype \(d) (F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL are read)"
        case .cannotWrite(let p, let r): return "\(p): cannot write safetensors file: \(r)"
        }
    }
}

/// The safetensors format: 8-byte little-endian header length, a JSON header mapping names to
/// {dtype, shape, data_offsets}, then little-endian raw data. Read: F32 natively; F16, BF16, F64
/// (and integer types, for fixtures) converted to Float32. Written: F32, keys sorted. A file whose
/// header is not a JSON object, whose entries lack a field, whose tensors fall outside the data
/// section, have the wrong byte count or share bytes, or whose dtype is unknown is rejected with
/// an error naming the file.
public enum SafeTensors {
    public struct File {
        /// Tensors by name (insertion order = order of data offsets in the file).
        public var tensors: [String: Tensor]
        public var order: [String]
        /// The original dtype of each tensor, as written in the file.
        public var dtypes: [String: String]
        public var metadata: [String: String]
    }

    public static func read(_ path: String) throws -> File {
        guard FileManager.default.fileExists(atPath: path) else {
            throw SafeTensorsError.cannotOpen(path: path, reason: "no such file")
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) }
        catch { throw SafeTensorsError.cannotOpen(path: path, reason: error.localizedDescription) }
        return try parse(data, path: path)
    }

    /// Reads just the tensors (a convenience for `read(path).tensors`).
    public static func load(_ path: String) throws -> [String: Tensor] { try read(path).tensors }

    public static func parse(_ data: Data, path: String) throws -> File {
        let headerLen = try headerLength(data.prefix(8), fileSize: data.count, path: path)
        let hEnd = 8 + headerLen
        let header = try parseHeader(data.subdata(in: 8..<hEnd), bodySize: data.count - hEnd, path: path)
        var tensors: [String: Tensor] = [:]
        for e in header.entries {
            let n = Tensor.count(of: e.shape)
            let storage = Storage(uninitializedCount: n)
            try data.withUnsafeBytes { raw in
                guard let base = raw.baseAddress else { throw SafeTensorsError.malformed(path: path, reason: "no data") }
                convert(base + hEnd + e.lo, dtype: e.dtype, count: n, into: storage.pointer)
            }
            tensors[e.key] = Tensor(shape: e.shape, storage: storage)
        }
        return File(tensors: tensors, order: header.entries.map(\.key), dtypes: header.dtypes, metadata: header.metadata)
    }

    /// A file's header without its data: each tensor's dtype, shape and byte range (ordered by
    /// data offsets) and the metadata, checked as `read` checks them.
    public struct Header: Sendable {
        public struct Entry: Sendable {
            public var key: String, dtype: String, shape: [Int], lo: Int, hi: Int
        }
        public var entries: [Entry]
        public var metadata: [String: String]
        public var dtypes: [String: String] { Dictionary(entries.map { ($0.key, $0.dtype) }, uniquingKeysWith: { a, _ in a }) }
    }

    /// Reads only the header of the file at `path` (8 + its length bytes), not the tensors' data:
    /// names, shapes and metadata of a large file at the cost of its header. Errors as `read`'s.
    public static func readHeader(_ path: String) throws -> Header {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw SafeTensorsError.cannotOpen(path: path, reason: FileManager.default.fileExists(atPath: path) ? "not readable" : "no such file")
        }
        defer { try? handle.close() }
        do {
            let size = Int(try handle.seekToEnd())
            try handle.seek(toOffset: 0)
            let headerLen = try headerLength(try handle.read(upToCount: 8) ?? Data(), fileSize: size, path: path)
            let json = try handle.read(upToCount: headerLen) ?? Data()
            guard json.count == headerLen else { throw SafeTensorsError.malformed(path: path, reason: "the header ends early (truncated file?)") }
            return try parseHeader(json, bodySize: size - 8 - headerLen, path: path)
        } catch let e as SafeTensorsError {
            throw e
        } catch {
            throw SafeTensorsError.cannotOpen(path: path, reason: error.localizedDescription)
        }
    }

    /// The header length of the first 8 bytes, checked against the file's size.
    static func headerLength(_ first: Data, fileSize: Int, path: String) throws -> Int {
        guard first.count >= 8, fileSize >= 8 else {
            throw SafeTensorsError.malformed(path: path, reason: fileSize == 0 ? "file is empty" : "file is \(fileSize) bytes, shorter than the 8-byte header length")
        }
        var v: UInt64 = 0
        for (i, b) in first.prefix(8).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        guard v <= UInt64(fileSize - 8), v < 100_000_000 else {
            throw SafeTensorsError.malformed(path: path, reason: "header length \(v) exceeds the file size \(fileSize) (truncated?)")
        }
        return Int(v)
    }

    /// The JSON header's entries and metadata, each entry checked (dtype known, shape and offsets
    /// valid, inside the `bodySize` bytes of data, the byte count of its shape) and none sharing bytes.
    static func parseHeader(_ json: Data, bodySize: Int, path: String) throws -> Header {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: json) }
        catch { throw SafeTensorsError.malformed(path: path, reason: "header is not valid JSON") }
        guard let header = object as? [String: Any] else {
            throw SafeTensorsError.malformed(path: path, reason: "header is not a JSON object")
        }
        var metadata: [String: String] = [:]
        var entries: [Header.Entry] = []
        for (key, value) in header {
            if key == "__metadata__" {
                if let m = value as? [String: Any] { for (k, v) in m { metadata[k] = "\(v)" } }
                continue
            }
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shapeAny = info["shape"] as? [Any], let offs = info["data_offsets"] as? [Any], offs.count == 2
            else { throw SafeTensorsError.malformed(path: path, reason: "entry '\(key)' lacks dtype, shape or data_offsets") }
            let shape = try shapeAny.map { v -> Int in
                guard let n = (v as? NSNumber)?.intValue, n >= 0 else {
                    throw SafeTensorsError.malformed(path: path, reason: "entry '\(key)' has a bad shape")
                }
                return n
            }
            guard let lo = (offs[0] as? NSNumber)?.intValue, let hi = (offs[1] as? NSNumber)?.intValue, lo >= 0, hi >= lo else {
                throw SafeTensorsError.malformed(path: path, reason: "entry '\(key)' has bad data_offsets")
            }
            guard hi <= bodySize else {
                throw SafeTensorsError.malformed(path: path, reason: "tensor '\(key)' ends at byte \(hi) but the data section has \(bodySize) bytes (truncated file?)")
            }
            guard let width = elementSize(dtype) else {
                throw SafeTensorsError.unsupportedDType(path: path, key: key, dtype: dtype)
            }
            // The byte count with overflow checked (a hostile shape must not trap), then within the data section.
            let count = shape.reduce(Optional(1)) { acc, d in acc.flatMap { a in a.multipliedReportingOverflow(by: d).overflow ? nil : a * d } }
            let bytes = count.flatMap { n in n.multipliedReportingOverflow(by: width).overflow ? nil : n * width }
            guard let bytes, hi - lo == bytes else {
                throw SafeTensorsError.malformed(path: path, reason: "tensor '\(key)' of shape \(shape) and dtype \(dtype) needs \(bytes.map { "\($0) bytes" } ?? "more bytes than a file holds"), has \(hi - lo)")
            }
            entries.append(Header.Entry(key: key, dtype: dtype, shape: shape, lo: lo, hi: hi))
        }
        entries.sort { ($0.lo, $0.hi) < ($1.lo, $1.hi) }
        // Tensors with data must not share bytes (empty ones may sit anywhere).
        var previous: Header.Entry? = nil
        for e in entries where e.hi > e.lo {
            if let p = previous, e.lo < p.hi {
                throw SafeTensorsError.malformed(path: path, reason: "tensors '\(p.key)' (bytes \(p.lo)..<\(p.hi)) and '\(e.key)' (bytes \(e.lo)..<\(e.hi)) overlap")
            }
            previous = e
        }
        return Header(entries: entries, metadata: metadata)
    }

    static func elementSize(_ dtype: String) -> Int? {
        switch dtype {
        case "F32", "I32": return 4
        case "F16", "BF16", "I16": return 2
        case "F64", "I64": return 8
        case "U8", "I8", "BOOL": return 1
        default: return nil
        }
    }

    static func convert(_ src: UnsafeRawPointer, dtype: String, count n: Int, into dst: UnsafeMutablePointer<Float>) {
        switch dtype {
        case "F32":
            for i in 0..<n { dst[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        case "F16":
            for i in 0..<n { dst[i] = halfToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case "BF16":
            for i in 0..<n { dst[i] = Float(bitPattern: UInt32(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
        case "F64":
            for i in 0..<n { dst[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
        case "I64":
            for i in 0..<n { dst[i] = Float(Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
        case "I32":
            for i in 0..<n { dst[i] = Float(Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
        case "I16":
            for i in 0..<n { dst[i] = Float(Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
        case "I8":
            for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
        default:  // U8, BOOL
            for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) }
        }
    }

    /// IEEE half to single.
    public static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int((h >> 10) & 0x1F), mant = UInt32(h & 0x3FF)
        if exp == 0 {
            if mant == 0 { return Float(bitPattern: sign) }
            let v = Float(mant) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign != 0 ? -v : v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
        return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (mant << 13))
    }

    /// Serializes tensors (F32) with keys in sorted order.
    public static func serialize(_ tensors: [String: Tensor], metadata: [String: String] = [:]) -> Data {
        let keys = tensors.keys.sorted()
        var header = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let m = metadata.sorted(by: { $0.key < $1.key }).map { "\(jsonString($0.key)):\(jsonString($0.value))" }.joined(separator: ",")
            parts.append("\"__metadata__\":{\(m)}")
        }
        var offset = 0
        for k in keys {
            guard let t = tensors[k] else { continue }
            let bytes = t.count * 4
            parts.append("\(jsonString(k)):{\"dtype\":\"F32\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        header += parts.joined(separator: ",") + "}"
        var hbytes = Array(header.utf8)
        while (hbytes.count + 8) % 8 != 0 { hbytes.append(0x20) }
        var out = Data(capacity: 8 + hbytes.count + offset)
        var len = UInt64(hbytes.count).littleEndian
        withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
        out.append(contentsOf: hbytes)
        for k in keys {
            guard let t = tensors[k] else { continue }
            // Little-endian hosts only (x86_64, arm64): raw Float32 bytes.
            out.append(UnsafeBufferPointer(start: t.data, count: t.count))
        }
        return out
    }

    /// Writes atomically: a temporary file beside `path`, renamed into place when complete, so an
    /// interrupted write never leaves a partial file under the final name.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to path: String) throws {
        let data = serialize(tensors, metadata: metadata)
        do { try AtomicFile.write(data, to: path) } catch let e as FileWriteError {
            throw SafeTensorsError.cannotWrite(path: path, reason: e.reason)
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}

extension SafeTensors {
    /// Writes a safetensors file whose first tensor grows row by row (e.g. `features` [T, C, h, w],
    /// appended batch by batch, so memory holds one batch whatever T), followed by 1-D tensors of
    /// one value per row (e.g. `timestamps` [T]) given at the end. The header's space is reserved
    /// up front and filled at the end (space-padded, as the format allows); the file is written to
    /// `AtomicFile`'s temporary and renamed into place by `finish`, so an interrupted write leaves
    /// nothing under the final name. Tensors are F32, in the order given (streamed first).
    public final class StreamWriter {
        public let path: String
        public let temporaryPath: String
        public let streamed: String
        public let rowShape: [Int]
        public let perRow: [String]
        public let metadata: [String: String]
        private var fd: Int32
        private let reserved: Int
        public private(set) var rows = 0

        public init(path: String, streamed: String, rowShape: [Int], perRow: [String], metadata: [String: String]) throws {
            self.path = path; self.streamed = streamed; self.rowShape = rowShape; self.perRow = perRow; self.metadata = metadata
            temporaryPath = AtomicFile.temporaryPath(for: path)
            // The header of 0 rows plus room for its numbers to grow to 19 digits each.
            let base = Self.header(rows: 0, streamed: streamed, rowShape: rowShape, perRow: perRow, metadata: metadata).utf8.count
            let numbers = 3 + 3 * perRow.count
            reserved = (base + numbers * 19 + 7) / 8 * 8
            fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o666)
            if fd < 0 { throw SafeTensorsError.cannotWrite(path: path, reason: String(cString: strerror(errno))) }
            do { try writeAll([UInt8](repeating: 0x20, count: 8 + reserved)) } catch { abort(); throw error }
        }

        /// The JSON header: metadata, then the tensors in order with contiguous offsets.
        static func header(rows t: Int, streamed: String, rowShape: [Int], perRow: [String], metadata: [String: String]) -> String {
            let meta = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0] ?? ""))" }.joined(separator: ",")
            let streamBytes = 4 * t * rowShape.reduce(1, *)
            var parts = ["\(jsonString(streamed)):{\"dtype\":\"F32\",\"shape\":[\(([t] + rowShape).map(String.init).joined(separator: ","))],\"data_offsets\":[0,\(streamBytes)]}"]
            var offset = streamBytes
            for name in perRow {
                parts.append("\(jsonString(name)):{\"dtype\":\"F32\",\"shape\":[\(t)],\"data_offsets\":[\(offset),\(offset + 4 * t)]}")
                offset += 4 * t
            }
            return "{\"__metadata__\":{\(meta)}," + parts.joined(separator: ",") + "}"
        }

        private func writeAll(_ p: UnsafeRawPointer, _ count: Int) throws {
            var done = 0
            while done < count {
                let r = Foundation.write(fd, p + done, count - done)
                if r < 0 {
                    if errno == EINTR { continue }
                    throw SafeTensorsError.cannotWrite(path: path, reason: String(cString: strerror(errno)))
                }
                done += r
            }
        }
        private func writeAll(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try writeAll($0) } }
        /// An empty buffer (no rows) may have no address: nothing to write then.
        private func writeAll(_ buffer: UnsafeRawBufferPointer) throws {
            if let base = buffer.baseAddress, buffer.count > 0 { try writeAll(base, buffer.count) }
        }

        /// Appends rows [n] + rowShape (little-endian F32, as the host).
        public func append(_ t: Tensor) throws {
            guard Array(t.shape.dropFirst()) == rowShape else {
                throw SafeTensorsError.cannotWrite(path: path, reason: "rows of shape \(Array(t.shape.dropFirst())) appended to '\(streamed)' of row shape \(rowShape)")
            }
            try writeAll(UnsafeRawPointer(t.data), 4 * t.count)
            rows += t.shape[0]
        }

        /// Writes the per-row tensors (one value per row each) and the header, then renames the
        /// file into place.
        public func finish(perRow values: [String: [Float]]) throws {
            for name in perRow {
                guard let v = values[name], v.count == rows else {
                    throw SafeTensorsError.cannotWrite(path: path, reason: "'\(name)' needs \(rows) values, got \(values[name]?.count ?? 0)")
                }
                try v.withUnsafeBytes { try writeAll($0) }
            }
            let h = Array(Self.header(rows: rows, streamed: streamed, rowShape: rowShape, perRow: perRow, metadata: metadata).utf8)
            guard h.count <= reserved else { throw SafeTensorsError.cannotWrite(path: path, reason: "header larger than its reserved space") }
            var len = UInt64(reserved).littleEndian
            var head = withUnsafeBytes(of: &len) { Array($0) }
            head += h + [UInt8](repeating: 0x20, count: reserved - h.count)
            guard lseek(fd, 0, SEEK_SET) == 0 else { throw SafeTensorsError.cannotWrite(path: path, reason: "seek failed") }
            try writeAll(head)
            guard fsync(fd) == 0, close(fd) == 0 else {
                fd = -1
                throw SafeTensorsError.cannotWrite(path: path, reason: String(cString: strerror(errno)))
            }
            fd = -1
            do { try AtomicFile.commit(temporaryPath, to: path) } catch let e as FileWriteError {
                throw SafeTensorsError.cannotWrite(path: path, reason: e.reason)
            }
        }

        /// Closes and removes the temporary file.
        public func abort() {
            if fd >= 0 { close(fd); fd = -1 }
            unlink(temporaryPath)
        }

        deinit { if fd >= 0 { close(fd); unlink(temporaryPath) } }
    }
}
