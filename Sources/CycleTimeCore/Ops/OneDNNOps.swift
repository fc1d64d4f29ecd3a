import CDNNL

// 2-D and 3-D convolution (forward, backward-data, backward-weights) and batched matmul on oneDNN, in
// float32 or in bf16 (bf16 inputs, float32 accumulation, float32 outputs and gradients). Our
// tensors stay NCHW / row-major float32; oneDNN picks its own layouts (format `any`) and the
// reorders into and out of them (which also round float32 to bf16, to nearest even) are part of
// each call, except that inside an autocast scope a parameter's reordered copy is made once and
// reused (`Autocast.weightReuse`), and a convolution's backward reorders dY once for both of its
// primitives. Primitives are cached in `OneDNN` by op, precision and shapes.

extension ConvGeometry {
    /// Shapes of a 2-D or 3-D (`volumetric`) convolution for cache keys and error messages.
    func dnnlKey(volumetric: Bool) -> String {
        volumetric
            ? "x[\(n),\(cin),\(t),\(h),\(w)] w[\(cout),\(cinG),\(kt),\(kh),\(kw)] stride [\(st),\(sh),\(sw)] padding [\(pt),\(ph),\(pw)] dilation [\(dt),\(dh),\(dw)] groups \(groups)"
            : "x[\(n),\(cin),\(h),\(w)] w[\(cout),\(cinG),\(kh),\(kw)] stride [\(sh),\(sw)] padding [\(ph),\(pw)] dilation [\(dh),\(dw)] groups \(groups)"
    }

    /// The op's name in cache keys and errors: "conv2d <direction> <precision> <shapes>".
    func dnnlOp(_ direction: String, _ p: Precision, volumetric: Bool, bias: Bool = false) -> String {
        "\(volumetric ? "conv3d" : "conv2d") \(direction) \(p.rawValue) \(dnnlKey(volumetric: volumetric))\(bias ? " bias" : "")"
    }
}

/// Descriptors of one 2-D (NCHW) or 3-D (NCDHW, `volumetric`) convolution: user (f32 plain) and
/// primitive (format any) memory.
private struct ConvDescs {
    var userX, userW, userY, userB: dnnl_memory_desc_t
    var anyX, anyW, anyY, bias: dnnl_memory_desc_t
    var strides, dilates, padL, padR: [Int64]

    init(_ g: ConvGeometry, _ p: Precision, volumetric v: Bool, op: String) throws {
        let xDims = v ? [g.n, g.cin, g.t, g.h, g.w] : [g.n, g.cin, g.h, g.w]
        let yDims = v ? [g.n, g.cout, g.to, g.ho, g.wo] : [g.n, g.cout, g.ho, g.wo]
        let k = v ? [g.kt, g.kh, g.kw] : [g.kh, g.kw]
        let wDims = g.groups == 1 ? [g.cout, g.cin] + k : [g.groups, g.coutG, g.cinG] + k
        let wTag = g.groups == 1 ? (v ? dnnl_oidhw : dnnl_oihw) : (v ? dnnl_goidhw : dnnl_goihw)
        userX = try dnnlDesc(xDims, dnnl_f32, tag: v ? dnnl_ncdhw : dnnl_nchw, op: op)
        userY = try dnnlDesc(yDims, dnnl_f32, tag: v ? dnnl_ncdhw : dnnl_nchw, op: op)
        userW = try dnnlDesc(wDims, dnnl_f32, tag: wTag, op: op)
        userB = try dnnlDesc([g.cout], dnnl_f32, tag: dnnl_a, op: op)
        bias = userB
        let t = dnnlType(p)
        anyX = try dnnlDesc(xDims, t, tag: dnnl_format_tag_any, op: op)
        anyW = try dnnlDesc(wDims, t, tag: dnnl_format_tag_any, op: op)
        // bf16 convolutions accumulate in f32 and write f32 outputs and gradients of activations.
        anyY = try dnnlDesc(yDims, t, tag: dnnl_format_tag_any, op: op)
        strides = (v ? [g.st, g.sh, g.sw] : [g.sh, g.sw]).map(Int64.init)
        dilates = (v ? [g.dt - 1, g.dh - 1, g.dw - 1] : [g.dh - 1, g.dw - 1]).map(Int64.init)
        padL = (v ? [g.pt, g.ph, g.pw] : [g.ph, g.pw]).map(Int64.init)
        padR = padL
    }

