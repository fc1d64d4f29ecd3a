import ArgumentParser
import CycleTimeCore
import CycleTimeDetection
import CycleTimeNN
import CycleTimeVideo
import Foundation

/// `cycletime bench detect`: the Faster R-CNN ResNet-FPN detector (torchvision's layout, random
/// weights as fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None): BatchNorm2d in the body,
/// 91 classes, trainable_backbone_layers 3) on one real frame, against torchvision's model with the
/// same sizes (scripts/bench/torch_detect.py) in the same run:
///   infer  eval mode, one image per call: seconds per image
///   train  one training iteration, batch 2 (the frame and its horizontal flip, two person boxes
///          each): the four losses, backward, SGD step (lr 0.001, momentum 0.9, weight decay 1e-4)
/// at each precision (fp32; bf16: the forward inside Autocast / torch.autocast("cpu", bfloat16)).
/// Every (case, precision) runs in its own process on each side, so a peak memory is that case's own;
/// PyTorch runs in its default layout and channels-last (`--torch-layout`), the ratio is against the
/// faster of them.
struct BenchDetect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detect",
        abstract: "Faster R-CNN ResNet-FPN inference and training iteration time and peak memory, fp32 and bf16, vs torchvision.")

    static let known = ["infer", "train"]
    /// The default frame: one person catching a ball (JHMDB, 320x240, lossless PNG).
    static let defaultImage = "../shared/data/jhmdb-mini/Frames/catch/Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2/00020.png"
    /// Ground truth of the training case as fractions of the image (x1, y1, x2, y2): the default
    /// frame's person (its JHMDB puppet mask's bounding box) and the person's upper body.
    static let boxFractions: [[Double]] = [[147.0 / 320, 53.0 / 240, 195.0 / 320, 200.0 / 240],
                                           [147.0 / 320, 53.0 / 240, 195.0 / 320, 119.0 / 240]]

    enum TorchLayout: String, ExpressibleByArgument, CaseIterable {
        case both, `default`, channelsLast = "channels-last"
    }

    @Option(parsing: .upToNextOption, help: "Cases: infer (eval, one image per call), train (losses, backward, SGD step; batch 2).")
    var cases: [String] = BenchDetect.known
    @Option(parsing: .upToNextOption, help: "Precisions to measure (fp32, bf16). Default: fp32, and bf16 when the CPU has AVX512-BF16.")
    var precisions: [Precision] = []
    @Option(help: "ResNet depth of the body (18, 34, 50, 101, 152).") var depth = 50
    @Option(help: "The transform's min_size (short side after resizing).") var minSize = 480
    @Option(help: "The transform's max_size (long side at most).") var maxSize = 800
    @Option(help: "The image (PNG or JPEG; default: a JHMDB frame from ../shared/data).") var image: String?
    @Option(help: "Timed steps per case (after one warm-up step).") var steps = 3
    @Option(help: "RPN proposals kept per image after NMS, in training and inference (torchvision's rpn_post_nms_top_n_train / _test; default theirs, 2000 / 1000).")
    var rpnPostNmsTopN: Int?
    @Option(help: "RoIs the box head samples per training image (torchvision's box_batch_size_per_image; default theirs, 512).")
    var boxBatchSizePerImage: Int?
    @Option(help: "PyTorch's memory layout: both (the ratio is against the faster), default or channels-last.")
    var torchLayout: TorchLayout = .both
    @Option(help: "Library of the float32 convolutions: auto (the library default), native or onednn.") var convBackend: ConvolutionBackend = .auto
    @Flag(help: "Skip the PyTorch reference even when python3 has torch and torchvision.") var noTorch = false
    @Flag(help: "Print the figures as one JSON object.") var json = false
    @Option(help: .hidden) var child: String?

    func validate() throws {
        for c in cases where !Self.known.contains(c) {
            throw ValidationError("unknown case '\(c)' (known: \(Self.known.joined(separator: ", ")))")
        }
        if cases.isEmpty { throw ValidationError("--cases needs at least one case") }
        if let c = child, !Self.known.contains(c) { throw ValidationError("--child: unknown case '\(c)'") }
        guard [18, 34, 50, 101, 152].contains(depth) else { throw ValidationError("--depth must be 18, 34, 50, 101 or 152, got \(depth)") }
        try checkOption("--min-size", minSize, 32...4096)
        try checkOption("--max-size", maxSize, minSize...8192)
        try checkOption("--steps", steps, 1...100_000)
        if let n = rpnPostNmsTopN { try checkOption("--rpn-post-nms-top-n", n, 1...100_000) }
        if let n = boxBatchSizePerImage { try checkOption("--box-batch-size-per-image", n, 1...100_000) }
    }

    var imagePath: String { image ?? repoPath(Self.defaultImage) }

    func run() throws {
        let img = try Image.read(imagePath)
        if let c = child { return try runCase(c, image: img) }
        let precisions = self.precisions.isEmpty
            ? [.fp32] + ((try? Autocast.checkBF16()) != nil ? [Precision.bf16] : [])
            : self.precisions
        for p in Set(precisions) { try Autocast.check(p, setting: "--precisions bf16") }
        let r = BenchReport(json: json)
        let torchAvailable = !noTorch && runProcess("/usr/bin/env", ["python3", "-c", "import torch, torchvision, PIL"]) != nil
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        var transform = RCNNTransform()
        transform.minSize = minSize
        transform.maxSize = maxSize
        let (h, w) = transform.resizedSize(height: img.height, width: img.width)
        r.say("Faster R-CNN ResNet-\(depth)-FPN (torchvision's layout, random weights, 91 classes, trainable backbone layers 3), "
              + "\(imagePath) (\(img.width)x\(img.height), resized to \(w)x\(h)); infer: eval, one image per call; "
              + "train: batch 2, losses + backward + SGD; \(steps) timed after 1 warm-up, each case in its own process; "
              + "CycleTime \(convBackend.rawValue) float32 convolutions; threads: \(Parallel.threadCount)")
        let layouts: [TorchLayout] = torchLayout == .both ? [.default, .channelsLast] : [torchLayout]
        var rows: [[String: Any]] = []
        var table = [["case", "precision", "CycleTime s", "peak MiB", "PyTorch s (layout)", "peak MiB", "PyTorch/CycleTime time", "CycleTime/PyTorch memory"]]
        let jobs = cases.flatMap { c in precisions.map { (c, $0) } }
        for (i, (c, p)) in jobs.enumerated() {
            r.say("[\(i + 1)/\(jobs.count)] \(c) \(p.rawValue): running…")
            // PyTorch first, then ours, back to back (the machine's speed drifts).
            var torch: [[String: Any]] = []
            if torchAvailable {
                for layout in layouts {
                    var args = [repoPath("scripts/bench/torch_detect.py"), "--case", c, "--image", imagePath, "--depth", "\(depth)",
                                "--min-size", "\(minSize)", "--max-size", "\(maxSize)", "--steps", "\(steps)",
                                "--threads", "\(Parallel.threadCount)", "--precision", p.rawValue,
                                "--boxes", Self.pixelBoxes(width: img.width, height: img.height).map { $0.map { "\($0)" }.joined(separator: ",") }.joined(separator: ";")]
                    if layout == .channelsLast { args.append("--channels-last") }
                    args += sizeFlags
                    if var j = runJSONProcess("/usr/bin/env", ["python3"] + args) {
                        j["layout"] = layout.rawValue
                        torch.append(j)
                    }
                }
            }
            let childArgs = ["bench", "detect", "--child", c, "--precisions", p.rawValue, "--depth", "\(depth)", "--min-size", "\(minSize)",
                             "--max-size", "\(maxSize)", "--steps", "\(steps)", "--image", imagePath, "--conv-backend", convBackend.rawValue] + sizeFlags
            guard var entry = runJSONProcess(me, childArgs), let sec = entry["seconds_per_step"] as? Double, let peak = entry["peak_rss_bytes"] as? Double else {
                throw ValidationError("the \(c) \(p.rawValue) case failed (run `cycletime \(childArgs.joined(separator: " "))` to see why)")
            }
            var row = [c, p.rawValue, fmt(sec, 2), fmt(peak / 1_048_576, 0)]
            let best = torch.compactMap { j -> (Double, Double, String, [String: Any])? in
                guard let s = j["seconds_per_step"] as? Double, let m = j["peak_rss_bytes"] as? Double else { return nil }
                return (s, m, j["layout"] as? String ?? "", j)
            }.min { $0.0 < $1.0 }
            if let (ts, tm, layout, _) = best {
                entry["torch_seconds_per_step"] = ts
                entry["torch_peak_rss_bytes"] = tm
                entry["torch_layout"] = layout
                entry["torch_version"] = torch.first?["torch_version"] ?? ""
                entry["torch_runs"] = torch
                entry["speedup_vs_torch"] = ts / sec
                entry["memory_vs_torch"] = peak / tm
                row += ["\(fmt(ts, 2)) (\(layout))", fmt(tm / 1_048_576, 0), fmt(ts / sec, 2) + "x", fmt(peak / tm, 2) + "x"]
            } else {
                row += ["skipped", "", "", ""]
            }
            table.append(row)
            rows.append(entry)
        }
        // The table (to standard error with --json).
        let widths = (0..<table[0].count).map { k in table.map { $0[k].count }.max() ?? 0 }
        for t in table {
            r.say("  " + zip(t, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .replacingOccurrences(of: " +$", with: "", options: .regularExpression))
        }
        if torchAvailable, let v = rows.lazy.compactMap({ $0["torch_version"] as? String }).first {
            r.say("PyTorch \(v): time ratio = PyTorch seconds / CycleTime seconds (above 1: CycleTime is faster); memory ratio = CycleTime peak / PyTorch peak (process RSS)")
        } else {
            r.say("PyTorch reference skipped (\(noTorch ? "--no-torch" : torchAvailable ? "its runs failed" : "python3 with torch, torchvision and PIL not found"))")
        }
        r.add("image", imagePath)
        r.add("resized", [h, w])
        r.add("depth", depth)
        r.add("rows", rows)
        r.emitJSON()
    }

    /// --rpn-post-nms-top-n and --box-batch-size-per-image as given (both sides take the same flags).
    var sizeFlags: [String] {
        (rpnPostNmsTopN.map { ["--rpn-post-nms-top-n", "\($0)"] } ?? []) + (boxBatchSizePerImage.map { ["--box-batch-size-per-image", "\($0)"] } ?? [])
    }

    /// `boxFractions` in pixels of a width x height image.
    static func pixelBoxes(width: Int, height: Int) -> [[Float]] {
        boxFractions.map { b in [Float(b[0] * Double(width)), Float(b[1] * Double(height)), Float(b[2] * Double(width)), Float(b[3] * Double(height))] }
    }

    /// One case at one precision in this process: prints its JSON.
    func runCase(_ c: String, image: Image) throws {
        guard let precision = precisions.first, precisions.count == 1 else { throw ValidationError("--child needs exactly one --precisions") }
        try Autocast.check(precision, setting: "--precisions bf16")
        var config = FasterRCNNConfig()
        config.depth = depth
        config.frozenBatchNorm = false
        config.trainableBackboneLayers = 3
        config.transform.minSize = minSize
        config.transform.maxSize = maxSize
        if let n = rpnPostNmsTopN { config.rpn.postNMSTopN = n; config.rpn.postNMSTopNTrain = n }
        var training = RCNNTrainingSettings()
        if let n = boxBatchSizePerImage { training.boxSampler.batchSizePerImage = n }
        var g = RandomGenerator(seed: 0)
        let model = FasterRCNN(config: config, generator: &g)
        let img = image.tensor()
        let policy = ConvolutionPolicy.current.with { $0.backend = convBackend }
        var times: [Double] = []
        var out: [String: Any] = ["case": c, "precision": precision.rawValue, "conv_backend": convBackend.rawValue, "depth": depth,
                                  "min_size": minSize, "max_size": maxSize]
        if c == "infer" {
            model.eval()
            for i in 0...steps {
                let t0 = wallSeconds()
                let d = try ConvolutionPolicy.withPolicy(policy) { try Autocast.run(precision) { model.detect([img]) } }
                let t1 = wallSeconds()
                out["detections"] = d[0].detections.scores.count
                if i > 0 { times.append(t1 - t0) }
                FileHandle.standardError.write(Data("inference \(i)\(i == 0 ? " (warm-up)" : ""): \(fmt(t1 - t0, 2)) s, \(d[0].detections.scores.count) detections\n".utf8))
            }
        } else {
            model.train()
            let params = model.namedParameters().filter { $0.1.requiresGrad }.map { (name: $0.0, tensor: $0.1) }
            let opt = SGD(parameters: params, learningRate: 0.001, momentum: 0.9, weightDecay: 1e-4)
            let width = img.shape[2]
            let flipped = img.indexSelect(axis: 2, indices: Array((0..<width).reversed()))
            let boxes = Self.pixelBoxes(width: image.width, height: image.height)
            let mirrored = boxes.map { [Float(width) - $0[2], $0[1], Float(width) - $0[0], $0[3]] }
            let targets = [boxes, mirrored].map { DetectionTarget(boxes: Tensor($0.flatMap { $0 }, shape: [$0.count, 4]), labels: $0.map { _ in 1 }) }
            var last: FasterRCNNLosses?
            for i in 0...steps {
                let t0 = wallSeconds()
                opt.zeroGrad()
                let losses = try ConvolutionPolicy.withPolicy(policy) {
                    let l = try Autocast.run(precision) { model.losses([img, flipped], targets: targets, settings: training, generator: &g) }
                    l.total.backward()
                    return l
                }
                opt.step()
                let t1 = wallSeconds()
                last = losses
                if i > 0 { times.append(t1 - t0) }
                FileHandle.standardError.write(Data("iteration \(i)\(i == 0 ? " (warm-up)" : ""): \(fmt(t1 - t0, 2)) s, loss \(losses.total.item())\n".utf8))
            }
            out["parameters"] = params.reduce(0) { $0 + $1.tensor.count }
            if let last {
                out["losses"] = ["loss_classifier": Double(last.classifier.item()), "loss_box_reg": Double(last.boxReg.item()),
                                 "loss_objectness": Double(last.objectness.item()), "loss_rpn_box_reg": Double(last.rpnBoxReg.item())]
            }
        }
        times.sort()
        out["seconds_per_step"] = times[times.count / 2]
        out["step_seconds"] = times
        out["timed_steps"] = times.count
        out["peak_rss_bytes"] = Double(ProcessMemory.peakResidentBytes)
        out["peak_tensor_bytes"] = Double(StorageStats.peakBytes)
        let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
