import XCTest
@testable import CycleTimeCore
import TestSupport

/// Runs `f` on fresh leaf copies of `inputs`, back-propagates `gout`, and returns (out, grads).
func runWithGrad(_ inputs: [Tensor], _ gout: Tensor, _ f: ([Tensor]) -> Tensor) -> (Tensor, [Tensor?]) {
    let leaves = inputs.map { $0.clone().requiringGrad() }
    let out = f(leaves)
    out.backward(gout)
    return (out, leaves.map { $0.grad })
}

final class SamplingTests: XCTestCase {
    func testAffineGridMatchesPyTorch() throws {
        let fx = try Fixtures.load("sampling")
        for ac in [true, false] {
            let k = "affine.ac\(ac ? 1 : 0)"
            let (out, g) = runWithGrad([fx.t("affine.theta")], fx.t(k + ".gout")) { F.affineGrid($0[0], size: [2, 3, 4, 5], alignCorners: ac) }
            assertClose(out, fx.t(k + ".out"), k)
            assertClose(g[0]!, fx.t(k + ".dtheta"), rtol: 1e-5, atol: 1e-5, k)
        }
    }

    func testGridSampleMatchesPyTorch() throws {
        let fx = try Fixtures.load("sampling")
        for mode in [InterpolationMode.bilinear, .nearest] {
            for ac in [true, false] {
                let k = "gs.\(mode.rawValue).ac\(ac ? 1 : 0)"
                let (out, g) = runWithGrad([fx.t("gs.x"), fx.t("gs.grid")], fx.t(k + ".gout")) {
                    F.gridSample($0[0], grid: $0[1], mode: mode, alignCorners: ac)
                }
                assertClose(out, fx.t(k + ".out"), k)
                assertClose(g[0]!, fx.t(k + ".dx"), rtol: 1e-5, atol: 1e-5, k + " dx")
                assertClose(g[1]!, fx.t(k + ".dgrid"), rtol: 1e-4, atol: 1e-4, k + " dgrid")
            }
        }
        // Some points sample outside the input (the fixture's grid leaves [-1, 1]).
        let grid = fx.t("gs.grid")
        XCTAssert(grid.array.contains { abs($0) > 1.05 })
    }

    func testInterpolateMatchesPyTorch() throws {
        let fx = try Fixtures.load("sampling")
        let cases: [(InterpolationMode, Bool, [Int]?, [Float]?)] = [
            (.nearest, false, [8, 9], nil), (.nearest, false, [3, 4], nil), (.nearest, false, [10, 12], nil),
            (.nearest, false, nil, [1.5, 0.75]), (.nearest, false, nil, [2, 2]), (.nearest, false, nil, [0.5, 0.5]),
            (.bilinear, true, [8, 9], nil), (.bilinear, false, [8, 9], nil),
            (.bilinear, true, [3, 4], nil), (.bilinear, false, [3, 4], nil),
            (.bilinear, false, nil, [1.5, 0.75]), (.bilinear, true, nil, [1.5, 0.75]),
            (.bilinear, false, nil, [2, 2]), (.bilinear, false, [1, 1], nil), (.bilinear, true, [1, 1], nil),
        ]
        for (i, (mode, ac, size, sf)) in cases.enumerated() {
            let k = "interp.\(i)"
            let (out, g) = runWithGrad([fx.t("interp.x")], fx.t(k + ".gout")) {
                F.interpolate($0[0], size: size, scaleFactor: sf, mode: mode, alignCorners: ac)
            }
            assertClose(out, fx.t(k + ".out"), k)
            assertClose(g[0]!, fx.t(k + ".dx"), rtol: 1e-5, atol: 1e-5, k + " dx")
        }
    }

    func testAffineGridGradcheck() {
        for ac in [true, false] {
            gradcheck([randn([2, 2, 3], seed: 3)]) { F.affineGrid($0[0], size: [2, 1, 3, 4], alignCorners: ac) }
        }
    }

