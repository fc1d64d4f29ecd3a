import CycleTimeCore
import CycleTimeModels
import CycleTimeNN
import Foundation
import TestSupport
import XCTest

@testable import CycleTimeDetection

final class AVADetectorTests: XCTestCase {
    func tinyConfig(_ kind: AVABackboneKind, context: Bool = false) -> AVADetectorConfig {
        var c = AVADetectorConfig()
        c.backbone = kind; c.depth = 18; c.lastStage = "layer2"; c.classes = 3; c.context = context
        return c
    }

    /// Both backbones give logits [K, classes + 1] for boxes spread over the batch; the context
    /// feature doubles the classifier's input; the same seed gives the same detector.
    func testBackbonesLogitsShapesAndSeeding() throws {
        let clips = randn([2, 3, 4, 32, 32], seed: 1, requiresGrad: false)
        let boxes = [[AVABox(0.1, 0.1, 0.6, 0.9)], [AVABox(0, 0, 1, 1), AVABox(0.5, 0.5, 0.9, 0.9)]]
        for kind in [AVABackboneKind.twoD, .slowonly] {
            for context in [false, true] {
                var g = RandomGenerator(seed: 3)
                let d = try AVADetector(config: tinyConfig(kind, context: context), generator: &g)
                d.eval()
                let l = d.logits(clips, boxes: boxes)
                XCTAssertEqual(l.shape, [3, 4], "\(kind)")
                XCTAssertEqual(d.roi_head!.fc_cls.weight.shape, [4, 128 * (context ? 2 : 1)])
                XCTAssertEqual(d.outputStride, 8)
                var g2 = RandomGenerator(seed: 3)
                let d2 = try AVADetector(config: tinyConfig(kind, context: context), generator: &g2)
                d2.eval()
                assertClose(d2.logits(clips, boxes: boxes), l, rtol: 0, atol: 0)
            }
        }
        var g = RandomGenerator(seed: 0)
        XCTAssertTrue(try AVADetector(config: tinyConfig(.twoD), generator: &g).stateDictKeys().contains("backbone.encoder.layer1.0.conv1.weight"))
        XCTAssertThrowsError(try AVADetector(config: tinyConfig(.slowfast), generator: &g)) { e in
            XCTAssertTrue("\(e)".contains("model.last_stage must be layer4"), "\(e)")
        }
    }

    /// The SlowFast backbone in the detector: logits for a fast-rate clip, the slow pathway
    /// inflated from a CycleTime checkpoint's 2D encoder, the fast pathway left at its init.
    func testSlowFastDetector() throws {
        var g = RandomGenerator(seed: 4)
        let enc = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer4"), generator: &g)
        let dir = temporaryDirectory("slowfast")
        var prefixed: [String: Tensor] = [:]
        for (k, v) in enc.stateDict() { prefixed["encoder." + k] = v }
        try SafeTensors.write(prefixed, to: dir + "/ct.safetensors")
        var c = tinyConfig(.slowfast); c.lastStage = "layer4"; c.alpha = 2
        var g1 = RandomGenerator(seed: 5)
        let d = try AVADetector(config: c, generator: &g1)
        let fastBefore = d.stateDict()["backbone.fast_path.conv1.weight"]!.clone()
        try d.loadEncoder(from: dir + "/ct.safetensors")
        let w2 = enc.stateDict()["conv1.weight"]!, w3 = d.stateDict()["backbone.slow_path.conv1.weight"]!
        XCTAssertEqual(w3.shape, [64, 3, 1, 7, 7])
        assertClose(w3.reshaped([64, 3, 7, 7]), w2, rtol: 0, atol: 0)
        assertClose(d.stateDict()["backbone.fast_path.conv1.weight"]!, fastBefore, rtol: 0, atol: 0)
        d.eval()
        let l = d.logits(randn([1, 3, 4, 32, 32], seed: 2, requiresGrad: false), boxes: [[AVABox(0.1, 0.2, 0.7, 0.9)]])
        XCTAssertEqual(l.shape, [1, 4])
        XCTAssertEqual(d.outputStride, 16)
        XCTAssertEqual(d.featureChannels, 512 + 64)
        c.alpha = 0
        var g2 = RandomGenerator(seed: 5)
        XCTAssertThrowsError(try AVADetector(config: c, generator: &g2)) { XCTAssertTrue("\($0)".contains("alpha"), "\($0)") }
    }

