import XCTest
@testable import CycleTimeNN
import TestSupport

/// Module-level forward values against PyTorch (fixture nn_layers from scripts/fixtures/resnet.py).
final class LayersTests: XCTestCase {
    func testConv2dReflectMatchesPyTorch() throws {
        let fx = try Fixtures.load("nn_layers")
        var g = RandomGenerator(seed: 1)
        let conv = Conv2d(3, 4, kernelSize: 3, stride: 2, padding: 1, paddingMode: .reflect, generator: &g)
        try conv.loadStateDict(["weight": fx.t("conv2d.weight"), "bias": fx.t("conv2d.bias")])
        assertClose(conv(fx.t("conv2d.x")), fx.t("conv2d.y"), rtol: 1e-4, atol: 1e-5)
    }

    func testConv3dMatchesPyTorch() throws {
        let fx = try Fixtures.load("nn_layers")
        var g = RandomGenerator(seed: 1)
        let conv = Conv3d(2, 3, kernelSize: [3, 3, 3], stride: [1, 2, 2], padding: [1, 1, 1], generator: &g)
        try conv.loadStateDict(["weight": fx.t("conv3d.weight"), "bias": fx.t("conv3d.bias")])
        assertClose(conv(fx.t("conv3d.x")), fx.t("conv3d.y"), rtol: 1e-4, atol: 1e-5)
    }

    func testLinearMatchesPyTorch() throws {
        let fx = try Fixtures.load("nn_layers")
        var g = RandomGenerator(seed: 1)
        let lin = Linear(5, 3, generator: &g)
        try lin.loadStateDict(["weight": fx.t("linear.weight"), "bias": fx.t("linear.bias")])
        assertClose(lin(fx.t("linear.x")), fx.t("linear.y"))
    }

    func testBatchNorm2dCumulativeMomentumAndEval() throws {
        let fx = try Fixtures.load("nn_layers")
        let bn = BatchNorm2d(3, momentum: nil)
        try bn.loadStateDict(["weight": fx.t("bn2d.weight"), "bias": fx.t("bn2d.bias")], strict: false)
        for step in 0..<2 {
            assertClose(bn(fx.t("bn2d.x\(step)")), fx.t("bn2d.y\(step)"), rtol: 1e-5, atol: 1e-5)
            XCTAssertEqual(bn.numBatchesTracked!.item(), Float(step + 1))
        }
        assertClose(bn.runningMean!, fx.t("bn2d.running_mean"))
        assertClose(bn.runningVar!, fx.t("bn2d.running_var"))
        XCTAssertEqual(bn.numBatchesTracked!.item(), fx.t("bn2d.num_batches_tracked").item())
        bn.eval()
        assertClose(bn(fx.t("bn2d.x_eval")), fx.t("bn2d.y_eval"), rtol: 1e-5, atol: 1e-5)
        XCTAssertEqual(bn.numBatchesTracked!.item(), 2)   // eval does not count
    }

    func testBatchNorm3dMomentum() throws {
        let fx = try Fixtures.load("nn_layers")
        let bn = BatchNorm3d(2, momentum: 0.3)
        assertClose(bn(fx.t("bn3d.x")), fx.t("bn3d.y"), rtol: 1e-5, atol: 1e-5)
        assertClose(bn.runningMean!, fx.t("bn3d.running_mean"))
        assertClose(bn.runningVar!, fx.t("bn3d.running_var"))
    }

    func testBatchNormWithoutRunningStatsUsesBatchStatsInEval() {
        let bn = BatchNorm2d(2, trackRunningStats: false)
        XCTAssertEqual(bn.stateDictKeys(), ["weight", "bias"])
        bn.eval()
        let x = randn([3, 2, 2, 2], seed: 5, requiresGrad: false)
        let y = bn(x)
        // Each channel is normalized: mean 0.
        for c in 0..<2 {
            var s: Float = 0
            for n in 0..<3 { for i in 0..<4 { s += y.data[(n * 2 + c) * 4 + i] } }
            XCTAssertEqual(s / 12, 0, accuracy: 1e-5)
        }
    }