    /// A grid whose points sit at pixel fractions in [0.25, 0.75] (away from the bilinear kinks),
    /// including points outside the input, for gradient checks w.r.t. the grid.
    func kinkFreeGrid(n: Int, ho: Int, wo: Int, h: Int, w: Int, alignCorners: Bool, seed: UInt64) -> Tensor {
        var rng = RandomGenerator(seed: seed)
        var v: [Float] = []
        for _ in 0..<(n * ho * wo) {
            for size in [w, h] {
                let pix = Float(rng.int(below: size + 2) - 1) + Float(rng.uniform(0.25, 0.75))  // -1 ..< size + 1
                let c = alignCorners ? pix * 2 / Float(size - 1) - 1 : (2 * pix + 1) / Float(size) - 1
                v.append(c)
            }
        }
        return Tensor(v, shape: [n, ho, wo, 2], requiresGrad: true)
    }

    func testGridSampleGradcheck() {
        for ac in [true, false] {
            let x = randn([2, 3, 4, 5], seed: 11)
            let grid = kinkFreeGrid(n: 2, ho: 3, wo: 4, h: 4, w: 5, alignCorners: ac, seed: 12)
            // Step 1e-3 in grid units is < 0.01 pixel, far from the kinks at integer pixels.
            gradcheck([x, grid], eps: 1e-3, rtol: 2e-2, atol: 2e-3) { F.gridSample($0[0], grid: $0[1], mode: .bilinear, alignCorners: ac) }
            let g2 = kinkFreeGrid(n: 2, ho: 3, wo: 4, h: 4, w: 5, alignCorners: ac, seed: 13)
            g2.requiresGrad = false
            gradcheck([randn([2, 3, 4, 5], seed: 14), g2]) { F.gridSample($0[0], grid: $0[1], mode: .nearest, alignCorners: ac) }
        }
    }

    func testInterpolateGradcheck() {
        for (size, sf) in [([7, 9] as [Int]?, nil as [Float]?), ([3, 2], nil), (nil, [1.5, 0.5])] {
            gradcheck([randn([2, 2, 4, 5], seed: 21)]) { F.interpolate($0[0], size: size, scaleFactor: sf, mode: .nearest) }
            for ac in [true, false] {
                gradcheck([randn([2, 2, 4, 5], seed: 22)]) {
                    F.interpolate($0[0], size: size, scaleFactor: sf, mode: .bilinear, alignCorners: ac)
                }
            }
        }
    }

    /// Large batches and grids of more than one block (256 points) take other parallel
    /// partitions; results must equal those of each sample's half-grids computed alone.
    func testGridSampleLargeBatchMatchesPerSample() {
        let n = 9, c = 3, h = 6, w = 7, ho = 20, wo = 15, half = ho / 2
        let x = randn([n, c, h, w], seed: 31, requiresGrad: false)
        let grid = randn([n, ho, wo, 2], seed: 32, requiresGrad: false, scale: 0.7)
        let gout = randn([n, c, ho, wo], seed: 33, requiresGrad: false)
        func slice(_ t: Tensor, _ b: Int, rows: Range<Int>) -> Tensor {
            // t[b, :, rows] for [N, C, Ho, Wo], or t[b, rows] for [N, Ho, Wo, 2] (pass c = 1, inner = wo * 2).
            let s = t.shape
            let cc = s[3] == 2 ? 1 : s[1], rr = s[3] == 2 ? s[1] : s[2], inner = s[3] == 2 ? s[2] * 2 : s[3]
            var v: [Float] = []
            for ch in 0..<cc { for r in rows { for j in 0..<inner { v.append(t.data[((b * cc + ch) * rr + r) * inner + j]) } } }
            return Tensor(v, shape: s[3] == 2 ? [1, rows.count, s[2], 2] : [1, cc, rows.count, s[3]])
        }
        for mode in [InterpolationMode.bilinear, .nearest] {
            let (out, g) = runWithGrad([x, grid], gout) { F.gridSample($0[0], grid: $0[1], mode: mode, alignCorners: false) }
            for b in 0..<n {
                let xb = Tensor(Array(x.array[(b * c * h * w)..<((b + 1) * c * h * w)]), shape: [1, c, h, w])
                var gxSum = Tensor.zeros([1, c, h, w])
                for rows in [0..<half, half..<ho] {
                    let (ob, gbs) = runWithGrad([xb, slice(grid, b, rows: rows)], slice(gout, b, rows: rows)) {
                        F.gridSample($0[0], grid: $0[1], mode: mode, alignCorners: false)
                    }
                    XCTAssertEqual(slice(out, b, rows: rows).array, ob.array)
                    XCTAssertEqual(slice(g[1]!, b, rows: rows).array, gbs[1]!.array)
                    gxSum = gxSum + gbs[0]!
                }
                assertClose(Tensor(Array(g[0]!.array[(b * c * h * w)..<((b + 1) * c * h * w)]), shape: [1, c, h, w]), gxSum, rtol: 1e-5, atol: 1e-5)
            }
        }
    }

