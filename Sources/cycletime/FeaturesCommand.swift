import ArgumentParser
import CycleTimeCore
import CycleTimeData
import CycleTimeModels
import CycleTimeNN
import CycleTimeVideo
import Foundation

/// A bad input of `cycletime features`: one readable line naming the file, key or field.
struct FeaturesError: Error, CustomStringConvertible, LocalizedError {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
    var errorDescription: String? { message }
}

/// `cycletime features`: encoder features of an image or of each frame of a video, saved as a
/// safetensors file (key `features`: [1, C, h, w] for an image, [T, C, h, w] for a video, plus
/// `timestamps` and `frame_indices` [T] for a video; arch, layer, stride and source in the metadata).
struct FeaturesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "features",
        abstract: "Encoder features of an image or of each video frame, saved as safetensors.",
        discussion: """
            Frames are RGB, scaled to 0...1 and normalized with the ImageNet mean/std of the training \
            data pipeline, then run through the ResNet truncated after --layer (eval mode, no grad). \
            The checkpoint is a state dict with torchvision key names; keys under --prefix (default \
            'encoder.', used when present) are taken with the prefix removed. Keys of later stages \
            and fc are ignored; missing keys, unexpected keys of the used stages and shape \
            mismatches are errors.
            """)

    @Option(help: "Checkpoint (safetensors state dict with torchvision key names)") var checkpoint: String?
    @Flag(name: .customLong("random-init"), help: "Use a randomly initialized encoder (torchvision init) instead of a checkpoint") var randomInit = false
    @Option(help: "Seed of --random-init") var seed: UInt64 = 0
    @Option(help: "resnet18, resnet34, resnet50, resnet101 or resnet152") var arch: String = "resnet18"
    @Option(help: "Last stage: layer1, layer2, layer3 or layer4") var layer: String = "layer3"
    @Flag(help: "layer3 and layer4 at stride 1 (stage strides [1, 2, 1, 1]): output stride 8") var stride8 = false
    @Option(help: "Key prefix of the encoder in the checkpoint (default: 'encoder.' when present, else none; '' for none)") var prefix: String?
    @Option(help: "Input image (PNG or JPEG)") var image: String?
    @Option(help: "Input video (any format FFmpeg reads)") var video: String?
    @Option(help: "Output safetensors file (written atomically)") var out: String
    @Option(name: .customLong("short-side"), help: "Resize so the shorter side has this many pixels (bilinear)") var shortSide: Int?
    @Option(help: "Resample the video to this frame rate (default: every frame)") var fps: Double?
    @Option(name: .customLong("max-frames"), help: "Use at most this many video frames") var maxFrames: Int?
    @Option(name: .customLong("batch-size"), help: "Frames per forward pass (bounds memory)") var batchSize: Int = 8

    static let layers = ["layer1", "layer2", "layer3", "layer4"]

    func validate() throws {
        if (image == nil) == (video == nil) { throw ValidationError("give exactly one of --image and --video") }
        if randomInit == (checkpoint != nil) { throw ValidationError("give exactly one of --checkpoint and --random-init") }
        guard ResNetConfig(name: arch) != nil else {
            throw ValidationError("--arch: unknown architecture '\(arch)' (resnet18, resnet34, resnet50, resnet101, resnet152)")
        }
        guard Self.layers.contains(layer) else {
            throw ValidationError("--layer: unknown layer '\(layer)' (\(Self.layers.joined(separator: ", ")))")
        }
        if let fps, !(fps > 0) { throw ValidationError("--fps must be positive") }
        if let shortSide, shortSide <= 0 { throw ValidationError("--short-side must be positive") }
        if let maxFrames, maxFrames <= 0 { throw ValidationError("--max-frames must be positive") }
        if batchSize <= 0 { throw ValidationError("--batch-size must be positive") }
        if image != nil && (fps != nil || maxFrames != nil) { throw ValidationError("--fps and --max-frames apply to --video only") }
    }

    /// The truncated encoder this command runs (weights not loaded yet).
    func makeModel() -> ResNet {
        let config = ResNetConfig(name: arch, lastStage: layer, strides: stride8 ? [1, 2, 1, 1] : [1, 2, 2, 2])!
        if randomInit {
            var g = RandomGenerator(seed: seed)
            return ResNet(config: config, initialize: true, generator: &g)
        }
        var g = RandomGenerator(seed: 0)
        return ResNet(config: config, initialize: false, generator: &g)
    }

    /// The ImageNet normalization of the training data pipeline.
    static var normalization: (mean: [Float], std: [Float]) {
        let o = ClipOptions()
        return (o.mean!, o.std!)
    }

    func run() throws {
        try checkOutputFolder()
        let model = makeModel()
        if let checkpoint {
            try Self.loadEncoder(model, from: checkpoint, prefix: prefix, description: "\(arch) up to \(layer)")
        }
        model.eval()
        let (mean, std) = Self.normalization
        var tensors: [String: Tensor] = [:]
        var meta: [String: String] = [
            "arch": arch, "layer": layer, "stride8": stride8 ? "true" : "false",
            "output_stride": String(model.outputStride), "source": image ?? video!,
            "weights": checkpoint ?? "random-init seed \(seed)",
            "normalization": "imagenet mean \(mean) std \(std)",
        ]
        if let image {
            let img = try Image.read(image)
            var x = img.tensor(mean: mean, std: std).unsqueezed(axis: 0)
            if let s = shortSide {
                let size = VideoResize.shortSide(s).outputSize(width: img.width, height: img.height)
                x = F.interpolate(x, size: [size.height, size.width], mode: .bilinear, alignCorners: false)
            }
            meta["kind"] = "image"
            meta["input_size"] = "\(x.shape[2])x\(x.shape[3])"
            tensors["features"] = noGrad { model(x) }
        } else if let video {
            let reader = try VideoReader(video, fps: fps, resize: shortSide.map { .shortSide($0) } ?? .none)
            let (features, times, indices) = try Self.videoFeatures(model, reader: reader, mean: mean, std: std,
                                                                    maxFrames: maxFrames ?? Int.max, batchSize: batchSize)
            tensors["features"] = features
            tensors["timestamps"] = times
            tensors["frame_indices"] = indices
            meta["kind"] = "video"
            meta["input_size"] = "\(reader.outputHeight)x\(reader.outputWidth)"
            meta["fps"] = fps.map { String($0) } ?? String(reader.metadata.fps)
        }
        try Self.write(tensors, metadata: meta, to: out)
        print("features \(tensors["features"]!.shape) written to \(out)")
    }

    /// Fails early (before any computing) when the output cannot be written.
    func checkOutputFolder() throws {
        let dir = URL(fileURLWithPath: out).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw FeaturesError("\(out): cannot write: folder \(dir) does not exist")
        }
        guard access(dir, W_OK) == 0 else { throw FeaturesError("\(out): cannot write: folder \(dir) is not writable") }
        if FileManager.default.fileExists(atPath: out, isDirectory: &isDir), isDir.boolValue {
            throw FeaturesError("\(out): cannot write: it is a folder")
        }
    }

    /// Loads the encoder keys of a state dict into `model`: strict for the model's keys (missing
    /// keys, shape mismatches and unexpected keys of the created stages are errors, each one line
    /// naming the file and key); keys of later stages, avgpool and fc are ignored.
    static func loadEncoder(_ model: ResNet, from path: String, prefix: String?, description: String) throws {
        let all: [String: Tensor]
        do { all = try SafeTensors.load(path) } catch let e as SafeTensorsError { throw FeaturesError(e.description) }
        if all.isEmpty { throw FeaturesError("\(path): checkpoint has no tensors") }
        var dict: [String: Tensor] = [:]
        let p = prefix ?? "encoder."
        var used = ""  // the prefix actually stripped
        if !p.isEmpty && all.keys.contains(where: { $0.hasPrefix(p) }) {
            for (k, t) in all where k.hasPrefix(p) { dict[String(k.dropFirst(p.count))] = t }
            used = p
        } else if let prefix, !prefix.isEmpty {
            throw FeaturesError("\(path): no key starts with the prefix '\(prefix)' (e.g. '\(all.keys.sorted()[0])')")
        } else {
            dict = all
        }
        let entries = model.namedStateEntries()
        let stages = Set(entries.map { String($0.0.split(separator: ".")[0]) })
        for (k, t) in entries {
            guard let src = dict[k] else {
                if k.hasSuffix("num_batches_tracked") { continue }
                let missing = entries.filter { dict[$0.0] == nil && !$0.0.hasSuffix("num_batches_tracked") }.count
                throw FeaturesError("\(path): missing key '\(used)\(k)' for \(description)"
                                    + (missing > 1 ? " (\(missing) keys missing)" : "") + " (wrong --arch or --prefix?)")
            }
            if src.shape != t.shape {
                throw FeaturesError("\(path): key '\(used)\(k)' has shape \(src.shape) in the checkpoint but \(t.shape) in \(description) (wrong --arch?)")
            }
        }
        let modelKeys = Set(entries.map { $0.0 })
        let unexpected = dict.keys.filter { !modelKeys.contains($0) && stages.contains(String($0.split(separator: ".")[0])) }.sorted()
        if let first = unexpected.first {
            throw FeaturesError("\(path): unexpected key '\(used)\(first)' for \(description)"
                                + (unexpected.count > 1 ? " (\(unexpected.count) unexpected keys)" : "") + " (wrong --arch?)")
        }
        for (k, t) in entries { if let src = dict[k] { t.assign(src) } }
    }

    /// Features of every frame, `batchSize` frames per forward pass: [T, C, h, w], timestamps
    /// (seconds) and frame indices [T]. Only one batch of frames is held at a time.
    static func videoFeatures(_ model: ResNet, reader: VideoReader, mean: [Float], std: [Float], maxFrames: Int,
                              batchSize: Int) throws -> (Tensor, Tensor, Tensor) {
        let h = reader.outputHeight, w = reader.outputWidth, per = 3 * h * w
        let lut = ColorLUT(mean: mean, std: std)
        var chunks: [Tensor?] = []
        var times: [Float] = [], indices: [Float] = []
        var done = false
        while !done && times.count < maxFrames {
            let n = min(batchSize, maxFrames - times.count)
            let batch = Tensor(uninitialized: [n, 3, h, w])
            var got = 0
            while got < n {
                guard let t = try reader.nextFrame(into: batch.data + got * per, lut: lut) else { done = true; break }
                times.append(Float(t))
                indices.append(Float(times.count - 1))
                got += 1
            }
            if got == 0 { break }
            let x = got == n ? batch : Tensor(shape: [got, 3, h, w], storage: Storage(Array(UnsafeBufferPointer(start: batch.data, count: got * per))))
            chunks.append(noGrad { model(x) })
        }
        guard let first = chunks.first??.shape else {
            throw FeaturesError("\(reader.path): no frames decoded")
        }
        let frame = first[1] * first[2] * first[3]
        // Pages of the result are committed as chunks are copied in and released.
        let features = Tensor(uninitialized: [times.count, first[1], first[2], first[3]])
        var offset = 0
        for i in chunks.indices {
            let c = chunks[i]!
            (features.data + offset).update(from: c.data, count: c.count)
            offset += c.count
            chunks[i] = nil
        }
        precondition(offset == times.count * frame)
        return (features, Tensor(times, shape: [times.count]), Tensor(indices, shape: [indices.count]))
    }

    /// Writes atomically; an interrupt (SIGINT/SIGTERM) while writing removes the temporary file.
    static func write(_ tensors: [String: Tensor], metadata: [String: String], to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let tmp = url.deletingLastPathComponent().path + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        InterruptCleanup.install(tmp)
        defer { InterruptCleanup.remove() }
        do { try SafeTensors.write(tensors, metadata: metadata, to: path) }
        catch let e as SafeTensorsError { unlink(tmp); throw FeaturesError(e.description) }
    }
}

/// Removes a temporary file if the process is interrupted while it is being written.
enum InterruptCleanup {
    nonisolated(unsafe) static var path: UnsafeMutablePointer<CChar>? = nil

    static func install(_ p: String) {
        path = strdup(p)
        signal(SIGINT) { sig in
            if let p = InterruptCleanup.path { unlink(p) }
            _exit(128 + sig)
        }
        signal(SIGTERM) { sig in
            if let p = InterruptCleanup.path { unlink(p) }
            _exit(128 + sig)
        }
    }

    static func remove() {
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        free(path)
        path = nil
    }
}
