import Foundation
import CycleTimeCore

// The module system, in the style of MLX-Swift: a module is a class whose stored properties are
// its parameters (`@Parameter`), buffers (`@Buffer`) and child modules, found by reflection.
// Names are joined with dots exactly like PyTorch's state_dict keys (`layer1.0.bn1.running_mean`).
//
//     final class Net: Module {
//         @Parameter var scale: Tensor              // key "scale"
//         @Buffer(name: "running_x") var x: Tensor? // custom key; a nil optional has no key
//         let conv: Conv2d                          // keys "conv.weight", "conv.bias"
//         let blocks: [Linear]                      // keys "blocks.0.weight", ...
//         let head: Sequential                      // keys "head.0.weight", ...
//         ...
//         override func callAsFunction(_ x: Tensor) -> Tensor { head(conv(x)) }
//     }
//
// Order (as PyTorch's registration order): a module's own parameters, then its own buffers, then
// its children, each in declaration order (base-class properties first).

/// A tensor-valued property slot: `Tensor` or `Tensor?` (an absent optional tensor has no key).
public protocol TensorSlot {
    var slotTensor: Tensor? { get }
}
extension Tensor: TensorSlot { public var slotTensor: Tensor? { self } }
extension Optional: TensorSlot where Wrapped == Tensor { public var slotTensor: Tensor? { self } }

protocol ParameterSlot { var slotName: String? { get }; var slotTensor: Tensor? { get } }
protocol BufferSlot { var slotName: String? { get }; var slotTensor: Tensor? { get } }

/// A learnable tensor of a module (PyTorch's `nn.Parameter`): requires grad, appears in
/// `parameters()` and the state dict. Its key is the property name, or `name` when given
/// (e.g. for a Python name that is not a Swift identifier).
@propertyWrapper
public struct Parameter<Value: TensorSlot> {
    public var wrappedValue: Value { didSet { wrappedValue.slotTensor?.requiresGrad = true } }
    public let name: String?
    public init(wrappedValue: Value, name: String? = nil) {
        self.wrappedValue = wrappedValue
        self.name = name
        wrappedValue.slotTensor?.requiresGrad = true
    }
}
extension Parameter: ParameterSlot {
    var slotName: String? { name }
    var slotTensor: Tensor? { wrappedValue.slotTensor }
}

/// A non-learnable tensor saved in the state dict (PyTorch's registered buffer), e.g. BatchNorm's
/// `running_mean`. Its key is the property name, or `name` when given.
@propertyWrapper
public struct Buffer<Value: TensorSlot> {
    public var wrappedValue: Value
    public let name: String?
    public init(wrappedValue: Value, name: String? = nil) {
        self.wrappedValue = wrappedValue
        self.name = name
    }
}
extension Buffer: BufferSlot {
    var slotName: String? { name }
    var slotTensor: Tensor? { wrappedValue.slotTensor }
}

/// Errors of `loadStateDict`, worded like PyTorch's.
public struct StateDictError: Error, CustomStringConvertible, Equatable {
    public struct ShapeMismatch: Equatable, Sendable {
        public let key: String
        public let checkpointShape: [Int]
        public let modelShape: [Int]
    }
    public var missingKeys: [String] = []
    public var unexpectedKeys: [String] = []
    public var shapeMismatches: [ShapeMismatch] = []

    public var description: String {
        var lines: [String] = ["Error(s) in loading state dict:"]
        if !missingKeys.isEmpty { lines.append("  Missing key(s) in state dict: " + missingKeys.map { "\"\($0)\"" }.joined(separator: ", ") + ".") }
        if !unexpectedKeys.isEmpty { lines.append("  Unexpected key(s) in state dict: " + unexpectedKeys.map { "\"\($0)\"" }.joined(separator: ", ") + ".") }
        for m in shapeMismatches {
            lines.append("  size mismatch for \(m.key): copying a param with shape \(m.checkpointShape) from checkpoint, the shape in current model is \(m.modelShape).")
        }
        return lines.joined(separator: "\n")
    }
}

