import Foundation
import XCTest
@testable import CycleTimeCore
import TestSupport

final class ParallelTests: XCTestCase {
    /// Runs `body` with `Parallel.threadCount` set to `n`, restoring it afterwards.
    func withThreadCount(_ n: Int, _ body: () -> Void) {
        let saved = Parallel.threadCount
        Parallel.threadCount = n
        defer { Parallel.threadCount = saved }
        body()
    }

    func testChunksCoverEveryIndexExactlyOnce() {
        for threads in [1, 3, 8] {
            withThreadCount(threads) {
                for (count, cost) in [(0, 1), (1, 100_000), (7, 1), (1000, 1), (100_003, 1), (50, 10_000)] {
                    let hits = UnsafeMutablePointer<Int32>.allocate(capacity: max(count, 1))
                    hits.initialize(repeating: 0, count: max(count, 1))
                    defer { hits.deallocate() }
                    let h = SendablePointer(hits)
                    Parallel.chunks(count, costPerItem: cost) { r in for i in r { h[i] += 1 } }
                    XCTAssertTrue((0..<count).allSatisfy { hits[$0] == 1 }, "count \(count) cost \(cost) threads \(threads)")
                }
            }
        }
    }

    func testSmallWorkRunsAsOneChunkOnTheCallingThread() {
        nonisolated(unsafe) var ranges: [Range<Int>] = []
        let caller = Thread.current
        nonisolated(unsafe) var sameThread = true
        Parallel.chunks(100, costPerItem: 10) { r in ranges.append(r); sameThread = sameThread && Thread.current == caller }
        XCTAssertEqual(ranges, [0..<100])
        XCTAssertTrue(sameThread)
    }

    func testLargeWorkIsSplitIntoAtMostFourChunksPerThread() {
        withThreadCount(3) {
            let lock = NSLock()
            nonisolated(unsafe) var ranges: [Range<Int>] = []
            Parallel.chunks(1 << 20) { r in lock.lock(); ranges.append(r); lock.unlock() }
            XCTAssertEqual(ranges.count, 12)
            XCTAssertEqual(ranges.map(\.count).reduce(0, +), 1 << 20)
        }
    }

    func testForEachVisitsEveryIndex() {
        let n = 40_000
        let out = UnsafeMutablePointer<Int>.allocate(capacity: n)
        defer { out.deallocate() }
        let o = SendablePointer(out)
        Parallel.forEach(n) { i in o[i] = i * 2 }
        XCTAssertTrue((0..<n).allSatisfy { out[$0] == $0 * 2 })
    }
}
