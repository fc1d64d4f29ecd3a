import XCTest
@testable import CycleTimeCore
import TestSupport

final class StorageTests: XCTestCase {
    func testLargeBuffersAreReusedAndCacheIsBounded() {
        StorageCache.release()
        let n = 1 << 16  // 256 KiB
        var p: UnsafeMutablePointer<Float>?
        do { let s = Storage(uninitializedCount: n); p = s.pointer }
        XCTAssertEqual(StorageCache.heldBytes, n * 4)
        let again = Storage(zeros: n)
        XCTAssertEqual(again.pointer, p, "a freed buffer of the same size is reused")
        XCTAssertEqual(StorageCache.heldBytes, 0)
        XCTAssertTrue(again.buffer.allSatisfy { $0 == 0 }, "reused storage is initialized as asked")

        let saved = StorageCache.limitBytes
        StorageCache.limitBytes = 3 * n * 4
        do { _ = (0..<6).map { k in Storage(uninitializedCount: n + k * 1024) } }
        XCTAssertLessThanOrEqual(StorageCache.heldBytes, 3 * n * 4 + 6 * 4096)
        StorageCache.limitBytes = saved
        StorageCache.release()
        XCTAssertEqual(StorageCache.heldBytes, 0)
    }

    func testSmallBuffersBypassTheCache() {
        StorageCache.release()
        do { _ = Storage(uninitializedCount: 100) }
        XCTAssertEqual(StorageCache.heldBytes, 0)
    }

    func testLiveBytesTrackAllocations() {
        let before = StorageStats.liveBytes
        var t: Tensor? = Tensor.zeros([1000])
        XCTAssertEqual(StorageStats.liveBytes - before, 4000)
        t = nil
        XCTAssertNil(t)
        XCTAssertEqual(StorageStats.liveBytes, before)
    }
}
