import CycleTimeModels
import Foundation
import TestSupport
import XCTest

final class CheckpointFileTests: XCTestCase {
    func encoder(seed: UInt64 = 1, lastStage: String = "layer2") -> ResNet {
        var g = RandomGenerator(seed: seed)
        return ResNet(config: ResNetConfig(name: "resnet18", lastStage: lastStage)!, generator: &g)
    }

    func write(_ tensors: [String: Tensor], metadata: [String: String] = [:]) throws -> String {
        let path = temporaryDirectory("checkpoint-file") + "/c.safetensors"
        try SafeTensors.write(tensors, metadata: metadata, to: path)
        return path
    }

    func testTrainingCheckpointSplitsIntoModelOptimizerAndEncoderStates() throws {
        let enc = encoder()
        var t: [String: Tensor] = ["head.weight": Tensor([1, 2], shape: [2]), "optimizer.step": Tensor([3], shape: [1]),
                                   "optimizer.exp_avg.head.weight": Tensor([0, 1], shape: [2])]
        for (k, v) in enc.stateDict() { t["encoder." + k] = v }
        let file = try CheckpointFile(try write(t, metadata: ["step": "7"]))
        XCTAssertEqual(Set(file.modelState.keys), Set(t.keys.filter { !$0.hasPrefix("optimizer.") }))
        XCTAssertEqual(Set(file.optimizerState.keys), ["step", "exp_avg.head.weight"])
        let (state, prefix) = try file.encoderState()
        XCTAssertEqual(prefix, "encoder.")
        XCTAssertEqual(Set(state.keys), Set(enc.stateDict().keys))
        XCTAssertEqual(try file.step(), 7)
    }

    func testPlainTorchvisionFileIsItsOwnEncoderState() throws {
        let enc = encoder()
        let file = try CheckpointFile(try write(enc.stateDict()))
        let (state, prefix) = try file.encoderState()
        XCTAssertEqual(prefix, "")
        XCTAssertEqual(Set(state.keys), Set(enc.stateDict().keys))
        XCTAssertNil(try file.step())
    }

    func testMissingPrefixFolderAndBadStepAreErrorsNamingTheFileAndKey() throws {
        let path = try write(encoder().stateDict(), metadata: ["step": "-3"])
        let file = try CheckpointFile(path)
        XCTAssertThrowsError(try file.encoderState(prefix: "backbone.")) {
            XCTAssertTrue("\($0)".hasPrefix(path) && "\($0)".contains("'backbone.'"), "\($0)")
        }
        XCTAssertThrowsError(try file.step()) { XCTAssertTrue("\($0)".hasPrefix(path) && "\($0)".contains("'step'"), "\($0)") }
        let folder = temporaryDirectory("checkpoint-folder")
        XCTAssertThrowsError(try CheckpointFile(folder)) { XCTAssertTrue("\($0)".contains("is a folder"), "\($0)") }
    }

    func testLoadEncoderCopiesTheStagesItHasAndIgnoresLaterOnes() throws {
        let source = encoder(seed: 1, lastStage: "layer4")
        let path = try write(Dictionary(uniqueKeysWithValues: source.stateDict().map { ("encoder." + $0.key, $0.value) }))
        let target = encoder(seed: 2, lastStage: "layer2")
        try CheckpointFile(path).loadEncoder(into: target, description: "resnet18 up to layer2")
        let s = source.stateDict()
        for (k, v) in target.stateDict() { XCTAssertEqual(v.array, s[k]?.array, k) }
    }

    func testLoadEncoderNamesTheMissingMismatchedOrUnexpectedKey() throws {
        var state = encoder().stateDict()
        state["layer1.0.conv1.weight"] = nil
        let missing = try write(state)
        XCTAssertThrowsError(try CheckpointFile(missing).loadEncoder(into: encoder(), description: "d")) {
            XCTAssertTrue("\($0)".hasPrefix(missing) && "\($0)".contains("missing key 'layer1.0.conv1.weight'"), "\($0)")
        }
        state = encoder().stateDict()
        state["conv1.weight"] = Tensor.zeros([1, 2, 3])
        let shape = try write(state)
        XCTAssertThrowsError(try CheckpointFile(shape).loadEncoder(into: encoder(), description: "d")) {
            XCTAssertTrue("\($0)".contains("key 'conv1.weight' has shape [1, 2, 3]"), "\($0)")
        }
        state = encoder().stateDict()
        state["layer2.9.conv1.weight"] = Tensor.zeros([1])
        let extra = try write(state)
        XCTAssertThrowsError(try CheckpointFile(extra).loadEncoder(into: encoder(), description: "d")) {
            XCTAssertTrue("\($0)".contains("unexpected key 'layer2.9.conv1.weight'"), "\($0)")
        }
    }

    func testEncoderSpecRoundTripsThroughMetadataAndBadValuesNameTheKey() throws {
        let spec = EncoderSpec(arch: "resnet50", lastStage: "layer4", strides: [1, 2, 1, 1], padding: .reflect, normalization: .crw)
        XCTAssertEqual(try EncoderSpec.recorded(in: spec.metadata, file: "f"), spec)
        XCTAssertNotNil(spec.resnetConfig)
        XCTAssertNil(try EncoderSpec.recorded(in: [:], file: "f"))
        for (key, bad) in [("encoder_padding", "circular"), ("encoder_normalization", "mean 1,2 std 0,0,0"), ("encoder_strides", "1,2")] {
            var m = spec.metadata
            m[key] = bad
            XCTAssertThrowsError(try EncoderSpec.recorded(in: m, file: "f.safetensors")) {
                XCTAssertTrue("\($0)".hasPrefix("f.safetensors") && ("\($0)".contains(key) || key == "encoder_strides"), "\($0)")
            }
        }
        var m = spec.metadata
        m["encoder_last_stage"] = nil
        XCTAssertThrowsError(try EncoderSpec.recorded(in: m, file: "f")) { XCTAssertTrue("\($0)".contains("encoder_last_stage"), "\($0)") }
    }

    func testRecordedSpecWinsOverTheResolverWhichServesOlderFiles() throws {
        let recorded = EncoderSpec(arch: "resnet18", lastStage: "layer3", strides: [1, 2, 1, 1], padding: .zeros, normalization: .imagenet)
        let resolved = EncoderSpec(arch: "resnet18", lastStage: "layer4", strides: [1, 2, 1, 1], padding: .reflect, normalization: .crw)
        let resolver: ([String: String], String) throws -> EncoderSpec? = { _, _ in resolved }
        let new = CheckpointFile(path: "n", metadata: recorded.metadata, tensors: [:])
        XCTAssertEqual(try new.encoderSpec(resolver: resolver), recorded)
        let old = CheckpointFile(path: "o", metadata: ["config": "..."], tensors: [:])
        XCTAssertEqual(try old.encoderSpec(resolver: resolver), resolved)
        XCTAssertNil(try old.encoderSpec())
    }
}
