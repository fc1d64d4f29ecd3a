import Foundation

// Convolutions. NCHW / NCDHW, weights [Cout, Cin/groups, k...]. `ConvolutionPolicy` picks the path:
//
// - oneDNN (OneDNNOps.swift) for every 2-D and 3-D conv inside `Autocast.bf16`, and in float32 when
//   the policy's `backend` is `.oneDNN`; otherwise the native paths below.
// - Winograd F(2x2, 3x3) (Winograd.swift) for 3x3 stride-1 2-D convs (`winogradApplies`).
// - Batch-parallel (`convUsesBatchParallel`): each worker takes whole images, im2col into its own
//   buffer and a single-threaded sgemm (see "batch-parallel scheme" below).
// - Otherwise im2col of a chunk of images (whole batch when it fits the policy's maxColumnBytes)
//   into one [Cin*k, nb*P] matrix, one multi-threaded sgemm per group with the weight
//   [Cout, Cin/groups*k], then a parallel re-layout to [N, Cout, P] with the bias fused. 1x1
//   stride-1 convs (pointwise) skip im2col.
// Backward: dW = dY x col^T (col recomputed, or kept with the policy's keepColumns); dX of a stride-1
// conv as a forward convolution of dY with the flipped weight (Winograd or im2col), otherwise
// dcol = W^T x dY then col2im; dBias a parallel per-channel reduction. Reflection padding is
// F.pad(mode: .reflect) followed by a convolution without padding.

extension F {
    /// F.conv2d. stride/padding/dilation are [h, w]. `paddingMode: .reflect` pads by reflection
    /// (Conv2d's padding_mode='reflect').
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: [Int] = [1, 1],
                              padding: [Int] = [0, 0], dilation: [Int] = [1, 1], groups: Int = 1,
                              paddingMode: PadMode = .zeros) -> Tensor {
        if x.rank == 3 {
            let y = conv2d(x.reshaped([1] + x.shape), weight: weight, bias: bias, stride: stride, padding: padding,
                           dilation: dilation, groups: groups, paddingMode: paddingMode)
            return y.reshaped(Array(y.shape.dropFirst()))
        }
        precondition(x.rank == 4, "conv2d: input must be [N, C, H, W], got \(x.shape)")
        precondition(weight.rank == 4, "conv2d: weight must be [Cout, Cin/groups, kh, kw], got \(weight.shape)")
        let s = expand2(stride, "stride"), p = expand2(padding, "padding"), d = expand2(dilation, "dilation")
        var input = x
        var pad = p
        if paddingMode == .reflect && (p[0] > 0 || p[1] > 0) {
            input = F.pad(x, [p[1], p[1], p[0], p[0]], mode: .reflect)
            pad = [0, 0]
        }
        var g = ConvGeometry()
        g.n = input.shape[0]; g.cin = input.shape[1]; g.h = input.shape[2]; g.w = input.shape[3]
        g.cout = weight.shape[0]; g.groups = groups
        g.kh = weight.shape[2]; g.kw = weight.shape[3]
        g.sh = s[0]; g.sw = s[1]; g.ph = pad[0]; g.pw = pad[1]; g.dh = d[0]; g.dw = d[1]
        checkConv(g, weight: weight, bias: bias, name: "conv2d")
        g.computeOutput()
        precondition(g.ho > 0 && g.wo > 0, "conv2d: output would be empty for input \(x.shape) and weight \(weight.shape)")
        // Autocast bf16 and the oneDNN backend run on oneDNN; the native paths otherwise.
        if Autocast.isEnabled { return oneDNNConvolution(input, weight, bias, g, precision: .bf16) }
        if ConvolutionPolicy.current.backend.usesOneDNN(g, volumetric: false) { return oneDNNConvolution(input, weight, bias, g, precision: .fp32) }
        return convolution(input, weight, bias, g, outShape: [g.n, g.cout, g.ho, g.wo], name: "conv2d")
    }

    /// F.conv3d. stride/padding/dilation are [t, h, w].
    public static func conv3d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: [Int] = [1, 1, 1],
                              padding: [Int] = [0, 0, 0], dilation: [Int] = [1, 1, 1], groups: Int = 1) -> Tensor {
        if x.rank == 4 {
            let y = conv3d(x.reshaped([1] + x.shape), weight: weight, bias: bias, stride: stride, padding: padding,
                           dilation: dilation, groups: groups)
            return y.reshaped(Array(y.shape.dropFirst()))
        }
        precondition(x.rank == 5, "conv3d: input must be [N, C, T, H, W], got \(x.shape)")
        precondition(weight.rank == 5, "conv3d: weight must be [Cout, Cin/groups, kt, kh, kw], got \(weight.shape)")
        let s = expand3(stride, "stride"), p = expand3(padding, "padding"), d = expand3(dilation, "dilation")
        var g = ConvGeometry()
        g.n = x.shape[0]; g.cin = x.shape[1]; g.t = x.shape[2]; g.h = x.shape[3]; g.w = x.shape[4]
        g.cout = weight.shape[0]; g.groups = groups
        g.kt = weight.shape[2]; g.kh = weight.shape[3]; g.kw = weight.shape[4]
        g.st = s[0]; g.sh = s[1]; g.sw = s[2]; g.pt = p[0]; g.ph = p[1]; g.pw = p[2]
        g.dt = d[0]; g.dh = d[1]; g.dw = d[2]
        checkConv(g, weight: weight, bias: bias, name: "conv3d")
        g.computeOutput()
        precondition(g.to > 0 && g.ho > 0 && g.wo > 0, "conv3d: output would be empty for input \(x.shape) and weight \(weight.shape)")
        if Autocast.isEnabled { return oneDNNConvolution(x, weight, bias, g, precision: .bf16, volumetric: true) }
        if ConvolutionPolicy.current.backend.usesOneDNN(g, volumetric: true) { return oneDNNConvolution(x, weight, bias, g, precision: .fp32, volumetric: true) }
        return convolution(x, weight, bias, g, outShape: [g.n, g.cout, g.to, g.ho, g.wo], name: "conv3d")
    }
}

