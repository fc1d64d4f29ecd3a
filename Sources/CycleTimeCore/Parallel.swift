import Foundation

/// Pointer wrapper that may cross into parallel loop bodies (the caller guarantees disjoint writes).
public struct SendablePointer<T>: @unchecked Sendable {
    public let p: UnsafeMutablePointer<T>
    public init(_ p: UnsafeMutablePointer<T>) { self.p = p }
    @inline(__always) public subscript(i: Int) -> T {
        get { p[i] }
        nonmutating set { p[i] = newValue }
    }
    @inline(__always) public static func + (lhs: SendablePointer, rhs: Int) -> UnsafeMutablePointer<T> { lhs.p + rhs }
}

/// Our own parallel loops (everything that is not GEMM; OpenBLAS has its own threads for GEMM).
public enum Parallel {
    /// Number of worker threads used by `forEach`/`chunks` (defaults to the number of cores).
    nonisolated(unsafe) public static var threadCount: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Calls `body(range)` on disjoint chunks covering `0..<count`, in parallel when the work is
    /// large enough (`count * costPerItem >= 32k` elementary operations).
    @inline(__always)
    public static func chunks(_ count: Int, costPerItem: Int = 1, _ body: (Range<Int>) -> Void) {
        if count <= 0 { return }
        let threads = threadCount
        if threads <= 1 || count == 1 || count * costPerItem < 32_768 {
            body(0..<count)
            return
        }
        let pieces = min(count, threads * 4)
        withoutActuallyEscaping(body) { b in
            let box = UnsafeSendableBox(b)
            DispatchQueue.concurrentPerform(iterations: pieces) { i in
                let lo = count * i / pieces, hi = count * (i + 1) / pieces
                if lo < hi { box.value(lo..<hi) }
            }
        }
    }

    /// Calls `body(i)` for each i in 0..<count, in parallel when worthwhile.
    @inline(__always)
    public static func forEach(_ count: Int, costPerItem: Int = 1, _ body: (Int) -> Void) {
        chunks(count, costPerItem: costPerItem) { r in for i in r { body(i) } }
    }
}

struct UnsafeSendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}
