import Foundation
import TestSupport
import XCTest
@testable import CycleTimeTraining

final class TrainConfigTests: XCTestCase {
    func valid() -> TrainConfig {
        var c = TrainConfig()
        c.data.videos = ["v.mp4"]
        c.train.steps = 10
        return c
    }

    func assertInvalid(_ edit: (inout TrainConfig) -> Void, field: String, file: StaticString = #filePath, line: UInt = #line) {
        var c = valid()
        edit(&c)
        XCTAssertThrowsError(try c.validate(file: "c.yaml"), file: file, line: line) { e in
            XCTAssertTrue("\(e)".contains("field '\(field)'"), "\(e)", file: file, line: line)
        }
    }

    func testValidConfigPasses() throws {
        XCTAssertNoThrow(try valid().validate(file: "c.yaml"))
        let o = valid().clipOptions
        XCTAssertEqual(o.frameOffsets, [0, 2, 4, 6, 15, 17])
        XCTAssertEqual(o.fps, 12)
        XCTAssertEqual(o.outputSize, 240)
        XCTAssertEqual(o.decodeShortSide, 256)
        XCTAssertEqual(o.scaleRange, 0.9375...0.9375)
    }

    func testInvalidValuesNameTheirField() {
        assertInvalid({ $0.data.videos = [] }, field: "data.videos")
        assertInvalid({ $0.train.batchSize = 0 }, field: "train.batch_size")
        assertInvalid({ $0.train.steps = 0 }, field: "train.steps")
        assertInvalid({ $0.optimizer.name = "lamb" }, field: "optimizer.name")
        assertInvalid({ $0.optimizer.betas = [0.5] }, field: "optimizer.betas")
        assertInvalid({ $0.schedule.name = "poly" }, field: "schedule.name")
        assertInvalid({ $0.timecycle.encoder = "vgg16" }, field: "timecycle.encoder")
        assertInvalid({ $0.timecycle.encoderStrides = [1, 2] }, field: "timecycle.encoder_strides")
        assertInvalid({ $0.timecycle.localizerKernels = [9, 9] }, field: "timecycle.localizer_kernels")
        assertInvalid({ $0.patch.patchSize = 64 }, field: "patch.patch_size")
        assertInvalid({ $0.data.clipOffsets = [0, 4, 2] }, field: "data.clip_offsets")
        assertInvalid({ $0.data.targetOffset = 3 }, field: "data.target_offset")
        assertInvalid({ $0.data.cropScale = [0.9, 0.5] }, field: "data.crop_scale")
    }
}

/// Every number of the pretraining and AVA configs, enumerated from the config types: NaN,
/// infinity, a negative and a huge value each give exit 1, one line naming the YAML key, and no
/// run directory.
final class ConfigNumbersTests: XCTestCase {
    func testEveryBadNumberIsOneLineNamingItsKey() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("numbers")
        let train = dir + "/train.yaml", ava = dir + "/ava.yaml"
        try "seed: 1\ndata:\n  videos: [v.mp4]\ntrain:\n  steps: 2\n".write(toFile: train, atomically: true, encoding: .utf8)
        try "data:\n  annotations: a.csv\n  labelmap: l.pbtxt\n  frames: f\n".write(toFile: ava, atomically: true, encoding: .utf8)
        let cases: [(command: [String], config: String, numbers: [ConfigValidator.Number], bounds: [String: ClosedRange<Double>])] = [
            (["train"], train, ConfigValidator.numbers(in: TrainConfig()), TrainConfig.numberBounds),
            (["ava", "train"], ava, ConfigValidator.numbers(in: AVAConfig()), AVAConfig.numberBounds),
        ]
        var checked = 0
        for c in cases {
            // One entry per key (a list's elements share their key); a list keeps its length.
            var keys: [String] = [], length: [String: Int] = [:], integer: [String: Bool] = [:]
            for n in c.numbers {
                if length[n.key] == nil { keys.append(n.key) }
                length[n.key, default: 0] += 1
                integer[n.key] = n.isInteger
            }
            XCTAssertTrue(keys.contains("optimizer.lr") && keys.contains("train.grad_clip"), "\(keys)")
            for key in keys {
                let bounds = c.bounds[key] ?? 0...ConfigValidator.maxNumber
                var values = bounds.contains(-1) ? [] : ["-1"]
                values.append("1" + String(repeating: "0", count: 17))
                if integer[key] == false { values += [".nan", ".inf", "-.inf"] }
                for value in values {
                    let count = length[key] ?? 1
                    let yaml = count == 1 ? value : "[" + Array(repeating: value, count: count).joined(separator: ", ") + "]"
                    let out = dir + "/run-\(checked)"
                    let r = try runProcess(exe, c.command + ["--config", c.config, "--set", "output_dir=\(out)", "--set", "\(key)=\(yaml)"])
                    let what = "\(c.command.joined(separator: " ")) \(key)=\(yaml)"
                    XCTAssertEqual(r.status, 1, "\(what): \(r.stderr)")
                    XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(what): \(r.stderr)")
                    XCTAssertTrue(r.stderr.contains("field '\(key)'"), "\(what): \(r.stderr)")
                    XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(what) created the run directory")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 200)
    }
}

/// Every committed experiment config reads and validates (the data folders are not checked here).
final class ExperimentConfigsTests: XCTestCase {
    func testEveryExperimentConfigLoadsAndValidates() throws {
        let dir = repoRoot + "/experiments"
        // ava-*.yaml are AVA detector configs (AVATaskTests checks them).
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") && !$0.hasPrefix("ava-") }.sorted()
        XCTAssertEqual(names, ["crw-r18-cpu.yaml", "crw-r18-smoke.yaml", "timecycle-r18-cpu.yaml", "timecycle-r18-smoke.yaml",
                               "timecycle-r50-vlog.yaml"])
        for n in names {
            let text = try String(contentsOfFile: dir + "/" + n, encoding: .utf8)
            XCTAssertTrue(text.hasPrefix("# "), "\(n) starts with a comment saying what it is for")
            let c = try ConfigLoader.load(TrainConfig.self, path: dir + "/" + n)
            XCTAssertNoThrow(try c.validate(file: n), n)
            XCTAssertEqual(c.objective == .crw, n.hasPrefix("crw"), n)
        }
        let r50 = try ConfigLoader.load(TrainConfig.self, path: dir + "/timecycle-r50-vlog.yaml")
        XCTAssertEqual(r50.timecycle.encoder, "resnet50")
        XCTAssertEqual(r50.timecycle.featureDim, 512)
    }
}
