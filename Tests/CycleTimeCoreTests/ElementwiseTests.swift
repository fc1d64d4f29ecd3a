import XCTest
@testable import CycleTimeCore
import TestSupport

final class ElementwiseTests: XCTestCase {
    func testBroadcastAddSubMulDivGradients() {
        let a = randn([2, 3, 4], seed: 1)
        let b = randn([3, 1], seed: 2)
        gradcheck([a, b]) { x in x[0] + x[1] }
        gradcheck([a, b]) { x in x[0] - x[1] }
        gradcheck([a, b]) { x in x[0] * x[1] }
        let d = randn([1, 4], seed: 3)
        for i in 0..<d.count { d.data[i] = 1.5 + abs(d.data[i]) }
        gradcheck([a, d]) { x in x[0] / x[1] }
        gradcheck([a]) { x in -x[0] }
    }

    func testBroadcastValues() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        let b = Tensor([10, 20, 30], shape: [3])
        XCTAssertEqual((a + b).array, [11, 22, 33, 14, 25, 36])
        let c = Tensor([100, 200], shape: [2, 1])
        XCTAssertEqual((a * c).array, [100, 200, 300, 800, 1000, 1200])
    }

    func testGraphIsReleasedAfterBackward() {
        let a = randn([4], seed: 1)
        let y = (a * a).sum()
        y.backward()
        XCTAssertNil(y.gradFn)
        XCTAssertEqual(a.grad!.array, a.array.map { 2 * $0 })
        // Gradients accumulate.
        (a * a).sum().backward()
        XCTAssertEqual(a.grad!.array, a.array.map { 4 * $0 })
    }

    // MARK: PyTorch fixtures (Tests/Fixtures/ops.safetensors, scripts/fixtures/ops.py)

    func testBinaryOpsMatchPyTorch() throws {
        let fx = try Fixtures.load("ops")
        checkOpsFixture(fx, "add") { $0[0] + $0[1] }
        checkOpsFixture(fx, "sub") { $0[0] - $0[1] }
        checkOpsFixture(fx, "mul") { $0[0] * $0[1] }
        checkOpsFixture(fx, "div") { $0[0] / $0[1] }
        checkOpsFixture(fx, "div_scalar_lhs") { 2 / $0[0] }
        checkOpsFixture(fx, "neg") { -$0[0] }
    }

    func testMatmulMatchesPyTorch() throws {
        let fx = try Fixtures.load("ops")
        checkOpsFixture(fx, "matmul") { $0[0].matmul($0[1]) }
        checkOpsFixture(fx, "matmul_bcast") { $0[0].matmul($0[1]) }
        checkOpsFixture(fx, "bmm") { $0[0].matmul($0[1]) }
    }

    func testUnaryOpsMatchPyTorch() throws {
        let fx = try Fixtures.load("ops")
        checkOpsFixture(fx, "exp") { $0[0].exp() }
        checkOpsFixture(fx, "log") { $0[0].log() }
        checkOpsFixture(fx, "sqrt") { $0[0].sqrt() }
        checkOpsFixture(fx, "pow3") { $0[0].pow(3) }
        checkOpsFixture(fx, "pow2") { $0[0].pow(2) }
        checkOpsFixture(fx, "pow_half") { $0[0].pow(0.5) }
        checkOpsFixture(fx, "pow_neg") { $0[0].pow(-1.5) }
        checkOpsFixture(fx, "abs") { $0[0].abs() }
        checkOpsFixture(fx, "clamp") { $0[0].clamp(min: -0.5, max: 0.7) }
        checkOpsFixture(fx, "clamp_min") { $0[0].clamp(min: 0.1) }
        checkOpsFixture(fx, "clamp_max") { $0[0].clamp(max: -0.2) }
        checkOpsFixture(fx, "relu") { $0[0].relu() }
        checkOpsFixture(fx, "leaky_relu") { $0[0].leakyRelu(0.2) }
        checkOpsFixture(fx, "leaky_relu_default") { $0[0].leakyRelu() }
        checkOpsFixture(fx, "sigmoid") { $0[0].sigmoid() }
        checkOpsFixture(fx, "tanh") { $0[0].tanh() }
        checkOpsFixture(fx, "where", differentiable: [1, 2]) { Tensor.where($0[0], $0[1], $0[2]) }
        checkOpsFixture(fx, "masked_fill", differentiable: [0]) { $0[0].maskedFill($0[1], -2.5) }
    }

    // MARK: gradient checks

    func testUnaryGradients() {
        let x = randn([2, 3, 4], seed: 11)
        let pos = randn([2, 3, 4], seed: 12, requiresGrad: false)
        for i in 0..<pos.count { pos.data[i] = Swift.abs(pos.data[i]) + 0.5 }
        pos.requiresGrad = true
        // Inputs kept away from kinks (0 for abs/relu/leakyRelu; the clamp bounds).
        let away = randn([2, 3, 4], seed: 13, requiresGrad: false)
        for i in 0..<away.count {
            var v = away.data[i]
            for k in [-0.5, 0, 0.7] as [Float] where Swift.abs(v - k) < 0.05 { v = k + (v >= k ? 0.1 : -0.1) }
            away.data[i] = v
        }
        away.requiresGrad = true
        gradcheck([x]) { $0[0].exp() }
        gradcheck([pos]) { $0[0].log() }
        gradcheck([pos]) { $0[0].sqrt() }
        gradcheck([x]) { $0[0].pow(3) }
        gradcheck([pos]) { $0[0].pow(-1.5) }
        gradcheck([pos]) { $0[0].pow(0.5) }
        gradcheck([away]) { $0[0].abs() }
        gradcheck([away]) { $0[0].clamp(min: -0.5, max: 0.7) }
        gradcheck([away]) { $0[0].relu() }
        gradcheck([away]) { $0[0].leakyRelu(0.2) }
        gradcheck([x]) { $0[0].sigmoid() }
        gradcheck([x]) { $0[0].tanh() }
        let cond = Tensor([1, 0, 0, 1], shape: [1, 4])
        gradcheck([x, randn([3, 1], seed: 14)]) { Tensor.where(cond, $0[0], $0[1]) }
        gradcheck([x]) { $0[0].maskedFill(Tensor([0, 1, 0], shape: [3, 1]), 3) }
    }

    func testUnaryEdgeValues() {
        // Hand-computed: sign(0) = 0 for abs's gradient; clamp bounds inclusive; relu(0) grad 0.
        let x = Tensor([0, -1, 2, 0.5], shape: [4], requiresGrad: true)
        x.abs().sum().backward()
        XCTAssertEqual(x.grad!.array, [0, -1, 1, 1])
        x.grad = nil
        x.clamp(min: -1, max: 0.5).sum().backward()
        XCTAssertEqual(x.grad!.array, [1, 1, 0, 1])
        x.grad = nil
        x.relu().sum().backward()
        XCTAssertEqual(x.grad!.array, [0, 0, 1, 1])
        XCTAssertEqual(Tensor([-1000, 1000], shape: [2]).sigmoid().array, [0, 1])
        let rn = Tensor([Float.nan], shape: [1]).relu()
        XCTAssertTrue(rn.data[0].isNaN, "relu(nan) = \(rn.data[0])")
    }
}

