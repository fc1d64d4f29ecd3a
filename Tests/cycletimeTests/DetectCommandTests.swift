import CycleTimeCore
import CycleTimeDetection
import CycleTimeNN
import CycleTimeTraining
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

    /// Fine-tuning learns (#20 acceptance 3; a measurement, not a CI test: several minutes). Person
    /// AP@0.5 on held-out generated videos (real DAVIS backgrounds, two real JHMDB person crops each,
    /// moving; `AVACommandTests.writeMotionDataset`) of a ResNet-18-FPN person detector before and
    /// after `detect train`, its body from the seed and from a CycleTime encoder, with the same seed,
    /// heads, data and schedule. Set CYCLETIME_MEASURE_DETECTION to the encoder checkpoint (for
    /// instance a `timecycle-r18-cpu` run's latest.safetensors; "random" measures the random-init run
    /// only); CYCLETIME_MEASURE_DETECTION_STEPS sets the steps (default 300). README's person-detector
    /// section quotes a 200-step run.
    ///   CYCLETIME_MEASURE_DETECTION=runs/tc/checkpoints/latest.safetensors swift test -c release --skip-build --filter DetectCommandTests/testFineTuningRaisesHeldOutPersonAP
    func testFineTuningRaisesHeldOutPersonAP() throws {
        guard let encoder = ProcessInfo.processInfo.environment["CYCLETIME_MEASURE_DETECTION"] else {
            throw XCTSkip("a measurement, not a CI test: set CYCLETIME_MEASURE_DETECTION to an encoder checkpoint (or 'random') to run it")
        }
        let steps = Int(ProcessInfo.processInfo.environment["CYCLETIME_MEASURE_DETECTION_STEPS"] ?? "") ?? 300
        let dir = temporaryDirectory("detect-learning")
        try AVACommandTests.writeMotionDataset(dir, train: 48, test: 16, seeds: (31, 32), labels: "1: static\n2: horizontal\n3: vertical\n")
        var inits = [("random", "")]
        if encoder != "random" { inits.append(("encoder", encoder)) }
        var lines: [String] = []
        for (name, backbone) in inits {
            let cfg = dir + "/\(name).yaml"
            try """
                seed: 0
                output_dir: \(dir)/\(name)-run
                data:
                  annotations: \(dir)/train.csv
                  frames: \(dir)/frames
                  fps: 10
                  window_start: 0
                  decode_short_side: 64
                  flip: true
                test:
                  annotations: \(dir)/test.csv
                detector:
                  checkpoint: ""
                  backbone: "\(backbone)"
                  depth: 18
                  min_size: 128
                  max_size: 128
                  score_threshold: 0.05
                  representation_size: 256
                optimizer: {name: sgd, lr: 0.01, momentum: 0.9, weight_decay: 0.0001}
                schedule: {name: constant, warmup_steps: 50, warmup_factor: 0.001}
                train: {batch_size: 4, steps: \(steps), checkpoint_every: \(steps), log_every: 20}
                """.write(toFile: cfg, atomically: true, encoding: .utf8)
            let trainer = try makeDetectTrainer(configPath: cfg) { print($0) }
            try trainer.task.detector.save(to: dir + "/\(name)-init.safetensors")
            let before = try runDetectTest(configPath: cfg, checkpoint: dir + "/\(name)-init.safetensors", out: dir + "/\(name)-before.json",
                                           report: { print($0) }, progress: { _ in })
            XCTAssertEqual(try trainer.train(resume: false), .finished(step: steps))
            let after = try runDetectTest(configPath: cfg, checkpoint: dir + "/\(name)-run/checkpoints/latest.safetensors",
                                          out: dir + "/\(name)-after.json", report: { print($0) }, progress: { _ in })
            let b = try XCTUnwrap(before.personAP), a = try XCTUnwrap(after.personAP)
            lines.append(String(format: "%@: person AP@0.5 %.4f before, %.4f after %d steps (%d held-out boxes)", name, b.ap, a.ap, steps, a.groundTruth))
        }
        for l in lines { print("detection learning: " + l) }
    }
}