    /// Forward descriptor (training propagation, so backward primitives may use it as a hint).
    func forward(bias hasBias: Bool, outType: dnnl_data_type_t, op: String) throws -> dnnl_convolution_desc_t {
        var d = dnnl_convolution_desc_t()
        var x = anyX, w = anyW, b = bias
        var y = anyY
        y.data_type = outType
        let s = withUnsafePointer(to: &b) { bp in
            dnnl_dilated_convolution_forward_desc_init(&d, dnnl_forward_training, dnnl_convolution_direct, &x, &w,
                                                       hasBias ? bp : nil, &y, strides, dilates, padL, padR)
        }
        try dnnlCheck(s, "dnnl_dilated_convolution_forward_desc_init", op)
        return d
    }
}

enum OneDNNConv {
    /// y = conv(x, w) + b, all float32 NCHW buffers (x's and w's reordered copies through the reuses).
    static func forward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>?,
                        _ g: ConvGeometry, _ y: UnsafeMutablePointer<Float>, precision: Precision, volumetric: Bool = false,
                        sourceReuse: DNNLReuse? = nil, weightReuse: DNNLReuse? = nil) throws {
        let prim = try forwardPrimitive(g, precision, volumetric: volumetric, bias: b != nil)
        var buffers = [UnsafeMutableRawPointer(mutating: x), UnsafeMutableRawPointer(mutating: w)]
        if let b { buffers.append(UnsafeMutableRawPointer(mutating: b)) }
        buffers.append(UnsafeMutableRawPointer(y))
        try OneDNN.shared().execute(prim, buffers, reuse: [sourceReuse, weightReuse])
    }

    static func forwardPrimitive(_ g: ConvGeometry, _ precision: Precision, volumetric: Bool, bias: Bool) throws -> DNNLPrimitive {
        let dnn = try OneDNN.shared()
        let op = g.dnnlOp("forward", precision, volumetric: volumetric, bias: bias)
        return try dnn.primitive(op) {
            let c = try ConvDescs(g, precision, volumetric: volumetric, op: op)
            var d = try c.forward(bias: bias, outType: dnnl_f32, op: op)
            var users: [(arg: Int32, md: dnnl_memory_desc_t, output: Bool)] = [(DNNL_ARG_SRC, c.userX, false), (DNNL_ARG_WEIGHTS, c.userW, false)]
            if bias { users.append((DNNL_ARG_BIAS, c.userB, false)) }
            users.append((DNNL_ARG_DST, c.userY, true))
            return try dnn.build(op: op, desc: &d, users: users)
        }
    }

    /// Whether the weight gradient reads x in the same layout and type as the forward pass (so
    /// the forward's reordered copy of x can serve it).
    static func weightGradientReadsTheForwardSource(_ g: ConvGeometry, _ precision: Precision, volumetric: Bool,
                                                     forwardBias: Bool, backwardBias: Bool) throws -> Bool {
        let f = try forwardPrimitive(g, precision, volumetric: volumetric, bias: forwardBias)
        let b = try backwardWeightsPrimitive(g, precision, volumetric: volumetric, bias: backwardBias)
        guard let fx = f.arguments.first, let bx = b.arguments.first, fx.reorder != nil, bx.reorder != nil else { return false }
        return dnnl_memory_desc_equal(&fx.inner, &bx.inner) != 0
    }

    /// dX = conv_backward_data(dY, w) (dY's and w's reordered copies through the reuses).
    static func backwardData(_ gy: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ g: ConvGeometry,
                             _ dx: UnsafeMutablePointer<Float>, precision: Precision, volumetric: Bool = false,
                             gradReuse: DNNLReuse? = nil, weightReuse: DNNLReuse? = nil) throws {
        let dnn = try OneDNN.shared()
        let op = g.dnnlOp("backward-data", precision, volumetric: volumetric)
        let prim = try dnn.primitive(op) {
            let c = try ConvDescs(g, precision, volumetric: volumetric, op: op)
            var fwd = try c.forward(bias: false, outType: dnnlType(precision), op: op)
            let hint = try dnn.primitiveDesc(op: op, desc: &fwd)
            defer { dnnl_primitive_desc_destroy(hint) }
            var d = dnnl_convolution_desc_t()
            var dxMd = c.anyX, wMd = c.anyW, dyMd = c.anyY
            dxMd.data_type = dnnl_f32
            try dnnlCheck(dnnl_dilated_convolution_backward_data_desc_init(&d, dnnl_convolution_direct, &dxMd, &wMd, &dyMd,
                                                                           c.strides, c.dilates, c.padL, c.padR),
                          "dnnl_dilated_convolution_backward_data_desc_init", op)
            return try dnn.build(op: op, desc: &d, hint: hint, users: [
                (DNNL_ARG_DIFF_DST, c.userY, false), (DNNL_ARG_WEIGHTS, c.userW, false), (DNNL_ARG_DIFF_SRC, c.userX, true),
            ])
        }
        try dnn.execute(prim, [UnsafeMutableRawPointer(mutating: gy), UnsafeMutableRawPointer(mutating: w), UnsafeMutableRawPointer(dx)],
                        reuse: [gradReuse, weightReuse])
    }

    /// dW (and dB when `db` is given) = conv_backward_weights(x, dY) (dY's reordered copy through
    /// `gradReuse`).
    static func backwardWeights(_ x: UnsafePointer<Float>, _ gy: UnsafePointer<Float>, _ g: ConvGeometry,
                                _ dw: UnsafeMutablePointer<Float>, _ db: UnsafeMutablePointer<Float>?, precision: Precision,
                                volumetric: Bool = false, sourceReuse: DNNLReuse? = nil, gradReuse: DNNLReuse? = nil) throws {
        let prim = try backwardWeightsPrimitive(g, precision, volumetric: volumetric, bias: db != nil)
        var buffers = [UnsafeMutableRawPointer(mutating: x), UnsafeMutableRawPointer(mutating: gy), UnsafeMutableRawPointer(dw)]
        if let db { buffers.append(UnsafeMutableRawPointer(db)) }
        try OneDNN.shared().execute(prim, buffers, reuse: [sourceReuse, gradReuse])
    }

    static func backwardWeightsPrimitive(_ g: ConvGeometry, _ precision: Precision, volumetric: Bool, bias: Bool) throws -> DNNLPrimitive {
        let dnn = try OneDNN.shared()
        let op = g.dnnlOp("backward-weights", precision, volumetric: volumetric, bias: bias)
        return try dnn.primitive(op) {
            let c = try ConvDescs(g, precision, volumetric: volumetric, op: op)
            var fwd = try c.forward(bias: bias, outType: dnnlType(precision), op: op)
            let hint = try dnn.primitiveDesc(op: op, desc: &fwd)
            defer { dnnl_primitive_desc_destroy(hint) }
            var d = dnnl_convolution_desc_t()
            var xMd = c.anyX, dwMd = c.anyW, dbMd = c.bias, dyMd = c.anyY
            dwMd.data_type = dnnl_f32
            let s = withUnsafePointer(to: &dbMd) { bp in
                dnnl_dilated_convolution_backward_weights_desc_init(&d, dnnl_convolution_direct, &xMd, &dwMd, bias ? bp : nil,
                                                                    &dyMd, c.strides, c.dilates, c.padL, c.padR)
            }
            try dnnlCheck(s, "dnnl_dilated_convolution_backward_weights_desc_init", op)
            var users: [(arg: Int32, md: dnnl_memory_desc_t, output: Bool)] = [
                (DNNL_ARG_SRC, c.userX, false), (DNNL_ARG_DIFF_DST, c.userY, false), (DNNL_ARG_DIFF_WEIGHTS, c.userW, true),
            ]
            if bias { users.append((DNNL_ARG_DIFF_BIAS, c.userB, true)) }
            return try dnn.build(op: op, desc: &d, hint: hint, users: users)
        }
    }
}