    /// torchvision's FrozenBatchNorm2d: keys weight, bias, running_mean, running_var; the running
    /// statistics in training mode too (and they do not move); no gradient to weight and bias.
    func testFrozenBatchNormUsesRunningStatisticsInBothModes() {
        let bn = BatchNorm2d(2)
        bn.weight?.assign(Tensor([1.5, 0.5], shape: [2])); bn.bias?.assign(Tensor([0.1, -0.2], shape: [2]))
        bn.runningMean?.assign(Tensor([0.3, -1], shape: [2])); bn.runningVar?.assign(Tensor([2, 0.25], shape: [2]))
        bn.freezeStatistics()
        XCTAssertEqual(bn.stateDictKeys(), ["weight", "bias", "running_mean", "running_var"])
        XCTAssertTrue(bn.trainableParameters().isEmpty)
        let x = randn([3, 2, 2, 2], seed: 6, requiresGrad: false)
        var expected = [Float](repeating: 0, count: x.count)
        for i in 0..<x.count {
            let c = (i / 4) % 2
            let scale = [1.5, 0.5][c] / ([Float(2), 0.25][c] + 1e-5).squareRoot()
            expected[i] = x.data[i] * scale + ([Float(0.1), -0.2][c] - [Float(0.3), -1][c] * scale)
        }
        for mode in [true, false] {
            bn.train(mode)
            assertClose(bn(x), Tensor(expected, shape: x.shape), rtol: 1e-6, atol: 1e-6)
        }
        XCTAssertEqual(bn.runningMean?.array, [0.3, -1])
    }

    /// A Sequential of conv, bn, relu, maxpool, reflect conv, leaky relu, avg pool, adaptive pool,
    /// flatten and linear: forward values and every parameter gradient match PyTorch.
    func testSequentialNetworkForwardAndGradients() throws {
        let fx = try Fixtures.load("nn_layers")
        var g = RandomGenerator(seed: 1)
        let net = Sequential(
            Conv2d(2, 4, kernelSize: 3, padding: 1, generator: &g), BatchNorm2d(4), ReLU(),
            MaxPool2d(kernelSize: 3, stride: 2, padding: 1),
            Conv2d(4, 4, kernelSize: 3, padding: 1, paddingMode: .reflect, generator: &g),
            LeakyReLU(negativeSlope: 0.2), AvgPool2d(kernelSize: 2), AdaptiveAvgPool2d(1), Flatten(), Linear(4, 3, generator: &g))
        var sd: [String: Tensor] = [:]
        for (k, v) in fx where k.hasPrefix("net.state.") { sd[String(k.dropFirst("net.state.".count))] = v }
        try net.loadStateDict(sd)
        let y = net(fx.t("net.x"))
        assertClose(y, fx.t("net.y"), rtol: 1e-4, atol: 1e-5)
        (y * fx.t("net.w")).sum().backward()
        for (k, p) in net.namedParameters() {
            guard let grad = p.grad else { XCTFail("no gradient for \(k)"); continue }
            assertClose(grad, fx.t("net.grad." + k), rtol: 1e-4, atol: 1e-5, k)
        }
        assertClose((net[1] as! BatchNorm2d).runningMean!, fx.t("net.bn_running_mean_after"))
    }

    func testFrozenLayersGetNoGradient() {
        var g = RandomGenerator(seed: 2)
        let net = Sequential(Linear(3, 4, generator: &g), ReLU(), Linear(4, 2, generator: &g))
        net.freeze(["0"])
        net(randn([5, 3], seed: 3, requiresGrad: false)).sum().backward()
        XCTAssertNil(net.namedParameters()[0].1.grad)
        XCTAssertNil(net.namedParameters()[1].1.grad)
        XCTAssertNotNil(net.namedParameters()[2].1.grad)
        XCTAssertNotNil(net.namedParameters()[3].1.grad)
    }

