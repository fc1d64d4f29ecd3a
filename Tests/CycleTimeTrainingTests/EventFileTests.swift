import CycleTimeCore
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest
@testable import CycleTimeTraining

final class EventFileTests: XCTestCase {
    /// The CRC-32C check value and RFC 3720's vectors; the mask is TFRecord's.
    func testCRC32CKnownVectors() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum([UInt8](0..<32)), 0x46DD_794E)
        let c: UInt32 = 0xE306_9283
        XCTAssertEqual(CRC32C.masked(Array("123456789".utf8)), ((c >> 15) | (c << 17)) &+ 0xA282_EAD8)
    }

    /// Records of any length read back; a record cut short or with a flipped bit ends the reading
    /// there, with the readable prefix.
    func testRecordFramingRoundTrip() {
        let payloads = [Data(), Data("a".utf8), Data((0..<1000).map { UInt8($0 % 251) })]
        let file = payloads.reduce(into: Data()) { $0 += TFRecord.frame($1) }
        XCTAssertEqual(file.count, payloads.map { $0.count + 16 }.reduce(0, +))
        // The frame of "a": length 1 little-endian, then its masked CRC, the byte, the data's masked CRC.
        XCTAssertEqual([UInt8](TFRecord.frame(Data("a".utf8)).prefix(8)), [1, 0, 0, 0, 0, 0, 0, 0])
        let r = TFRecord.records(file)
        XCTAssertNil(r.problem)
        XCTAssertEqual(r.records, payloads)
        XCTAssertEqual(r.validBytes, file.count)

        let cut = TFRecord.records(file.prefix(file.count - 3))
        XCTAssertEqual(cut.records, Array(payloads.prefix(2)))
        XCTAssertEqual(cut.validBytes, 16 + 17)
        XCTAssertTrue(cut.problem?.contains("record 2") ?? false, "\(cut)")
        var flipped = file
        flipped[16 + 12] ^= 1  // the byte of "a"
        let bad = TFRecord.records(flipped)
        XCTAssertEqual(bad.records, [Data()])
        XCTAssertTrue(bad.problem?.contains("wrong CRC of its data") ?? false, "\(bad)")
    }

    /// The protobuf bytes of a file-version event, by hand from event.proto, and a round trip of
    /// scalars and an image.
    func testEventEncoding() throws {
        let version = SummaryEvent(wallTime: 1, step: 2, fileVersion: "brain.Event:2")
        XCTAssertEqual([UInt8](version.encoded()),
                       [0x09, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F, 0x10, 0x02, 0x1A, 13] + Array("brain.Event:2".utf8))
        let png = try Canvas(width: 5, height: 3, fill: .red).pngData()
        let e = SummaryEvent(wallTime: 1.7e9 + 0.25, step: 1 << 40, values: [
            .init(tag: "loss", .scalar(0.5)), .init(tag: "lr", .scalar(-1e-4)), try SummaryEvent.image(tag: "frames", png: png),
        ])
        XCTAssertEqual(try SummaryEvent(decoding: e.encoded()), e)
        XCTAssertEqual(e.values[2].content, .image(width: 5, height: 3, colorspace: 3, png: png))
        XCTAssertThrowsError(try SummaryEvent.image(tag: "x", png: Data("not a png".utf8))) { XCTAssertTrue("\($0)".contains("'x'"), "\($0)") }
        XCTAssertThrowsError(try SummaryEvent(decoding: Data([0x0A, 5, 1]))) { XCTAssertTrue("\($0)".contains("cut short"), "\($0)") }
    }

    /// A writer starts with the file version, writes finite scalars only, and a second writer in
    /// the same second sorts after the first.
    func testWriterFilesSortInWritingOrder() throws {
        let dir = temporaryDirectory("events")
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let a = try EventFileWriter(folder: dir, now: now)
        try a.writeScalars(step: 1, [("loss", 2), ("bad", .nan)])
        try a.writeScalars(step: 2, [("bad", .infinity)])
        let b = try EventFileWriter(folder: dir, now: now)
        XCTAssertEqual(EventFileWriter.files(in: dir), [a.path, b.path])
        XCTAssertTrue(a.path.hasSuffix("/events.out.tfevents.1800000000." + EventFileWriter.hostname()), a.path)
        XCTAssertTrue(b.path.contains(".1800000001."), b.path)
        let events = try EventFileWriter.read(a.path)
        XCTAssertEqual(events.map(\.fileVersion), ["brain.Event:2", nil])
        XCTAssertEqual(events[1].step, 1)
        XCTAssertEqual(events[1].values, [.init(tag: "loss", .scalar(2))])
    }

    /// Resuming from step 2 drops the later steps and a record cut short from the old files,
    /// and leaves a file with nothing to drop untouched.
    func testKeepStepsRewritesOnlyFilesWithLaterSteps() throws {
        let dir = temporaryDirectory("keep")
        let a = try EventFileWriter(folder: dir)
        for s in 1...2 { try a.writeScalars(step: s, [("loss", Double(s))]) }
        let b = try EventFileWriter(folder: dir)
        for s in 3...4 { try b.writeScalars(step: s, [("loss", Double(s))]) }
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: b.path))
        handle.seekToEndOfFile()
        handle.write(TFRecord.frame(SummaryEvent(wallTime: 0, step: 5, values: [.init(tag: "loss", .scalar(5))]).encoded()).prefix(20))
        try handle.close()
        let before = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: a.path)[.modificationDate] as? Date)
        try EventFileWriter.keepSteps(upTo: 2, in: dir)
        XCTAssertEqual(try EventFileWriter.read(a.path).compactMap { $0.values.isEmpty ? nil : $0.step }, [1, 2])
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: a.path)[.modificationDate] as? Date, before)
        XCTAssertEqual(try EventFileWriter.read(b.path).map(\.fileVersion), ["brain.Event:2"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).filter(AtomicFile.isTemporary), [])
    }
}

