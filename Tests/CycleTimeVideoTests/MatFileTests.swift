import Foundation
import XCTest
@testable import CycleTimeVideo
import TestSupport

final class MatFileTests: XCTestCase {
    let dir = Fixtures.directory + "/mat"

    func checkTypes(_ m: [String: MatValue]) throws {
        // Values written by scipy.io.savemat (scripts/make_mat_fixtures.py).
        let a = try XCTUnwrap(m["a"]?.array)
        XCTAssertEqual(a.dims, [2, 3, 4])
        XCTAssertEqual(a.values, (0..<24).map(Double.init))  // row-major as numpy's arange(24).reshape(2,3,4)
        XCTAssertEqual(a[1, 2, 3], 23)
        let i16 = try XCTUnwrap(m["i16"]?.array)
        XCTAssertEqual(i16.className, "int16")
        XCTAssertEqual(i16.values, [-3, 7, 100, -200])
        XCTAssertEqual(m["u8"]?.array?.values, [1, 2, 3])
        XCTAssertEqual(m["u8"]?.array?.className, "uint8")
        XCTAssertEqual(m["f32"]?.array?.values, [1.5, -2.25])
        XCTAssertEqual(m["flag"]?.array?.values, [1, 0])
        XCTAssertEqual(m["flag"]?.array?.className, "logical")
        let s = try XCTUnwrap(m["s"])
        guard case .char(let name)? = s["name"] else { return XCTFail("s.name") }
        XCTAssertEqual(name, "clip")
        XCTAssertEqual(s["size"]?.array?.values, [240, 320])
        XCTAssertEqual(s["w"]?.array?.values, [0.5])
        guard case .cell(let dims, let els)? = m["c"] else { return XCTFail("c") }
        XCTAssertEqual(dims, [1, 2])
        XCTAssertEqual(els[0].array?.values, [1])
        guard case .char("x") = els[1] else { return XCTFail("c[1]") }
        guard case .char("hello")? = m["txt"] else { return XCTFail("txt") }
    }

    func testPlainAndCompressed() throws {
        try checkTypes(MatFile.read(dir + "/types_plain.mat"))
        try checkTypes(MatFile.read(dir + "/types_compressed.mat"))
    }

    func testJHMDBJointPositions() throws {
        let path = try requireSharedData("jhmdb-mini/joint_positions/catch/Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2/joint_positions.mat")
        let m = try MatFile.read(path)
        let p = try XCTUnwrap(m["pos_img"]?.array)
        XCTAssertEqual(p.dims, [2, 15, 40])
        // Read off with scipy.io.loadmat: pos_img[:,0,0], [:,14,39], [:,7,20].
        XCTAssertEqual(p[0, 0, 0], 286.5); XCTAssertEqual(p[1, 0, 0], 106.5)
        XCTAssertEqual(p[0, 14, 39], 178.41439478, accuracy: 1e-7); XCTAssertEqual(p[1, 14, 39], 225.57242713, accuracy: 1e-7)
        XCTAssertEqual(p[0, 7, 20], 145.64587019, accuracy: 1e-7); XCTAssertEqual(p[1, 7, 20], 92.86555375, accuracy: 1e-7)
        XCTAssertEqual(Array(p.values.prefix(4)), [286.5, 277.01755333, 268.44336563, 255.58208408].map { $0 }, accuracy: 1e-7)
        XCTAssertEqual(m["pos_world"]?.array?.dims, [2, 15, 40])
    }

    func testJHMDBPuppetMask() throws {
        let path = try requireSharedData("jhmdb-mini/puppet_mask/catch/Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2/puppet_mask.mat")
        let m = try MatFile.read(path)
        let pm = try XCTUnwrap(m["part_mask"]?.array)
        XCTAssertEqual(pm.dims, [240, 320, 40])
        XCTAssertEqual(pm.className, "double")  // MATLAB class double, stored as miUINT8 (scipy shows the storage type)
        // scipy: part_mask.sum() == 105770, part_mask[:, :, 5].sum() == 2391.
        XCTAssertEqual(pm.values.reduce(0, +), 105770)
        var s5 = 0.0
        for y in 0..<240 { for x in 0..<320 { s5 += pm[y, x, 5] } }
        XCTAssertEqual(s5, 2391)
    }

    func testUnsupportedSparse() {
        XCTAssertThrowsError(try MatFile.read(dir + "/sparse.mat")) { e in
            let d = "\(e)"
            XCTAssertTrue(d.contains("sparse.mat") && d.contains("'sp'") && d.contains("sparse"), d)
        }
    }

    func testUnsupportedV73() throws {
        var bytes = [UInt8](repeating: 0x20, count: 1024)
        let header = Array("MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Nov 23 2026 HDF5 schema 1.00 .".utf8)
        bytes.replaceSubrange(0..<header.count, with: header)
        bytes[126] = 0x49; bytes[127] = 0x4D
        bytes.replaceSubrange(512..<520, with: [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A])
        let p = temporaryDirectory() + "/v73.mat"
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        XCTAssertThrowsError(try MatFile.read(p)) { e in XCTAssertTrue("\(e)".contains("7.3"), "\(e)") }
    }

