import XCTest
@testable import CycleTimeCore
import TestSupport

/// Every op family frees its graph: nothing (tensor storage, backward record, output) outlives a
/// forward + backward, or a forward whose output is dropped without backward.
final class GraphLeakTests: XCTestCase {
    func testElementwiseOpsFreeTheirGraph() {
        assertGraphIsFreed("elementwise") {
            let a = randn([3, 4], seed: 1), b = randn([4], seed: 2), c = randn([3, 1], seed: 3)
            let pos = a.abs() + 0.5
            let u = (a + b) * c - b / (c.abs() + 1)
            let v = pos.log() + pos.sqrt() + pos.pow(1.5) + pos.pow(2) + (-a).exp()
            let w = a.relu() + a.leakyRelu(0.1) + a.sigmoid() + a.tanh() + a.clamp(min: -0.5, max: 0.5)
            let m = Tensor.where(Tensor([1, 0, 1, 0], shape: [4]), u, v).maskedFill(Tensor([0, 1, 0, 0], shape: [4]), 2)
            return m * w
        }
    }

    func testReductionOpsFreeTheirGraph() {
        assertGraphIsFreed("reduction") {
            let x = randn([2, 3, 4], seed: 4)
            return x.sum() + x.mean() + x.max() + x.sum(axes: [0, 2]).sum() + x.mean(axis: 1).max(axis: 0, keepdim: true).sum()
        }
    }

    func testShapeOpsFreeTheirGraph() {
        assertGraphIsFreed("shape") {
            let x = randn([2, 3, 4], seed: 5), y = randn([2, 1, 4], seed: 6)
            let z = Tensor.cat([x, y.expanded(to: [2, 2, 4])], axis: 1)      // [2, 5, 4]
            let p = z.permuted(2, 0, 1).transposed(1, 2).reshaped([4, 10])      // [4, 10]
            let s = p.sliced(axis: 1, start: 1, end: 9, step: 2).unsqueezed(axis: 0).squeezed(axis: 0)
            let padded = F.pad(s.reshaped([1, 1, 4, 4]), [1, 2, 2, 1], mode: .reflect)
            return Tensor.stack([padded.flattened(), F.pad(s, [1, 2, 2, 1], value: 0.5).flattened()])
        }
    }

    func testConvolutionsFreeTheirGraphOnEveryPath() {
        let saved = ConvolutionPolicy.current
        defer { ConvolutionPolicy.current = saved }
        for keep in [false, true] {
            ConvolutionPolicy.current.keepColumns = keep
            ConvolutionPolicy.current.backend = .native
            assertGraphIsFreed("conv2d winograd, keepColumns \(keep)") {
                F.conv2d(randn([1, 3, 6, 6], seed: 7), weight: randn([4, 3, 3, 3], seed: 8), bias: randn([4], seed: 9), padding: [1, 1])
            }
            assertGraphIsFreed("conv2d im2col (strided, grouped), keepColumns \(keep)") {
                F.conv2d(randn([2, 4, 7, 6], seed: 10), weight: randn([6, 2, 3, 3], seed: 11), bias: randn([6], seed: 12),
                         stride: [2, 1], padding: [1, 1], groups: 2)
            }
            assertGraphIsFreed("conv2d batch-parallel, keepColumns \(keep)") {
                F.conv2d(randn([2 * Parallel.threadCount, 2, 5, 5], seed: 13), weight: randn([3, 2, 3, 3], seed: 14),
                         stride: [2, 2], padding: [1, 1])
            }
            assertGraphIsFreed("conv2d pointwise and reflect padding, keepColumns \(keep)") {
                let x = randn([2, 3, 5, 5], seed: 15)
                return F.conv2d(F.conv2d(x, weight: randn([4, 3, 1, 1], seed: 16)), weight: randn([2, 4, 3, 3], seed: 17),
                                padding: [1, 2], paddingMode: .reflect)
            }
            assertGraphIsFreed("conv3d, keepColumns \(keep)") {
                F.conv3d(randn([1, 2, 3, 4, 4], seed: 18), weight: randn([3, 2, 2, 3, 3], seed: 19), bias: randn([3], seed: 20),
                         padding: [0, 1, 1])
            }
        }
    }

