import Foundation
import XCTest
@testable import CycleTimeCore
import TestSupport

/// Winograd F(2x2, 3x3) (Ops/Winograd.swift). Its agreement with im2col and a float64 reference
/// on many shapes is checked in ConvolutionTests.testWinogradAndIm2colStayWithinTheirRoundingBoundOfAFloat64Reference.
final class WinogradTests: XCTestCase {
    func testWinogradAppliesOnlyToUngroupedStride1Dilation1ThreeByThreeConvs() {
        let g = ConvGeometry.conv2d3x3(n: 1, cin: 4, cout: 4, h: 6, w: 6, pad: [1, 1])
        XCTAssertTrue(winogradApplies(g))
        var strided = g; strided.sh = 2; strided.computeOutput()
        var dilated = g; dilated.dh = 2; dilated.computeOutput()
        var grouped = g; grouped.groups = 2
        var fiveByFive = g; fiveByFive.kh = 5; fiveByFive.kw = 5; fiveByFive.computeOutput()
        for (name, geometry) in [("stride 2", strided), ("dilation 2", dilated), ("groups 2", grouped), ("5x5", fiveByFive)] {
            XCTAssertFalse(winogradApplies(geometry), name)
        }
    }

    /// Rounding error of Winograd vs im2col against a float64 direct convolution (relative L2).
    func testWinogradAccuracy() {
        let n = 2, cin = 256, cout = 16, h = 10, w = 9
        let x = randn([n, cin, h, w], seed: 31, requiresGrad: false), wt = randn([cout, cin, 3, 3], seed: 32, requiresGrad: false, scale: 0.1)
        // Post-ReLU-like input (non-negative, non-zero mean) as in a network.
        let xa = x.array.map { Swift.abs($0) }, wa = wt.array
        x.data.update(from: xa, count: xa.count)
        var ref = [Double](repeating: 0, count: n * cout * h * w)
        for b in 0..<n { for co in 0..<cout { for oy in 0..<h { for ox in 0..<w {
            var acc = 0.0
            for ci in 0..<cin { for ky in 0..<3 { for kx in 0..<3 {
                let iy = oy + ky - 1, ix = ox + kx - 1
                if iy < 0 || iy >= h || ix < 0 || ix >= w { continue }
                acc += Double(xa[((b * cin + ci) * h + iy) * w + ix]) * Double(wa[((co * cin + ci) * 3 + ky) * 3 + kx])
            } } }
            ref[((b * cout + co) * h + oy) * w + ox] = acc
        } } } }
        func relErr(_ y: [Float]) -> Double {
            var e = 0.0, r = 0.0
            for i in 0..<ref.count {
                let d = Double(y[i]) - ref[i]
                e += d * d
                r += ref[i] * ref[i]
            }
            return (e / r).squareRoot()
        }
        let eIm2col = ConvolutionPolicy.withPolicy(.current.with { $0.winograd = false }) {
            relErr(F.conv2d(x, weight: wt, padding: [1, 1]).array)
        }
        let eWino = ConvolutionPolicy.withPolicy(.current.with { $0.winograd = true }) {
            relErr(F.conv2d(x, weight: wt, padding: [1, 1]).array)
        }
        print("conv 3x3 256->16 relative L2 error vs float64: im2col \(eIm2col), winograd \(eWino)")
        XCTAssertLessThan(eWino, 1e-6)
    }

    func testGradcheckWinograd() {
        let saved = ConvolutionPolicy.current
        defer { ConvolutionPolicy.current = saved }
        ConvolutionPolicy.current.winograd = true
        gradcheck([randn([2, 4, 5, 6], seed: 21), randn([5, 4, 3, 3], seed: 22, scale: 0.5), randn([5], seed: 23)]) { t in
            F.conv2d(t[0], weight: t[1], bias: t[2], padding: [1, 1])
        }
        gradcheck([randn([1, 4, 6, 5], seed: 24), randn([4, 4, 3, 3], seed: 25, scale: 0.5)]) { t in
            F.conv2d(t[0], weight: t[1], padding: [2, 0])
        }
    }

}
