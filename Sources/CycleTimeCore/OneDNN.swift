import CDNNL
import Foundation

// The only door to oneDNN (libdnnl 2.6, v2.x C API). One `OneDNN` object owns the CPU engine and
// stream; primitives (with the reorders between our plain NCHW / row-major float32 tensors and the
// layouts and data types oneDNN picks) are built once per shape key and cached, since creating a
// primitive descriptor is expensive. Every dnnl_status_t is checked and thrown as a `OneDNNError`
// naming the call, the op and its shapes.

/// Data type of the arithmetic of a oneDNN op: float32, or bfloat16 inputs with float32
/// accumulation and float32 outputs (conversion to bf16 rounds to nearest even). The value of
/// `train.precision` in training configs and of `--precision` on the command line.
public enum Precision: String, Codable, Sendable, CaseIterable {
    case fp32, bf16
}

/// A failed oneDNN call: which call, its status, and the op with its shapes.
public struct OneDNNError: Error, CustomStringConvertible, Equatable {
    public let call: String
    public let status: String
    public let op: String
    public var description: String { "oneDNN: \(call) failed (\(status)) for \(op)" }
}

@inline(__always)
func dnnlCheck(_ s: dnnl_status_t, _ call: String, _ op: @autoclosure () -> String) throws {
    guard s != dnnl_success else { return }
    let name: String
    switch s {
    case dnnl_out_of_memory: name = "out of memory"
    case dnnl_invalid_arguments: name = "invalid arguments"
    case dnnl_unimplemented: name = "unimplemented"
    case dnnl_runtime_error: name = "runtime error"
    case dnnl_not_required: name = "not required"
    default: name = "status \(s.rawValue)"
    }
    throw OneDNNError(call: call, status: name, op: op())
}

/// A memory descriptor: dims with a format tag or explicit strides (in elements).
func dnnlDesc(_ dims: [Int], _ type: dnnl_data_type_t, tag: dnnl_format_tag_t, op: String) throws -> dnnl_memory_desc_t {
    var md = dnnl_memory_desc_t()
    let d = dims.map { Int64($0) }
    try dnnlCheck(dnnl_memory_desc_init_by_tag(&md, Int32(d.count), d, type, tag), "dnnl_memory_desc_init_by_tag", op)
    return md
}

func dnnlDesc(_ dims: [Int], _ type: dnnl_data_type_t, strides: [Int], op: String) throws -> dnnl_memory_desc_t {
    var md = dnnl_memory_desc_t()
    let d = dims.map { Int64($0) }, s = strides.map { Int64($0) }
    try dnnlCheck(dnnl_memory_desc_init_by_strides(&md, Int32(d.count), d, type, s), "dnnl_memory_desc_init_by_strides", op)
    return md
}

func dnnlType(_ p: Precision) -> dnnl_data_type_t { p == .bf16 ? dnnl_bf16 : dnnl_f32 }

/// One argument of a cached primitive: the user's memory (float32, plain) and, when oneDNN wants
/// another layout or data type, the reorder between them (user -> primitive for inputs,
/// primitive -> user for outputs).
final class DNNLArgument {
    let arg: Int32
    var user: dnnl_memory_desc_t
    var inner: dnnl_memory_desc_t
    let reorder: dnnl_primitive_t?
    let isOutput: Bool

    init(arg: Int32, user: dnnl_memory_desc_t, inner: dnnl_memory_desc_t, isOutput: Bool, engine: dnnl_engine_t, op: String) throws {
        self.arg = arg
        self.user = user
        self.inner = inner
        self.isOutput = isOutput
        var u = user, i = inner
        if dnnl_memory_desc_equal(&u, &i) != 0 {
            reorder = nil
            return
        }
        var rpd: dnnl_primitive_desc_t? = nil
        let s = isOutput ? dnnl_reorder_primitive_desc_create(&rpd, &i, engine, &u, engine, nil)
                         : dnnl_reorder_primitive_desc_create(&rpd, &u, engine, &i, engine, nil)
        try dnnlCheck(s, "dnnl_reorder_primitive_desc_create", op + " (argument \(arg))")
        defer { dnnl_primitive_desc_destroy(rpd) }
        var r: dnnl_primitive_t? = nil
        try dnnlCheck(dnnl_primitive_create(&r, rpd), "dnnl_primitive_create (reorder)", op + " (argument \(arg))")
        reorder = r
    }

