import CycleTimeCore
import XCTest
@testable import CycleTimeNN
import TestSupport

/// Optimizers against torch.optim (fixtures from scripts/fixtures/optim.py): a fixed parameter set
/// and gradient sequence over 5 steps (parameter 2 has no gradient at steps 0 and 3; the learning
/// rate changes between steps), comparing parameters and state after every step.
final class OptimizersTests: XCTestCase {
    static let steps = 5
    static let paramCount = 3

    /// The optimizers of the fixture's CONFIGS, with the same hyperparameters.
    func makeOptimizer(_ config: String, _ params: [(name: String, tensor: Tensor)]) -> (Optimizer, Float) {
        switch config {
        case "sgd": return (SGD(parameters: params, learningRate: 0.1), 0.1)
        case "sgd_wd_max": return (SGD(parameters: params, learningRate: 0.1, weightDecay: 0.05, maximize: true), 0.1)
        case "sgd_mom": return (SGD(parameters: params, learningRate: 0.1, momentum: 0.9), 0.1)
        case "sgd_mom_damp_wd":
            return (SGD(parameters: params, learningRate: 0.05, momentum: 0.8, dampening: 0.25, weightDecay: 0.01), 0.05)
        case "sgd_nesterov":
            return (SGD(parameters: params, learningRate: 0.05, momentum: 0.9, weightDecay: 0.001, nesterov: true), 0.05)
        case "adam": return (Adam(parameters: params, learningRate: 0.01), 0.01)
        case "adam_wd":
            return (Adam(parameters: params, learningRate: 0.02, betas: (0.8, 0.99), eps: 1e-6, weightDecay: 0.1), 0.02)
        case "adam_lowbeta_ams": return (Adam(parameters: params, learningRate: 0.01, betas: (0.3, 0.9), amsgrad: true), 0.01)
        case "adam_max": return (Adam(parameters: params, learningRate: 0.01, weightDecay: 0.01, maximize: true), 0.01)
        case "adamw": return (AdamW(parameters: params, learningRate: 0.01, weightDecay: 0.1), 0.01)
        case "adamw_ams":
            return (AdamW(parameters: params, learningRate: 0.005, betas: (0.85, 0.95), weightDecay: 0.5, amsgrad: true), 0.005)
        default: fatalError("unknown config \(config)")
        }
    }

    func freshParams(_ fx: [String: Tensor]) -> [(name: String, tensor: Tensor)] {
        (0..<Self.paramCount).map { j in (name: "p\(j)", tensor: fx.t("init.p\(j)").clone().requiringGrad()) }
    }

    /// Sets the gradients of step `s` (nil where the fixture has none).
    func setGrads(_ fx: [String: Tensor], _ params: [(name: String, tensor: Tensor)], step s: Int) {
        for (j, p) in params.enumerated() { p.tensor.grad = fx["grad.p\(j).step\(s)"]?.clone() }
    }

    func checkConfig(_ config: String, stateKeys: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let fx = try Fixtures.load("optim")
        let params = freshParams(fx)
        let (opt, lr0) = makeOptimizer(config, params)
        let mult = fx.t("lr_mult")
        for s in 0..<Self.steps {
            setGrads(fx, params, step: s)
            opt.learningRate = lr0 * mult.data[s]
            opt.step()
            for (j, p) in params.enumerated() {
                assertClose(p.tensor, fx.t("\(config).p\(j).step\(s)"), rtol: 1e-6, atol: 1e-7,
                            "\(config) p\(j) after step \(s)", file: file, line: line)
                let stateIndex = j
                for key in stateKeys {
                    let fkey = "\(config).\(key).p\(j).step\(s)"
                    if let expected = fx[fkey] {
                        guard let got = opt.state[stateIndex][key] else {
                            XCTFail("\(config): no state '\(key)' for p\(j) after step \(s)", file: file, line: line)
                            continue
                        }
                        assertClose(got, expected, rtol: 1e-6, atol: 1e-7, fkey, file: file, line: line)
                    } else {
                        XCTAssertNil(opt.state[stateIndex][key], "\(config): unexpected state \(fkey)", file: file, line: line)
                    }
                }
            }
        }
        XCTAssertEqual(opt.stepCount, Self.steps)
    }

