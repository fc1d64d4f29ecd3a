import CycleTimeCore
import Foundation

// Optimizers over named parameters, with torch.optim's update rules (the single-tensor CPU
// implementation, which is PyTorch's default on CPU). A base class owns the parameter list, the
// per-parameter state and its (de)serialization; each optimizer overrides one per-parameter update.

/// Why `Optimizer.loadStateDict` refused a state dictionary.
public enum OptimizerStateError: Error, CustomStringConvertible, Equatable {
    case missingKey(String)
    case unexpectedKey(String)
    case shapeMismatch(key: String, expected: [Int], got: [Int])

    public var description: String {
        switch self {
        case .missingKey(let k): return "optimizer state: missing key '\(k)'"
        case .unexpectedKey(let k): return "optimizer state: unexpected key '\(k)'"
        case .shapeMismatch(let k, let e, let g): return "optimizer state: key '\(k)' has shape \(g), expected \(e)"
        }
    }
}

/// Base class of the optimizers. Holds the parameters (in PyTorch state_dict naming, e.g. from
/// `namedParameters()`), a mutable learning rate and, per parameter, a dictionary of state tensors
/// (e.g. `exp_avg`) created lazily on the parameter's first update, as in torch.optim.
///
/// Subclasses override `update(name:parameter:grad:state:)` (one parameter's update; runs with
/// grad mode off) and `stateKeys` (the keys a parameter's state holds once it exists).
open class Optimizer {
    public let parameters: [(name: String, tensor: Tensor)]
    /// The learning rate used by the next `step()`; schedules set it (see `LRSchedule.apply`).
    public var learningRate: Float
    /// Number of `step()` calls so far.
    public private(set) var stepCount: Int = 0
    /// Per-parameter state, aligned with `parameters` (empty until the parameter's first update).
    public internal(set) var state: [[String: Tensor]]

    public init(parameters: [(name: String, tensor: Tensor)], learningRate: Float) {
        var seen = Set<String>(), seenTensors = Set<ObjectIdentifier>()
        for (name, t) in parameters {
            precondition(seen.insert(name).inserted, "optimizer: duplicate parameter name '\(name)'")
            precondition(seenTensors.insert(ObjectIdentifier(t)).inserted,
                         "optimizer: parameter '\(name)' appears twice in the parameter list")
        }
        precondition(learningRate >= 0, "optimizer: invalid learning rate \(learningRate)")
        self.parameters = parameters
        self.learningRate = learningRate
        self.state = Array(repeating: [:], count: parameters.count)
    }

    /// Unnamed parameters get the names "0", "1", ... (their index).
    public convenience init(parameters: [Tensor], learningRate: Float) {
        self.init(parameters: parameters.enumerated().map { (name: String($0.offset), tensor: $0.element) },
                  learningRate: learningRate)
    }

    /// Clears every parameter's gradient (PyTorch's `zero_grad()`, which sets them to None).
    public func zeroGrad() {
        for (_, t) in parameters { t.grad = nil }
    }

    /// One optimization step over every parameter that has a gradient (others are skipped and
    /// keep their state untouched).
    public func step() {
        stepCount += 1
        noGrad {
            for i in parameters.indices {
                let (name, p) = parameters[i]
                guard let g = p.grad else { continue }
                precondition(g.shape == p.shape, "optimizer: gradient of '\(name)' has shape \(g.shape), parameter \(p.shape)")
                update(name: name, parameter: p, grad: g, state: &state[i])
            }
        }
    }

    /// Updates one parameter in place from its gradient; `state` is empty on the first update.
    open func update(name: String, parameter: Tensor, grad: Tensor, state: inout [String: Tensor]) {
        fatalError("\(type(of: self)) must override update(name:parameter:grad:state:)")
    }

    /// The state keys every parameter holds once it has been updated (e.g. `["step", "exp_avg"]`).
    open var stateKeys: [String] { [] }

    /// The shape of the state tensor `key` for `parameter`: scalars for "step", else the parameter's.
    open func stateShape(forKey key: String, parameter: Tensor) -> [Int] {
        key == "step" ? [] : parameter.shape
    }

    // MARK: state dict

