import Foundation
import XCTest
@testable import CycleTimeCore
import TestSupport

final class ConvolutionTests: XCTestCase {
    struct Case { let name: String; let dims: Int; let stride: [Int]; let padding: [Int]; let dilation: [Int]; let groups: Int; let mode: PadMode }
    static let cases: [Case] = [
        Case(name: "basic", dims: 2, stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1, mode: .zeros),
        Case(name: "stride2", dims: 2, stride: [2, 2], padding: [1, 1], dilation: [1, 1], groups: 1, mode: .zeros),
        Case(name: "dil", dims: 2, stride: [1, 2], padding: [2, 1], dilation: [2, 3], groups: 1, mode: .zeros),
        Case(name: "groups", dims: 2, stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 2, mode: .zeros),
        Case(name: "depthwise", dims: 2, stride: [2, 2], padding: [1, 1], dilation: [1, 1], groups: 6, mode: .zeros),
        Case(name: "reflect", dims: 2, stride: [1, 1], padding: [1, 2], dilation: [1, 1], groups: 1, mode: .reflect),
        Case(name: "pointwise", dims: 2, stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1, mode: .zeros),
        Case(name: "pointwise_s2", dims: 2, stride: [2, 2], padding: [0, 0], dilation: [1, 1], groups: 1, mode: .zeros),
        Case(name: "k7s2", dims: 2, stride: [2, 2], padding: [3, 3], dilation: [1, 1], groups: 1, mode: .zeros),
        Case(name: "c3d", dims: 3, stride: [1, 2, 1], padding: [1, 1, 0], dilation: [1, 1, 1], groups: 1, mode: .zeros),
        Case(name: "c3d_groups_dil", dims: 3, stride: [1, 1, 1], padding: [0, 1, 1], dilation: [2, 1, 1], groups: 2, mode: .zeros),
    ]

    func run(_ c: Case, _ x: Tensor, _ w: Tensor, _ b: Tensor?) -> Tensor {
        c.dims == 2
            ? F.conv2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups, paddingMode: c.mode)
            : F.conv3d(x, weight: w, bias: b, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
    }

    /// Values and gradients against PyTorch, in both the whole-batch and the per-image chunking.
    func testAgainstPyTorch() throws {
        let fx = try Fixtures.load("conv")
        let savedBytes = ConvTuning.maxColumnBytes, savedKeep = ConvTuning.keepColumns
        let savedAsConv = ConvTuning.inputGradientAsConvolution, savedBP = ConvTuning.batchParallel
        defer {
            ConvTuning.maxColumnBytes = savedBytes; ConvTuning.keepColumns = savedKeep
            ConvTuning.inputGradientAsConvolution = savedAsConv; ConvTuning.batchParallel = savedBP
        }
        let variants = [(savedBytes, false, true, true), (savedBytes, false, false, true), (1 << 30, true, false, false),
                        (1 << 30, false, true, false), (1, false, false, false)]
        for (bytes, keep, asConv, bp) in variants {
            ConvTuning.maxColumnBytes = bytes; ConvTuning.keepColumns = keep; ConvTuning.inputGradientAsConvolution = asConv
            ConvTuning.batchParallel = bp
            for c in Self.cases {
                let x = fx.t("\(c.name).x").requiringGrad(), w = fx.t("\(c.name).w").requiringGrad()
                let b = fx["\(c.name).b"]?.requiringGrad()
                x.grad = nil; w.grad = nil; b?.grad = nil
                let y = run(c, x, w, b)
                let msg = "\(c.name) (column bytes \(bytes), keep \(keep), dx as conv \(asConv), batch-parallel \(bp))"
                assertClose(y, fx.t("\(c.name).y"), rtol: 1e-4, atol: 1e-5, msg)
                y.backward(fx.t("\(c.name).gy"))
                assertClose(x.grad!, fx.t("\(c.name).dx"), rtol: 1e-4, atol: 1e-5, "dx " + msg)
                assertClose(w.grad!, fx.t("\(c.name).dw"), rtol: 1e-4, atol: 1e-5, "dw " + msg)
                if let b { assertClose(b.grad!, fx.t("\(c.name).db"), rtol: 1e-4, atol: 1e-5, "db " + msg) }
            }
        }
    }

