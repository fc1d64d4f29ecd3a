import Foundation
import XCTest
@testable import CycleTimeNN
import TestSupport

/// The toy model of scripts/fixtures/resnet.py (conv + bn + linear).
final class ToyConvNet: Module {
    let conv: Conv2d
    let bn = BatchNorm2d(4)
    let fc: Linear
    init(_ g: inout RandomGenerator) {
        conv = Conv2d(2, 4, kernelSize: 3, padding: 1, generator: &g)
        fc = Linear(100, 3, generator: &g)
        super.init()
    }
    override func callAsFunction(_ x: Tensor) -> Tensor {
        fc(bn(conv(x)).relu().flattened(from: 1))
    }
}

final class CheckpointTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "cycletime-ckpt-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func toy(seed: UInt64) -> ToyConvNet { var g = RandomGenerator(seed: seed); return ToyConvNet(&g) }

    func testSaveLoadRoundTripAtomic() throws {
        let a = toy(seed: 1)
        a.bn.runningVar!.fill(2.5)
        a.bn.numBatchesTracked!.fill(3)
        let path = dir + "/model.safetensors"
        try a.save(to: path, metadata: ["epoch": "4"])
        // Atomic: only the final file remains.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["model.safetensors"])
        let file = try SafeTensors.read(path)
        XCTAssertEqual(file.metadata["epoch"], "4")
        XCTAssertEqual(Set(file.tensors.keys), Set(a.stateDictKeys()))
        let b = toy(seed: 2)
        try b.load(from: path)
        for (k, t) in a.stateDict() { XCTAssertEqual(b.stateDict()[k]!.array, t.array, k) }
        // Overwriting an existing checkpoint works and stays atomic.
        a.fc.bias!.fill(7)
        try a.save(to: path)
        try b.load(from: path)
        XCTAssertEqual(b.fc.bias!.array, [7, 7, 7])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["model.safetensors"])
    }

    func testSaveIntoMissingFolderNamesFile() {
        let path = dir + "/no/such/folder/model.safetensors"
        XCTAssertThrowsError(try toy(seed: 1).save(to: path)) { e in
            XCTAssertTrue("\(e)".contains(path), "\(e)")
        }
    }

    func assertLoadFails(_ path: String, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try toy(seed: 1).load(from: path), file: file, line: line) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains(path), "error does not name the file: \(text)", file: file, line: line)
            XCTAssertTrue(text.contains(fragment), "expected '\(fragment)' in: \(text)", file: file, line: line)
        }
    }

    func testBadFiles() throws {
        assertLoadFails(dir + "/missing.safetensors", "no such file")

        let empty = dir + "/empty.safetensors"
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        assertLoadFails(empty, "empty")

        let good = dir + "/good.safetensors"
        try toy(seed: 1).save(to: good)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
        let truncated = dir + "/truncated.safetensors"
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: truncated))
        assertLoadFails(truncated, "truncated")
        let headerOnly = dir + "/short.safetensors"
        try bytes.prefix(5).write(to: URL(fileURLWithPath: headerOnly))
        assertLoadFails(headerOnly, "shorter than")

        // Malformed JSON header of a plausible length.
        var bad = Data()
        let junk = Array("{\"conv.weight\": {\"dtype\": \"F32\", \"shape\": [4,".utf8)
        var len = UInt64(junk.count).littleEndian
        withUnsafeBytes(of: &len) { bad.append(contentsOf: $0) }
        bad.append(contentsOf: junk)
        bad.append(Data(count: 64))
        let malformed = dir + "/malformed.safetensors"
        try bad.write(to: URL(fileURLWithPath: malformed))
        assertLoadFails(malformed, "JSON")

        // A header length beyond the file.
        var huge = Data()
        var hl = UInt64(1 << 40).littleEndian
        withUnsafeBytes(of: &hl) { huge.append(contentsOf: $0) }
        huge.append(contentsOf: Array("{}".utf8))
        let hugePath = dir + "/huge.safetensors"
        try huge.write(to: URL(fileURLWithPath: hugePath))
        assertLoadFails(hugePath, "header length")
    }

    func testCheckpointKeyAndShapeErrorsNameFile() throws {
        let path = dir + "/other.safetensors"
        var g = RandomGenerator(seed: 1)
        let other = Sequential(Linear(2, 3, generator: &g))
        try other.save(to: path)
        assertLoadFails(path, "Missing key(s) in state dict: \"conv.weight\"")
        assertLoadFails(path, "Unexpected key(s) in state dict: \"0.bias\", \"0.weight\"")
        let r = try toy(seed: 1).load(from: path, strict: false)
        XCTAssertEqual(r.unexpectedKeys, ["0.bias", "0.weight"])

        var sd = toy(seed: 1).stateDict()
        sd["fc.weight"] = Tensor.zeros([3, 99])
        let mismatched = dir + "/mismatch.safetensors"
        try SafeTensors.write(sd, to: mismatched)
        assertLoadFails(mismatched, "size mismatch for fc.weight: copying a param with shape [3, 99] from checkpoint, the shape in current model is [3, 100]")
    }

    /// A state dict written by `safetensors.torch.save_file` with F16, BF16, F64 and I64 tensors
    /// loads here with the values PyTorch converts to float32.
    func testLoadsTorchStateDictWithMixedDTypes() throws {
        let path = Fixtures.directory + "/statedict_toy.safetensors"
        let file = try SafeTensors.read(path)
        XCTAssertEqual(file.dtypes["conv.weight"], "F16")
        XCTAssertEqual(file.dtypes["fc.weight"], "BF16")
        XCTAssertEqual(file.dtypes["fc.bias"], "F64")
        XCTAssertEqual(file.dtypes["bn.num_batches_tracked"], "I64")
        let expected = try Fixtures.load("statedict_toy_expected")
        let m = toy(seed: 3)
        try m.load(from: path)
        let sd = m.stateDict()
        XCTAssertEqual(sd.count, 9)
        for (k, t) in sd {
            XCTAssertEqual(t.array, expected.t("expected." + k).array, k)
        }
        XCTAssertEqual(m.bn.numBatchesTracked!.item(), 7)
    }

    /// The same model's forward in eval mode matches PyTorch (needs the conv/bn/linear kernels).
    func testTorchStateDictForward() throws {
        let expected = try Fixtures.load("statedict_toy_expected")
        let m = toy(seed: 3)
        try m.load(from: Fixtures.directory + "/statedict_toy.safetensors")
        m.eval()
        let y = noGrad { m(expected.t("input")) }
        assertClose(y, expected.t("output"), rtol: 1e-4, atol: 1e-5)
    }

    /// A checkpoint written here opens with Python's `safetensors.torch.load_file` unchanged.
    func testCheckpointOpensInPython() throws {
        let a = toy(seed: 4)
        a.bn.numBatchesTracked!.fill(5)
        let path = dir + "/for_python.safetensors"
        try a.save(to: path)
        let script = """
        import sys
        try:
            from safetensors.torch import load_file
            import torch
        except Exception as e:
            print("IMPORT-FAILED", e); sys.exit(3)
        d = load_file(sys.argv[1])
        for k in sorted(d):
            t = d[k]
            print(k, str(t.dtype), list(t.shape), repr(t.double().flatten().tolist()))
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = Pipe()
        do { try p.run() } catch { throw XCTSkip("python3 is not available: \(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        if p.terminationStatus == 3 || p.terminationStatus == 127 {
            throw XCTSkip("python3 lacks torch/safetensors (\(text.trimmingCharacters(in: .whitespacesAndNewlines))); cannot check Python interoperability")
        }
        XCTAssertEqual(p.terminationStatus, 0, "python failed: \(text)")
        let lines = text.split(separator: "\n")
        let sd = a.stateDict()
        XCTAssertEqual(lines.count, sd.count)
        for line in lines {
            let parts = line.split(separator: " ", maxSplits: 2)
            let key = String(parts[0])
            guard let t = sd[key] else { XCTFail("unexpected key \(key)"); continue }
            XCTAssertEqual(parts[1], "torch.float32")
            let rest = String(parts[2])
            let shapeText = String(rest[..<rest.firstIndex(of: "]")!]) + "]"
            XCTAssertEqual(shapeText, "[" + t.shape.map(String.init).joined(separator: ", ") + "]", key)
            let valuesText = rest[rest.index(after: rest.firstIndex(of: "]")!)...].trimmingCharacters(in: CharacterSet(charactersIn: " []"))
            let values = valuesText.split(separator: ",").map { Float(Double($0.trimmingCharacters(in: .whitespaces))!) }
            XCTAssertEqual(values, t.array, key)
        }
    }
}