    deinit { if let reorder { dnnl_primitive_destroy(reorder) } }
}

/// oneDNN memory over a buffer of its own, destroyed with the object. The buffer is tensor
/// `Storage`, so the reordered copies oneDNN reads and writes between our tensors and its layouts
/// come from the same size-keyed cache as tensors (the same sizes every training step) and count
/// in `StorageStats`, instead of growing the C heap, which kept ~0.6 GiB of them resident in a
/// bf16 TimeCycle r50 step.
final class DNNLMemory {
    let memory: dnnl_memory_t
    var desc: dnnl_memory_desc_t
    let buffer: Storage

    init(_ desc: dnnl_memory_desc_t, engine: dnnl_engine_t, op: String) throws {
        var md = desc
        let bytes = dnnl_memory_desc_get_size(&md)
        buffer = Storage(uninitializedCount: (bytes + MemoryLayout<Float>.stride - 1) / MemoryLayout<Float>.stride)
        var m: dnnl_memory_t? = nil
        try dnnlCheck(dnnl_memory_create(&m, &md, engine, buffer.pointer), "dnnl_memory_create", op)
        guard let m else { throw OneDNNError(call: "dnnl_memory_create", status: "no memory", op: op) }
        memory = m
        self.desc = md
    }

    deinit { dnnl_memory_destroy(memory) }
}

/// Inputs already reordered into a primitive's layout and type, so that a buffer several
/// primitives read in the same layout is reordered once: the weights inside one autocast scope
/// (`Autocast`'s weight cache, as PyTorch's autocast caches the lower-precision copy of each
/// parameter until the outermost scope exits) and a convolution's output gradient, read by both
/// its backward-data and backward-weights primitives. An entry is found by the buffer's address
/// and the primitive's memory descriptor; it holds the buffer's owner, so the address cannot be
/// reused while the cache lives. The buffers must not change while the cache lives.
final class DNNLReorderCache {
    private struct Entry {
        let address: UnsafeMutableRawPointer
        let owner: AnyObject?
        let copy: DNNLMemory
    }
    private var entries: [Entry] = []
    /// Reorders run into this cache, and reads served from it (tests and benchmarks).
    private(set) var reorders = 0, hits = 0
    /// A frozen cache only serves copies: a read it cannot serve is an error (its buffers may be
    /// gone, as a convolution's input once the forward copy of it is all its backward keeps).
    var frozen = false

    func find(_ address: UnsafeMutableRawPointer, _ desc: dnnl_memory_desc_t) -> dnnl_memory_t? {
        var d = desc
        for i in entries.indices where entries[i].address == address && dnnl_memory_desc_equal(&entries[i].copy.desc, &d) != 0 {
            hits += 1
            return entries[i].copy.memory
        }
        return nil
    }

    func insert(_ address: UnsafeMutableRawPointer, owner: AnyObject?, _ copy: DNNLMemory) {
        entries.append(Entry(address: address, owner: owner, copy: copy))
        reorders += 1
    }
}

/// An input buffer's reordered copy may be taken from, or left in, `cache`; `owner` is the
/// object that owns the buffer (a tensor's `Storage`), nil for a cache only its creator reads.
struct DNNLReuse {
    let cache: DNNLReorderCache
    let owner: AnyObject?
}

/// A primitive with its arguments, built once per shape key.
final class DNNLPrimitive {
    let primitive: dnnl_primitive_t
    let arguments: [DNNLArgument]
    let op: String
    /// oneDNN's name of the implementation it chose (e.g. "brgconv:avx512_core_bf16").
    let implementation: String

