import XCTest
@testable import CycleTimeDetection
import CycleTimeModels
import CycleTimeNN
import TestSupport

/// torchvision resnet18's state dict with the fixture scripts' hash weights.
func hashedResNet18StateDict() -> [String: Tensor] {
    var g = RandomGenerator(seed: 0)
    let r = ResNet(config: ResNetConfig(depth: 18), initialize: false, generator: &g)
    var sd: [String: Tensor] = [:]
    for (k, (key, t)) in r.namedStateEntries().enumerated() {
        let s = t.shape
        let (o, sc): (Double, Double) = key.hasSuffix("running_mean") ? (0, 1e-4) : key.hasSuffix("running_var") ? (1, 4e-4)
            : s.count == 4 ? (0, (2.0 / Double(s[1] * s[2] * s[3])).squareRoot() / 577.0) : key.hasSuffix("weight") ? (1, 3e-4) : (0, 1e-4)
        sd[key] = hashTensor(k: k, shape: s, offset: o, scale: sc)
    }
    return sd
}

final class ResNet3dTests: XCTestCase {
    /// SlowOnly ResNet-18 inflated from hashed resnet18 weights vs the PyTorch module of
    /// scripts/fixtures/ava.py (eval mode, reference in float64): output, input gradient, parameter
    /// gradients. Tolerances: PyTorch's own float32 run differs from the float64 one by up to
    /// ~1.6e-3 (relative to 1e-4 of the largest value) on these gradients.
    func testInflatedSlowOnlyMatchesPyTorch() throws {
        let fx = try Fixtures.load("ava_backbone")
        var g = RandomGenerator(seed: 1)
        let m = ResNet3d(generator: &g)
        try m.inflate(from: hashedResNet18StateDict())
        XCTAssertEqual(m.outputStride, 16)
        let w = m.layer3!.layers[0] as! BasicBlock3d
        XCTAssertEqual(w.conv1.weight.shape, [256, 128, 3, 3, 3])
        assertClose(Tensor(Array(w.conv1.weight.array.prefix(2 * 128 * 27)), shape: [2, 128, 3, 3, 3]), fx.t("layer3.0.conv1.weight[:2]"))
        m.eval()
        let x = hashTensor(k: 9001, shape: [1, 3, 4, 32, 32], offset: 0, scale: 1e-3).requiringGrad()
        let out = m(x)
        XCTAssertEqual(out.shape, [1, 512, 4, 2, 2])
        func scaleOf(_ t: Tensor) -> Float { t.array.map(abs).max() ?? 0 }
        assertClose(out, fx.t("out"), rtol: 1e-3, atol: 1e-4 * scaleOf(fx.t("out")), "out")
        out.backward(hashTensor(k: 9002, shape: out.shape, offset: 0, scale: 1e-3))
        assertClose(x.grad!, fx.t("dx"), rtol: 3e-3, atol: 1e-4 * scaleOf(fx.t("dx")), "dx")
        let params = Dictionary(uniqueKeysWithValues: m.namedParameters())
        for n in ["conv1.weight", "bn1.weight", "layer3.0.bn1.weight", "layer4.1.bn2.bias"] {
            assertClose(params[n]!.grad!, fx.t("d." + n), rtol: 3e-3, atol: 1e-4 * scaleOf(fx.t("d." + n)), n)
        }
    }

    /// Inflation by hand: a 2D kernel repeated over kt and divided by kt, so a clip of identical
    /// frames gives the 2D network's features on every frame (in eval mode, interior frames).
    func testInflationOfStaticClipEqualsPerFrame2D() throws {
        var g = RandomGenerator(seed: 3)
        let r2 = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer4", strides: [1, 2, 2, 1]), generator: &g)
        let m = ResNet3d(generator: &g)
        try m.inflate(from: r2.stateDict())
        r2.eval(); m.eval()
        let frame = randn([1, 3, 32, 32], seed: 5, requiresGrad: false)
        // Four temporal convs (two blocks each in layer3/layer4): frame 4 of 9 is out of reach of the padding.
        let T = 9
        let clip = Tensor(uninitialized: [1, 3, T, 32, 32])
        for c in 0..<3 { for t in 0..<T { for i in 0..<1024 { clip.data[(c * T + t) * 1024 + i] = frame.data[c * 1024 + i] } } }
        let y2 = noGrad { r2(frame) }, y3 = noGrad { m(clip) }
        // The middle frame sees no temporal padding, so it equals the 2D output.
        let mid = Tensor(uninitialized: y2.shape)
        let plane = y2.shape[2] * y2.shape[3]
        for c in 0..<512 { for i in 0..<plane { mid.data[c * plane + i] = y3.data[(c * T + 4) * plane + i] } }
        assertClose(mid, y2, rtol: 1e-4, atol: 1e-5)
    }

    func testInflationErrorsNameTheKey() throws {
        var g = RandomGenerator(seed: 3)
        let m = ResNet3d(generator: &g)
        var sd = hashedResNet18StateDict()
        sd["layer2.0.conv1.weight"] = Tensor.zeros([128, 64, 5, 5])
        XCTAssertThrowsError(try m.inflate(from: sd)) { XCTAssert("\($0)".contains("layer2.0.conv1.weight"), "\($0)") }
        sd.removeValue(forKey: "layer2.0.conv1.weight")
        XCTAssertThrowsError(try m.inflate(from: sd)) { XCTAssert("\($0)".contains("layer2.0.conv1.weight"), "\($0)") }
    }
}
