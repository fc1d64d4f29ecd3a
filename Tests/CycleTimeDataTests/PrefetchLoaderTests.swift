import Foundation
import XCTest
@testable import CycleTimeData
import CycleTimeVideo
import CycleTimeCore
import TestSupport

final class PrefetchLoaderTests: XCTestCase {
    func options() -> ClipOptions {
        var o = ClipOptions()
        o.clipLength = 3; o.fps = 10; o.outputSize = 48; o.decodeShortSide = 64
        return o
    }

    func testBatchesInOrderAndDeterministic() throws {
        let videos = try requireSharedData("videos")
        let ds = try VideoClipDataset(folder: videos, options: options())
        func all() -> [[Float]] {
            let l = PrefetchLoader(source: ds, batchSize: 2, workers: 2, queueDepth: 2, seed: 5, epochs: 2)
            var out: [[Float]] = []
            while let b = l.next() { XCTAssertEqual(b.shape, [2, 3, 3, 48, 48]); out.append(b.array) }
            XCTAssertEqual(l.skipped, 0)
            return out
        }
        let a = all(), b = all()
        XCTAssertEqual(a.count, 4)  // 4 videos / 2 per batch x 2 epochs
        XCTAssertEqual(a, b)
    }

    func testSkipsBadVideosAndCounts() throws {
        let videos = try requireSharedData("videos")
        let d = temporaryDirectory()
        FileManager.default.createFile(atPath: d + "/empty.mp4", contents: Data())
        FileManager.default.createFile(atPath: d + "/text.mp4", contents: Data("not a video".utf8))
        let src = try Data(contentsOf: URL(fileURLWithPath: videos + "/vtest.avi"))
        try src.prefix(src.count / 4).write(to: URL(fileURLWithPath: d + "/truncated.avi"))
        let paths = [videos + "/arm-wrestling.mp4", d + "/empty.mp4", videos + "/pool-cleaning.mp4", d + "/text.mp4",
                     d + "/truncated.avi", videos + "/gym-basketball.mp4", "/nonexistent/missing.mp4", videos + "/arm-wrestling.mp4"]
        var o = options()
        o.fps = nil  // read the truncated file to its end only when the clip needs it; the open errors come first
        let ds = VideoClipDataset(paths: paths, options: options())
        let l = PrefetchLoader(source: ds, batchSize: 2, workers: 2, queueDepth: 2, seed: 1, epochs: 1)
        let warnings = WarningSink()
        l.warn = { warnings.add($0) }
        var batches = 0
        while let b = l.next() { XCTAssertEqual(b.shape[0], 2); batches += 1 }
        XCTAssertEqual(batches, 4)
        // Every bad file met is skipped once; the openers fail for empty/text/missing, the truncated
        // AVI fails when a clip reads past its end (or not, if its clip lies in the intact part).
        XCTAssertGreaterThanOrEqual(l.skipped, 3)
        XCTAssertTrue(l.skippedSamples.contains(d + "/empty.mp4"))
        XCTAssertTrue(l.skippedSamples.contains(d + "/text.mp4"))
        XCTAssertTrue(l.skippedSamples.contains("/nonexistent/missing.mp4"))
        XCTAssertFalse(l.skippedSamples.contains { $0.hasSuffix("arm-wrestling.mp4") })
        _ = o
    }

    func testEndlessLoaderStops() throws {
        let path = try requireSharedData("videos/arm-wrestling.mp4")
        let ds = VideoClipDataset(paths: [path, path], options: options())
        let l = PrefetchLoader(source: ds, batchSize: 1, workers: 2, queueDepth: 2, seed: 0, epochs: nil)
        for _ in 0..<5 { XCTAssertNotNil(l.next()) }  // more than one epoch
        l.stop()
        var extra = 0
        while l.next() != nil { extra += 1 }
        XCTAssertLessThanOrEqual(extra, 2)  // at most the queue depth was still prepared
    }

    func testAllBadEnds() {
        let ds = VideoClipDataset(paths: ["/nonexistent/a.mp4", "/nonexistent/b.mp4"], options: options())
        let l = PrefetchLoader(source: ds, batchSize: 1, workers: 2, seed: 0, epochs: 1)
        l.warn = { _ in }
        XCTAssertNil(l.next())
        XCTAssertEqual(l.skipped, 2)
    }
}

final class WarningSink: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var messages: [String] = []
    func add(_ m: String) { lock.lock(); messages.append(m); lock.unlock() }
}
