import CycleTimeCore
import CycleTimeDetection
import CycleTimeNN
import Foundation
import TestSupport
import XCTest

/// `cycletime detect image` run as a process.
final class DetectCommandTests: XCTestCase {
    func smallDetector(_ dir: String) throws -> String {
        var config = FasterRCNNConfig()
        config.depth = 18
        config.numClasses = 2
        config.representationSize = 32
        var g = RandomGenerator(seed: 9)
        let path = dir + "/detector.safetensors"
        try FasterRCNN(config: config, generator: &g).save(to: path)
        return path
    }

    /// The JSON the command writes is the library's ImageDetections, boxes within the image.
    func testDetectImageWritesDetectionsJSON() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("detect-command")
        let detector = try smallDetector(dir)
        let image = try detectorTestFrame()
        let r = try runProcess(exe, ["detect", "image", image, "--detector", detector, "--out", dir + "/d.json", "--min-size", "96", "--max-size", "160"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let d = try JSONDecoder().decode(ImageDetections.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/d.json")))
        XCTAssertEqual([d.width, d.height], [320, 240])
        XCTAssertFalse(d.detections.isEmpty)
        XCTAssertTrue(d.detections.allSatisfy { $0.label == 1 && $0.box[2] <= 320 && $0.box[3] <= 240 })
        XCTAssertTrue(r.stdout.contains("\(d.detections.count) detections"), r.stdout)
    }

    /// Not a detector (a plain safetensors file of one tensor), a missing image: one error line
    /// naming the file, exit 1, no output file.
    func testBadInputIsOneLineAndNoOutput() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("detect-command-bad")
        try SafeTensors.write(["weight": Tensor.zeros([2])], to: dir + "/w.safetensors")
        let image = try detectorTestFrame()
        for (args, file) in [([image, "--detector", dir + "/w.safetensors"], dir + "/w.safetensors"),
                             ([dir + "/none.png", "--detector", dir + "/w.safetensors"], dir + "/none.png")] {
            let r = try runProcess(exe, ["detect", "image"] + args + ["--out", dir + "/d.json"])
            XCTAssertEqual(r.status, 1, r.stderr)
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(file), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/d.json"))
        }
    }

    /// `detect test` writes the proposal file and prints the box count and the person AP line; a
    /// ground-truth box without height is one line naming the CSV's line and field, exit 1, no file.
    func testDetectTestWritesProposalsAndPrintsPersonAP() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("detect-test-command")
        let config = try writeTinyDetectRun(dir, detector: try smallDetector(dir))
        let r = try runProcess(exe, ["detect", "test", "--config", config, "--out", dir + "/p.csv"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let p = try AVAProposals.read(dir + "/p.csv")
        let n = p.boxes.values.reduce(0) { $0 + $1.count }
        XCTAssertTrue(r.stdout.contains("wrote \(n) person boxes for 3 keyframes to \(dir)/p.csv"), r.stdout)
        XCTAssertTrue(r.stdout.contains("person AP@0.5: "), r.stdout)
        XCTAssertTrue(r.stdout.contains("(VOC all-point; 3 ground-truth boxes, \(n) detections"), r.stdout)

        let bad = temporaryDirectory("detect-test-command-bad")
        let flat = try writeTinyDetectRun(bad, detector: dir + "/detector.safetensors", gtRows: "\(tinyAVAClip),0000,0.2,0.5,0.6,0.5,11,0\n")
        let e = try runProcess(exe, ["detect", "test", "--config", flat, "--out", bad + "/p.json"])
        XCTAssertEqual(e.status, 1, e.stderr)
        XCTAssertEqual(e.stderr.split(separator: "\n").count, 1, e.stderr)
        XCTAssertTrue(e.stderr.contains(bad + "/gt.csv:1") && e.stderr.contains("field y2"), e.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: bad + "/p.json"))
    }
}
