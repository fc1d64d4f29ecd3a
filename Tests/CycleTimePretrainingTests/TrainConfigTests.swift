import Foundation
import TestSupport
import XCTest
@testable import CycleTimeTraining
@testable import CycleTimePretraining

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
        assertInvalid({ $0.data.motionOffset = 0 }, field: "data.motion_offset")
        for n in [0, 1] { assertInvalid({ $0.timecycle.lossGridSize = n }, field: "timecycle.loss_grid_size") }
        assertInvalid({ $0.data.cropScale = [0.9, 0.5] }, field: "data.crop_scale")
        for t in [0, -1, Float.nan, .infinity] { assertInvalid({ $0.timecycle.temperature = t }, field: "timecycle.temperature") }
        for n in [-1, 2_000_000_000] { assertInvalid({ $0.timecycle.detachSteps = n }, field: "timecycle.detach_steps") }
    }

    /// The faithful TimeCycle options under their YAML keys: the original's temperature 512^-0.5
    /// by default, detach_network and detach_steps off.
    func testTimeCycleOptionsReadFromTheirYAMLKeys() throws {
        XCTAssertEqual(TrainConfig().timecycle.temperature, Float(1 / 512.0.squareRoot()))
        let c = try ConfigLoader.decode(TrainConfig.self, yaml: "timecycle:\n  temperature: 0.0625\n  detach_network: true\n  detach_steps: 500\n",
                                        file: "c.yaml")
        XCTAssertEqual(c.timecycle.temperature, 0.0625)
        XCTAssertTrue(c.timecycle.detachNetwork)
        XCTAssertEqual(c.timecycle.detachSteps, 500)
        XCTAssertThrowsError(try ConfigLoader.decode(TrainConfig.self, yaml: "timecycle:\n  detach_network: 3\n", file: "c.yaml")) {
            XCTAssertTrue("\($0)".contains("timecycle.detach_network"), "\($0)")
        }
    }
}

extension TrainConfigTests {
    /// `train.precision` is fp32 by default, reads bf16, is in the resolved config
    /// (`--print-config`), and any other value is one line naming the key and the valid values.
    func testPrecisionIsFP32OrBF16AndABadValueNamesTrainPrecision() throws {
        XCTAssertEqual(TrainConfig().train.precision, .fp32)
        XCTAssertEqual(try ConfigLoader.decode(TrainConfig.self, yaml: "train:\n  precision: bf16\n", file: "c.yaml").train.precision, .bf16)
        let printed = try ConfigLoader.resolvedText(TrainConfig.self, path: nil, overrides: ["train.precision=bf16"])
        XCTAssertTrue(printed.contains("\n  precision: bf16\n"), printed)
        for bad in ["fp16", "BF16", "1", "[bf16]"] {
            XCTAssertThrowsError(try ConfigLoader.decode(TrainConfig.self, yaml: "{}", file: "c.yaml", overrides: ["train.precision=\(bad)"])) {
                XCTAssertTrue("\($0)".hasPrefix("c.yaml: field 'train.precision'"), "\($0)")
                XCTAssertEqual("\($0)".split(separator: "\n").count, 1, "\($0)")
            }
        }
    }
}

/// Every number of the pretraining and AVA configs, enumerated from the config types: NaN,
/// infinity, a negative and a huge value each give exit 1, one line naming the YAML key, and no
/// run directory.
final class ConfigNumbersTests: XCTestCase {
}

/// Every committed experiment config reads and validates (the data folders are not checked here).
final class ExperimentConfigsTests: XCTestCase {
    func testEveryExperimentConfigLoadsAndValidates() throws {
        let dir = repoRoot + "/experiments"
        // ava-*.yaml are AVA detector configs (AVATrainingTests checks them), detect-*.yaml person-detector ones (DetectTestTests).
        let names = try FileManager.default.contentsOfDirectory(atPath: dir)
            .filter { $0.hasSuffix(".yaml") && !$0.hasPrefix("ava-") && !$0.hasPrefix("detect-") }.sorted()
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