/// The scalars of every event file of a run directory, [tag: [step: value]]; a (tag, step)
/// written twice, or a file that does not read back, fails the test.
func eventScalars(_ folder: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: [Int: Float]] {
    var out: [String: [Int: Float]] = [:]
    for path in EventFileWriter.files(in: folder) {
        let events = try EventFileWriter.read(path)
        XCTAssertEqual(events.first?.fileVersion, "brain.Event:2", path, file: file, line: line)
        for e in events {
            for v in e.values {
                guard case .scalar(let x) = v.content else { continue }
                XCTAssertNil(out[v.tag]?[e.step], "\(v.tag) at step \(e.step) written twice", file: file, line: line)
                out[v.tag, default: [:]][e.step] = x
            }
        }
    }
    return out
}

/// Every finite value of every metrics line (but "step") is the scalar of the same name at the
/// line's step, and the event files hold nothing else.
func assertEventsMatchMetrics(_ run: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let scalars = try eventScalars(run, file: file, line: line)
    var expected: [String: [Int: Float]] = [:]
    let text = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
    for row in text.split(separator: "\n") {
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(row.utf8)) as? [String: Any], file: file, line: line)
        let step = try XCTUnwrap(obj["step"] as? Int, file: file, line: line)
        for (k, v) in obj where k != "step" {
            if let n = v as? NSNumber { expected[k, default: [:]][step] = n.floatValue }
        }
    }
    XCTAssertEqual(Set(scalars.keys), Set(expected.keys), file: file, line: line)
    for (tag, steps) in expected {
        XCTAssertEqual(Set(scalars[tag].map { Array($0.keys) } ?? []), Set(steps.keys), tag, file: file, line: line)
        for (s, v) in steps { XCTAssertEqual(scalars[tag]?[s] ?? .nan, v, accuracy: max(abs(v) * 1e-6, 1e-12), "\(tag) at step \(s)", file: file, line: line) }
    }
}