    /// Encoder weights from a CycleTime checkpoint ('encoder.' keys) and from torchvision keys; the
    /// SlowOnly backbone inflates them (kernel repeated over time / kt); missing keys are errors.
    func testLoadEncoderFromCheckpointAndTorchvision() throws {
        var g = RandomGenerator(seed: 9)
        let enc = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer2"), generator: &g)
        let dir = temporaryDirectory("encoder")
        var prefixed: [String: Tensor] = ["head.weight": Tensor.zeros([2, 2])]
        for (k, v) in enc.stateDict() { prefixed["encoder." + k] = v }
        try SafeTensors.write(prefixed, to: dir + "/ct.safetensors")
        try SafeTensors.write(enc.stateDict(), to: dir + "/tv.safetensors")
        for file in ["ct", "tv"] {
            var g1 = RandomGenerator(seed: 1)
            let d2 = try AVADetector(config: tinyConfig(.twoD), generator: &g1)
            try d2.loadEncoder(from: dir + "/\(file).safetensors")
            assertClose(d2.stateDict()["backbone.encoder.layer2.1.conv2.weight"]!, enc.stateDict()["layer2.1.conv2.weight"]!, rtol: 0, atol: 0)
            var g2 = RandomGenerator(seed: 1)
            let d3 = try AVADetector(config: tinyConfig(.slowonly), generator: &g2)
            try d3.loadEncoder(from: dir + "/\(file).safetensors")
            let w2 = enc.stateDict()["conv1.weight"]!, w3 = d3.stateDict()["backbone.conv1.weight"]!
            XCTAssertEqual(w3.shape, [64, 3, 1, 7, 7])
            assertClose(w3.reshaped([64, 3, 7, 7]), w2, rtol: 0, atol: 0)
        }
        var g3 = RandomGenerator(seed: 1)
        var c = tinyConfig(.twoD); c.lastStage = "layer4"
        let deep = try AVADetector(config: c, generator: &g3)
        XCTAssertThrowsError(try deep.loadEncoder(from: dir + "/ct.safetensors")) { e in
            XCTAssertTrue("\(e)".contains("lacks encoder key 'layer3."), "\(e)")
        }
        try SafeTensors.write(["x": Tensor.zeros([1])], to: dir + "/other.safetensors")
        XCTAssertThrowsError(try deep.loadEncoder(from: dir + "/other.safetensors")) { e in
            XCTAssertTrue("\(e)".contains("no encoder weights"), "\(e)")
        }
    }

    /// Another detector's checkpoint (`ava train`'s, keys under 'backbone.') gives the whole
    /// backbone, running statistics included, and leaves the heads (here another head) at their
    /// initialization; a differently configured backbone is an error naming the file.
    func testLoadBackboneFromDetectorCheckpoint() throws {
        var g = RandomGenerator(seed: 11)
        let trained = try AVADetector(config: tinyConfig(.twoD), generator: &g)
        let dir = temporaryDirectory("detector")
        var sd = trained.stateDict()
        sd["backbone.encoder.bn1.running_mean"] = Tensor.full([64], 0.25)
        sd["optimizer.state.0.exp_avg"] = Tensor.zeros([2])
        try SafeTensors.write(sd, metadata: ["objective": "ava"], to: dir + "/ava.safetensors")
        var c = tinyConfig(.twoD); c.head = .acrn
        var g1 = RandomGenerator(seed: 12)
        let d = try AVADetector(config: c, generator: &g1)
        let headBefore = d.stateDict().filter { !$0.key.hasPrefix("backbone.") }.mapValues { $0.clone() }
        try d.loadEncoder(from: dir + "/ava.safetensors")
        let after = d.stateDict()
        for (k, v) in sd where k.hasPrefix("backbone.") { assertClose(try XCTUnwrap(after[k], k), v, rtol: 0, atol: 0, k) }
        for (k, v) in headBefore { assertClose(try XCTUnwrap(after[k], k), v, rtol: 0, atol: 0, k) }
        var deeper = tinyConfig(.twoD); deeper.lastStage = "layer3"
        var g2 = RandomGenerator(seed: 12)
        XCTAssertThrowsError(try AVADetector(config: deeper, generator: &g2).loadEncoder(from: dir + "/ava.safetensors")) { e in
            XCTAssertTrue("\(e)".hasPrefix(dir + "/ava.safetensors: a detector checkpoint that does not fit the 2d backbone"), "\(e)")
        }
    }

