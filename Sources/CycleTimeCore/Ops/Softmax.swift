// Softmax family and normalization along an axis (owner: sampling family).

extension Tensor {
    public func softmax(axis: Int) -> Tensor { fatalError("unimplemented: softmax") }
    public func logSoftmax(axis: Int) -> Tensor { fatalError("unimplemented: logSoftmax") }
}

extension F {
    /// F.normalize: x / max(||x||_p, eps) along `axis` (p = 2).
    public static func normalize(_ x: Tensor, axis: Int = 1, eps: Float = 1e-12) -> Tensor { fatalError("unimplemented: normalize") }
    /// F.softmax / F.log_softmax.
    public static func softmax(_ x: Tensor, axis: Int) -> Tensor { x.softmax(axis: axis) }
    public static func logSoftmax(_ x: Tensor, axis: Int) -> Tensor { x.logSoftmax(axis: axis) }
}