    func testGradcheckConv2d() {
        gradcheck([randn([2, 4, 5, 6], seed: 1), randn([6, 2, 3, 2], seed: 2, scale: 0.5), randn([6], seed: 3)]) { t in
            F.conv2d(t[0], weight: t[1], bias: t[2], stride: [2, 1], padding: [1, 1], dilation: [1, 2], groups: 2)
        }
        gradcheck([randn([1, 2, 5, 6], seed: 4), randn([3, 2, 3, 3], seed: 5, scale: 0.5)]) { t in
            F.conv2d(t[0], weight: t[1], padding: [2, 1], paddingMode: .reflect)
        }
        gradcheck([randn([2, 3, 3, 4], seed: 6), randn([2, 3, 1, 1], seed: 7, scale: 0.5), randn([2], seed: 8)]) { t in
            F.conv2d(t[0], weight: t[1], bias: t[2])
        }
    }

    func testGradcheckConv3d() {
        gradcheck([randn([1, 2, 4, 4, 5], seed: 1), randn([4, 1, 2, 3, 2], seed: 2, scale: 0.5), randn([4], seed: 3)]) { t in
            F.conv3d(t[0], weight: t[1], bias: t[2], stride: [1, 2, 1], padding: [1, 1, 0], dilation: [1, 1, 2], groups: 2)
        }
    }

    func testUnbatchedInput() {
        let x = randn([3, 5, 5], seed: 1, requiresGrad: false), w = randn([2, 3, 3, 3], seed: 2, requiresGrad: false)
        let y = F.conv2d(x, weight: w, padding: [1, 1])
        let yb = F.conv2d(x.reshaped([1, 3, 5, 5]), weight: w, padding: [1, 1])
        XCTAssertEqual(y.shape, [2, 5, 5])
        XCTAssertEqual(y.array, yb.array)
    }