    init(primitive: dnnl_primitive_t, arguments: [DNNLArgument], op: String, implementation: String) {
        self.primitive = primitive
        self.arguments = arguments
        self.op = op
        self.implementation = implementation
    }

    deinit { dnnl_primitive_destroy(primitive) }
}

/// The oneDNN CPU engine and stream, and the cache of primitives by shape key.
public final class OneDNN: @unchecked Sendable {
    let engine: dnnl_engine_t
    let stream: dnnl_stream_t
    private let cacheLock = NSLock()
    private let runLock = NSLock()
    private var cache: [String: DNNLPrimitive] = [:]

    init() throws {
        var e: dnnl_engine_t? = nil
        try dnnlCheck(dnnl_engine_create(&e, dnnl_cpu, 0), "dnnl_engine_create", "the CPU engine")
        guard let e else { throw OneDNNError(call: "dnnl_engine_create", status: "no engine", op: "the CPU engine") }
        var s: dnnl_stream_t? = nil
        let st = dnnl_stream_create(&s, e, UInt32(dnnl_stream_default_flags.rawValue))
        guard st == dnnl_success, let s else {
            dnnl_engine_destroy(e)
            try dnnlCheck(st, "dnnl_stream_create", "the CPU stream")
            throw OneDNNError(call: "dnnl_stream_create", status: "no stream", op: "the CPU stream")
        }
        engine = e
        stream = s
    }

    deinit {
        cache.removeAll()
        dnnl_stream_destroy(stream)
        dnnl_engine_destroy(engine)
    }

    private static let sharedResult: Result<OneDNN, Error> = Result { try OneDNN() }

    /// The process's engine and stream (created on first use).
    public static func shared() throws -> OneDNN { try sharedResult.get() }

    /// Whether oneDNN runs bf16 kernels natively here (its effective ISA has AVX512-BF16).
    public static var hasNativeBF16: Bool {
        let isa = dnnl_get_effective_cpu_isa().rawValue
        let bf16 = dnnl_cpu_isa_avx512_core_bf16.rawValue
        return isa & bf16 == bf16
    }

    /// OpenBLAS's name of the kernels for this CPU's vector units (AVX512-BF16: Cooperlake,
    /// AVX-512: SkylakeX, AVX2: Haswell), from oneDNN's detection; nil below AVX2.
    static var openBLASCoreForThisCPU: String? {
        let isa = dnnl_get_effective_cpu_isa().rawValue
        func has(_ i: dnnl_cpu_isa_t) -> Bool { isa & i.rawValue == i.rawValue }
        if has(dnnl_cpu_isa_avx512_core_bf16) { return "Cooperlake" }
        if has(dnnl_cpu_isa_avx512_core) { return "SkylakeX" }
        if has(dnnl_cpu_isa_avx2) { return "Haswell" }
        return nil
    }

    /// oneDNN's name of the effective CPU ISA mask (for messages).
    public static var effectiveISA: String { String(format: "0x%x", dnnl_get_effective_cpu_isa().rawValue) }

    /// Number of cached primitives (tests).
    var cachedCount: Int { cacheLock.withLock { cache.count } }

    /// The primitive for `key`, built by `make` on first use.
    func primitive(_ key: String, _ make: () throws -> DNNLPrimitive) throws -> DNNLPrimitive {
        if let p = cacheLock.withLock({ cache[key] }) { return p }
        let p = try make()
        cacheLock.withLock { cache[key] = p }
        return p
    }

