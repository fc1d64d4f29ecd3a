import ArgumentParser
@testable import CycleTimeCore
import CycleTimeData
import CycleTimeModels
import CycleTimeNN
import Foundation
import XCTest
@testable import cycletime
@testable import CycleTimeVideo
import TestSupport

final class FeaturesCommandTests: XCTestCase {
    /// A random-init full torchvision resnet18 (fc included) written with the NN checkpoint writer.
    static let checkpoint: String = {
        var g = RandomGenerator(seed: 7)
        let model = ResNet.resnet18(generator: &g)
        // Non-trivial BN statistics so that eval mode is exercised.
        for (k, t) in model.namedBuffers() where k.hasSuffix("running_mean") || k.hasSuffix("running_var") {
            for i in 0..<t.count { t.data[i] = k.hasSuffix("running_var") ? 0.5 + g.nextFloat() : 0.1 * (g.nextFloat() - 0.5) }
        }
        let path = temporaryDirectory() + "/resnet18.safetensors"
        try! model.save(to: path)
        return path
    }()

    /// The reference: the truncated model loaded with the NN loader (non-strict), run directly.
    func reference(_ x: Tensor, layer: String, strides: [Int], arch: String = "resnet18", checkpoint: String = checkpoint) throws -> Tensor {
        let model = ResNet(config: ResNetConfig(name: arch, lastStage: layer, strides: strides)!, initialize: false)
        try model.load(from: checkpoint, strict: false)
        model.eval()
        return noGrad { model(x) }
    }

    func run(_ args: [String]) throws {
        var c = try CycleTimeCommand.parseAsRoot(["features"] + args)
        try c.run()
    }

    /// A small real image: the DAVIS frame cropped to 72x56, written as PNG.
    func smallImage(_ dir: String) throws -> String {
        let img = try Image.read(try requireSharedData("davis-mini/JPEGImages/480p/blackswan/00000.jpg"))
        let w = 72, h = 56
        var px = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h { for x in 0..<w { for c in 0..<3 { px[(y * w + x) * 3 + c] = img.pixels[((y + 200) * img.width + x + 400) * 3 + c] } } }
        let path = dir + "/small.png"
        try Image(width: w, height: h, channels: 3, pixels: px).writePNG(path)
        return path
    }

    /// The brief's example: a 480x854 DAVIS frame, layer3 at stride 8 -> [1, 256, 60, 107].
    func testImageLayer3Stride8MatchesModel() throws {
        let imgPath = try requireSharedData("davis-mini/JPEGImages/480p/blackswan/00000.jpg")
        let out = temporaryDirectory() + "/f.safetensors"
        try run(["--checkpoint", Self.checkpoint, "--arch", "resnet18", "--layer", "layer3", "--stride8", "--image", imgPath, "--out", out])
        let file = try SafeTensors.read(out)
        let f = try XCTUnwrap(file.tensors["features"])
        let (mean, std) = (Normalization.imagenet.mean, Normalization.imagenet.std)
        let img = try Image.read(imgPath)
        XCTAssertEqual([img.height, img.width], [480, 854])
        let shapeModel = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer3", strides: [1, 2, 1, 1]), initialize: false)
        XCTAssertEqual(f.shape, [1, 256, shapeModel.outputSize(480), shapeModel.outputSize(854)])
        XCTAssertEqual(f.shape, [1, 256, 60, 107])
        let x = img.tensor(mean: mean, std: std).unsqueezed(axis: 0)
        assertClose(f, try reference(x, layer: "layer3", strides: [1, 2, 1, 1]), rtol: 1e-5, atol: 1e-5)
        XCTAssertEqual(file.metadata["arch"], "resnet18")
        XCTAssertEqual(file.metadata["layer"], "layer3")
        XCTAssertEqual(file.metadata["output_stride"], "8")
        XCTAssertEqual(file.metadata["stride8"], "true")
        XCTAssertEqual(file.metadata["source"], imgPath)
        XCTAssertEqual(file.metadata["kind"], "image")
        XCTAssertNil(file.tensors["timestamps"])
        // The normalization is the training pipeline's (ImageNet).
        XCTAssertEqual(mean, ClipOptions().mean)
        XCTAssertEqual(std, ClipOptions().std)
    }