    func testDropoutSeededTrainAndEval() {
        let x = Tensor.ones([1000])
        let a = Dropout(0.3, seed: 7), b = Dropout(0.3, seed: 7)
        let ya = a(x), yb = b(x)
        XCTAssertEqual(ya.array, yb.array)
        let kept = ya.array.filter { $0 != 0 }
        XCTAssertTrue(kept.allSatisfy { abs($0 - 1 / 0.7) < 1e-6 })
        XCTAssertEqual(Double(kept.count) / 1000, 0.7, accuracy: 0.06)
        XCTAssertNotEqual(a(x).array, ya.array)   // the generator advances
        a.eval()
        XCTAssertEqual(a(x).array, x.array)
    }

    func testFlattenIdentitySequentialShapes() {
        let x = randn([2, 3, 4, 5], seed: 1, requiresGrad: false)
        XCTAssertEqual(Flatten()(x).shape, [2, 60])
        XCTAssertEqual(Flatten(startDim: 0, endDim: 1)(x).shape, [6, 4, 5])
        XCTAssertTrue(Identity()(x) === x)
        XCTAssertEqual(Sequential(Identity(), Flatten())(x).shape, [2, 60])
    }

    /// GroupNorm with one group against its definition, and its gradient by finite differences.
    func testGroupNormNormalizesEachSampleAndGradchecks() {
        let gn = GroupNorm(1, 4)
        gn.weight.assign(Tensor([1.5, 0.5, 1, 2], shape: [4])); gn.bias.assign(Tensor([0, 1, -1, 0.5], shape: [4]))
        let x = randn([2, 4, 3, 3], seed: 9)
        let y = gn(x)
        for n in 0..<2 {
            let vals = (0..<36).map { Double(x.data[n * 36 + $0]) }
            let mean = vals.reduce(0, +) / 36, variance = vals.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 36
            for i in 0..<36 {
                let c = i / 9
                let expected = (vals[i] - mean) / (variance + 1e-5).squareRoot() * Double(gn.weight.data[c]) + Double(gn.bias.data[c])
                XCTAssertEqual(Double(y.data[n * 36 + i]), expected, accuracy: 1e-5)
            }
        }
        gradcheck([randn([2, 4, 2, 2], seed: 10)]) { gn($0[0]) }
    }

    /// LayerNorm over the trailing [3, 2] of [2, 4, 3, 2] against its definition (float64, per
    /// element affine), and the gradients of input, weight and bias by finite differences.
    func testLayerNormNormalizesTrailingDimensionsAndGradchecks() {
        let ln = LayerNorm([3, 2])
        ln.weight.assign(randn([3, 2], seed: 11) * Tensor(scalar: 0.3) + Tensor(scalar: 1))
        ln.bias.assign(randn([3, 2], seed: 12) * Tensor(scalar: 0.3))
        let x = randn([2, 4, 3, 2], seed: 13)
        let y = ln(x)
        XCTAssertEqual(y.shape, x.shape)
        for r in 0..<8 {
            let vals = (0..<6).map { Double(x.data[r * 6 + $0]) }
            let mean = vals.reduce(0, +) / 6, variance = vals.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 6
            for i in 0..<6 {
                let expected = (vals[i] - mean) / (variance + 1e-5).squareRoot() * Double(ln.weight.data[i]) + Double(ln.bias.data[i])
                XCTAssertEqual(Double(y.data[r * 6 + i]), expected, accuracy: 1e-5)
            }
        }
        gradcheck([randn([2, 3, 2], seed: 14), ln.weight.detach(), ln.bias.detach()]) { t in
            let m = LayerNorm([3, 2])
            m.weight = t[1]; m.bias = t[2]
            return m(t[0])
        }
    }
}
