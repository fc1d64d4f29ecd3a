import XCTest
@testable import CycleTimeDetection
import CycleTimeModels
import CycleTimeNN
import TestSupport

final class SlowFastTests: XCTestCase {
    /// SlowFast ResNet-18 (alpha 4, beta_inv 8, T 8, 32x32) vs the PyTorch network of
    /// scripts/fixtures/slowfast.py (mmaction2's layout), training-mode batch norm, float64
    /// reference: output, input gradient and parameter gradients of slow, fast and lateral
    /// layers within 1e-4 of the largest value (PyTorch's own float32 run is within 6e-6).
    func testSlowFastMatchesPyTorch() throws {
        let fx = try Fixtures.load("slowfast")
        var g = RandomGenerator(seed: 1)
        let m = SlowFastBackbone(config: SlowFastConfig(depth: 18, alpha: 4), generator: &g)
        XCTAssertEqual(m.outChannels, 512 + 64)
        XCTAssertEqual(m.outputStride, 16)
        var sd: [String: Tensor] = [:]
        let entries = m.namedStateEntries().filter { !$0.0.hasSuffix("num_batches_tracked") }
        for (i, (key, t)) in entries.sorted(by: { $0.0 < $1.0 }).enumerated() {
            let s = t.shape
            let (o, sc): (Double, Double) = key.hasSuffix("running_mean") ? (0, 1e-4) : key.hasSuffix("running_var") ? (1, 4e-4)
                : s.count == 5 ? (0, (2.0 / Double(s[1...].reduce(1, *))).squareRoot() / 577.0) : key.hasSuffix("weight") ? (1, 3e-4) : (0, 1e-4)
            sd[key] = hashTensor(k: 20000 + i, shape: s, offset: o, scale: sc)
        }
        for (k, v) in fx where k.hasPrefix("bias.") { sd[String(k.dropFirst(5))] = v }
        _ = try m.loadStateDict(sd, strict: false)
        m.train()
        let x = hashTensor(k: 9101, shape: [1, 3, 8, 32, 32], offset: 0, scale: 1e-3).requiringGrad()
        let out = m(x)
        XCTAssertEqual(out.shape, [1, 576, 1, 2, 2])
        func scaleOf(_ t: Tensor) -> Float { t.array.map(abs).max() ?? 0 }
        assertClose(out, fx.t("out"), rtol: 1e-4, atol: 1e-4 * scaleOf(fx.t("out")), "out")
        out.backward(hashTensor(k: 9102, shape: out.shape, offset: 0, scale: 1e-3))
        assertClose(x.grad!, fx.t("dx"), rtol: 1e-4, atol: 1e-4 * scaleOf(fx.t("dx")), "dx")
        let params = Dictionary(uniqueKeysWithValues: m.namedParameters())
        let names = ["slow_path.conv1.weight", "slow_path.layer1.0.downsample.0.weight", "slow_path.conv1_lateral.conv.weight",
                     "slow_path.layer2_lateral.conv.weight", "fast_path.conv1.weight", "fast_path.layer4.1.bn2.bias",
                     "slow_path.layer4.1.bn2.weight"]
        for n in names {
            assertClose(params[n]!.grad!, fx.t("d." + n), rtol: 1e-4, atol: 1e-4 * scaleOf(fx.t("d." + n)), n)
        }
    }

