import Foundation
import XCTest
@testable import CycleTimeCore
import TestSupport

final class SafeTensorsTests: XCTestCase {
    /// A file's bytes from a header (JSON text) and a data section, as safetensors lays them out.
    func file(_ header: String, _ body: [UInt8], headerLength: UInt64? = nil) -> Data {
        let h = Array(header.utf8)
        var out = Data()
        var len = (headerLength ?? UInt64(h.count)).littleEndian
        withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
        out.append(contentsOf: h)
        out.append(contentsOf: body)
        return out
    }

    func bytes<T>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    /// Parses `data` as file `path`, and reads its header from a file of those bytes, expecting from
    /// both an error whose description names the file and contains `fragment`.
    func assertRejected(_ data: Data, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        let path = "/some/dir/model.safetensors"
        XCTAssertThrowsError(try SafeTensors.parse(data, path: path), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix(path + ":"), "error does not name the file: \(text)", file: file, line: line)
            XCTAssertTrue(text.contains(fragment), "error '\(text)' lacks '\(fragment)'", file: file, line: line)
        }
        let onDisk = temporaryDirectory("safetensors-header") + "/model.safetensors"
        XCTAssertNoThrow(try data.write(to: URL(fileURLWithPath: onDisk)), file: file, line: line)
        XCTAssertThrowsError(try SafeTensors.readHeader(onDisk), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix(onDisk + ":"), "header error does not name the file: \(text)", file: file, line: line)
            XCTAssertTrue(text.contains(fragment), "header error '\(text)' lacks '\(fragment)'", file: file, line: line)
        }
    }

    /// The header reader gives each tensor's dtype, shape and byte range in data order, and the
    /// metadata, as a full read does; a huge shape is an error, not a trap.
    func testHeaderReadsShapesAndMetadataWithoutTheData() throws {
        let path = temporaryDirectory("safetensors-header-ok") + "/m.safetensors"
        try SafeTensors.write(["b": Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]), "a": Tensor([7], shape: [1])], metadata: ["step": "4"], to: path)
        let h = try SafeTensors.readHeader(path)
        let full = try SafeTensors.read(path)
        XCTAssertEqual(h.entries.map(\.key), full.order)
        XCTAssertEqual(h.entries.map(\.shape), full.order.map { full.tensors[$0]?.shape ?? [] })
        XCTAssertEqual(h.metadata, full.metadata)
        XCTAssertEqual(h.dtypes, full.dtypes)
        assertRejected(file(#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}"#, bytes([Float(1)])),
                       "needs more bytes than a file holds, has 4")
    }

    func testF32TensorsAndMetadataRoundTripThroughAFile() throws {
        let a = Tensor([1, -2.5, .pi, 1e-30, -0.0, 3e38], shape: [2, 3])
        let b = Tensor(scalar: 7)
        let e = Tensor.zeros([0, 4])
        let odd = "layer1.0.bn1.running_mean \"q\" \\ é\n\t"
        let path = temporaryDirectory("safetensors") + "/m.safetensors"
        try SafeTensors.write(["a": a, "b": b, "zz_empty": e, odd: a], metadata: ["format": "pt", "step": "12", "note": "x\"y"], to: path)
        let f = try SafeTensors.read(path)
        XCTAssertEqual(Set(f.tensors.keys), ["a", "b", "zz_empty", odd])
        XCTAssertEqual(f.tensors["a"]!.shape, [2, 3])
        XCTAssertEqual(f.tensors["a"]!.array.map(\.bitPattern), a.array.map(\.bitPattern))
        XCTAssertEqual(f.tensors[odd]!.array, a.array)
        XCTAssertEqual(f.tensors["b"]!.shape, [])
        XCTAssertEqual(f.tensors["b"]!.item(), 7)
        XCTAssertEqual(f.tensors["zz_empty"]!.shape, [0, 4])
        XCTAssertEqual(f.metadata, ["format": "pt", "step": "12", "note": "x\"y"])
        XCTAssertEqual(f.dtypes.values.sorted(), ["F32", "F32", "F32", "F32"])
        XCTAssertEqual(f.order, ["a", "b", odd, "zz_empty"], "written in sorted key order, read in data order")
    }

    func testTheDataSectionStartsAtAMultipleOfEightBytes() {
        let data = SafeTensors.serialize(["w": Tensor([1, 2, 3], shape: [3])], metadata: ["k": "v"])
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        XCTAssertEqual((8 + headerLength) % 8, 0)
        XCTAssertEqual(data.count, 8 + Int(headerLength) + 12)
    }

    func testF16BF16F64AndIntegerTensorsAreConvertedToFloat32OnRead() throws {
        // F16: 1, -2, 0.5, smallest subnormal 2^-24, +inf; BF16: 1, -2.5; F64: 0.1, -1e300 (-> -inf);
        // I64: -3, 5; U8: 0, 255.
        let f16 = bytes([UInt16(0x3C00), 0xC000, 0x3800, 0x0001, 0x7C00])
        let bf16 = bytes([UInt16(0x3F80), 0xC020])
        let f64 = bytes([0.1, -1e300])
        let i64 = bytes([Int64(-3), 5])
        let u8: [UInt8] = [0, 255]
        let body = f16 + bf16 + f64 + i64 + u8
        let o1 = f16.count, o2 = o1 + bf16.count, o3 = o2 + f64.count, o4 = o3 + i64.count, o5 = o4 + u8.count
        let header = """
        {"h":{"dtype":"F16","shape":[5],"data_offsets":[0,\(o1)]},
         "b":{"dtype":"BF16","shape":[2],"data_offsets":[\(o1),\(o2)]},
         "d":{"dtype":"F64","shape":[2,1],"data_offsets":[\(o2),\(o3)]},
         "i":{"dtype":"I64","shape":[2],"data_offsets":[\(o3),\(o4)]},
         "u":{"dtype":"U8","shape":[2],"data_offsets":[\(o4),\(o5)]}}
        """
        let f = try SafeTensors.parse(file(header, body), path: "mixed.safetensors")
        XCTAssertEqual(f.tensors["h"]!.array, [1, -2, 0.5, 0x1p-24, .infinity])
        XCTAssertEqual(f.tensors["b"]!.array, [1, -2.5])
        XCTAssertEqual(f.tensors["d"]!.array, [Float(0.1), -.infinity])
        XCTAssertEqual(f.tensors["d"]!.shape, [2, 1])
        XCTAssertEqual(f.tensors["i"]!.array, [-3, 5])
        XCTAssertEqual(f.tensors["u"]!.array, [0, 255])
        XCTAssertEqual(f.dtypes, ["h": "F16", "b": "BF16", "d": "F64", "i": "I64", "u": "U8"])
    }

    func testHalfToFloatCoversSignsSubnormalsInfinityAndNaN() {
        XCTAssertEqual(SafeTensors.halfToFloat(0x0000).bitPattern, Float(0).bitPattern)
        XCTAssertEqual(SafeTensors.halfToFloat(0x8000).bitPattern, Float(-0.0).bitPattern)
        XCTAssertEqual(SafeTensors.halfToFloat(0x8001), -0x1p-24)
        XCTAssertEqual(SafeTensors.halfToFloat(0x03FF), 0x3FFp-24, "largest subnormal")
        XCTAssertEqual(SafeTensors.halfToFloat(0x0400), 0x1p-14, "smallest normal")
        XCTAssertEqual(SafeTensors.halfToFloat(0x7BFF), 65504, "largest finite")
        XCTAssertEqual(SafeTensors.halfToFloat(0xFC00), -.infinity)
        XCTAssertTrue(SafeTensors.halfToFloat(0x7E00).isNaN)
    }

    func testHeaderKeysInAnyOrderWithMetadataAnywhereAreRead() throws {
        // Keys out of data order, metadata between entries, keys with dots, spaces and unicode.
        let body = bytes([Float(1), 2, 3, 4, 5])
        let header = """
        {"z.last weight":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},
         "__metadata__":{"b":"2","a":"1"},
         "ü/0":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},
         "A":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   
        """
        let f = try SafeTensors.parse(file(header, body), path: "unsorted.safetensors")
        XCTAssertEqual(f.order, ["A", "ü/0", "z.last weight"])
        XCTAssertEqual(f.tensors["A"]!.array, [1, 2])
        XCTAssertEqual(f.tensors["ü/0"]!.array, [3, 4])
        XCTAssertEqual(f.tensors["z.last weight"]!.array, [5])
        XCTAssertEqual(f.metadata, ["a": "1", "b": "2"])
    }

    func testAMissingFileIsReportedByName() {
        let path = temporaryDirectory("safetensors") + "/absent.safetensors"
        XCTAssertThrowsError(try SafeTensors.read(path)) { error in
            XCTAssertEqual(error as? SafeTensorsError, .cannotOpen(path: path, reason: "no such file"))
            XCTAssertTrue("\(error)".hasPrefix(path + ":"))
        }
    }

    func testEmptyAndShortFilesAreRejected() {
        assertRejected(Data(), "file is empty")
        assertRejected(Data([1, 0, 0, 0]), "shorter than the 8-byte header length")
    }

    func testAHeaderLengthBeyondTheFileIsRejected() {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        assertRejected(file(header, bytes([Float(1)]), headerLength: 10_000), "header length 10000 exceeds the file size")
        assertRejected(file(header, [], headerLength: UInt64.max), "exceeds the file size")
    }

    func testAHeaderThatIsNotAJSONObjectIsRejected() {
        assertRejected(file("{\"a\": [1, 2", []), "header is not valid JSON")
        assertRejected(file("[1, 2]", []), "header is not a JSON object")
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[1]}}"#, bytes([Float(1)])), "entry 'a' lacks dtype, shape or data_offsets")
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, bytes([Float(1)])), "entry 'a' has a bad shape")
    }

    func testATruncatedDataSectionIsRejected() {
        let header = #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#
        assertRejected(file(header, bytes([Float(1), 2, 3])), "tensor 'w' ends at byte 16 but the data section has 12 bytes")
    }

    func testOutOfRangeAndInconsistentOffsetsAreRejected() {
        let body = bytes([Float(1), 2, 3, 4])
        assertRejected(file(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,4]}}"#, body), "entry 'w' has bad data_offsets")
        assertRejected(file(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[-4,4]}}"#, body), "entry 'w' has bad data_offsets")
        assertRejected(file(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}"#, body), "needs 8 bytes, has 12")
    }

    func testOverlappingTensorsAreRejected() {
        let body = bytes([Float(1), 2, 3, 4])
        let header = """
        {"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}
        """
        assertRejected(file(header, body), "tensors 'a' (bytes 0..<12) and 'b' (bytes 8..<16) overlap")
    }

    func testAnUnsupportedDTypeIsReportedWithTheTensorName() {
        let header = #"{"c":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#
        let path = "complex.safetensors"
        XCTAssertThrowsError(try SafeTensors.parse(file(header, bytes([Float(1), 2])), path: path)) { error in
            XCTAssertEqual(error as? SafeTensorsError, .unsupportedDType(path: path, key: "c", dtype: "C64"))
            XCTAssertTrue("\(error)".hasPrefix(path + ": tensor 'c' has unsupported dtype C64"))
        }
    }

    func testWritingIntoAMissingFolderFailsWithoutLeavingAFile() {
        let dir = temporaryDirectory("safetensors") + "/absent"
        XCTAssertThrowsError(try SafeTensors.write(["a": Tensor(scalar: 1)], to: dir + "/m.safetensors")) { error in
            XCTAssertTrue("\(error)".hasPrefix(dir + "/m.safetensors: cannot write"))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir))
    }

    func testWriteReplacesAnExistingFileAndLeavesNoTemporaryFile() throws {
        let dir = temporaryDirectory("safetensors"), path = dir + "/m.safetensors"
        try SafeTensors.write(["a": Tensor(scalar: 1)], to: path)
        try SafeTensors.write(["a": Tensor(scalar: 2)], to: path)
        XCTAssertEqual(try SafeTensors.load(path)["a"]!.item(), 2)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["m.safetensors"])
    }

    /// The streaming writer: batches appended, header filled at the end (metadata with JSON
    /// specials); an aborted write leaves neither the file nor its temporary.
    func testStreamWriterAppendsRowsThenFillsTheHeaderAndAnAbortLeavesNothing() throws {
        let dir = temporaryDirectory()
        let path = dir + "/s.safetensors"
        let meta = ["source": "a \"quoted\" \\ path\nwith newline", "arch": "resnet18"]
        let w = try SafeTensors.StreamWriter(path: path, streamed: "features", rowShape: [2, 1, 3], perRow: ["frame_indices", "timestamps"], metadata: meta)
        let a = randn([2, 2, 1, 3], seed: 1), b = randn([1, 2, 1, 3], seed: 2)
        try w.append(a)
        try w.append(b)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        XCTAssertThrowsError(try w.append(randn([1, 3, 1, 3], seed: 3)))
        try w.finish(perRow: ["timestamps": [0, 0.5, 1], "frame_indices": [0, 1, 2]])
        let f = try SafeTensors.read(path)
        XCTAssertEqual(f.tensors["features"]!.shape, [3, 2, 1, 3])
        XCTAssertEqual(f.tensors["features"]!.array, a.array + b.array)
        XCTAssertEqual(f.tensors["timestamps"]!.array, [0, 0.5, 1])
        XCTAssertEqual(f.tensors["frame_indices"]!.array, [0, 1, 2])
        XCTAssertEqual(f.metadata, meta)

        let path2 = dir + "/aborted.safetensors"
        let w2 = try SafeTensors.StreamWriter(path: path2, streamed: "features", rowShape: [2, 1, 3], perRow: ["frame_indices", "timestamps"], metadata: meta)
        try w2.append(a)
        w2.abort()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["s.safetensors"])
    }
}
