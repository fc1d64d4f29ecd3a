import Foundation

/// An n-dimensional Float32 tensor with contiguous row-major storage, and the node of the
/// autodiff graph that produced it (if any).
///
/// Every tensor is contiguous: view-like ops (permute, transpose, slicing) copy. Shapes follow
/// PyTorch's conventions (NCHW for images, NCDHW for video).
public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    public let shape: [Int]
    public let storage: Storage
    /// Whether gradients flow to this tensor. Leaves with `requiresGrad` receive `grad`.
    public var requiresGrad: Bool
    /// The accumulated gradient (leaves only), as in PyTorch.
    public var grad: Tensor?
    /// The backward record of the op that produced this tensor; nil for leaves and after `backward()`.
    public internal(set) var gradFn: GradFn?

    public init(shape: [Int], storage: Storage, requiresGrad: Bool = false) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(Tensor.count(of: shape) == storage.count,
                     "shape \(shape) needs \(Tensor.count(of: shape)) elements, storage has \(storage.count)")
        self.shape = shape
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    /// A tensor from values in row-major order.
    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) {
        self.init(shape: shape, storage: Storage(values), requiresGrad: requiresGrad)
    }

    /// A 0-dimensional tensor.
    public convenience init(scalar: Float, requiresGrad: Bool = false) {
        self.init([scalar], shape: [], requiresGrad: requiresGrad)
    }

    /// Uninitialized tensor: callers must write every element.
    public convenience init(uninitialized shape: [Int]) {
        self.init(shape: shape, storage: Storage(uninitializedCount: Tensor.count(of: shape)))
    }

    public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        Tensor(shape: shape, storage: Storage(zeros: count(of: shape)), requiresGrad: requiresGrad)
    }
    public static func ones(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        full(shape, 1, requiresGrad: requiresGrad)
    }
    public static func full(_ shape: [Int], _ value: Float, requiresGrad: Bool = false) -> Tensor {
        Tensor(shape: shape, storage: Storage(repeating: value, count: count(of: shape)), requiresGrad: requiresGrad)
    }
    public static func zeros(like t: Tensor) -> Tensor { zeros(t.shape) }
    public static func ones(like t: Tensor) -> Tensor { ones(t.shape) }

    /// 0, 1, ..., n-1 as Float.
    public static func arange(_ n: Int) -> Tensor {
        let t = Tensor(uninitialized: [n])
        for i in 0..<n { t.storage.pointer[i] = Float(i) }
        return t
    }

    // MARK: shape facts

    @inline(__always) public static func count(of shape: [Int]) -> Int { shape.reduce(1, *) }
    public var count: Int { storage.count }
    public var rank: Int { shape.count }
    public var isScalar: Bool { count == 1 }
    /// Row-major (contiguous) strides of `shape`, in elements.
    public var strides: [Int] { Tensor.contiguousStrides(shape) }
    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = acc; acc *= shape[i] }
        return s
    }
    /// Size of dimension `d` (negative counts from the end).
    public func size(_ d: Int) -> Int { shape[normalizeAxis(d, rank)] }

    // MARK: values

    @inline(__always) public var data: UnsafeMutablePointer<Float> { storage.pointer }
    public var array: [Float] { Array(storage.buffer) }
    /// The single value of a one-element tensor (PyTorch's `item()`).
    public func item() -> Float {
        precondition(count == 1, "item() needs one element, tensor has shape \(shape)")
        return storage.pointer[0]
    }
    /// Element at a multi-index (slow; for tests and small tensors).
    public subscript(_ index: Int...) -> Float {
        get { storage.pointer[flatIndex(index)] }
        set { storage.pointer[flatIndex(index)] = newValue }
    }
    func flatIndex(_ index: [Int]) -> Int {
        precondition(index.count == rank, "index \(index) for shape \(shape)")
        var f = 0
        for (i, s) in zip(index, shape) { precondition(i >= 0 && i < s, "index \(index) out of range for \(shape)"); f = f * s + i }
        return f
    }

    /// A copy that shares nothing with this tensor and is not part of any graph.
    public func clone() -> Tensor { Tensor(shape: shape, storage: storage.copy()) }
    /// This tensor's values outside the graph (shares storage, like PyTorch's `detach`).
    public func detach() -> Tensor { Tensor(shape: shape, storage: storage) }

    /// Marks this tensor as a leaf that receives gradients; returns self.
    @discardableResult public func requiringGrad(_ flag: Bool = true) -> Tensor { requiresGrad = flag; return self }

    /// Overwrites this tensor's values with `other`'s (same count), outside the graph.
    public func assign(_ other: Tensor) {
        precondition(other.shape == shape, "assign: shape \(other.shape) into \(shape)")
        if other.storage !== storage { data.update(from: other.data, count: count) }
    }
    /// Sets every element to `value`, outside the graph.
    public func fill(_ value: Float) { data.update(repeating: value, count: count) }

    public var description: String {
        let n = min(count, 8)
        let vals = (0..<n).map { String(format: "%.5g", Double(data[$0])) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(vals)\(count > n ? ", ..." : "")]\(requiresGrad ? ", requiresGrad" : ""))"
    }
}

/// Normalizes a possibly negative axis for a tensor of rank `rank`.
@inline(__always) public func normalizeAxis(_ axis: Int, _ rank: Int) -> Int {
    let a = axis < 0 ? axis + rank : axis
    precondition(a >= 0 && a < max(rank, 1), "axis \(axis) out of range for rank \(rank)")
    return a
}
