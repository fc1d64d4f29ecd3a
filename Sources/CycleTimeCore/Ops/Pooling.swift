// Max, average and adaptive average pooling. Everything runs in 3 spatial dims (2-D pools use T = 1),
// parallel over the N*C planes.

extension F {
    /// F.max_pool2d (stride defaults to kernel).
    public static func maxPool2d(_ x: Tensor, kernel: [Int], stride: [Int]? = nil, padding: [Int] = [0, 0],
                                 dilation: [Int] = [1, 1], ceilMode: Bool = false) -> Tensor {
        let k = expand2(kernel, "kernel")
        let g = poolGeometry(x, spatial: 2, kernel: [1] + k, stride: [1] + expand2(stride ?? k, "stride"),
                             padding: [0] + expand2(padding, "padding"), dilation: [1] + expand2(dilation, "dilation"),
                             ceilMode: ceilMode, name: "max_pool2d")
        return maxPool(x, g, name: "max_pool2d")
    }

    public static func maxPool3d(_ x: Tensor, kernel: [Int], stride: [Int]? = nil, padding: [Int] = [0, 0, 0],
                                 ceilMode: Bool = false) -> Tensor {
        let k = expand3(kernel, "kernel")
        let g = poolGeometry(x, spatial: 3, kernel: k, stride: expand3(stride ?? k, "stride"),
                             padding: expand3(padding, "padding"), dilation: [1, 1, 1], ceilMode: ceilMode, name: "max_pool3d")
        return maxPool(x, g, name: "max_pool3d")
    }

    /// F.avg_pool2d.
    public static func avgPool2d(_ x: Tensor, kernel: [Int], stride: [Int]? = nil, padding: [Int] = [0, 0],
                                 ceilMode: Bool = false, countIncludePad: Bool = true) -> Tensor {
        let k = expand2(kernel, "kernel")
        let g = poolGeometry(x, spatial: 2, kernel: [1] + k, stride: [1] + expand2(stride ?? k, "stride"),
                             padding: [0] + expand2(padding, "padding"), dilation: [1, 1, 1], ceilMode: ceilMode, name: "avg_pool2d")
        return avgPool(x, g, countIncludePad: countIncludePad, name: "avg_pool2d")
    }

    public static func avgPool3d(_ x: Tensor, kernel: [Int], stride: [Int]? = nil, padding: [Int] = [0, 0, 0],
                                 ceilMode: Bool = false, countIncludePad: Bool = true) -> Tensor {
        let k = expand3(kernel, "kernel")
        let g = poolGeometry(x, spatial: 3, kernel: k, stride: expand3(stride ?? k, "stride"),
                             padding: expand3(padding, "padding"), dilation: [1, 1, 1], ceilMode: ceilMode, name: "avg_pool3d")
        return avgPool(x, g, countIncludePad: countIncludePad, name: "avg_pool3d")
    }

    /// F.adaptive_avg_pool2d / 3d (output size per spatial dim).
    public static func adaptiveAvgPool2d(_ x: Tensor, outputSize: [Int]) -> Tensor {
        adaptiveAvgPool(x, spatial: 2, outputSize: expand2(outputSize, "outputSize"), name: "adaptive_avg_pool2d")
    }

    public static func adaptiveAvgPool3d(_ x: Tensor, outputSize: [Int]) -> Tensor {
        adaptiveAvgPool(x, spatial: 3, outputSize: expand3(outputSize, "outputSize"), name: "adaptive_avg_pool3d")
    }
}

