import Foundation

/// PyTorch's CPU autocast to bfloat16, per thread like grad mode. Inside `Autocast.bf16 { ... }`
/// conv2d, conv3d, linear and matmul (bmm) run on oneDNN with bf16 inputs, float32 accumulation and
/// float32 outputs; their backward (which records the forward's precision, so it may run after
/// the scope has closed, as in PyTorch) does too. Everything else stays float32:
///
/// | op | in autocast bf16 | PyTorch CPU autocast (bf16) |
/// |---|---|---|
/// | conv2d, conv3d, linear, matmul/bmm | bf16 inputs, f32 accumulation, f32 output | lower-precision list (bf16 output) |
/// | batch norm, softmax, losses, reductions, the rest | f32 | f32 list or unchanged (runs in its input's type) |
///
/// What the ops save for backward inside the scope, when recording: a convolution a bf16 copy of its
/// input (its weight gradient reads the input in bf16 anyway: no value changes), a batch norm a
/// bf16 copy of its input (in PyTorch that input is the bf16 convolution output), a ReLU a byte
/// mask instead of its output (`BF16Copy`, `PositiveMask`). So the float32 activations between
/// them are freed during the forward pass and a ResNet keeps about 1.25 instead of 2 float32
/// activations' worth per conv-bn-relu (CRW r18 b4 step: peak tensor storage 4147 -> 2356 MiB).
///
/// Weights are cast once per scope, not once per use, as in PyTorch: a leaf tensor that requires
/// grad (a parameter), read by an autocast op inside the outermost `Autocast.bf16` scope, is
/// converted to bf16 in the kernel's layout the first time and the copy is reused until that
/// scope exits (so a training step's forward and backward, which run in one scope, cast each
/// weight once per layout; parameters must not be changed inside a scope, which the optimizer,
/// running after it, does not do).
///
/// Entering a bf16 scope on a CPU without AVX512-BF16 throws `AutocastError.noNativeBF16`: there
/// is no silent slow path.
public enum Autocast {
    private static let flag = ThreadFlag(onNewThreads: false)

    /// Whether this thread is inside a bf16 autocast scope (off on every new thread).
    public static var isEnabled: Bool {
        get { flag.value }
        set { flag.value = newValue }
    }

    /// The precision of the autocast ops on this thread.
    public static var precision: Precision { isEnabled ? .bf16 : .fp32 }

    /// Tests set this to pretend the CPU has (true) or lacks (false) AVX512-BF16.
    nonisolated(unsafe) static var nativeBF16Override: Bool? = nil

    /// Throws unless bf16 kernels run natively on this CPU; `setting` (the config key or flag
    /// that asked for bf16) heads the error's line.
    public static func checkBF16(setting: String? = nil) throws {
        let native = nativeBF16Override ?? OneDNN.hasNativeBF16
        guard native else { throw AutocastError.noNativeBF16(isa: OneDNN.effectiveISA, setting: setting) }
    }

    /// Throws unless `precision` runs natively here (fp32 always does): the start-up check of
    /// whatever runs at a configured precision (training, features, propagation), before any output.
    public static func check(_ precision: Precision, setting: String) throws {
        if precision == .bf16 { try checkBF16(setting: setting) }
    }

    /// Runs `body` with conv2d, conv3d, linear and matmul in bf16 (`torch.autocast("cpu", torch.bfloat16)`).
    public static func bf16<T>(_ body: () throws -> T) throws -> T {
        try checkBF16()
        let saved = isEnabled
        isEnabled = true
        let outermost = weightCache.value == nil
        if outermost { weightCache.value = DNNLReorderCache() }
        defer {
            isEnabled = saved
            if outermost { weightCache.value = nil }
        }
        return try body()
    }

    /// The bf16 copies of the weights cast in this thread's outermost bf16 scope (nil outside).
    static let weightCache = ThreadLocal<DNNLReorderCache>()

    /// Where an autocast op's reorder of `weight` may be cached: inside a bf16 scope, for a leaf
    /// that requires grad (PyTorch's rule for its autocast weight cache).
    static func weightReuse(_ weight: Tensor) -> DNNLReuse? {
        guard weight.requiresGrad, weight.gradFn == nil, let cache = weightCache.value else { return nil }
        return DNNLReuse(cache: cache, owner: weight.storage)
    }

    /// Runs `body` at `precision`: fp32 as it is, bf16 inside `bf16`.
    public static func run<T>(_ precision: Precision, _ body: () throws -> T) throws -> T {
        precision == .bf16 ? try bf16(body) : try body()
    }
}

public enum AutocastError: Error, CustomStringConvertible, Equatable {
    case noNativeBF16(isa: String, setting: String? = nil)

