import Foundation
import XCTest
@testable import CycleTimeCore
import TestSupport

/// The autodiff engine itself (Autograd.swift): accumulation, graph shape, freeing, grad mode.
final class AutogradTests: XCTestCase {
    let xs: [Float] = [-1.5, -0.25, 0.5, 2]

    func testATensorUsedTwiceByOneOpReceivesBothGradients() {
        let x = Tensor(xs, shape: [4], requiresGrad: true)
        (x * x).sum().backward()
        XCTAssertEqual(x.grad!.array, xs.map { 2 * $0 })
        x.grad = nil
        (x + x).sum().backward()
        XCTAssertEqual(x.grad!.array, [2, 2, 2, 2])
    }

    func testAnIntermediateUsedByTwoOpsReceivesTheSumOfBothGradients() {
        // y = h * h + h with h = exp(x): dy/dx = (2 h + 1) h.
        let x = Tensor(xs, shape: [4], requiresGrad: true)
        let h = x.exp()
        (h * h + h).sum().backward()
        let expected = xs.map { v -> Float in let e = Foundation.exp(v); return (2 * e + 1) * e }
        assertClose(x.grad!, Tensor(expected, shape: [4]), rtol: 1e-6, atol: 0)
    }

    func testDiamondGraphSumsTheGradientsOfBothPaths() {
        // h = sigmoid(x); y = 3 h + tanh(h): two paths from h to y join again.
        let x = Tensor(xs, shape: [4], requiresGrad: true)
        let h = x.sigmoid()
        let y = h * 3 + h.tanh()
        y.sum().backward()
        let expected = xs.map { v -> Float in
            let s = 1 / (1 + Foundation.exp(-v)), t = Foundation.tanh(s)
            return (3 + (1 - t * t)) * s * (1 - s)
        }
        assertClose(x.grad!, Tensor(expected, shape: [4]), rtol: 1e-5, atol: 1e-7)
    }

    func testBroadcastGradientsComeBackInTheShapeOfEachInput() {
        let a = Tensor([1, 2, 3], shape: [3, 1], requiresGrad: true)
        let b = Tensor([10, 20, 30, 40], shape: [1, 4], requiresGrad: true)
        (a * b).sum().backward()
        XCTAssertEqual(a.grad!.shape, [3, 1])
        XCTAssertEqual(b.grad!.shape, [1, 4])
        XCTAssertEqual(a.grad!.array, [100, 100, 100])
        XCTAssertEqual(b.grad!.array, [6, 6, 6, 6])
    }

    func testLeafGradientsAccumulateAcrossBackwardCallsUntilReset() {
        let x = Tensor(xs, shape: [4], requiresGrad: true)
        (x * x).sum().backward()
        (x * x).sum().backward()
        XCTAssertEqual(x.grad!.array, xs.map { 4 * $0 }, "two backward calls add up, as in PyTorch")
        x.grad = nil
        (x * x).sum().backward()
        XCTAssertEqual(x.grad!.array, xs.map { 2 * $0 }, "after zeroing, accumulation starts again")
    }

    func testBackwardLeavesTheCallersGradientUntouched() {
        // add passes the output gradient through unchanged, so both inputs (and the leaf) first
        // receive the caller's tensor itself: accumulation must copy it, never add into it.
        let x = Tensor(xs, shape: [4], requiresGrad: true)
        let seed = Tensor([1, 2, 3, 4], shape: [4])
        (x + x).backward(seed)
        XCTAssertEqual(seed.array, [1, 2, 3, 4])
        XCTAssertEqual(x.grad!.array, [2, 4, 6, 8])

        let z = Tensor(xs, shape: [4], requiresGrad: true)
        let h = z * 2
        (h + h).backward(seed)
        XCTAssertEqual(seed.array, [1, 2, 3, 4])
        XCTAssertEqual(z.grad!.array, [4, 8, 12, 16])
        XCTAssertFalse(z.grad!.storage === seed.storage)
    }

    func testBackwardOnALeafCopiesTheGradientIntoGrad() {
        let x = Tensor(xs, shape: [4], requiresGrad: true)
        let seed = Tensor([1, 1, 2, 2], shape: [4])
        x.backward(seed)
        XCTAssertEqual(x.grad!.array, [1, 1, 2, 2])
        XCTAssertFalse(x.grad!.storage === seed.storage)
    }

