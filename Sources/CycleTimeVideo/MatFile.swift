import CycleTimeCore
import CZlib
import Foundation

/// A value of a MATLAB v5 .mat file.
public indirect enum MatValue: Sendable {
    /// Numeric or logical array: MATLAB dims, values in ROW-MAJOR order for those dims (converted
    /// from MATLAB's column-major), as scipy.io.loadmat presents them.
    case numeric(MatArray)
    case char(String)
    /// Struct array: dims and, per element (row-major), its fields.
    case structure(dims: [Int], fields: [String], elements: [[String: MatValue]])
    case cell(dims: [Int], elements: [MatValue])

    public var array: MatArray? { if case .numeric(let a) = self { return a } else { return nil } }
    /// Field of a 1x1 struct.
    public subscript(field: String) -> MatValue? {
        if case .structure(_, _, let els) = self, els.count == 1 { return els[0][field] }
        return nil
    }
}

public struct MatArray: Sendable {
    public var dims: [Int]
    /// MATLAB class name: double, single, int8 … uint64, logical.
    public var className: String
    public var values: [Double]
    /// Imaginary part of a complex array.
    public var imaginary: [Double]?
    public var count: Int { values.count }
    /// Element at a row-major index tuple over `dims`.
    public subscript(_ idx: Int...) -> Double {
        var off = 0
        for (d, i) in zip(dims, idx) { off = off * d + i }
        return values[off]
    }
    public func tensor() -> Tensor { Tensor(values.map { Float($0) }, shape: dims) }
}

