import CycleTimeCore
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest

/// `cycletime propagate video` through the executable: a davis-mini sequence re-encoded as an mp4
/// gives the masks `propagate davis` gives on its frames, up to codec noise; a first-frame box on a
/// real video; bad boxes, masks and videos are one clear error and leave no output.
final class PropagateVideoTests: XCTestCase {
    func cycletime(_ args: [String]) throws -> ProcessResult { try runProcess(try cycletimeExecutable(), args) }

    /// Foreground IoU (J) of two label maps.
    func jaccard(_ a: [UInt8], _ b: [UInt8]) -> Double {
        var inter = 0, union = 0
        for i in 0..<min(a.count, b.count) {
            let x = a[i] != 0, y = b[i] != 0
            if x && y { inter += 1 }
            if x || y { union += 1 }
        }
        return union == 0 ? 1 : Double(inter) / Double(union)
    }

    func testMP4OfADAVISSequenceGivesTheMasksOfItsFramesUpToCodecNoise() throws {
        let davis = try requireSharedData("davis-mini")
        let dir = temporaryDirectory("propagate-video")
        let frames = 12
        let video = dir + "/blackswan.mp4"
        // Near-lossless H.264 (4:4:4, crf 4): the only difference from the JPEG frames is codec noise.
        let ff = try runProcess("/usr/bin/ffmpeg", ["-v", "error", "-y", "-framerate", "10", "-start_number", "0",
                                                   "-i", davis + "/JPEGImages/480p/blackswan/%05d.jpg", "-frames:v", "\(frames)",
                                                   "-c:v", "libx264", "-crf", "4", "-pix_fmt", "yuv444p", video])
        XCTAssertEqual(ff.status, 0, ff.stderr)
        let common = ["--random-init", "--seed", "0", "--max-frames", "\(frames)"]
        let a = try cycletime(["propagate", "davis"] + common + ["--root", davis, "--sequences", "blackswan", "--out", dir + "/davis"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try cycletime(["propagate", "video", video] + common
                              + ["--first-mask", davis + "/Annotations/480p/blackswan/00000.png", "--out", dir + "/video", "--overlays"])
        XCTAssertEqual(b.status, 0, b.stderr)
        let got = try FileManager.default.contentsOfDirectory(atPath: dir + "/video/blackswan").sorted()
        XCTAssertEqual(got, (0..<frames).map { String(format: "%05d.png", $0) })
        for t in 0..<frames {
            let ref = try Image.readPNG(dir + "/davis/blackswan/" + String(format: "%05d.png", t))
            let m = try Image.readPNG(dir + "/video/blackswan/" + String(format: "%05d.png", t))
            XCTAssertEqual(m.palette, ref.palette)
            XCTAssertGreaterThanOrEqual(jaccard(m.pixels, ref.pixels), 0.95, "frame \(t)")
        }
        // The overlays are complete and nothing temporary is left.
        XCTAssertEqual(try VideoReader.probe(dir + "/video/overlays/blackswan.mp4").frameCount, frames)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/video").sorted(), ["blackswan", "overlays"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/video/overlays").sorted(), ["blackswan", "blackswan.mp4"])
    }

    func testFirstFrameBoxOnARealVideo() throws {
        let video = try requireSharedData("videos/pool-cleaning.mp4")
        let dir = temporaryDirectory("propagate-box")
        let r = try cycletime(["propagate", "video", video, "--random-init", "--first-box", "100,60,220.5,200", "--max-frames", "4", "--out", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        let first = try Image.readPNG(dir + "/pool-cleaning/00000.png")
        XCTAssertEqual([first.width, first.height], [340, 256])
        // Pixels 100...220 x 60...199 (the box's corners rounded outwards) are label 1, the rest 0.
        XCTAssertEqual(first.pixels.filter { $0 == 1 }.count, 121 * 140)
        XCTAssertEqual(first.pixels[70 * 340 + 150], 1)
        XCTAssertEqual(first.pixels[10 * 340 + 10], 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/pool-cleaning").count, 4)
    }

    func testBadBoxMaskOrVideoIsOneLineAndLeavesNoOutput() throws {
        let video = try requireSharedData("videos/pool-cleaning.mp4")
        let davis = try requireSharedData("davis-mini")
        let dir = temporaryDirectory("propagate-video-bad")
        let notVideo = dir + "/notes.mp4"
        FileManager.default.createFile(atPath: notVideo, contents: Data("not a video\n".utf8))
        let cases: [([String], Int32, String)] = [
            ([video, "--first-box", "10,10,5,5"], 1, "x1 < x2"),
            ([video, "--first-box", "1,2,three,4"], 64, "--first-box"),
            ([video, "--first-box", "5000,5000,6000,6000"], 1, "outside the 340x256 frame"),
            ([video, "--first-mask", davis + "/Annotations/480p/blackswan/00000.png"], 1, "the mask is 854x480, the frames are 340x256"),
            ([notVideo, "--first-box", "1,1,5,5"], 1, "notes.mp4"),
            ([video], 64, "exactly one of --first-mask and --first-box"),
        ]
        for (args, status, message) in cases {
            let out = dir + "/out"
            let r = try cycletime(["propagate", "video"] + args + ["--random-init", "--out", out])
            XCTAssertEqual(r.status, status, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
            let lines = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("Usage:") && !$0.hasPrefix("  See ") && !$0.isEmpty }
            XCTAssertEqual(lines.count, 1, "\(args): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/pool-cleaning"), "\(args)")
        }
    }
}
