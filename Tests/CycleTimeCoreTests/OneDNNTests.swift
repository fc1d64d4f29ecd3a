import Foundation
import XCTest
@testable import CycleTimeCore
import TestSupport
import CDNNL

final class OneDNNTests: XCTestCase {
    /// A failing oneDNN call is thrown as an error naming the call, the op and its shapes.
    func testAFailingCallIsAnErrorNamingTheOpAndShapes() throws {
        var g = ConvGeometry()
        g.n = 1; g.cin = 2; g.h = 5; g.w = 5; g.cout = 3; g.kh = 3; g.kw = 3
        g.computeOutput()
        g.ho = 99  // inconsistent with the input: oneDNN refuses the descriptor
        let x = Tensor.zeros([1, 2, 5, 5]), w = Tensor.zeros([3, 2, 3, 3]), y = Tensor.zeros([1, 3, 99, 3])
        XCTAssertThrowsError(try OneDNNConv.forward(x.data, w.data, nil, g, y.data, precision: .fp32)) { error in
            guard let e = error as? OneDNNError else { return XCTFail("not a OneDNNError: \(error)") }
            XCTAssertEqual(e.call, "dnnl_dilated_convolution_forward_desc_init")
            XCTAssertEqual(e.status, "invalid arguments")
            XCTAssertTrue(e.description.contains("conv2d forward fp32 x[1,2,5,5] w[3,2,3,3]"), e.description)
        }
    }

    /// Primitive descriptors are built once per op, precision and shape.
    func testPrimitivesAreCachedByShape() throws {
        let dnn = try OneDNN.shared()
        let a = randn([2, 3, 7], seed: 1, requiresGrad: false), b = randn([2, 7, 5], seed: 2, requiresGrad: false)
        let c = Tensor(uninitialized: [2, 3, 5])
        func run(_ p: Precision) throws {
            try OneDNNMatmul.run(a.data, MatmulOperand(batch: 2, rows: 3, cols: 7), b.data, MatmulOperand(batch: 2, rows: 7, cols: 5), c.data, precision: p)
        }
        try run(.fp32)
        let before = dnn.cachedCount
        try run(.fp32)
        XCTAssertEqual(dnn.cachedCount, before, "the same shape reuses its primitive")
        if OneDNN.hasNativeBF16 {
            try run(.bf16)
            XCTAssertEqual(dnn.cachedCount, before + 1, "another precision is another primitive")
        }
    }

    /// The copies a primitive reads and writes in its own layout are tensor storage, alive only
    /// during the call: they count in StorageStats (and come from its size-keyed cache).
    func testReorderedCopiesAreTensorStorageAliveOnlyDuringTheCall() throws {
        var g = ConvGeometry()
        g.n = 2; g.cin = 16; g.h = 40; g.w = 40; g.cout = 16; g.kh = 3; g.kw = 3; g.ph = 1; g.pw = 1
        g.computeOutput()
        let x = randn([2, 16, 40, 40], seed: 1, requiresGrad: false), w = randn([16, 16, 3, 3], seed: 2, requiresGrad: false)
        let y = Tensor(uninitialized: [2, 16, 40, 40])
        try OneDNNConv.forward(x.data, w.data, nil, g, y.data, precision: .fp32)  // builds the primitive
        struct NotCached: Error {}
        let prim = try OneDNN.shared().primitive(g.dnnlOp("forward", .fp32, volumetric: false)) { throw NotCached() }
        let reordered = prim.arguments.filter { $0.reorder != nil }.map { dnnl_memory_desc_get_size(&$0.inner) }
        guard !reordered.isEmpty else { throw XCTSkip("oneDNN runs this convolution on our plain layout here (\(prim.implementation))") }
        let live = StorageStats.liveBytes
        StorageStats.resetPeak()
        try OneDNNConv.forward(x.data, w.data, nil, g, y.data, precision: .fp32)
        XCTAssertGreaterThanOrEqual(StorageStats.peakBytes - live, reordered.reduce(0, +), "the copies are tensor storage")
        XCTAssertEqual(StorageStats.liveBytes, live, "and are freed when the call returns")
    }

    /// oneDNN's view of the CPU agrees with the kernel's flags.
    func testNativeBF16AgreesWithCPUFlags() throws {
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        guard !info.isEmpty else { throw XCTSkip("no /proc/cpuinfo") }
        let flag = info.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").contains("avx512_bf16") ?? false
        XCTAssertEqual(OneDNN.hasNativeBF16, flag, "effective ISA \(OneDNN.effectiveISA)")
    }
}