/// Compares an op with the PyTorch case `name` of a fixture: inputs `name.x0...`, output
/// `name.out`, upstream gradient `name.g`, input gradients `name.gx<i>` for each input in
/// `differentiable` (default: every input that has one). Values within 1e-5 relative.
func checkOpsFixture(_ fx: [String: Tensor], _ name: String, differentiable: [Int]? = nil,
                     rtol: Float = 1e-5, atol: Float = 1e-6,
                     file: StaticString = #filePath, line: UInt = #line, _ f: ([Tensor]) -> Tensor) {
    var xs: [Tensor] = []
    while let x = fx["\(name).x\(xs.count)"] { xs.append(x.clone()) }
    XCTAssertFalse(xs.isEmpty, "fixture case \(name) has no inputs", file: file, line: line)
    let diff = differentiable ?? xs.indices.filter { fx["\(name).gx\($0)"] != nil }
    for i in diff { xs[i].requiresGrad = true }
    let out = f(xs)
    assertClose(out, fx.t("\(name).out", file: file, line: line), rtol: rtol, atol: atol, "\(name) values", file: file, line: line)
    guard !diff.isEmpty else { return }
    XCTAssertTrue(out.requiresGrad, "\(name): output does not require grad", file: file, line: line)
    guard out.requiresGrad else { return }
    out.backward(fx.t("\(name).g", file: file, line: line))
    for i in diff {
        guard let g = xs[i].grad else { XCTFail("\(name): input \(i) got no gradient", file: file, line: line); continue }
        assertClose(g, fx.t("\(name).gx\(i)", file: file, line: line), rtol: rtol, atol: atol, "\(name) gradient of input \(i)", file: file, line: line)
    }
}