func expand2(_ v: [Int], _ what: String) -> [Int] {
    if v.count == 1 { return [v[0], v[0]] }
    precondition(v.count == 2, "\(what) must have 1 or 2 entries, got \(v)")
    return v
}

func expand3(_ v: [Int], _ what: String) -> [Int] {
    if v.count == 1 { return [v[0], v[0], v[0]] }
    precondition(v.count == 3, "\(what) must have 1 or 3 entries, got \(v)")
    return v
}

private func checkConv(_ g: ConvGeometry, weight: Tensor, bias: Tensor?, name: String) {
    precondition(g.groups >= 1 && g.cin % g.groups == 0 && g.cout % g.groups == 0,
                 "\(name): channels (in \(g.cin), out \(g.cout)) must be divisible by groups \(g.groups)")
    precondition(weight.shape[1] * g.groups == g.cin,
                 "\(name): weight \(weight.shape) expects \(weight.shape[1] * g.groups) input channels, input has \(g.cin)")
    if let b = bias { precondition(b.count == g.cout && b.rank == 1, "\(name): bias \(b.shape) must be [\(g.cout)]") }
    precondition(g.st > 0 && g.sh > 0 && g.sw > 0 && g.dt > 0 && g.dh > 0 && g.dw > 0, "\(name): stride and dilation must be positive")
    precondition(g.pt >= 0 && g.ph >= 0 && g.pw >= 0, "\(name): padding must be non-negative")
}

/// Images per chunk so the column matrix stays within the policy's maxColumnBytes.
private func chunkImages(_ g: ConvGeometry) -> Int {
    let perImage = max(1, g.rows * g.outPlane * MemoryLayout<Float>.stride)
    return max(1, min(g.n, ConvolutionPolicy.current.maxColumnBytes / perImage))
}

/// GEMMs of one chunk: out[cout, L] (ldc) = W[cout, rows/groups-block] x col[rows, L], per group.
@inline(__always)
private func groupGemmForward(_ w: UnsafePointer<Float>, _ col: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                              _ g: ConvGeometry, L: Int, ldc: Int) {
    let kg = g.cinG * g.kernelSize
    for gi in 0..<g.groups {
        BLAS.sgemm(transA: false, transB: false, m: g.coutG, n: L, k: kg,
                   a: w + gi * g.coutG * kg, lda: kg, b: col + gi * kg * L, ldb: L,
                   c: c + gi * g.coutG * ldc, ldc: ldc)
    }
}

