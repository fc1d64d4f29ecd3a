import Foundation
import XCTest
@testable import CycleTimeVideo
import TestSupport

final class BenchmarkTests: XCTestCase {
    func testBenchmarkVideoDecode() throws {
        let path = try requireSharedData("videos/vtest.avi")
        let r = try benchmarkVideoDecode(path: path, shortSide: 256)
        XCTAssertEqual(r.frames, 795)
        XCTAssertGreaterThan(r.seconds, 0)
        print("benchmarkVideoDecode vtest.avi short side 256: \(r.frames) frames in \(r.seconds) s (\(Double(r.frames) / r.seconds) fps)")
    }
}