    /// Builds a primitive from an op descriptor: arguments' inner layouts are the ones the
    /// primitive descriptor chose (queried by argument), user layouts are `users`.
    func build(op: String, desc: UnsafeRawPointer, hint: dnnl_primitive_desc_t? = nil,
               users: [(arg: Int32, md: dnnl_memory_desc_t, output: Bool)]) throws -> DNNLPrimitive {
        var pd: dnnl_primitive_desc_t? = nil
        try dnnlCheck(dnnl_primitive_desc_create(&pd, desc, nil, engine, hint), "dnnl_primitive_desc_create", op)
        defer { dnnl_primitive_desc_destroy(pd) }
        var args: [DNNLArgument] = []
        for u in users {
            guard let md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, u.arg) else {
                throw OneDNNError(call: "dnnl_primitive_desc_query_md", status: "no descriptor for argument \(u.arg)", op: op)
            }
            args.append(try DNNLArgument(arg: u.arg, user: u.md, inner: md.pointee, isOutput: u.output, engine: engine, op: op))
        }
        var impl: UnsafePointer<CChar>? = nil
        let implName = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success
            ? impl.map { String(cString: $0) } ?? "?" : "?"
        var prim: dnnl_primitive_t? = nil
        try dnnlCheck(dnnl_primitive_create(&prim, pd), "dnnl_primitive_create", op)
        guard let prim else { throw OneDNNError(call: "dnnl_primitive_create", status: "no primitive", op: op) }
        return DNNLPrimitive(primitive: prim, arguments: args, op: op, implementation: implName)
    }

    /// A primitive descriptor only (the forward hint of a backward primitive); the caller destroys it.
    func primitiveDesc(op: String, desc: UnsafeRawPointer) throws -> dnnl_primitive_desc_t? {
        var pd: dnnl_primitive_desc_t? = nil
        try dnnlCheck(dnnl_primitive_desc_create(&pd, desc, nil, engine, nil), "dnnl_primitive_desc_create (hint)", op)
        return pd
    }

    /// Runs `p` on the user buffers (one per argument, in the order of `p.arguments`), reordering
    /// inputs into and outputs out of the primitive's layouts. An input whose `reuse` (by
    /// argument index; missing or nil: none) is given takes its reordered copy from that cache, or
    /// reorders into a new entry of it.
    func execute(_ p: DNNLPrimitive, _ buffers: [UnsafeMutableRawPointer], reuse: [DNNLReuse?] = []) throws {
        precondition(buffers.count == p.arguments.count, "oneDNN \(p.op): \(buffers.count) buffers for \(p.arguments.count) arguments")
        try runLock.withLock {
            var made: [dnnl_memory_t] = []
            var innerBuffers: [DNNLMemory] = []
            defer { for m in made { dnnl_memory_destroy(m) } }
            func memory(_ md: inout dnnl_memory_desc_t, _ handle: UnsafeMutableRawPointer) throws -> dnnl_memory_t {
                var m: dnnl_memory_t? = nil
                try dnnlCheck(dnnl_memory_create(&m, &md, engine, handle), "dnnl_memory_create", p.op)
                guard let m else { throw OneDNNError(call: "dnnl_memory_create", status: "no memory", op: p.op) }
                made.append(m)
                return m
            }
            /// A buffer in the primitive's layout, alive until this call returns.
            func innerMemory(_ md: dnnl_memory_desc_t) throws -> dnnl_memory_t {
                let m = try DNNLMemory(md, engine: engine, op: p.op)
                innerBuffers.append(m)
                return m.memory
            }
            var execArgs: [dnnl_exec_arg_t] = []
            var after: [(dnnl_primitive_t, dnnl_memory_t, dnnl_memory_t)] = []
            for (i, (a, buffer)) in zip(p.arguments, buffers).enumerated() {
                if let r = a.reorder, !a.isOutput, i < reuse.count, let reuse = reuse[i] {
                    if let copy = reuse.cache.find(buffer, a.inner) {
                        execArgs.append(dnnl_exec_arg_t(arg: a.arg, memory: copy))
                        continue
                    }
                    if reuse.cache.frozen {
                        throw OneDNNError(call: "execute", status: "no saved copy of argument \(a.arg) in this layout", op: p.op)
                    }
                    let copy = try DNNLMemory(a.inner, engine: engine, op: p.op)
                    try reorder(r, from: try memory(&a.user, buffer), to: copy.memory, op: p.op)
                    reuse.cache.insert(buffer, owner: reuse.owner, copy)
                    execArgs.append(dnnl_exec_arg_t(arg: a.arg, memory: copy.memory))
                    continue
                }
                let user = try memory(&a.user, buffer)
                guard let r = a.reorder else {
                    execArgs.append(dnnl_exec_arg_t(arg: a.arg, memory: user))
                    continue
                }
                let inner = try innerMemory(a.inner)
                execArgs.append(dnnl_exec_arg_t(arg: a.arg, memory: inner))
                if a.isOutput {
                    after.append((r, inner, user))
                } else {
                    try reorder(r, from: user, to: inner, op: p.op)
                }
            }
            try dnnlCheck(dnnl_primitive_execute(p.primitive, stream, Int32(execArgs.count), execArgs), "dnnl_primitive_execute", p.op)
            for (r, inner, user) in after { try reorder(r, from: inner, to: user, op: p.op) }
            try dnnlCheck(dnnl_stream_wait(stream), "dnnl_stream_wait", p.op)
        }
    }

    private func reorder(_ r: dnnl_primitive_t, from: dnnl_memory_t, to: dnnl_memory_t, op: String) throws {
        let args = [dnnl_exec_arg_t(arg: DNNL_ARG_FROM, memory: from), dnnl_exec_arg_t(arg: DNNL_ARG_TO, memory: to)]
        try dnnlCheck(dnnl_primitive_execute(r, stream, 2, args), "dnnl_primitive_execute (reorder)", op)
    }
}

