import Foundation
import XCTest
@testable import CycleTimeTraining

final class TrainConfigTests: XCTestCase {
    func valid() -> TrainConfig {
        var c = TrainConfig()
        c.data.videos = ["v.mp4"]
        c.train.steps = 10
        return c
    }

    func assertInvalid(_ edit: (inout TrainConfig) -> Void, field: String, file: StaticString = #filePath, line: UInt = #line) {
        var c = valid()
        edit(&c)
        XCTAssertThrowsError(try c.validate(file: "c.yaml"), file: file, line: line) { e in
            XCTAssertTrue("\(e)".contains("field '\(field)'"), "\(e)", file: file, line: line)
        }
    }

    func testValidConfigPasses() throws {
        XCTAssertNoThrow(try valid().validate(file: "c.yaml"))
        let o = valid().clipOptions
        XCTAssertEqual(o.frameOffsets, [0, 2, 4, 6, 15, 17])
        XCTAssertEqual(o.fps, 12)
        XCTAssertEqual(o.outputSize, 240)
        XCTAssertEqual(o.decodeShortSide, 256)
        XCTAssertEqual(o.scaleRange, 0.9375...0.9375)
    }

    func testInvalidValuesNameTheirField() {
        assertInvalid({ $0.data.videos = [] }, field: "data.videos")
        assertInvalid({ $0.train.batchSize = 0 }, field: "train.batch_size")
        assertInvalid({ $0.train.steps = 0 }, field: "train.steps")
        assertInvalid({ $0.optimizer.name = "lamb" }, field: "optimizer.name")
        assertInvalid({ $0.optimizer.betas = [0.5] }, field: "optimizer.betas")
        assertInvalid({ $0.schedule.name = "poly" }, field: "schedule.name")
        assertInvalid({ $0.timecycle.encoder = "vgg16" }, field: "timecycle.encoder")
        assertInvalid({ $0.timecycle.encoderStrides = [1, 2] }, field: "timecycle.encoder_strides")
        assertInvalid({ $0.timecycle.localizerKernels = [9, 9] }, field: "timecycle.localizer_kernels")
        assertInvalid({ $0.patch.patchSize = 64 }, field: "patch.patch_size")
        assertInvalid({ $0.data.clipOffsets = [0, 4, 2] }, field: "data.clip_offsets")
        assertInvalid({ $0.data.targetOffset = 3 }, field: "data.target_offset")
        assertInvalid({ $0.data.cropScale = [0.9, 0.5] }, field: "data.crop_scale")
    }
}