/// The base class of all layers and models.
open class Module {
    /// Training mode (dropout active, batch norm uses batch statistics); set by `train()`/`eval()`.
    public internal(set) var training = true

    public init() {}

    /// The forward computation. Subclasses override it (and may add overloads with other inputs).
    open func callAsFunction(_ x: Tensor) -> Tensor {
        fatalError("\(type(of: self)) does not implement callAsFunction(_:)")
    }

    // MARK: reflection

    struct OwnSlots {
        var parameters: [(String, Tensor)] = []
        var buffers: [(String, Tensor)] = []
        var children: [(String, Module)] = []
    }

    /// Stored properties of this object and its superclasses, base class first (declaration order).
    func reflectedSlots() -> OwnSlots {
        var mirrors: [Mirror] = []
        var m: Mirror? = Mirror(reflecting: self)
        while let cur = m { mirrors.append(cur); m = cur.superclassMirror }
        var out = OwnSlots()
        for mirror in mirrors.reversed() {
            for child in mirror.children {
                guard let label = child.label else { continue }
                let plain = label.hasPrefix("_") ? String(label.dropFirst()) : label
                if let p = child.value as? ParameterSlot {
                    if let t = p.slotTensor { out.parameters.append((p.slotName ?? plain, t)) }
                } else if let b = child.value as? BufferSlot {
                    if let t = b.slotTensor { out.buffers.append((b.slotName ?? plain, t)) }
                } else if let mod = child.value as? Module {
                    out.children.append((label, mod))
                } else if let mods = child.value as? [Module] {
                    for (i, mod) in mods.enumerated() { out.children.append(("\(label).\(i)", mod)) }
                }
            }
        }
        return out
    }

    /// This module's direct children with their names. Sequential-like containers override it.
    open func namedChildren() -> [(String, Module)] { reflectedSlots().children }

    /// This module's own parameters (not its children's), in declaration order.
    public func ownParameters() -> [(String, Tensor)] { reflectedSlots().parameters }
    /// This module's own buffers (not its children's), in declaration order.
    public func ownBuffers() -> [(String, Tensor)] { reflectedSlots().buffers }

    /// All modules in pre-order with dotted names ("" for self), like `named_modules()`.
    public func namedModules() -> [(String, Module)] {
        var out: [(String, Module)] = []
        var seen = Set<ObjectIdentifier>()
        func visit(_ prefix: String, _ m: Module) {
            guard seen.insert(ObjectIdentifier(m)).inserted else { return }
            out.append((prefix, m))
            for (name, c) in m.namedChildren() { visit(prefix.isEmpty ? name : prefix + "." + name, c) }
        }
        visit("", self)
        return out
    }
    public func modules() -> [Module] { namedModules().map { $0.1 } }

