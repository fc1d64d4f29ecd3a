import Foundation

/// The backward record of one op: the inputs it read and a closure that maps the gradient of
/// its output to one gradient per input (nil where the input needs none). The closure keeps only
/// what backward needs and runs on raw storage with recording switched off.
public final class GradFn {
    public let name: String
    public let inputs: [Tensor]
    let backward: (Tensor) -> [Tensor?]

    init(name: String, inputs: [Tensor], backward: @escaping (Tensor) -> [Tensor?]) {
        self.name = name
        self.inputs = inputs
        self.backward = backward
    }
}

/// Whether ops record the graph (PyTorch's grad mode). Per thread, as in PyTorch: a `noGrad`
/// scope on one thread (e.g. a data-loader worker cutting patches) never switches recording off
/// for another thread's forward pass. Every thread starts with recording on.
public enum GradMode {
    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()

    public static var isEnabled: Bool {
        // No value stored (nil) means enabled, so new threads need no set-up.
        get { pthread_getspecific(key) == nil }
        set { pthread_setspecific(key, newValue ? nil : UnsafeRawPointer(bitPattern: 1)) }
    }

    /// Runs `body` without recording the graph, like `torch.no_grad()`.
    public static func withoutGrad<T>(_ body: () throws -> T) rethrows -> T {
        let saved = isEnabled
        isEnabled = false
        defer { isEnabled = saved }
        return try body()
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

        // Topological order by iterative depth-first search.
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Int)] = [(self, 0)]
        visited.insert(ObjectIdentifier(self))
        while let (t, next) = stack.popLast() {
            let inputs = t.gradFn?.inputs ?? []
            if next < inputs.count {
                stack.append((t, next + 1))
                let child = inputs[next]
                if child.requiresGrad && !visited.contains(ObjectIdentifier(child)) {
                    visited.insert(ObjectIdentifier(child))
                    stack.append((child, 0))
                }
            } else {
                order.append(t)
            }
        }

        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): seed]
        var owned = Set<ObjectIdentifier>()  // gradients we allocated and may add into in place
        GradMode.withoutGrad {
            for t in order.reversed() {
                let id = ObjectIdentifier(t)
                guard let g = grads.removeValue(forKey: id) else { continue }
                owned.remove(id)
                guard let fn = t.gradFn else {
                    // A leaf: accumulate into .grad.
                    if let existing = t.grad {
                        precondition(existing.shape == g.shape, "grad shape \(existing.shape) vs \(g.shape)")
                        addInPlace(existing, g)
                    } else {
                        t.grad = g.clone()
                    }
                    continue
                }
                let inGrads = fn.backward(g)
                precondition(inGrads.count == fn.inputs.count,
                             "\(fn.name): backward returned \(inGrads.count) gradients for \(fn.inputs.count) inputs")
                for (input, ig) in zip(fn.inputs, inGrads) {
                    guard input.requiresGrad, let ig else { continue }
                    precondition(ig.shape == input.shape,
                                 "\(fn.name): gradient of shape \(ig.shape) for an input of shape \(input.shape)")
                    let iid = ObjectIdentifier(input)
                    if let acc = grads[iid] {
                        if owned.contains(iid) {
                            addInPlace(acc, ig)
                        } else {
                            let sum = acc.clone()
                            addInPlace(sum, ig)
                            grads[iid] = sum
                            owned.insert(iid)
                        }
                    } else {
                        grads[iid] = ig
                    }
                }
            }
        }
        // Release the graph so intermediate values are freed.
        for t in order where t.gradFn != nil { t.gradFn = nil }
    }
}

/// acc += g elementwise (same shape), outside the graph.
@inline(__always) func addInPlace(_ acc: Tensor, _ g: Tensor) {
    let n = acc.count
    let a = SendablePointer(acc.data), b = SendablePointer(g.data)
    Parallel.chunks(n) { r in for i in r { a[i] += b[i] } }
}