/// One operand of a batched matmul: [batch, rows, cols] read from a row-major buffer, possibly
/// transposed (then the buffer holds [batch, cols, rows]).
struct MatmulOperand {
    var batch: Int, rows: Int, cols: Int
    var transposed = false

    var dims: [Int] { [batch, rows, cols] }
    var strides: [Int] {
        transposed ? [rows * cols, 1, rows] : [rows * cols, cols, 1]
    }
    var key: String { "[\(batch),\(rows),\(cols)]\(transposed ? "T" : "")" }
}

enum OneDNNMatmul {
    /// c[batch, m, n] = a[batch, m, k] b[batch, k, n] (float32 buffers; a and b may be read
    /// transposed; their reordered copies through the reuses).
    static func run(_ a: UnsafePointer<Float>, _ ad: MatmulOperand, _ b: UnsafePointer<Float>, _ bd: MatmulOperand,
                    _ c: UnsafeMutablePointer<Float>, precision: Precision, reuseA: DNNLReuse? = nil, reuseB: DNNLReuse? = nil) throws {
        precondition(ad.cols == bd.rows && ad.batch == bd.batch, "oneDNN matmul: \(ad.key) x \(bd.key)")
        if ad.batch == 0 || ad.rows == 0 || bd.cols == 0 { return }
        if ad.cols == 0 { c.update(repeating: 0, count: ad.batch * ad.rows * bd.cols); return }
        let dnn = try OneDNN.shared()
        let op = "matmul \(precision.rawValue) \(ad.key) x \(bd.key)"
        let prim = try dnn.primitive(op) {
            let t = dnnlType(precision)
            let cDims = [ad.batch, ad.rows, bd.cols]
            let userA = try dnnlDesc(ad.dims, dnnl_f32, strides: ad.strides, op: op)
            let userB = try dnnlDesc(bd.dims, dnnl_f32, strides: bd.strides, op: op)
            let userC = try dnnlDesc(cDims, dnnl_f32, tag: dnnl_abc, op: op)
            var aMd = try dnnlDesc(ad.dims, t, tag: dnnl_abc, op: op)
            var bMd = try dnnlDesc(bd.dims, t, tag: dnnl_format_tag_any, op: op)
            var cMd = userC
            var d = dnnl_matmul_desc_t()
            try dnnlCheck(dnnl_matmul_desc_init(&d, &aMd, &bMd, nil, &cMd), "dnnl_matmul_desc_init", op)
            return try dnn.build(op: op, desc: &d, users: [
                (DNNL_ARG_SRC, userA, false), (DNNL_ARG_WEIGHTS, userB, false), (DNNL_ARG_DST, userC, true),
            ])
        }
        try dnn.execute(prim, [UnsafeMutableRawPointer(mutating: a), UnsafeMutableRawPointer(mutating: b), UnsafeMutableRawPointer(c)],
                        reuse: [reuseA, reuseB])
    }
}

