import CycleTimeVideo
import Foundation
import TestSupport
import XCTest

/// `--overlays` of `cycletime propagate` (Sources/CycleTimePropagation/Overlays.swift): palette masks drawn on
/// DAVIS frames and keypoints on the JHMDB clip, as PNG files and an mp4, through the executable.
final class OverlaysTests: XCTestCase {
    var dir = ""
    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("overlays-\(UUID().uuidString)").path
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testDAVISMaskOverlaysAsPNGAndMP4() throws {
        let root = try requireSharedData("davis-mini")
        let r = try runProcess(try cycletimeExecutable(), ["propagate", "davis", "--pixels", "--root", root, "--out", dir,
                                                            "--sequences", "blackswan", "--max-frames", "4", "--overlays"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let pngs = try FileManager.default.contentsOfDirectory(atPath: dir + "/overlays/blackswan").sorted()
        XCTAssertEqual(pngs, ["00000.png", "00001.png", "00002.png", "00003.png"])
        let img = try Image.readPNG(dir + "/overlays/blackswan/00001.png")
        XCTAssertEqual([img.width, img.height, img.channels], [854, 480, 3])
        // The frame shows through where the mask is background, tinted where it is the object.
        let frame = try Image.read(root + "/JPEGImages/480p/blackswan/00001.jpg").rgbBytes()
        let mask = try Image.readPNG(dir + "/blackswan/00001.png").pixels
        var same = 0, tinted = 0, bg = 0, fg = 0
        for p in 0..<(854 * 480) {
            let d = (0..<3).map { abs(Int(img.pixels[3 * p + $0]) - Int(frame[3 * p + $0])) }.max()!
            if mask[p] == 0 { bg += 1; if d <= 2 { same += 1 } } else { fg += 1; if d > 10 { tinted += 1 } }
        }
        XCTAssertGreaterThan(Double(same) / Double(bg), 0.95)
        XCTAssertGreaterThan(Double(tinted) / Double(max(fg, 1)), 0.9)
        let info = try VideoReader.probe(dir + "/overlays/blackswan.mp4")
        XCTAssertEqual(info.frameCount, 4)
        // No temporary is left beside the finished overlays.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/overlays").sorted(), ["blackswan", "blackswan.mp4"])
        // The sequence's result folder holds the masks only (overlays are beside it).
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/blackswan").sorted(), pngs)
    }

    func testJHMDBKeypointOverlays() throws {
        let root = try requireSharedData("jhmdb-mini")
        let r = try runProcess(try cycletimeExecutable(), ["propagate", "jhmdb", "--pixels", "--root", root, "--out", dir, "--overlays"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let clips = try FileManager.default.contentsOfDirectory(atPath: dir + "/catch")
        XCTAssertEqual(clips.count, 1)
        let c = dir + "/catch/" + clips[0]
        let pngs = try FileManager.default.contentsOfDirectory(atPath: c + "/overlays").filter { $0.hasSuffix(".png") }
        XCTAssertEqual(pngs.count, 40)
        XCTAssertEqual(try VideoReader.probe(c + "/overlays.mp4").frameCount, 40)
        let img = try Image.readPNG(c + "/overlays/00001.png")
        XCTAssertEqual([img.width, img.height, img.channels], [320, 240, 3])
    }
}
