import Foundation

// Losses (mse, smooth L1, binary cross entropy with logits, cross entropy) with their reductions, and the
// two layers that have no file of their own: F.linear and F.dropout.

/// Applies a reduction to per-element losses `l` (a fresh tensor): `l` itself for `.none`, else a
/// 0-d tensor (the sum, or the sum over `divisor`, by default the element count).
private func reduceLoss(_ l: Tensor, _ reduction: Reduction, divisor: Double? = nil) -> Tensor {
    switch reduction {
    case .none: return l
    case .sum: return Tensor(scalar: Float(doubleSum(l.data, l.count)))
    case .mean: return Tensor(scalar: Float(doubleSum(l.data, l.count) / (divisor ?? Double(l.count))))
    }
}

/// The upstream gradient of element i of a reduced loss: g[i] for `.none`, g * scale otherwise.
private struct ReducedGrad {
    let none: SendablePointer<Float>?
    let scale: Float
    init(_ g: Tensor, _ reduction: Reduction, count: Int, divisor: Double? = nil) {
        switch reduction {
        case .none: none = SendablePointer(g.data); scale = 1
        case .sum: none = nil; scale = g.data[0]
        case .mean: none = nil; scale = Float(Double(g.data[0]) / (divisor ?? Double(count)))
        }
    }
    @inline(__always) subscript(i: Int) -> Float { none.map { $0[i] } ?? scale }
}