    /// Key names: mmaction2's pathway and lateral prefixes, torchvision names inside the stages.
    func testKeyNamesAndShapes() {
        var g = RandomGenerator(seed: 2)
        let m = SlowFastBackbone(config: SlowFastConfig(depth: 50), generator: &g)
        let shapes = Dictionary(uniqueKeysWithValues: m.namedParameters().map { ($0.0, $0.1.shape) })
        XCTAssertEqual(shapes["slow_path.conv1.weight"], [64, 3, 1, 7, 7])
        XCTAssertEqual(shapes["fast_path.conv1.weight"], [8, 3, 5, 7, 7])
        XCTAssertEqual(shapes["slow_path.conv1_lateral.conv.weight"], [16, 8, 5, 1, 1])
        XCTAssertEqual(shapes["slow_path.layer1_lateral.conv.weight"], [64, 32, 5, 1, 1])
        XCTAssertEqual(shapes["slow_path.layer3_lateral.conv.weight"], [256, 128, 5, 1, 1])
        XCTAssertNil(shapes["slow_path.layer4_lateral.conv.weight"])
        XCTAssertNil(shapes.keys.first { $0.hasPrefix("fast_path.") && $0.contains("lateral") })
        // Slow stages take the lateral channels: 64 + 16 into layer1, 256 + 64 into layer2 …
        XCTAssertEqual(shapes["slow_path.layer1.0.conv1.weight"], [64, 80, 1, 1, 1])
        XCTAssertEqual(shapes["slow_path.layer2.0.conv1.weight"], [128, 320, 1, 1, 1])
        XCTAssertEqual(shapes["slow_path.layer3.0.conv1.weight"], [256, 640, 3, 1, 1])
        XCTAssertEqual(shapes["slow_path.layer4.0.downsample.0.weight"], [2048, 1280, 1, 1, 1])
        XCTAssertEqual(shapes["fast_path.layer1.0.conv1.weight"], [8, 8, 3, 1, 1])
        XCTAssertEqual(m.outChannels, 2048 + 256)
        // mmaction2's zero_init_residual on the random initialization.
        XCTAssertEqual(m.namedParameters().first { $0.0 == "fast_path.layer2.1.bn3.weight" }?.1.array.allSatisfy { $0 == 0 }, true)
        let withNorm = SlowFastBackbone(config: SlowFastConfig(depth: 18, lateralNorm: true), generator: &g)
        XCTAssertTrue(withNorm.stateDictKeys().contains("slow_path.layer2_lateral.bn.running_var"))
    }

    /// Inflated from a 2D ResNet-18: kernels repeated over time / kt with zero lateral input
    /// channels, the shortcut resnet18 lacks (layer1.0.downsample) the identity, so in eval mode
    /// the slow half of the output is the SlowOnly ResNet3d's (inflated from the same weights) on
    /// frames 0, alpha, … averaged over time, whatever the fast pathway computes.
    func testInflatedSlowPathwayIsSlowOnly() throws {
        let sd2 = hashedResNet18StateDict()
        var g = RandomGenerator(seed: 4)
        let m = SlowFastBackbone(config: SlowFastConfig(depth: 18, alpha: 4), generator: &g)
        let fastBefore = m.fast_path.conv1.weight.array
        try m.inflate(from: sd2)
        XCTAssertEqual(m.fast_path.conv1.weight.array, fastBefore, "the fast pathway keeps its random initialization")
        let w = m.slow_path.layer3.layers[0] as! BasicBlock3d
        XCTAssertEqual(w.conv1.weight.shape, [256, 128 + 32, 3, 3, 3])
        let so = ResNet3d(generator: &g)
        try so.inflate(from: sd2)
        m.eval(); so.eval()
        let clip = randn([1, 3, 8, 32, 32], seed: 6, requiresGrad: false)
        let y = noGrad { m(clip) }
        let ref = noGrad { so(clip.indexSelect(axis: 2, indices: [0, 4])).mean(axis: 2, keepdim: true) }
        let slowHalf = y.sliced(axis: 1, start: 0, end: 512)
        assertClose(slowHalf, ref, rtol: 1e-4, atol: 1e-4 * (ref.array.map(abs).max() ?? 1))
        // A 2D dict without a stage the slow pathway needs is an error naming the key.
        var partial = sd2
        partial["layer2.0.conv1.weight"] = nil
        XCTAssertThrowsError(try m.inflate(from: partial)) { XCTAssertTrue("\($0)".contains("layer2.0.conv1.weight"), "\($0)") }
        partial = sd2
        partial["layer3.0.bn1.weight"] = Tensor.zeros([3])
        XCTAssertThrowsError(try m.inflate(from: partial)) { XCTAssertTrue("\($0)".contains("layer3.0.bn1.weight"), "\($0)") }
    }

    func testConfigValidationNamesTheField() {
        XCTAssertNoThrow(try SlowFastConfig().validate(frames: 32))
        XCTAssertThrowsError(try SlowFastConfig().validate(frames: 12)) { XCTAssertTrue("\($0)".contains("alpha"), "\($0)") }
        XCTAssertThrowsError(try SlowFastConfig(depth: 20).validate()) { XCTAssertTrue("\($0)".contains("depth"), "\($0)") }
        XCTAssertThrowsError(try SlowFastConfig(fusionKernel: 4).validate()) { XCTAssertTrue("\($0)".contains("fusion_kernel"), "\($0)") }
        XCTAssertThrowsError(try SlowFastConfig(betaInv: 7).validate()) { XCTAssertTrue("\($0)".contains("beta_inv"), "\($0)") }
    }
}