/// Raw forward: out[N, Cout, P] = conv(x, w) + bias. Returns the column matrix when it covered the
/// whole batch in one chunk (so backward may reuse it).
@discardableResult
func convForwardKernel(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                       _ g: ConvGeometry, _ out: UnsafeMutablePointer<Float>) -> Tensor? {
    let P = g.outPlane
    let nbMax = chunkImages(g)
    let y = SendablePointer(out)
    if g.isPointwise {
        // The column matrix of image n is x[n] itself ([Cin, P]).
        for n in 0..<g.n {
            groupGemmForward(w, x + n * g.cin * P, out + n * g.cout * P, g, L: P, ldc: P)
        }
        if let bias { addBias(out, bias, n: g.n, c: g.cout, plane: P) }
        return nil
    }
    let col = Tensor(uninitialized: [g.rows * nbMax * P])
    var tmp: Tensor? = nil
    var n0 = 0
    while n0 < g.n {
        let nb = min(nbMax, g.n - n0), L = nb * P
        im2col(x, g, n0: n0, nb: nb, col.data)
        if nb == 1 {
            groupGemmForward(w, col.data, out + n0 * g.cout * P, g, L: L, ldc: L)
            if let bias { addBias(out + n0 * g.cout * P, bias, n: 1, c: g.cout, plane: P) }
        } else {
            let t = tmp ?? Tensor(uninitialized: [g.cout * nbMax * P])
            tmp = t
            groupGemmForward(w, col.data, t.data, g, L: L, ldc: L)
            // [cout, nb, P] -> out[n0 + j, cout, P] with bias.
            let ts = SendablePointer(t.data)
            let bs = bias.map { SendablePointer(UnsafeMutablePointer(mutating: $0)) }
            let cout = g.cout, base = n0
            Parallel.chunks(nb * cout, costPerItem: P) { r in
                for item in r {
                    let j = item / cout, co = item % cout
                    let s = ts.p + co * L + j * P
                    let d = y.p + ((base + j) * cout + co) * P
                    if let bs {
                        let bv = bs[co]
                        for i in 0..<P { d[i] = s[i] + bv }
                    } else {
                        d.update(from: s, count: P)
                    }
                }
            }
        }
        n0 += nb
    }
    return nbMax == g.n ? col : nil
}

/// dX of a stride-1 convolution as a convolution of dY with the flipped, transposed weight
/// (a forward-shaped GEMM instead of W^T x dY + col2im). Nil when the padding does not allow it.
private func inputGradientByConvolution(_ gy: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ g: ConvGeometry,
                                        _ dx: UnsafeMutablePointer<Float>) -> Bool {
    guard let (g2, wt) = transposedConvSetup(w, g) else { return false }
    if ConvolutionPolicy.current.winogradInputGradient && winogradApplies(g2) { winogradForward(gy, wt.data, nil, g2, dx) } else { convForwardKernel(gy, wt.data, nil, g2, dx) }
    return true
}

