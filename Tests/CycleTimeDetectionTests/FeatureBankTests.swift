import Foundation
import XCTest
@testable import CycleTimeDetection
import CycleTimeCore
import TestSupport

final class FeatureBankTests: XCTestCase {
    /// Row j of second s of video v holds the value 100 s + j (+ 0.5 for video "b") in every channel.
    func features(_ counts: [Int: Int], channels: Int, offset: Float = 0) -> [Int: Tensor] {
        var out: [Int: Tensor] = [:]
        for (s, n) in counts {
            out[s] = Tensor((0..<(n * channels)).map { Float(100 * s + $0 / channels) + offset }, shape: [n, channels])
        }
        return out
    }

    /// A window reads W seconds from t - W/2, K slots each: a second with fewer features than K
    /// fills that many slots, one with more fills K with distinct features of its own, absent
    /// seconds stay zero; the same generator gives the same window.
    func testWindowSamplesEachSecondIntoItsSlotsAsMMAction2() throws {
        let dir = temporaryDirectory("lfb-window")
        let store = FeatureBankStore(root: dir + "/bank")
        try store.write(video: "a", seconds: features([10: 1, 11: 3, 13: 2, 20: 4], channels: 3), channels: 3)
        let bank = FeatureBank(store: store, channels: 3, windowSize: 4, maxPerSecond: 2)
        var g = RandomGenerator(seed: 1)
        let w = try bank.window(video: "a", timestamp: 12, generator: &g)   // seconds 10, 11, 12, 13
        XCTAssertEqual(w.shape, [8, 3])
        func row(_ r: Int) -> [Float] { Array(w.array[(3 * r)..<(3 * r + 3)]) }
        XCTAssertEqual(row(0), [1000, 1000, 1000])
        XCTAssertEqual(row(1), [0, 0, 0])
        let second11 = Set([row(2)[0], row(3)[0]])
        XCTAssertEqual(second11.count, 2, "two distinct features of second 11")
        XCTAssertTrue(second11.isSubset(of: [1100, 1101, 1102]))
        XCTAssertEqual(row(4), [0, 0, 0]); XCTAssertEqual(row(5), [0, 0, 0])
        XCTAssertEqual(Set([row(6)[0], row(7)[0]]), [1300, 1301])
        var g2 = RandomGenerator(seed: 1)
        XCTAssertEqual(try bank.window(video: "a", timestamp: 12, generator: &g2).array, w.array)
        // The batch layout FBOHead reads: [N, C, W * K, 1, 1].
        var g3 = RandomGenerator(seed: 1)
        let batch = try bank.windows([("a", 12), ("a", 20)], generator: &g3)
        XCTAssertEqual(batch.shape, [2, 3, 8, 1, 1])
        XCTAssertEqual((0..<8).map { batch.data[$0] }, (0..<8).map { w.data[3 * $0] })
    }

    /// A missing bank file is one error naming the video; a file of other-width features or not a
    /// bank file is refused; a write interrupted before its rename leaves no file under the final
    /// name, so a resumed build redoes that video.
    func testMissingForeignAndInterruptedFilesAreCaught() throws {
        let dir = temporaryDirectory("lfb-errors")
        let store = FeatureBankStore(root: dir)
        let bank = FeatureBank(store: store, channels: 3)
        var g = RandomGenerator(seed: 0)
        XCTAssertThrowsError(try bank.window(video: "nope", timestamp: 5, generator: &g)) { e in
            XCTAssertTrue("\(e)".contains("no bank file for video 'nope'"), "\(e)")
            XCTAssertFalse("\(e)".contains("\n"))
        }
        try store.write(video: "wide", seconds: features([1: 1], channels: 4), channels: 4)
        XCTAssertThrowsError(try bank.window(video: "wide", timestamp: 1, generator: &g)) { e in
            XCTAssertTrue("\(e)".contains("4-channel features, the model reads 3"), "\(e)")
        }
        try SafeTensors.write(["1": Tensor.zeros([1, 3])], to: store.path("plain"))
        XCTAssertThrowsError(try bank.window(video: "plain", timestamp: 1, generator: &g)) { e in
            XCTAssertTrue("\(e)".contains("not a CycleTime feature bank file"), "\(e)")
        }
        XCTAssertThrowsError(try store.write(video: "bad", seconds: [3: Tensor.zeros([2, 5])], channels: 3))
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: AtomicFile.temporaryPath(for: store.path("half"))))
        XCTAssertFalse(store.contains("half"))
        XCTAssertTrue(store.contains("wide"))
    }

    /// At most `cachedVideos` videos' features are held at once (least recently used dropped).
    func testMemoryHoldsAtMostTheCachedVideos() throws {
        let dir = temporaryDirectory("lfb-cache")
        let store = FeatureBankStore(root: dir)
        for v in ["a", "b", "c"] { try store.write(video: v, seconds: features([1: 2], channels: 2), channels: 2) }
        let bank = FeatureBank(store: store, channels: 2, windowSize: 2, maxPerSecond: 1, cachedVideos: 2)
        var g = RandomGenerator(seed: 0)
        for v in ["a", "b", "a", "c"] { _ = try bank.window(video: v, timestamp: 1, generator: &g) }
        XCTAssertEqual(Set(bank.cache.keys), ["a", "c"])
    }
}
