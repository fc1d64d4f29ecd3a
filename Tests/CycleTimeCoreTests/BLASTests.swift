import XCTest
@testable import CycleTimeCore
import TestSupport

final class BLASTests: XCTestCase {
    /// C = alpha op(A) op(B) + beta C in Double, row-major, for comparison.
    func reference(_ a: [Float], _ b: [Float], _ c: [Float], transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                   alpha: Float, beta: Float) -> [Float] {
        var out = c
        for i in 0..<m {
            for j in 0..<n {
                var acc = 0.0
                for p in 0..<k {
                    let av = transA ? a[p * m + i] : a[i * k + p], bv = transB ? b[j * k + p] : b[p * n + j]
                    acc += Double(av) * Double(bv)
                }
                out[i * n + j] = Float(Double(alpha) * acc + Double(beta) * Double(c[i * n + j]))
            }
        }
        return out
    }

    func testSgemmMatchesAReferenceForEveryTransposition() {
        let m = 5, n = 7, k = 3
        let a = randn([m * k], seed: 1).array, b = randn([k * n], seed: 2).array, c0 = randn([m * n], seed: 3).array
        for transA in [false, true] {
            for transB in [false, true] {
                for (alpha, beta) in [(Float(1), Float(0)), (0.5, 2)] {
                    var c = c0
                    a.withUnsafeBufferPointer { pa in
                        b.withUnsafeBufferPointer { pb in
                            c.withUnsafeMutableBufferPointer { pc in
                                BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                                           a: pa.baseAddress!, lda: transA ? m : k, b: pb.baseAddress!, ldb: transB ? k : n,
                                           beta: beta, c: pc.baseAddress!, ldc: n)
                            }
                        }
                    }
                    let ref = reference(a, b, c0, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta)
                    assertClose(Tensor(c, shape: [m, n]), Tensor(ref, shape: [m, n]), rtol: 1e-5, atol: 1e-5,
                                "transA \(transA) transB \(transB) alpha \(alpha) beta \(beta)")
                }
            }
        }
    }

    func testAnEmptyInnerDimensionGivesZerosOrLeavesCForNonzeroBeta() {
        var c: [Float] = [1, 2, 3, 4]
        let dummy: [Float] = [0]
        dummy.withUnsafeBufferPointer { p in
            c.withUnsafeMutableBufferPointer { pc in
                BLAS.sgemm(transA: false, transB: false, m: 2, n: 2, k: 0, a: p.baseAddress!, lda: 1, b: p.baseAddress!, ldb: 2,
                           beta: 1, c: pc.baseAddress!, ldc: 2)
            }
        }
        XCTAssertEqual(c, [1, 2, 3, 4])
        dummy.withUnsafeBufferPointer { p in
            c.withUnsafeMutableBufferPointer { pc in
                BLAS.sgemm(transA: false, transB: false, m: 2, n: 2, k: 0, a: p.baseAddress!, lda: 1, b: p.baseAddress!, ldb: 2,
                           c: pc.baseAddress!, ldc: 2)
            }
        }
        XCTAssertEqual(c, [0, 0, 0, 0])
    }

    func testWithThreadsRestoresThePreviousCountAlsoWhenTheBodyThrows() {
        struct Failure: Error {}
        let saved = BLAS.threads
        defer { BLAS.threads = saved }
        BLAS.threads = 2
        XCTAssertEqual(BLAS.withThreads(1) { BLAS.threads }, 1)
        XCTAssertEqual(BLAS.threads, 2)
        XCTAssertThrowsError(try BLAS.withThreads(1) { throw Failure() })
        XCTAssertEqual(BLAS.threads, 2)
    }

    func testThreadsCanBeSetAndRestored() {
        let saved = BLAS.threads
        defer { BLAS.threads = saved }
        XCTAssertGreaterThanOrEqual(saved, 1)
        BLAS.threads = 1
        XCTAssertEqual(BLAS.threads, 1)
    }

    /// OpenBLAS runs kernels for this CPU's vector units, not the SSE3 "Prescott" ones its 0.3.21
    /// detection falls back to on CPU models it does not know (unless the user forced a core).
    func testOpenBLASRunsTheKernelsOfThisCPUsVectorUnits() throws {
        guard ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil || ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == OneDNN.openBLASCoreForThisCPU else {
            throw XCTSkip("OPENBLAS_CORETYPE is set by the user: OpenBLAS runs what it names")
        }
        guard let expected = OneDNN.openBLASCoreForThisCPU else { throw XCTSkip("this CPU has no AVX2: Prescott kernels are its own") }
        XCTAssertNotEqual(BLAS.kernels, "Prescott", "expected kernels at least as wide as \(expected)'s")
    }
}
