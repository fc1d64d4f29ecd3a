import XCTest
@testable import CycleTimeNN
import TestSupport

/// A model declared the way users write one: parameters, a buffer, children, an optional child,
/// an array of children and a Sequential.
final class ToyNet: Module {
    @Parameter var scale: Tensor
    @Buffer var steps: Tensor
    @Parameter var absent: Tensor?
    let conv: Conv2d
    let bn: BatchNorm2d
    let head: Sequential
    let extra: Linear?
    let missing: Linear?
    let blocks: [Linear]

    init(_ g: inout RandomGenerator) {
        scale = Tensor.ones([1])
        steps = Tensor.zeros([])
        absent = nil
        conv = Conv2d(2, 3, kernelSize: 3, generator: &g)
        bn = BatchNorm2d(3)
        head = Sequential(ReLU(), Linear(3, 4, generator: &g), Identity(), Linear(4, 2, bias: false, generator: &g))
        extra = Linear(2, 2, generator: &g)
        missing = nil
        blocks = [Linear(1, 1, generator: &g), Linear(1, 2, generator: &g)]
        super.init()
    }
}

final class ModuleTests: XCTestCase {
    func makeNet() -> ToyNet {
        var g = RandomGenerator(seed: 1)
        return ToyNet(&g)
    }

