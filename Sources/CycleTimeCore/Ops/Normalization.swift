// Batch normalization. Per-channel parallel loops over the
// [N, C, S] layout: two passes forward (mean, then variance and output in one more), fused
// backward with sum(dy) and sum(dy * xhat).

extension F {
    /// F.batch_norm over channel axis 1 of [N, C, ...]. In training, normalizes with the batch's
    /// statistics (biased variance) and updates the running ones in place (unbiased variance,
    /// running = (1 - momentum) * running + momentum * batch); in evaluation uses the running ones.
    public static func batchNorm(_ x: Tensor, runningMean: Tensor?, runningVar: Tensor?, weight: Tensor?, bias: Tensor?,
                                 training: Bool, momentum: Float = 0.1, eps: Float = 1e-5) -> Tensor {
        precondition(x.rank >= 2, "batch_norm: input must be [N, C, ...], got \(x.shape)")
        let N = x.shape[0], C = x.shape[1], S = Tensor.count(of: Array(x.shape.dropFirst(2)))
        let M = N * S
        for (t, what) in [(runningMean, "running_mean"), (runningVar, "running_var"), (weight, "weight"), (bias, "bias")] {
            if let t { precondition(t.count == C, "batch_norm: \(what) \(t.shape) must have \(C) elements") }
        }
        let mean = Tensor(uninitialized: [C]), invstd = Tensor(uninitialized: [C])
        let xs = SendablePointer(x.data), ms = SendablePointer(mean.data), iv = SendablePointer(invstd.data)
        if training {
            precondition(M > 1, "batch_norm: expected more than 1 value per channel when training, got input \(x.shape)")
            let rm = runningMean.map { SendablePointer($0.data) }, rv = runningVar.map { SendablePointer($0.data) }
            Parallel.chunks(C, costPerItem: 2 * M) { r in
                for c in r {
                    var acc: Double = 0
                    for n in 0..<N { acc += Double(simdSum(xs.p + (n * C + c) * S, S)) }
                    let mu = Float(acc / Double(M))
                    var sq: Double = 0
                    for n in 0..<N { sq += Double(simdSumSqDiff(xs.p + (n * C + c) * S, S, mu)) }
                    let varB = sq / Double(M)
                    ms[c] = mu
                    iv[c] = Float(1 / (varB + Double(eps)).squareRoot())
                    if let rm { rm[c] = (1 - momentum) * rm[c] + momentum * mu }
                    if let rv { rv[c] = (1 - momentum) * rv[c] + momentum * Float(sq / Double(M - 1)) }
                }
            }
        } else {
            guard let rMean = runningMean, let rVar = runningVar else {
                preconditionFailure("batch_norm: evaluation needs running_mean and running_var")
            }
            for c in 0..<C {
                mean.data[c] = rMean.data[c]
                invstd.data[c] = 1 / (rVar.data[c] + eps).squareRoot()
            }
        }
        // y = (x - mean) * invstd * w + b  =  x * scale + shift.
        let out = Tensor(uninitialized: x.shape)
        let ys = SendablePointer(out.data)
        let ws = weight.map { SendablePointer($0.data) }, bs = bias.map { SendablePointer($0.data) }
        Parallel.chunks(N * C, costPerItem: S) { r in
            for item in r {
                let c = item % C
                let scale = iv[c] * (ws?[c] ?? 1)
                let shift = (bs?[c] ?? 0) - ms[c] * scale
                let s = xs.p + item * S, d = ys.p + item * S
                for i in 0..<S { d[i] = s[i] * scale + shift }
            }
        }

        var inputs = [x]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        let needX = x.requiresGrad, needW = weight?.requiresGrad ?? false, needB = bias?.requiresGrad ?? false
        let hasW = weight != nil, hasB = bias != nil, shape = x.shape
        // Backward reads x; inside autocast a bf16 copy of it (PyTorch's batch norm there saves its
        // bf16 input), so that x itself may be freed before backward.
        let savedX = SavedTensor(x, bf16: Autocast.isEnabled && Tensor.needsGrad(inputs))
        return out.recording("batch_norm", inputs) { [mean, invstd] gy in
            _ = (mean, invstd)
            let xt = savedX.tensor
            let xs = SendablePointer(xt.data)
            // Per channel: sdy = sum(dy), sdx = sum(dy * xhat).
            let sdy = Tensor(uninitialized: [C]), sdx = Tensor(uninitialized: [C])
            let gs = SendablePointer(gy.data), a = SendablePointer(sdy.data), b = SendablePointer(sdx.data)
            Parallel.chunks(C, costPerItem: 2 * M) { r in
                for c in r {
                    var s1: Double = 0, s2: Double = 0
                    let mu = ms[c]
                    for n in 0..<N {
                        let off = (n * C + c) * S
                        let (p, q) = simdSumAndDot(gs.p + off, xs.p + off, S, mu)
                        s1 += Double(p); s2 += Double(q)
                    }
                    a[c] = Float(s1)
                    b[c] = Float(s2) * iv[c]
                }
            }
            var dx: Tensor? = nil
            if needX {
                let d = Tensor(uninitialized: shape)
                let ds = SendablePointer(d.data)
                let ws = weight.map { SendablePointer($0.data) }
                let invM = 1 / Float(M)
                Parallel.chunks(N * C, costPerItem: S) { r in
                    for item in r {
                        let c = item % C
                        let w = ws?[c] ?? 1, istd = iv[c], mu = ms[c]
                        let k = w * istd
                        let s = gs.p + item * S, xv = xs.p + item * S, o = ds.p + item * S
                        if training {
                            // dx = w*istd * (dy - mean(dy) - xhat * mean(dy*xhat))
                            let mdy = a[c] * invM, mdx = b[c] * invM
                            for i in 0..<S {
                                let xhat = (xv[i] - mu) * istd
                                o[i] = k * (s[i] - mdy - xhat * mdx)
                            }
                        } else {
                            for i in 0..<S { o[i] = k * s[i] }
                        }
                    }
                }
                dx = d
            }
            var grads: [Tensor?] = [dx]
            if hasW { grads.append(needW ? sdx : nil) }
            if hasB { grads.append(needB ? sdy : nil) }
            return grads
        }
    }
}

/// sum((p[i] - mu)^2), vectorized.
@inline(__always)
func simdSumSqDiff(_ p: UnsafePointer<Float>, _ count: Int, _ mu: Float) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    let m = SIMD8<Float>(repeating: mu)
    let raw = UnsafeRawPointer(p)
    var i = 0
    while i + 8 <= count {
        let d = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - m
        acc += d * d
        i += 8
    }
    var s = acc.sum()
    while i < count { let d = p[i] - mu; s += d * d; i += 1 }
    return s
}

/// (sum(g), sum(g * (x - mu))), vectorized.
@inline(__always)
func simdSumAndDot(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ count: Int, _ mu: Float) -> (Float, Float) {
    var a1 = SIMD8<Float>(repeating: 0), a2 = SIMD8<Float>(repeating: 0)
    let m = SIMD8<Float>(repeating: mu)
    let rg = UnsafeRawPointer(g), rx = UnsafeRawPointer(x)
    var i = 0
    while i + 8 <= count {
        let gv = rg.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        let xv = rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - m
        a1 += gv
        a2 += gv * xv
        i += 8
    }
    var s1 = a1.sum(), s2 = a2.sum()
    while i < count { s1 += g[i]; s2 += g[i] * (x[i] - mu); i += 1 }
    return (s1, s2)
}
