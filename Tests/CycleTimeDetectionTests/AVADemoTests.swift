import Foundation
import XCTest
@testable import CycleTimeDetection
import CycleTimeCore
import CycleTimeNN
import CycleTimeModels
import CycleTimeTraining
import CycleTimeVideo
import TestSupport

final class AVADemoTests: XCTestCase {
    /// The shared video (340x256, 28 fps, 280 frames, 10 s), a tiny trained AVA run (2D ResNet-18 to
    /// layer1, clips of 2 frames at interval 2, data.fps 10), a small random-weight person detector,
    /// and the demo of the two on the video (run once: the detector takes most of the time).
    struct Fixture {
        let dir: String, video: String, config: String, checkpoint: String, detector: String
        let out: String, summary: AVADemoSummary
    }
    nonisolated(unsafe) static var cached: Fixture?

    static func fixture() throws -> Fixture {
        if let f = cached { return f }
        let video = try requireSharedData("videos/arm-wrestling.mp4")
        let dir = temporaryDirectory("ava-demo")
        let config = try writeTinyAVARun(dir)
        let trainer = try makeAVATrainer(configPath: config, overrides: ["train.steps=2"]) { _ in }
        _ = try trainer.train(resume: false)
        let checkpoint = dir + "/run/checkpoints/latest.safetensors", detector = try DetectTestTests.personDetector(dir)
        let out = dir + "/demo-detector"
        var o = AVADemoOptions(video: video, configPath: config, out: out, detector: detector, detectorPersons)
        o.checkpoint = checkpoint
        let summary = try runAVADemo(o, report: { _ in }, progress: { _ in })
        let f = Fixture(dir: dir, video: video, config: config, checkpoint: checkpoint, detector: detector, out: out, summary: summary)
        cached = f
        return f
    }

    /// The detector settings of the tests: small input, a low threshold (random weights), 3 boxes.
    static var detectorPersons: (transform: RCNNTransform, boxes: BoxHeadSettings) {
        var t = RCNNTransform()
        t.minSize = 96; t.maxSize = 160
        var b = BoxHeadSettings()
        b.scoreThreshold = 0.05; b.detectionsPerImage = 3
        return (t, b)
    }

    /// The report lines of a run.
    final class Reports { var lines: [String] = [] }

    static func run(_ f: Fixture, persons: AVADemoPersons, out: String, overrides: [String] = [],
                    reports: Reports = Reports()) throws -> AVADemoSummary {
        var o = AVADemoOptions(video: f.video, configPath: f.config, persons: persons, out: out)
        o.checkpoint = f.checkpoint
        o.overrides = overrides
        return try runAVADemo(o, report: { reports.lines.append($0) }, progress: { _ in })
    }

    /// Frames of a video, decoded (count, and the frames at `keep`).
    static func decode(_ path: String, fps: Double? = nil, resize: VideoResize = .none, keep: Set<Int> = []) throws -> (count: Int, frames: [Int: VideoFrame]) {
        let r = try VideoReader(path, fps: fps, resize: resize)
        var n = 0, kept: [Int: VideoFrame] = [:]
        while let fr = try r.nextFrame() {
            if keep.contains(n) { kept[n] = fr }
            n += 1
        }
        return (n, kept)
    }

    /// With the detector: results rows at exactly the keyframe seconds with a box, and there (seconds
    /// 0, 5 and 9) for the boxes the detector finds on that keyframe decoded independently (the
    /// frame at t seconds at data.fps and decode_short_side); proposals.json holds them with their
    /// scores; demo.mp4 has the input's frame count, size and frame rate.
    func testDetectorPathRowsAtEveryKeyframeWithABoxAndTheInputsFrames() throws {
        let f = try Self.fixture()
        let s = f.summary
        XCTAssertEqual(s.keyframes, 10)
        XCTAssertEqual(s.videoID, "arm-wrestling")
        let csv = try AVACSV.read(f.out + "/results.csv", scoreColumn: true)
        XCTAssertEqual(csv.rows.count, s.rows)
        let withBoxes = Set(0..<10).subtracting(s.keyframesWithoutBoxes)
        XCTAssertFalse(withBoxes.isEmpty)
        XCTAssertEqual(Set(csv.rows.map(\.key.timestamp)), withBoxes)
        XCTAssertTrue(csv.rows.allSatisfy { $0.key.videoID == "arm-wrestling" && [11, 12, 13].contains($0.actionID) })
        let proposals = try AVAProposals.read(f.out + "/proposals.json")
        XCTAssertEqual(proposals.boxes.keys.sorted(), (0..<10).map { AVAKey("arm-wrestling", $0) })

        let p = Self.detectorPersons
        let model = try FasterRCNN.load(f.detector, transform: p.transform, boxes: p.boxes)
        let keyframes = try Self.decode(f.video, fps: 10, resize: .shortSide(320), keep: [0, 50, 90])
        for t in [0, 5, 9] {
            let fr = try XCTUnwrap(keyframes.frames[10 * t])
            let boxes = personBoxes(model, frame: AVAFrame(width: fr.width, height: fr.height, rgb: fr.rgb), personLabel: 1)
            func rounded(_ b: AVABox) -> [Double] { [b.x1, b.y1, b.x2, b.y2].map { ($0 * 1000).rounded() } }
            XCTAssertEqual(Set(csv.rows.filter { $0.key.timestamp == t }.map { rounded($0.box) }), Set(boxes.map { rounded($0.box) }), "second \(t)")
            let stored = try XCTUnwrap(proposals.boxes[AVAKey("arm-wrestling", t)])
            XCTAssertEqual(stored.count, boxes.count)
            for (a, b) in zip(stored, boxes) {
                XCTAssertEqual(a.box.iou(b.box), 1, accuracy: 1e-4)
                XCTAssertEqual(a.score, b.score, accuracy: 5e-7)
            }
        }

        let input = try Self.decode(f.video)
        let written = try VideoReader(f.out + "/demo.mp4")
        XCTAssertEqual([written.metadata.width, written.metadata.height], [340, 256])
        XCTAssertEqual(written.metadata.fps, 28, accuracy: 1e-6)
        XCTAssertEqual(try Self.decode(f.out + "/demo.mp4").count, input.count)
        XCTAssertEqual(s.frames, input.count)
        XCTAssertEqual(input.count, 280)
        XCTAssertEqual(AtomicFile.removeTemporaries(in: f.dir), [])
    }