    /// A state dict written by torchvision + safetensors.torch.save_file (F16 weights, I64
    /// num_batches_tracked; conv1/bn1/layer1 only) gives torchvision's layer1 features.
    func testTorchvisionCheckpointMatchesPyTorch() throws {
        let out = temporaryDirectory() + "/t.safetensors"
        try run(["--checkpoint", Fixtures.directory + "/features_resnet18_layer1.safetensors", "--arch", "resnet18",
                 "--layer", "layer1", "--image", Fixtures.directory + "/features_input.png", "--out", out])
        let f = try XCTUnwrap(try SafeTensors.load(out)["features"])
        let expected = try Fixtures.load("features")["layer1"]!
        XCTAssertEqual(f.shape, [1, 64, 10, 12])
        assertClose(f, expected, rtol: 1e-4, atol: 1e-4)
    }

    /// Video frames in chunks (batch 2, 5 frames: a partial last chunk) equal the model on all frames at once.
    func testVideoFramesMatchModel() throws {
        let video = try requireSharedData("videos/arm-wrestling.mp4")
        let out = temporaryDirectory() + "/v.safetensors"
        try run(["--checkpoint", Self.checkpoint, "--arch", "resnet18", "--layer", "layer4", "--video", video,
                 "--short-side", "64", "--fps", "7", "--max-frames", "5", "--batch-size", "2", "--out", out])
        let file = try SafeTensors.read(out)
        let f = try XCTUnwrap(file.tensors["features"])
        let (mean, std) = (Normalization.imagenet.mean, Normalization.imagenet.std)
        let reader = try VideoReader(video, fps: 7, resize: .shortSide(64))
        XCTAssertEqual([reader.outputHeight, reader.outputWidth], [64, 85])
        let x = try reader.readAll(mean: mean, std: std, maxFrames: 5)
        XCTAssertEqual(x.shape[0], 5)
        XCTAssertEqual(f.shape, [5, 512, 2, 3])
        // Batch 2 and batch 5 differ only in summation order (the kernels split work by batch), so
        // each element may move by about the float32 rounding of 17 convolutions of up to
        // 3x3x512 = 4608 terms: 17 sqrt(4608) 2^-24 = 6.9e-5 of the output's scale (an AVX2 machine
        // differed by 1.2e-5 at 0.116; 1e-5 elementwise had held on AVX-512 ones only).
        assertCloseRelativeToLargest(f, try reference(x, layer: "layer4", strides: [1, 2, 2, 2]), relative: 17 * Float(4608).squareRoot() * 0x1p-24)
        // Timestamps of the frames at 7 fps (the reader's), indices 0..4.
        let r2 = try VideoReader(video, fps: 7, resize: .shortSide(64))
        var times: [Float] = []
        for _ in 0..<5 { times.append(Float(try XCTUnwrap(try r2.nextFrame()).timestamp)) }
        XCTAssertEqual(try XCTUnwrap(file.tensors["timestamps"]).array, times)
        XCTAssertEqual(times[1] - times[0], 1.0 / 7, accuracy: 1e-4)
        XCTAssertEqual(try XCTUnwrap(file.tensors["frame_indices"]).array, [0, 1, 2, 3, 4])
        XCTAssertEqual(file.metadata["kind"], "video")
        XCTAssertEqual(file.metadata["output_stride"], "32")
        XCTAssertEqual(file.metadata["source"], video)
    }

    /// A checkpoint whose encoder keys carry `encoder.` (plus other keys) loads like the plain one;
    /// `--prefix` names another prefix.
    func testPrefixedCheckpoint() throws {
        let dir = temporaryDirectory()
        let img = try smallImage(dir)
        let plain = try SafeTensors.load(Self.checkpoint)
        var prefixed: [String: Tensor] = ["head.weight": Tensor.zeros([3, 3]), "conv1.weight": Tensor.zeros([1])]
        var custom: [String: Tensor] = [:]
        for (k, t) in plain { prefixed["encoder." + k] = t; custom["net.backbone." + k] = t }
        try SafeTensors.write(prefixed, to: dir + "/prefixed.safetensors")
        try SafeTensors.write(custom, to: dir + "/custom.safetensors")
        try run(["--checkpoint", Self.checkpoint, "--layer", "layer2", "--image", img, "--out", dir + "/a.safetensors"])
        try run(["--checkpoint", dir + "/prefixed.safetensors", "--layer", "layer2", "--image", img, "--out", dir + "/b.safetensors"])
        try run(["--checkpoint", dir + "/custom.safetensors", "--prefix", "net.backbone.", "--layer", "layer2", "--image", img, "--out", dir + "/c.safetensors"])
        let a = try SafeTensors.load(dir + "/a.safetensors")["features"]!
        XCTAssertEqual(a.shape, [1, 128, 7, 9])
        XCTAssertEqual(a.array, try SafeTensors.load(dir + "/b.safetensors")["features"]!.array)
        XCTAssertEqual(a.array, try SafeTensors.load(dir + "/c.safetensors")["features"]!.array)
        let (mean, std) = (Normalization.imagenet.mean, Normalization.imagenet.std)
        let x = try Image.read(img).tensor(mean: mean, std: std).unsqueezed(axis: 0)
        assertClose(a, try reference(x, layer: "layer2", strides: [1, 2, 2, 2]), rtol: 1e-5, atol: 1e-5)
    }