    /// The optimizer's state as flat tensors, for a safetensors checkpoint: `step` (number of
    /// steps) and `lr` as scalars, and per updated parameter `<key>.<parameter name>` (e.g.
    /// `exp_avg.layer1.0.conv1.weight`). Values are copies.
    public func stateDict() -> [String: Tensor] {
        var out: [String: Tensor] = [
            "step": Tensor(scalar: Float(stepCount)),
            "lr": Tensor(scalar: learningRate),
        ]
        for (i, (name, _)) in parameters.enumerated() {
            for (k, t) in state[i] { out[k + "." + name] = t.clone() }
        }
        return out
    }

    /// Restores a state written by `stateDict()`. A parameter whose keys are all absent has no
    /// state yet (as before its first update); any other missing key, unknown key or wrong shape
    /// throws, naming the key, and leaves the optimizer unchanged.
    public func loadStateDict(_ dict: [String: Tensor]) throws {
        var expected = Set<String>(["step", "lr"])
        guard let stepT = dict["step"] else { throw OptimizerStateError.missingKey("step") }
        guard let lrT = dict["lr"] else { throw OptimizerStateError.missingKey("lr") }
        for (k, t) in [("step", stepT), ("lr", lrT)] where t.count != 1 {
            throw OptimizerStateError.shapeMismatch(key: k, expected: [], got: t.shape)
        }
        var newState: [[String: Tensor]] = []
        let keys = stateKeys
        for (name, p) in parameters {
            let present = keys.filter { dict[$0 + "." + name] != nil }
            var s: [String: Tensor] = [:]
            if !present.isEmpty {
                for k in keys {
                    let full = k + "." + name
                    guard let t = dict[full] else { throw OptimizerStateError.missingKey(full) }
                    let shape = stateShape(forKey: k, parameter: p)
                    guard t.shape == shape || (shape.isEmpty && t.count == 1) else {
                        throw OptimizerStateError.shapeMismatch(key: full, expected: shape, got: t.shape)
                    }
                    s[k] = Tensor(shape: shape, storage: t.storage.copy())
                    expected.insert(full)
                }
            }
            newState.append(s)
        }
        if let extra = dict.keys.filter({ !expected.contains($0) }).sorted().first {
            throw OptimizerStateError.unexpectedKey(extra)
        }
        state = newState
        stepCount = Int(stepT.item().rounded())
        learningRate = lrT.item()
    }
}

// MARK: - SGD

/// torch.optim.SGD: momentum (buffer initialized to the first gradient), dampening, Nesterov,
/// L2 weight decay (added to the gradient) and `maximize`.
public final class SGD: Optimizer {
    // Hyperparameters are Doubles, as PyTorch's Python floats (e.g. 1 - dampening is computed in Double).
    public var momentum: Double
    public var dampening: Double
    public var nesterov: Bool
    public var weightDecay: Double
    public var maximize: Bool

    public init(parameters: [(name: String, tensor: Tensor)], learningRate: Float, momentum: Double = 0,
                dampening: Double = 0, weightDecay: Double = 0, nesterov: Bool = false, maximize: Bool = false) {
        precondition(momentum >= 0 && weightDecay >= 0, "SGD: invalid momentum or weight decay")
        precondition(!nesterov || (momentum > 0 && dampening == 0), "SGD: Nesterov momentum requires a momentum and zero dampening")
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.weightDecay = weightDecay
        self.maximize = maximize
        super.init(parameters: parameters, learningRate: learningRate)
    }

    public convenience init(parameters: [Tensor], learningRate: Float, momentum: Double = 0, dampening: Double = 0,
                            weightDecay: Double = 0, nesterov: Bool = false, maximize: Bool = false) {
        self.init(parameters: parameters.enumerated().map { (name: String($0.offset), tensor: $0.element) },
                  learningRate: learningRate, momentum: momentum, dampening: dampening, weightDecay: weightDecay,
                  nesterov: nesterov, maximize: maximize)
    }

    public override var stateKeys: [String] { momentum != 0 ? ["momentum_buffer"] : [] }

