import CycleTimeCore
import CycleTimeModels
import Foundation
import TestSupport
import XCTest
@testable import CycleTimeTraining
@testable import CycleTimePretraining

/// `objective: crw` through the trainer: checkpoints, metrics and an exact resume.
final class CRWTaskTests: XCTestCase {
    func config(_ dir: String, output: String, steps: Int) throws -> String {
        let videos = try requireSharedData("videos")
        let p = dir + "/crw-\(UUID().uuidString.prefix(6)).yaml"
        try """
        # a tiny contrastive-random-walk run for tests
        seed: 2
        output_dir: \(output)
        objective: crw
        data:
          videos: [\(videos)]
          clips_per_video: 2
        crw:
          encoder_last_stage: layer2
          image_size: 64
          patch_size: 32
          patch_stride: 32
          clip_length: 3
        optimizer:
          lr: 1.0e-3
          betas: [0.9, 0.999]
        train:
          batch_size: 2
          steps: \(steps)
          checkpoint_every: 2
          log_every: 1
        """.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    func testCRWTrainsCheckpointsAndResumesExactly() throws {
        let dir = temporaryDirectory("crw")
        let straight = try makeTrainer(configPath: try config(dir, output: dir + "/a", steps: 4))
        straight.warn = { _ in }
        XCTAssertEqual(try straight.train(resume: false, stopAfter: nil), .finished(step: 4))
        let cfg = try config(dir, output: dir + "/b", steps: 4)
        let first = try makeTrainer(configPath: cfg)
        first.warn = { _ in }
        XCTAssertEqual(try first.train(resume: false, stopAfter: 2), .interrupted(step: 2))
        let second = try makeTrainer(configPath: cfg)
        second.warn = { _ in }
        XCTAssertEqual(try second.train(resume: true, stopAfter: nil), .finished(step: 4))

        let a = try SafeTensors.read(dir + "/a/checkpoints/latest.safetensors")
        let b = try SafeTensors.read(dir + "/b/checkpoints/latest.safetensors")
        XCTAssertEqual(a.metadata["objective"], "crw")
        // The encoder spec is recorded as explicit keys, equal to what the embedded config resolves to.
        let spec = try XCTUnwrap(try CheckpointFile(path: "a", metadata: a.metadata, tensors: a.tensors).encoderSpec())
        XCTAssertEqual(spec.padding, .reflect)
        XCTAssertEqual(spec.normalization, .crw)
        XCTAssertEqual(spec, try TrainConfig.resolveEncoderSpec(metadata: a.metadata, file: "a"))
        XCTAssertNotNil(a.tensors["encoder.layer1.0.conv1.weight"])
        XCTAssertNotNil(a.tensors["selfsim_fc.0.weight"])
        for (k, t) in a.tensors where !k.hasPrefix("optimizer.") { assertClose(b.tensors[k]!, t, rtol: 1e-5, atol: 1e-7, k) }
        let metrics = try String(contentsOfFile: dir + "/b/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(metrics.count, 4)
        XCTAssertTrue(metrics[0].contains("\"walk_accuracy\""), String(metrics[0]))
    }
}
