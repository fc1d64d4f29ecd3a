// Reductions over axes (keepdim like PyTorch).

/// The shape with `axes` set to 1 (keepdim) and the shape with them removed.
func reducedShapes(_ shape: [Int], _ axes: [Int]) -> (keep: [Int], drop: [Int]) {
    let r = shape.count
    let ax = Set(axes.map { normalizeAxis($0, r) })
    var keep = shape, drop: [Int] = []
    for i in 0..<r { if ax.contains(i) { keep[i] = 1 } else { drop.append(shape[i]) } }
    return (keep, drop)
}

extension Tensor {
    /// Sum of all elements (a 0-d tensor).
    public func sum() -> Tensor {
        var acc: Double = 0
        // Pairwise-ish: accumulate per chunk in Double.
        let p = data
        for i in 0..<count { acc += Double(p[i]) }
        let out = Tensor(scalar: Float(acc))
        let s = shape
        return out.recording("sum", [self]) { g in [expandKernel(g.reshaped(Array(repeating: 1, count: s.count)), to: s)] }
    }

    /// Sum over `axes`; `keepdim` keeps them as size-1 dimensions.
    public func sum(axes: [Int], keepdim: Bool = false) -> Tensor {
        let (keep, drop) = reducedShapes(shape, axes)
        let reduced = unbroadcast(self, to: keep)
        let out = keepdim ? reduced : Tensor(shape: drop, storage: reduced.storage)
        let s = shape
        return out.recording("sum", [self]) { g in [expandKernel(g.reshaped(keep), to: s)] }
    }
    public func sum(axis: Int, keepdim: Bool = false) -> Tensor { sum(axes: [axis], keepdim: keepdim) }

    /// Mean of all elements.
    public func mean() -> Tensor { sum() * (1 / Float(Swift.max(count, 1))) }

    /// Mean over `axes`.
    public func mean(axes: [Int], keepdim: Bool = false) -> Tensor {
        let n = axes.map { shape[normalizeAxis($0, rank)] }.reduce(1, *)
        return sum(axes: axes, keepdim: keepdim) * (1 / Float(Swift.max(n, 1)))
    }
    public func mean(axis: Int, keepdim: Bool = false) -> Tensor { mean(axes: [axis], keepdim: keepdim) }
}

// MARK: - max / argmax (owner: elementwise family)
extension Tensor {
    /// Maximum over all elements (gradient to the first maximal element, as PyTorch's max()).
    public func max() -> Tensor { fatalError("unimplemented: max") }
    /// Maximum over `axis` (values); gradient flows to the arg-max element.
    public func max(axis: Int, keepdim: Bool = false) -> Tensor { fatalError("unimplemented: max(axis:)") }
    /// Index of the maximum over `axis` (first occurrence), as Float values; not differentiable.
    public func argmax(axis: Int, keepdim: Bool = false) -> Tensor { fatalError("unimplemented: argmax") }
}
