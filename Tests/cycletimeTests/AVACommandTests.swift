import CycleTimeCore
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest
@testable import cycletime

@testable import CycleTimeDetection

/// `cycletime ava train|test|eval` end to end through the real executable.
final class AVACommandTests: XCTestCase {
    static let jhmdbClip = "Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"

    func run(_ exe: String, _ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> ProcessResult {
        let r = try TestSupport.runProcess(exe, args)
        XCTAssertEqual(r.status, 0, "cycletime \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        return r
    }

    /// mAP from `ava eval --json`.
    func evalMAP(_ exe: String, gt: String, detections: String, labelmap: String) throws -> Double {
        let r = try run(exe, ["ava", "eval", "--gt", gt, "--detections", detections, "--labelmap", labelmap, "--json"])
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        return try XCTUnwrap(obj?["mAP"] as? Double, r.stdout)
    }

    /// Normalized bounding box of the nonzero pixels of frame `f` (0-based) of the puppet mask.
    func maskBox(_ m: MatArray, frame f: Int) -> AVABox {
        let h = m.dims[0], w = m.dims[1]
        var x1 = w, y1 = h, x2 = -1, y2 = -1
        for y in 0..<h { for x in 0..<w where m[y, x, f] != 0 { x1 = min(x1, x); x2 = max(x2, x); y1 = min(y1, y); y2 = max(y2, y) } }
        return AVABox(Double(x1) / Double(w), Double(y1) / Double(h), Double(x2 + 1) / Double(w), Double(y2 + 1) / Double(h))
    }

    static func csvRow(_ video: String, _ t: Int, _ b: AVABox, _ action: Int, _ person: Int) -> String {
        "\(video),\(String(format: "%04d", t)),\(String(format: "%.4f,%.4f,%.4f,%.4f", b.x1, b.y1, b.x2, b.y2)),\(action),\(person)"
    }

    static func proposalJSON(_ p: [(String, Int, [AVABox], Double)]) -> String {
        "{" + p.map { v, t, boxes, s in
            "\"\(v),\(String(format: "%04d", t))\": [" + boxes.map { String(format: "[%.4f, %.4f, %.4f, %.4f, %.2f]", $0.x1, $0.y1, $0.x2, $0.y2, s) }.joined(separator: ", ") + "]"
        }.joined(separator: ",\n") + "}\n"
    }

    static func config(output: String, annotations: String, labelmap: String, proposals: String, frames: String, fps: Int,
                       clip: (Int, Int), size: Int, backbone: String, steps: Int, batch: Int, extra: String = "") -> String {
        """
        seed: 1
        output_dir: \(output)
        data:
          annotations: \(annotations)
          labelmap: \(labelmap)
          proposals: \(proposals)
          frames: \(frames)
          fps: \(fps)
          window_start: 0
          clip_length: \(clip.0)
          frame_interval: \(clip.1)
          train_jitter_scales: [\(size), \(size + size / 4)]
          train_crop: \(size)
          test_short_side: \(size)
          decode_short_side: \(size + size / 4)
        model:
          backbone: \(backbone)
          depth: 18
        optimizer:
          lr: 0.01
        schedule:
          warmup_steps: 2
        train:
          batch_size: \(batch)
          steps: \(steps)
          checkpoint_every: 2
          log_every: 1
        \(extra)
        """
    }

    /// Real frames: an AVA-format dataset from the JHMDB clip (keyframes at seconds
    /// 0-3 numbered at 10 fps, the person box of the puppet mask, action "catch") and one from the
    /// shared videos (FFmpeg at 30 fps, fixed person boxes, one action per video) train, test and
    /// evaluate through the command line; a test keyframe without proposals is reported and skipped.
    func testTrainTestEvalOnJHMDBAndVideos() throws {
        let exe = try cycletimeExecutable()
        let jhmdb = try requireSharedData("jhmdb-mini"), videos = try requireSharedData("videos")
        let dir = temporaryDirectory("e2e")

        // JHMDB: the clip is a video; 'catch' is class 12 of a small label map (pbtxt form).
        let pm = try XCTUnwrap(try MatFile.read(jhmdb + "/puppet_mask/catch/\(Self.jhmdbClip)/puppet_mask.mat")["part_mask"]?.array)
        var rows: [String] = [], props: [(String, Int, [AVABox], Double)] = []
        for s in 0...3 {
            let b = maskBox(pm, frame: 10 * s)
            XCTAssertTrue(b.x2 - b.x1 > 0.05 && b.y2 - b.y1 > 0.2, "person box \(b)")
            rows.append(Self.csvRow(Self.jhmdbClip, s, b, 12, 0))
            props.append((Self.jhmdbClip, s, [b], 0.97))
        }
        try (rows.joined(separator: "\n") + "\n").write(toFile: dir + "/jhmdb.csv", atomically: true, encoding: .utf8)
        try Self.proposalJSON(props).write(toFile: dir + "/jhmdb-proposals.json", atomically: true, encoding: .utf8)
        try "item {\n  name: \"stand\"\n  id: 11\n}\nitem {\n  name: \"catch\"\n  id: 12\n}\n".write(toFile: dir + "/jhmdb.pbtxt", atomically: true, encoding: .utf8)
        let jcfg = dir + "/jhmdb.yaml"
        try Self.config(output: dir + "/jhmdb-run", annotations: dir + "/jhmdb.csv", labelmap: dir + "/jhmdb.pbtxt",
                        proposals: dir + "/jhmdb-proposals.json", frames: jhmdb + "/Frames/catch", fps: 10, clip: (4, 2), size: 96,
                        backbone: "slowonly", steps: 3, batch: 2).write(toFile: jcfg, atomically: true, encoding: .utf8)
        let tr = try run(exe, ["ava", "train", "--config", jcfg])
        XCTAssertTrue(tr.stderr.contains("finished 3 steps"), tr.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/jhmdb-run/checkpoints/latest.safetensors"))
        let metrics = try String(contentsOfFile: dir + "/jhmdb-run/metrics.jsonl", encoding: .utf8)
        XCTAssertEqual(metrics.split(separator: "\n").count, 3)
        XCTAssertTrue(try String(contentsOfFile: dir + "/jhmdb-run/config.yaml", encoding: .utf8).contains("backbone: slowonly"))
        let te = try run(exe, ["ava", "test", "--config", jcfg, "--out", dir + "/jhmdb-results.csv"])
        XCTAssertTrue(te.stdout.contains("for 4 keyframes"), te.stdout)
        let res = try AVACSV.read(dir + "/jhmdb-results.csv", scoreColumn: true)
        XCTAssertEqual(Set(res.rows.map(\.key)), Set((0...3).map { AVAKey(Self.jhmdbClip, $0) }))
        XCTAssertTrue(res.rows.allSatisfy { [11, 12].contains($0.actionID) && $0.extra! >= 0.002 })
        let jm = try evalMAP(exe, gt: dir + "/jhmdb.csv", detections: dir + "/jhmdb-results.csv", labelmap: dir + "/jhmdb.pbtxt")
        XCTAssertEqual(jm, 1.0, accuracy: 1e-9, "one class, the proposals are the ground-truth boxes")

        // Videos: seconds 1-4 train, 5-6 test; pool-cleaning 6 has no proposal (reported, skipped).
        let fixed: [(String, [AVABox], Int)] = [
            ("pool-cleaning", [AVABox(0.15, 0.05, 0.85, 0.95)], 1),
            ("arm-wrestling", [AVABox(0, 0.1, 0.5, 1), AVABox(0.5, 0.1, 1, 1)], 2),
            ("gym-basketball", [AVABox(0.1, 0.2, 0.45, 0.95), AVABox(0.55, 0.2, 0.9, 0.95)], 3),
        ]
        var train: [String] = [], test: [String] = []
        props = []
        for (v, boxes, a) in fixed {
            for s in 1...6 {
                for (p, b) in boxes.enumerated() {
                    if s <= 4 { train.append(Self.csvRow(v, s, b, a, p)) } else { test.append(Self.csvRow(v, s, b, a, p)) }
                }
                if !(v == "pool-cleaning" && s == 6) { props.append((v, s, boxes, 0.95)) }
            }
        }
        try (train.joined(separator: "\n") + "\n").write(toFile: dir + "/videos-train.csv", atomically: true, encoding: .utf8)
        try (test.joined(separator: "\n") + "\n").write(toFile: dir + "/videos-test.csv", atomically: true, encoding: .utf8)
        try Self.proposalJSON(props).write(toFile: dir + "/videos-proposals.json", atomically: true, encoding: .utf8)
        try "1: clean pool\n2: arm wrestle\n3: play basketball\n".write(toFile: dir + "/videos-labels.txt", atomically: true, encoding: .utf8)
        let vcfg = dir + "/videos.yaml"
        try Self.config(output: dir + "/videos-run", annotations: dir + "/videos-train.csv", labelmap: dir + "/videos-labels.txt",
                        proposals: dir + "/videos-proposals.json", frames: videos, fps: 30, clip: (4, 4), size: 96, backbone: "2d",
                        steps: 3, batch: 2, extra: "test:\n  annotations: \(dir)/videos-test.csv\n").write(toFile: vcfg, atomically: true, encoding: .utf8)
        _ = try run(exe, ["ava", "train", "--config", vcfg])
        let vt = try run(exe, ["ava", "test", "--config", vcfg, "--out", dir + "/videos-results.csv"])
        XCTAssertTrue(vt.stderr.contains("no proposals for 1 keyframe (skipped): pool-cleaning,0006"), vt.stderr)
        XCTAssertTrue(vt.stdout.contains("for 5 keyframes"), vt.stdout)
        let vres = try AVACSV.read(dir + "/videos-results.csv", scoreColumn: true)
        XCTAssertFalse(vres.rows.contains { $0.key == AVAKey("pool-cleaning", 6) })
        XCTAssertFalse(vres.rows.contains { $0.box == AVABox(0, 0, 1, 1) }, "never a whole-frame box")
        let vm = try evalMAP(exe, gt: dir + "/videos-test.csv", detections: dir + "/videos-results.csv", labelmap: dir + "/videos-labels.txt")
        XCTAssertTrue(vm > 0 && vm <= 1, "\(vm)")
        XCTAssertTrue(vt.stdout.contains(String(format: "frame-mAP@0.5IOU: %.8f", vm)), vt.stdout)

        // Oracle boxes: every test keyframe (pool-cleaning 6 too, which has no proposal) on its ground-truth boxes.
        let gt = try run(exe, ["ava", "test", "--config", vcfg, "--boxes", "gt", "--out", dir + "/videos-gt-results.csv"])
        XCTAssertTrue(gt.stdout.contains("for 6 keyframes"), gt.stdout)
        XCTAssertTrue(gt.stdout.contains("test annotations, ground-truth boxes)"), gt.stdout)
        XCTAssertFalse(gt.stderr.contains("no proposals"), gt.stderr)
        let gres = try AVACSV.read(dir + "/videos-gt-results.csv", scoreColumn: true)
        let truth = try AVACSV.read(dir + "/videos-test.csv")
        XCTAssertEqual(Set(gres.rows.map(\.key)), Set(truth.rows.map(\.key)))
        XCTAssertEqual(Set(gres.rows.map { "\($0.key) \($0.box)" }), Set(truth.rows.map { "\($0.key) \($0.box)" }), "exactly the ground-truth boxes")
        let bad = try TestSupport.runProcess(exe, ["ava", "test", "--config", vcfg, "--boxes", "detector", "--out", dir + "/x.csv"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--boxes"), bad.stderr)
    }

    /// Bad inputs: one clear line naming the field or file, non-zero exit, no partial results.
    func testBadInputsAreOneLineErrors() throws {
        let exe = try cycletimeExecutable()
        let videos = try requireSharedData("videos")
        let dir = temporaryDirectory("bad")
        try "pool-cleaning,0001,0.1,0.1,0.9,0.9,1,0\n".write(toFile: dir + "/gt.csv", atomically: true, encoding: .utf8)
        try "1: clean\n".write(toFile: dir + "/labels.txt", atomically: true, encoding: .utf8)
        try "{\"pool-cleaning,0001\": [[0.1, 0.1, 0.9, 0.9, 0.95]], \"nowhere,0001\": [[0.1, 0.1, 0.9, 0.9, 0.95]]}\n".write(toFile: dir + "/p.json", atomically: true, encoding: .utf8)
        func cfg(_ extra: String = "", frames: String? = nil, gt: String? = nil) -> String {
            Self.config(output: dir + "/run", annotations: gt ?? dir + "/gt.csv", labelmap: dir + "/labels.txt", proposals: dir + "/p.json",
                        frames: frames ?? videos, fps: 30, clip: (2, 2), size: 64, backbone: "2d", steps: 1, batch: 1, extra: extra)
        }
        try "pool-cleaning,0001,0.1,0.1,0.9\n".write(toFile: dir + "/short.csv", atomically: true, encoding: .utf8)
        try "nowhere,0001,0.1,0.1,0.9,0.9,1,0\n".write(toFile: dir + "/novideo.csv", atomically: true, encoding: .utf8)
        let cases: [(String, String, [String], String)] = [
            ("unknown field", cfg("model:\n  backbon: 2d\n").replacingOccurrences(of: "model:\n  backbone: 2d\n  depth: 18\n", with: ""), ["train"], "unknown field 'model.backbon'"),
            ("bad backbone", cfg().replacingOccurrences(of: "backbone: 2d", with: "backbone: 4d"), ["train"], "field 'model.backbone' '4d' is not 2d, slowonly or slowfast"),
            ("bad head", cfg().replacingOccurrences(of: "backbone: 2d", with: "backbone: 2d\n  head: acr"), ["train"], "field 'model.head' 'acr' is not linear, acrn or acar"),
            ("pose softmax", cfg().replacingOccurrences(of: "backbone: 2d", with: "backbone: 2d\n  loss: ava_pose_softmax"), ["train"], "field 'model.loss': ava_pose_softmax"),
            ("slowfast clip", cfg().replacingOccurrences(of: "backbone: 2d", with: "backbone: slowfast"), ["train"], "field 'data.clip_length' must be a multiple of model.alpha"),
            ("malformed csv", cfg(gt: dir + "/short.csv"), ["train"], "short.csv:1: expected 7 or 8 comma-separated fields"),
            ("missing video", cfg(gt: dir + "/novideo.csv"), ["train"], "no video file for video id 'nowhere'"),
            ("missing frames", cfg(frames: dir + "/nothing"), ["train"], "nothing: no such frames folder"),
            ("no checkpoint", cfg(), ["test", "--out", dir + "/r.csv"], "no such checkpoint"),
        ]
        for (name, yaml, args, expected) in cases {
            let path = dir + "/\(name.replacingOccurrences(of: " ", with: "-")).yaml"
            try yaml.write(toFile: path, atomically: true, encoding: .utf8)
            let r = try TestSupport.runProcess(exe, ["ava"] + [args[0], "--config", path] + args.dropFirst())
            XCTAssertNotEqual(r.status, 0, name)
            let lines = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("warning:") }
            XCTAssertEqual(lines.count, 1, "\(name): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(expected), "\(name): \(r.stderr)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/r.csv"))
    }

    // MARK: a dataset whose actions are learnable from motion

    /// Bilinear-free nearest resize of an RGB image region to `side` x `side` (test data only).
    static func crop(_ img: Image, x: Int, y: Int, w: Int, h: Int, side: Int) -> [UInt8] {
        let rgb = img.rgbBytes()
        var out = [UInt8](repeating: 0, count: side * side * 3)
        for oy in 0..<side { for ox in 0..<side {
            let sx = x + ox * w / side, sy = y + oy * h / side
            for c in 0..<3 { out[(oy * side + ox) * 3 + c] = rgb[(sy * img.width + sx) * 3 + c] }
        } }
        return out
    }

    /// Square frames of two lanes (top and bottom) `laneHeight` rows high with `gap` rows of
    /// background between them.
    struct MotionLayout {
        var laneHeight = 32, gap = 0
        var size: Int { 2 * laneHeight + gap }
    }

    /// Two actors whose labels depend on each other: each moves in one of two `kinds` (action
    /// ids of `patchOrigin` + 1), and both "move as the other" (class 1) when their kinds agree
    /// (half the videos), both "move unlike the other" (class 2) otherwise. One actor's own motion
    /// says nothing of its label; only the pair does. `ownLabels` labels each actor by its own
    /// kind instead (1 or 2, the control that an actor's motion alone is learnable).
    struct RelationalMotion {
        var layout: MotionLayout
        var kinds: [Int]
        var ownLabels = false
        /// Actors standing still or moving sideways in lanes 40 rows high and 32 rows apart
        /// (112-pixel frames): with the backbone cut at layer1 (a receptive field of 43 pixels) no
        /// feature inside one actor's box sees the other lane.
        static let apart = RelationalMotion(layout: MotionLayout(laneHeight: 40, gap: 32), kinds: [1, 2])
    }

    /// Position of a moving patch at frame n: 0 static, 1 horizontal, 2 vertical (bouncing in its lane).
    static func patchOrigin(action: Int, lane: Int, frame n: Int, phase: Int, layout: MotionLayout, patch: Int) -> (x: Int, y: Int) {
        let size = layout.size, laneH = layout.laneHeight, laneTop = lane * (laneH + layout.gap)
        func bounce(_ t: Int, _ range: Int) -> Int { let p = t % (2 * range); return p < range ? p : 2 * range - p }
        switch action {
        case 1: return (bounce(5 * n + phase, size - patch), laneTop + (laneH - patch) / 2)
        case 2: return ((size - patch) / 2 + (lane == 0 ? -18 : 18), laneTop + bounce(3 * n + phase, laneH - patch))
        default: return ((size - patch) / 2 + phase % 24 - 12, laneTop + (laneH - patch) / 2)
        }
    }

    /// Writes `videos` frame folders (mmaction2 layout, img_00001.jpg) of real DAVIS backgrounds with
    /// two real JHMDB patches each, one per lane, static (class 1), moving horizontally (class 2) or
    /// vertically (class 3); returns the annotation rows of keyframes 1 and 2 (frames 11 and 21 at 10 fps).
    ///
    /// `relational`: labels that depend on both actors (`RelationalMotion`), in its layout.
    static func writeMotionVideos(root: String, names: [String], seed: UInt64, video: VideoWriter?, relational: RelationalMotion? = nil) throws -> [String] {
        let davis = try requireSharedData("davis-mini") + "/JPEGImages/480p"
        let jhmdb = try requireSharedData("jhmdb-mini") + "/Frames/catch/\(jhmdbClip)"
        let seqs = ["blackswan", "car-shadow", "dog", "libby"]
        let layout = relational?.layout ?? MotionLayout(), size = layout.size, patch = 16, frames = 24
        var g = RandomGenerator(seed: seed)
        var rows: [String] = []
        for (vi, name) in names.enumerated() {
            try FileManager.default.createDirectory(atPath: root + "/" + name, withIntermediateDirectories: true)
            let bgImg = try Image.read(davis + "/\(seqs[vi % 4])/" + String(format: "%05d.jpg", g.int(below: 40)))
            let bg = crop(bgImg, x: g.int(below: 300), y: 0, w: 480, h: 480, side: size)
            // Relational: the first actor's kind is drawn, not taken from vi, whose residue mod 4
            // picks the background: a background that told it would let the second actor's box
            // alone (its own motion and the background) give the label away.
            let actions = relational.map { r in let k = g.int(below: 2); return [r.kinds[k], r.kinds[g.int(below: 2) == 0 ? k : 1 - k]] }
                ?? [vi % 3, (vi + 1 + g.int(below: 2)) % 3].map { $0 + 1 }
            let labels = relational.map { r in r.ownLabels ? actions.map { a in a == r.kinds[0] ? 1 : 2 }
                                                           : [Int](repeating: actions[0] == actions[1] ? 1 : 2, count: 2) } ?? actions
            var patches: [[UInt8]] = []
            for _ in 0..<2 {
                let p = try Image.read(jhmdb + String(format: "/%05d.png", 1 + g.int(below: 40)))
                patches.append(crop(p, x: 120 + g.int(below: 100), y: 40 + g.int(below: 100), w: 64, h: 64, side: patch))
            }
            let phases = [g.int(below: 60), g.int(below: 60)]
            for n in 0..<frames {
                var px = bg
                for lane in 0..<2 {
                    let o = patchOrigin(action: actions[lane] - 1, lane: lane, frame: n, phase: phases[lane], layout: layout, patch: patch)
                    for y in 0..<patch { for x in 0..<patch { for c in 0..<3 { px[((o.y + y) * size + o.x + x) * 3 + c] = patches[lane][(y * patch + x) * 3 + c] } } }
                    if n == 10 || n == 20 {
                        let b = AVABox(Double(o.x) / Double(size), Double(o.y) / Double(size), Double(o.x + patch) / Double(size), Double(o.y + patch) / Double(size))
                        rows.append(csvRow(name, n / 10, b, labels[lane], lane))
                    }
                }
                try Image(width: size, height: size, channels: 3, pixels: px).writeJPEG(root + "/\(name)/" + String(format: "img_%05d.jpg", n + 1), quality: 95)
                try video?.write(rgb: px)
            }
        }
        return rows
    }

    /// A motion dataset under `dir`: frame folders of `train` and `test` videos (`writeMotionVideos`,
    /// the training ones also written to `video`, then finished), train.csv, test.csv,
    /// proposals.json (the ground-truth boxes at score 0.95) and the label map `labels` in labels.txt.
    static func writeMotionDataset(_ dir: String, train: Int, test: Int, seeds: (UInt64, UInt64), relational: RelationalMotion? = nil,
                                   labels: String, video: VideoWriter? = nil) throws {
        let trainRows = try writeMotionVideos(root: dir + "/frames", names: (0..<train).map { "train\($0)" }, seed: seeds.0, video: video, relational: relational)
        try video?.finish()
        let testRows = try writeMotionVideos(root: dir + "/frames", names: (0..<test).map { "test\($0)" }, seed: seeds.1, video: nil, relational: relational)
        try (trainRows.joined(separator: "\n") + "\n").write(toFile: dir + "/train.csv", atomically: true, encoding: .utf8)
        try (testRows.joined(separator: "\n") + "\n").write(toFile: dir + "/test.csv", atomically: true, encoding: .utf8)
        var props: [(String, Int, [AVABox], Double)] = []
        for csv in [dir + "/train.csv", dir + "/test.csv"] {
            for (k, boxes) in try AVACSV.read(csv).groupedBoxes() { props.append((k.videoID, k.timestamp, boxes.map(\.box), 0.95)) }
        }
        try proposalJSON(props).write(toFile: dir + "/proposals.json", atomically: true, encoding: .utf8)
        try labels.write(toFile: dir + "/labels.txt", atomically: true, encoding: .utf8)
    }

    /// The AVA config of a motion run on `writeMotionDataset`'s files: 2d backbone to `lastStage`
    /// (layer3 at stride 8 by default), Adam 1e-3, batch 4, `size`-pixel frames; `model` adds lines
    /// to the model section.
    static func motionConfig(_ dir: String, output: String, steps: Int, checkpointEvery: Int, model: String,
                             size: Int = 64, lastStage: String = "layer3") -> String {
        config(output: output, annotations: dir + "/train.csv", labelmap: dir + "/labels.txt", proposals: dir + "/proposals.json",
               frames: dir + "/frames", fps: 10, clip: (4, 2), size: size, backbone: "2d", steps: steps, batch: 4,
               extra: "test:\n  annotations: \(dir)/test.csv\n")
            .replacingOccurrences(of: "  depth: 18\n", with: "  depth: 18\n  last_stage: \(lastStage)\n  strides: [1, 2, 1, 1]\n" + model)
            .replacingOccurrences(of: "optimizer:\n  lr: 0.01\n", with: "optimizer:\n  name: adam\n  lr: 0.001\n")
            .replacingOccurrences(of: "train_jitter_scales: [\(size), \(size + size / 4)]", with: "train_jitter_scales: [\(size), \(size + size / 8)]")
            .replacingOccurrences(of: "checkpoint_every: 2", with: "checkpoint_every: \(checkpointEvery)")
    }

    /// Learnable actions: on a generated AVA-format dataset (real image patches moving
    /// horizontally, vertically or not at all over real backgrounds), a detector whose 2D encoder
    /// comes from a CycleTime TimeCycle checkpoint (trained here for a few steps on the same frames,
    /// written as a video) reaches a frame-mAP clearly above chance on held-out videos (seeded).
    func testDetectorFromPretrainedEncoderLearnsMotion() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("motion")
        try Self.writeMotionDataset(dir, train: 36, test: 20, seeds: (11, 12), labels: "1: stand still\n2: move sideways\n3: move up and down\n",
                                    video: try VideoWriter(path: dir + "/pretrain.mp4", width: 64, height: 64, fps: 10))
        let labels = dir + "/labels.txt"

        // A few TimeCycle steps on the generated video give the CycleTime encoder checkpoint.
        let pre = dir + "/timecycle.yaml"
        try """
            seed: 0
            output_dir: \(dir)/timecycle
            data:
              videos: [\(dir)/pretrain.mp4]
              fps: 10
              short_side: 64
              clips_per_video: 4
            timecycle:
              frame_size: 64
              patch_size: 32
              feature_dim: 32
              localizer_widths: [32, 16]
              localizer_kernels: [2, 2]
            patch:
              patch_size: 32
            train:
              batch_size: 2
              steps: 2
              log_every: 1
            """.write(toFile: pre, atomically: true, encoding: .utf8)
        _ = try run(exe, ["train", "--config", pre])
        let encoder = dir + "/timecycle/checkpoints/latest.safetensors"

        let cfg = dir + "/ava.yaml"
        try Self.motionConfig(dir, output: dir + "/run", steps: 50, checkpointEvery: 25, model: "  checkpoint: \(encoder)\n")
            .write(toFile: cfg, atomically: true, encoding: .utf8)
        _ = try run(exe, ["ava", "train", "--config", cfg])
        _ = try run(exe, ["ava", "test", "--config", cfg, "--out", dir + "/results.csv"])
        let mAP = try evalMAP(exe, gt: dir + "/test.csv", detections: dir + "/results.csv", labelmap: labels)

        // Chance: the same boxes with seeded random scores.
        let gt = try AVACSV.read(dir + "/test.csv").rows
        let lm = try AVALabelMap.read(labels)
        var chance = 0.0
        var g = RandomGenerator(seed: 99)
        for _ in 0..<20 {
            var text = ""
            for (k, boxes) in try AVACSV.read(dir + "/test.csv").groupedBoxes().sorted(by: { $0.key < $1.key }) {
                for b in boxes { for a in 1...3 { text += String(Self.csvRow(k.videoID, k.timestamp, b.box, a, 0).dropLast(2)) + String(format: ",%.4f\n", g.nextDouble()) } }
            }
            try text.write(toFile: dir + "/random.csv", atomically: true, encoding: .utf8)
            chance += evaluateAVA(groundTruth: gt, detections: try AVACSV.read(dir + "/random.csv", scoreColumn: true).rows, labelMap: lm).mAP! / 20
        }
        print("motion dataset: frame-mAP \(mAP), chance \(chance)")
        XCTAssertGreaterThan(mAP, chance + 0.25, "frame-mAP \(mAP) vs chance \(chance)")
    }

    /// Relation heads on relational motion (#19 acceptance 2; opt-in, about 15 minutes: set
    /// CYCLETIME_MEASURE_RELATIONS=1, and CYCLETIME_MEASURE_RELATIONS_STEPS for another schedule than
    /// 400 steps): the two actors of a keyframe both "move as the other" or both "move unlike the
    /// other" (`RelationalMotion.apart`), so a per-actor feature alone cannot tell. Their lanes
    /// are 32 rows apart and the backbone (2d) ends at layer1, whose features see 43 pixels, so the
    /// linear head, which reads one box, cannot see the other actor, while ACRN and ACAR read the
    /// whole feature map. First, as a control, the linear head on the same videos labelled by each
    /// actor's own motion (192 training, 192 held out); then the three heads on the relational
    /// labels, with the same seed, schedule and dropout before the classifier (0.5), twice: from
    /// random initialization, and from the control's backbone (`model.checkpoint`: a backbone that
    /// already tells the motions apart, as a pretrained one would; CYCLETIME_MEASURE_RELATIONS_INIT
    /// = random or control runs one of the two). Frame-mAPs on the held-out videos are printed
    /// (docs/ava.md quotes them).
    ///   CYCLETIME_MEASURE_RELATIONS=1 swift test -c release --skip-build --filter AVACommandTests/testRelationHeadsOnRelationalMotion
    func testRelationHeadsOnRelationalMotion() throws {
        let env = ProcessInfo.processInfo.environment
        guard env["CYCLETIME_MEASURE_RELATIONS"] != nil else {
            throw XCTSkip("a measurement, not a CI test: set CYCLETIME_MEASURE_RELATIONS=1 to run it")
        }
        let steps = Int(env["CYCLETIME_MEASURE_RELATIONS_STEPS"] ?? "") ?? 400
        let exe = try cycletimeExecutable()
        let dirs = [false: temporaryDirectory("relations"), true: temporaryDirectory("own-motion")]
        for (own, dir) in dirs {
            var data = RelationalMotion.apart
            data.ownLabels = own
            try Self.writeMotionDataset(dir, train: 192, test: 192, seeds: (21, 22), relational: data,
                                        labels: own ? "1: stand still\n2: move sideways\n" : "1: move as the other\n2: move unlike the other\n")
        }
        let control = (dirs[true] ?? "") + "/linear-on-own-motion-run/checkpoints/latest.safetensors"
        let heads = [("linear", ""), ("acrn", "  acrn_channels: 128\n"), ("acar", "  acar_reduce_dim: 128\n  acar_hidden_dim: 64\n")]
        let inits = (env["CYCLETIME_MEASURE_RELATIONS_INIT"] ?? "random,control").split(separator: ",")
        let runs = [("linear on own motion", "linear", "", true)]
            + (inits.contains("random") ? heads.map { ($0.0, $0.0, $0.1, false) } : [])
            + (inits.contains("control") ? heads.map { ($0.0 + " from the control's backbone", $0.0, $0.1 + "  checkpoint: \(control)\n", false) } : [])
        var figures: [String: Double] = [:]
        for (label, head, extra, own) in runs {
            let dir = dirs[own] ?? ""
            let name = label.replacingOccurrences(of: " ", with: "-").replacingOccurrences(of: "'", with: ""), cfg = dir + "/\(name).yaml"
            try Self.motionConfig(dir, output: dir + "/\(name)-run", steps: steps, checkpointEvery: steps / 2,
                                  model: "  head: \(head)\n" + extra, size: RelationalMotion.apart.layout.size, lastStage: "layer1")
                .write(toFile: cfg, atomically: true, encoding: .utf8)
            _ = try run(exe, ["ava", "train", "--config", cfg])
            _ = try run(exe, ["ava", "test", "--config", cfg, "--out", dir + "/\(name).csv"])
            figures[label] = try evalMAP(exe, gt: dir + "/test.csv", detections: dir + "/\(name).csv", labelmap: dir + "/labels.txt")
            print("relational motion, \(steps) steps: frame-mAP \(label) \(figures[label] ?? -1)")
        }
        XCTAssertEqual(figures.count, runs.count)
    }

    /// The official figure: mAP 0.09385522 and per-class APs of ../shared/data/README.md.
    func testGoldenOfficialProtocol() throws {
        let dir = try requireSharedData("ava-mini/eval-golden")
        var c = try CycleTimeCommand.parseAsRoot(["ava", "eval", "--gt", dir + "/gt.csv", "--detections", dir + "/pred.csv",
                                                  "--labelmap", dir + "/action_list.txt"])
        let cmd = try XCTUnwrap(c as? AVAEvalCommand)
        let r = try cmd.evaluate { XCTFail("unexpected report \($0)") }
        XCTAssertEqual(try XCTUnwrap(r.mAP), 0.09385522, accuracy: 5e-9)
        let aps = r.classes.map { $0.ap ?? -1 }
        XCTAssertEqual(aps[0], 0.170455, accuracy: 5e-7)
        XCTAssertEqual(aps[1], 0.0, accuracy: 5e-7)
        XCTAssertEqual(aps[2], 0.111111, accuracy: 5e-7)
        XCTAssertEqual(r.evaluatedFrames, 3)
        // By frequency (ground-truth boxes: class 3 has 5, class 1 has 4, class 2 has 3): one class a bin.
        XCTAssertEqual(r.bins?.map(\.bin), ["head", "mid", "tail"])
        XCTAssertEqual(r.bins?.map(\.classes), [[3], [1], [2]])
        let binned = try XCTUnwrap(r.bins).map { $0.mAP ?? -1 }
        XCTAssertEqual(binned[0], 0.111111, accuracy: 5e-7)
        XCTAssertEqual(binned[1], 0.170455, accuracy: 5e-7)
        XCTAssertEqual(binned[2], 0.0, accuracy: 5e-7)
        try c.run()
    }

    /// Excluded keyframes drop both their ground truth and their detections; timestamps compare as
    /// numbers ("0902" in one file, 902 in another).
    func testExcludedAndNumericTimestamps() throws {
        let dir = temporaryDirectory()
        try "v,0902,0,0,0.5,0.5,1,0\nv,903,0,0,0.5,0.5,1,0\n".write(toFile: dir + "/gt.csv", atomically: true, encoding: .utf8)
        try "v,902,0,0,0.5,0.5,1,0.9\nv,0903,0.5,0.5,1,1,1,0.8\n".write(toFile: dir + "/det.csv", atomically: true, encoding: .utf8)
        try "v,903\n".write(toFile: dir + "/ex.csv", atomically: true, encoding: .utf8)
        try "1: one\n2: two\n".write(toFile: dir + "/labels.txt", atomically: true, encoding: .utf8)
        let base = ["ava", "eval", "--gt", dir + "/gt.csv", "--detections", dir + "/det.csv", "--labelmap", dir + "/labels.txt"]
        let withEx = try XCTUnwrap(try CycleTimeCommand.parseAsRoot(base + ["--excluded", dir + "/ex.csv"]) as? AVAEvalCommand)
        let r = try withEx.evaluate { _ in }
        XCTAssertEqual(r.classes[0].ap, 1)
        XCTAssertEqual(r.excludedFrames, 1)
        XCTAssertNil(r.classes[1].ap) // no ground truth: not in the mean
        XCTAssertEqual(r.mAP, 1)
        let without = try XCTUnwrap(try CycleTimeCommand.parseAsRoot(base) as? AVAEvalCommand)
        // 903's detection misses its GT: class 1 = TP 0.9, FP 0.8 with 2 GT -> AP 0.5.
        XCTAssertEqual(try without.evaluate { _ in }.classes[0].ap, 0.5)
    }

    /// CLI option overrides and errors.
    func testProtocolOptions() throws {
        let base = ["ava", "eval", "--gt", "g", "--detections", "d", "--labelmap", "l"]
        let c = try XCTUnwrap(try CycleTimeCommand.parseAsRoot(base + ["--protocol", "mmaction2-1.x", "--max-detections", "50", "--frames-without-gt", "count"]) as? AVAEvalCommand)
        XCTAssertEqual(try c.resolvedProtocol(), AVAEvalProtocol(maxDetectionsPerFrame: 50, countFramesWithoutGroundTruth: true, dropClassesWithoutDetections: true))
        XCTAssertEqual(try XCTUnwrap(try CycleTimeCommand.parseAsRoot(base + ["--protocol", "pyslowfast"]) as? AVAEvalCommand).resolvedProtocol(), .mmaction2v0)
        XCTAssertThrowsError(try CycleTimeCommand.parseAsRoot(base + ["--protocol", "voc"]))
        XCTAssertThrowsError(try CycleTimeCommand.parseAsRoot(base + ["--classes-without-detections", "maybe"]))
        let missing = try XCTUnwrap(try CycleTimeCommand.parseAsRoot(base) as? AVAEvalCommand)
        XCTAssertThrowsError(try missing.evaluate { _ in }) { XCTAssert("\($0)".contains("l: no such label map file"), "\($0)") }
    }

    /// `ava test` checks its output before any keyframe is run: a results file in a missing
    /// folder is one line naming it.
    /// `ava check` on the 2d mini experiment: the table and exit 0; with a box in pixels: the
    /// problem with its file:line and exit 1; a bad config field: one line naming it.
    func testCheckPrintsTheProblemsAndFailsOnAnError() throws {
        let exe = try cycletimeExecutable()
        let videos = try requireSharedData("videos")
        let mini = repoRoot + "/experiments/ava-mini"
        let dir = temporaryDirectory("ava-check")
        try FileManager.default.copyItem(atPath: mini + "/videos-train.csv", toPath: dir + "/train.csv")
        let sets = ["data.labelmap=\(mini)/videos-label_map.txt", "data.proposals=\(mini)/videos-proposals.json",
                    "data.frames=\(videos)", "test.annotations=\(mini)/videos-val.csv", "data.annotations=\(dir)/train.csv"].flatMap { ["--set", $0] }
        let config = repoRoot + "/experiments/ava-r18-2d-mini.yaml"
        let clean = try run(exe, ["ava", "check", "--config", config] + sets)
        XCTAssertTrue(clean.stdout.contains("no problems found"), clean.stdout)
        XCTAssertTrue(clean.stdout.contains("2     arm wrestle                     head  12        4"), clean.stdout)
        var rows = try String(contentsOfFile: dir + "/train.csv", encoding: .utf8).components(separatedBy: "\n")
        rows[1] = "pool-cleaning,0002,48,12,272,228,1,0"
        try rows.joined(separator: "\n").write(toFile: dir + "/train.csv", atomically: true, encoding: .utf8)
        let broken = try TestSupport.runProcess(exe, ["ava", "check", "--config", config] + sets)
        XCTAssertEqual(broken.status, 1)
        XCTAssertTrue(broken.stdout.contains("error     \(dir)/train.csv:2"), broken.stdout)
        XCTAssertTrue(broken.stdout.contains("FAILED: 1 error(s)"), broken.stdout)
        let bad = try TestSupport.runProcess(exe, ["ava", "check", "--config", config, "--set", "data.fps=0"] + sets)
        XCTAssertEqual(bad.status, 1)
        XCTAssertEqual(bad.stderr.split(separator: "\n").count, 1, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("data.fps"), bad.stderr)
    }

    /// `ava train` with ACAR's head and the pose-softmax loss: Ctrl-C finishes the step, writes a
    /// checkpoint and exits 130; --resume completes the run; `ava test` and `ava eval` score it.
    func testACARRunInterruptedByCtrlCResumesAndTests() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("ava-acar-sigint")
        let cfg = try writeTinyAVARun(dir)
        try (1...16).map { "\($0): action \($0)" }.joined(separator: "\n").write(toFile: dir + "/ava-labels.txt", atomically: true, encoding: .utf8)
        let set = ["model.head=acar", "model.acar_reduce_dim=16", "model.acar_hidden_dim=8", "model.roi_size=3", "model.loss=ava_pose_softmax",
                   "data.labelmap=\(dir)/ava-labels.txt"].flatMap { ["--set", $0] }
        let metrics = dir + "/run/metrics.jsonl"
        let r = try runProcessInterrupted(exe, ["ava", "train", "--config", cfg, "--set", "train.steps=400"] + set, metrics: metrics)
        XCTAssertEqual(r.status, 130, r.stderr)
        XCTAssertTrue(r.stderr.contains("interrupted at step"), r.stderr)
        let steps = try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n").count
        XCTAssertTrue(steps >= 2 && steps < 400, "\(steps)")
        let resumed = try run(exe, ["ava", "train", "--config", cfg, "--resume", "--set", "train.steps=\(steps + 2)"] + set)
        XCTAssertTrue(resumed.stderr.contains("resuming at step \(steps)"), resumed.stderr)
        XCTAssertEqual(try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n").count, steps + 2)
        _ = try run(exe, ["ava", "test", "--config", cfg, "--out", dir + "/results.csv"] + set)
        let m = try evalMAP(exe, gt: dir + "/gt.csv", detections: dir + "/results.csv", labelmap: dir + "/ava-labels.txt")
        XCTAssertTrue(m > 0 && m <= 1, "\(m)")
    }

    func testResultsFileInAMissingFolderFailsBeforeAnyWork() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("ava-out")
        let cfg = try writeTinyAVARun(dir)
        let r = try TestSupport.runProcess(exe, ["ava", "test", "--config", cfg, "--out", dir + "/missing/results.csv"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains(dir + "/missing/results.csv: cannot write: folder"), r.stderr)
    }

    /// `ava demo` through the executable: a video and proposals give OUT/results.csv and
    /// OUT/demo.mp4 and a summary line; neither or both of --detector and --proposals, and a
    /// detector of another architecture (the action checkpoint), are one error line naming the flag
    /// or file, exit 1, no OUT. (AVADemoTests runs the detector path.)
    func testDemoWritesResultsAndVideoAndRefusesBadPersonSources() throws {
        let exe = try cycletimeExecutable()
        let video = try requireSharedData("videos/arm-wrestling.mp4")
        let dir = temporaryDirectory("ava-demo-command")
        let cfg = try writeTinyAVARun(dir)
        _ = try run(exe, ["ava", "train", "--config", cfg, "--set", "train.steps=2"])
        let keys = (0..<10).map { "\"arm-wrestling,\(String(format: "%04d", $0))\": [[0.2, 0.1, 0.6, 0.9, 0.95]]" }
        try ("{" + keys.joined(separator: ", ") + "}\n").write(toFile: dir + "/p.json", atomically: true, encoding: .utf8)
        let common = ["ava", "demo", video, "--config", cfg]
        let r = try run(exe, common + ["--proposals", dir + "/p.json", "--out", dir + "/demo"])
        XCTAssertTrue(r.stdout.contains("wrote 30 detections of 10 boxes at 10 of 10 keyframe seconds to \(dir)/demo/results.csv and 280 frames (340x256, 28 fps) to \(dir)/demo/demo.mp4"), r.stdout)
        XCTAssertEqual(try AVACSV.read(dir + "/demo/results.csv", scoreColumn: true).rows.count, 30)
        XCTAssertEqual(try VideoReader.probe(dir + "/demo/demo.mp4").frameCount, 280)

        let detector = ["--detector", dir + "/detector.safetensors"]
        let cases: [(String, [String], String)] = [
            ("neither", [], "--detector / --proposals: one is needed"),
            ("both", detector + ["--proposals", dir + "/p.json"], "--detector / --proposals: give one, not both"),
            ("action checkpoint as detector", ["--detector", dir + "/run/checkpoints/latest.safetensors"],
             dir + "/run/checkpoints/latest.safetensors: no key 'roi_heads.box_predictor.cls_score.weight'"),
        ]
        for (name, args, expected) in cases {
            let b = try TestSupport.runProcess(exe, common + args + ["--out", dir + "/bad"])
            XCTAssertEqual(b.status, 1, "\(name): \(b.stderr)")
            XCTAssertEqual(b.stderr.split(separator: "\n").filter { !$0.hasPrefix("warning:") }.count, 1, "\(name): \(b.stderr)")
            XCTAssertTrue(b.stderr.contains(expected), "\(name): \(b.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad"), name)
        }
    }
}
