import XCTest
@testable import CycleTimeDetection
import CycleTimeCore
import CycleTimeNN
import TestSupport

final class FPNTests: XCTestCase {
    /// One output per input at its resolution, then "pool": every second position of the coarsest
    /// output (max_pool2d kernel 1, stride 2); keys inner_blocks.N.0.* and layer_blocks.N.0.*.
    func testPyramidShapesPoolLevelAndKeys() {
        var g = RandomGenerator(seed: 4)
        let fpn = FeaturePyramidNetwork(inChannels: [4, 8], outChannels: 6, generator: &g)
        XCTAssertEqual(fpn.stateDictKeys(), ["inner_blocks.0.0.weight", "inner_blocks.0.0.bias", "inner_blocks.1.0.weight", "inner_blocks.1.0.bias",
                                             "layer_blocks.0.0.weight", "layer_blocks.0.0.bias", "layer_blocks.1.0.weight", "layer_blocks.1.0.bias"])
        let out = fpn.pyramid([randn([1, 4, 10, 12], seed: 1, requiresGrad: false), randn([1, 8, 5, 5], seed: 2, requiresGrad: false)])
        XCTAssertEqual(out.map(\.shape), [[1, 6, 10, 12], [1, 6, 5, 5], [1, 6, 3, 3]])
        for y in 0..<3 { for x in 0..<3 { XCTAssertEqual(out[2][0, 1, y, x], out[1][0, 1, 2 * y, 2 * x]) } }
    }
}