extension F {
    /// F.linear: x [..., in] @ weight[out, in]^T + bias[out] (one sgemm with transposed weight).
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
        precondition(weight.rank == 2, "linear: weight must be [out, in], got \(weight.shape)")
        precondition(x.rank >= 1, "linear: input must have rank >= 1")
        let nOut = weight.shape[0], nIn = weight.shape[1]
        precondition(x.shape.last == nIn, "linear: input \(x.shape) does not match weight \(weight.shape)")
        if let b = bias { precondition(b.count == nOut && b.rank == 1, "linear: bias \(b.shape) for weight \(weight.shape)") }
        let rows = x.count / Swift.max(nIn, 1)
        if Autocast.isEnabled && x.count > 0 {
            return oneDNNLinear(x, weight, bias, rows: rows, nIn: nIn, nOut: nOut, precision: .bf16)
        }
        let outShape = Array(x.shape.dropLast()) + [nOut]
        let out = Tensor(uninitialized: outShape)
        if let b = bias {
            let po = SendablePointer(out.data), pb = SendablePointer(b.data)
            Parallel.chunks(rows, costPerItem: nOut) { r in
                for i in r { (po + i * nOut).update(from: pb.p, count: nOut) }
            }
        }
        if x.count > 0 || bias == nil {
            BLAS.sgemm(transA: false, transB: true, m: rows, n: nOut, k: nIn,
                       a: x.data, lda: nIn, b: weight.data, ldb: nIn,
                       beta: bias == nil ? 0 : 1, c: out.data, ldc: nOut)
        }
        let needX = x.requiresGrad, needW = weight.requiresGrad, needB = bias?.requiresGrad ?? false
        var inputs = [x, weight]
        if let b = bias { inputs.append(b) }
        return out.recording("linear", inputs) { g in
            var gx: Tensor? = nil, gw: Tensor? = nil, gb: Tensor? = nil
            if needX {  // gx = g W
                let t = Tensor(uninitialized: x.shape)
                BLAS.sgemm(transA: false, transB: false, m: rows, n: nIn, k: nOut,
                           a: g.data, lda: nOut, b: weight.data, ldb: nIn, c: t.data, ldc: nIn)
                gx = t
            }
            if needW {  // gW = g^T x
                let t = Tensor(uninitialized: weight.shape)
                BLAS.sgemm(transA: true, transB: false, m: nOut, n: nIn, k: rows,
                           a: g.data, lda: nOut, b: x.data, ldb: nIn, c: t.data, ldc: nIn)
                gw = t
            }
            if needB { gb = unbroadcast(g, to: [nOut]) }
            var res: [Tensor?] = [gx, gw]
            if bias != nil { res.append(gb) }
            return res
        }
    }

    /// F.dropout (inverted dropout): each element is kept with probability 1 - p (one draw of
    /// `generator.nextFloat()` per element, in row-major order: kept when the draw is >= p) and
    /// scaled by 1 / (1 - p). Identity (no draws) when not training or p == 0; zeros when p == 1.
    public static func dropout(_ x: Tensor, p: Float, training: Bool, generator: inout RandomGenerator) -> Tensor {
        precondition(p >= 0 && p <= 1, "dropout probability has to be between 0 and 1, but got \(p)")
        if !training || p == 0 { return x }
        let n = x.count
        let mask = Tensor(uninitialized: x.shape)
        let scale: Float = p == 1 ? 0 : 1 / (1 - p)
        let pm = mask.data
        for i in 0..<n { pm[i] = generator.nextFloat() >= p ? scale : 0 }
        let out = Tensor(uninitialized: x.shape)
        let px = SendablePointer(x.data), po = SendablePointer(out.data), sm = SendablePointer(pm)
        Parallel.chunks(n) { r in for i in r { po[i] = px[i] * sm[i] } }
        return out.recording("dropout", [x]) { g in
            let gx = Tensor(uninitialized: g.shape)
            let pg = SendablePointer(g.data), pgx = SendablePointer(gx.data), sm = SendablePointer(mask.data)
            Parallel.chunks(n) { r in for i in r { pgx[i] = pg[i] * sm[i] } }
            return [gx]
        }
    }

    /// F.mse_loss: (input - target)^2 with `reduction` (broadcasting as PyTorch).
    public static func mseLoss(_ input: Tensor, _ target: Tensor, reduction: Reduction = .mean) -> Tensor {
        let diff = broadcastBinary(input, target, SubOp())
        let sq = mapKernel(diff, SquareOp())
        let n = sq.count
        let out = reduceLoss(sq, reduction)
        let si = input.shape, st = target.shape
        let ni = input.requiresGrad, nt = target.requiresGrad
        return out.recording("mseLoss", [input, target]) { g in
            let rg = ReducedGrad(g, reduction, count: n)
            let gd = Tensor(uninitialized: diff.shape)
            let pd = SendablePointer(diff.data), po = SendablePointer(gd.data)
            Parallel.chunks(n) { r in for i in r { po[i] = 2 * pd[i] * rg[i] } }
            return [ni ? unbroadcast(gd, to: si) : nil,
                    nt ? unbroadcast(mapKernel(gd, NegOp()), to: st) : nil]
        }
    }

    /// F.smooth_l1_loss (same shapes): with d = input - target, 0.5 d^2 / beta where |d| < beta,
    /// |d| - 0.5 beta elsewhere; beta 0 is the L1 loss. Gradients flow to input and target.
    public static func smoothL1Loss(_ input: Tensor, _ target: Tensor, beta: Float = 1, reduction: Reduction = .mean) -> Tensor {
        precondition(input.shape == target.shape, "smoothL1Loss: target size \(target.shape) must be the same as input size \(input.shape)")
        precondition(beta >= 0, "smoothL1Loss: beta must be >= 0, got \(beta)")
        let n = input.count
        let l = Tensor(uninitialized: input.shape)
        let px = SendablePointer(input.data), pt = SendablePointer(target.data), pl = SendablePointer(l.data)
        Parallel.chunks(n, costPerItem: 4) { r in
            for i in r {
                let d = px[i] - pt[i], a = Swift.abs(d)
                pl[i] = a < beta ? 0.5 * d * d / beta : a - 0.5 * beta
            }
        }
        let out = reduceLoss(l, reduction)
        let ni = input.requiresGrad, nt = target.requiresGrad
        return out.recording("smoothL1Loss", [input, target]) { g in
            let px = SendablePointer(input.data), pt = SendablePointer(target.data)
            let rg = ReducedGrad(g, reduction, count: n)
            let gx = Tensor(uninitialized: input.shape)
            let pg = SendablePointer(gx.data)
            Parallel.chunks(n, costPerItem: 4) { r in
                for i in r {
                    let d = px[i] - pt[i]
                    let dd: Float = Swift.abs(d) < beta ? d / beta : (d > 0 ? 1 : (d < 0 ? -1 : 0))
                    pg[i] = rg[i] * dd
                }
            }
            return [ni ? gx : nil, nt ? mapKernel(gx, NegOp()) : nil]
        }
    }

    /// F.binary_cross_entropy_with_logits with optional per-element `weight` and per-class
    /// `posWeight` (both broadcast to the logits' shape), as PyTorch:
    ///
    ///     bce = weight * ((1 - t) * x - (1 + (posWeight - 1) * t) * log_sigmoid(x))
    ///
    /// With `focalAlpha` and/or `focalGamma` (defaults 1 and 0), the focal variant of mmaction2's
    /// AVA heads (`loss = bce(reduction='none'); pt = exp(-loss); alpha * (1 - pt)^gamma * loss`)
    /// is applied per element before the reduction:
    ///
    ///     loss = alpha * (1 - exp(-bce))^gamma * bce
    ///
    /// Gradients flow to logits, target, weight and posWeight.
    public static func binaryCrossEntropyWithLogits(_ logits: Tensor, _ target: Tensor, weight: Tensor? = nil,
                                                    posWeight: Tensor? = nil, reduction: Reduction = .mean,
                                                    focalAlpha: Float? = nil, focalGamma: Float? = nil) -> Tensor {
        precondition(logits.shape == target.shape,
                     "binaryCrossEntropyWithLogits: target size \(target.shape) must be the same as input size \(logits.shape)")
        let shape = logits.shape, n = logits.count
        if let weight { precondition(broadcastShapes(weight.shape, shape) == shape, "binaryCrossEntropyWithLogits: weight \(weight.shape) does not broadcast to \(shape)") }
        if let posWeight { precondition(broadcastShapes(posWeight.shape, shape) == shape, "binaryCrossEntropyWithLogits: posWeight \(posWeight.shape) does not broadcast to \(shape)") }
        let w = weight.map { expandKernel($0, to: shape) }
        let pw = posWeight.map { expandKernel($0, to: shape) }
        let focal = focalAlpha != nil || focalGamma != nil
        let alpha = focalAlpha ?? 1, gamma = focalGamma ?? 0
        let l = Tensor(uninitialized: shape)
        let px = SendablePointer(logits.data), pt = SendablePointer(target.data), pl = SendablePointer(l.data)
        let pww = w.map { SendablePointer($0.data) }, ppw = pw.map { SendablePointer($0.data) }
        Parallel.chunks(n, costPerItem: 20) { r in
            for i in r {
                let x = px[i], t = pt[i]
                let lw: Float = ppw.map { 1 + ($0[i] - 1) * t } ?? 1
                var b = (1 - t) * x - lw * logSigmoid(x)
                if let pw = pww { b *= pw[i] }
                if focal { b = focalValue(b, alpha, gamma) }
                pl[i] = b
            }
        }
        let out = reduceLoss(l, reduction)
        var inputs = [logits, target]
        if let weight { inputs.append(weight) }
        if let posWeight { inputs.append(posWeight) }
        let nx = logits.requiresGrad, nt = target.requiresGrad
        let nw = weight?.requiresGrad ?? false, npw = posWeight?.requiresGrad ?? false
        return out.recording("bceWithLogits", inputs) { g in
            // Pointers from tensors the closure keeps alive.
            let px = SendablePointer(logits.data), pt = SendablePointer(target.data)
            let pww = w.map { SendablePointer($0.data) }, ppw = pw.map { SendablePointer($0.data) }
            let rg = ReducedGrad(g, reduction, count: n)
            let gx = nx ? Tensor(uninitialized: shape) : nil
            let gt = nt ? Tensor(uninitialized: shape) : nil
            let gw = nw ? Tensor(uninitialized: shape) : nil
            let gpw = npw ? Tensor(uninitialized: shape) : nil
            let pgx = gx.map { SendablePointer($0.data) }, pgt = gt.map { SendablePointer($0.data) }
            let pgw = gw.map { SendablePointer($0.data) }, pgpw = gpw.map { SendablePointer($0.data) }
            Parallel.chunks(n, costPerItem: 30) { r in
                for i in r {
                    let x = px[i], t = pt[i]
                    let pwv: Float = ppw?[i] ?? 1
                    let lw = 1 + (pwv - 1) * t
                    let ls = logSigmoid(x)
                    let wv: Float = pww?[i] ?? 1
                    var up = rg[i]
                    if focal {
                        let b = wv * ((1 - t) * x - lw * ls)
                        up *= focalDerivative(b, alpha, gamma)
                    }
                    // d bce / dx = w * ((1 - t) - lw * sigmoid(-x))
                    if let p = pgx { p[i] = up * wv * ((1 - t) - lw * sigmoidf(-x)) }
                    // d bce / dt = w * (-x - (pw - 1) * log_sigmoid(x))
                    if let p = pgt { p[i] = up * wv * (-x - (pwv - 1) * ls) }
                    if let p = pgw { p[i] = up * ((1 - t) * x - lw * ls) }
                    if let p = pgpw { p[i] = up * wv * (-t * ls) }
                }
            }
            var res: [Tensor?] = [gx, gt]
            if let weight { res.append(gw.map { unbroadcast($0, to: weight.shape) }) }
            if let posWeight { res.append(gpw.map { unbroadcast($0, to: posWeight.shape) }) }
            return res
        }
    }

    /// F.binary_cross_entropy on probabilities (not logits), exactly as PyTorch: each log is
    /// clamped at -100, so p = 0 or 1 gives a finite loss,
    ///
    ///     loss = -(t * max(log p, -100) + (1 - t) * max(log(1 - p), -100))
    ///
    /// and the gradient is PyTorch's, (p - t) / max(p (1 - p), 1e-12) (finite at 0 and 1). The
    /// gradient flows to the probabilities only (the target is a constant).
    public static func binaryCrossEntropy(_ probabilities: Tensor, _ target: Tensor, reduction: Reduction = .mean) -> Tensor {
        precondition(probabilities.shape == target.shape,
                     "binaryCrossEntropy: target size \(target.shape) must be the same as input size \(probabilities.shape)")
        let shape = probabilities.shape, n = probabilities.count
        let l = Tensor(uninitialized: shape)
        let pp = SendablePointer(probabilities.data), pt = SendablePointer(target.data), pl = SendablePointer(l.data)
        Parallel.chunks(n, costPerItem: 20) { r in
            for i in r {
                let p = pp[i], t = pt[i]
                pl[i] = -(t * Swift.max(Foundation.log(p), -100) + (1 - t) * Swift.max(Foundation.log(1 - p), -100))
            }
        }
        return reduceLoss(l, reduction).recording("binaryCrossEntropy", [probabilities]) { g in
            let pp = SendablePointer(probabilities.data), pt = SendablePointer(target.data)
            let rg = ReducedGrad(g, reduction, count: n)
            let gx = Tensor(uninitialized: shape)
            let pg = SendablePointer(gx.data)
            Parallel.chunks(n, costPerItem: 10) { r in
                for i in r {
                    let p = pp[i], t = pt[i]
                    pg[i] = rg[i] * (p - t) / Swift.max(p * (1 - p), 1e-12)
                }
            }
            return [gx]
        }
    }

    /// F.cross_entropy from logits [N, C] or [N, C, d...] and class indices [N] / [N, d...] (as
    /// Float), exactly as PyTorch: entries equal to `ignoreIndex` contribute nothing; with label
    /// smoothing ε, loss = (1 - ε) * nll + ε / C * sum_c(-log p_c); `.mean` divides both parts
    /// by the number of non-ignored entries (NaN when all are ignored, as PyTorch).
    public static func crossEntropy(_ logits: Tensor, _ target: Tensor, reduction: Reduction = .mean,
                                    ignoreIndex: Int = -100, labelSmoothing: Float = 0) -> Tensor {
        precondition(logits.rank >= 1, "crossEntropy: logits must have rank >= 1")
        precondition(labelSmoothing >= 0 && labelSmoothing <= 1, "crossEntropy: labelSmoothing must be in [0, 1]")
        // [C] with a scalar target is treated as a batch of one.
        let unbatched = logits.rank == 1
        let ls = unbatched ? [1] + logits.shape : logits.shape
        let nb = ls[0], c = ls[1], inner = ls[2...].reduce(1, *)
        var tshape = [nb] + Array(ls[2...])
        if unbatched { tshape = [] }
        precondition(target.shape == tshape || (unbatched && target.count == 1),
                     "crossEntropy: target shape \(target.shape) does not match logits \(logits.shape) (expected \(tshape))")
        let positions = nb * inner
        let logp = softmaxKernel(unbatched ? Tensor(shape: [1, c], storage: logits.storage) : logits, axis: 1, kind: .logSoftmax)
        let l = Tensor(uninitialized: [positions])
        let pl = SendablePointer(l.data), plp = SendablePointer(logp.data), pt = SendablePointer(target.data)
        let eps = labelSmoothing
        var valid = 0
        for i in 0..<positions where Int(pt[i]) != ignoreIndex { valid += 1 }
        Parallel.chunks(positions, costPerItem: c * 2) { r in
            for pos in r {
                let t = Int(pt[pos])
                if t == ignoreIndex { pl[pos] = 0; continue }
                precondition(t >= 0 && t < c, "crossEntropy: target \(t) is out of bounds for \(c) classes")
                let nI = pos / inner, j = pos % inner
                let base = plp + nI * c * inner + j
                var v = -(1 - eps) * base[t * inner]
                if eps > 0 {
                    var s: Float = 0
                    for k in 0..<c { s += base[k * inner] }
                    v -= eps / Float(c) * s
                }
                pl[pos] = v
            }
        }
        let divisor = Double(valid)
        var out = reduceLoss(l, reduction, divisor: divisor)
        if reduction == .none { out = Tensor(shape: target.shape, storage: out.storage) }
        let lshape = logits.shape
        return out.recording("crossEntropy", [logits]) { g in
            // Pointers from tensors the closure keeps alive.
            let plp = SendablePointer(logp.data), pt = SendablePointer(target.data)
            let rg = ReducedGrad(g, reduction, count: positions, divisor: divisor)
            let gx = Tensor(uninitialized: lshape)
            let pg = SendablePointer(gx.data)
            Parallel.chunks(positions, costPerItem: c * 4) { r in
                for pos in r {
                    let t = Int(pt[pos])
                    let nI = pos / inner, j = pos % inner
                    let base = plp + nI * c * inner + j, gb = pg + nI * c * inner + j
                    if t == ignoreIndex {
                        for k in 0..<c { gb[k * inner] = 0 }
                        continue
                    }
                    let up = rg[pos], off = eps / Float(c)
                    for k in 0..<c {
                        let p = Foundation.exp(base[k * inner])
                        gb[k * inner] = up * (p - off - (k == t ? 1 - eps : 0))
                    }
                }
            }
            return [gx]
        }
    }
}