func convolution(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ g: ConvGeometry, outShape: [Int], name: String) -> Tensor {
    let out = Tensor(uninitialized: outShape)
    let P = g.outPlane, kg = g.cinG * g.kernelSize
    let nbMax = chunkImages(g)
    let pointwise = g.isPointwise
    let batchParallel = convUsesBatchParallel(g)
    var col: Tensor? = nil
    if winogradApplies(g) {
        winogradForward(x.data, weight.data, bias?.data, g, out.data)
    } else if batchParallel {
        convForwardBatchParallel(x.data, weight.data, bias?.data, g, out.data)
    } else {
        col = convForwardKernel(x.data, weight.data, bias?.data, g, out.data)
    }
    let kept: Tensor? = (Tensor.needsGrad(weight) && ConvolutionPolicy.current.keepColumns) ? col : nil

    let needX = x.requiresGrad, needW = weight.requiresGrad, needB = bias?.requiresGrad ?? false
    var inputs = [x, weight]
    if let b = bias { inputs.append(b) }
    let xShape = x.shape, wShape = weight.shape
    return out.recording(name, inputs) { [kept] gy in
        let dW: Tensor? = needW ? Tensor(uninitialized: wShape) : nil
        let dX: Tensor? = needX ? Tensor(uninitialized: xShape) : nil
        var dB: Tensor? = nil
        if needB { dB = biasGradient(gy, n: g.n, c: g.cout, plane: P) }
        if batchParallel {
            if needW || needX { convBackwardBatchParallel(x.data, weight.data, gy.data, g, dX: dX?.data, dW: dW?.data) }
        } else if pointwise {
            for n in 0..<g.n {
                let dy = gy.data + n * g.cout * P, xn = x.data + n * g.cin * P
                for gi in 0..<g.groups {
                    if let dW {
                        BLAS.sgemm(transA: false, transB: true, m: g.coutG, n: kg, k: P,
                                   a: dy + gi * g.coutG * P, lda: P, b: xn + gi * kg * P, ldb: P,
                                   beta: n == 0 ? 0 : 1, c: dW.data + gi * g.coutG * kg, ldc: kg)
                    }
                    if let dX {
                        BLAS.sgemm(transA: true, transB: false, m: kg, n: P, k: g.coutG,
                                   a: weight.data + gi * g.coutG * kg, lda: kg, b: dy + gi * g.coutG * P, ldb: P,
                                   c: dX.data + n * g.cin * P + gi * kg * P, ldc: P)
                    }
                }
            }
        } else if needW || needX {
            // Stride-1 convs: dX as a convolution of dY (forward-shaped GEMM, no col2im).
            let dxDone = ConvolutionPolicy.current.inputGradientAsConvolution
                && dX.map { inputGradientByConvolution(gy.data, weight.data, g, $0.data) } ?? false
            if dxDone && dW == nil { return bias != nil ? [dX, dW, dB] : [dX, dW] }
            let col = kept ?? Tensor(uninitialized: [g.rows * nbMax * P])
            let dyBuf: Tensor? = nbMax > 1 && (dW != nil || !dxDone) ? Tensor(uninitialized: [g.cout * nbMax * P]) : nil
            var n0 = 0
            while n0 < g.n {
                let nb = min(nbMax, g.n - n0), L = nb * P
                // dY of the chunk as [cout, L].
                let dy: UnsafeMutablePointer<Float>
                if let dyBuf {
                    dy = dyBuf.data
                    let ds = SendablePointer(dyBuf.data), gs = SendablePointer(gy.data)
                    let cout = g.cout, base = n0
                    Parallel.chunks(nb * cout, costPerItem: P) { r in
                        for item in r {
                            let j = item / cout, co = item % cout
                            (ds.p + co * L + j * P).update(from: gs.p + ((base + j) * cout + co) * P, count: P)
                        }
                    }
                } else {
                    dy = gy.data + n0 * g.cout * P
                }
                if let dW {
                    if kept == nil { im2col(x.data, g, n0: n0, nb: nb, col.data) }
                    for gi in 0..<g.groups {
                        BLAS.sgemm(transA: false, transB: true, m: g.coutG, n: kg, k: L,
                                   a: dy + gi * g.coutG * L, lda: L, b: col.data + gi * kg * L, ldb: L,
                                   beta: n0 == 0 ? 0 : 1, c: dW.data + gi * g.coutG * kg, ldc: kg)
                    }
                }
                if let dX, !dxDone {
                    // dcol = W^T dY (reuses the column buffer), then col2im.
                    for gi in 0..<g.groups {
                        BLAS.sgemm(transA: true, transB: false, m: kg, n: L, k: g.coutG,
                                   a: weight.data + gi * g.coutG * kg, lda: kg, b: dy + gi * g.coutG * L, ldb: L,
                                   c: col.data + gi * kg * L, ldc: L)
                    }
                    col2im(col.data, g, n0: n0, nb: nb, dX.data)
                }
                n0 += nb
            }
        }
        var grads: [Tensor?] = [dX, dW]
        if bias != nil { grads.append(dB) }
        return grads
    }
}

/// out[j, c, :] += b[c] for j in 0..<n.
private func addBias(_ out: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, n: Int, c: Int, plane: Int) {
    let y = SendablePointer(out), bs = SendablePointer(UnsafeMutablePointer(mutating: b))
    Parallel.chunks(n * c, costPerItem: plane) { r in
        for item in r {
            let d = y.p + item * plane
            let bv = bs[item % c]
            for i in 0..<plane { d[i] += bv }
        }
    }
}

