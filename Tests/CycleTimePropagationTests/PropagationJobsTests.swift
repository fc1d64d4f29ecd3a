import CycleTimeCore
import CycleTimeData
import CycleTimePropagation
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest

final class PropagationJobsTests: XCTestCase {
    func testBoxMaskCoversThePixelsOfTheBoxAndBadBoxesNameTheFlag() throws {
        let m = try FirstFrameLabels.box([1.5, 0, 3, 2], width: 5, height: 4)
        XCTAssertEqual(m.pixels, [0, 1, 1, 0, 0,
                                  0, 1, 1, 0, 0,
                                  0, 0, 0, 0, 0,
                                  0, 0, 0, 0, 0])
        XCTAssertEqual(m.palette?.first, [0, 0, 0])
        for bad in [[3.0, 0, 1, 2], [0, 0, .nan, 2], [10, 10, 12, 12], [0, 0, 1]] {
            XCTAssertThrowsError(try FirstFrameLabels.box(bad, width: 5, height: 4)) { XCTAssertTrue("\($0)".hasPrefix("--first-box: "), "\($0)") }
        }
    }

    func testVideoFramesComeInOrderOnceAndAreCountedUpFront() throws {
        let path = try requireSharedData("videos/pool-cleaning.mp4")
        let frames = try FrameSource.video(path, maxFrames: 3)
        XCTAssertEqual(frames.count, 3)
        XCTAssertEqual(frames.name, "pool-cleaning")
        XCTAssertEqual((0..<3).map(frames.stem), ["00000", "00001", "00002"])
        XCTAssertEqual(try frames.frame(0).width, 340)
        XCTAssertThrowsError(try frames.frame(2)) { XCTAssertTrue("\($0)".contains("out of order"), "\($0)") }
    }

    /// Re-propagating into a results folder removes the scores of the earlier masks (they would sit
    /// beside masks they were not computed from) and keeps everything else.
    func testMasksJobWritesTheSequenceAndRemovesStaleScores() throws {
        let davis = try requireSharedData("davis-mini")
        let seq = try DAVISDataset(root: davis, set: "val", resolution: "480p").sequence("blackswan")
        let out = temporaryDirectory("jobs")
        for stale in ["davis-eval-val.json", "global_results-val.csv", "per-sequence_results-val.csv", "notes.md"] {
            try "old".write(toFile: out + "/" + stale, atomically: true, encoding: .utf8)
        }
        let first = try FirstFrameLabels.mask(try XCTUnwrap(seq.annotationPaths[0]))
        var ticks = 0
        try PropagationJobs.masks(.files(seq.framePaths, name: seq.name), firstMask: first, firstMaskName: "m",
                                  extractor: .pixels(stride: 8, l2Normalize: true), options: PropagationOptions(), out: out,
                                  maxFrames: 3) { ticks += 1 }
        XCTAssertEqual(ticks, 3)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), ["blackswan", "notes.md"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out + "/blackswan").sorted(), ["00000.png", "00001.png", "00002.png"])
        // A first mask of another size than the frames is refused before anything is written.
        let small = Image(width: 4, height: 4, channels: 1, pixels: [UInt8](repeating: 1, count: 16))
        XCTAssertThrowsError(try PropagationJobs.masks(.files(seq.framePaths, name: "other"), firstMask: small, firstMaskName: "small.png",
                                                       extractor: .pixels(stride: 8, l2Normalize: true), options: PropagationOptions(),
                                                       out: out, maxFrames: 2) {}) {
            XCTAssertTrue("\($0)".contains("small.png: the first mask of 'other' is 4x4, its frames are 854x480"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/other"))
    }
}