/// PyTorch's pooling output size (pooling_output_shape): the last window must start inside the
/// input or the left padding.
func poolOutputSize(_ input: Int, kernel: Int, pad: Int, stride: Int, dilation: Int, ceilMode: Bool) -> Int {
    let span = input + 2 * pad - dilation * (kernel - 1) - 1 + (ceilMode ? stride - 1 : 0)
    var out = (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1
    if ceilMode && (out - 1) * stride >= input + pad { out -= 1 }
    return out
}

/// Geometry of a pool over x [N, C, spatial...] or unbatched [C, spatial...]; n is N*C planes.
private func poolGeometry(_ x: Tensor, spatial: Int, kernel: [Int], stride: [Int], padding: [Int], dilation: [Int],
                          ceilMode: Bool, name: String) -> ConvGeometry {
    precondition(x.rank == spatial + 2 || x.rank == spatial + 1, "\(name): input must have rank \(spatial + 1) or \(spatial + 2), got \(x.shape)")
    let sp = Array(x.shape.suffix(spatial))
    let dims = spatial == 2 ? [1] + sp : sp
    var g = ConvGeometry()
    g.n = Tensor.count(of: Array(x.shape.dropLast(spatial)))
    g.t = dims[0]; g.h = dims[1]; g.w = dims[2]
    g.kt = kernel[0]; g.kh = kernel[1]; g.kw = kernel[2]
    g.st = stride[0]; g.sh = stride[1]; g.sw = stride[2]
    g.pt = padding[0]; g.ph = padding[1]; g.pw = padding[2]
    g.dt = dilation[0]; g.dh = dilation[1]; g.dw = dilation[2]
    for i in 0..<3 {
        precondition(kernel[i] > 0 && stride[i] > 0 && dilation[i] > 0, "\(name): kernel, stride and dilation must be positive")
        precondition(padding[i] >= 0 && padding[i] <= kernel[i] / 2, "\(name): padding should be at most half of the kernel size")
    }
    g.to = poolOutputSize(g.t, kernel: g.kt, pad: g.pt, stride: g.st, dilation: g.dt, ceilMode: ceilMode)
    g.ho = poolOutputSize(g.h, kernel: g.kh, pad: g.ph, stride: g.sh, dilation: g.dh, ceilMode: ceilMode)
    g.wo = poolOutputSize(g.w, kernel: g.kw, pad: g.pw, stride: g.sw, dilation: g.dw, ceilMode: ceilMode)
    precondition(g.to > 0 && g.ho > 0 && g.wo > 0, "\(name): output would be empty for input \(x.shape)")
    return g
}

private func outShape(_ x: Tensor, _ g: ConvGeometry, spatial: Int) -> [Int] {
    let lead = Array(x.shape.dropLast(spatial))
    return spatial == 2 ? lead + [g.ho, g.wo] : lead + [g.to, g.ho, g.wo]
}

private func maxPool(_ x: Tensor, _ g: ConvGeometry, name: String) -> Tensor {
    let spatial = name.hasSuffix("3d") ? 3 : 2
    let out = Tensor(uninitialized: outShape(x, g, spatial: spatial))
    let P = g.outPlane, inP = g.inPlane
    let idx = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, g.n * P))
    let xs = SendablePointer(x.data), ys = SendablePointer(out.data), ids = SendablePointer(idx)
    // Valid kernel offsets per output position along each axis, computed once: [lo, hi).
    let ranges = UnsafeMutablePointer<Int>.allocate(capacity: 2 * (g.to + g.ho + g.wo))
    defer { ranges.deallocate() }
    func fill(_ base: Int, _ outSize: Int, _ k: Int, _ s: Int, _ p: Int, _ d: Int, _ size: Int) {
        for o in 0..<outSize {
            let (lo, hi) = poolKernelRange(o * s - p, k: k, dil: d, size: size)
            ranges[base + 2 * o] = lo; ranges[base + 2 * o + 1] = hi
        }
    }
    let tb = 0, hb = 2 * g.to, wb = 2 * (g.to + g.ho)
    fill(tb, g.to, g.kt, g.st, g.pt, g.dt, g.t)
    fill(hb, g.ho, g.kh, g.sh, g.ph, g.dh, g.h)
    fill(wb, g.wo, g.kw, g.sw, g.pw, g.dw, g.w)
    let rs = SendablePointer(ranges)
    Parallel.chunks(g.n, costPerItem: P * g.kernelSize) { r in
        let T = g.to, Ho = g.ho, Wo = g.wo, H = g.h, W = g.w
        let st = g.st, sh = g.sh, sw = g.sw, pt = g.pt, ph = g.ph, pw = g.pw, dt = g.dt, dh = g.dh, dw = g.dw
        for pl in r {
            let src = xs.p + pl * inP, dst = ys.p + pl * P, ix = ids.p + pl * P
            var o = 0
            for ot in 0..<T {
                let t0 = ot * st - pt, alo = rs[tb + 2 * ot], ahi = rs[tb + 2 * ot + 1]
                for oh in 0..<Ho {
                    let h0 = oh * sh - ph, blo = rs[hb + 2 * oh], bhi = rs[hb + 2 * oh + 1]
                    // Fast path: 2-D 3x3 window, dilation 1, fully inside the input (same rule as below).
                    let fast3 = T == 1 && g.kh == 3 && g.kw == 3 && dh == 1 && dw == 1 && blo == 0 && bhi == 3
                    var ow = 0
                    while ow < Wo {
                        // Eight outputs at once at stride 2 (ResNet's stem), while their windows and
                        // the two 16-float row loads stay inside the row.
                        if fast3 && sw == 2 && ow + 8 <= Wo && ow * 2 - pw >= 0 && ow * 2 - pw + 17 < W {
                            maxPool3x3Stride2x8(src, rowStart: h0 * W, column: ow * 2 - pw, width: W, dst + o, ix + o)
                            o &+= 8
                            ow &+= 8
                            continue
                        }
                        defer { ow &+= 1 }
                        if fast3 && rs[wb + 2 * ow] == 0 && rs[wb + 2 * ow + 1] == 3 {
                            let base = h0 * W + ow * sw - pw
                            var best = src[base], bi = base
                            @inline(__always) func visit(_ i: Int) {
                                let v = src[i]
                                let take = v > best || v.isNaN
                                best = take ? v : best
                                bi = take ? i : bi
                            }
                            visit(base + 1); visit(base + 2)
                            visit(base + W); visit(base + W + 1); visit(base + W + 2)
                            visit(base + 2 * W); visit(base + 2 * W + 1); visit(base + 2 * W + 2)
                            dst[o] = best
                            ix[o] = Int32(truncatingIfNeeded: bi)
                            o &+= 1
                            continue
                        }
                        let w0 = ow * sw - pw, clo = rs[wb + 2 * ow], chi = rs[wb + 2 * ow + 1]
                        // PyTorch's rule: take v when v > best or v is NaN; the index starts at the
                        // first valid element (so an all -inf window points there).
                        var best = -Float.infinity
                        var bi = ((t0 + alo * dt) * H + h0 + blo * dh) * W + w0 + clo * dw
                        var a = alo
                        while a < ahi {
                            var b = blo
                            while b < bhi {
                                let rowBase = ((t0 + a * dt) * H + h0 + b * dh) * W + w0
                                var c = clo
                                while c < chi {
                                    let idx = rowBase &+ c &* dw
                                    let v = src[idx]
                                    let take = v > best || v.isNaN
                                    best = take ? v : best
                                    bi = take ? idx : bi
                                    c &+= 1
                                }
                                b &+= 1
                            }
                            a &+= 1
                        }
                        dst[o] = best
                        ix[o] = Int32(truncatingIfNeeded: bi)
                        o &+= 1
                    }
                }
            }
        }
    }
    let indices = IndexBuffer(idx)
    let inShape = x.shape, planes = g.n
    return out.recording(name, [x]) { gy in
        let dx = Tensor.zeros(inShape)
        let gs = SendablePointer(gy.data), ds = SendablePointer(dx.data), ids = SendablePointer(indices.p)
        Parallel.chunks(planes, costPerItem: P) { r in
            for pl in r {
                let d = ds.p + pl * inP, s = gs.p + pl * P, ix = ids.p + pl * P
                for o in 0..<P where ix[o] >= 0 { d[Int(ix[o])] += s[o] }
            }
        }
        return [dx]
    }
}

