import CycleTimeCore
import XCTest
@testable import CycleTimeNN
import TestSupport

/// Acceptance: a small model (conv, batch norm, relu, mean-pool, linear) trained for 200 steps of
/// full-batch Adam (lr 1e-2) with cross-entropy on a fixed synthetic task reaches the same loss as
/// PyTorch from the same initial weights (fixture training_parity, scripts/fixtures/optim.py).
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

        let opt = Adam(parameters: names.map { (name: $0, tensor: p[$0]!) }, learningRate: 1e-2)
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
        XCTAssertLessThan(torchLosses.data[steps], 0.5 * torchLosses.data[0], "the task must actually train")
        for t in 0...steps {
            XCTAssertEqual(losses[t], torchLosses.data[t], accuracy: 1e-3, "loss at step \(t)")
        }
        // The weights and running statistics follow PyTorch's too.
        for n in names {
            assertClose(p[n]!, fx.t("final." + n), rtol: 1e-2, atol: 1e-3, "final \(n)")
        }
        assertClose(runningMean, fx.t("final.bn.running_mean"), rtol: 1e-3, atol: 1e-4, "running mean")
        assertClose(runningVar, fx.t("final.bn.running_var"), rtol: 1e-3, atol: 1e-4, "running var")
    }
}