    func testIdentityGridReproducesInput() {
        let x = randn([2, 3, 5, 4], seed: 41, requiresGrad: false)
        let theta = Tensor([1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0], shape: [2, 2, 3])
        for ac in [true, false] {
            let grid = F.affineGrid(theta, size: [2, 3, 5, 4], alignCorners: ac)
            assertClose(F.gridSample(x, grid: grid, mode: .bilinear, alignCorners: ac), x, rtol: 1e-5, atol: 1e-5)
            assertClose(F.gridSample(x, grid: grid, mode: .nearest, alignCorners: ac), x)
        }
    }
}

/// Runs `f` (forward and backward) with one thread and with the default thread count on inputs
/// large enough for the parallel paths; values and gradients must be identical.
func assertParallelMatchesSerial(_ inputs: [Tensor], seed: UInt64 = 99, _ f: ([Tensor]) -> Tensor,
                                 file: StaticString = #filePath, line: UInt = #line) {
    let saved = Parallel.threadCount
    defer { Parallel.threadCount = saved }
    var results: [(Tensor, [Tensor?])] = []
    for threads in [1, max(2, saved)] {
        Parallel.threadCount = threads
        let probe = noGrad { f(inputs) }
        let gout = randn(probe.shape, seed: seed, requiresGrad: false)
        results.append(runWithGrad(inputs, gout, f))
    }
    XCTAssertEqual(results[0].0.array, results[1].0.array, "values", file: file, line: line)
    for (a, b) in zip(results[0].1, results[1].1) {
        XCTAssertEqual(a?.array ?? [], b?.array ?? [], "gradients", file: file, line: line)
    }
}

extension SamplingTests {
    func testParallelPathsMatchSerial() {
        let x = randn([3, 16, 20, 24], seed: 51, requiresGrad: false)
        let grid = randn([3, 18, 22, 2], seed: 52, requiresGrad: false, scale: 0.7)
        for mode in [InterpolationMode.bilinear, .nearest] {
            assertParallelMatchesSerial([x, grid]) { F.gridSample($0[0], grid: $0[1], mode: mode, alignCorners: true) }
            assertParallelMatchesSerial([x]) { F.interpolate($0[0], size: [37, 15], mode: mode, alignCorners: false) }
        }
        assertParallelMatchesSerial([x]) { F.interpolate($0[0], scaleFactor: [2], mode: .bilinear, alignCorners: true) }
        let theta = randn([40, 2, 3], seed: 53, requiresGrad: false)
        assertParallelMatchesSerial([theta]) { F.affineGrid($0[0], size: [40, 1, 30, 30], alignCorners: false) }
    }
}