// MARK: differentiable ops on the kernels above (their backward runs at the forward's precision)

/// conv2d of `x` [N, Cin, H, W] (already padded for reflection), or conv3d of `x` [N, Cin, T, H, W]
/// (`volumetric`), through oneDNN.
func oneDNNConvolution(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ g: ConvGeometry, precision: Precision, volumetric: Bool = false) -> Tensor {
    let out = Tensor(uninitialized: volumetric ? [g.n, g.cout, g.to, g.ho, g.wo] : [g.n, g.cout, g.ho, g.wo])
    let needX = x.requiresGrad, needW = weight.requiresGrad, needB = bias?.requiresGrad ?? false
    var inputs = [x, weight]
    if let b = bias { inputs.append(b) }
    let xShape = x.shape, wShape = weight.shape, hasBias = bias != nil
    // The weight gradient reads x, in bf16 as a bf16 copy (what oneDNN reads anyway), so that x
    // itself may be freed before backward: the forward pass's own reordered copy of x when the
    // weight gradient reads that layout (no second reorder), else a `BF16Copy`.
    let recording = Tensor.needsGrad(inputs)
    var sourceCopy: DNNLReorderCache? = nil
    if precision == .bf16 && needW && recording,
       (try? OneDNNConv.weightGradientReadsTheForwardSource(g, precision, volumetric: volumetric,
                                                           forwardBias: hasBias, backwardBias: needB)) == true {
        sourceCopy = DNNLReorderCache()
    }
    dnnlOrFail {
        try OneDNNConv.forward(x.data, weight.data, bias?.data, g, out.data, precision: precision, volumetric: volumetric,
                               sourceReuse: sourceCopy.map { DNNLReuse(cache: $0, owner: nil) }, weightReuse: Autocast.weightReuse(weight))
    }
    sourceCopy?.frozen = true
    let xAddress = UnsafePointer(x.data)  // the key of x's copy in `sourceCopy` (never read through)
    let savedX: SavedTensor? = needW && sourceCopy == nil ? SavedTensor(x, bf16: precision == .bf16 && recording) : nil
    return out.recording(volumetric ? "conv3d" : "conv2d", inputs) { gy in
        var dX: Tensor? = nil, dW: Tensor? = nil, dB: Tensor? = nil
        // dY is reordered once for both backward primitives when they read it in the same layout.
        let gradReuse = needX && needW ? DNNLReuse(cache: DNNLReorderCache(), owner: gy.storage) : nil
        if needX {
            let t = Tensor(uninitialized: xShape)
            dnnlOrFail {
                try OneDNNConv.backwardData(gy.data, weight.data, g, t.data, precision: precision, volumetric: volumetric,
                                            gradReuse: gradReuse, weightReuse: Autocast.weightReuse(weight))
            }
            dX = t
        }
        if needW {
            let t = Tensor(uninitialized: wShape)
            let b: Tensor? = needB ? Tensor(uninitialized: [g.cout]) : nil
            let xs = savedX?.tensor
            dnnlOrFail {
                try OneDNNConv.backwardWeights(xs.map { UnsafePointer($0.data) } ?? xAddress, gy.data, g, t.data, b?.data,
                                               precision: precision, volumetric: volumetric,
                                               sourceReuse: sourceCopy.map { DNNLReuse(cache: $0, owner: nil) }, gradReuse: gradReuse)
            }
            dW = t
            dB = b
        } else if needB {
            dB = biasGradient(gy, n: g.n, c: g.cout, plane: g.outPlane)
        }
        return hasBias ? [dX, dW, dB] : [dX, dW]
    }
}