    /// `--random-init --seed N` is the truncated encoder with torchvision's init drawn from seed N;
    /// `--short-side` on an image resizes bilinearly (F.interpolate, align_corners=False).
    func testRandomInitAndImageShortSide() throws {
        let dir = temporaryDirectory()
        let img = try smallImage(dir)
        try run(["--random-init", "--seed", "3", "--layer", "layer1", "--image", img, "--short-side", "40", "--out", dir + "/r.safetensors"])
        let f = try SafeTensors.load(dir + "/r.safetensors")["features"]!
        var g = RandomGenerator(seed: 3)
        let model = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer1"), generator: &g).eval()
        let (mean, std) = (Normalization.imagenet.mean, Normalization.imagenet.std)
        var x = try Image.read(img).tensor(mean: mean, std: std).unsqueezed(axis: 0)
        x = F.interpolate(x, size: [40, 51], mode: .bilinear, alignCorners: false)  // 56x72 -> short side 40
        let expected = noGrad { model(x) }
        XCTAssertEqual(f.shape, [1, 64, 10, 13])
        assertClose(f, expected, rtol: 1e-5, atol: 1e-5)
        // Another seed gives other features.
        try run(["--random-init", "--seed", "4", "--layer", "layer1", "--image", img, "--short-side", "40", "--out", dir + "/r4.safetensors"])
        XCTAssertNotEqual(try SafeTensors.load(dir + "/r4.safetensors")["features"]!.array, f.array)
    }

    /// `--precision bf16` runs the encoder in autocast bf16 (ResNet.inference): within bf16's
    /// rounding of the float32 features, recorded in the metadata; `--precision` takes fp32 or
    /// bf16 only, and bf16 on a CPU without AVX512-BF16 is one line naming the flag, no output.
    func testPrecisionBF16FeaturesAndItsRefusalWithoutAVX512BF16() throws {
        let dir = temporaryDirectory()
        let img = try smallImage(dir)
        let base = ["--random-init", "--seed", "3", "--layer", "layer2", "--image", img]
        try assertFails(base + ["--precision", "fp16", "--out", dir + "/x.safetensors"], ["--precision", "fp16"], out: dir + "/x.safetensors")
        do {
            Autocast.nativeBF16Override = false
            defer { Autocast.nativeBF16Override = nil }
            try assertFails(base + ["--precision", "bf16", "--out", dir + "/n.safetensors"],
                            ["--precision bf16: precision bf16 needs a CPU with AVX512-BF16"], out: dir + "/n.safetensors")
        }
        try XCTSkipUnless(OneDNN.hasNativeBF16, "this CPU has no AVX512-BF16")
        try run(base + ["--out", dir + "/f32.safetensors"])
        try run(base + ["--precision", "bf16", "--out", dir + "/bf16.safetensors"])
        let f32 = try SafeTensors.read(dir + "/f32.safetensors"), bf16 = try SafeTensors.read(dir + "/bf16.safetensors")
        XCTAssertEqual(f32.metadata["precision"], "fp32")
        XCTAssertEqual(bf16.metadata["precision"], "bf16")
        let a = try XCTUnwrap(f32.tensors["features"]).array, b = try XCTUnwrap(bf16.tensors["features"]).array
        XCTAssertEqual(a.count, b.count)
        var diff = 0.0, norm = 0.0
        for i in a.indices { diff += Double(a[i] - b[i]) * Double(a[i] - b[i]); norm += Double(a[i]) * Double(a[i]) }
        let rel = (diff / norm).squareRoot()
        print("features layer2 bf16 vs fp32: relative error \(rel)")
        // Each of the 9 convolutions up to layer2 rounds its input and weights to bf16 (relative
        // error <= 2^-9 each, random in sign): a few 2^-9 in all, well under 1e-2; 0 would mean
        // bf16 did not run.
        XCTAssertGreaterThan(rel, 1e-5)
        XCTAssertLessThan(rel, 2e-2)
    }

