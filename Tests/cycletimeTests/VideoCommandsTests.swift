import ArgumentParser
import Foundation
import XCTest
@testable import cycletime
@testable import CycleTimeVideo
import TestSupport

final class VideoCommandsTests: XCTestCase {
    func testInfoAndFrames() throws {
        let path = try requireSharedData("videos/arm-wrestling.mp4")
        var info = try CycleTimeCommand.parseAsRoot(["video", "info", path])
        try info.run()
        let out = temporaryDirectory() + "/frames"
        var frames = try CycleTimeCommand.parseAsRoot(["video", "frames", path, "--fps", "2", "--short-side", "64", "--out", out, "--format", "jpg"])
        try frames.run()
        let names = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        // ffmpeg -vf fps=2 on this 10 s video gives 20 frames.
        XCTAssertEqual(names.count, 20)
        XCTAssertEqual(names.first, "00000.jpg")
        let img = try Image.read(out + "/00000.jpg")
        XCTAssertEqual(img.height, 64)
    }

    /// Bad input gives one readable line and a non-zero exit code, never a crash.
    func testBadInputIsOneLineAndNonZeroExit() throws {
        let d = temporaryDirectory()
        FileManager.default.createFile(atPath: d + "/text.mp4", contents: Data("hello".utf8))
        FileManager.default.createFile(atPath: d + "/empty.mp4", contents: Data())
        for (file, expect) in [("/nonexistent/x.mp4", "no such file"), (d + "/text.mp4", "Invalid data"), (d + "/empty.mp4", "empty file")] {
            do {
                var c = try CycleTimeCommand.parseAsRoot(["video", "info", file])
                try c.run()
                XCTFail("expected an error for \(file)")
            } catch {
                let msg = CycleTimeCommand.message(for: error)
                XCTAssertFalse(msg.contains("\n"), msg)
                XCTAssertTrue(msg.contains(file) && msg.contains(expect), msg)
                XCTAssertNotEqual(CycleTimeCommand.exitCode(for: error), .success)
            }
        }
    }
}
