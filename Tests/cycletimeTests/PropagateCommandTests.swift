import ArgumentParser
@testable import CycleTimeCore
import CycleTimeModels
import CycleTimeNN
import CycleTimePropagation
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest
@testable import cycletime

final class PropagateCommandTests: XCTestCase {
    var dir = ""
    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("prop-cmd-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: dir + "/run/checkpoints", withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// A training checkpoint (encoder.* keys plus other heads and optimizer state), given as a file
    /// or as its run folder, loads the encoder: the features equal those of the source model.
    func testCheckpointEncoderLoads() throws {
        var g = RandomGenerator(seed: 7)
        let source = ResNet(config: ResNetConfig(name: "resnet18", lastStage: "layer3", strides: [1, 2, 1, 1])!, initialize: true, generator: &g)
        source.eval()
        var dict: [String: Tensor] = [:]
        for (k, t) in source.stateDict() { dict["encoder." + k] = t }
        dict["head.weight"] = Tensor.zeros([4, 4])
        dict["optimizer.state.0.exp_avg"] = Tensor.zeros([3])
        try SafeTensors.write(dict, to: dir + "/run/checkpoints/latest.safetensors")
        let img = Image(width: 64, height: 48, channels: 3, pixels: (0..<(64 * 48 * 3)).map { UInt8($0 % 251) })
        let expected = try FeatureExtractor.encoder(source, l2Normalize: true).features(img)
        for c in [dir + "/run", dir + "/run/checkpoints/latest.safetensors"] {
            let args = try PropagationArguments.parse(["--checkpoint", c])
            let f = try args.extractor().0.features(img)
            XCTAssertEqual(f.height, 6); XCTAssertEqual(f.width, 8); XCTAssertEqual(f.channels, 256)
            var worst: Float = 0
            for i in 0..<f.values.count { worst = max(worst, abs(f.values[i] - expected.values[i])) }
            XCTAssertLessThan(worst, 1e-5, c)
        }
    }

    /// A CRW run trained with reflect padding is propagated with reflect padding (read from the
    /// checkpoint's config), so test-time features are the trained ones; `--padding` overrides it,
    /// and other checkpoints keep torchvision's zero padding.
    func testPaddingFollowsTheCheckpointsTrainingConfig() throws {
        var g = RandomGenerator(seed: 8)
        let reflect = ResNet(config: ResNetConfig(name: "resnet18", lastStage: "layer3", strides: [1, 2, 1, 1], paddingMode: .reflect)!,
                             initialize: true, generator: &g)
        reflect.eval()
        var dict: [String: Tensor] = [:]
        for (k, t) in reflect.stateDict() { dict["encoder." + k] = t }
        let crw = dir + "/crw.safetensors", tc = dir + "/tc.safetensors", bare = dir + "/bare.safetensors"
        try SafeTensors.write(dict, metadata: ["objective": "crw", "config": "objective: crw\ncrw:\n  reflect_padding: true\n"], to: crw)
        try SafeTensors.write(dict, metadata: ["objective": "timecycle", "config": "objective: timecycle\n"], to: tc)
        try SafeTensors.write(dict, metadata: ["objective": "crw"], to: bare)
        let img = Image(width: 64, height: 48, channels: 3, pixels: (0..<(64 * 48 * 3)).map { UInt8(($0 * 7) % 253) })
        let expected = try FeatureExtractor.encoder(reflect, l2Normalize: true).features(img)
        func worst(_ args: [String]) throws -> (Float, PadMode) {
            let (e, pad) = try PropagationArguments.parse(args).extractor()
            let f = try e.features(img)
            var w: Float = 0
            for i in 0..<f.values.count { w = max(w, abs(f.values[i] - expected.values[i])) }
            return (w, pad)
        }
        let auto = try worst(["--checkpoint", crw])
        XCTAssertEqual(auto.1, .reflect); XCTAssertLessThan(auto.0, 1e-5)
        let forced = try worst(["--checkpoint", crw, "--padding", "zeros"])
        XCTAssertEqual(forced.1, .zeros); XCTAssertGreaterThan(forced.0, 1e-3)
        XCTAssertEqual(try worst(["--checkpoint", tc]).1, .zeros)
        XCTAssertEqual(try worst(["--checkpoint", tc, "--padding", "reflect"]).0, 0, accuracy: 1e-5)
        XCTAssertThrowsError(try PropagationArguments.parse(["--checkpoint", bare]).extractor()) {
            XCTAssertTrue("\($0)".contains(bare) && "\($0)".contains("--padding"), "\($0)")
        }
        XCTAssertThrowsError(try PropagationArguments.parse(["--checkpoint", crw, "--padding", "circular"])) {
            XCTAssertTrue("\($0)".contains("--padding"), "\($0)")
        }
    }

    func testBadEncoderArgumentsAreErrors() throws {
        XCTAssertThrowsError(try PropagationArguments.parse(["--pixels", "--random-init"]))
        XCTAssertThrowsError(try PropagationArguments.parse([]))
        let args = try PropagationArguments.parse(["--checkpoint", dir + "/run"])
        XCTAssertThrowsError(try args.extractor()) { XCTAssertTrue("\($0)".contains("latest.safetensors"), "\($0)") }
        try SafeTensors.write(["encoder.conv1.weight": Tensor.zeros([64, 3, 7, 7])], to: dir + "/bad.safetensors")
        XCTAssertThrowsError(try PropagationArguments.parse(["--checkpoint", dir + "/bad.safetensors"]).extractor()) {
            XCTAssertTrue("\($0)".contains("missing key 'encoder."), "\($0)")
        }
    }

    func testCommandLineOptions() throws {
        let tc = try PropagationArguments.parse(["--pixels", "--procedure", "timecycle"]).options
        XCTAssertEqual(tc, .defaults(.timecycle))
        let tuned = try PropagationArguments.parse(["--pixels", "--procedure", "timecycle", "--context", "3", "--square-size", "0"]).options
        XCTAssertEqual(tuned.contextFrames, 3); XCTAssertNil(tuned.squareSize); XCTAssertEqual(tuned.topK, 5)
        XCTAssertEqual(try PropagationArguments.parse(["--pixels"]).options, PropagationOptions())
        XCTAssertThrowsError(try PropagationArguments.parse(["--pixels", "--procedure", "nearest"])) {
            XCTAssertTrue("\($0)".contains("--procedure"), "\($0)")
        }
    }

    /// `--precision bf16` gives the encoder extractor at bf16 (the features are the library's
    /// `FeatureExtractor` at bf16, bit for bit); without AVX512-BF16 it is refused naming the flag.
    func testPrecisionFlagSelectsTheEncodersPrecision() throws {
        XCTAssertEqual(try PropagationArguments.parse(["--random-init"]).precision, .fp32)
        XCTAssertThrowsError(try PropagationArguments.parse(["--random-init", "--precision", "half"]))
        let args = try PropagationArguments.parse(["--random-init", "--seed", "2", "--layer", "layer1", "--precision", "bf16"])
        do {
            Autocast.nativeBF16Override = false
            defer { Autocast.nativeBF16Override = nil }
            XCTAssertThrowsError(try args.extractor()) {
                XCTAssertTrue("\($0)".hasPrefix("--precision bf16: precision bf16 needs a CPU with AVX512-BF16"), "\($0)")
            }
        }
        try XCTSkipUnless(OneDNN.hasNativeBF16, "this CPU has no AVX512-BF16")
        let (e, _) = try args.extractor()
        guard case .encoder(let model, _, _, let precision) = e else { return XCTFail("not an encoder extractor") }
        XCTAssertEqual(precision, .bf16)
        let img = Image(width: 64, height: 48, channels: 3, pixels: (0..<(64 * 48 * 3)).map { UInt8(($0 * 5) % 251) })
        let got = try e.features(img), bf16 = try FeatureExtractor.encoder(model, l2Normalize: true, precision: .bf16).features(img)
        let f32 = try FeatureExtractor.encoder(model, l2Normalize: true).features(img)
        XCTAssertEqual(got.values, bf16.values)
        XCTAssertNotEqual(got.values, f32.values)
    }
}