    func testKeysOrderAndKinds() {
        let net = makeNet()
        XCTAssertEqual(net.stateDictKeys(), [
            "scale", "steps",
            "conv.weight", "conv.bias",
            "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
            "head.1.weight", "head.1.bias", "head.3.weight",
            "extra.weight", "extra.bias",
            "blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "blocks.1.bias",
        ])
        XCTAssertEqual(net.namedParameters().map { $0.0 }, [
            "scale", "conv.weight", "conv.bias", "bn.weight", "bn.bias",
            "head.1.weight", "head.1.bias", "head.3.weight", "extra.weight", "extra.bias",
            "blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "blocks.1.bias",
        ])
        XCTAssertEqual(net.namedBuffers().map { $0.0 }, ["steps", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"])
        XCTAssertTrue(net.parameters().allSatisfy { $0.requiresGrad })
        XCTAssertTrue(net.namedBuffers().allSatisfy { !$0.1.requiresGrad })
        XCTAssertEqual(net.namedModules().map { $0.0 }, ["", "conv", "bn", "head", "head.0", "head.1", "head.2", "head.3", "extra", "blocks.0", "blocks.1"])
        XCTAssertEqual(net.bn.numBatchesTracked!.shape, [])
        XCTAssertEqual(net.conv.weight.shape, [3, 2, 3, 3])
        XCTAssertEqual(net.parameterCount, 1 + 54 + 3 + 3 + 3 + 12 + 4 + 8 + 4 + 2 + 1 + 1 + 2 + 2)
        // The state dict shares storage with the module.
        let sd = net.stateDict()
        XCTAssertEqual(sd.count, 18)
        XCTAssertTrue(sd["conv.weight"]!.storage === net.conv.weight.storage)
        XCTAssertEqual(sd["bn.running_var"]!.array, [1, 1, 1])
    }

    func testSharedParameterListedOnce() {
        var g = RandomGenerator(seed: 2)
        let l = Linear(2, 2, generator: &g)
        let s = Sequential(l, l)
        XCTAssertEqual(s.namedParameters().map { $0.0 }, ["0.weight", "0.bias"])
    }

    func testTrainEvalRecursive() {
        let net = makeNet()
        XCTAssertTrue(net.modules().allSatisfy { $0.training })
        net.eval()
        XCTAssertTrue(net.modules().allSatisfy { !$0.training })
        net.head.train()
        XCTAssertTrue(net.head.modules().allSatisfy { $0.training })
        XCTAssertFalse(net.bn.training)
        net.train()
        XCTAssertTrue(net.modules().allSatisfy { $0.training })
    }

    func testFreezeUnfreeze() {
        let net = makeNet()
        net.freeze(["conv", "head.1"])
        let frozen = net.namedParameters().filter { !$0.1.requiresGrad }.map { $0.0 }
        XCTAssertEqual(frozen, ["conv.weight", "conv.bias", "head.1.weight", "head.1.bias"])
        XCTAssertEqual(net.trainableParameters().count, net.parameters().count - 4)
        // A prefix matches whole components only: "block" does not match "blocks.0".
        net.unfreeze().freeze(["block"])
        XCTAssertTrue(net.parameters().allSatisfy { $0.requiresGrad })
        net.freeze()
        XCTAssertTrue(net.parameters().allSatisfy { !$0.requiresGrad })
        net.unfreeze(["bn.weight"])
        XCTAssertEqual(net.namedParameters().filter { $0.1.requiresGrad }.map { $0.0 }, ["bn.weight"])
        net.unfreeze()
        XCTAssertEqual(net.trainableParameters().count, net.parameters().count)
    }

    func testZeroGrad() {
        let net = makeNet()
        for p in net.parameters() { p.grad = Tensor.ones(p.shape) }
        net.zeroGrad()
        XCTAssertTrue(net.parameters().allSatisfy { $0.grad == nil })
    }

    func testLoadStateDictRoundTripKeepsIdentity() throws {
        let a = makeNet()
        var g = RandomGenerator(seed: 99)
        let b = ToyNet(&g)
        XCTAssertNotEqual(a.conv.weight.array, b.conv.weight.array)
        a.bn.runningMean!.fill(0.5)
        a.bn.numBatchesTracked!.fill(12)
        let weightObject = b.conv.weight
        let result = try b.loadStateDict(a.stateDict())
        XCTAssertEqual(result.missingKeys, [])
        XCTAssertEqual(result.unexpectedKeys, [])
        XCTAssertTrue(b.conv.weight === weightObject)
        XCTAssertTrue(b.conv.weight.requiresGrad)
        for (k, t) in a.stateDict() { XCTAssertEqual(b.stateDict()[k]!.array, t.array, k) }
        XCTAssertEqual(b.bn.numBatchesTracked!.item(), 12)
    }

    func testStrictLoadReportsMissingAndUnexpected() {
        let net = makeNet()
        var sd = makeNet().stateDict()
        sd["conv.weight"] = nil
        sd["head.3.weight"] = nil
        sd["fc.weight"] = Tensor.zeros([2])
        let before = net.extra!.weight.array
        sd["extra.weight"] = Tensor.zeros([2, 2])
        XCTAssertThrowsError(try net.loadStateDict(sd)) { error in
            guard let e = error as? StateDictError else { return XCTFail("wrong error \(error)") }
            XCTAssertEqual(e.missingKeys, ["conv.weight", "head.3.weight"])
            XCTAssertEqual(e.unexpectedKeys, ["fc.weight"])
            XCTAssertTrue(e.description.contains("Missing key(s) in state dict: \"conv.weight\", \"head.3.weight\""), e.description)
            XCTAssertTrue(e.description.contains("Unexpected key(s) in state dict: \"fc.weight\""), e.description)
        }
        // Nothing was modified.
        XCTAssertEqual(net.extra!.weight.array, before)
        // Non-strict loads what fits and reports the rest.
        let r = try? net.loadStateDict(sd, strict: false)
        XCTAssertEqual(r?.missingKeys, ["conv.weight", "head.3.weight"])
        XCTAssertEqual(r?.unexpectedKeys, ["fc.weight"])
        XCTAssertEqual(net.extra!.weight.array, [0, 0, 0, 0])
    }

    func testShapeMismatchNamesKeyAndBothShapes() {
        let net = makeNet()
        var sd = net.stateDict()
        sd["head.1.weight"] = Tensor.zeros([5, 3])
        for strict in [true, false] {
            XCTAssertThrowsError(try net.loadStateDict(sd, strict: strict)) { error in
                guard let e = error as? StateDictError else { return XCTFail("wrong error \(error)") }
                XCTAssertEqual(e.shapeMismatches, [.init(key: "head.1.weight", checkpointShape: [5, 3], modelShape: [4, 3])])
                XCTAssertTrue(e.description.contains("size mismatch for head.1.weight: copying a param with shape [5, 3] from checkpoint, the shape in current model is [4, 3]"), e.description)
            }
        }
    }

    func testMissingNumBatchesTrackedIsTolerated() throws {
        let net = makeNet()
        var sd = makeNet().stateDict()
        sd["bn.num_batches_tracked"] = nil
        let r = try net.loadStateDict(sd)
        XCTAssertEqual(r.missingKeys, [])
    }

    func testReplacingAParameterKeepsItTrainable() {
        var g = RandomGenerator(seed: 3)
        let l = Linear(2, 3, generator: &g)
        l.weight = Tensor.zeros([3, 2])
        XCTAssertTrue(l.weight.requiresGrad)
        XCTAssertEqual(l.stateDict()["weight"]!.array, [Float](repeating: 0, count: 6))
        l.bias = nil
        XCTAssertEqual(l.stateDictKeys(), ["weight"])
    }
}