    /// Release-mode timing of ResNet-18 trunk convolutions (batch 8, 240x240 input); runs only
    /// with CYCLETIME_PERF=1: `CYCLETIME_PERF=1 swift test -c release --filter ConvolutionTests/testPerformanceResNet18`.
    func testPerformanceResNet18() throws {
        guard ProcessInfo.processInfo.environment["CYCLETIME_PERF"] == "1" else { throw XCTSkip("set CYCLETIME_PERF=1 to run") }
        func now() -> Double { Date().timeIntervalSince1970 }
        // Process CPU time: a contention-robust measure on a shared machine (GFLOP per CPU-second).
        func cpu() -> Double {
            var u = rusage()
            getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
            return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) * 1e-6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) * 1e-6
        }
        let m = 2048
        let a = Tensor.full([m * m], 0.5), bm = Tensor.full([m * m], 0.25), cm = Tensor.zeros([m * m])
        var bestG = 1e9, bestGC = 1e9
        for _ in 0..<3 {
            let t0 = now(), c0 = cpu()
            BLAS.sgemm(transA: false, transB: false, m: m, n: m, k: m, a: a.data, lda: m, b: bm.data, ldb: m, c: cm.data, ldc: m)
            bestG = min(bestG, now() - t0); bestGC = min(bestGC, cpu() - c0)
        }
        let peak = 2.0 * Double(m * m * m) / bestG / 1e9, cpuPeak = 2.0 * Double(m * m * m) / bestGC / 1e9
        print(String(format: "sgemm 2048^3: %.1f GFLOP/s wall, %.1f GFLOP per CPU-second", peak, cpuPeak))
        // (name, cin, cout, size, k, stride, pad, needs dx, count in the trunk)
        let cfgs: [(String, Int, Int, Int, Int, Int, Int, Bool, Int)] = [
            ("conv1 7x7/2 3->64", 3, 64, 240, 7, 2, 3, false, 1),
            ("layer1 3x3 64->64", 64, 64, 60, 3, 1, 1, true, 4),
            ("layer2.0 3x3/2 64->128", 64, 128, 60, 3, 2, 1, true, 1),
            ("layer2.0 ds 1x1/2", 64, 128, 60, 1, 2, 0, true, 1),
            ("layer2 3x3 128->128", 128, 128, 30, 3, 1, 1, true, 3),
            ("layer3.0 3x3 128->256", 128, 256, 30, 3, 1, 1, true, 1),
            ("layer3.0 ds 1x1", 128, 256, 30, 1, 1, 0, true, 1),
            ("layer3 3x3 256->256", 256, 256, 30, 3, 1, 1, true, 3),
        ]
        var totalFlops = 0.0, totalTime = 0.0, totalCPU = 0.0
        for (name, cin, cout, size, k, s, p, needX, count) in cfgs {
            let x = randn([8, cin, size, size], seed: 1, requiresGrad: needX)
            let w = randn([cout, cin, k, k], seed: 2, scale: 0.05)
            let ho = (size + 2 * p - k) / s + 1
            let fl = 2.0 * Double(8 * cout * ho * ho * cin * k * k)
            let gy = randn([8, cout, ho, ho], seed: 3, requiresGrad: false)
            var bf = 1e9, bb = 1e9, bc = 1e9
            for _ in 0..<3 {
                let c0 = cpu()
                let t0 = now()
                let y = F.conv2d(x, weight: w, stride: [s, s], padding: [p, p])
                let t1 = now()
                y.backward(gy)
                let t2 = now()
                bf = min(bf, t1 - t0); bb = min(bb, t2 - t1); bc = min(bc, cpu() - c0)
                x.grad = nil; w.grad = nil
            }
            let bfl = fl * (needX ? 2 : 1)
            totalFlops += Double(count) * (fl + bfl); totalTime += Double(count) * (bf + bb); totalCPU += Double(count) * bc
            print(name.padding(toLength: 24, withPad: " ", startingAt: 0) + String(format: " fwd %7.2f ms %6.1f GF/s (%3.0f%%)   bwd %7.2f ms %6.1f GF/s (%3.0f%%)   %5.1f GF/cpu-s (%3.0f%%)",
                  bf * 1e3, fl / bf / 1e9, 100 * fl / bf / 1e9 / peak, bb * 1e3, bfl / bb / 1e9, 100 * bfl / bb / 1e9 / peak,
                  (fl + bfl) / bc / 1e9, 100 * (fl + bfl) / bc / 1e9 / cpuPeak))
        }
        print(String(format: "trunk convs fwd+bwd: %.1f GFLOP in %.3f s = %.1f GFLOP/s (%.0f%% of sgemm 2048^3); CPU %.3f s = %.1f GFLOP/cpu-s (%.0f%% of sgemm's)",
                     totalFlops / 1e9, totalTime, totalFlops / totalTime / 1e9, 100 * totalFlops / totalTime / 1e9 / peak,
                     totalCPU, totalFlops / totalCPU / 1e9, 100 * totalFlops / totalCPU / 1e9 / cpuPeak))
    }

    /// The batch-parallel path gives bitwise identical gradients from run to run (needed for exact resume).
    func testBackwardIsDeterministic() {
        let x = randn([8, 16, 12, 12], seed: 11)
        let w = randn([32, 16, 3, 3], seed: 12)
        func grads() -> ([Float], [Float]) {
            x.grad = nil; w.grad = nil
            F.conv2d(x, weight: w, padding: [1, 1]).sum().backward()
            return (x.grad!.array, w.grad!.array)
        }
        let first = grads()
        for _ in 0..<5 {
            let again = grads()
            XCTAssertEqual(again.0, first.0)
            XCTAssertEqual(again.1, first.1)
        }
    }
}
