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
        case .unsupportedDType(let p, let k, let d): return "\(p): tensor '\(k)' has unsupported dtype \(d) (F32, F16, BF16, F64, I64, I32, U8, BOOL are read)"
        case .cannotWrite(let p, let r): return "\(p): cannot write safetensors file: \(r)"
        }
    }
}

/// The safetensors format: 8-byte little-endian header length, a JSON header mapping names to
/// {dtype, shape, data_offsets}, then little-endian raw data. Read: F32 natively; F16, BF16, F64
/// (and integer types, for fixtures) converted to Float32. Written: F32.
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
        guard data.count >= 8 else {
            throw SafeTensorsError.malformed(path: path, reason: data.isEmpty ? "file is empty" : "file is \(data.count) bytes, shorter than the 8-byte header length")
        }
        let headerLen = data.withUnsafeBytes { raw -> UInt64 in
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(raw[i]) << (8 * UInt64(i)) }
            return v
        }
        guard headerLen <= UInt64(data.count - 8), headerLen < 100_000_000 else {
            throw SafeTensorsError.malformed(path: path, reason: "header length \(headerLen) exceeds the file size \(data.count) (truncated?)")
        }
        let hStart = 8, hEnd = 8 + Int(headerLen)
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: data.subdata(in: hStart..<hEnd)) }
        catch { throw SafeTensorsError.malformed(path: path, reason: "header is not valid JSON") }
        guard let header = json as? [String: Any] else {
            throw SafeTensorsError.malformed(path: path, reason: "header is not a JSON object")
        }
        let body = hEnd
        let bodySize = data.count - body
        var tensors: [String: Tensor] = [:], dtypes: [String: String] = [:], metadata: [String: String] = [:]
        var entries: [(String, Int)] = []
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
            let n = Tensor.count(of: shape)
            guard let width = elementSize(dtype) else {
                throw SafeTensorsError.unsupportedDType(path: path, key: key, dtype: dtype)
            }
            guard (hi - lo) == n * width else {
                throw SafeTensorsError.malformed(path: path, reason: "tensor '\(key)' of shape \(shape) and dtype \(dtype) needs \(n * width) bytes, has \(hi - lo)")
            }
            let storage = Storage(uninitializedCount: n)
            data.withUnsafeBytes { raw in
                convert(raw.baseAddress! + body + lo, dtype: dtype, count: n, into: storage.pointer)
            }
            tensors[key] = Tensor(shape: shape, storage: storage)
            dtypes[key] = dtype
            entries.append((key, lo))
        }
        let order = entries.sorted { $0.1 < $1.1 }.map { $0.0 }
        return File(tensors: tensors, order: order, dtypes: dtypes, metadata: metadata)
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
            let m = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",")
            parts.append("\"__metadata__\":{\(m)}")
        }
        var offset = 0
        for k in keys {
            let t = tensors[k]!
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
            let t = tensors[k]!
            // Little-endian hosts only (x86_64, arm64): raw Float32 bytes.
            out.append(UnsafeBufferPointer(start: t.data, count: t.count))
        }
        return out
    }

    /// Writes atomically: a temporary file beside `path`, renamed into place when complete, so an
    /// interrupted write never leaves a partial file under the final name.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to path: String) throws {
        let data = serialize(tensors, metadata: metadata)
        try writeAtomically(data, to: path)
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

/// The temporary file an atomic write of `path` goes through: `.<name>.tmp-<pid>` beside it.
public func atomicTemporaryPath(for path: String) -> String {
    let url = URL(fileURLWithPath: path)
    return url.deletingLastPathComponent().path + "/." + url.lastPathComponent + ".tmp-\(getpid())"
}

/// Whether a file name is an atomic write's temporary (`atomicTemporaryPath`), e.g. one left by a
/// process killed while writing.
public func isAtomicTemporary(_ name: String) -> Bool {
    guard name.hasPrefix("."), let r = name.range(of: ".tmp-", options: .backwards) else { return false }
    let pid = name[r.upperBound...]
    return !pid.isEmpty && pid.allSatisfy { $0 >= "0" && $0 <= "9" }
}

/// Writes `data` to a temporary file in the same folder (`atomicTemporaryPath`), then renames it to `path`.
public func writeAtomically(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent().path
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
        throw SafeTensorsError.cannotWrite(path: path, reason: "folder \(dir) does not exist")
    }
    let tmp = atomicTemporaryPath(for: path)
    // Written with open/write (not FileManager, whose own atomic write would add a second
    // temporary under another name), so `tmp` is the only file an interrupted write can leave.
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o666)
    guard fd >= 0 else {
        throw SafeTensorsError.cannotWrite(path: path, reason: "cannot create a file in \(dir) (\(String(cString: strerror(errno))))")
    }
    let failure: String? = data.withUnsafeBytes { raw -> String? in
        guard let base = raw.baseAddress else { return nil }
        var done = 0
        while done < raw.count {
            let n = write(fd, base + done, raw.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                return String(cString: strerror(errno))
            }
            done += n
        }
        return nil
    }
    if close(fd) != 0 || failure != nil {
        let reason = failure ?? String(cString: strerror(errno))
        unlink(tmp)
        throw SafeTensorsError.cannotWrite(path: path, reason: reason)
    }
    if rename(tmp, path) != 0 {
        let reason = String(cString: strerror(errno))
        unlink(tmp)
        throw SafeTensorsError.cannotWrite(path: path, reason: reason)
    }
}
