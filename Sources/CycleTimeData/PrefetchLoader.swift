import CycleTimeCore
import Foundation

/// Prepares batches [B, ...sample shape] on background threads into a bounded queue, in a
/// deterministic order for a seed. A sample that fails (corrupt or unreadable video) is skipped with
/// a warning naming it, counted in `skipped`, and replaced by the next good sample.
public final class PrefetchLoader<Source: ClipSource>: @unchecked Sendable {
    public let source: Source
    public let batchSize: Int
    public let seed: UInt64
    /// Batches per epoch (samples / (batch size x shards), last partial batch dropped).
    public let batchesPerEpoch: Int
    /// This loader's shard of each batch (data-parallel ranks): batch b is slice `index` of the
    /// `count` x batchSize samples a single loader with batch size count x batchSize would draw.
    public let shard: (index: Int, count: Int)
    public let totalBatches: Int?

    private let cond = NSCondition()
    private var ready: [Int: Source.Sample] = [:]
    private var nextToClaim = 0
    private var nextToDeliver = 0
    private var stopped = false
    private var bad = Set<Int>()
    private var skippedNames: [String] = []
    private var activeWorkers = 0
    private var orders: [Int: [Int]] = [:]
    private let queueDepth: Int
    private var threads: [Thread] = []
    /// Where warnings go (stderr by default).
    public var warn: @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) } {
        didSet { source.notices?.setSink(warn) }
    }

    /// - Parameters: `epochs` nil = endless; `workers` background threads; `queueDepth` batches
    ///   prepared ahead at most; `startBatch` the index of the first batch delivered (to resume:
    ///   batch b is the same whatever batch the loader started from); `shard` (index, count) the
    ///   slice of every global batch this loader delivers (disjoint samples for each index).
    public init(source: Source, batchSize: Int, workers: Int = 2, queueDepth: Int = 4, seed: UInt64 = 0,
                epochs: Int? = 1, shuffle: Bool = true, startBatch: Int = 0, shard: (index: Int, count: Int) = (0, 1)) {
        precondition(batchSize > 0 && workers > 0 && queueDepth > 0 && shard.count > 0 && (0..<shard.count).contains(shard.index))
        self.source = source
        self.batchSize = batchSize
        self.seed = seed
        self.queueDepth = queueDepth
        self.shard = shard
        let perEpoch = source.count / (batchSize * shard.count)
        batchesPerEpoch = perEpoch
        totalBatches = epochs.map { $0 * perEpoch }
        self.shuffle = shuffle
        activeWorkers = workers
        nextToClaim = startBatch
        nextToDeliver = startBatch
        for w in 0..<workers {
            let t = Thread { self.work() }  // workers keep the loader alive until done or stop()
            t.name = "cycletime-loader-\(w)"
            t.stackSize = 1 << 22
            threads.append(t)
        }
        for t in threads { t.start() }
    }
    private let shuffle: Bool

    /// Number of samples skipped so far, and their names.
    public var skipped: Int { cond.lock(); defer { cond.unlock() }; return skippedNames.count }
    public var skippedSamples: [String] { cond.lock(); defer { cond.unlock() }; return skippedNames }
    /// The last sample failure ("name: error"), if any.
    public var lastFailureMessage: String? { cond.lock(); defer { cond.unlock() }; return lastFailure }
    private var lastFailure: String?

    /// The next batch (in order), or nil when all epochs are done or no good sample is left.
    public func next() -> Source.Sample? {
        cond.lock()
        defer { cond.unlock() }
        while true {
            if let t = totalBatches, nextToDeliver >= t { return nil }
            if let b = ready.removeValue(forKey: nextToDeliver) {
                nextToDeliver += 1
                cond.broadcast()
                return b
            }
            // Workers finish the batches they hold before exiting, so wait for all of them.
            if activeWorkers == 0 || batchesPerEpoch == 0 { return nil }
            cond.wait()
        }
    }

    /// Stops the workers (needed for endless loaders; finite ones stop by themselves).
    public func stop() {
        cond.lock(); stopped = true; cond.broadcast(); cond.unlock()
    }

    private func order(epoch: Int) -> [Int] {
        if let o = orders[epoch] { return o }
        var o = Array(0..<source.count)
        if shuffle {
            var g = RandomGenerator(seed: seed &+ UInt64(epoch) &* 0x2545_F491_4F6C_DD1D)
            g.shuffle(&o)
        }
        orders[epoch] = o
        orders[epoch - 2] = nil
        return o
    }

    private func work() {
        while true {
            cond.lock()
            while !stopped && nextToClaim >= nextToDeliver + queueDepth { cond.wait() }
            if stopped || batchesPerEpoch == 0 || (totalBatches.map { nextToClaim >= $0 } ?? false) {
                activeWorkers -= 1; cond.broadcast(); cond.unlock(); return
            }
            let b = nextToClaim
            nextToClaim += 1
            let epoch = b / batchesPerEpoch
            let ord = order(epoch: epoch)
            cond.unlock()

            var samples: [Source.Sample] = []
            var k = 0
            let first = shard.index * batchSize  // this shard's first position in the global batch
            var cursor = (b % batchesPerEpoch) * batchSize * shard.count + first
            var failedAll = false
            while samples.count < batchSize {
                if k >= source.count { failedAll = true; break }  // every sample tried: nothing good left
                let idx = ord[cursor % ord.count]
                cursor += 1
                k += 1
                cond.lock(); let isBad = bad.contains(idx); cond.unlock()
                if isBad { continue }
                let sampleSeed = seed &+ UInt64(b) &* 1_000_003 &+ UInt64(first + samples.count)
                do {
                    samples.append(try source.sample(idx, seed: sampleSeed))
                } catch {
                    // Several indices may name one video (clips per video): warn once per name.
                    let name = source.name(idx)
                    cond.lock()
                    let first = bad.insert(idx).inserted && !skippedNames.contains(name)
                    if first { skippedNames.append(name) }
                    lastFailure = "\(error)".contains(name) ? "\(error)" : "\(name): \(error)"
                    cond.unlock()
                    if first { warn("warning: skipping \(name): \(error)") }
                }
            }
            cond.lock()
            if failedAll {
                stopped = true
                activeWorkers -= 1
                cond.broadcast(); cond.unlock()
                return
            }
            ready[b] = source.collate(samples)
            cond.broadcast()
            cond.unlock()
        }
    }
}
