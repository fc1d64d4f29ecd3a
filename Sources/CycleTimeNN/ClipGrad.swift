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
        var m: Double = 0
        for g in grads {
            let b = blockReduce(g, .maxAbs)
            if b.isNaN || b > m { m = b }
            if m.isNaN { break }
        }
        total = m
    } else {
        let q = Double(normType)
        var acc: Double = 0
        for g in grads { acc += blockReduce(g, q == 2 ? .sumSquares : q == 1 ? .sumAbs : .sumPow(q)) }
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

private enum NormReduction { case maxAbs, sumSquares, sumAbs, sumPow(Double) }

/// Reduces a tensor in fixed blocks (in parallel, in Double), then combines the block results in
/// order, so the result does not depend on the thread count.
private func blockReduce(_ t: Tensor, _ kind: NormReduction) -> Double {
    let n = t.count
    let block = 1 << 16
    let blocks = (n + block - 1) / block
    if blocks == 0 { return 0 }
    var partial = [Double](repeating: 0, count: blocks)
    let x = SendablePointer(t.data)
    partial.withUnsafeMutableBufferPointer { buf in
        let out = SendablePointer(buf.baseAddress!)
        Parallel.forEach(blocks, costPerItem: block) { b in
            let lo = b * block, hi = Swift.min(n, lo + block)
            var acc: Double = 0
            switch kind {
            case .maxAbs:
                var m: Float = 0
                for i in lo..<hi {
                    let a = Swift.abs(x[i])
                    if a.isNaN { m = .nan; break }
                    if a > m { m = a }
                }
                acc = Double(m)
            case .sumSquares:
                for i in lo..<hi { let v = Double(x[i]); acc += v * v }
            case .sumAbs:
                for i in lo..<hi { acc += Swift.abs(Double(x[i])) }
            case .sumPow(let q):
                for i in lo..<hi { acc += Foundation.pow(Swift.abs(Double(x[i])), q) }
            }
            out[b] = acc
        }
    }
    if case .maxAbs = kind {
        var m: Double = 0
        for v in partial {
            if v.isNaN { return .nan }
            if v > m { m = v }
        }
        return m
    }
    return partial.reduce(0, +)
}