    public override func update(name: String, parameter: Tensor, grad: Tensor, state: inout [String: Tensor]) {
        let n = parameter.count
        let p = SendablePointer(parameter.data), g = SendablePointer(grad.data)
        let wd = Float(weightDecay), lr = learningRate, mom = Float(momentum), damp = Float(1 - dampening), nest = nesterov
        let sign: Float = maximize ? -1 : 1
        if mom == 0 {
            Parallel.chunks(n, costPerItem: 4) { r in
                for i in r {
                    let gi = sign * g[i] + wd * p[i]  // grad.add(param, alpha=weight_decay); wd is 0 without decay
                    p[i] = p[i] + (-lr) * gi
                }
            }
            return
        }
        let first = state["momentum_buffer"] == nil
        let buffer = state["momentum_buffer"] ?? Tensor.zeros(parameter.shape)
        state["momentum_buffer"] = buffer
        let b = SendablePointer(buffer.data)
        Parallel.chunks(n, costPerItem: 6) { r in
            for i in r {
                let gi = sign * g[i] + wd * p[i]
                // The buffer starts as a copy of the first gradient, then buf * momentum + (1 - dampening) * grad.
                let bi = first ? gi : b[i] * mom + damp * gi
                b[i] = bi
                let d = nest ? gi + mom * bi : bi
                p[i] = p[i] + (-lr) * d
            }
        }
    }
}

// MARK: - Adam / AdamW

/// torch.optim.Adam: moments with bias correction exactly as torch's default (single-tensor)
/// implementation, optional AMSGrad and `maximize`. Weight decay is L2 (added to the gradient)
/// unless `decoupledWeightDecay` (AdamW).
public class Adam: Optimizer {
    // Hyperparameters are Doubles, as PyTorch's Python floats (1 - beta2 is computed in Double).
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    public var weightDecay: Double
    public var amsgrad: Bool
    public var maximize: Bool
    /// AdamW's decoupled weight decay: parameters shrink by (1 - lr * weightDecay) before the update.
    public let decoupledWeightDecay: Bool

    public init(parameters: [(name: String, tensor: Tensor)], learningRate: Float = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                eps: Double = 1e-8, weightDecay: Double = 0, amsgrad: Bool = false, maximize: Bool = false,
                decoupledWeightDecay: Bool = false) {
        precondition(eps >= 0 && weightDecay >= 0, "Adam: invalid eps or weight decay")
        precondition(betas.0 >= 0 && betas.0 < 1 && betas.1 >= 0 && betas.1 < 1, "Adam: invalid betas \(betas)")
        beta1 = betas.0
        beta2 = betas.1
        self.eps = eps
        self.weightDecay = weightDecay
        self.amsgrad = amsgrad
        self.maximize = maximize
        self.decoupledWeightDecay = decoupledWeightDecay
        super.init(parameters: parameters, learningRate: learningRate)
    }

    public convenience init(parameters: [Tensor], learningRate: Float = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                            eps: Double = 1e-8, weightDecay: Double = 0, amsgrad: Bool = false, maximize: Bool = false) {
        self.init(parameters: parameters.enumerated().map { (name: String($0.offset), tensor: $0.element) },
                  learningRate: learningRate, betas: betas, eps: eps, weightDecay: weightDecay, amsgrad: amsgrad,
                  maximize: maximize)
    }

    public override var stateKeys: [String] {
        amsgrad ? ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"] : ["step", "exp_avg", "exp_avg_sq"]
    }