/// Max pool 3x3, stride 2, of eight consecutive outputs whose windows start at columns
/// `column`, `column` + 2, ... of rows `rowStart` / `width` .. + 2 (all inside the plane, and
/// `column` + 17 < `width`): values and argmax indices with the scalar paths' rule (scan rows then
/// columns; take v when v > best or v is NaN), one lane per output. Each row is read as two
/// 16-float loads, whose even and odd lanes are the three window columns of the eight outputs.
@inline(__always)
private func maxPool3x3Stride2x8(_ src: UnsafeMutablePointer<Float>, rowStart: Int, column: Int, width: Int,
                                 _ dst: UnsafeMutablePointer<Float>, _ ix: UnsafeMutablePointer<Int32>) {
    let lanes = SIMD8<Int32>(0, 2, 4, 6, 8, 10, 12, 14)
    var best = SIMD8<Float>(repeating: 0), bi = SIMD8<Int32>(repeating: 0)
    @inline(__always) func visit(_ v: SIMD8<Float>, _ i: SIMD8<Int32>) {
        let take = (v .> best) .| (v .!= v)
        best.replace(with: v, where: take)
        bi.replace(with: i, where: take)
    }
    for b in 0..<3 {
        let start = rowStart + b * width + column
        let raw = UnsafeRawPointer(src + start)
        let a = raw.loadUnaligned(as: SIMD16<Float>.self)
        let c = raw.loadUnaligned(fromByteOffset: 8, as: SIMD16<Float>.self)
        let i = lanes &+ Int32(truncatingIfNeeded: start)
        if b == 0 {
            best = a.evenHalf; bi = i
        } else {
            visit(a.evenHalf, i)
        }
        visit(a.oddHalf, i &+ 1)
        visit(c.evenHalf, i &+ 2)
    }
    UnsafeMutableRawPointer(dst).storeBytes(of: best, as: SIMD8<Float>.self)
    UnsafeMutableRawPointer(ix).storeBytes(of: bi, as: SIMD8<Int32>.self)
}