    /// Frozen batch norm: running statistics stay, affine parameters get no gradient, even in training mode.
    func testFrozenBatchNorm() throws {
        var g = RandomGenerator(seed: 2)
        let d = try AVADetector(config: tinyConfig(.slowonly), generator: &g)
        d.train()
        d.freezeBatchNorm()
        let before = d.stateDict()["backbone.bn1.running_mean"]!.clone()
        let l = d.logits(randn([1, 3, 2, 32, 32], seed: 4, requiresGrad: false), boxes: [[AVABox(0.2, 0.2, 0.8, 0.8)]])
        l.sum().backward()
        assertClose(d.stateDict()["backbone.bn1.running_mean"]!, before, rtol: 0, atol: 0)
        XCTAssertNil(d.stateDict()["backbone.bn1.weight"]!.grad)
        XCTAssertNotNil(d.roi_head!.fc_cls.weight.grad)
        XCTAssertNotNil(d.namedParameters().first { $0.0 == "backbone.conv1.weight" }!.1.grad)
    }

    /// mmaction2's key names map onto ours (ConvModules, downsample, the head), laterals unchanged.
    func testMMAction2KeysMapOntoOurs() {
        XCTAssertEqual(MMAction2Layout.key("conv1.conv.weight"), "conv1.weight")
        XCTAssertEqual(MMAction2Layout.key("conv1.bn.running_var"), "bn1.running_var")
        XCTAssertEqual(MMAction2Layout.key("layer2.0.conv3.bn.weight"), "layer2.0.bn3.weight")
        XCTAssertEqual(MMAction2Layout.key("slow_path.layer1.0.downsample.conv.weight"), "slow_path.layer1.0.downsample.0.weight")
        XCTAssertEqual(MMAction2Layout.key("fast_path.layer3.0.downsample.bn.bias"), "fast_path.layer3.0.downsample.1.bias")
        XCTAssertEqual(MMAction2Layout.key("slow_path.conv1_lateral.conv.weight"), "slow_path.conv1_lateral.conv.weight")
        XCTAssertEqual(MMAction2Layout.key("slow_path.layer2_lateral.bn.weight"), "slow_path.layer2_lateral.bn.weight")
        XCTAssertEqual(MMAction2Layout.key("roi_head.bbox_head.fc_cls.weight"), "roi_head.fc_cls.weight")
        XCTAssertTrue(MMAction2Layout.matches(["backbone.layer1.0.conv1.conv.weight"]))
        XCTAssertFalse(MMAction2Layout.matches(["backbone.conv1.weight", "backbone.slow_path.conv1_lateral.conv.weight", "encoder.conv1.weight"]))
    }

