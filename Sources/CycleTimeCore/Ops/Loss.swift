// Losses, linear, dropout (owner: sampling family).

extension F {
    /// F.linear: x [..., in] @ weight[out, in]^T + bias[out].
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor { fatalError("unimplemented: linear") }
    /// F.dropout (inverted dropout: kept values scaled by 1/(1-p)); identity when not training.
    public static func dropout(_ x: Tensor, p: Float, training: Bool, generator: inout RandomGenerator) -> Tensor { fatalError("unimplemented: dropout") }
    /// F.mse_loss.
    public static func mseLoss(_ input: Tensor, _ target: Tensor, reduction: Reduction = .mean) -> Tensor { fatalError("unimplemented: mseLoss") }
    /// F.binary_cross_entropy_with_logits, with optional per-element `weight`, `posWeight`, and
    /// optional focal weighting (alpha, gamma) as in mmaction2's BCE-with-logits focal variant:
    /// loss = alpha * (1 - p_t)^gamma * bce.
    public static func binaryCrossEntropyWithLogits(_ logits: Tensor, _ target: Tensor, weight: Tensor? = nil,
                                                    posWeight: Tensor? = nil, reduction: Reduction = .mean,
                                                    focalAlpha: Float? = nil, focalGamma: Float? = nil) -> Tensor { fatalError("unimplemented: bceWithLogits") }
    /// F.cross_entropy from logits [N, C] or [N, C, d...] and class indices [N] / [N, d...] (as Float);
    /// `ignoreIndex` entries excluded; `labelSmoothing` as PyTorch.
    public static func crossEntropy(_ logits: Tensor, _ target: Tensor, reduction: Reduction = .mean,
                                    ignoreIndex: Int = -100, labelSmoothing: Float = 0) -> Tensor { fatalError("unimplemented: crossEntropy") }
}
