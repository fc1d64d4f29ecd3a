import Foundation
import TestSupport
import XCTest
@testable import CycleTimeDetection

/// `ava check` on the mini AVA-format dataset of experiments/ava-mini (the shared videos, three
/// classes, train and val splits, one proposal file) and on broken copies of it.
final class AVACheckTests: XCTestCase {
    /// A copy of the mini dataset in a fresh folder, and its config.
    func miniDataset(_ name: String) throws -> (dir: String, config: AVAConfig) {
        let videos = try requireSharedData("videos")
        let dir = temporaryDirectory(name)
        for f in ["videos-train.csv", "videos-val.csv", "videos-proposals.json", "videos-label_map.txt"] {
            try FileManager.default.copyItem(atPath: repoRoot + "/experiments/ava-mini/" + f, toPath: dir + "/" + f)
        }
        var c = AVAConfig()
        c.data.annotations = dir + "/videos-train.csv"
        c.data.labelmap = dir + "/videos-label_map.txt"
        c.data.proposals = dir + "/videos-proposals.json"
        c.data.frames = videos
        c.data.windowStart = 0
        c.data.clipLength = 4
        c.data.frameInterval = 4
        c.test.annotations = dir + "/videos-val.csv"
        return (dir, c)
    }

    func edit(_ path: String, _ change: (inout [String]) -> Void) throws {
        var lines = try String(contentsOfFile: path, encoding: .utf8).components(separatedBy: "\n")
        change(&lines)
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }

    func testTheMiniDatasetIsCleanWithClassCountsAndBins() throws {
        let (dir, c) = try miniDataset("check-clean")
        let r = AVADatasetCheck.run(c, file: dir + "/c.yaml")
        XCTAssertEqual(r.problems, [])
        XCTAssertFalse(r.hasErrors)
        XCTAssertEqual(r.splits.map(\.split), ["train", "test"])
        XCTAssertEqual(r.splits.map(\.keyframes), [18, 6])
        XCTAssertEqual(r.splits[0].boxesPerClass, [1: 6, 2: 12, 3: 12])
        // Thirds of the classes by training count (ties by id): 2 and 3 have 12 boxes, 1 has 6.
        let bins = AVAFrequencyBins(counts: r.splits[0].boxesPerClass)
        XCTAssertEqual([bins.bin(of: 2), bins.bin(of: 3), bins.bin(of: 1)], [.head, .mid, .tail])
        XCTAssertTrue(r.table().hasSuffix("OK: 0 warning(s)\n"), r.table())
    }

    /// The five broken copies of the issue, each reported with its file and line.
    func testEachBrokenCopyIsReportedWithFileAndLine() throws {
        // 1. A proposal key with a timestamp that is not an integer number of seconds.
        do {
            let (dir, c) = try miniDataset("check-key")
            let p = dir + "/videos-proposals.json"
            try edit(p) { $0[1] = "\"pool-cleaning,00:01\": [" }
            let r = AVADatasetCheck.run(c, file: dir + "/c.yaml")
            XCTAssertTrue(r.hasErrors)
            XCTAssertTrue(r.problems.contains { $0.severity == .error && $0.file == p && $0.line == 2 && $0.message.contains("pool-cleaning,00:01") }, r.table())
            // Its keyframe now has no proposal: a warning at the annotation's line.
            XCTAssertTrue(r.problems.contains { $0.severity == .warning && $0.file == c.data.annotations && $0.line == 1 && $0.message.contains("no proposal") }, r.table())
        }
        // 2. A box in pixels.
        do {
            let (dir, c) = try miniDataset("check-pixels")
            try edit(c.data.annotations) { $0[2] = "pool-cleaning,0003,48,12,272,228,1,0" }
            let r = AVADatasetCheck.run(c, file: dir + "/c.yaml")
            XCTAssertTrue(r.problems.contains { $0.severity == .error && $0.location == c.data.annotations + ":3" && $0.message.contains("not normalized") }, r.table())
        }
        // 3. A keyframe without frames (the video ends long before second 500), and a video id without a video.
        do {
            let (dir, c) = try miniDataset("check-frames")
            try edit(c.test.annotations) { $0[1] = "pool-cleaning,0500,0.150,0.050,0.850,0.950,1,0"; $0[2] = "no-such-video,0007,0.000,0.100,0.500,1.000,2,0" }
            let r = AVADatasetCheck.run(c, file: dir + "/c.yaml")
            XCTAssertTrue(r.problems.contains { $0.severity == .error && $0.location == c.test.annotations + ":2" && $0.message.contains("is frame 15001") }, r.table())
            XCTAssertTrue(r.problems.contains { $0.severity == .error && $0.location == c.test.annotations + ":3" && $0.message.contains("'no-such-video' has no frames") }, r.table())
        }
        // 4. An action id that is not in the label map.
        do {
            let (dir, c) = try miniDataset("check-action")
            try edit(c.data.annotations) { $0[4] = $0[4].replacingOccurrences(of: ",1,0", with: ",99,0") }
            let r = AVADatasetCheck.run(c, file: dir + "/c.yaml")
            XCTAssertTrue(r.problems.contains { $0.severity == .warning && $0.location == c.data.annotations + ":5" && $0.message.contains("action id 99") }, r.table())
        }
        // 5. An empty split.
        do {
            let (dir, c) = try miniDataset("check-empty")
            try "".write(toFile: c.test.annotations, atomically: true, encoding: .utf8)
            let r = AVADatasetCheck.run(c, file: dir + "/c.yaml")
            XCTAssertTrue(r.hasErrors)
            XCTAssertTrue(r.problems.contains { $0.severity == .error && $0.file == c.test.annotations && $0.message.contains("the test split is empty") }, r.table())
            XCTAssertTrue(r.table().contains("FAILED:"), r.table())
        }
    }

    /// Proposals keyed by frame number instead of second: nothing matches, an error that shows both keys.
    func testProposalsThatMatchNoKeyframeAreAnError() throws {
        let (dir, c) = try miniDataset("check-mismatch")
        let p = dir + "/videos-proposals.json"
        let text = try String(contentsOfFile: p, encoding: .utf8)
        let shifted = text.replacingOccurrences(of: "\"pool-cleaning,", with: "\"pool-cleaning,1")
            .replacingOccurrences(of: "\"arm-wrestling,", with: "\"arm-wrestling,1").replacingOccurrences(of: "\"gym-basketball,", with: "\"gym-basketball,1")
        try shifted.write(toFile: p, atomically: true, encoding: .utf8)
        let r = AVADatasetCheck.run(c, file: dir + "/c.yaml")
        XCTAssertTrue(r.problems.contains { $0.severity == .error && $0.file == p && $0.message.contains("the keys do not match") }, r.table())
    }
}
