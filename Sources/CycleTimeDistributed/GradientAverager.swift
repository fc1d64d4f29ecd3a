import CMPI
import CycleTimeCore
import CycleTimeNN
import Foundation

/// Averages the gradients of `parameters` over all ranks after the backward pass: the parameters
/// are grouped in buckets of at most `bucketBytes` (in reverse order, the order the backward pass
/// finishes them, as DDP), each bucket is packed into one buffer and all buckets' MPI_Iallreduce
/// are in flight together. The autograd has no per-parameter hook, so the all-reduce starts after
/// the backward pass rather than overlapping it. A parameter whose gradient is nil on every rank
/// keeps a nil gradient (as PyTorch, optimizers then skip it).
public final class GradientAverager {
    public let context: MPIContext
    public let buckets: [[Tensor]]
    private let buffers: [Tensor]
    /// Gradient elements (all buckets) and bytes sent per all-reduce.
    public let elements: Int
    public var bytes: Int { elements * MemoryLayout<Float>.stride }

    public init(_ context: MPIContext, parameters: [Tensor], bucketBytes: Int) {
        self.context = context
        var out: [[Tensor]] = [], cur: [Tensor] = [], curBytes = 0
        for p in parameters.reversed() {
            let b = p.count * MemoryLayout<Float>.stride
            if !cur.isEmpty && curBytes + b > bucketBytes {
                out.append(cur); cur = []; curBytes = 0
            }
            cur.append(p); curBytes += b
        }
        if !cur.isEmpty { out.append(cur) }
        buckets = out
        // One float per parameter after its bucket's gradients: how many ranks had a gradient.
        buffers = out.map { Tensor(uninitialized: [$0.reduce(0) { $0 + $1.count } + $0.count]) }
        elements = parameters.reduce(0) { $0 + $1.count }
    }

    /// Replaces every gradient by its mean over the ranks. Returns the seconds spent. A failed or
    /// timed-out all-reduce aborts the job with a message (a peer is gone: the step cannot finish).
    @discardableResult
    public func average() -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        var requests: [MPI_Request?] = []
        do {
            for (bucket, buf) in zip(buckets, buffers) {
                var o = 0
                for p in bucket {
                    if let g = p.grad { buf.data.advanced(by: o).update(from: g.data, count: p.count) } else { buf.data.advanced(by: o).update(repeating: 0, count: p.count) }
                    o += p.count
                }
                for (i, p) in bucket.enumerated() { buf.data[o + i] = p.grad == nil ? 0 : 1 }
                requests.append(try context.startAllReduce(buf.data, count: buf.count, "the gradient all-reduce"))
            }
            let scale = 1 / Float(context.size)
            for i in buckets.indices {
                try context.finish(&requests[i], "the gradient all-reduce")
                let buf = buffers[i]
                var o = 0
                let flags = buf.count - buckets[i].count
                for (j, p) in buckets[i].enumerated() {
                    defer { o += p.count }
                    guard buf.data[flags + j] > 0 else { p.grad = nil; continue }
                    let g = p.grad ?? Tensor(uninitialized: p.shape)
                    let src = buf.data + o, dst = g.data
                    for k in 0..<p.count { dst[k] = src[k] * scale }
                    p.grad = g
                }
            }
        } catch {
            context.abort("\(error)")
        }
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }
}

/// Synchronized batch norm over MPI: sums batch statistics over all ranks in the forward pass and
/// their gradients in the backward pass (each an all-reduce; the order of calls is the same on
/// every rank because the graphs are).
public final class MPIBatchStatistics: CrossProcessSum {
    public let context: MPIContext
    public init(_ context: MPIContext) { self.context = context }

    public func sumAcrossProcesses(_ t: Tensor) -> Tensor {
        let out = t.detach().clone()
        reduce(out, "the synchronized batch-norm statistics")
        return out.recording("all_reduce_sum", [t]) { [self] g in
            let s = g.clone()
            reduce(s, "the synchronized batch-norm gradient")
            return [s]
        }
    }

    private func reduce(_ t: Tensor, _ what: String) {
        do { try context.allReduce(t.data, count: t.count, what) } catch { context.abort("\(error)") }
    }
}
