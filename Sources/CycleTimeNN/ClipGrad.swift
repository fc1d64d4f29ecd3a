import CycleTimeCore
import Foundation

// Gradient clipping, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_. Parameters without a
// gradient are ignored.

/// torch.nn.utils.clip_grad_norm_: the total `normType` norm over all gradients (as if they were
/// concatenated); every gradient is multiplied by min(1, maxNorm / (total + 1e-6)). Returns the
/// total norm before clipping. `normType` may be `.infinity` (largest absolute value).
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float, normType: Float = 2) -> Float {
    let grads = parameters.compactMap { $0.grad }
    if grads.isEmpty { return 0 }
    let total: Double
    if normType.isInfinite {
        var m: Float = 0
        for g in grads {
            let p = g.data
            for i in 0..<g.count { let a = Swift.abs(p[i]); if !(a <= m) { m = a } }
        }
        total = Double(m)
    } else {
        let q = Double(normType)
        var acc: Double = 0
        for g in grads {
            let p = g.data
            if q == 2 {
                for i in 0..<g.count { let x = Double(p[i]); acc += x * x }
            } else if q == 1 {
                for i in 0..<g.count { acc += Swift.abs(Double(p[i])) }
            } else {
                for i in 0..<g.count { acc += Foundation.pow(Swift.abs(Double(p[i])), q) }
            }
        }
        total = q == 2 ? acc.squareRoot() : q == 1 ? acc : Foundation.pow(acc, 1 / q)
    }
    let totalF = Float(total)
    let coef = Swift.min(maxNorm / (totalF + 1e-6), 1)
    if coef != 1 || coef.isNaN {
        for g in grads {
            let p = SendablePointer(g.data)
            Parallel.chunks(g.count) { r in for i in r { p[i] = p[i] * coef } }
        }
    }
    return totalF
}

/// `clipGradNorm` over named parameters (e.g. `namedParameters()` or `optimizer.parameters`).
@discardableResult
public func clipGradNorm(_ parameters: [(name: String, tensor: Tensor)], maxNorm: Float, normType: Float = 2) -> Float {
    clipGradNorm(parameters.map { $0.tensor }, maxNorm: maxNorm, normType: normType)
}

/// torch.nn.utils.clip_grad_value_: clamps every gradient element into [-clipValue, clipValue].
public func clipGradValue(_ parameters: [Tensor], clipValue: Float) {
    let c = Swift.abs(clipValue)
    for t in parameters {
        guard let g = t.grad else { continue }
        let p = SendablePointer(g.data)
        Parallel.chunks(g.count) { r in for i in r { p[i] = Swift.min(Swift.max(p[i], -c), c) } }
    }
}

/// `clipGradValue` over named parameters.
public func clipGradValue(_ parameters: [(name: String, tensor: Tensor)], clipValue: Float) {
    clipGradValue(parameters.map { $0.tensor }, clipValue: clipValue)
}
