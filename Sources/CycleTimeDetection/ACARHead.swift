import CycleTimeCore
import CycleTimeNN
import Foundation

/// ACAR-Net's high-order relation reasoning operator (HR2O_NL, Pan et al., CVPR 2021): attention
/// between the actor-context features of the actors of one keyframe, at every position: queries,
/// keys and values by k x k convolutions, softmax over the other actors of <q_i, k_j> / sqrt(C), the
/// attended values group-normalized (one group), ReLU, a k x k (or 1x1) convolution, dropout 0.2,
/// added to the input. Key names as the released code: conv_q, conv_k, conv_v, conv, norm.
public final class HR2O: Module {
    public let conv_q: Conv2d, conv_k: Conv2d, conv_v: Conv2d, conv: Conv2d
    public let norm: GroupNorm
    public let dp: Dropout
    public let hiddenDim: Int

    public init(hiddenDim: Int, kernelSize: Int = 3, mlp1x1: Bool = false, generator: inout RandomGenerator) {
        let p = kernelSize / 2
        func c(_ k: Int, _ pad: Int) -> Conv2d {
            Conv2d(hiddenDim, hiddenDim, kernelSize: [k, k], padding: [pad, pad], bias: false, generator: &generator)
        }
        conv_q = c(kernelSize, p); conv_k = c(kernelSize, p); conv_v = c(kernelSize, p)
        conv = mlp1x1 ? c(1, 0) : c(kernelSize, p)
        norm = GroupNorm(1, hiddenDim)
        dp = Dropout(0.2, seed: generator.next())
        self.hiddenDim = hiddenDim
        super.init()
    }

    /// x [n, C, h, w]: the n actors of one keyframe.
    public override func callAsFunction(_ x: Tensor) -> Tensor {
        let n = x.shape[0], c = x.shape[1], hw = x.shape[2] * x.shape[3]
        // att[i, j, p] = <q_i(p), k_j(p)> / sqrt(C), softmax over j; per position p a [n, C] x [C, n] product.
        let q = conv_q(x).reshaped([n, c, hw]).permuted([2, 0, 1])          // [hw, n, C]
        let k = conv_k(x).reshaped([n, c, hw]).permuted([2, 1, 0])          // [hw, C, n]
        let v = conv_v(x).reshaped([n, c, hw]).permuted([2, 0, 1])          // [hw, n, C]
        let att = (q.matmul(k) / Tensor(scalar: Float(hiddenDim).squareRoot())).softmax(axis: 2)   // [hw, i, j]
        let virt = att.matmul(v).permuted([1, 2, 0]).reshaped(x.shape)     // [n, C, h, w]
        return x + dp(conv(norm(virt).relu()))
    }
}

/// ACAR-Net's head (`ACARHead` of the released code): the time-pooled feature map reduced by a 1x1
/// convolution; each actor's RoIAlign feature (roi_spatial x roi_spatial, feature coordinates, not
/// aligned, adaptive sampling) max-pooled to a vector; per keyframe, each actor tiled over the map
/// and concatenated after it (context first), 1x1 and 3x3 (no padding) convolutions with ReLU, a 3x3
/// stride-2 max pool (`downsample`), `depth` HR2O layers over that keyframe's actors, global average
/// pooling; the classifier sees [relu(fc1(actor)), relation feature] after dropout. Key names as the
/// released code: conv_reduce, conv1, conv2, hr2o.<i>.*, fc1, fc2.
public final class ACARHead: Module {
    public let conv_reduce: Conv2d, conv1: Conv2d, conv2: Conv2d
    public let hr2o: Sequential
    public let fc1: Linear, fc2: Linear
    public let dp: Dropout
    public let roiSpatial: Int
    public let downsample: Bool

    public init(width: Int, outputs: Int, roiSpatial: Int = 7, reduceDim: Int = 1024, hiddenDim: Int = 512, depth: Int = 2,
                kernelSize: Int = 3, mlp1x1: Bool = false, downsample: Bool = true, dropout: Float = 0, bias: Bool = false,
                generator: inout RandomGenerator) {
        conv_reduce = Conv2d(width, reduceDim, kernelSize: [1, 1], bias: false, generator: &generator)
        conv1 = Conv2d(2 * reduceDim, hiddenDim, kernelSize: [1, 1], bias: false, generator: &generator)
        conv2 = Conv2d(hiddenDim, hiddenDim, kernelSize: [3, 3], bias: false, generator: &generator)
        hr2o = Sequential((0..<depth).map { _ in HR2O(hiddenDim: hiddenDim, kernelSize: kernelSize, mlp1x1: mlp1x1, generator: &generator) })
        fc1 = Linear(reduceDim, hiddenDim, bias: false, generator: &generator)
        fc2 = Linear(2 * hiddenDim, outputs, bias: bias, generator: &generator)
        dp = Dropout(dropout, seed: generator.next())
        self.roiSpatial = roiSpatial; self.downsample = downsample
        super.init()
    }

    /// Logits [K, outputs] of the time-pooled features [N, C, h, w] at `boxes` (normalized, per clip).
    public func callAsFunction(features: Tensor, boxes: [[AVABox]]) -> Tensor {
        precondition(features.rank == 4 && features.shape[0] == boxes.count, "ACARHead: features [N, C, h, w] with N box lists, got \(features.shape) and \(boxes.count)")
        let h = features.shape[2], w = features.shape[3]
        let feats = conv_reduce(features)
        let rois = AVARoIHead.rois(boxes, imageHeight: h, imageWidth: w)
        let r = F.roiAlign(feats, rois: rois, outputSize: [roiSpatial, roiSpatial], spatialScale: 1, samplingRatio: -1, aligned: false)
        let k = r.shape[0], c = r.shape[1]
        let actors = r.reshaped([k, c, roiSpatial * roiSpatial]).max(axis: 2)                    // [K, C]
        var relations: [Tensor] = [], first = 0
        for (b, list) in boxes.enumerated() where !list.isEmpty {
            let n = list.count
            let actor = actors.sliced(axis: 0, start: first, end: first + n)
            let context = feats.sliced(axis: 0, start: b, end: b + 1).expanded(to: [n, c, h, w])
            var y = Tensor.cat([context, actor.reshaped([n, c, 1, 1]).expanded(to: [n, c, h, w])], axis: 1)
            y = conv2(conv1(y).relu()).relu()
            if downsample { y = F.maxPool2d(y, kernel: [3, 3], stride: [2, 2], padding: [1, 1]) }
            y = hr2o(y)
            relations.append(y.reshaped([n, y.shape[1], y.shape[2] * y.shape[3]]).mean(axis: 2))
            first += n
        }
        let out = Tensor.cat([fc1(actors).relu(), Tensor.cat(relations, axis: 0)], axis: 1)
        return fc2(dp(out))
    }
}
