import CycleTimeTracking
import Foundation
import XCTest
@testable import CycleTimeTraining
@testable import CycleTimePretraining

final class ConfigLoaderTests: XCTestCase {
    func decode(_ yaml: String, overrides: [String] = []) throws -> TrainConfig {
        try ConfigLoader.decode(TrainConfig.self, yaml: yaml, file: "x.yaml", overrides: overrides)
    }

    func assertError(_ yaml: String, overrides: [String] = [], contains: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try decode(yaml, overrides: overrides), file: file, line: line) { e in
            let s = "\(e)"
            XCTAssertTrue(s.hasPrefix("x.yaml: "), s, file: file, line: line)
            XCTAssertTrue(s.contains(contains), "'\(s)' lacks '\(contains)'", file: file, line: line)
            XCTAssertFalse(s.contains("\n"), "one line: \(s)", file: file, line: line)
        }
    }

    func testDefaultsFillMissingFieldsAndSnakeOrCamelCaseBothRead() throws {
        let c = try decode("seed: 5\ntrain:\n  batch_size: 8\n  steps: 10\ntimecycle:\n  featureDim: 64\n")
        XCTAssertEqual(c.seed, 5)
        XCTAssertEqual(c.train.batchSize, 8)
        XCTAssertEqual(c.train.steps, 10)
        XCTAssertEqual(c.timecycle.featureDim, 64)
        // Everything else keeps its default (the original's recipe).
        XCTAssertEqual(c.optimizer.lr, 2e-4)
        XCTAssertEqual(c.optimizer.betas, [0.5, 0.999])
        XCTAssertEqual(c.data.fps, 12)
        XCTAssertEqual(c.data.clipOffsets, [0, 2, 4, 6])
        XCTAssertEqual(c.data.targetOffset, 15)
        XCTAssertEqual(c.timecycle.encoder, "resnet18")
        XCTAssertEqual(c.timecycle.objective, .inlier)
        XCTAssertEqual(c.train.gradClip, 10)
        XCTAssertEqual(c.timecycle.temperature, TimeCycleConfig.originalTemperature)
        XCTAssertFalse(c.timecycle.detachNetwork)
        XCTAssertEqual(c.timecycle.detachSteps, 0)
    }

    func testEncodeThenDecodeRoundTrips() throws {
        var c = TrainConfig()
        c.data.videos = ["a", "b"]
        c.timecycle.temperature = 0.07
        c.timecycle.objective = .featureSimilarity
        c.schedule.milestones = [10, 20]
        let text = try ConfigLoader.encode(c)
        XCTAssertTrue(text.contains("feature_dim: 256"), text)
        XCTAssertTrue(text.contains("objective: feature_similarity"), text)
        XCTAssertTrue(text.contains("lr: 0.0002"), text)
        let back = try decode(text)
        XCTAssertEqual(back.data, c.data)
        XCTAssertEqual(back.timecycle, c.timecycle)
        XCTAssertEqual(back.schedule, c.schedule)
        XCTAssertEqual(back.optimizer, c.optimizer)
    }

    func testUnknownFieldsAreErrorsNamingTheField() {
        assertError("sed: 1\n", contains: "unknown field 'sed'")
        assertError("train:\n  batch: 4\n", contains: "unknown field 'train.batch' (known fields of 'train': batch_size")
        assertError("timecycle:\n  feature_dims: 4\n", contains: "unknown field 'timecycle.feature_dims'")
    }

    func testIllTypedFieldsAreErrorsNamingTheField() {
        assertError("train:\n  batch_size: four\n", contains: "field 'train.batch_size' has the wrong type: expected an integer")
        assertError("optimizer:\n  lr: fast\n", contains: "field 'optimizer.lr' has the wrong type: expected a number")
        assertError("data:\n  videos: 3\n", contains: "field 'data.videos'")
        assertError("timecycle:\n  objective: magic\n", contains: "field 'timecycle.objective' has an invalid value")
        assertError("train: 5\n", contains: "field 'train' must be a mapping")
        assertError("seed:\n  a: 1\n", contains: "field 'seed' must be a single value")
    }

    func testEmptyOrNonMappingFiles() throws {
        // An empty file is all defaults (validation then asks for the videos).
        XCTAssertEqual(try decode(""), TrainConfig())
        assertError("- a\n- b\n", contains: "top level must be a mapping")
        assertError("a: [1, 2\n", contains: "not valid YAML")
    }

    func testOverrides() throws {
        let c = try decode("train:\n  steps: 10\n", overrides: ["train.steps=20", "data.videos=[x, y]", "timecycle.feature_dim=16"])
        XCTAssertEqual(c.train.steps, 20)
        XCTAssertEqual(c.data.videos, ["x", "y"])
        XCTAssertEqual(c.timecycle.featureDim, 16)
        assertError("", overrides: ["train.stepz=3"], contains: "unknown field 'train.stepz'")
        assertError("", overrides: ["train.steps"], contains: "must be key.path=value")
    }

    /// The released CRW recipe's optimizer fields are accepted but unused: setting one to another
    /// value than its default gives one warning naming it; a resolved config (every field at its
    /// default) gives none.
    func testUnusedFieldsWarnOnlyWhenSetToAnotherValue() throws {
        final class Sink: @unchecked Sendable { var lines: [String] = [] }
        let sink = Sink()
        let saved = ConfigLoader.warn
        ConfigLoader.warn = { sink.lines.append($0) }
        defer { ConfigLoader.warn = saved }
        let c = try decode("objective: crw\ncrw:\n  learning_rate: 3.0e-4\n  lr_gamma: 0.3\n")
        XCTAssertEqual(c.crw.learningRate, 3e-4)
        XCTAssertEqual(sink.lines.count, 1, "\(sink.lines)")
        XCTAssertTrue(sink.lines.first?.contains("x.yaml: field 'crw.learning_rate' is not used") ?? false, "\(sink.lines)")
        sink.lines = []
        _ = try decode(try ConfigLoader.encode(TrainConfig()))
        XCTAssertEqual(sink.lines, [])
    }

    /// `--print-config`: every field, with the file's values and the overrides applied.
    func testResolvedTextHoldsEveryFieldWithOverridesApplied() throws {
        let text = try ConfigLoader.resolvedText(TrainConfig.self, path: nil, overrides: ["train.steps=7"])
        let back = try decode(text)
        var expected = TrainConfig()
        expected.train.steps = 7
        XCTAssertEqual(back, expected)
        XCTAssertTrue(text.contains("weight_decay:") && text.contains("sync_batchnorm:"), text)
    }
}
