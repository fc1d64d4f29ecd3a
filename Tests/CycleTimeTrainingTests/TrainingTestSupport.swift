import CycleTimeCore
import CycleTimeTraining
import Foundation
import TestSupport
import XCTest

/// A small TimeCycle config on the shared test videos: 96x96 frames, 32x32 patches, D 32, batch 2.
func tinyConfigYAML(output: String, videos: String, steps: Int = 6, extra: String = "") -> String {
    """
    # a tiny run for tests
    seed: 3
    output_dir: \(output)
    data:
      videos: [\(videos)]
      clips_per_video: 2
      workers: 2
    timecycle:
      frame_size: 96
      patch_size: 32
      feature_dim: 32
      localizer_widths: [32, 16]
      localizer_kernels: [2, 2]
    patch:
      patch_size: 32
    train:
      batch_size: 2
      steps: \(steps)
      checkpoint_every: 2
      log_every: 1
    \(extra)
    """
}

/// Writes the tiny config into `dir` and returns its path.
func writeTinyConfig(_ dir: String, output: String, steps: Int = 6, extra: String = "") throws -> String {
    let videos = try requireSharedData("videos")
    let p = dir + "/tiny.yaml"
    try tinyConfigYAML(output: output, videos: videos, steps: steps, extra: extra).write(toFile: p, atomically: true, encoding: .utf8)
    return p
}