    /// A state dict in mmaction2's layout (scripts/fixtures/mmaction2.py: its keys and shapes, hash
    /// weights) loads through `loadEncoder` (model.checkpoint) into the SlowOnly and SlowFast
    /// ResNet-18 backbones, which then give PyTorch's eval-mode output. Tolerance: 20 x the
    /// fixture's float32-vs-float64 error (float32 rounding, whichever kernels run).
    func testMMAction2CheckpointsLoadIntoTheBackbonesAndMatchPyTorch() throws {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: Fixtures.directory + "/mmaction2_manifest.json"))
        let manifest = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: [[Any]]])
        for (model, kind, xk, frames) in [("slowonly", AVABackboneKind.slowonly, 9201, 4), ("slowfast", .slowfast, 9202, 8)] {
            var sd: [String: Tensor] = [:]
            for (i, entry) in try XCTUnwrap(manifest[model]).enumerated() {
                let key = try XCTUnwrap(entry[0] as? String), shape = try XCTUnwrap(entry[1] as? [Int])
                let (o, sc): (Double, Double) = key.hasSuffix("running_mean") ? (0, 1e-4) : key.hasSuffix("running_var") ? (1, 4e-4)
                    : shape.count == 5 ? (0, (2.0 / Double(shape[1...].reduce(1, *))).squareRoot() / 577.0)
                    : key.hasSuffix("weight") ? (1, 3e-4) : (0, 1e-4)
                sd[key] = hashTensor(k: 50000 + i, shape: shape, offset: o, scale: sc)
            }
            sd["roi_head.bbox_head.fc_cls.weight"] = Tensor.zeros([81, 512])
            let path = temporaryDirectory("mmaction2-" + model) + "/mmaction2.safetensors"
            try SafeTensors.serialize(sd, metadata: [:]).write(to: URL(fileURLWithPath: path))
            var c = AVADetectorConfig()
            c.backbone = kind; c.depth = 18; c.alpha = 4; c.classes = 3
            var g = RandomGenerator(seed: 1)
            let det = try AVADetector(config: c, generator: &g)
            try det.loadEncoder(from: path)
            det.eval()
            let fx = try Fixtures.load("mmaction2_" + model)
            let out = noGrad { det.backbone(hashTensor(k: xk, shape: [1, 3, frames, 32, 32], offset: 0, scale: 1e-3)) }
            let tol = 20 * fx.t("f32_err").data[0]
            assertClose(out, fx.t("out"), rtol: 0, atol: tol, model)
            // A key missing is an error naming it.
            var partial = sd
            let dropped = try XCTUnwrap(sd.keys.sorted().first { $0.hasSuffix("layer3.1.conv2.bn.running_var") })
            partial.removeValue(forKey: dropped)
            try SafeTensors.serialize(partial, metadata: [:]).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try det.loadEncoder(from: path)) { XCTAssertTrue("\($0)".contains("layer3.1.bn2.running_var"), "\($0)") }
        }
    }

    /// model.head acrn: the relation head between RoIAlign and the classifier, under mmaction2's
    /// `shared_head` names; logits for every box; refused with the context feature.
    func testACRNHeadDetector() throws {
        var c = tinyConfig(.twoD)
        c.head = .acrn; c.acrnChannels = 32; c.acrnStride = 2; c.acrnConvs = 2
        var g = RandomGenerator(seed: 3)
        let det = try AVADetector(config: c, generator: &g)
        let keys = det.stateDictKeys()
        XCTAssertTrue(keys.contains("roi_head.shared_head.conv1.conv.weight"))
        XCTAssertTrue(keys.contains("roi_head.shared_head.convs.0.bn.running_var"))
        XCTAssertEqual(det.roi_head!.fc_cls.weight.shape, [4, 32])
        let clips = randn([2, 3, 2, 32, 32], seed: 4, requiresGrad: false)
        let logits = det.logits(clips, boxes: [[AVABox(0.1, 0.1, 0.6, 0.9), AVABox(0.4, 0.2, 0.9, 0.8)], [AVABox(0, 0, 0.5, 0.5)]])
        XCTAssertEqual(logits.shape, [3, 4])
        logits.sum().backward()
        XCTAssertNotNil(det.roi_head!.shared_head?.conv1.conv.weight.grad)
        c.context = true
        XCTAssertThrowsError(try AVADetector(config: c, generator: &g)) { XCTAssertTrue("\($0)".contains("model.context"), "\($0)") }
    }

    /// model.head acar: ACAR-Net's head replaces the RoI head (its keys under `acar_head.`, the
    /// released code's names), gives logits [K, classes + 1] with every actor of a clip related to
    /// the others, trains (gradients reach the HR2O layers and the backbone); its three dropouts
    /// (before fc2, one per HR2O layer) are modules the trainer reseeds; refused with the context feature.
    func testACARHeadDetector() throws {
        var c = tinyConfig(.twoD)
        c.head = .acar; c.acar.reduceDim = 16; c.acar.hiddenDim = 8; c.roiSize = 3; c.dropout = 0.2
        var g = RandomGenerator(seed: 3)
        let det = try AVADetector(config: c, generator: &g)
        XCTAssertNil(det.roi_head)
        let keys = det.stateDictKeys()
        XCTAssertTrue(keys.contains("acar_head.conv_reduce.weight"))
        XCTAssertTrue(keys.contains("acar_head.hr2o.1.conv_q.weight"))
        XCTAssertFalse(keys.contains { $0.hasPrefix("roi_head.") })
        XCTAssertEqual(det.acar_head?.fc2.weight.shape, [4, 16])
        XCTAssertEqual(det.modules().compactMap { $0 as? Dropout }.map(\.p), [0.2, 0.2, 0.2])
        let clips = randn([2, 3, 2, 64, 64], seed: 4, requiresGrad: false)
        let logits = det.logits(clips, boxes: [[AVABox(0.1, 0.1, 0.6, 0.9), AVABox(0.4, 0.2, 0.9, 0.8)], [AVABox(0, 0, 0.5, 0.5)]])
        XCTAssertEqual(logits.shape, [3, 4])
        logits.sum().backward()
        XCTAssertNotNil(det.acar_head?.hr2o.modules().compactMap { $0 as? Conv2d }.first?.weight.grad)
        XCTAssertNotNil(det.namedParameters().first { $0.0.hasPrefix("backbone.") }?.1.grad)
        c.context = true
        XCTAssertThrowsError(try AVADetector(config: c, generator: &g)) { XCTAssertTrue("\($0)".contains("model.context"), "\($0)") }
    }
}