/// How the threads of oneDNN's OpenMP runtime (libgomp) wait between primitives. By default they
/// spin for a while after each primitive, on the cores where our own workers then run batch norm,
/// ReLU and the rest, which slows those ops down (measured on a 2-core Zen 4: the bf16 TimeCycle r18
/// step 1.72 -> 1.50 s, the bf16 ResNet-18 trunk step 0.464 -> 0.433 s with passive waiting).
/// libgomp reads its policy once, when it is loaded, so `preferPassive()` (the first call of the
/// executable's `main`) re-executes the program with `OMP_WAIT_POLICY=passive` unless the user
/// set `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT`, whose choice stands. The re-executed program removes
/// the variable again, so programs it starts (PyTorch references, ffmpeg) see the user's environment.
public enum OpenMPWait {
    private static let marker = "CYCLETIME_SET_OMP_WAIT_POLICY"
    nonisolated(unsafe) private static var setByCycleTime = false

    /// Re-executes this program (same arguments) with passive OpenMP waiting, once; returns when
    /// that is done, not wanted, or not possible (then the default policy stays).
    public static func preferPassive() {
        if getenv(marker) != nil {
            unsetenv(marker)
            unsetenv("OMP_WAIT_POLICY")
            setByCycleTime = true
            return
        }
        guard getenv("OMP_WAIT_POLICY") == nil, getenv("GOMP_SPINCOUNT") == nil else { return }
        setenv("OMP_WAIT_POLICY", "passive", 1)
        setenv(marker, "1", 1)
        var argv: [UnsafeMutablePointer<CChar>?] = CommandLine.arguments.map { strdup($0) }
        argv.append(nil)
        execv("/proc/self/exe", &argv)
        // Not re-executed: go on as we are.
        for a in argv { free(a) }
        unsetenv(marker)
        unsetenv("OMP_WAIT_POLICY")
    }

    /// The policy in effect, for benchmark reports: "passive (set by cycletime)", the user's
    /// setting, or "libgomp default".
    public static var policy: String {
        if setByCycleTime { return "passive (set by cycletime)" }
        if let p = getenv("OMP_WAIT_POLICY") { return "OMP_WAIT_POLICY=\(String(cString: p))" }
        if let c = getenv("GOMP_SPINCOUNT") { return "GOMP_SPINCOUNT=\(String(cString: c))" }
        return "libgomp default"
    }
}

/// Runs a oneDNN kernel inside a non-throwing op: a failure stops with the error's message (which
/// names the call, the op and its shapes), like the ops' shape preconditions.
func dnnlOrFail<T>(_ body: () throws -> T) -> T {
    do { return try body() } catch { preconditionFailure("\(error)") }
}