    public var description: String {
        switch self {
        case .noNativeBF16(let isa, let setting):
            return (setting.map { "\($0): " } ?? "") + "precision bf16 needs a CPU with AVX512-BF16, which this one lacks (oneDNN's effective ISA mask \(isa)); use precision fp32"
        }
    }
}

// MARK: what ops inside autocast save for backward

/// A tensor's values rounded to bfloat16 (to nearest even, as oneDNN converts), saved for backward
/// instead of the float32 tensor by ops inside a bf16 autocast scope, as PyTorch's autocast ops
/// save their bf16 tensors: a convolution's input (its weight gradient reads the input in bf16
/// anyway, so this changes no value) and a batch norm's input. Half the bytes, so the float32
/// tensor itself is freed as soon as the forward pass no longer reads it. `tensor()` widens the
/// values back to float32 (exactly). The bits live in tensor `Storage` (two per float slot).
final class BF16Copy: @unchecked Sendable {
    let shape: [Int]
    private let bits: Storage

    init(_ t: Tensor) {
        shape = t.shape
        let n = t.count
        bits = Storage(uninitializedCount: (n + 1) / 2)
        let src = SendablePointer(UnsafeMutableRawPointer(t.data).assumingMemoryBound(to: UInt32.self))
        let dst = SendablePointer(UnsafeMutableRawPointer(bits.pointer).assumingMemoryBound(to: UInt16.self))
        Parallel.chunks(n, costPerItem: 1) { r in
            for i in r { dst[i] = BF16Copy.round(src[i]) }
        }
    }

    /// The bf16 bits of a float32 (its bits): to nearest, ties to even; a NaN stays a (quiet) NaN.
    @inline(__always) static func round(_ f: UInt32) -> UInt16 {
        if f & 0x7fff_ffff > 0x7f80_0000 { return UInt16(truncatingIfNeeded: f >> 16) | 0x40 }
        return UInt16(truncatingIfNeeded: (f &+ 0x7fff &+ ((f >> 16) & 1)) >> 16)
    }

    /// The values as a float32 tensor.
    func tensor() -> Tensor {
        let t = Tensor(uninitialized: shape)
        let n = t.count
        let src = SendablePointer(UnsafeMutableRawPointer(bits.pointer).assumingMemoryBound(to: UInt16.self))
        let dst = SendablePointer(UnsafeMutableRawPointer(t.data).assumingMemoryBound(to: UInt32.self))
        Parallel.chunks(n, costPerItem: 1) { r in
            for i in r { dst[i] = UInt32(src[i]) << 16 }
        }
        return t
    }
}

/// Where a tensor is positive, one byte per element: what a ReLU inside a bf16 autocast scope saves
/// for backward instead of its float32 output (whose next convolution saves its own bf16 copy),
/// so that output is freed once the forward pass has read it.
final class PositiveMask: @unchecked Sendable {
    let shape: [Int]
    private let bytes: Storage

    init(_ t: Tensor) {
        shape = t.shape
        let n = t.count
        bytes = Storage(uninitializedCount: (n + 3) / 4)
        let src = SendablePointer(t.data)
        let dst = SendablePointer(UnsafeMutableRawPointer(bytes.pointer).assumingMemoryBound(to: UInt8.self))
        Parallel.chunks(n, costPerItem: 1) { r in
            for i in r { dst[i] = src[i] > 0 ? 1 : 0 }
        }
    }

    /// g (the gradient of the masked tensor: backward gives it the output's shape) where the
    /// tensor was positive, else 0.
    func select(_ g: Tensor) -> Tensor {
        let out = Tensor(uninitialized: shape)
        let gs = SendablePointer(g.data), os = SendablePointer(out.data)
        let m = SendablePointer(UnsafeMutableRawPointer(bytes.pointer).assumingMemoryBound(to: UInt8.self))
        Parallel.chunks(shape.reduce(1, *), costPerItem: 1) { r in
            for i in r { os[i] = m[i] != 0 ? gs[i] : 0 }
        }
        return out
    }
}

/// A tensor an op saves for backward: the tensor itself, or (inside autocast) its bf16 copy.
enum SavedTensor: @unchecked Sendable {
    case float(Tensor)
    case bf16(BF16Copy)

    /// `t` itself, or its bf16 copy when `bf16`.
    init(_ t: Tensor, bf16: Bool) { self = bf16 ? .bf16(BF16Copy(t)) : .float(t) }

    /// The saved values as a float32 tensor.
    var tensor: Tensor {
        switch self {
        case .float(let t): return t
        case .bf16(let c): return c.tensor()
        }
    }
}
