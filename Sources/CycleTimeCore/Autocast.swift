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
