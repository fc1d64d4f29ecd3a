// The convolution policy (`ConvolutionPolicy`), the geometry of an N-d convolution or pooling
// (`ConvGeometry`), and the im2col / col2im kernels shared by conv2d and conv3d. Everything is
// expressed in 3 spatial dims (2-D convs use T = kt = 1).

/// Which of the convolution paths runs and how large its buffers may be. The paths: Winograd
/// F(2x2, 3x3), batch-parallel im2col (whole images per worker), chunked im2col with
/// multi-threaded GEMMs, pointwise GEMM (1x1 stride 1, always direct), and for the input gradient
/// of stride-1 convs a forward convolution of dY (Winograd or im2col) instead of col2im.
///
/// Meant for benchmarks and tests. The defaults are the measured best and every other caller
/// leaves them alone; results of the paths differ only by float32 rounding. The policy in force
/// is `ConvolutionPolicy.current` (process-wide, not per thread), read when a convolution runs its
/// forward and again when its backward runs; `withPolicy` sets it for a scope and restores it:
///
///     ConvolutionPolicy.withPolicy(.current.with { $0.winograd = false }) { ... forward and backward ... }
public struct ConvolutionPolicy: Sendable, Equatable {
    /// Largest column matrix (bytes) built at once; the batch is processed in chunks of images
    /// whose column matrix fits (at least one image per chunk).
    public var maxColumnBytes: Int = 64 << 20
    /// Keep the forward column matrix for the weight gradient instead of recomputing it
    /// (only when the whole batch fits in one chunk).
    public var keepColumns: Bool = false
    /// Stride-1 convs compute dX as a convolution of dY with the flipped weight (instead of
    /// W^T x dY followed by col2im).
    public var inputGradientAsConvolution: Bool = true
    /// Split the batch over the worker threads (whole images per worker, single-threaded BLAS)
    /// instead of parallelizing each GEMM.
    public var batchParallel: Bool = true
    /// 3x3 stride-1 convs (groups 1, dilation 1, zero padding <= 2) use Winograd F(2x2, 3x3),
    /// in the forward and in the stride-1 input gradient. On by default: the ResNet-18 trunk step
    /// takes ~20 % less time. Its float32 rounding error is ~3x im2col's (still < 1e-6 relative,
    /// WinogradTests.testWinogradAccuracy); TimeCycleModelTests checks every TimeCycle gradient
    /// against PyTorch in float64 within 1e-4 relative L2 with it on and off.
    public var winograd: Bool = true
    /// The stride-1 input gradient also goes through Winograd (when `winograd` is on).
    public var winogradInputGradient: Bool = true
    /// Tiles per block of the Winograd path (its transformed tiles stay in cache).
    public var winogradTileBlock: Int = 128

    /// Which library runs float32 convolutions (forward and backward): our native paths (the ones
    /// above), oneDNN's, or `auto`, the measured choice per kind of convolution (see
    /// `ConvolutionBackend.auto`). Inside `Autocast.bf16` convolutions always run on oneDNN.
    public var backend: ConvolutionBackend = .auto

    /// The defaults.
    public init() {}

    /// The policy in force (the defaults unless a benchmark or test changed it).
    nonisolated(unsafe) public static var current = ConvolutionPolicy()

    /// Runs `body` with `policy` in force, then restores the previous policy (also when `body` throws).
    public static func withPolicy<T>(_ policy: ConvolutionPolicy, _ body: () throws -> T) rethrows -> T {
        let saved = current
        current = policy
        defer { current = saved }
        return try body()
    }

    /// This policy with `change` applied.
    public func with(_ change: (inout ConvolutionPolicy) -> Void) -> ConvolutionPolicy {
        var p = self
        change(&p)
        return p
    }
}

