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
        var entries: [(key: String, lo: Int, hi: Int)] = []
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
            entries.append((key, lo, hi))
        }
        entries.sort { ($0.lo, $0.hi) < ($1.lo, $1.hi) }
        // Tensors with data must not share bytes (empty ones may sit anywhere).
        var previous: (key: String, lo: Int, hi: Int)? = nil
        for e in entries where e.hi > e.lo {
            if let p = previous, e.lo < p.hi {
                throw SafeTensorsError.malformed(path: path, reason: "tensors '\(p.key)' (bytes \(p.lo)..<\(p.hi)) and '\(e.key)' (bytes \(e.lo)..<\(e.hi)) overlap")
            }
            previous = e
        }
        let order = entries.map { $0.key }
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