/// Sum of g [N, C, plane] over N and plane, per channel.
func biasGradient(_ g: Tensor, n: Int, c: Int, plane: Int) -> Tensor {
    let out = Tensor(uninitialized: [c])
    let gs = SendablePointer(g.data), os = SendablePointer(out.data)
    Parallel.chunks(c, costPerItem: n * plane) { r in
        for co in r {
            var acc: Double = 0
            for j in 0..<n { acc += Double(simdSum(gs.p + (j * c + co) * plane, plane)) }
            os[co] = Float(acc)
        }
    }
    return out
}

// MARK: batch-parallel scheme
// Each of the Parallel.threadCount workers takes whole images: a serial im2col into its own
// column buffer (which stays in cache) followed by a single-threaded sgemm. No fork/join per GEMM,
// and no OpenBLAS worker spinning while our loops run. OpenBLAS is switched to one thread for the
// duration (its single-threaded path is reentrant), then restored.

/// Whether the batch is large enough to split evenly over the workers.
func convUsesBatchParallel(_ g: ConvGeometry) -> Bool {
    let T = Parallel.threadCount
    guard ConvolutionPolicy.current.batchParallel && T > 1 && g.n >= T else { return false }
    return g.n % T == 0 || g.n >= 4 * T
}

/// Calls body(worker, image) for every image; worker w always takes the same contiguous block of
/// images, so per-worker partial sums (the weight gradient) are the same from run to run.
private func forEachImage(_ n: Int, workers T: Int, _ body: (Int, Int) -> Void) {
    BLAS.withThreads(1) {
        withoutActuallyEscaping(body) { b in
            let box = UnsafeSendableBox(b)
            DispatchQueue.concurrentPerform(iterations: T) { w in
                for i in (n * w / T)..<(n * (w + 1) / T) { box.value(w, i) }
            }
        }
    }
}

func convForwardBatchParallel(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                              _ g: ConvGeometry, _ out: UnsafeMutablePointer<Float>) {
    let T = min(Parallel.threadCount, g.n), P = g.outPlane
    let colSize = g.isPointwise ? 0 : g.rows * P
    let cols = Tensor(uninitialized: [max(1, T * colSize)])
    forEachImage(g.n, workers: T) { wk, n in
        let yn = out + n * g.cout * P
        let b: UnsafePointer<Float>
        if g.isPointwise {
            b = x + n * g.cin * g.inPlane
        } else {
            let col = cols.data + wk * colSize
            im2col(x, g, n0: n, nb: 1, col, parallel: false)
            b = UnsafePointer(col)
        }
        groupGemmForward(w, b, yn, g, L: P, ldc: P)
        if let bias {
            for co in 0..<g.cout {
                let d = yn + co * P, bv = bias[co]
                for i in 0..<P { d[i] += bv }
            }
        }
    }
}

/// Geometry and flipped weight for dX of a stride-1 conv as a forward conv of dY (nil if impossible).
private func transposedConvSetup(_ w: UnsafePointer<Float>, _ g: ConvGeometry) -> (ConvGeometry, Tensor)? {
    guard g.st == 1 && g.sh == 1 && g.sw == 1 else { return nil }
    let qt = g.dt * (g.kt - 1) - g.pt, qh = g.dh * (g.kh - 1) - g.ph, qw = g.dw * (g.kw - 1) - g.pw
    guard qt >= 0 && qh >= 0 && qw >= 0 else { return nil }
    var g2 = g
    g2.cin = g.cout; g2.cout = g.cin
    g2.t = g.to; g2.h = g.ho; g2.w = g.wo
    g2.pt = qt; g2.ph = qh; g2.pw = qw
    g2.to = g.t; g2.ho = g.h; g2.wo = g.w
    let kk = g.kernelSize, cinG = g.cinG, coutG = g.coutG
    // W'[gi*cinG + ci, co, flipped k] = W[gi*coutG + co, ci, k].
    let wt = Tensor(uninitialized: [g.cin * coutG * kk])
    let ws = SendablePointer(UnsafeMutablePointer(mutating: w)), ts = SendablePointer(wt.data)
    Parallel.chunks(g.cin, costPerItem: coutG * kk) { r in
        for c in r {
            let gi = c / cinG, ci = c % cinG
            for co in 0..<coutG {
                let src = ws.p + ((gi * coutG + co) * cinG + ci) * kk
                let dst = ts.p + (c * coutG + co) * kk
                for k in 0..<kk { dst[k] = src[kk - 1 - k] }
            }
        }
    }
    return (g2, wt)
}