/// The library of float32 convolutions (`ConvolutionPolicy.backend`).
public enum ConvolutionBackend: String, Sendable, Equatable, CaseIterable {
    /// The measured choice: oneDNN for convolutions whose kernel is larger than 1 (`cycletime bench
    /// ava`, 2 threads: SlowOnly r18 iteration 5.32 s native, 1.16 s on oneDNN; SlowFast 10.78 and
    /// 2.03 s; the 2D r18 one 2.50 and 0.81 s, PyTorch 2.15's 0.84 s), native for pointwise ones
    /// (one GEMM; oneDNN's strided 1x1 ran at a sixth of the native speed).
    case auto
    case native, oneDNN

    /// Whether a float32 convolution of geometry `g` runs on oneDNN under this backend.
    func usesOneDNN(_ g: ConvGeometry, volumetric: Bool) -> Bool {
        switch self {
        case .native: return false
        case .oneDNN: return true
        case .auto: return g.kernelSize > 1
        }
    }
}

/// Geometry of one N-d convolution (or pooling) in 3 spatial dims.
struct ConvGeometry {
    var n = 1, cin = 1, cout = 1, groups = 1
    var t = 1, h = 1, w = 1
    var kt = 1, kh = 1, kw = 1
    var st = 1, sh = 1, sw = 1
    var pt = 0, ph = 0, pw = 0
    var dt = 1, dh = 1, dw = 1
    var to = 1, ho = 1, wo = 1

    var outPlane: Int { to * ho * wo }
    var inPlane: Int { t * h * w }
    var kernelSize: Int { kt * kh * kw }
    var cinG: Int { cin / groups }
    var coutG: Int { cout / groups }
    /// Rows of the column matrix (all groups).
    var rows: Int { cin * kernelSize }
    var isPointwise: Bool { kernelSize == 1 && st == 1 && sh == 1 && sw == 1 && pt == 0 && ph == 0 && pw == 0 }

    mutating func computeOutput() {
        to = (t + 2 * pt - dt * (kt - 1) - 1) / st + 1
        ho = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1
    }
}

/// Output indices o in [lo, hi) for which 0 <= o*stride - pad + k*dil < inSize.
@inline(__always)
func convValidRange(_ k: Int, dil: Int, pad: Int, stride: Int, inSize: Int, outSize: Int) -> (Int, Int) {
    let off = k * dil - pad
    var lo = 0
    if off < 0 { lo = (-off + stride - 1) / stride }
    let num = inSize - 1 - off
    var hi = num < 0 ? 0 : num / stride + 1
    if hi > outSize { hi = outSize }
    if lo > hi { lo = hi }
    return (lo, hi)
}

/// Fills col[rows, nb * P] (row r = (c, it, ih, iw), column = (j, to, ho, wo)) for images
/// n0 ..< n0 + nb of x [N, Cin, T, H, W].
func im2col(_ x: UnsafePointer<Float>, _ g: ConvGeometry, n0: Int, nb: Int, _ col: UnsafeMutablePointer<Float>,
            parallel: Bool = true) {
    let xs = SendablePointer(UnsafeMutablePointer(mutating: x)), cs = SendablePointer(col)
    if !parallel { im2colItems(xs, g, n0: n0, nb: nb, cs, 0..<(g.rows * nb)); return }
    Parallel.chunks(g.rows * nb, costPerItem: g.outPlane) { range in im2colItems(xs, g, n0: n0, nb: nb, cs, range) }
}