/// a [batch..., m, k] x b [batch..., k, n] through oneDNN, where a and b already have the
/// broadcast batch shape; the gradients are reduced to the original shapes `sa` and `sb`.
func oneDNNMatmul(_ a: Tensor, _ b: Tensor, batch: [Int], m: Int, n: Int, k: Int,
                  originalShapes sa: [Int], _ sb: [Int], requiresGrad ra: Bool, _ rb: Bool,
                  inputs: [Tensor], precision: Precision) -> Tensor {
    let nb = batch.reduce(1, *)
    let out = Tensor(uninitialized: batch + [m, n])
    dnnlOrFail {
        try OneDNNMatmul.run(a.data, MatmulOperand(batch: nb, rows: m, cols: k), b.data, MatmulOperand(batch: nb, rows: k, cols: n),
                             out.data, precision: precision, reuseA: Autocast.weightReuse(a), reuseB: Autocast.weightReuse(b))
    }
    return out.recording("matmul", inputs) { g in
        var ga: Tensor? = nil, gb: Tensor? = nil
        if ra {  // dA = dC B^T
            let t = Tensor(uninitialized: batch + [m, k])
            dnnlOrFail {
                try OneDNNMatmul.run(g.data, MatmulOperand(batch: nb, rows: m, cols: n),
                                     b.data, MatmulOperand(batch: nb, rows: n, cols: k, transposed: true), t.data, precision: precision,
                                     reuseB: Autocast.weightReuse(b))
            }
            ga = unbroadcast(t, to: sa)
        }
        if rb {  // dB = A^T dC
            let t = Tensor(uninitialized: batch + [k, n])
            dnnlOrFail {
                try OneDNNMatmul.run(a.data, MatmulOperand(batch: nb, rows: k, cols: m, transposed: true),
                                     g.data, MatmulOperand(batch: nb, rows: m, cols: n), t.data, precision: precision,
                                     reuseA: Autocast.weightReuse(a))
            }
            gb = unbroadcast(t, to: sb)
        }
        return [ga, gb]
    }
}