    private func collect(_ pick: (Module) -> [(String, Tensor)]) -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        var seen = Set<ObjectIdentifier>()
        for (prefix, m) in namedModules() {
            for (name, t) in pick(m) where seen.insert(ObjectIdentifier(t)).inserted {
                out.append((prefix.isEmpty ? name : prefix + "." + name, t))
            }
        }
        return out
    }

    /// All parameters with dotted names, in PyTorch's `named_parameters()` order.
    public func namedParameters() -> [(String, Tensor)] { collect { $0.ownParameters() } }
    public func parameters() -> [Tensor] { namedParameters().map { $0.1 } }
    /// Parameters that currently require grad (what an optimizer should update).
    public func trainableParameters() -> [Tensor] { parameters().filter { $0.requiresGrad } }
    public func namedBuffers() -> [(String, Tensor)] { collect { $0.ownBuffers() } }

    /// State dict entries in PyTorch's order: per module (pre-order) its parameters then its buffers.
    public func namedStateEntries() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (prefix, m) in namedModules() {
            let s = m.reflectedSlots()
            for (name, t) in s.parameters + s.buffers { out.append((prefix.isEmpty ? name : prefix + "." + name, t)) }
        }
        return out
    }
    public func stateDictKeys() -> [String] { namedStateEntries().map { $0.0 } }

    /// Parameters and buffers by key (tensors share storage with the module, outside the graph).
    public func stateDict() -> [String: Tensor] {
        var d: [String: Tensor] = [:]
        for (k, t) in namedStateEntries() { d[k] = t.detach() }
        return d
    }

    /// Copies `stateDict` into this module's parameters and buffers (in place: tensor identities,
    /// and so optimizer references, are kept). Shape mismatches always throw; with `strict`,
    /// missing or unexpected keys throw too (nothing is modified when it throws). Returns the
    /// missing and unexpected keys. As in PyTorch, a missing BatchNorm `num_batches_tracked` is
    /// not reported (old checkpoints lack it) and keeps its current value.
    @discardableResult
    public func loadStateDict(_ stateDict: [String: Tensor], strict: Bool = true) throws -> (missingKeys: [String], unexpectedKeys: [String]) {
        let entries = namedStateEntries()
        var err = StateDictError()
        var modelKeys = Set<String>()
        for (k, t) in entries {
            modelKeys.insert(k)
            if let src = stateDict[k] {
                if src.shape != t.shape {
                    err.shapeMismatches.append(.init(key: k, checkpointShape: src.shape, modelShape: t.shape))
                }
            } else if !(k == "num_batches_tracked" || k.hasSuffix(".num_batches_tracked")) {
                err.missingKeys.append(k)
            }
        }
        err.unexpectedKeys = stateDict.keys.filter { !modelKeys.contains($0) }.sorted()
        if !err.shapeMismatches.isEmpty || (strict && (!err.missingKeys.isEmpty || !err.unexpectedKeys.isEmpty)) {
            throw err
        }
        for (k, t) in entries { if let src = stateDict[k] { t.assign(src) } }
        return (err.missingKeys, err.unexpectedKeys)
    }

    // MARK: modes

    /// Sets training mode on this module and all descendants; returns self.
    @discardableResult public func train(_ mode: Bool = true) -> Self {
        for m in modules() { m.training = mode }
        return self
    }
    /// Evaluation mode (`train(false)`); returns self.
    @discardableResult public func eval() -> Self { train(false) }

    static func matches(_ key: String, _ prefixes: [String]?) -> Bool {
        guard let prefixes else { return true }
        for p in prefixes {
            if p.isEmpty || key == p || key.hasPrefix(p.hasSuffix(".") ? p : p + ".") { return true }
        }
        return false
    }

    /// Stops gradients to the parameters (all, or those whose key equals or lies under one of
    /// `prefixes`, e.g. `["conv1", "layer1"]`); returns self.
    @discardableResult public func freeze(_ prefixes: [String]? = nil) -> Self {
        for (k, t) in namedParameters() where Module.matches(k, prefixes) { t.requiresGrad = false }
        return self
    }
    /// Re-enables gradients (all parameters, or those under `prefixes`); returns self.
    @discardableResult public func unfreeze(_ prefixes: [String]? = nil) -> Self {
        for (k, t) in namedParameters() where Module.matches(k, prefixes) { t.requiresGrad = true }
        return self
    }

    /// Clears the gradients of all parameters (PyTorch's `zero_grad(set_to_none=True)`).
    public func zeroGrad() {
        for t in parameters() { t.grad = nil }
    }

    /// Total number of parameter elements.
    public var parameterCount: Int { parameters().reduce(0) { $0 + $1.count } }
}

/// Children called in order (PyTorch's `nn.Sequential`); keys are the indices `0`, `1`, ...
public final class Sequential: Module {
    public private(set) var layers: [Module]

    public init(_ layers: [Module]) {
        self.layers = layers
        super.init()
    }
    public convenience init(_ layers: Module...) { self.init(layers) }

    public override func namedChildren() -> [(String, Module)] {
        layers.enumerated().map { (String($0.offset), $0.element) }
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor {
        var y = x
        for l in layers { y = l(y) }
        return y
    }

    public var count: Int { layers.count }
    public subscript(i: Int) -> Module { layers[i] }
    public func append(_ m: Module) { layers.append(m) }
}

/// The identity (PyTorch's `nn.Identity`).
public final class Identity: Module {
    public override init() { super.init() }
    public override func callAsFunction(_ x: Tensor) -> Tensor { x }
}
