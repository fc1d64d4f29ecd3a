import CycleTimeCore
import Foundation
import TestSupport
import XCTest

final class AtomicFileTests: XCTestCase {
    func testWriteReplacesTheFileAndLeavesNoTemporary() throws {
        let dir = temporaryDirectory("atomic")
        let path = dir + "/out.txt"
        try AtomicFile.write("old", to: path)
        try AtomicFile.write("new", to: path)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "new")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["out.txt"])
    }

    func testAFailingBodyLeavesTheOldOutputAndNoTemporary() throws {
        let dir = temporaryDirectory("atomic-fail")
        let path = dir + "/results"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        try AtomicFile.write("previous", to: path + "/a.txt")
        struct Stop: Error {}
        XCTAssertThrowsError(try AtomicFile.withTemporary(for: path) { tmp in
            try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
            try AtomicFile.write("half", to: tmp + "/a.txt")
            throw Stop()
        })
        XCTAssertEqual(try String(contentsOfFile: path + "/a.txt", encoding: .utf8), "previous")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["results"])
    }

    func testAFolderIsReplacedWholeSoNoOldFileStaysBesideTheNewOnes() throws {
        let dir = temporaryDirectory("atomic-folder")
        let path = dir + "/frames"
        for names in [["1.png", "2.png", "3.png"], ["1.png"]] {
            try AtomicFile.withTemporary(for: path) { tmp in
                try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
                for n in names { try AtomicFile.write(n, to: tmp + "/" + n) }
            }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path), ["1.png"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["frames"])
    }

    func testErrorsNameThePathAndTheSystemsReason() {
        XCTAssertThrowsError(try AtomicFile.write("x", to: "/nonexistent-folder-ct/a.txt")) {
            XCTAssertEqual("\($0)", "/nonexistent-folder-ct/a.txt: cannot write: folder /nonexistent-folder-ct does not exist")
        }
        // /proc/self is a folder in which no file can be created.
        XCTAssertThrowsError(try AtomicFile.write("x", to: "/proc/self/out.txt")) {
            XCTAssertTrue("\($0)".hasPrefix("/proc/self/out.txt: cannot write: "), "\($0)")
        }
    }

    func testTemporariesOfAnyProcessAreRecognizedAndRemoved() throws {
        let dir = temporaryDirectory("atomic-stale")
        for n in [".step-00000002.safetensors.tmp-123", ".latest.safetensors.tmp-9", "keep.safetensors", ".tmp-notapid", "a.tmp-1"] {
            FileManager.default.createFile(atPath: dir + "/" + n, contents: Data())
        }
        XCTAssertEqual(Set(AtomicFile.removeTemporaries(in: dir)), [".step-00000002.safetensors.tmp-123", ".latest.safetensors.tmp-9"])
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["keep.safetensors", ".tmp-notapid", "a.tmp-1"])
        XCTAssertTrue(AtomicFile.isTemporary(URL(fileURLWithPath: AtomicFile.temporaryPath(for: dir + "/x.json")).lastPathComponent))
    }
}