/// F.linear through oneDNN: x [rows, in] x weight[out, in]^T (+ bias, added in float32).
func oneDNNLinear(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, rows: Int, nIn: Int, nOut: Int, precision: Precision) -> Tensor {
    let out = Tensor(uninitialized: Array(x.shape.dropLast()) + [nOut])
    dnnlOrFail {
        try OneDNNMatmul.run(x.data, MatmulOperand(batch: 1, rows: rows, cols: nIn),
                             weight.data, MatmulOperand(batch: 1, rows: nIn, cols: nOut, transposed: true), out.data, precision: precision,
                             reuseB: Autocast.weightReuse(weight))
    }
    if let b = bias {
        let po = SendablePointer(out.data), pb = SendablePointer(b.data)
        Parallel.chunks(rows, costPerItem: nOut) { r in
            for i in r { for j in 0..<nOut { po[i * nOut + j] += pb[j] } }
        }
    }
    let needX = x.requiresGrad, needW = weight.requiresGrad, needB = bias?.requiresGrad ?? false
    var inputs = [x, weight]
    if let b = bias { inputs.append(b) }
    let xShape = x.shape, wShape = weight.shape, hasBias = bias != nil
    return out.recording("linear", inputs) { g in
        var gx: Tensor? = nil, gw: Tensor? = nil
        if needX {  // gx = g W
            let t = Tensor(uninitialized: xShape)
            dnnlOrFail {
                try OneDNNMatmul.run(g.data, MatmulOperand(batch: 1, rows: rows, cols: nOut),
                                     weight.data, MatmulOperand(batch: 1, rows: nOut, cols: nIn), t.data, precision: precision,
                                     reuseB: Autocast.weightReuse(weight))
            }
            gx = t
        }
        if needW {  // gW = g^T x
            let t = Tensor(uninitialized: wShape)
            dnnlOrFail {
                try OneDNNMatmul.run(g.data, MatmulOperand(batch: 1, rows: nOut, cols: rows, transposed: true),
                                     x.data, MatmulOperand(batch: 1, rows: rows, cols: nIn), t.data, precision: precision)
            }
            gw = t
        }
        let gb: Tensor? = needB ? unbroadcast(g, to: [nOut]) : nil
        return hasBias ? [gx, gw, gb] : [gx, gw]
    }
}
