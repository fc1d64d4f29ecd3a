import CycleTimeCore
import CycleTimeNN
import TestSupport
import XCTest

/// One process: the sum over processes is the identity.
final class LocalSum: CrossProcessSum {
    var calls = 0
    func sumAcrossProcesses(_ t: Tensor) -> Tensor {
        calls += 1
        return t * 1
    }
}

/// Two processes holding the same batch: the sums are doubled (forward and backward).
final class TwinSum: CrossProcessSum {
    func sumAcrossProcesses(_ t: Tensor) -> Tensor { t * 2 }
}

final class SyncBatchNormTests: XCTestCase {
    func makeBN(_ c: Int, seed: UInt64) -> BatchNorm2d {
        let bn = BatchNorm2d(c)
        bn.weight = randn([c], seed: seed, requiresGrad: true)
        bn.bias = randn([c], seed: seed + 1, requiresGrad: true)
        return bn
    }

    /// With one process synchronized batch norm is batch norm: output, running statistics and
    /// the gradients of input, weight and bias.
    func testOneProcessEqualsBatchNorm() {
        let x = randn([3, 4, 5, 6], seed: 1, scale: 2)
        let gy = randn([3, 4, 5, 6], seed: 2, requiresGrad: false)
        let plain = makeBN(4, seed: 3), synced = makeBN(4, seed: 3)
        let reducer = LocalSum()
        synced.synchronizeBatchNorm(reducer)
        let y0 = plain(x)
        (y0 * gy).sum().backward()
        let gx0 = x.grad!.clone()
        x.grad = nil
        let y1 = synced(x)
        (y1 * gy).sum().backward()
        XCTAssertEqual(reducer.calls, 2)
        assertClose(y1, y0, rtol: 1e-5, atol: 1e-5)
        assertClose(x.grad!, gx0, rtol: 1e-4, atol: 1e-5)
        assertClose(synced.weight!.grad!, plain.weight!.grad!, rtol: 1e-4, atol: 1e-5)
        assertClose(synced.bias!.grad!, plain.bias!.grad!, rtol: 1e-4, atol: 1e-5)
        assertClose(synced.runningMean!, plain.runningMean!, rtol: 1e-5, atol: 1e-6)
        assertClose(synced.runningVar!, plain.runningVar!, rtol: 1e-5, atol: 1e-6)
        XCTAssertEqual(synced.numBatchesTracked!.data[0], 1)
        // Evaluation uses the running statistics, not the reducer.
        synced.eval(); plain.eval()
        assertClose(synced(x), plain(x), rtol: 1e-5, atol: 1e-5)
    }

    /// Two processes with the same batch: the statistics are those of the batch twice (the same
    /// mean, and the unbiased running variance over 2x the elements).
    func testStatisticsAreThoseOfAllProcesses() {
        let x = randn([2, 3, 4, 4], seed: 5)
        let twin = makeBN(3, seed: 6), plain = makeBN(3, seed: 6)
        twin.synchronizeBatchNorm(TwinSum())
        let y = twin(x)
        let both = plain(Tensor.cat([x, x], axis: 0))
        assertClose(y, both.sliced(axis: 0, start: 0, end: 2), rtol: 1e-5, atol: 1e-5)
        assertClose(twin.runningVar!, plain.runningVar!, rtol: 1e-5, atol: 1e-6)
        assertClose(twin.runningMean!, plain.runningMean!, rtol: 1e-5, atol: 1e-6)
    }

    func testGradcheck() {
        let x = randn([2, 3, 3, 2], seed: 7)
        let bn = makeBN(3, seed: 8)
        bn.synchronizeBatchNorm(TwinSum())
        let gy = randn([2, 3, 3, 2], seed: 9, requiresGrad: false)
        gradcheck([x, bn.weight!, bn.bias!]) { (bn($0[0]) * gy).sum() }
    }
}
