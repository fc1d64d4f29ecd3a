import Foundation
import XCTest
@testable import CycleTimeCore
import TestSupport

private final class ThreadResult: @unchecked Sendable { var value: Bool? }

final class AutocastTests: XCTestCase {
    func requireBF16() throws {
        guard OneDNN.hasNativeBF16 else { throw XCTSkip("no AVX512-BF16 on this CPU: bf16 autocast refuses to run") }
    }

    /// norm(got - ref) / norm(ref) <= 1e-2, the bound of issue #17.
    func assertRelativeError(_ got: Tensor, _ ref: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.shape, ref.shape, what, file: file, line: line)
        guard got.shape == ref.shape else { return }
        var num = 0.0, den = 0.0
        for i in 0..<ref.count {
            let d = Double(got.data[i]) - Double(ref.data[i])
            num += d * d; den += Double(ref.data[i]) * Double(ref.data[i])
        }
        let rel = (num / max(den, 1e-300)).squareRoot()
        XCTAssertLessThanOrEqual(rel, 1e-2, "\(what): relative error \(rel)", file: file, line: line)
    }

    /// conv2d, conv3d, linear, bmm and broadcast matmul under autocast, forward and backward (the backward
    /// after the scope has closed, as in PyTorch), against torch.autocast("cpu", torch.bfloat16).
    func testAgainstPyTorchAutocastBF16() throws {
        try requireBF16()
        let fx = try Fixtures.load("autocast")
        let convs: [(String, [Int], [Int], [Int], Int)] = [
            ("conv3x3", [1, 1], [1, 1], [1, 1], 1), ("conv3x3s2", [2, 2], [1, 1], [1, 1], 1), ("conv1x1s2", [2, 2], [0, 0], [1, 1], 1),
            ("conv7x7s2", [2, 2], [3, 3], [1, 1], 1), ("conv_groups_dil", [1, 1], [2, 2], [2, 2], 2),
        ]
        for (name, stride, padding, dilation, groups) in convs {
            let x = fx.t("\(name).x").requiringGrad(), w = fx.t("\(name).w").requiringGrad(), b = fx["\(name).b"]?.requiringGrad()
            let y = try Autocast.bf16 {
                F.conv2d(x, weight: w, bias: b, stride: stride, padding: padding, dilation: dilation, groups: groups)
            }
            assertRelativeError(y, fx.t("\(name).y"), "\(name) y")
            y.backward(fx.t("\(name).gy"))
            assertRelativeError(x.grad!, fx.t("\(name).dx"), "\(name) dx")
            assertRelativeError(w.grad!, fx.t("\(name).dw"), "\(name) dw")
            if let b { assertRelativeError(b.grad!, fx.t("\(name).db"), "\(name) db") }
        }
        let convs3d: [(String, [Int], [Int])] = [("conv3d_3x3x3", [1, 1, 1], [1, 1, 1]), ("conv3d_1x3x3s2", [1, 2, 2], [0, 1, 1]),
                                                 ("conv3d_lateral", [4, 1, 1], [2, 0, 0])]
        for (name, stride, padding) in convs3d {
            let x = fx.t("\(name).x").requiringGrad(), w = fx.t("\(name).w").requiringGrad(), b = fx["\(name).b"]?.requiringGrad()
            let y = try Autocast.bf16 { F.conv3d(x, weight: w, bias: b, stride: stride, padding: padding) }
            XCTAssertEqual(y.gradFn?.name, "conv3d")
            assertRelativeError(y, fx.t("\(name).y"), "\(name) y")
            y.backward(fx.t("\(name).gy"))
            assertRelativeError(x.grad!, fx.t("\(name).dx"), "\(name) dx")
            assertRelativeError(w.grad!, fx.t("\(name).dw"), "\(name) dw")
            if let b { assertRelativeError(b.grad!, fx.t("\(name).db"), "\(name) db") }
        }
        let x = fx.t("linear.x").requiringGrad(), w = fx.t("linear.w").requiringGrad(), b = fx.t("linear.b").requiringGrad()
        let y = try Autocast.bf16 { F.linear(x, weight: w, bias: b) }
        assertRelativeError(y, fx.t("linear.y"), "linear y")
        y.backward(fx.t("linear.gy"))
        assertRelativeError(x.grad!, fx.t("linear.dx"), "linear dx")
        assertRelativeError(w.grad!, fx.t("linear.dw"), "linear dw")
        assertRelativeError(b.grad!, fx.t("linear.db"), "linear db")
        for name in ["bmm", "matmul_bcast"] {
            let a = fx.t("\(name).a").requiringGrad(), m = fx.t("\(name).b").requiringGrad()
            let y = try Autocast.bf16 { a.matmul(m) }
            assertRelativeError(y, fx.t("\(name).y"), "\(name) y")
            y.backward(fx.t("\(name).gy"))
            assertRelativeError(a.grad!, fx.t("\(name).da"), "\(name) da")
            assertRelativeError(m.grad!, fx.t("\(name).db"), "\(name) db")
        }
    }

    /// The autocast ops really run in bf16 inside the scope (their results differ from float32's by
    /// bf16 rounding) and in float32, bit for bit as before, outside it.
    func testOnlyInsideTheScopeAndOnlyTheAutocastOps() throws {
        try requireBF16()
        let x = randn([2, 8, 6, 6], seed: 1, requiresGrad: false), w = randn([4, 8, 3, 3], seed: 2, requiresGrad: false)
        let before = F.conv2d(x, weight: w, padding: [1, 1])
        let inside = try Autocast.bf16 { F.conv2d(x, weight: w, padding: [1, 1]) }
        let after = F.conv2d(x, weight: w, padding: [1, 1])
        XCTAssertEqual(before.array, after.array)
        XCTAssertNotEqual(before.array, inside.array)
        assertClose(inside, before, rtol: 0.05, atol: 0.1)
        // Not an autocast op: the same float32 result inside and outside.
        XCTAssertEqual(try Autocast.bf16 { (x * x).sum() }.item(), (x * x).sum().item())
    }

    func testScopeIsPerThreadNestsAndRestoresOnThrow() throws {
        struct Failure: Error {}
        Autocast.nativeBF16Override = true
        defer { Autocast.nativeBF16Override = nil }
        XCTAssertFalse(Autocast.isEnabled)
        XCTAssertEqual(Autocast.precision, .fp32)
        try Autocast.bf16 {
            XCTAssertTrue(Autocast.isEnabled)
            XCTAssertEqual(Autocast.precision, .bf16)
            try Autocast.bf16 { XCTAssertTrue(Autocast.isEnabled) }
            XCTAssertTrue(Autocast.isEnabled, "a nested scope restores the outer one")
            let other = ThreadResult()
            let done = DispatchSemaphore(value: 0)
            Thread { other.value = Autocast.isEnabled; done.signal() }.start()
            done.wait()
            XCTAssertEqual(other.value, false, "another thread is not in the scope")
        }
        XCTAssertThrowsError(try Autocast.bf16 { throw Failure() })
        XCTAssertFalse(Autocast.isEnabled)
        XCTAssertEqual(try Autocast.run(.fp32) { Autocast.isEnabled }, false)
        XCTAssertEqual(try Autocast.run(.bf16) { Autocast.isEnabled }, true)
    }

    /// A parameter read by several autocast ops in one scope is cast once per kernel layout, as by
    /// PyTorch's autocast weight cache; the copies are dropped when the outermost scope exits; and
    /// every value and gradient is bit for bit what casting at every use gives.
    func testWeightsAreCastOncePerScopeWithUnchangedResults() throws {
        try requireBF16()
        let w = randn([16, 8, 3, 3], seed: 3), fc = randn([5, 16], seed: 4)
        let x1 = randn([2, 8, 10, 10], seed: 5), x2 = randn([2, 8, 10, 10], seed: 6)
        /// Two convolutions and a linear layer sharing weights, forward and backward in one scope:
        /// the loss, the gradients and the scope's cache counts (reorders, hits).
        func step(_ weight: (Tensor) -> Tensor) throws -> (loss: Float, dw: [Float], dfc: [Float], reorders: Int, hits: Int) {
            w.grad = nil; fc.grad = nil
            return try Autocast.bf16 {
                let y = F.conv2d(x1, weight: weight(w), padding: [1, 1]) + F.conv2d(x2, weight: weight(w), padding: [1, 1])
                let loss = F.linear(y.mean(axes: [2, 3]), weight: weight(fc)).pow(2).sum()
                loss.backward()
                let cache = try XCTUnwrap(Autocast.weightCache.value)
                try Autocast.bf16 { XCTAssertTrue(Autocast.weightCache.value === cache, "a nested scope shares the outer cache") }
                return (loss.item(), w.grad?.array ?? [], fc.grad?.array ?? [], cache.reorders, cache.hits)
            }
        }
        let cached = try step { $0 }
        XCTAssertNil(Autocast.weightCache.value, "the copies are dropped when the scope exits")
        // w * 1 is the same values but not a leaf, so it is cast at every use.
        let uncached = try step { $0 * 1 }
        XCTAssertEqual(uncached.reorders + uncached.hits, 0)
        // w is read by 2 forward and 2 backward-data convolutions, fc by the forward and the
        // input-gradient matmul: 6 reads, of which at most 4 (one per distinct layout) reorder.
        XCTAssertEqual(cached.reorders + cached.hits, 6)
        XCTAssertLessThanOrEqual(cached.reorders, 4)
        XCTAssertEqual(cached.loss, uncached.loss)
        XCTAssertEqual(cached.dw, uncached.dw)
        XCTAssertEqual(cached.dfc, uncached.dfc)
        XCTAssertEqual(cached.dw.count, w.count)
    }

    /// bf16 copies round to nearest, ties to even, as oneDNN converts; NaN and infinities stay what
    /// they are; widening back is exact.
    func testBF16CopyRoundsToNearestEven() {
        let values: [Float] = [1, 1 + 0x1p-8, 1 + 0x1p-8 + 0x1p-23, 1 + 0x3p-8, -(1 + 0x1p-8), 0x1p-130, .infinity, -.infinity, 3.14159, 0]
        let expected: [Float] = [1, 1, 1 + 0x1p-7, 1 + 0x1p-6, -1, 0x1p-130, .infinity, -.infinity, 3.140625, 0]
        let copy = BF16Copy(Tensor(values + [.nan], shape: [11])).tensor()
        XCTAssertEqual(Array(copy.array.prefix(10)), expected)
        XCTAssertTrue(copy.array[10].isNaN)
    }

    /// Inside autocast a convolution saves a bf16 copy of its input, a batch norm a bf16 copy of its
    /// input and a ReLU a byte mask, so that a conv-bn-relu-conv chain keeps 0.5 + 0.5 + 0.25 + 0.5
    /// activations' worth of bytes for backward (2 in float32: the batch norm's input and the ReLU's
    /// output, which the second convolution reads too); and the weight gradient, which oneDNN
    /// computes from bf16 inputs anyway, is bit for bit the one from the float32 input.
    func testSavedTensorsAreBF16CopiesAndMasksWithTheSameWeightGradient() throws {
        try requireBF16()
        let x = randn([2, 8, 32, 32], seed: 7, requiresGrad: false)
        let w1 = randn([8, 8, 3, 3], seed: 8, scale: 0.2), w2 = randn([8, 8, 3, 3], seed: 9, scale: 0.2)
        let gamma = Tensor.full([8], 1, requiresGrad: true), beta = Tensor.zeros([8], requiresGrad: true)
        let unit = Double(x.count * MemoryLayout<Float>.stride)
        let before = StorageStats.liveBytes
        let loss = try Autocast.bf16 { () -> Tensor in
            let r = F.batchNorm(F.conv2d(x, weight: w1, padding: [1, 1]), runningMean: nil, runningVar: nil,
                                weight: gamma, bias: beta, training: true).relu()
            return F.conv2d(r, weight: w2, padding: [1, 1]).sum()
        }
        let kept = Double(StorageStats.liveBytes - before) / unit
        XCTAssertGreaterThanOrEqual(kept, 1.70)
        XCTAssertLessThanOrEqual(kept, 1.80, "activations' worth of bytes kept for backward")
        try Autocast.bf16 { loss.backward() }
        XCTAssertEqual(w1.grad?.shape, w1.shape)

        // One convolution: w's gradient equals the kernel's from the float32 input, bit for bit.
        let w = randn([8, 8, 3, 3], seed: 10), gy = randn([2, 8, 32, 32], seed: 11, requiresGrad: false)
        let y = try Autocast.bf16 { F.conv2d(x, weight: w, padding: [1, 1]) }
        y.backward(gy)
        var g = ConvGeometry()
        g.n = 2; g.cin = 8; g.h = 32; g.w = 32; g.cout = 8; g.kh = 3; g.kw = 3; g.ph = 1; g.pw = 1
        g.computeOutput()
        let reference = Tensor(uninitialized: w.shape)
        try OneDNNConv.backwardWeights(x.data, gy.data, g, reference.data, nil, precision: .bf16)
        XCTAssertEqual(w.grad?.array, reference.array)
    }

    /// Without AVX512-BF16 the scope refuses with one clear error and runs nothing.
    func testRefusesOnACPUWithoutAVX512BF16() {
        Autocast.nativeBF16Override = false
        defer { Autocast.nativeBF16Override = nil }
        var ran = false
        XCTAssertThrowsError(try Autocast.bf16 { ran = true }) { error in
            XCTAssertTrue("\(error)".hasPrefix("precision bf16 needs a CPU with AVX512-BF16"), "\(error)")
        }
        XCTAssertFalse(ran)
        XCTAssertFalse(Autocast.isEnabled)
    }
}