func convBackwardBatchParallel(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ gy: UnsafePointer<Float>,
                               _ g: ConvGeometry, dX: UnsafeMutablePointer<Float>?, dW: UnsafeMutablePointer<Float>?) {
    let T = min(Parallel.threadCount, g.n), P = g.outPlane, kg = g.cinG * g.kernelSize
    let pointwise = g.isPointwise
    var tconv = (dX != nil && !pointwise && ConvolutionPolicy.current.inputGradientAsConvolution) ? transposedConvSetup(w, g) : nil
    var dXLoop = dX
    if let (g2, wt) = tconv, let dX, ConvolutionPolicy.current.winogradInputGradient && winogradApplies(g2) {
        // dX through Winograd (its own batch-parallel scheme), dW below.
        winogradForward(gy, wt.data, nil, g2, dX)
        tconv = nil
        dXLoop = nil
        if dW == nil { return }
    }
    var colSize = 0
    if dW != nil && !pointwise { colSize = g.rows * P }
    if dXLoop != nil && !pointwise { colSize = max(colSize, tconv.map { $0.0.rows * $0.0.outPlane } ?? g.rows * P) }
    let cols = Tensor(uninitialized: [max(1, T * colSize)])
    let wCount = g.cout * kg
    let parts = dW != nil ? Tensor(uninitialized: [T * wCount]) : nil
    let used = UnsafeMutablePointer<Bool>.allocate(capacity: T)
    used.initialize(repeating: false, count: T)
    defer { used.deallocate() }
    forEachImage(g.n, workers: T) { wk, n in
        let col = cols.data + wk * colSize
        let dy = gy + n * g.cout * P
        let xn = x + n * g.cin * g.inPlane
        if let parts {
            let part = parts.data + wk * wCount
            let b: UnsafePointer<Float>
            if pointwise { b = xn } else { im2col(x, g, n0: n, nb: 1, col, parallel: false); b = UnsafePointer(col) }
            for gi in 0..<g.groups {
                BLAS.sgemm(transA: false, transB: true, m: g.coutG, n: kg, k: P,
                           a: dy + gi * g.coutG * P, lda: P, b: b + gi * kg * P, ldb: P,
                           beta: used[wk] ? 1 : 0, c: part + gi * g.coutG * kg, ldc: kg)
            }
            used[wk] = true
        }
        if let dX = dXLoop {
            let dxn = dX + n * g.cin * g.inPlane
            if pointwise {
                for gi in 0..<g.groups {
                    BLAS.sgemm(transA: true, transB: false, m: kg, n: P, k: g.coutG,
                               a: w + gi * g.coutG * kg, lda: kg, b: dy + gi * g.coutG * P, ldb: P,
                               c: dxn + gi * kg * P, ldc: P)
                }
            } else if let (g2, wt) = tconv {
                im2col(gy, g2, n0: n, nb: 1, col, parallel: false)
                groupGemmForward(wt.data, col, dxn, g2, L: g2.outPlane, ldc: g2.outPlane)
            } else {
                for gi in 0..<g.groups {
                    BLAS.sgemm(transA: true, transB: false, m: kg, n: P, k: g.coutG,
                               a: w + gi * g.coutG * kg, lda: kg, b: dy + gi * g.coutG * P, ldb: P,
                               c: col + gi * kg * P, ldc: P)
                }
                col2im(col, g, n0: n, nb: 1, dX, parallel: false)
            }
        }
    }
    if let dW, let parts {
        let ps = SendablePointer(parts.data), ds = SendablePointer(dW)
        let usedList = (0..<T).filter { used[$0] }
        Parallel.chunks(wCount, costPerItem: T) { r in
            for i in r {
                var s: Float = 0
                for k in usedList { s += ps[k * wCount + i] }
                ds[i] = s
            }
        }
    }
}
