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
    @Option(help: "Precision of the encoder: fp32, or bf16 (convolutions in bf16 with float32 accumulation; needs AVX512-BF16)")
    var precision: Precision = .fp32

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
        if let shortSide, !(1...Self.maxSide).contains(shortSide) { throw ValidationError("--short-side must be in 1...\(Self.maxSide)") }
        if let fps, !(fps > 0 && fps <= 1000) { throw ValidationError("--fps must be in (0, 1000]") }
        try checkOption("--max-frames", maxFrames, 1...10_000_000)
        try checkOption("--batch-size", batchSize, 1...1024)
        if image != nil && (fps != nil || maxFrames != nil) { throw ValidationError("--fps and --max-frames apply to --video only") }
    }

    /// The truncated encoder this command runs (weights not loaded yet).
    func makeModel() throws -> ResNet {
        guard let config = ResNetConfig(name: arch, lastStage: layer, strides: stride8 ? [1, 2, 1, 1] : [1, 2, 2, 2]) else {
            throw ValidationError("--arch \(arch): not a torchvision ResNet (resnet18, resnet34, resnet50, resnet101, resnet152)")
        }
        if randomInit {
            var g = RandomGenerator(seed: seed)
            return ResNet(config: config, initialize: true, generator: &g)
        }
        var g = RandomGenerator(seed: 0)
        return ResNet(config: config, initialize: false, generator: &g)
    }

    /// Largest input the encoder is run on: 2048 pixels on the short side, 2^22 pixels in all (the
    /// encoder's activations grow with the input: about 2 GB at this size for a ResNet-50).
    static let maxSide = 2048, maxPixels = 1 << 22

    static func checkInputSize(width: Int, height: Int, source: String) throws {
        guard width * height <= maxPixels, min(width, height) <= maxSide else {
            throw FeaturesError("\(source): the input would be \(width)x\(height), beyond the limit of \(maxPixels) pixels (2048x2048)")
        }
    }

    func run() throws {
        try Autocast.check(precision, setting: "--precision bf16")
        try AtomicFile.checkWritable(out)
        let model = try makeModel()
        if let checkpoint {
            try CheckpointFile(checkpoint).loadEncoder(into: model, prefix: prefix, description: "\(arch) up to \(layer)")
        }
        model.eval()
        let (mean, std) = (Normalization.imagenet.mean, Normalization.imagenet.std)
        var meta: [String: String] = [
            "arch": arch, "layer": layer, "stride8": stride8 ? "true" : "false",
            "output_stride": String(model.outputStride), "source": image ?? video ?? "",
            "weights": checkpoint ?? "random-init seed \(seed)",
            "normalization": "imagenet mean \(mean) std \(std)", "precision": precision.rawValue,
        ]
        if let image {
            let img = try Image.read(image)
            var x = img.tensor(mean: mean, std: std).unsqueezed(axis: 0)
            if let s = shortSide {
                let size = VideoResize.shortSide(s).outputSize(width: img.width, height: img.height)
                try Self.checkInputSize(width: size.width, height: size.height, source: image)
                x = F.interpolate(x, size: [size.height, size.width], mode: .bilinear, alignCorners: false)
            }
            meta["kind"] = "image"
            meta["input_size"] = "\(x.shape[2])x\(x.shape[3])"
            let features = try model.inference(x, precision: precision)
            try Self.write(["features": features], metadata: meta, to: out)
            print("features \(features.shape) written to \(out)")
        } else if let video {
            let reader = try VideoReader(video, fps: fps, resize: shortSide.map { .shortSide($0) } ?? .none)
            try Self.checkInputSize(width: reader.outputWidth, height: reader.outputHeight, source: video)
            meta["kind"] = "video"
            meta["input_size"] = "\(reader.outputHeight)x\(reader.outputWidth)"
            meta["fps"] = fps.map { String($0) } ?? String(reader.metadata.fps)
            let shape = try Self.videoFeatures(model, reader: reader, mean: mean, std: std, maxFrames: maxFrames ?? Int.max,
                                               batchSize: batchSize, precision: precision, metadata: meta, to: out)
            print("features \(shape) written to \(out)")
        }
    }

    /// Features of every frame, `batchSize` frames per forward pass, streamed to `path` as they are
    /// computed (memory is bounded by one batch, whatever the video's length): `features`
    /// [T, C, h, w], `timestamps` (seconds) and `frame_indices` [T], the encoder at `precision`.
    /// The file appears under its name only when complete. Returns the shape of `features`.
    static func videoFeatures(_ model: ResNet, reader: VideoReader, mean: [Float], std: [Float], maxFrames: Int,
                              batchSize: Int, precision: Precision = .fp32, metadata: [String: String], to path: String) throws -> [Int] {
        let h = reader.outputHeight, w = reader.outputWidth, per = 3 * h * w
        let fh = model.outputSize(h), fw = model.outputSize(w), c = model.outChannels
        let lut = ColorLUT(mean: mean, std: std)
        let writer = try SafeTensors.StreamWriter(path: path, streamed: "features", rowShape: [c, fh, fw], perRow: ["frame_indices", "timestamps"], metadata: metadata)
        InterruptCleanup.install(writer.temporaryPath)
        defer { InterruptCleanup.remove() }
        do {
            var times: [Float] = []
            var done = false
            let batch = Tensor(uninitialized: [min(batchSize, maxFrames), 3, h, w])
            while !done && times.count < maxFrames {
                let n = min(batch.shape[0], maxFrames - times.count)
                var got = 0
                while got < n {
                    guard let t = try reader.nextFrame(into: batch.data + got * per, lut: lut) else { done = true; break }
                    times.append(Float(t))
                    got += 1
                }
                if got == 0 { break }
                let x = got == batch.shape[0] ? batch : Tensor(shape: [got, 3, h, w], storage: Storage(Array(UnsafeBufferPointer(start: batch.data, count: got * per))))
                let y = try model.inference(x, precision: precision)
                try writer.append(y)
                // Give the freed activations back to the system: glibc's arenas otherwise keep
                // growing with the number of batches (fragmentation), so memory would grow with T.
                _ = glibcMallocTrim(0)
            }
            if times.isEmpty { throw FeaturesError("\(reader.path): no frames decoded") }
            try writer.finish(perRow: ["frame_indices": times.indices.map { Float($0) }, "timestamps": times])
            return [times.count, c, fh, fw]
        } catch {
            writer.abort()
            throw error
        }
    }

    /// Writes atomically; an interrupt (SIGINT/SIGTERM) while writing removes the temporary file.
    static func write(_ tensors: [String: Tensor], metadata: [String: String], to path: String) throws {
        let tmp = AtomicFile.temporaryPath(for: path)
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

/// glibc's malloc_trim (not exported by the Glibc module): returns free arena memory to the system.
@_silgen_name("malloc_trim") func glibcMallocTrim(_ pad: Int) -> Int32