/// Kernel offsets j in [lo, hi) with 0 <= start + j*dil < size.
@inline(__always)
func poolKernelRange(_ start: Int, k: Int, dil: Int, size: Int) -> (Int, Int) {
    let lo = start < 0 ? (-start + dil - 1) / dil : 0
    let hi = size - 1 - start < 0 ? 0 : min(k, (size - 1 - start) / dil + 1)
    return (min(lo, hi), hi)
}

/// Owns the argmax indices of a max pool for its backward.
final class IndexBuffer: @unchecked Sendable {
    let p: UnsafeMutablePointer<Int32>
    init(_ p: UnsafeMutablePointer<Int32>) { self.p = p }
    deinit { p.deallocate() }
}

private func avgPool(_ x: Tensor, _ g: ConvGeometry, countIncludePad: Bool, name: String) -> Tensor {
    let spatial = name.hasSuffix("3d") ? 3 : 2
    let out = Tensor(uninitialized: outShape(x, g, spatial: spatial))
    let P = g.outPlane, inP = g.inPlane
    // Window bounds and divisor per output position, as in PyTorch's avg_pool kernels.
    @inline(__always) func window(_ o: Int, stride: Int, pad: Int, k: Int, size: Int) -> (Int, Int, Int) {
        let start = o * stride - pad
        let end = min(start + k, size + pad)
        let full = end - start
        return (max(start, 0), min(end, size), full)
    }
    let xs = SendablePointer(x.data), ys = SendablePointer(out.data)
    Parallel.chunks(g.n, costPerItem: P * g.kernelSize) { r in
        for pl in r {
            let src = xs.p + pl * inP, dst = ys.p + pl * P
            var o = 0
            for ot in 0..<g.to {
                let (ta, tb, tf) = window(ot, stride: g.st, pad: g.pt, k: g.kt, size: g.t)
                for oh in 0..<g.ho {
                    let (ha, hb, hf) = window(oh, stride: g.sh, pad: g.ph, k: g.kh, size: g.h)
                    for ow in 0..<g.wo {
                        let (wa, wb, wf) = window(ow, stride: g.sw, pad: g.pw, k: g.kw, size: g.w)
                        var s: Float = 0
                        if ta < tb && ha < hb && wa < wb {
                            for t in ta..<tb { for h in ha..<hb {
                                let row = src + (t * g.h + h) * g.w
                                for w in wa..<wb { s += row[w] }
                            } }
                        }
                        let div = countIncludePad ? tf * hf * wf : (tb - ta) * (hb - ha) * (wb - wa)
                        dst[o] = div > 0 ? s / Float(div) : 0
                        o += 1
                    }
                }
            }
        }
    }
    let inShape = x.shape
    return out.recording(name, [x]) { gy in
        let dx = Tensor(uninitialized: inShape)
        let gs = SendablePointer(gy.data), ds = SendablePointer(dx.data)
        Parallel.chunks(g.n, costPerItem: P * g.kernelSize) { r in
            for pl in r {
                let d = ds.p + pl * inP, s = gs.p + pl * P
                d.update(repeating: 0, count: inP)
                var o = 0
                for ot in 0..<g.to {
                    let (ta, tb, tf) = window(ot, stride: g.st, pad: g.pt, k: g.kt, size: g.t)
                    for oh in 0..<g.ho {
                        let (ha, hb, hf) = window(oh, stride: g.sh, pad: g.ph, k: g.kh, size: g.h)
                        for ow in 0..<g.wo {
                            let (wa, wb, wf) = window(ow, stride: g.sw, pad: g.pw, k: g.kw, size: g.w)
                            let div = countIncludePad ? tf * hf * wf : (tb - ta) * (hb - ha) * (wb - wa)
                            if div > 0 && ta < tb && ha < hb && wa < wb {
                                let v = s[o] / Float(div)
                                for t in ta..<tb { for h in ha..<hb {
                                    let row = d + (t * g.h + h) * g.w
                                    for w in wa..<wb { row[w] += v }
                                } }
                            }
                            o += 1
                        }
                    }
                }
            }
        }
        return [dx]
    }
}

