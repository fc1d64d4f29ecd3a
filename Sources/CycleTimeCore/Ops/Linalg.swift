// Matrix products on cblas_sgemm (on oneDNN in bf16 inside `Autocast.bf16`).

/// Batched GEMM kernel: out[b] = op(a[b]) op(b[b]) for `batch` matrices (batch strides 0 allowed).
func batchedGemm(_ a: UnsafePointer<Float>, strideA: Int, transA: Bool,
                 _ b: UnsafePointer<Float>, strideB: Int, transB: Bool,
                 _ c: UnsafeMutablePointer<Float>, batch: Int, m: Int, n: Int, k: Int, beta: Float = 0) {
    let lda = transA ? m : k, ldb = transB ? k : n
    for i in 0..<batch {
        BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k,
                   a: a + i * strideA, lda: lda, b: b + i * strideB, ldb: ldb, beta: beta, c: c + i * m * n, ldc: n)
    }
}

extension Tensor {
    /// Matrix product with PyTorch's `matmul` rules for rank >= 2: [..., M, K] x [..., K, N] with
    /// batch dimensions broadcast; a 1-D operand is treated as a row/column vector.
    public func matmul(_ other: Tensor) -> Tensor {
        if rank == 1 { return reshaped([1, shape[0]]).matmul(other).reshaped(Array(other.shape.dropLast(2)) + other.shape.suffix(1)) }
        if other.rank == 1 { return matmul(other.reshaped([other.shape[0], 1])).reshaped(Array(shape.dropLast())) }
        let m = shape[rank - 2], k = shape[rank - 1]
        let k2 = other.shape[other.rank - 2], n = other.shape[other.rank - 1]
        precondition(k == k2, "matmul: shapes \(shape) and \(other.shape) do not align (\(k) vs \(k2))")
        let batchA = Array(shape.dropLast(2)), batchB = Array(other.shape.dropLast(2))
        let batch = broadcastShapes(batchA, batchB)
        let a = batchA == batch ? self : expandKernel(self, to: batch + [m, k])
        let b = batchB == batch ? other : expandKernel(other, to: batch + [k, n])
        if Autocast.isEnabled {
            return oneDNNMatmul(a, b, batch: batch, m: m, n: n, k: k, originalShapes: shape, other.shape,
                                requiresGrad: requiresGrad, other.requiresGrad, inputs: [self, other], precision: .bf16)
        }
        let nb = batch.reduce(1, *)
        let out = Tensor(uninitialized: batch + [m, n])
        batchedGemm(a.data, strideA: m * k, transA: false, b.data, strideB: k * n, transB: false,
                    out.data, batch: nb, m: m, n: n, k: k)
        let sa = shape, sb = other.shape, ra = requiresGrad, rb = other.requiresGrad
        return out.recording("matmul", [self, other]) { g in
            var ga: Tensor? = nil, gb: Tensor? = nil
            if ra {  // dA = dC B^T
                let t = Tensor(uninitialized: batch + [m, k])
                batchedGemm(g.data, strideA: m * n, transA: false, b.data, strideB: k * n, transB: true,
                            t.data, batch: nb, m: m, n: k, k: n)
                ga = unbroadcast(t, to: sa)
            }
            if rb {  // dB = A^T dC
                let t = Tensor(uninitialized: batch + [k, n])
                batchedGemm(a.data, strideA: m * k, transA: true, g.data, strideB: m * n, transB: false,
                            t.data, batch: nb, m: k, n: n, k: m)
                gb = unbroadcast(t, to: sb)
            }
            return [ga, gb]
        }
    }
}
