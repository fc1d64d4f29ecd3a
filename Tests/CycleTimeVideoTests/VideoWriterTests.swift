import Foundation
import XCTest
@testable import CycleTimeVideo
import CycleTimeCore
import TestSupport

final class VideoWriterTests: XCTestCase {
    func testWriteAndReadBack() throws {
        let path = temporaryDirectory() + "/out.mp4"
        let w = 64, h = 48, n = 10
        var frames: [[UInt8]] = []
        for k in 0..<n {
            var px = [UInt8](repeating: 0, count: w * h * 3)
            for y in 0..<h { for x in 0..<w {
                px[3 * (y * w + x)] = UInt8((x * 4 + k * 10) % 256)
                px[3 * (y * w + x) + 1] = UInt8((y * 5) % 256)
                px[3 * (y * w + x) + 2] = 128
            } }
            frames.append(px)
        }
        let writer = try VideoWriter(path: path, width: w, height: h, fps: 10)
        for f in frames { try writer.write(rgb: f) }
        try writer.finish()
        let r = try VideoReader(path)
        XCTAssertEqual(r.metadata.width, w)
        XCTAssertEqual(r.metadata.height, h)
        XCTAssertEqual(r.metadata.fps, 10, accuracy: 1e-6)
        XCTAssertEqual(r.metadata.codec, writer.codecName == "libx264" ? "h264" : "mpeg4")
        var k = 0
        while let f = try r.nextFrame() {
            XCTAssertGreaterThan(psnr(f.rgb, frames[k]), 25, "frame \(k)")
            k += 1
        }
        XCTAssertEqual(k, n)
    }

    func testMPEG4FallbackAndTensorInput() throws {
        let path = temporaryDirectory() + "/out-mpeg4.mp4"
        let writer = try VideoWriter(path: path, width: 32, height: 32, fps: 5, preferH264: false)
        XCTAssertEqual(writer.codecName, "mpeg4")
        for _ in 0..<3 { try writer.write(Tensor.full([3, 32, 32], 0.5)) }
        try writer.finish()
        let r = try VideoReader(path)
        let t = try XCTUnwrap(r.nextTensor())
        XCTAssertEqual(t.data[100], 0.5, accuracy: 0.03)
    }

    func testOddSizeIsAnError() {
        XCTAssertThrowsError(try VideoWriter(path: temporaryDirectory() + "/x.mp4", width: 33, height: 32))
    }
}