/// log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), stable for all x.
@inline(__always) private func logSigmoid(_ x: Float) -> Float {
    Swift.min(x, 0) - Foundation.log1p(Foundation.exp(-Swift.abs(x)))
}

/// sigmoid(x), stable for all x.
@inline(__always) private func sigmoidf(_ x: Float) -> Float {
    if x >= 0 { return 1 / (1 + Foundation.exp(-x)) }
    let e = Foundation.exp(x)
    return e / (1 + e)
}

/// alpha * (1 - exp(-b))^gamma * b.
@inline(__always) private func focalValue(_ b: Float, _ alpha: Float, _ gamma: Float) -> Float {
    if gamma == 0 { return alpha * b }
    return alpha * Foundation.pow(1 - Foundation.exp(-b), gamma) * b
}

/// d/db of alpha * (1 - e^{-b})^gamma * b = alpha * ((1 - e^{-b})^gamma + gamma (1 - e^{-b})^(gamma-1) e^{-b} b).
@inline(__always) private func focalDerivative(_ b: Float, _ alpha: Float, _ gamma: Float) -> Float {
    if gamma == 0 { return alpha }
    let pt = Foundation.exp(-b), q = 1 - pt
    var d = Foundation.pow(q, gamma)
    if q != 0 { d += gamma * Foundation.pow(q, gamma - 1) * pt * b }
    return alpha * d
}
