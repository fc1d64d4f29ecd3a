import COpenBLAS
import Foundation

/// The only door to OpenBLAS. Row-major single-precision GEMM:
/// C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C.
public enum BLAS {
    @inline(__always)
    public static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        _ = kernels
        if m == 0 || n == 0 { return }
        if k == 0 {
            if beta == 0 { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// OpenBLAS worker threads for GEMM (process-wide). To change it for a stretch of code, use
    /// `withThreads`, which restores the previous count.
    public static var threads: Int {
        get { _ = kernels; return Int(openblas_get_num_threads()) }
        set { _ = kernels; openblas_set_num_threads(Int32(newValue)) }
    }

    /// The kernel family OpenBLAS runs (its core name, e.g. "Cooperlake", "SkylakeX", "Haswell").
    ///
    /// Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) takes CPUs whose model it does not know, such as the
    /// Sapphire Rapids machines behind a hypervisor's generic "Intel(R) Xeon(R) Processor", for
    /// "Prescott" and runs its SSE3 kernels there, about half as fast as the CPU's own (the detector's
    /// training iteration: 7.1 s against 3.7 s). Unless the user chose a core (OPENBLAS_CORETYPE),
    /// that choice is made again once, before the first GEMM, from the vector units the CPU has
    /// (OpenBLAS's own order: AVX512-BF16 Cooperlake, AVX-512 SkylakeX, AVX2 Haswell); the
    /// variable is then set for child processes too.
    public static let kernels: String = {
        let detected = String(cString: openblas_get_corename())
        guard detected == "Prescott", ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil,
              let better = OneDNN.openBLASCoreForThisCPU else { return detected }
        setenv("OPENBLAS_CORETYPE", better, 1)
        gotoblas_dynamic_quit()
        gotoblas_dynamic_init()
        return String(cString: openblas_get_corename())
    }()

    /// Runs `body` with OpenBLAS set to `n` threads, then restores the previous count (also when
    /// `body` throws). Used around our own parallel loops whose workers each call a single-threaded
    /// sgemm (OpenBLAS's single-threaded path is reentrant), so no OpenBLAS worker spins meanwhile.
    public static func withThreads<T>(_ n: Int, _ body: () throws -> T) rethrows -> T {
        let saved = threads
        threads = n
        defer { threads = saved }
        return try body()
    }
}