    public override func update(name: String, parameter: Tensor, grad: Tensor, state: inout [String: Tensor]) {
        // A parameter without state (before its first update) starts from zeros, as torch.optim.Adam.
        let stepT = state["step"] ?? Tensor(scalar: 0)
        let expAvg = state["exp_avg"] ?? Tensor.zeros(parameter.shape)
        let expAvgSq = state["exp_avg_sq"] ?? Tensor.zeros(parameter.shape)
        let maxExpAvgSq = amsgrad ? state["max_exp_avg_sq"] ?? Tensor.zeros(parameter.shape) : nil
        state["step"] = stepT; state["exp_avg"] = expAvg; state["exp_avg_sq"] = expAvgSq
        if let maxExpAvgSq { state["max_exp_avg_sq"] = maxExpAvgSq }
        stepT.data[0] += 1
        let step = Double(stepT.data[0])
        let lrD = Double(learningRate)
        let b1D = beta1, b2D = beta2
        // Scalars as torch computes them (Python floats, i.e. Double), then used in Float kernels.
        let decay: Float = decoupledWeightDecay && weightDecay != 0 ? Float(1 - lrD * weightDecay) : 1
        let l2: Float = decoupledWeightDecay ? 0 : Float(weightDecay)
        let w1 = Float(1 - b1D)                     // lerp weight
        let b2 = Float(beta2), w2 = Float(1 - b2D)
        let biasCorrection1 = 1 - Foundation.pow(b1D, step)
        let biasCorrection2 = 1 - Foundation.pow(b2D, step)
        let negStepSize = Float(-(lrD / biasCorrection1))
        let bc2Sqrt = Float(biasCorrection2.squareRoot())
        let eps = Float(self.eps), sign: Float = maximize ? -1 : 1

        let n = parameter.count
        let p = SendablePointer(parameter.data), g = SendablePointer(grad.data)
        let m = SendablePointer(expAvg.data), v = SendablePointer(expAvgSq.data)
        // ATen's lerp: w < 0.5 ? m + w * (g - m) : g - (g - m) * (1 - w), as base + c * (g - m), branch-free.
        let lerpFromM = w1 < 0.5
        let c: Float = lerpFromM ? w1 : -(1 - w1)
        if let maxExpAvgSq {
            let vmax = SendablePointer(maxExpAvgSq.data)
            Parallel.chunks(n, costPerItem: 16) { r in
                for i in r {
                    let pi = p[i] * decay
                    let gi = sign * g[i] + l2 * pi
                    let mi = m[i]
                    let mNew = (lerpFromM ? mi : gi) + c * (gi - mi)
                    m[i] = mNew
                    let vNew = v[i] * b2 + w2 * gi * gi
                    v[i] = vNew
                    let vm = Swift.max(vmax[i], vNew)
                    vmax[i] = vm
                    p[i] = pi + negStepSize * (mNew / (vm.squareRoot() / bc2Sqrt + eps))
                }
            }
        } else {
            Parallel.chunks(n, costPerItem: 16) { r in
                for i in r {
                    // param.mul_(1 - lr * wd) (AdamW; decay is 1 otherwise), grad + wd * param (Adam; l2 is 0 otherwise)
                    let pi = p[i] * decay
                    let gi = sign * g[i] + l2 * pi
                    // exp_avg.lerp_(grad, 1 - beta1)
                    let mi = m[i]
                    let mNew = (lerpFromM ? mi : gi) + c * (gi - mi)
                    m[i] = mNew
                    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    let vNew = v[i] * b2 + w2 * gi * gi
                    v[i] = vNew
                    // param.addcdiv_(exp_avg, exp_avg_sq.sqrt() / bias_correction2_sqrt + eps, value=-step_size)
                    p[i] = pi + negStepSize * (mNew / (vNew.squareRoot() / bc2Sqrt + eps))
                }
            }
        }
    }
}

/// torch.optim.AdamW: Adam with decoupled weight decay (default 1e-2).
public final class AdamW: Adam {
    public init(parameters: [(name: String, tensor: Tensor)], learningRate: Float = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                eps: Double = 1e-8, weightDecay: Double = 1e-2, amsgrad: Bool = false, maximize: Bool = false) {
        super.init(parameters: parameters, learningRate: learningRate, betas: betas, eps: eps, weightDecay: weightDecay,
                   amsgrad: amsgrad, maximize: maximize, decoupledWeightDecay: true)
    }

    public convenience init(parameters: [Tensor], learningRate: Float = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                            eps: Double = 1e-8, weightDecay: Double = 1e-2, amsgrad: Bool = false, maximize: Bool = false) {
        self.init(parameters: parameters.enumerated().map { (name: String($0.offset), tensor: $0.element) },
                  learningRate: learningRate, betas: betas, eps: eps, weightDecay: weightDecay, amsgrad: amsgrad,
                  maximize: maximize)
    }
}