private func adaptiveAvgPool(_ x: Tensor, spatial: Int, outputSize: [Int], name: String) -> Tensor {
    precondition(x.rank == spatial + 2 || x.rank == spatial + 1, "\(name): input must have rank \(spatial + 1) or \(spatial + 2), got \(x.shape)")
    precondition(outputSize.allSatisfy { $0 > 0 }, "\(name): output size must be positive")
    let sp = Array(x.shape.suffix(spatial))
    let dims = spatial == 2 ? [1] + sp : sp
    let os = spatial == 2 ? [1] + outputSize : outputSize
    let planes = Tensor.count(of: Array(x.shape.dropLast(spatial)))
    let T = dims[0], H = dims[1], W = dims[2], To = os[0], Ho = os[1], Wo = os[2]
    let P = To * Ho * Wo, inP = T * H * W
    let lead = Array(x.shape.dropLast(spatial))
    let out = Tensor(uninitialized: lead + outputSize)
    @inline(__always) func bounds(_ i: Int, _ inSize: Int, _ outSize: Int) -> (Int, Int) {
        (i * inSize / outSize, ((i + 1) * inSize + outSize - 1) / outSize)
    }
    let xs = SendablePointer(x.data), ys = SendablePointer(out.data)
    Parallel.chunks(planes, costPerItem: inP + P) { r in
        for pl in r {
            let src = xs.p + pl * inP, dst = ys.p + pl * P
            var o = 0
            for ot in 0..<To {
                let (ta, tb) = bounds(ot, T, To)
                for oh in 0..<Ho {
                    let (ha, hb) = bounds(oh, H, Ho)
                    for ow in 0..<Wo {
                        let (wa, wb) = bounds(ow, W, Wo)
                        var s: Float = 0
                        for t in ta..<tb { for h in ha..<hb {
                            let row = src + (t * H + h) * W
                            for w in wa..<wb { s += row[w] }
                        } }
                        dst[o] = s / Float((tb - ta) * (hb - ha) * (wb - wa))
                        o += 1
                    }
                }
            }
        }
    }
    let inShape = x.shape
    return out.recording(name, [x]) { gy in
        let dx = Tensor(uninitialized: inShape)
        let gs = SendablePointer(gy.data), ds = SendablePointer(dx.data)
        Parallel.chunks(planes, costPerItem: inP + P) { r in
            for pl in r {
                let d = ds.p + pl * inP, s = gs.p + pl * P
                d.update(repeating: 0, count: inP)
                var o = 0
                for ot in 0..<To {
                    let (ta, tb) = bounds(ot, T, To)
                    for oh in 0..<Ho {
                        let (ha, hb) = bounds(oh, H, Ho)
                        for ow in 0..<Wo {
                            let (wa, wb) = bounds(ow, W, Wo)
                            let v = s[o] / Float((tb - ta) * (hb - ha) * (wb - wa))
                            for t in ta..<tb { for h in ha..<hb {
                                let row = d + (t * H + h) * W
                                for w in wa..<wb { row[w] += v }
                            } }
                            o += 1
                        }
                    }
                }
            }
        }
        return [dx]
    }
}
