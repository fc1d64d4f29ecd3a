import Foundation
import XCTest
@testable import CycleTimeModels
import TestSupport

/// The weights of scripts/fixtures/resnet.py: element i of the k-th key (full torchvision
/// state_dict order) is offset_k + q * scale_k with
/// q = ((i * 2654435761 + k * 40503 + 12345) mod 2^32) mod 2001 - 1000, in Double, then Float.
func hashWeights(k: Int, key: String, shape: [Int]) -> Tensor {
    let (offset, scale) = resnetOffsetScale(key: key, shape: shape)
    return hashTensor(k: k, shape: shape, offset: offset, scale: scale)
}

final class ResNetTests: XCTestCase {
    /// torchvision's keys and shapes, in order, by model name.
    static let manifest: [String: [(String, [Int])]] = {
        let path = Fixtures.directory + "/resnet_manifest.json"
        guard let data = FileManager.default.contents(atPath: path),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: [[Any]]] else { return [:] }
        return json.mapValues { entries in entries.map { ($0[0] as! String, ($0[1] as! [NSNumber]).map { $0.intValue }) } }
    }()

    func checkManifest(_ name: String, depth: Int) {
        guard let expected = ResNetTests.manifest[name] else { return XCTFail("no manifest for \(name)") }
        var g = RandomGenerator(seed: 1)
        let model = ResNet(config: ResNetConfig(depth: depth), initialize: false, generator: &g)
        let ours = model.namedStateEntries().map { ($0.0, $0.1.shape) }
        XCTAssertEqual(ours.count, expected.count, name)
        XCTAssertEqual(ours.map { $0.0 }, expected.map { $0.0 }, "\(name): keys differ from torchvision's (order included)")
        for ((k, s), (_, es)) in zip(ours, expected) where s != es { XCTFail("\(name) \(k): shape \(s), torchvision \(es)") }
        // named_parameters order is state_dict order without the buffers.
        let bufferSuffixes = ["running_mean", "running_var", "num_batches_tracked"]
        XCTAssertEqual(model.namedParameters().map { $0.0 },
                       expected.map { $0.0 }.filter { k in !bufferSuffixes.contains { k.hasSuffix($0) } })
    }

    func testKeysAndShapesMatchTorchvision18() { checkManifest("resnet18", depth: 18) }
    func testKeysAndShapesMatchTorchvision34() { checkManifest("resnet34", depth: 34) }
    func testKeysAndShapesMatchTorchvision50() { checkManifest("resnet50", depth: 50) }

    func testTruncationStridesAndPadding() {
        var g = RandomGenerator(seed: 2)
        let m = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer3", strides: [1, 2, 1, 2], paddingMode: .reflect), initialize: false, generator: &g)
        let keys = m.stateDictKeys()
        XCTAssertFalse(keys.contains { $0.hasPrefix("layer4.") || $0.hasPrefix("fc.") })
        XCTAssertTrue(keys.contains("layer3.1.bn2.num_batches_tracked"))
        XCTAssertTrue(keys.contains("layer3.0.downsample.0.weight"))   // channels change 128 -> 256
        XCTAssertNil(m.layer4); XCTAssertNil(m.fc); XCTAssertNil(m.avgpool)
        XCTAssertEqual(m.outChannels, 256)
        XCTAssertEqual(m.outputStride, 8)
        XCTAssertEqual(m.outputSize(240), 30)
        XCTAssertEqual((m.layer3![0] as! BasicBlock).conv1.stride, [1, 1])
        XCTAssertTrue(m.modules().compactMap { $0 as? Conv2d }.allSatisfy { $0.paddingMode == .reflect })
        let full = ResNet(config: ResNetConfig(depth: 50), initialize: false, generator: &g)
        XCTAssertTrue(full.fc!.weight.array.allSatisfy { $0 == 0 })
        XCTAssertEqual(g, RandomGenerator(seed: 2))   // nothing drawn without initialization
        XCTAssertEqual(full.outputStride, 32)
        XCTAssertEqual(full.outChannels, 1000)
        let l2 = ResNet(config: ResNetConfig(depth: 50, lastStage: "layer2"), initialize: false, generator: &g)
        XCTAssertEqual(l2.outChannels, 512)
        XCTAssertEqual(l2.stateDictKeys().last, "layer2.3.bn3.num_batches_tracked")
        // layer3 at stride 1 with equal channels in/out for Bottleneck still needs a downsample (256 -> 1024).
        let b = ResNet(config: ResNetConfig(depth: 50, lastStage: "layer3", strides: [1, 2, 1, 2]), initialize: false, generator: &g)
        XCTAssertEqual((b.layer3![0] as! Bottleneck).conv2.stride, [1, 1])
        XCTAssertEqual((b.layer3![0] as! Bottleneck).downsample!.namedParameters().map { $0.0 }, ["0.weight", "1.weight", "1.bias"])
    }

    /// frozenBatchNorm: torchvision's FrozenBatchNorm2d keys (the BatchNorm2d keys without
    /// num_batches_tracked, same order) and no batch-norm parameter left trainable.
    func testFrozenBatchNormKeys() {
        var g = RandomGenerator(seed: 2)
        let plain = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer4"), initialize: false, generator: &g)
        let frozen = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer4", frozenBatchNorm: true), initialize: false, generator: &g)
        XCTAssertEqual(frozen.stateDictKeys(), plain.stateDictKeys().filter { !$0.hasSuffix("num_batches_tracked") })
        XCTAssertTrue(frozen.namedParameters().filter { $0.1.requiresGrad }.allSatisfy { $0.0.contains("conv") || $0.0.contains("downsample.0") })
    }

    func testConfigFromName() {
        XCTAssertEqual(ResNetConfig(name: "resnet50", lastStage: "layer3"), ResNetConfig(depth: 50, lastStage: "layer3"))
        XCTAssertNil(ResNetConfig(name: "resnet19"))
        XCTAssertNil(ResNetConfig(name: "vgg16"))
    }

    /// Training mode end to end: every parameter of a truncated ResNet gets a gradient, frozen
    /// ones get none, and the BN running statistics move.
    func testTrainingBackwardReachesEveryParameter() {
        var g = RandomGenerator(seed: 5)
        let m = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer2", paddingMode: .reflect), generator: &g)
        m.freeze(["conv1", "bn1"])
        let x = randn([2, 3, 32, 32], seed: 6, requiresGrad: false)
        let y = m(x)
        XCTAssertEqual(y.shape, [2, 128, 4, 4])
        (y * y).mean().backward()
        for (k, p) in m.namedParameters() {
            if k.hasPrefix("conv1") || k.hasPrefix("bn1") { XCTAssertNil(p.grad, k) }
            else { XCTAssertNotNil(p.grad, k); XCTAssertTrue(p.grad!.array.contains { $0 != 0 }, k) }
        }
        XCTAssertTrue(m.bn1.runningMean!.array.contains { $0 != 0 })
        XCTAssertEqual(m.bn1.numBatchesTracked!.item(), 1)
    }

    func testTorchvisionInitialization() {
        var g = RandomGenerator(seed: 3)
        let m = ResNet(config: ResNetConfig(depth: 18), generator: &g)
        // kaiming_normal_(fan_out, relu): std sqrt(2 / (out * k * k)).
        for w in [m.conv1.weight, (m.layer4![1] as! BasicBlock).conv2.weight] {
            let n = Double(w.count)
            let mean = w.array.reduce(0.0) { $0 + Double($1) } / n
            let std = (w.array.reduce(0.0) { $0 + Double($1) * Double($1) } / n - mean * mean).squareRoot()
            let expected = (2.0 / Double(w.shape[0] * w.shape[2] * w.shape[3])).squareRoot()
            XCTAssertEqual(std, expected, accuracy: 5 * expected / (2 * n).squareRoot())
        }
        for bn in m.modules().compactMap({ $0 as? BatchNorm2d }) {
            XCTAssertTrue(bn.weight!.array.allSatisfy { $0 == 1 }); XCTAssertTrue(bn.bias!.array.allSatisfy { $0 == 0 })
        }
        // fc keeps nn.Linear's default U(-1/sqrt(512), 1/sqrt(512)).
        let bound = Float(1 / 512.0.squareRoot())
        XCTAssertTrue(m.fc!.weight.array.allSatisfy { abs($0) <= bound })
        XCTAssertGreaterThan(m.fc!.weight.array.max()!, 0.99 * bound)
        let z = ResNet(config: ResNetConfig(depth: 50, lastStage: "layer1", zeroInitResidual: true), generator: &g)
        XCTAssertTrue((z.layer1[0] as! Bottleneck).bn3.weight!.array.allSatisfy { $0 == 0 })
    }

    func testHashWeightsMatchTheScript() throws {
        let fx = try Fixtures.load("resnet")
        for name in ["resnet18", "resnet50"] {
            let entries = ResNetTests.manifest[name]!
            let w = hashWeights(k: 0, key: entries[0].0, shape: entries[0].1)
            XCTAssertEqual(Array(w.array.prefix(16)), fx.t("\(name)_check_conv1_weight").array)
            let k = entries.lastIndex { $0.0.hasSuffix("running_var") }!
            let rv = hashWeights(k: k, key: entries[k].0, shape: entries[k].1)
            XCTAssertEqual(Array(rv.array.prefix(16)), fx.t("\(name)_check_last_running_var").array)
        }
    }

    /// Torchvision ResNet-18/50 weights saved as safetensors give PyTorch's layer3
    /// features (eval mode) within 1e-4 relative, with layer3 stride 1 and default strides.
    func checkLayer3(_ name: String, depth: Int, strides: [Int], tag: String) throws {
        let fx = try Fixtures.load("resnet")
        let entries = ResNetTests.manifest[name]!
        var g = RandomGenerator(seed: 4)
        let model = ResNet(config: ResNetConfig(depth: depth, lastStage: "layer3", strides: strides), initialize: false, generator: &g)
        // Build the truncated model's state dict from the formula (k = index in the full model).
        var sd: [String: Tensor] = [:]
        for (k, (key, shape)) in entries.enumerated() where !key.hasPrefix("layer4.") && !key.hasPrefix("fc.") {
            sd[key] = hashWeights(k: k, key: key, shape: shape)
        }
        let dir = NSTemporaryDirectory() + "cycletime-resnet-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/\(name).safetensors"
        try SafeTensors.write(sd, to: path)
        try model.load(from: path, strict: true)
        model.eval()
        let y = noGrad { model(fx.t("input")) }
        let ref = fx.t("\(name)_\(tag)_layer3")
        let maxAbs = ref.array.map(abs).max()!
        assertClose(y, ref, rtol: 1e-4, atol: 1e-5 * maxAbs, "\(name) \(tag)")
        XCTAssertEqual(model.stageOutputs(fx.t("input"))["layer3"]!.shape, ref.shape)
    }

    func testResNet18Layer3MatchesPyTorchStride8() throws { try checkLayer3("resnet18", depth: 18, strides: [1, 2, 1, 2], tag: "s8") }
    func testResNet18Layer3MatchesPyTorchStride16() throws { try checkLayer3("resnet18", depth: 18, strides: [1, 2, 2, 2], tag: "s16") }
    func testResNet50Layer3MatchesPyTorchStride8() throws { try checkLayer3("resnet50", depth: 50, strides: [1, 2, 1, 2], tag: "s8") }
    func testResNet50Layer3MatchesPyTorchStride16() throws { try checkLayer3("resnet50", depth: 50, strides: [1, 2, 2, 2], tag: "s16") }
}