/// Reader of MATLAB level 5 MAT-files (numeric arrays, logical, char, structs, cells; compressed
/// elements through zlib). v7.3 (HDF5) files, sparse arrays and objects are clear thrown errors.
public enum MatFile {
    /// The most one compressed element may expand to (annotation files are kilobytes).
    public static let maxInflatedBytes = 256 << 20
    public static func read(_ path: String) throws -> [String: MatValue] {
        guard FileManager.default.fileExists(atPath: path) else { throw MediaError(file: path, "no such file") }
        let data: [UInt8]
        do { data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) } catch {
            throw MediaError(file: path, "cannot read: \(error.localizedDescription)")
        }
        return try parse(data, file: path)
    }

    public static func parse(_ data: [UInt8], file: String) throws -> [String: MatValue] {
        if data.isEmpty { throw MediaError(file: file, "empty file") }
        guard data.count >= 128 else { throw MediaError(file: file, "not a MATLAB v5 .mat file (too short)") }
        let text = String(decoding: data[0..<116], as: UTF8.self)
        if data.count > 520 && data[512..<516] == [0x89, 0x48, 0x44, 0x46][...] || text.contains("MATLAB 7.3") {
            throw MediaError(file: file, "MATLAB v7.3 (HDF5) .mat files are not supported; save with -v7 or -v6")
        }
        guard text.hasPrefix("MATLAB") else {
            throw MediaError(file: file, "not a MATLAB v5 .mat file (v4 or unknown header)")
        }
        let big: Bool
        switch (data[126], data[127]) {
        case (0x49, 0x4D): big = false  // "IM"
        case (0x4D, 0x49): big = true
        default: throw MediaError(file: file, "bad endian indicator")
        }
        var r = Reader(bytes: data, big: big, file: file)
        r.pos = 128
        var out: [String: MatValue] = [:]
        while r.pos + 8 <= data.count {
            let (type, n, inline, start) = try r.tag()
            if type == 15 {  // miCOMPRESSED
                let inflated = try inflate(Array(data[start..<start + n]), file: file)
                var sub = Reader(bytes: inflated, big: big, file: file)
                let (t2, n2, _, s2) = try sub.tag()
                if t2 == 14 {
                    if let (name, v) = try sub.matrix(start: s2, count: n2) { out[name] = v }
                }
            } else if type == 14 {
                if let (name, v) = try r.matrix(start: start, count: n) { out[name] = v }
            }
            // Compressed elements are not padded to 8 bytes.
            r.pos = inline ? start + 4 : (type == 15 ? start + n : start + ((n + 7) & ~7))
        }
        return out
    }

    static func inflate(_ input: [UInt8], file: String) throws -> [UInt8] {
        var stream = z_stream()
        guard ct_inflate_init(&stream) == Z_OK else { throw MediaError(file: file, "zlib initialisation failed") }
        defer { inflateEnd(&stream) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var input = input
        let status: Int32 = input.withUnsafeMutableBufferPointer { ib in
            stream.next_in = ib.baseAddress
            stream.avail_in = UInt32(ib.count)
            var st: Int32 = Z_OK
            repeat {
                st = chunk.withUnsafeMutableBufferPointer { cb in
                    stream.next_out = cb.baseAddress
                    stream.avail_out = UInt32(cb.count)
                    let s = CZlib.inflate(&stream, Z_NO_FLUSH)
                    out.append(contentsOf: cb[0..<(cb.count - Int(stream.avail_out))])
                    // A compressed element may expand without bound (a zip bomb): stop at the limit.
                    if out.count > MatFile.maxInflatedBytes { return Z_MEM_ERROR }
                    return s
                }
            } while st == Z_OK && (stream.avail_in > 0 || stream.avail_out == 0)
            return st
        }
        if out.count > MatFile.maxInflatedBytes {
            throw MediaError(file: file, "a compressed element expands to more than \(MatFile.maxInflatedBytes >> 20) MiB")
        }
        if status != Z_STREAM_END && status != Z_OK && status != Z_BUF_ERROR {
            throw MediaError(file: file, "corrupt compressed element (zlib error \(status))")
        }
        return out
    }

    struct Reader {
        let bytes: [UInt8]
        let big: Bool
        let file: String
        var pos = 0

        func u32(_ p: Int) -> UInt32 {
            let b0 = UInt32(bytes[p]), b1 = UInt32(bytes[p + 1]), b2 = UInt32(bytes[p + 2]), b3 = UInt32(bytes[p + 3])
            return big ? (b0 << 24 | b1 << 16 | b2 << 8 | b3) : (b3 << 24 | b2 << 16 | b1 << 8 | b0)
        }
        func u16(_ p: Int) -> UInt16 {
            big ? UInt16(bytes[p]) << 8 | UInt16(bytes[p + 1]) : UInt16(bytes[p + 1]) << 8 | UInt16(bytes[p])
        }
        func u64(_ p: Int) -> UInt64 {
            let a = UInt64(u32(p)), b = UInt64(u32(p + 4))
            return big ? (a << 32 | b) : (b << 32 | a)
        }

        /// Reads a tag at `pos`: (type, byte count, small-element flag, data start).
        mutating func tag() throws -> (Int, Int, Bool, Int) {
            guard pos + 8 <= bytes.count else { throw MediaError(file: file, "truncated .mat file") }
            let w = u32(pos)
            if w >> 16 != 0 && !big || (big && w >> 16 != 0) {
                // Small data element: 2-byte count, 2-byte type, 4 bytes of data.
                let type = Int(w & 0xFFFF), n = Int(w >> 16)
                let start = pos + 4
                pos += 8
                return (type, n, true, start)
            }
            let n = Int(u32(pos + 4))
            let start = pos + 8
            guard start + n <= bytes.count else { throw MediaError(file: file, "truncated .mat file (element of \(n) bytes)") }
            pos = start + ((n + 7) & ~7)
            return (Int(w), n, false, start)
        }

        /// Numeric data of an element as Doubles.
        mutating func numbers() throws -> [Double] {
            let (type, n, _, s) = try tag()
            let size: Int
            switch type {
            case 1, 2, 16: size = 1
            case 3, 4, 17: size = 2
            case 5, 6, 7, 18: size = 4
            case 9, 12, 13: size = 8
            default: throw MediaError(file: file, "unsupported data type \(type)")
            }
            let count = n / size
            var out = [Double](repeating: 0, count: count)
            for i in 0..<count {
                let p = s + i * size
                switch type {
                case 1: out[i] = Double(Int8(bitPattern: bytes[p]))
                case 2, 16: out[i] = Double(bytes[p])
                case 3: out[i] = Double(Int16(bitPattern: u16(p)))
                case 4, 17: out[i] = Double(u16(p))
                case 5: out[i] = Double(Int32(bitPattern: u32(p)))
                case 6, 18: out[i] = Double(u32(p))
                case 7: out[i] = Double(Float(bitPattern: u32(p)))
                case 9: out[i] = Double(bitPattern: u64(p))
                case 12: out[i] = Double(Int64(bitPattern: u64(p)))
                default: out[i] = Double(u64(p))
                }
            }
            return out
        }

        mutating func string() throws -> String {
            let (_, n, _, s) = try tag()
            return String(decoding: bytes[s..<s + n].prefix { $0 != 0 }, as: UTF8.self)
        }

        /// Parses a miMATRIX whose data spans start..<start+count; returns (name, value).
        mutating func matrix(start: Int, count: Int) throws -> (String, MatValue)? {
            if count == 0 { return ("", .numeric(MatArray(dims: [0, 0], className: "double", values: []))) }
            let saved = pos
            defer { pos = saved }
            pos = start
            let flags = try numbers()
            guard let f0 = flags.first, f0 >= 0, f0 <= Double(UInt32.max) else { throw MediaError(file: file, "bad array flags") }
            let cls = Int(UInt32(f0) & 0xFF)
            let isComplex = (UInt32(f0) & 0x800) != 0
            let isLogical = (UInt32(f0) & 0x200) != 0
            // Dimensions come from the file: whole, non-negative, and no more elements than the
            // element has bytes (each value takes at least one), checked before anything is allocated.
            let rawDims = try numbers()
            guard (1...32).contains(rawDims.count), rawDims.allSatisfy({ $0 >= 0 && $0 <= Double(Int32.max) && $0.rounded() == $0 }) else {
                throw MediaError(file: file, "bad array dimensions \(rawDims.prefix(8))")
            }
            let dims = rawDims.map { Int($0) }
            var total = 1
            for d in dims {
                let (t, overflow) = total.multipliedReportingOverflow(by: d)
                guard !overflow, t <= count else { throw MediaError(file: file, "array dimensions \(dims) declare more values than the element's \(count) bytes") }
                total = t
            }
            let name = try string()
            let where_ = name.isEmpty ? "a nested value" : "variable '\(name)'"
            switch cls {
            case 6, 7, 8, 9, 10, 11, 12, 13, 14, 15:
                let re = try numbers()
                let im = isComplex ? try numbers() : nil
                guard re.count == total else { throw MediaError(file: file, "\(where_): \(re.count) values for dims \(dims)") }
                let names = [6: "double", 7: "single", 8: "int8", 9: "uint8", 10: "int16", 11: "uint16", 12: "int32",
                             13: "uint32", 14: "int64", 15: "uint64"]
                return (name, .numeric(MatArray(dims: dims, className: isLogical ? "logical" : names[cls, default: "double"],
                                                values: rowMajor(re, dims), imaginary: im.map { rowMajor($0, dims) })))
            case 4:
                let codes = try numbers()
                guard codes.count == total else { throw MediaError(file: file, "\(where_): \(codes.count) characters for dims \(dims)") }
                let rows = dims.first ?? 0
                let cols = total / max(rows, 1)
                // Column-major chars: rows are strings.
                var lines: [String] = []
                for i in 0..<rows {
                    var s = ""
                    for j in 0..<cols { if let u = Unicode.Scalar(UInt32(codes[i + j * rows])) { s.unicodeScalars.append(u) } }
                    lines.append(s)
                }
                return (name, .char(lines.joined(separator: "\n")))
            case 2:
                let (_, _, inl, s0) = try tag()  // field name length (small element)
                let fnl = Int(u32(s0))
                _ = inl
                let (_, n, _, s1) = try tag()
                var fields: [String] = []
                var p = s1
                while p + fnl <= s1 + n && fnl > 0 {
                    fields.append(String(decoding: bytes[p..<p + fnl].prefix { $0 != 0 }, as: UTF8.self))
                    p += fnl
                }
                var colMajor: [[String: MatValue]] = []
                for _ in 0..<total {
                    var el: [String: MatValue] = [:]
                    for f in fields {
                        let (t, cn, _, cs) = try tag()
                        guard t == 14 else { throw MediaError(file: file, "\(where_): field \(f) is not a matrix") }
                        if let (_, v) = try matrix(start: cs, count: cn) { el[f] = v }
                    }
                    colMajor.append(el)
                }
                guard colMajor.count == total else { throw MediaError(file: file, "\(where_): \(colMajor.count) elements for dims \(dims)") }
                return (name, .structure(dims: dims, fields: fields, elements: rowMajorPerm(colMajor, dims)))
            case 1:
                var colMajor: [MatValue] = []
                for _ in 0..<total {
                    let (t, cn, _, cs) = try tag()
                    guard t == 14 else { throw MediaError(file: file, "\(where_): cell element is not a matrix") }
                    if let (_, v) = try matrix(start: cs, count: cn) { colMajor.append(v) }
                }
                guard colMajor.count == total else { throw MediaError(file: file, "\(where_): \(colMajor.count) cells for dims \(dims)") }
                return (name, .cell(dims: dims, elements: rowMajorPerm(colMajor, dims)))
            case 5: throw MediaError(file: file, "\(where_): sparse arrays are not supported")
            case 3: throw MediaError(file: file, "\(where_): MATLAB objects are not supported")
            default: throw MediaError(file: file, "\(where_): unsupported MATLAB class \(cls)")
            }
        }
    }

    /// Column-major values over `dims` -> row-major.
    static func rowMajor(_ v: [Double], _ dims: [Int]) -> [Double] { rowMajorPerm(v, dims) }

    static func rowMajorPerm<T>(_ v: [T], _ dims: [Int]) -> [T] {
        if dims.count <= 1 || v.count <= 1 || dims.filter({ $0 > 1 }).count <= 1 { return v }
        let n = v.count
        var out = v
        let rank = dims.count
        var idx = [Int](repeating: 0, count: rank)
        // Column-major strides.
        var cs = [Int](repeating: 1, count: rank)
        for k in 1..<rank { cs[k] = cs[k - 1] * dims[k - 1] }
        for o in 0..<n {  // o walks row-major order
            var src = 0
            for k in 0..<rank { src += idx[k] * cs[k] }
            out[o] = v[src]
            var k = rank - 1
            while k >= 0 {
                idx[k] += 1
                if idx[k] < dims[k] { break }
                idx[k] = 0
                k -= 1
            }
        }
        return out
    }
}