@inline(__always)
private func im2colItems(_ xs: SendablePointer<Float>, _ g: ConvGeometry, n0: Int, nb: Int, _ cs: SendablePointer<Float>,
                         _ range: Range<Int>) {
    let P = g.outPlane, L = nb * P, kk = g.kernelSize
    do {
        for item in range {
            let r = item / nb, j = item % nb
            let c = r / kk, kidx = r % kk
            let it = kidx / (g.kh * g.kw), ih = (kidx / g.kw) % g.kh, iw = kidx % g.kw
            let src = xs.p + ((n0 + j) * g.cin + c) * g.inPlane
            let dst = cs.p + r * L + j * P
            let (tlo, thi) = convValidRange(it, dil: g.dt, pad: g.pt, stride: g.st, inSize: g.t, outSize: g.to)
            let (hlo, hhi) = convValidRange(ih, dil: g.dh, pad: g.ph, stride: g.sh, inSize: g.h, outSize: g.ho)
            let (wlo, whi) = convValidRange(iw, dil: g.dw, pad: g.pw, stride: g.sw, inSize: g.w, outSize: g.wo)
            let wo = g.wo, sw = g.sw
            let woff = iw * g.dw - g.pw
            for ot in 0..<g.to {
                let dplane = dst + ot * g.ho * wo
                if ot < tlo || ot >= thi { dplane.update(repeating: 0, count: g.ho * wo); continue }
                let ti = ot * g.st - g.pt + it * g.dt
                for oh in 0..<g.ho {
                    let d = dplane + oh * wo
                    if oh < hlo || oh >= hhi { d.update(repeating: 0, count: wo); continue }
                    let hi = oh * g.sh - g.ph + ih * g.dh
                    let srow = src + (ti * g.h + hi) * g.w
                    if wlo > 0 { d.update(repeating: 0, count: wlo) }
                    if sw == 1 {
                        let s = srow + woff
                        for o in wlo..<whi { d[o] = s[o] }
                    } else {
                        for o in wlo..<whi { d[o] = srow[o * sw + woff] }
                    }
                    if whi < wo { (d + whi).update(repeating: 0, count: wo - whi) }
                }
            }
        }
    }
}

/// dx[n0 + j, c] = sum over kernel offsets of the matching col entries (overwrites dx for the
/// chunk's images). Parallel over (image, channel) planes so writes never collide.
func col2im(_ col: UnsafePointer<Float>, _ g: ConvGeometry, n0: Int, nb: Int, _ dx: UnsafeMutablePointer<Float>,
            parallel: Bool = true) {
    let cs = SendablePointer(UnsafeMutablePointer(mutating: col)), xs = SendablePointer(dx)
    if !parallel { col2imItems(cs, g, n0: n0, nb: nb, xs, 0..<(nb * g.cin)); return }
    Parallel.chunks(nb * g.cin, costPerItem: g.outPlane * g.kernelSize) { range in col2imItems(cs, g, n0: n0, nb: nb, xs, range) }
}

@inline(__always)
private func col2imItems(_ cs: SendablePointer<Float>, _ g: ConvGeometry, n0: Int, nb: Int, _ xs: SendablePointer<Float>,
                         _ range: Range<Int>) {
    let P = g.outPlane, L = nb * P, kk = g.kernelSize
    do {
        for item in range {
            let j = item / g.cin, c = item % g.cin
            let plane = xs.p + ((n0 + j) * g.cin + c) * g.inPlane
            plane.update(repeating: 0, count: g.inPlane)
            for kidx in 0..<kk {
                let it = kidx / (g.kh * g.kw), ih = (kidx / g.kw) % g.kh, iw = kidx % g.kw
                let src = cs.p + (c * kk + kidx) * L + j * P
                let (tlo, thi) = convValidRange(it, dil: g.dt, pad: g.pt, stride: g.st, inSize: g.t, outSize: g.to)
                let (hlo, hhi) = convValidRange(ih, dil: g.dh, pad: g.ph, stride: g.sh, inSize: g.h, outSize: g.ho)
                let (wlo, whi) = convValidRange(iw, dil: g.dw, pad: g.pw, stride: g.sw, inSize: g.w, outSize: g.wo)
                if wlo >= whi { continue }
                let wo = g.wo, sw = g.sw, woff = iw * g.dw - g.pw
                for ot in tlo..<thi {
                    let ti = ot * g.st - g.pt + it * g.dt
                    for oh in hlo..<hhi {
                        let hi = oh * g.sh - g.ph + ih * g.dh
                        let s = src + (ot * g.ho + oh) * wo
                        let drow = plane + (ti * g.h + hi) * g.w
                        if sw == 1 {
                            let d = drow + woff
                            for o in wlo..<whi { d[o] += s[o] }
                        } else {
                            for o in wlo..<whi { drow[o * sw + woff] += s[o] }
                        }
                    }
                }
            }
        }
    }
}
