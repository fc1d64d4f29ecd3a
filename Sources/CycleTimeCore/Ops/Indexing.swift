// Gather, index-select, top-k (owner: elementwise family).

extension Tensor {
    /// torch.gather(self, axis, index): index holds integer values (as Float) with self's rank.
    public func gathered(axis: Int, index: Tensor) -> Tensor { fatalError("unimplemented: gathered") }
    /// torch.index_select(self, axis, indices).
    public func indexSelect(axis: Int, indices: [Int]) -> Tensor { fatalError("unimplemented: indexSelect") }
    /// torch.topk: the k largest (or smallest) along `axis`, sorted; indices as Float.
    /// Gradient flows through the values.
    public func topk(_ k: Int, axis: Int = -1, largest: Bool = true) -> (values: Tensor, indices: Tensor) { fatalError("unimplemented: topk") }
}
