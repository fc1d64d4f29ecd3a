import COpenBLAS

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
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(newValue)) }
    }

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
