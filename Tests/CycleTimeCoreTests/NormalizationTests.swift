import XCTest
@testable import CycleTimeCore
import TestSupport

final class NormalizationTests: XCTestCase {
    func testBatchNormAgainstPyTorch() throws {
        let fx = try Fixtures.load("conv_bn")
        for (name, training) in [("train4d", true), ("train2d", true), ("train5d_noaffine", true), ("eval4d", false)] {
            let x = fx.t("\(name).x").requiringGrad()
            let w = fx["\(name).w"]?.requiringGrad(), b = fx["\(name).b"]?.requiringGrad()
            let rm = fx.t("\(name).rm").clone(), rv = fx.t("\(name).rv").clone()
            let y = F.batchNorm(x, runningMean: rm, runningVar: rv, weight: w, bias: b, training: training, momentum: 0.1, eps: 1e-5)
            assertClose(y, fx.t("\(name).y"), rtol: 1e-5, atol: 1e-5, name)
            assertClose(rm, fx.t("\(name).rm_after"), rtol: 1e-5, atol: 1e-6, "running mean " + name)
            assertClose(rv, fx.t("\(name).rv_after"), rtol: 1e-5, atol: 1e-6, "running var " + name)
            y.backward(fx.t("\(name).gy"))
            assertClose(x.grad!, fx.t("\(name).dx"), rtol: 1e-4, atol: 1e-5, "dx " + name)
            if let w, let b {
                assertClose(w.grad!, fx.t("\(name).dw"), rtol: 1e-5, atol: 1e-5, "dw " + name)
                assertClose(b.grad!, fx.t("\(name).db"), rtol: 1e-5, atol: 1e-5, "db " + name)
            }
        }
    }

    func testGradcheckTraining() {
        gradcheck([randn([3, 2, 3, 4], seed: 1), randn([2], seed: 2), randn([2], seed: 3)], eps: 1e-2) { t in
            F.batchNorm(t[0], runningMean: nil, runningVar: nil, weight: t[1], bias: t[2], training: true)
        }
        gradcheck([randn([5, 3], seed: 4)]) { t in
            F.batchNorm(t[0], runningMean: Tensor.zeros([3]), runningVar: Tensor.ones([3]), weight: nil, bias: nil, training: true)
        }
    }

    func testGradcheckEval() {
        let rm = randn([2], seed: 5, requiresGrad: false), rv = Tensor([0.5, 2], shape: [2])
        gradcheck([randn([2, 2, 3, 2], seed: 6), randn([2], seed: 7), randn([2], seed: 8)]) { t in
            F.batchNorm(t[0], runningMean: rm, runningVar: rv, weight: t[1], bias: t[2], training: false)
        }
    }
}
