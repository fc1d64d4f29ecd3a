import CycleTimeCore
import XCTest
@testable import CycleTimeNN
import TestSupport

/// A small model (conv, batch norm, relu, mean-pool, linear) trained for 200 steps of
/// full-batch Adam with cross-entropy on a fixed synthetic task (32 random 3x8x8 images, random
/// labels) reaches the same loss as PyTorch from the same initial weights (fixture training_parity,
/// scripts/fixtures/optim.py). The learning rate (1e-3, stored in the fixture) keeps the run out of
/// the chaotic regime: at 1e-2, perturbing the initial weights by 1e-6 moves PyTorch's own loss
/// curve by more than 1e-3.
final class TrainingParityTests: XCTestCase {
    func testAdam200StepsMatchesPyTorch() throws {
        let fx = try Fixtures.load("training_parity")
        let x = fx.t("x"), y = fx.t("y"), torchLosses = fx.t("losses")
        let steps = torchLosses.count - 1  // per-step losses, then the loss after the last update

        // Parameters in the order and naming of the PyTorch module's state_dict.
        let names = ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.weight", "fc.bias"]
        var p: [String: Tensor] = [:]
        for n in names { p[n] = fx.t("init." + n).clone().requiringGrad() }
        let runningMean = fx.t("init.bn.running_mean").clone()
        let runningVar = fx.t("init.bn.running_var").clone()

        func loss() -> Tensor {
            let h = F.conv2d(x, weight: p["conv.weight"]!, bias: p["conv.bias"]!, padding: [1, 1])
            let b = F.batchNorm(h, runningMean: runningMean, runningVar: runningVar,
                                weight: p["bn.weight"]!, bias: p["bn.bias"]!, training: true, momentum: 0.1, eps: 1e-5)
            let pooled = b.relu().mean(axes: [2, 3])
            let logits = F.linear(pooled, weight: p["fc.weight"]!, bias: p["fc.bias"]!)
            return F.crossEntropy(logits, y)
        }

        let opt = Adam(parameters: names.map { (name: $0, tensor: p[$0]!) }, learningRate: fx.t("lr").item())
        var losses: [Float] = []
        for _ in 0..<steps {
            opt.zeroGrad()
            let l = loss()
            losses.append(l.item())
            l.backward()
            opt.step()
        }
        losses.append(loss().item())

        var worst: Float = 0, worstStep = 0
        for t in 0...steps {
            let d = abs(losses[t] - torchLosses.data[t])
            if d > worst { worst = d; worstStep = t }
        }
        print("training parity: final loss \(losses[steps]) vs PyTorch \(torchLosses.data[steps]); "
              + "largest curve difference \(worst) at step \(worstStep)")
        XCTAssertEqual(losses[steps], torchLosses.data[steps], accuracy: 1e-3, "final loss")
        XCTAssertLessThan(torchLosses.data[steps], 0.9 * torchLosses.data[0], "the task must actually train")
        for t in 0...steps {
            XCTAssertEqual(losses[t], torchLosses.data[t], accuracy: 1e-3, "loss at step \(t)")
        }
        // The weights and running variance follow PyTorch's too. Not conv.bias: batch norm removes
        // it, so its exact gradient is 0 and its float32 gradient is rounding noise that Adam
        // normalizes into steps of up to lr (PyTorch's float32 and float64 runs disagree on it just
        // as much); hence not the running mean either, which tracks it.
        for n in names where n != "conv.bias" {
            assertClose(p[n]!, fx.t("final." + n), rtol: 1e-4, atol: 1e-5, "final \(n)")
        }
        assertClose(runningVar, fx.t("final.bn.running_var"), rtol: 1e-4, atol: 1e-5, "running var")
    }