    func testPoolingOpsFreeTheirGraph() {
        assertGraphIsFreed("pooling") {
            let x = randn([2, 3, 6, 6], seed: 21), v = randn([1, 2, 4, 4, 4], seed: 22)
            let a = F.maxPool2d(x, kernel: [3, 3], stride: [2, 2], padding: [1, 1]).sum()
            let b = F.avgPool2d(x, kernel: [2, 2]).sum() + F.adaptiveAvgPool2d(x, outputSize: [1, 1]).sum()
            let c = F.maxPool3d(v, kernel: [2, 2, 2]).sum() + F.avgPool3d(v, kernel: [2, 2, 2]).sum()
                + F.adaptiveAvgPool3d(v, outputSize: [1, 2, 2]).sum()
            return a + b + c
        }
    }

    func testBatchNormFreesItsGraph() {
        for training in [true, false] {
            assertGraphIsFreed("batchNorm training \(training)") {
                F.batchNorm(randn([4, 3, 2, 2], seed: 23), runningMean: Tensor.zeros([3]), runningVar: Tensor.ones([3]),
                            weight: randn([3], seed: 24), bias: randn([3], seed: 25), training: training)
            }
        }
    }

    func testSoftmaxOpsFreeTheirGraph() {
        assertGraphIsFreed("softmax") {
            let x = randn([2, 5, 3], seed: 26)
            return x.softmax(axis: 1) + x.logSoftmax(axis: -1) + F.normalize(x, axis: 1)
        }
    }

    func testLossesLinearAndDropoutFreeTheirGraph() {
        assertGraphIsFreed("loss") {
            var gen = RandomGenerator(seed: 27)
            let x = randn([4, 6], seed: 28)
            let h = F.dropout(F.linear(x, weight: randn([5, 6], seed: 29), bias: randn([5], seed: 30)), p: 0.3,
                              training: true, generator: &gen)
            let target = Tensor([0, 4, 2, 1], shape: [4])
            let ce = F.crossEntropy(h, target, labelSmoothing: 0.1)
            let bce = F.binaryCrossEntropyWithLogits(h, randn([4, 5], seed: 31).sigmoid(), weight: randn([5], seed: 32).abs(),
                                                     posWeight: randn([5], seed: 33).abs(), focalGamma: 2)
            return ce + bce + F.mseLoss(h, randn([4, 5], seed: 34), reduction: .sum)
        }
    }

    func testSamplingOpsFreeTheirGraph() {
        assertGraphIsFreed("sampling") {
            let x = randn([1, 2, 5, 6], seed: 35)
            let theta = randn([1, 2, 3], seed: 36, scale: 0.3)
            let grid = F.affineGrid(theta, size: [1, 2, 4, 4], alignCorners: false)
            let s = F.gridSample(x, grid: grid, alignCorners: false).sum()
            let up = F.interpolate(x, size: [7, 9], mode: .bilinear, alignCorners: true).sum()
                + F.interpolate(x, scaleFactor: [2, 2]).sum()
            let rois = Tensor([0, 0.5, 0.5, 4, 3.5, 0, 1, 1, 5, 4], shape: [2, 5])
            return s + up + F.roiAlign(x, rois: rois, outputSize: [2, 2], samplingRatio: 2).sum()
        }
    }

    func testIndexingOpsFreeTheirGraph() {
        assertGraphIsFreed("indexing") {
            let x = randn([3, 5], seed: 37)
            let g = x.gathered(axis: 1, index: Tensor([0, 4, 1, 2, 2, 3], shape: [3, 2]))
            return g.sum() + x.indexSelect(axis: 0, indices: [2, 0, 2]).sum() + x.topk(2, axis: 1).values.sum()
        }
    }

    func testMatmulFreesItsGraph() {
        assertGraphIsFreed("linalg") {
            let a = randn([2, 3, 4], seed: 38), b = randn([4, 5], seed: 39), v = randn([5], seed: 40)
            return a.matmul(b).matmul(v)
        }
    }
}
