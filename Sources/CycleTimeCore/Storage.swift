import Foundation

/// A raw, contiguous Float32 buffer owned by a tensor. 64-byte aligned so that BLAS and the
/// vectorized loops get aligned rows; freed in `deinit`.
public final class Storage: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    /// Uninitialized storage of `count` floats.
    public init(uninitializedCount count: Int) {
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        if let cached = StorageCache.take(bytes) {
            pointer = cached.bindMemory(to: Float.self, capacity: max(count, 1))
        } else {
            // Sizes that reach here are the program's own (inputs are bounded where they are read);
            // the kernel refusing memory is fatal, as in PyTorch's allocator.
            var raw: UnsafeMutableRawPointer? = nil
            let rc = posix_memalign(&raw, 64, bytes)
            guard rc == 0, let block = raw else { fatalError("CycleTime: out of memory allocating \(bytes) bytes") }
            pointer = block.bindMemory(to: Float.self, capacity: max(count, 1))
        }
        StorageStats.allocated(bytes)
    }

    public convenience init(zeros count: Int) {
        self.init(uninitializedCount: count)
        pointer.initialize(repeating: 0, count: count)
    }

    public convenience init(repeating value: Float, count: Int) {
        self.init(uninitializedCount: count)
        pointer.initialize(repeating: value, count: count)
    }

    public convenience init(_ values: [Float]) {
        self.init(uninitializedCount: values.count)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.initialize(from: base, count: values.count) }
        }
    }

    deinit {
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        StorageStats.freed(bytes)
        if !StorageCache.put(UnsafeMutableRawPointer(pointer), bytes) { free(pointer) }
    }

    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: pointer, count: count) }

    public func copy() -> Storage {
        let s = Storage(uninitializedCount: count)
        s.pointer.initialize(from: pointer, count: count)
        return s
    }
}

/// Keeps freed large buffers by exact size for reuse, so that repeated training steps (which ask
/// for the same sizes every step) reuse memory instead of going back to malloc: resident memory
/// stays flat after the first step and large buffers are not page-faulted in again. Bounded by
/// `limitBytes` (oldest sizes evicted first); `release()` frees everything it holds.
public enum StorageCache {
    /// Buffers smaller than this go straight back to malloc.
    public static let minimumBytes = 64 * 1024
    /// Upper bound on the bytes held by the cache (default 1 GiB; 0 disables caching).
    nonisolated(unsafe) public static var limitBytes = 1 << 30
    nonisolated(unsafe) private static var free: [Int: [UnsafeMutableRawPointer]] = [:]
    nonisolated(unsafe) private static var order: [Int] = []   // sizes, least recently freed first
    nonisolated(unsafe) private static var held = 0
    private static let lock = NSLock()

    static func take(_ bytes: Int) -> UnsafeMutableRawPointer? {
        guard bytes >= minimumBytes else { return nil }
        lock.lock(); defer { lock.unlock() }
        guard var list = free[bytes], let p = list.popLast() else { return nil }
        free[bytes] = list.isEmpty ? nil : list
        held -= bytes
        return p
    }

    static func put(_ p: UnsafeMutableRawPointer, _ bytes: Int) -> Bool {
        guard bytes >= minimumBytes, bytes <= limitBytes else { return false }
        lock.lock(); defer { lock.unlock() }
        while held + bytes > limitBytes, !order.isEmpty {
            let size = order.removeFirst()
            if var list = free[size], let victim = list.popLast() {
                Foundation.free(victim)
                held -= size
                free[size] = list.isEmpty ? nil : list
                if !list.isEmpty { order.append(size) }
            }
        }
        free[bytes, default: []].append(p)
        held += bytes
        if let i = order.firstIndex(of: bytes) { order.remove(at: i) }
        order.append(bytes)
        return true
    }

    /// Bytes currently held for reuse.
    public static var heldBytes: Int { lock.lock(); defer { lock.unlock() }; return held }

    /// Frees every cached buffer.
    public static func release() {
        lock.lock(); defer { lock.unlock() }
        for (_, list) in free { for p in list { Foundation.free(p) } }
        free = [:]; order = []; held = 0
    }
}

/// Live and peak bytes held by tensor storage (process-wide), for benchmarks.
public enum StorageStats {
    nonisolated(unsafe) private static var live = 0
    nonisolated(unsafe) private static var peak = 0
    private static let lock = NSLock()

    static func allocated(_ bytes: Int) {
        lock.lock(); live += bytes; if live > peak { peak = live }; lock.unlock()
    }
    static func freed(_ bytes: Int) { lock.lock(); live -= bytes; lock.unlock() }
    public static var liveBytes: Int { lock.lock(); defer { lock.unlock() }; return live }
    public static var peakBytes: Int { lock.lock(); defer { lock.unlock() }; return peak }
    public static func resetPeak() { lock.lock(); peak = live; lock.unlock() }
}

/// Process memory as the OS sees it (Linux /proc), for benchmarks.
public enum ProcessMemory {
    /// Current resident set size in bytes.
    public static var residentBytes: Int { field("VmRSS:") }
    /// Peak resident set size in bytes.
    public static var peakResidentBytes: Int { field("VmHWM:") }

    private static func field(_ name: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return 0
    }
}
