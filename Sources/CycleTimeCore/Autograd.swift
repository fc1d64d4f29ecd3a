import Foundation

// MARK: How to write an op
//
// 1. Compute the output with raw kernels (loops over `.data` in `Parallel.chunks`, `BLAS.sgemm`,
//    the kernels of Ops/*), not by composing other recorded ops.
// 2. Return `out.recording(name, inputs) { g in ... }`. It records only when grad mode is on and
//    some input requires grad. The closure receives the gradient of the output (shape of `out`)
//    and returns one gradient per input, in the order of `inputs`, each with that input's shape
//    (backward() checks it), or nil for an input that needs none (read `x.requiresGrad` before the
//    closure). It runs with recording off, so it may use any op. It may return `g` itself or
//    gradients that share storage: the engine copies before it adds into a gradient it did not
//    allocate.
// 3. A broadcasting op reduces each input's gradient with `unbroadcast(grad, to: inputShape)`.
// 4. The closure keeps everything it captures alive until backward has run through the record or
//    the output is dropped, so it captures only what backward reads:
//    - shapes and flags as values (`let s = x.shape`), not the tensors they come from;
//    - inputs, when backward reads their values (the input and its own record stay alive; that
//      is no cycle, since they existed before this op);
//    - never the output itself: `out` owns its record (`out.gradFn`), the record owns the closure,
//      so a closure that captures `out` makes the cycle out -> record -> closure -> out, and a
//      graph dropped without backward is never freed. To read the output's values in backward,
//      capture `let o = out.detach()`: a second Tensor over the same Storage (no copy, no
//      gradFn), so the closure holds the values but not the tensor that owns the record (see
//      exp, relu, sigmoid, div, softmax). The same holds for any tensor whose `gradFn` is this
//      record; scratch buffers made in the forward (masks, indices, norms) are plain graph-free
//      tensors or arrays and may be captured as they are.
//    Saved values are shared, not copied: writing into an input or output in place (`assign`,
//    `fill`, `data`) before backward changes what backward reads (PyTorch would raise an error).
// 5. Test it: values against PyTorch fixtures, `gradcheck`, and `assertGraphIsFreed` (GraphLeakTests).

/// The backward record of one op: where each input came from and a closure that maps the
/// gradient of its output to one gradient per input (nil where the input needs none). The closure
/// keeps only what backward needs and runs on raw storage with recording switched off.
///
/// As in PyTorch, the graph links nodes, not tensors: an input that an op produced is referenced
/// through its node, so its storage is freed as soon as nothing saved it (a batch norm's output
/// read by a ReLU, which saves only its own output, does not stay alive until backward).
public final class GradFn {
    public let name: String
    /// One edge per input: nothing (needs no gradient), a leaf that accumulates `.grad`, or the
    /// node that produced the input (with the input's shape, for the gradient's shape check).
    enum Edge {
        case none
        case leaf(Tensor)
        case node(GradFn, [Int])
    }
    var edges: [Edge]
    var backward: ((Tensor) -> [Tensor?])?

    init(name: String, inputs: [Tensor], backward: @escaping (Tensor) -> [Tensor?]) {
        self.name = name
        self.edges = inputs.map { t in
            guard t.requiresGrad else { return .none }
            if let fn = t.gradFn { return .node(fn, t.shape) }
            return .leaf(t)
        }
        self.backward = backward
    }

    /// Number of inputs the op read.
    public var inputCount: Int { edges.count }

    /// The records of the inputs that an op produced (PyTorch's `grad_fn.next_functions`, without
    /// leaves), for walking the graph; empty once backward has run through this record.
    public var nextFunctions: [GradFn] {
        edges.compactMap { if case .node(let fn, _) = $0 { return fn } else { return nil } }
    }
}

/// Whether ops record the graph (PyTorch's grad mode). Per thread, as in PyTorch: a `noGrad`
/// scope on one thread (e.g. a data-loader worker cutting patches) never switches recording off
/// for another thread's forward pass. Every thread starts with recording on.
public enum GradMode {
    private static let flag = ThreadFlag(onNewThreads: true)

    public static var isEnabled: Bool {
        get { flag.value }
        set { flag.value = newValue }
    }

    /// Runs `body` without recording the graph, like `torch.no_grad()`.
    public static func withoutGrad<T>(_ body: () throws -> T) rethrows -> T {
        let saved = isEnabled
        isEnabled = false
        defer { isEnabled = saved }
        return try body()
    }
}

/// A boolean per thread (grad mode, autocast): a pthread key whose value is absent (nil) on a new
/// thread, so threads need no set-up; absent means `onNewThreads`.
struct ThreadFlag: @unchecked Sendable {
    private let key: pthread_key_t
    private let onNewThreads: Bool

    init(onNewThreads: Bool) {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        key = k
        self.onNewThreads = onNewThreads
    }

    var value: Bool {
        get { (pthread_getspecific(key) == nil) == onNewThreads }
        nonmutating set { pthread_setspecific(key, newValue == onNewThreads ? nil : UnsafeRawPointer(bitPattern: 1)) }
    }
}

/// One object per thread (nil on every new thread), like `ThreadFlag` for a reference.
final class ThreadLocal<Value: AnyObject>: @unchecked Sendable {
    private let key: pthread_key_t

    init() {
        var k = pthread_key_t()
        // A thread that exits with a value set releases it.
        pthread_key_create(&k) { p in if let p { Unmanaged<AnyObject>.fromOpaque(p).release() } }
        key = k
    }