    /// Each bad input: one readable line naming the file/key/field, a non-zero exit, no output file.
    func testBadInputs() throws {
        let dir = temporaryDirectory()
        let img = try smallImage(dir)
        let ck = Self.checkpoint
        FileManager.default.createFile(atPath: dir + "/empty.safetensors", contents: Data())
        FileManager.default.createFile(atPath: dir + "/text.safetensors", contents: Data("this is not a checkpoint".utf8))
        FileManager.default.createFile(atPath: dir + "/text.mp4", contents: Data("not a video".utf8))
        try SafeTensors.write(["encoder.conv1.weight": Tensor.zeros([64, 3, 7, 7])], to: dir + "/partial.safetensors")
        // A resnet34 checkpoint (up to layer1) for resnet18: extra blocks layer1.2.*.
        try ResNet(config: ResNetConfig(depth: 34, lastStage: "layer1"), initialize: false).save(to: dir + "/r34.safetensors")
        let out = dir + "/out.safetensors"
        let cases: [([String], [String])] = [
            (["--checkpoint", dir + "/missing.safetensors", "--image", img], ["missing.safetensors", "no such file"]),
            (["--checkpoint", dir + "/empty.safetensors", "--image", img], ["empty.safetensors", "empty"]),
            (["--checkpoint", dir + "/text.safetensors", "--image", img], ["text.safetensors", "not a valid safetensors"]),
            (["--checkpoint", dir + "/partial.safetensors", "--image", img], ["partial.safetensors", "missing key 'encoder.bn1.weight'"]),
            // A resnet18 checkpoint for resnet50: the 1x1 conv of the first bottleneck has another shape.
            (["--checkpoint", ck, "--arch", "resnet50", "--layer", "layer1", "--image", img],
             [ck, "layer1.0.conv1.weight", "[64, 64, 3, 3]", "[64, 64, 1, 1]"]),
            (["--checkpoint", ck, "--arch", "resnet34", "--layer", "layer1", "--image", img], [ck, "missing key 'layer1.2.conv1.weight'"]),
            (["--checkpoint", dir + "/r34.safetensors", "--layer", "layer1", "--image", img],
             ["r34.safetensors", "unexpected key 'layer1.2.", "wrong --arch"]),
            (["--checkpoint", ck, "--prefix", "student.", "--image", img], [ck, "prefix 'student.'"]),
            (["--checkpoint", ck, "--arch", "vgg16", "--image", img], ["--arch", "vgg16"]),
            (["--checkpoint", ck, "--layer", "layer5", "--image", img], ["--layer", "layer5"]),
            (["--checkpoint", ck, "--image", dir + "/nope.jpg"], ["nope.jpg", "no such file"]),
            (["--checkpoint", ck, "--video", dir + "/nope.mp4"], ["nope.mp4", "no such file"]),
            (["--checkpoint", ck, "--video", dir + "/text.mp4"], ["text.mp4"]),
            (["--checkpoint", ck, "--image", img, "--video", dir + "/text.mp4"], ["--image", "--video"]),
            (["--checkpoint", ck], ["--image", "--video"]),
            (["--image", img], ["--checkpoint", "--random-init"]),
        ]
        for (args, expect) in cases {
            try assertFails(args + ["--out", out], expect, out: out)
        }
        // Unresolvable output folder: fails before any work, nothing written.
        let badOut = dir + "/no/such/folder/f.safetensors"
        try assertFails(["--checkpoint", ck, "--image", img, "--out", badOut], [dir + "/no/such/folder", "does not exist"], out: badOut)
        if getuid() != 0 {
            let ro = dir + "/readonly"
            try FileManager.default.createDirectory(atPath: ro, withIntermediateDirectories: true)
            chmod(ro, 0o555)
            defer { chmod(ro, 0o755) }
            try assertFails(["--checkpoint", ck, "--image", img, "--out", ro + "/f.safetensors"], [ro, "not writable"], out: ro + "/f.safetensors")
        }
        // Nothing but the inputs in the folder (no temporary files left behind).
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix(".") }
        XCTAssertEqual(left, [])
    }

    func assertFails(_ args: [String], _ expect: [String], out: String, file: StaticString = #filePath, line: UInt = #line) throws {
        do {
            var c = try CycleTimeCommand.parseAsRoot(["features"] + args)
            try c.run()
            XCTFail("expected an error for \(args)", file: file, line: line)
        } catch {
            let msg = CycleTimeCommand.message(for: error)
            XCTAssertFalse(msg.contains("\n"), msg, file: file, line: line)
            for e in expect { XCTAssertTrue(msg.contains(e), "'\(msg)' lacks '\(e)'", file: file, line: line) }
            XCTAssertNotEqual(CycleTimeCommand.exitCode(for: error), .success, msg, file: file, line: line)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "output written for \(args)", file: file, line: line)
    }
}