    func testBadFiles() throws {
        XCTAssertThrowsError(try MatFile.read("/nonexistent.mat")) { e in XCTAssertTrue("\(e)".contains("no such file")) }
        let p = temporaryDirectory() + "/empty.mat"
        FileManager.default.createFile(atPath: p, contents: Data())
        XCTAssertThrowsError(try MatFile.read(p)) { e in XCTAssertTrue("\(e)".contains("empty")) }
        // Truncated compressed file.
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/types_plain.mat"))
        let t = temporaryDirectory() + "/trunc.mat"
        try data.prefix(300).write(to: URL(fileURLWithPath: t))
        XCTAssertThrowsError(try MatFile.read(t)) { e in XCTAssertTrue("\(e)".contains("truncated"), "\(e)") }
    }

    /// Dimensions that declare more values than the element holds, or are not whole non-negative
    /// numbers, are errors before anything is allocated from them.
    func testDeclaredDimensionsAreBoundedByTheFile() throws {
        let dir = temporaryDirectory("mat-dims")
        for (name, dims, message) in [("overflow", [Int32.max, Int32.max, Int32.max], "declare more values"),
                                      ("large", [65536, 65536], "declare more values"),
                                      ("negative", [-1, 2], "bad array dimensions")] {
            let p = dir + "/\(name).mat"
            try Self.matFile(dims: dims, values: [1, 2]).write(to: URL(fileURLWithPath: p))
            XCTAssertThrowsError(try MatFile.read(p), name) { e in XCTAssertTrue("\(e)".contains(p) && "\(e)".contains(message), "\(e)") }
        }
        let ok = dir + "/ok.mat"
        try Self.matFile(dims: [1, 2], values: [1, 2]).write(to: URL(fileURLWithPath: ok))
        XCTAssertEqual(try MatFile.read(ok)["x"]?.array?.values, [1, 2])
    }

    /// A compressed element that expands past the limit (a zip bomb: 13 bits per 258 zero bytes)
    /// stops there with an error.
    func testACompressedElementExpandsOnlyUpToTheLimit() throws {
        var bits = BitWriter()
        bits.put(1, 1); bits.put(1, 2)   // final block, fixed Huffman codes
        bits.huffman(0b0011_0000, 8)     // literal 0
        let runs = (MatFile.maxInflatedBytes + (1 << 20)) / 258
        for _ in 0..<runs { bits.huffman(0b1100_0101, 8); bits.huffman(0, 5) }  // length 258, distance 1
        bits.huffman(0, 7)               // end of block
        let stream: [UInt8] = [0x78, 0x01] + bits.bytes + [0, 0, 0, 0]
        var element = Self.tag(15, stream.count) + stream
        while element.count % 8 != 0 { element.append(0) }
        let p = temporaryDirectory("mat-bomb") + "/bomb.mat"
        try Data(Self.header() + element).write(to: URL(fileURLWithPath: p))
        XCTAssertThrowsError(try MatFile.read(p)) { e in XCTAssertTrue("\(e)".contains("expands to more than"), "\(e)") }
    }

    /// A level 5 MAT-file holding one double array "x" (little-endian, uncompressed).
    static func matFile(dims: [Int32], values: [Double]) -> Data {
        func padded(_ b: [UInt8]) -> [UInt8] { b + [UInt8](repeating: 0, count: (8 - b.count % 8) % 8) }
        let flags = tag(6, 8) + le(UInt32(6)) + le(UInt32(0))
        let dimBytes = dims.flatMap { le(UInt32(bitPattern: $0)) }
        let dimsElement = padded(tag(5, dimBytes.count) + dimBytes)
        let name = padded(tag(1, 1) + [UInt8(ascii: "x")])
        let real = values.flatMap { le($0.bitPattern) }
        let body = flags + dimsElement + name + padded(tag(9, real.count) + real)
        return Data(header() + tag(14, body.count) + body)
    }
    static func header() -> [UInt8] {
        var h = Array("MATLAB 5.0 MAT-file, written by CycleTime's tests".utf8)
        h += [UInt8](repeating: 0x20, count: 124 - h.count)
        return h + [0x00, 0x01, UInt8(ascii: "I"), UInt8(ascii: "M")]
    }
    static func tag(_ type: UInt32, _ count: Int) -> [UInt8] { le(type) + le(UInt32(count)) }
    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
}

func XCTAssertEqual(_ a: [Double], _ b: [Double], accuracy: Double, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }
}

/// Deflate's bit order: fields least significant bit first, Huffman codes most significant bit first.
struct BitWriter {
    var bytes: [UInt8] = []
    var used = 8
    mutating func bit(_ b: UInt32) {
        if used == 8 { bytes.append(0); used = 0 }
        bytes[bytes.count - 1] |= UInt8(b & 1) << used
        used += 1
    }
    mutating func put(_ value: UInt32, _ count: Int) { for i in 0..<count { bit(value >> i) } }
    mutating func huffman(_ code: UInt32, _ count: Int) { for i in (0..<count).reversed() { bit(code >> i) } }
}
