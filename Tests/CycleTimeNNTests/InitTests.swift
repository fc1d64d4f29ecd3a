import XCTest
@testable import CycleTimeNN
import TestSupport

final class InitTests: XCTestCase {
    func stats(_ t: Tensor) -> (mean: Double, std: Double, min: Float, max: Float) {
        var s = 0.0, s2 = 0.0
        var lo = Float.infinity, hi = -Float.infinity
        for i in 0..<t.count { let v = Double(t.data[i]); s += v; s2 += v * v; lo = min(lo, t.data[i]); hi = max(hi, t.data[i]) }
        let n = Double(t.count), mean = s / n
        return (mean, (s2 / n - mean * mean).squareRoot(), lo, hi)
    }

    /// Uniform(-b, b): all values inside, std b/sqrt(3), and the extremes close to the bounds.
    func checkUniform(_ t: Tensor, bound b: Double, file: StaticString = #filePath, line: UInt = #line) {
        let s = stats(t)
        let n = Double(t.count), sigma = b / 3.0.squareRoot()
        XCTAssertLessThanOrEqual(Double(s.max), b, file: file, line: line)
        XCTAssertGreaterThanOrEqual(Double(s.min), -b, file: file, line: line)
        // The extremes lie within a few expected gaps (2b/n) of the bounds.
        XCTAssertGreaterThan(Double(s.max), b * (1 - 20 / n), file: file, line: line)
        XCTAssertLessThan(Double(s.min), -b * (1 - 20 / n), file: file, line: line)
        // Mean and std within 5 standard errors.
        XCTAssertEqual(s.std, sigma, accuracy: 5 * sigma * (0.8 / n).squareRoot(), file: file, line: line)
        XCTAssertEqual(s.mean, 0, accuracy: 5 * sigma / n.squareRoot(), file: file, line: line)
    }

    func checkNormal(_ t: Tensor, mean: Double = 0, std: Double, file: StaticString = #filePath, line: UInt = #line) {
        let s = stats(t)
        let n = Double(t.count)
        // Within 5 standard errors (std of the sample std is about std / sqrt(2n)).
        XCTAssertEqual(s.std, std, accuracy: 5 * std / (2 * n).squareRoot(), file: file, line: line)
        XCTAssertEqual(s.mean, mean, accuracy: 5 * std / n.squareRoot(), file: file, line: line)
    }

    func testGainAndFans() {
        XCTAssertEqual(Init.gain(.relu), 2.0.squareRoot())
        XCTAssertEqual(Init.gain(.tanh), 5.0 / 3.0)
        XCTAssertEqual(Init.gain(.linear), 1)
        XCTAssertEqual(Init.gain(.leakyRelu, param: 5.0.squareRoot()), (2.0 / 6.0).squareRoot(), accuracy: 1e-15)
        XCTAssertEqual(Init.gain(.leakyRelu), (2.0 / 1.0001).squareRoot(), accuracy: 1e-15)
        XCTAssertTrue(Init.fans([64, 3, 7, 7]) == (147, 3136))
        XCTAssertTrue(Init.fans([10, 20]) == (20, 10))
    }

    func testKaimingUniform() {
        var g = RandomGenerator(seed: 1)
        let t = Tensor.zeros([128, 64, 3, 3])
        Init.kaimingUniform(t, mode: .fanIn, nonlinearity: .relu, generator: &g)
        checkUniform(t, bound: 2.0.squareRoot() * (3.0 / 576).squareRoot())
        Init.kaimingUniform(t, a: 0.2, mode: .fanOut, nonlinearity: .leakyRelu, generator: &g)
        checkUniform(t, bound: (2.0 / 1.04).squareRoot() * (3.0 / 1152).squareRoot())
    }

    func testKaimingNormal() {
        var g = RandomGenerator(seed: 2)
        let t = Tensor.zeros([128, 64, 3, 3])
        Init.kaimingNormal(t, mode: .fanOut, nonlinearity: .relu, generator: &g)
        checkNormal(t, std: (2.0 / 1152).squareRoot())
        Init.kaimingNormal(t, mode: .fanIn, nonlinearity: .relu, generator: &g)
        checkNormal(t, std: (2.0 / 576).squareRoot())
        Init.kaimingNormal(t, a: 0.1, mode: .fanIn, nonlinearity: .leakyRelu, generator: &g)
        checkNormal(t, std: (2.0 / 1.01).squareRoot() / 576.0.squareRoot())
    }

    func testXavier() {
        var g = RandomGenerator(seed: 3)
        let t = Tensor.zeros([300, 200])
        Init.xavierUniform(t, generator: &g)
        checkUniform(t, bound: (6.0 / 500).squareRoot())
        Init.xavierUniform(t, gain: 2, generator: &g)
        checkUniform(t, bound: 2 * (6.0 / 500).squareRoot())
        Init.xavierNormal(t, gain: Init.gain(.tanh), generator: &g)
        checkNormal(t, std: 5.0 / 3.0 * (2.0 / 500).squareRoot())
    }

    func testNormalUniformConstant() {
        var g = RandomGenerator(seed: 4)
        let t = Tensor.zeros([100_000])
        Init.normal(t, mean: 3, std: 0.5, generator: &g)
        checkNormal(t, mean: 3, std: 0.5)
        Init.uniform(t, low: -2, high: 4, generator: &g)
        let s = stats(t)
        XCTAssertGreaterThanOrEqual(s.min, -2); XCTAssertLessThanOrEqual(s.max, 4)
        XCTAssertEqual(s.mean, 1, accuracy: 0.03)
        XCTAssertEqual(s.std, 6 / 12.0.squareRoot(), accuracy: 0.03)
        Init.constant(t, 0.25)
        XCTAssertTrue(t.array.allSatisfy { $0 == 0.25 })
    }

    func testPyTorchDefaultsOfLayers() {
        var g = RandomGenerator(seed: 5)
        let conv = Conv2d(64, 128, kernelSize: 3, generator: &g)
        checkUniform(conv.weight, bound: 1 / 576.0.squareRoot())
        checkUniform(conv.bias!, bound: 1 / 576.0.squareRoot())
        let lin = Linear(400, 2000, generator: &g)
        checkUniform(lin.weight, bound: 1 / 20)
        checkUniform(lin.bias!, bound: 1 / 20)
        let c3 = Conv3d(8, 64, kernelSize: [3, 3, 3], generator: &g)
        checkUniform(c3.weight, bound: 1 / 216.0.squareRoot())
        let bn = BatchNorm3d(5)
        XCTAssertEqual(bn.weight!.array, [1, 1, 1, 1, 1]); XCTAssertEqual(bn.bias!.array, [0, 0, 0, 0, 0])
        XCTAssertEqual(bn.runningVar!.array, [1, 1, 1, 1, 1]); XCTAssertEqual(bn.runningMean!.array, [0, 0, 0, 0, 0])
    }

    func testSeededReproducibleAndDefaultGenerator() {
        var g1 = RandomGenerator(seed: 9), g2 = RandomGenerator(seed: 9)
        XCTAssertEqual(Linear(3, 4, generator: &g1).weight.array, Linear(3, 4, generator: &g2).weight.array)
        XCTAssertEqual(g1, g2)
        DefaultRandom.seed(42)
        let a = Conv2d(2, 2, kernelSize: 1).weight.array
        DefaultRandom.seed(42)
        let b = Conv2d(2, 2, kernelSize: 1).weight.array
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, Conv2d(2, 2, kernelSize: 1).weight.array)
    }
}
