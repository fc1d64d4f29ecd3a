// Batch normalization (owner: convolution family).

extension F {
    /// F.batch_norm over channel axis 1 of [N, C, ...]. In training, normalizes with the batch's
    /// statistics (biased variance) and updates the running ones in place (unbiased variance,
    /// running = (1 - momentum) * running + momentum * batch); in evaluation uses the running ones.
    public static func batchNorm(_ x: Tensor, runningMean: Tensor?, runningVar: Tensor?, weight: Tensor?, bias: Tensor?,
                                 training: Bool, momentum: Float = 0.1, eps: Float = 1e-5) -> Tensor { fatalError("unimplemented: batchNorm") }
}
