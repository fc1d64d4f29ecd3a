import CycleTimeCore
import CycleTimeReport
import CycleTimeTracking
import CycleTimeTraining
import CycleTimePretraining
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest

final class CorrespondenceTests: XCTestCase {
    func testAffinityMapIsASoftmaxPeakingAtTheSameFeature() {
        // 2 channels on a 2x2 grid, unit vectors at different angles.
        let angles: [Float] = [0, 0.5, 1.0, 1.5]
        let t = Tensor(angles.map(cosf) + angles.map(sinf), shape: [1, 2, 2, 2])
        let a = CorrespondenceFigures.affinityMap(query: t, at: (1, 0), base: t, temperature: 0.1)
        XCTAssertEqual(a.reduce(0, +), 1, accuracy: 1e-5)
        XCTAssertEqual(a.indices.max(by: { a[$0] < a[$1] }), 1)  // cell (x 1, y 0)
    }

    func testMotionPointsFindTheMovingRegion() {
        let a = Canvas(width: 100, height: 100, fill: .black)
        var b = a
        b.fillRect(x0: 60, y0: 30, x1: 69, y1: 39, .white)
        let p = CorrespondenceFigures.motionPoints(a, b, grid: 10, count: 1, minDist: 3)
        XCTAssertEqual(p.first?.0, 6)
        XCTAssertEqual(p.first?.1, 3)
    }

    /// The figures on real video with a TimeCycle checkpoint (randomly initialized, saved as the
    /// trainer saves it): a heat-map grid and a tracking grid, PNGs that decode; progress lines
    /// with rate and ETA.
    func testFiguresOnRealVideo() throws {
        let videos = try requireSharedData("videos")
        let config = try ConfigLoader.load(TrainConfig.self, path: repoRoot + "/Tests/Fixtures/report/timecycle-r18-smoke-config.yaml")
        var g = RandomGenerator(seed: 1)
        let model = TimeCycleModel(config: config.timecycle, generator: &g)
        let ckpt = NSTemporaryDirectory() + "/corr-test-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: ckpt) }
        try model.save(to: ckpt)
        var o = ReportOptions()
        o.tileWidth = 96
        nonisolated(unsafe) var lines: [String] = []
        o.progress = { lines.append($0) }
        let figs = try CorrespondenceFigures.make(config: config, checkpoint: ckpt, video: videos + "/vtest.avi", options: o)
        XCTAssertEqual(figs.map(\.name), ["correspondence-affinity.png", "correspondence-track.png"])
        for f in figs {
            guard case .png(let data, let w, let h) = f.content else { return XCTFail("not a PNG") }
            let tmp = ckpt + ".png"
            try data.write(to: URL(fileURLWithPath: tmp))
            let img = try Image.readPNG(tmp)
            try? FileManager.default.removeItem(atPath: tmp)
            XCTAssertEqual([img.width, img.height], [w, h])
        }
        XCTAssertTrue(lines.contains { $0.contains("encoded frame 8/8") && $0.contains("ETA") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.contains("tracked frame 7/7") }, "\(lines)")
        // A checkpoint of another model is a clear error naming the file.
        let other = NSTemporaryDirectory() + "/corr-test-other-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: other) }
        try SafeTensors.write(["x": Tensor([1], shape: [1])], metadata: [:], to: other)
        XCTAssertThrowsError(try CorrespondenceFigures.loadModel(config: config, checkpoint: other)) { e in
            XCTAssertTrue("\(e)".contains(other), "\(e)")
        }
    }
}
