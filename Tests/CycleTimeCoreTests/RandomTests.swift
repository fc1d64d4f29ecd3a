import XCTest
@testable import CycleTimeCore
import TestSupport

final class RandomTests: XCTestCase {
    func testTheSameSeedGivesTheSameSequenceAndAnotherSeedDoesNot() {
        var a = RandomGenerator(seed: 123), b = RandomGenerator(seed: 123), c = RandomGenerator(seed: 124)
        let sa = (0..<16).map { _ in a.next() }, sb = (0..<16).map { _ in b.next() }, sc = (0..<16).map { _ in c.next() }
        XCTAssertEqual(sa, sb)
        XCTAssertNotEqual(sa, sc)
    }

    func testSeedingIsSplitMix64() {
        // SplitMix64's first outputs for seed 0 (Vigna's reference implementation).
        XCTAssertEqual(RandomGenerator(seed: 0).stateArray,
                       [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F, 0xF88B_B8A8_724C_81EC])
    }

    func testSavedStateResumesTheSequence() {
        var g = RandomGenerator(seed: 5)
        for _ in 0..<10 { _ = g.next() }
        var resumed = RandomGenerator(state: g.stateArray)
        XCTAssertEqual(resumed, g)
        XCTAssertEqual((0..<8).map { _ in resumed.next() }, (0..<8).map { _ in g.next() })
    }

    func testUniformDrawsStayInTheirRange() {
        var g = RandomGenerator(seed: 9)
        for _ in 0..<10_000 {
            let f = g.nextFloat(), d = g.nextDouble(), u = g.uniform(-2, 3), i = g.int(below: 7)
            XCTAssertTrue(f >= 0 && f < 1)
            XCTAssertTrue(d >= 0 && d < 1)
            XCTAssertTrue(u >= -2 && u < 3)
            XCTAssertTrue(i >= 0 && i < 7)
        }
    }

    func testNormalDrawsHaveMeanZeroAndVarianceOne() {
        var g = RandomGenerator(seed: 11)
        let n = 100_000
        let v = (0..<n).map { _ in g.normal() }
        let mean = v.reduce(0, +) / Double(n)
        let variance = v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
        XCTAssertEqual(mean, 0, accuracy: 0.02)  // ~6 standard errors
        XCTAssertEqual(variance, 1, accuracy: 0.03)
    }

    func testShuffleIsASeededPermutation() {
        var g1 = RandomGenerator(seed: 3), g2 = RandomGenerator(seed: 3)
        var a = Array(0..<50), b = Array(0..<50)
        g1.shuffle(&a)
        g2.shuffle(&b)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, Array(0..<50))
        XCTAssertEqual(a.sorted(), Array(0..<50))
        var one = [42]
        g1.shuffle(&one)
        XCTAssertEqual(one, [42])
    }

    func testDefaultRandomIsReseedable() {
        let saved = DefaultRandom.generator
        defer { DefaultRandom.generator = saved }
        DefaultRandom.seed(77)
        XCTAssertEqual(DefaultRandom.generator, RandomGenerator(seed: 77))
    }
}