    /// The detector's boxes given back as proposals (the demo's proposals.json) give the same rows.
    func testProposalsOfTheDetectorsBoxesGiveTheSameRows() throws {
        let f = try Self.fixture()
        let b = f.dir + "/demo-proposals"
        _ = try Self.run(f, persons: .proposals(path: f.out + "/proposals.json"), out: b, overrides: ["test.proposal_threshold=0"])
        let ra = try AVACSV.read(f.out + "/results.csv", scoreColumn: true).rows, rb = try AVACSV.read(b + "/results.csv", scoreColumn: true).rows
        XCTAssertEqual(ra.count, rb.count)
        XCTAssertGreaterThan(ra.count, 0)
        for (x, y) in zip(ra, rb) {
            XCTAssertEqual(x.key, y.key)
            XCTAssertEqual(x.actionID, y.actionID)
            XCTAssertEqual(x.box.iou(y.box), 1, accuracy: 1e-2)
            // The JSON's 6 decimals move a box by at most 5e-7 of the frame: the scores agree to their printed 4 decimals.
            XCTAssertEqual(try XCTUnwrap(x.extra), try XCTUnwrap(y.extra), accuracy: 1.01e-4)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: b + "/proposals.json"))
    }

    /// A keyframe's box is drawn on the frames from that keyframe to the next (a pixel of its
    /// border takes the box's colour, a pixel away from it keeps the input's); a second without a
    /// proposal has no rows and nothing drawn, and is reported in one line.
    func testBoxesAreDrawnFromTheirKeyframeToTheNext() throws {
        let f = try Self.fixture()
        var entries: [String] = []
        for t in 0..<10 where t != 4 { entries.append("\"arm-wrestling,\(String(format: "%04d", t))\": [[0.25, 0.3, 0.75, 0.8, 0.99]]") }
        try ("{" + entries.joined(separator: ", ") + "}\n").write(toFile: f.dir + "/one.json", atomically: true, encoding: .utf8)
        let out = f.dir + "/demo-drawn"
        let reports = Reports()
        let s = try Self.run(f, persons: .proposals(path: f.dir + "/one.json"), out: out, reports: reports)
        XCTAssertEqual(s.keyframesWithoutBoxes, [4])
        XCTAssertEqual(reports.lines.count, 1, "\(reports.lines)")
        XCTAssertTrue(reports.lines.first?.contains("one.json: no person box at 1 of 10 keyframe seconds") ?? false, "\(reports.lines)")
        let csv = try AVACSV.read(out + "/results.csv", scoreColumn: true)
        XCTAssertEqual(Set(csv.rows.map(\.key.timestamp)), Set(0..<10).subtracting([4]))
        XCTAssertEqual(csv.rows.count, 9 * 3)

        // Frames 2 s + 5 (second 2: drawn) and 4 s + 5 (second 4: nothing drawn), input and output.
        let frames: Set<Int> = [2 * 28 + 5, 4 * 28 + 5]
        let input = try Self.decode(f.video, keep: frames).frames, output = try Self.decode(out + "/demo.mp4", keep: frames).frames
        // The mean of 3 x 2 pixels (x - 1...x + 1, y - 1...y): the 2-pixel line at y - 0.2 covers them.
        func mean(_ fr: VideoFrame, x: Int, y: Int) -> [Double] {
            var s = [0.0, 0.0, 0.0]
            for yy in (y - 1)...y { for xx in (x - 1)...(x + 1) { for c in 0..<3 { s[c] += Double(fr.rgb[(yy * fr.width + xx) * 3 + c]) / 6 } } }
            return s
        }
        func distance(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }
        let colour = [255.0, 60, 60]  // RGB.cycle[0], the first box's
        let border = (x: 170, y: 205)  // the bottom edge's middle (y = 0.8 x 256 = 204.8)
        let away = (x: 20, y: 240)
        let i2 = try XCTUnwrap(input[2 * 28 + 5]), o2 = try XCTUnwrap(output[2 * 28 + 5])
        XCTAssertLessThan(distance(mean(o2, x: border.x, y: border.y), colour), 50, "the border has the box's colour")
        XCTAssertGreaterThan(distance(mean(i2, x: border.x, y: border.y), colour), 80, "the input differs there")
        XCTAssertLessThan(distance(mean(o2, x: away.x, y: away.y), mean(i2, x: away.x, y: away.y)), 12)
        let i4 = try XCTUnwrap(input[4 * 28 + 5]), o4 = try XCTUnwrap(output[4 * 28 + 5])
        XCTAssertLessThan(distance(mean(o4, x: border.x, y: border.y), mean(i4, x: border.x, y: border.y)), 12, "nothing drawn at second 4")
    }

    /// Bad input is one error naming the file; no output folder (and no temporary) is left.
    func testBadInputIsOneErrorAndNoOutput() throws {
        let f = try Self.fixture()
        let dir = temporaryDirectory("ava-demo-bad")
        // An audio-only WAV file (0.1 s of silence): no video stream.
        var wav = Data("RIFF".utf8)
        func le(_ v: UInt32, _ n: Int) -> Data { Data((0..<n).map { UInt8((v >> (8 * UInt32($0))) & 0xff) }) }
        let samples = 1600
        wav += le(UInt32(36 + 2 * samples), 4) + Data("WAVEfmt ".utf8) + le(16, 4) + le(1, 2) + le(1, 2) + le(16000, 4) + le(32000, 4) + le(2, 2) + le(16, 2)
        wav += Data("data".utf8) + le(UInt32(2 * samples), 4) + Data(count: 2 * samples)
        try wav.write(to: URL(fileURLWithPath: dir + "/audio.wav"))
        var g = RandomGenerator(seed: 2)
        try ResNet(config: ResNetConfig(depth: 18), generator: &g).save(to: dir + "/resnet.safetensors")
        try "{\"other-video,0001\": [[0.1, 0.1, 0.5, 0.5, 0.9]]}\n".write(toFile: dir + "/other.json", atomically: true, encoding: .utf8)
        let boxes = Self.detectorPersons
        let cases: [(String, AVADemoOptions, String)] = [
            ("no video stream", {
                var o = AVADemoOptions(video: dir + "/audio.wav", configPath: f.config, out: dir + "/out", detector: f.detector, boxes)
                o.checkpoint = f.checkpoint
                return o
            }(), dir + "/audio.wav: no video stream"),
            ("classifier as detector", {
                var o = AVADemoOptions(video: f.video, configPath: f.config, out: dir + "/out", detector: dir + "/resnet.safetensors", boxes)
                o.checkpoint = f.checkpoint
                return o
            }(), dir + "/resnet.safetensors: no key 'roi_heads.box_predictor.cls_score.weight'"),
            ("action checkpoint as detector", {
                var o = AVADemoOptions(video: f.video, configPath: f.config, out: dir + "/out", detector: f.checkpoint, boxes)
                o.checkpoint = f.checkpoint
                return o
            }(), f.checkpoint + ": no key 'roi_heads.box_predictor.cls_score.weight'"),
            ("proposals of another video", {
                var o = AVADemoOptions(video: f.video, configPath: f.config, persons: .proposals(path: dir + "/other.json"), out: dir + "/out")
                o.checkpoint = f.checkpoint
                return o
            }(), dir + "/other.json: no keyframe of video id 'arm-wrestling' (its ids: other-video; pass --video-id)"),
        ]
        for (name, o, expected) in cases {
            XCTAssertThrowsError(try runAVADemo(o, report: { _ in }, progress: { _ in }), name) { e in
                XCTAssertTrue("\(e)".hasPrefix(expected), "\(name): \(e)")
                XCTAssertFalse("\(e)".contains("\n"), "\(name): \(e)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), name)
            XCTAssertEqual(AtomicFile.removeTemporaries(in: dir), [], name)
        }
    }
}

extension AVADemoOptions {
    /// Options with the tests' detector settings.
    init(video: String, configPath: String, out: String, detector: String, _ s: (transform: RCNNTransform, boxes: BoxHeadSettings)) {
        self.init(video: video, configPath: configPath, persons: .detector(path: detector, transform: s.transform, boxes: s.boxes, personLabel: 1), out: out)
    }
}
