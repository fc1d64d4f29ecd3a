// Shape ops. Tensors are always contiguous, so reshape shares storage and the rest copy.

extension Tensor {
    /// Reshape (one dimension may be -1). Shares storage.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map { $0.element }.reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            s[i] = count / known
        }
        precondition(Tensor.count(of: s) == count, "cannot reshape \(shape) (\(count) elements) to \(newShape)")
        if s == shape { return self }
        let out = Tensor(shape: s, storage: storage)
        let old = shape
        return out.recording("reshape", [self]) { g in [Tensor(shape: old, storage: g.storage)] }
    }
    public func reshaped(_ dims: Int...) -> Tensor { reshaped(dims) }

    /// Flattens dimensions `start...end` into one.
    public func flattened(from start: Int = 0, to end: Int = -1) -> Tensor {
        let s = normalizeAxis(start, rank), e = normalizeAxis(end, rank)
        if s >= e { return self }
        let mid = shape[s...e].reduce(1, *)
        return reshaped(Array(shape[..<s]) + [mid] + Array(shape[(e + 1)...]))
    }

    /// Broadcasts (copies) to `shape`.
    public func expanded(to newShape: [Int]) -> Tensor {
        precondition(broadcastShapes(shape, newShape) == newShape, "cannot expand \(shape) to \(newShape)")
        let s = shape
        return expandKernel(self, to: newShape).recording("expand", [self]) { g in [unbroadcast(g, to: s)] }
    }
}

// MARK: - copying shape ops (owner: elementwise family)
extension Tensor {
    /// torch.permute.
    public func permuted(_ dims: [Int]) -> Tensor { fatalError("unimplemented: permuted") }
    public func permuted(_ dims: Int...) -> Tensor { permuted(dims) }
    /// torch.transpose(a, b).
    public func transposed(_ a: Int, _ b: Int) -> Tensor { fatalError("unimplemented: transposed") }
    /// x[..., start:end:step, ...] along `axis` (negative start/end count from the end, like Python).
    public func sliced(axis: Int, start: Int, end: Int, step: Int = 1) -> Tensor { fatalError("unimplemented: sliced") }
    public func squeezed(axis: Int) -> Tensor { fatalError("unimplemented: squeezed") }
    public func unsqueezed(axis: Int) -> Tensor { fatalError("unimplemented: unsqueezed") }
    /// torch.cat.
    public static func cat(_ tensors: [Tensor], axis: Int = 0) -> Tensor { fatalError("unimplemented: cat") }
    /// torch.stack.
    public static func stack(_ tensors: [Tensor], axis: Int = 0) -> Tensor { fatalError("unimplemented: stack") }
}

extension F {
    /// F.pad: `pads` as in PyTorch, last dimension first: [left, right, top, bottom, front, back].
    /// `.reflect` as PyTorch's reflect (edge not repeated).
    public static func pad(_ x: Tensor, _ pads: [Int], mode: PadMode = .zeros, value: Float = 0) -> Tensor { fatalError("unimplemented: pad") }
}