    func testOnlyInputsThatRequireGradGetEdgesAndGradients() {
        let x = Tensor(xs, shape: [4], requiresGrad: true)
        let c = Tensor([1, 2, 3, 4], shape: [4])
        let y = x * c
        XCTAssertEqual(y.gradFn?.inputCount, 2)
        guard case .leaf(let leaf) = y.gradFn!.edges[0] else { return XCTFail("x should be a leaf edge") }
        XCTAssertTrue(leaf === x)
        guard case .none = y.gradFn!.edges[1] else { return XCTFail("a constant needs no edge") }
        y.sum().backward()
        XCTAssertNil(c.grad)
        XCTAssertEqual(x.grad!.array, [1, 2, 3, 4])
    }

    func testTheGraphIsFreedAfterBackward() {
        let x = Tensor(xs, shape: [4], requiresGrad: true)
        weak var sigmoidRecord: GradFn?
        weak var savedOutput: Storage?
        weak var rootRecord: GradFn?
        var loss: Tensor? = nil
        do {
            let h = x.sigmoid()  // saves its own output (as a detached view) for backward
            sigmoidRecord = h.gradFn
            savedOutput = h.storage
            loss = (h * 2).sum()
            rootRecord = loss!.gradFn
        }
        XCTAssertNotNil(sigmoidRecord, "before backward the graph keeps the sigmoid's record")
        XCTAssertNotNil(savedOutput, "before backward the sigmoid's saved output is alive")
        loss!.backward()
        XCTAssertNil(loss!.gradFn, "backward detaches the root from its record")
        XCTAssertNil(sigmoidRecord, "backward releases every record of the graph")
        XCTAssertNil(rootRecord)
        XCTAssertNil(savedOutput, "saved tensors are released with their records")
        loss = nil
        XCTAssertNotNil(x.grad)
    }

    func testAGraphDroppedWithoutBackwardIsFreed() {
        // No retain cycle output -> record -> closure -> output: dropping the output frees it all.
        let x = Tensor(xs, shape: [4], requiresGrad: true)
        weak var out: Tensor?
        weak var record: GradFn?
        weak var savedOutput: Storage?
        do {
            let y = x.exp().relu().sigmoid().tanh()
            out = y; record = y.gradFn; savedOutput = y.storage
            XCTAssertNotNil(out)
        }
        XCTAssertNil(out)
        XCTAssertNil(record)
        XCTAssertNil(savedOutput)
    }

    func testNoGradRecordsNothingAndRestoresTheMode() {
        let x = Tensor(xs, shape: [4], requiresGrad: true)
        let y = noGrad { (x * x).exp().sum() }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertNil(y.gradFn)
        XCTAssertTrue(GradMode.isEnabled)
        noGrad {
            noGrad { XCTAssertFalse(GradMode.isEnabled) }
            XCTAssertFalse(GradMode.isEnabled, "an inner scope restores the outer scope's mode")
        }
        XCTAssertTrue(GradMode.isEnabled)
        let z = (x * x).sum()
        XCTAssertTrue(z.requiresGrad)
        XCTAssertNotNil(z.gradFn)
    }

    func testNoGradOnOneThreadDoesNotSwitchRecordingOffOnAnother() {
        let x = Tensor(xs, shape: [4], requiresGrad: true)
        nonisolated(unsafe) var otherRecorded = false
        noGrad {
            let t = Thread { otherRecorded = GradMode.isEnabled && (x * x).gradFn != nil }
            t.start()
            while !t.isFinished { usleep(1000) }
        }
        XCTAssertTrue(otherRecorded)
    }

    func testOpsOnTensorsThatNeedNoGradRecordNothing() {
        let a = Tensor(xs, shape: [4]), b = Tensor(xs, shape: [4])
        let y = (a * b).exp()
        XCTAssertFalse(y.requiresGrad)
        XCTAssertNil(y.gradFn)
    }

    func testDetachSharesValuesButLeavesTheGraph() {
        let x = Tensor(xs, shape: [4], requiresGrad: true)
        let y = x * 2
        let d = y.detach()
        XCTAssertTrue(d.storage === y.storage)
        XCTAssertFalse(d.requiresGrad)
        XCTAssertNil(d.gradFn)
        (d * x).sum().backward()
        XCTAssertEqual(x.grad!.array, xs.map { 2 * $0 }, "no gradient flows through the detached factor")
    }
}