    /// The same run with the Module layers (Conv2d, BatchNorm2d, ReLU, Linear), the weights loaded
    /// from PyTorch's state_dict and the optimizer built from `namedParameters()`.
    func testAdam200StepsWithLayersMatchesPyTorch() throws {
        let fx = try Fixtures.load("training_parity")
        let x = fx.t("x"), y = fx.t("y"), torchLosses = fx.t("losses")
        let steps = torchLosses.count - 1
        let net = ParityNet()
        try net.loadStateDict(initialState(fx))
        let opt = Adam(parameters: net.namedParameters(), learningRate: fx.t("lr").item())
        XCTAssertEqual(opt.parameters.map { $0.name },
                       ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.weight", "fc.bias"])
        var losses: [Float] = []
        for _ in 0..<steps { losses.append(net.trainStep(x, y, opt)) }
        losses.append(F.crossEntropy(net(x), y).item())
        for t in 0...steps {
            XCTAssertEqual(losses[t], torchLosses.data[t], accuracy: 1e-3, "loss at step \(t)")
        }
        let state = net.stateDict()
        for k in ["conv.weight", "bn.weight", "bn.bias", "bn.running_var", "fc.weight", "fc.bias"] {
            assertClose(state.t(k), fx.t("final." + k), rtol: 1e-4, atol: 1e-5, "final \(k)")
        }
        XCTAssertEqual(state.t("bn.num_batches_tracked").item(), fx.t("final.bn.num_batches_tracked").item())
    }

    /// Training interrupted after 100 steps, model and optimizer saved to one safetensors file,
    /// restored into a fresh model and optimizer and continued for 100 steps ends where the
    /// uninterrupted run does. (Bitwise equality holds for the optimizer alone, see
    /// OptimizersTests; here the conv weight gradient's summation order may vary between runs, and
    /// conv.bias, its Adam state and the running mean are rounding noise, see above.)
    func testCheckpointResumeMatchesUninterrupted() throws {
        let fx = try Fixtures.load("training_parity")
        let x = fx.t("x"), y = fx.t("y"), lr = fx.t("lr").item()

        let ref = ParityNet()
        try ref.loadStateDict(initialState(fx))
        let refOpt = Adam(parameters: ref.namedParameters(), learningRate: lr)
        for _ in 0..<200 { ref.trainStep(x, y, refOpt) }

        let first = ParityNet()
        try first.loadStateDict(initialState(fx))
        let opt1 = Adam(parameters: first.namedParameters(), learningRate: lr)
        for _ in 0..<100 { first.trainStep(x, y, opt1) }
        var checkpoint: [String: Tensor] = [:]
        for (k, v) in first.stateDict() { checkpoint["model." + k] = v }
        for (k, v) in opt1.stateDict() { checkpoint["optimizer." + k] = v }
        let path = NSTemporaryDirectory() + "cycletime-optim-resume-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SafeTensors.write(checkpoint, to: path)

        let loaded = try SafeTensors.load(path)
        var modelState: [String: Tensor] = [:], optimState: [String: Tensor] = [:]
        for (k, v) in loaded {
            if k.hasPrefix("model.") { modelState[String(k.dropFirst(6))] = v }
            if k.hasPrefix("optimizer.") { optimState[String(k.dropFirst(10))] = v }
        }
        let second = ParityNet()
        try second.loadStateDict(modelState)
        let opt2 = Adam(parameters: second.namedParameters(), learningRate: 0.5)
        try opt2.loadStateDict(optimState)
        XCTAssertEqual(opt2.learningRate, lr)
        XCTAssertEqual(opt2.stepCount, 100)
        for _ in 0..<100 { second.trainStep(x, y, opt2) }

        let a = second.stateDict(), b = ref.stateDict()
        XCTAssertEqual(Set(a.keys), Set(b.keys))
        for (k, v) in b where k != "conv.bias" && k != "bn.running_mean" {
            assertClose(a.t(k), v, rtol: 1e-4, atol: 1e-6, "\(k) after resume")
        }
        let sa = opt2.stateDict(), sb = refOpt.stateDict()
        XCTAssertEqual(Set(sa.keys), Set(sb.keys))
        for (k, v) in sb where !k.hasSuffix(".conv.bias") {
            assertClose(sa.t(k), v, rtol: 1e-3, atol: 1e-6, "optimizer \(k) after resume")
        }
    }

    func initialState(_ fx: [String: Tensor]) -> [String: Tensor] {
        var d: [String: Tensor] = [:]
        for (k, v) in fx where k.hasPrefix("init.") { d[String(k.dropFirst(5))] = v.clone() }
        return d
    }
}

/// The fixture's PyTorch module: Conv2d(3, 8, 3, padding 1) -> BatchNorm2d(8) -> ReLU -> mean over
/// space -> Linear(8, 4), with the same state_dict names.
final class ParityNet: Module {
    let conv = Conv2d(3, 8, kernelSize: 3, padding: 1)
    let bn = BatchNorm2d(8)
    let relu = ReLU()
    let fc = Linear(8, 4)

    override func callAsFunction(_ x: Tensor) -> Tensor {
        fc(relu(bn(conv(x))).mean(axes: [2, 3]))
    }

    /// One full-batch step; returns the loss before the update.
    @discardableResult
    func trainStep(_ x: Tensor, _ y: Tensor, _ opt: Optimizer) -> Float {
        opt.zeroGrad()
        let loss = F.crossEntropy(self(x), y)
        loss.backward()
        opt.step()
        return loss.item()
    }
}