    var value: Value? {
        get { pthread_getspecific(key).map { Unmanaged<Value>.fromOpaque($0).takeUnretainedValue() } }
        set {
            if let old = pthread_getspecific(key) { Unmanaged<Value>.fromOpaque(old).release() }
            pthread_setspecific(key, newValue.map { UnsafeRawPointer(Unmanaged.passRetained($0).toOpaque()) })
        }
    }
}

/// Runs `body` without recording the graph, like `with torch.no_grad():`.
public func noGrad<T>(_ body: () throws -> T) rethrows -> T { try GradMode.withoutGrad(body) }

extension Tensor {
    /// Whether an op on `inputs` must record a backward record.
    @inline(__always) static func needsGrad(_ inputs: Tensor...) -> Bool {
        guard GradMode.isEnabled else { return false }
        for t in inputs where t.requiresGrad { return true }
        return false
    }
    @inline(__always) static func needsGrad(_ inputs: [Tensor]) -> Bool {
        guard GradMode.isEnabled else { return false }
        for t in inputs where t.requiresGrad { return true }
        return false
    }

    /// Attaches a backward record to `self` (the output of an op) when any input requires grad.
    /// Returns self. `backward` receives the output's gradient and returns one gradient per input.
    @discardableResult
    public func recording(_ name: String, _ inputs: [Tensor], _ backward: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        if Tensor.needsGrad(inputs) {
            requiresGrad = true
            gradFn = GradFn(name: name, inputs: inputs, backward: backward)
        }
        return self
    }

    /// Reverse-mode differentiation from this tensor. Without `gradient` the tensor must hold one
    /// element (the loss). Gradients accumulate into the `grad` of leaves that require them;
    /// afterwards the graph below this tensor is released.
    public func backward(_ gradient: Tensor? = nil) {
        let seed: Tensor
        if let g = gradient {
            precondition(g.shape == shape, "backward: gradient shape \(g.shape) does not match tensor shape \(shape)")
            seed = g
        } else {
            precondition(count == 1, "backward() without a gradient needs a one-element tensor, got shape \(shape)")
            seed = Tensor.ones(shape)
        }
        guard requiresGrad else { preconditionFailure("backward: tensor does not require grad and has no graph") }

        guard let root = gradFn else {
            // A leaf: the gradient goes straight into .grad.
            accumulateLeaf(self, seed)
            return
        }
        // Topological order of the nodes by iterative depth-first search.
        var order: [GradFn] = []
        var visited = Set<ObjectIdentifier>([ObjectIdentifier(root)])
        var stack: [(GradFn, Int)] = [(root, 0)]
        while let (fn, next) = stack.popLast() {
            if next < fn.edges.count {
                stack.append((fn, next + 1))
                if case .node(let child, _) = fn.edges[next], visited.insert(ObjectIdentifier(child)).inserted {
                    stack.append((child, 0))
                }
            } else {
                order.append(fn)
            }
        }

        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): seed]
        var owned = Set<ObjectIdentifier>()  // gradients we allocated and may add into in place
        GradMode.withoutGrad {
            for fn in order.reversed() {
                let id = ObjectIdentifier(fn)
                guard let g = grads.removeValue(forKey: id) else { continue }
                owned.remove(id)
                guard let bw = fn.backward else {
                    preconditionFailure("\(fn.name): backward through a graph that an earlier backward() already freed")
                }
                let inGrads = bw(g)
                precondition(inGrads.count == fn.edges.count,
                             "\(fn.name): backward returned \(inGrads.count) gradients for \(fn.edges.count) inputs")
                for (edge, ig) in zip(fn.edges, inGrads) {
                    guard let ig else { continue }
                    switch edge {
                    case .none:
                        continue
                    case .leaf(let t):
                        precondition(ig.shape == t.shape, "\(fn.name): gradient of shape \(ig.shape) for an input of shape \(t.shape)")
                        accumulateLeaf(t, ig)
                    case .node(let child, let shape):
                        precondition(ig.shape == shape, "\(fn.name): gradient of shape \(ig.shape) for an input of shape \(shape)")
                        let cid = ObjectIdentifier(child)
                        if let acc = grads[cid] {
                            if owned.contains(cid) {
                                addInPlace(acc, ig)
                            } else {
                                let sum = acc.clone()
                                addInPlace(sum, ig)
                                grads[cid] = sum
                                owned.insert(cid)
                            }
                        } else {
                            grads[cid] = ig
                        }
                    }
                }
                // Free this node's saved tensors and links as soon as it has run.
                fn.backward = nil
                fn.edges = []
            }
        }
        // Release the graph so intermediate values are freed.
        for fn in order { fn.backward = nil; fn.edges = [] }
        gradFn = nil
    }
}

/// Adds a gradient into a leaf's .grad (a copy on first use: gradients may alias each other).
@inline(__always) func accumulateLeaf(_ t: Tensor, _ g: Tensor) {
    if let existing = t.grad {
        precondition(existing.shape == g.shape, "grad shape \(existing.shape) vs \(g.shape)")
        addInPlace(existing, g)
    } else {
        t.grad = g.clone()
    }
}

/// acc += g elementwise (same shape), outside the graph.
@inline(__always) func addInPlace(_ acc: Tensor, _ g: Tensor) {
    let n = acc.count
    let a = SendablePointer(acc.data), b = SendablePointer(g.data)
    Parallel.chunks(n) { r in for i in r { a[i] += b[i] } }
}