    func testSGD() throws { try checkConfig("sgd", stateKeys: ["momentum_buffer"]) }
    func testSGDWeightDecayMaximize() throws { try checkConfig("sgd_wd_max", stateKeys: ["momentum_buffer"]) }
    func testSGDMomentum() throws { try checkConfig("sgd_mom", stateKeys: ["momentum_buffer"]) }
    func testSGDMomentumDampeningWeightDecay() throws { try checkConfig("sgd_mom_damp_wd", stateKeys: ["momentum_buffer"]) }
    func testSGDNesterov() throws { try checkConfig("sgd_nesterov", stateKeys: ["momentum_buffer"]) }
    func testAdam() throws { try checkConfig("adam", stateKeys: ["step", "exp_avg", "exp_avg_sq"]) }
    func testAdamWeightDecay() throws { try checkConfig("adam_wd", stateKeys: ["step", "exp_avg", "exp_avg_sq"]) }
    func testAdamLowBetaAMSGrad() throws {
        try checkConfig("adam_lowbeta_ams", stateKeys: ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"])
    }
    func testAdamMaximize() throws { try checkConfig("adam_max", stateKeys: ["step", "exp_avg", "exp_avg_sq"]) }
    func testAdamW() throws { try checkConfig("adamw", stateKeys: ["step", "exp_avg", "exp_avg_sq"]) }
    func testAdamWAMSGrad() throws {
        try checkConfig("adamw_ams", stateKeys: ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"])
    }

    func testZeroGradAndSkipsParametersWithoutGrad() throws {
        let a = Tensor([1, 2], shape: [2], requiresGrad: true)
        let b = Tensor([3, 4], shape: [2], requiresGrad: true)
        let opt = Adam(parameters: [(name: "a", tensor: a), (name: "b", tensor: b)], learningRate: 0.1)
        a.grad = Tensor([1, -1], shape: [2])
        opt.step()
        XCTAssertEqual(b.array, [3, 4])
        XCTAssertTrue(opt.state[1].isEmpty)
        XCTAssertEqual(opt.state[0]["step"]?.item(), 1)
        // First Adam step moves each element by lr * sign(grad) (up to eps).
        assertClose(a, Tensor([0.9, 2.1], shape: [2]))
        opt.zeroGrad()
        XCTAssertNil(a.grad)
        XCTAssertNil(b.grad)
        XCTAssertEqual(Set(opt.stateDict().keys), ["step", "lr", "step.a", "exp_avg.a", "exp_avg_sq.a"])
    }

    /// save -> restore (through a safetensors file's bytes) -> continue equals uninterrupted.
    func checkResume(_ config: String) throws {
        let fx = try Fixtures.load("optim")
        let mult = fx.t("lr_mult")
        // Uninterrupted.
        let ref = freshParams(fx)
        let (refOpt, lr0) = makeOptimizer(config, ref)
        for s in 0..<Self.steps {
            setGrads(fx, ref, step: s)
            refOpt.learningRate = lr0 * mult.data[s]
            refOpt.step()
        }
        // Interrupted after 2 steps (parameter 2 has no state yet), saved, restored in a fresh optimizer.
        let first = freshParams(fx)
        let (opt1, _) = makeOptimizer(config, first)
        for s in 0..<2 {
            setGrads(fx, first, step: s)
            opt1.learningRate = lr0 * mult.data[s]
            opt1.step()
        }
        var checkpoint: [String: Tensor] = [:]
        for (name, t) in first { checkpoint["model." + name] = t.detach() }
        for (k, t) in opt1.stateDict() { checkpoint["optim." + k] = t }
        let bytes = SafeTensors.serialize(checkpoint)
        let loaded = try SafeTensors.parse(bytes, path: "checkpoint").tensors

        let second = freshParams(fx)
        for (name, t) in second { t.assign(loaded.t("model." + name)) }
        let (opt2, _) = makeOptimizer(config, second)
        var optimState: [String: Tensor] = [:]
        for (k, t) in loaded where k.hasPrefix("optim.") { optimState[String(k.dropFirst(6))] = t }
        try opt2.loadStateDict(optimState)
        XCTAssertEqual(opt2.stepCount, 2)
        XCTAssertEqual(opt2.learningRate, lr0 * mult.data[1])
        for s in 2..<Self.steps {
            setGrads(fx, second, step: s)
            opt2.learningRate = lr0 * mult.data[s]
            opt2.step()
        }
        for (a, b) in zip(second, ref) { XCTAssertEqual(a.tensor.array, b.tensor.array, "\(config) \(a.name) after resume") }
        let sa = opt2.stateDict(), sb = refOpt.stateDict()
        XCTAssertEqual(Set(sa.keys), Set(sb.keys))
        for (k, v) in sb { XCTAssertEqual(sa[k]?.array, v.array, "\(config) state \(k) after resume") }
    }

    func testResumeAdam() throws { try checkResume("adam_lowbeta_ams") }
    func testResumeAdamW() throws { try checkResume("adamw") }
    func testResumeSGD() throws { try checkResume("sgd_mom_damp_wd") }

    func testLoadStateDictErrorsNameTheKey() throws {
        let w = Tensor.zeros([2, 3], requiresGrad: true)
        let v = Tensor.zeros([4], requiresGrad: true)
        let params = [(name: "layer.weight", tensor: w), (name: "layer.bias", tensor: v)]
        let opt = Adam(parameters: params)
        w.grad = Tensor.ones([2, 3]); v.grad = Tensor.ones([4])
        opt.step()
        let good = opt.stateDict()

        func expectError(_ dict: [String: Tensor], _ expected: OptimizerStateError) {
            let fresh = Adam(parameters: params)
            XCTAssertThrowsError(try fresh.loadStateDict(dict)) { error in
                XCTAssertEqual(error as? OptimizerStateError, expected)
                XCTAssertTrue("\(error)".contains({
                    switch expected {
                    case .missingKey(let k), .unexpectedKey(let k), .shapeMismatch(let k, _, _): return k
                    }
                }()))
            }
            XCTAssertTrue(fresh.state.allSatisfy { $0.isEmpty }, "a failed load leaves the optimizer unchanged")
            XCTAssertEqual(fresh.stepCount, 0)
        }
        var d = good; d["exp_avg_sq.layer.weight"] = nil
        expectError(d, .missingKey("exp_avg_sq.layer.weight"))
        d = good; d["step"] = nil
        expectError(d, .missingKey("step"))
        d = good; d["exp_avg.layer.bias"] = Tensor.zeros([5])
        expectError(d, .shapeMismatch(key: "exp_avg.layer.bias", expected: [4], got: [5]))
        d = good; d["momentum_buffer.layer.bias"] = Tensor.zeros([4])
        expectError(d, .unexpectedKey("momentum_buffer.layer.bias"))
        d = good; d["exp_avg.other"] = Tensor.zeros([4])
        expectError(d, .unexpectedKey("exp_avg.other"))

        // A parameter without any state is fine (not updated yet).
        d = good
        for k in ["step", "exp_avg", "exp_avg_sq"] { d[k + ".layer.bias"] = nil }
        let fresh = Adam(parameters: params)
        XCTAssertNoThrow(try fresh.loadStateDict(d))
        XCTAssertTrue(fresh.state[1].isEmpty)
        XCTAssertEqual(fresh.state[0]["exp_avg"]?.array, good["exp_avg.layer.weight"]?.array)
        // The loaded state is a copy.
        fresh.state[0]["exp_avg"]!.fill(7)
        XCTAssertNotEqual(good["exp_avg.layer.weight"]?.array.first, 7)
    }
}
