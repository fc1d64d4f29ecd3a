import CycleTimeCore

/// A sum over the processes of a data-parallel job (e.g. an MPI all-reduce), for synchronized
/// batch norm. Every process calls it in the same order with tensors of the same shape; the
/// result is differentiable: its backward sums the output gradient over the processes the same way.
public protocol CrossProcessSum: AnyObject {
    func sumAcrossProcesses(_ t: Tensor) -> Tensor
}

extension Module {
    /// Makes every batch norm of this model use statistics over all processes in training
    /// (`nn.SyncBatchNorm`), or per process again with nil.
    public func synchronizeBatchNorm(_ reducer: CrossProcessSum?) {
        for m in modules() { (m as? BatchNormBase)?.statisticsReducer = reducer }
    }
}

extension BatchNormBase {
    /// Training-mode batch norm with the statistics of the whole job: the per-channel sum and the
    /// element count, then the sum of squared deviations from the global mean, are summed over the
    /// processes (two passes, as the local kernel). Gradients flow through the sums, so the
    /// backward is nn.SyncBatchNorm's (sum(dy) and sum(dy * xhat) over all processes).
    func synchronizedForward(_ x: Tensor, reducer: CrossProcessSum, momentum factor: Float) -> Tensor {
        let C = numFeatures
        let axes = [0] + Array(2..<x.rank)
        let bshape = [1, C] + Array(repeating: 1, count: x.rank - 2)
        let local = x.sum(axes: axes)
        let sums = reducer.sumAcrossProcesses(Tensor.cat([local, Tensor([Float(x.count / C)], shape: [1])], axis: 0))
        let total = sums.data[C]
        precondition(total > 1, "\(type(of: self)): expected more than 1 value per channel when training, got \(total) over all processes")
        let mean = sums.sliced(axis: 0, start: 0, end: C) * (1 / total)
        let centered = x - mean.reshaped(bshape)
        let squares = reducer.sumAcrossProcesses((centered * centered).sum(axes: axes))
        let invstd = 1 / (squares * (1 / total) + eps).sqrt()
        var y = centered * invstd.reshaped(bshape)
        if let weight { y = y * weight.reshaped(bshape) }
        if let bias { y = y + bias.reshaped(bshape) }
        if trackRunningStats, let rm = runningMean, let rv = runningVar {
            for c in 0..<C {
                rm.data[c] = (1 - factor) * rm.data[c] + factor * mean.data[c]
                rv.data[c] = (1 - factor) * rv.data[c] + factor * squares.data[c] / (total - 1)
            }
        }
        return y
    }
}
