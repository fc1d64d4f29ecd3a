import CycleTimeCore
import Foundation
import XCTest

/// A small TimeCycle config on the shared test videos: 96x96 frames, 32x32 patches, D 32, batch 2.
public func tinyConfigYAML(output: String, videos: String, steps: Int = 6, extra: String = "") -> String {
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
public func writeTinyConfig(_ dir: String, output: String, steps: Int = 6, extra: String = "") throws -> String {
    let videos = try requireSharedData("videos")
    let p = dir + "/tiny.yaml"
    try tinyConfigYAML(output: output, videos: videos, steps: steps, extra: extra).write(toFile: p, atomically: true, encoding: .utf8)
    return p
}

/// The JHMDB clip of the tiny AVA run.
public let tinyAVAClip = "Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"

/// Frame 20 of that clip (a lossless 320x240 RGB PNG, one person): the detector's parity input
/// (scripts/fixtures/detector.py reads the same file) and the image of the detect tests. Skips when
/// ../shared/data is absent.
public func detectorTestFrame() throws -> String {
    try requireSharedData("jhmdb-mini/Frames/catch/\(tinyAVAClip)/00020.png")
}

/// A tiny AVA run on the JHMDB clip (frame folders, 10 fps numbering): 4 keyframes, 2 classes.
public func writeTinyAVARun(_ dir: String, extra: String = "") throws -> String {
    let frames = try requireSharedData("jhmdb-mini") + "/Frames/catch"
    var rows = "", props: [String] = []
    let boxes = [(0.803, 0.379, 0.981, 0.846), (0.531, 0.308, 0.728, 0.829), (0.444, 0.246, 0.609, 0.850), (0.397, 0.350, 0.550, 0.900)]
    for (s, b) in boxes.enumerated() {
        rows += "\(tinyAVAClip),\(String(format: "%04d", s)),\(b.0),\(b.1),\(b.2),\(b.3),\(s % 2 == 0 ? 12 : 11),0\n"
        props.append("\"\(tinyAVAClip),\(String(format: "%04d", s))\": [[\(b.0), \(b.1), \(b.2), \(b.3), 0.97]]")
    }
    try rows.write(toFile: dir + "/gt.csv", atomically: true, encoding: .utf8)
    try ("{" + props.joined(separator: ", ") + "}\n").write(toFile: dir + "/p.json", atomically: true, encoding: .utf8)
    try "11: stand\n12: catch\n13: run\n".write(toFile: dir + "/labels.txt", atomically: true, encoding: .utf8)
    let cfg = dir + "/ava.yaml"
    try """
        seed: 4
        output_dir: \(dir)/run
        data:
          annotations: \(dir)/gt.csv
          labelmap: \(dir)/labels.txt
          proposals: \(dir)/p.json
          frames: \(frames)
          fps: 10
          window_start: 0
          clip_length: 2
          frame_interval: 2
          train_jitter_scales: [48, 64]
          train_crop: 48
          test_short_side: 48
          temporal_jitter: 1
        model:
          backbone: 2d
          last_stage: layer1
        train:
          batch_size: 2
          steps: 4
          checkpoint_every: 2
          log_every: 1
        \(extra)
        """.write(toFile: cfg, atomically: true, encoding: .utf8)
    return cfg
}

/// A temporary run directory made from the smoke run's config and metrics (first `steps` lines).
public func makeRunDir(_ name: String, steps: Int?, partialLine: Bool = false, metrics: Bool = true,
                in parent: String = NSTemporaryDirectory() + "/report-tests-\(getpid())") throws -> String {
    let fx = repoRoot + "/Tests/Fixtures/report"
    let dir = parent + "/\(name)"
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: fx + "/timecycle-r18-smoke-config.yaml", toPath: dir + "/config.yaml")
    if metrics {
        let lines = try String(contentsOfFile: fx + "/timecycle-r18-smoke-metrics.jsonl", encoding: .utf8).split(separator: "\n")
        var text = lines.prefix(steps ?? lines.count).map { $0 + "\n" }.joined()
        if partialLine { text += String(lines[steps ?? 0].prefix(40)) }
        try text.write(toFile: dir + "/metrics.jsonl", atomically: true, encoding: .utf8)
    }
    return dir
}

/// A tiny person-detection split on the JHMDB clip (frame folders at `frames`, default the shared
/// ones; 10 fps numbering): 4 keyframes (seconds 0-3, frames 1, 11, 21, 31), one person box each,
/// repeated once per action as AVA CSVs do; second 3 excluded. Returns the `detect` config, whose
/// detector section runs `detector` at min size 96 (or, for `detect train` with detector "", a
/// small ResNet-18 person detector from the seed), train section 2 steps of 2 images.
public func writeTinyDetectRun(_ dir: String, detector: String, frames: String? = nil, gtRows: String? = nil) throws -> String {
    let root = try frames ?? (requireSharedData("jhmdb-mini") + "/Frames/catch")
    let boxes = [(0.803, 0.379, 0.981, 0.846), (0.531, 0.308, 0.728, 0.829), (0.444, 0.246, 0.609, 0.850), (0.397, 0.350, 0.550, 0.900)]
    var rows = ""
    for (s, b) in boxes.enumerated() {
        for action in [11, 12] { rows += "\(tinyAVAClip),\(String(format: "%04d", s)),\(b.0),\(b.1),\(b.2),\(b.3),\(action),0\n" }
    }
    try (gtRows ?? rows).write(toFile: dir + "/gt.csv", atomically: true, encoding: .utf8)
    try "\(tinyAVAClip),0003\n".write(toFile: dir + "/excluded.csv", atomically: true, encoding: .utf8)
    let cfg = dir + "/detect.yaml"
    try """
        output_dir: \(dir)/run
        data:
          annotations: \(dir)/gt.csv
          excluded: \(dir)/excluded.csv
          frames: \(root)
          fps: 10
          window_start: 0
        detector:
          checkpoint: "\(detector)"
          min_size: 96
          max_size: 160
          score_threshold: 0.05
          depth: 18
          representation_size: 32
          box_batch_size_per_image: 64
        train:
          batch_size: 2
          steps: 2
          checkpoint_every: 1
          log_every: 1
        """.write(toFile: cfg, atomically: true, encoding: .utf8)
    return cfg
}
