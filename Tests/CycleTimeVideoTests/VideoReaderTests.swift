import Foundation
import XCTest
@testable import CycleTimeVideo
import CycleTimeCore
import TestSupport

/// Runs a command; returns stdout (throws XCTSkip when the tool is absent).
func shell(_ args: [String], skipIfMissing: Bool = true) throws -> Data {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    if p.terminationStatus == 127 && skipIfMissing { throw XCTSkip("\(args[0]) is not installed") }
    return data
}

/// PSNR in dB of two byte buffers.
func psnr(_ a: [UInt8], _ b: [UInt8]) -> Double {
    precondition(a.count == b.count)
    var se = 0.0
    for i in 0..<a.count { let d = Double(a[i]) - Double(b[i]); se += d * d }
    let mse = se / Double(a.count)
    return mse == 0 ? 99 : 10 * log10(255 * 255 / mse)
}

final class VideoReaderTests: XCTestCase {
    static let videos = ["videos/vtest.avi", "videos/arm-wrestling.mp4", "videos/gym-basketball.mp4", "videos/pool-cleaning.mp4"]

    /// ffprobe's width, height and counted frames.
    func ffprobe(_ path: String) throws -> (Int, Int, Int) {
        let out = try shell(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                           "-show_entries", "stream=width,height,nb_read_frames", "-of", "csv=p=0", path])
        let f = String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",").map { Int($0)! }
        return (f[0], f[1], f[2])
    }

    /// First `n` frames from `ffmpeg ... -f rawvideo -pix_fmt rgb24`.
    func ffmpegFrames(_ path: String, n: Int, filter: String? = nil) throws -> Data {
        var args = ["ffmpeg", "-v", "error", "-i", path]
        if let filter { args += ["-vf", filter] }
        args += ["-frames:v", "\(n)", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        return try shell(args)
    }

    func testFrameCountsAndSizesMatchFFprobe() throws {
        for v in Self.videos {
            let path = try requireSharedData(v)
            let (w, h, n) = try ffprobe(path)
            let r = try VideoReader(path)
            XCTAssertEqual(r.metadata.width, w, v)
            XCTAssertEqual(r.metadata.height, h, v)
            XCTAssertEqual(r.metadata.frameCount, n, v)
            var decoded = 0
            while try r.skipFrame() { decoded += 1 }
            XCTAssertEqual(decoded, n, "decoded frames of \(v)")
        }
    }

    func testFramesMatchFFmpegRGB24() throws {
        for v in Self.videos {
            let path = try requireSharedData(v)
            let n = 12
            let ref = try ffmpegFrames(path, n: n)
            let r = try VideoReader(path)
            let size = r.outputWidth * r.outputHeight * 3
            XCTAssertEqual(ref.count, n * size, v)
            for i in 0..<n {
                let f = try XCTUnwrap(r.nextFrame())
                let p = psnr(f.rgb, [UInt8](ref[(i * size)..<((i + 1) * size)]))
                XCTAssertGreaterThan(p, 40, "\(v) frame \(i): PSNR \(p)")
            }
        }
    }

    func testResampleFPSMatchesFFmpegFpsFilter() throws {
        let path = try requireSharedData("videos/arm-wrestling.mp4")
        for fps in [10.0, 7.5] {
            let ref = try shell(["ffmpeg", "-v", "error", "-i", path, "-vf", "fps=\(fps)", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            let r = try VideoReader(path, fps: fps)
            let size = r.outputWidth * r.outputHeight * 3
            var frames: [VideoFrame] = []
            while let f = try r.nextFrame() { frames.append(f) }
            XCTAssertEqual(frames.count, ref.count / size, "fps \(fps)")
            for (i, f) in frames.enumerated() where i * size < ref.count {
                XCTAssertEqual(f.timestamp, Double(i) / fps, accuracy: 1e-9)
                let p = psnr(f.rgb, [UInt8](ref[(i * size)..<((i + 1) * size)]))
                XCTAssertGreaterThan(p, 40, "fps \(fps) frame \(i)")
            }
        }
    }

    func testResizeShortSideAgainstFFmpegBilinear() throws {
        let path = try requireSharedData("videos/vtest.avi")
        let r = try VideoReader(path, resize: .shortSide(128))
        XCTAssertEqual(r.outputHeight, 128)
        XCTAssertEqual(r.outputWidth, 171)  // 768 * 128 / 576 = 170.67
        let ref = try ffmpegFrames(path, n: 3, filter: "scale=171:128:flags=bilinear")
        let size = 171 * 128 * 3
        for i in 0..<3 {
            let f = try XCTUnwrap(r.nextFrame())
            XCTAssertGreaterThan(psnr(f.rgb, [UInt8](ref[(i * size)..<((i + 1) * size)])), 30)
        }
        let r2 = try VideoReader(path, resize: .size(width: 64, height: 48))
        let t = try XCTUnwrap(r2.nextTensor())
        XCTAssertEqual(t.shape, [3, 48, 64])
    }

    func testTensorValuesAndNormalization() throws {
        let path = try requireSharedData("videos/pool-cleaning.mp4")
        let a = try VideoReader(path)
        let f = try XCTUnwrap(a.nextFrame())
        let b = try VideoReader(path)
        let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
        let t = try XCTUnwrap(b.nextTensor(mean: mean, std: std))
        XCTAssertEqual(t.shape, [3, f.height, f.width])
        let hw = f.width * f.height
        for i in stride(from: 0, to: hw, by: 997) {
            for c in 0..<3 {
                let expect = (Float(f.rgb[3 * i + c]) / 255 - mean[c]) / std[c]
                XCTAssertEqual(t.data[c * hw + i], expect, accuracy: 1e-6)
            }
        }
    }

    func testSeek() throws {
        let path = try requireSharedData("videos/arm-wrestling.mp4")
        let r = try VideoReader(path)
        var all: [VideoFrame] = []
        while all.count < 80, let f = try r.nextFrame() { all.append(f) }
        let s = try VideoReader(path)
        try s.seek(to: 2.0)  // 28 fps -> frame 56
        let f = try XCTUnwrap(s.nextFrame())
        XCTAssertEqual(f.timestamp, 2.0, accuracy: 1e-6)
        XCTAssertEqual(f.rgb, all[56].rgb)
        // Resampled: 10 fps, seek to 1.0 s gives output frame 10 of the resampled stream.
        let seq = try VideoReader(path, fps: 10)
        var rs: [VideoFrame] = []
        while rs.count < 15, let f = try seq.nextFrame() { rs.append(f) }
        let sk = try VideoReader(path, fps: 10)
        try sk.seek(to: 1.0)
        let g = try XCTUnwrap(sk.nextFrame())
        XCTAssertEqual(g.index, 10)
        XCTAssertEqual(g.rgb, rs[10].rgb)
    }

    func testSeekFarIntoLongGOP() throws {
        // Seeking skips the decoding of unreferenced frames during pre-roll; the frame shown at the
        // target must still be exactly the sequentially decoded one.
        let path = try requireSharedData("videos/gym-basketball.mp4")
        let seq = try VideoReader(path)
        let fps = seq.metadata.fps
        let target = 7.0
        let want = Int((target * fps).rounded(.down))  // the frame on screen at 7.0 s
        var frame: VideoFrame? = nil
        for _ in 0...want { frame = try seq.nextFrame() }
        let s = try VideoReader(path)
        try s.seek(to: target)
        let f = try XCTUnwrap(s.nextFrame())
        XCTAssertEqual(f.timestamp, Double(want) / fps, accuracy: 1e-3)
        XCTAssertEqual(f.rgb, frame?.rgb)
    }

    func testOtherContainersAndCodecs() throws {
        // Made here with ffmpeg: VP9 in WebM and FFV1 in Matroska (no frame count in the header: counted).
        let d = temporaryDirectory()
        for (name, codec) in [("clip.webm", "libvpx-vp9"), ("clip.mkv", "ffv1")] {
            let p = d + "/" + name
            _ = try shell(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=12", "-frames:v", "17",
                           "-c:v", codec, "-pix_fmt", "yuv420p", "-y", p])
            guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("ffmpeg cannot encode \(codec) here") }
            let (w, h, n) = try ffprobe(p)
            let r = try VideoReader(p)
            XCTAssertEqual([r.metadata.width, r.metadata.height, r.metadata.frameCount], [w, h, n], name)
            XCTAssertEqual(n, 17)
            XCTAssertEqual(r.metadata.fps, 12, accuracy: 1e-6)
            let ref = try ffmpegFrames(p, n: 17)
            let size = w * h * 3
            var k = 0
            while let f = try r.nextFrame() {
                XCTAssertGreaterThan(psnr(f.rgb, [UInt8](ref[(k * size)..<((k + 1) * size)])), 40, "\(name) frame \(k)")
                k += 1
            }
            XCTAssertEqual(k, 17)
        }
    }

    func testReadAllShape() throws {
        let path = try requireSharedData("videos/gym-basketball.mp4")
        let r = try VideoReader(path, fps: 5, resize: .shortSide(64))
        let t = try r.readAll(maxFrames: 4)
        XCTAssertEqual(t.shape, [4, 3, 64, 114])
    }

    // MARK: bad input

    func assertMediaError(_ body: () throws -> Void, contains: String, _ line: UInt = #line) {
        do {
            try body()
            XCTFail("expected an error", line: line)
        } catch let e as MediaError {
            XCTAssertTrue(e.description.lowercased().contains(contains.lowercased()), "\(e)", line: line)
        } catch {
            XCTFail("unexpected error \(error)", line: line)
        }
    }

    func testMissingFile() {
        assertMediaError({ _ = try VideoReader("/nonexistent/clip.mp4") }, contains: "no such file")
    }

    func testEmptyFile() {
        let p = temporaryDirectory() + "/empty.mp4"
        FileManager.default.createFile(atPath: p, contents: Data())
        assertMediaError({ _ = try VideoReader(p) }, contains: "empty")
    }

    func testTextFileNamedMP4() {
        let p = temporaryDirectory() + "/notes.mp4"
        FileManager.default.createFile(atPath: p, contents: Data("these are not video frames\n".utf8))
        assertMediaError({ _ = try VideoReader(p) }, contains: "notes.mp4: cannot open: Invalid data")
    }

    func testTruncatedVideo() throws {
        for v in ["videos/vtest.avi", "videos/arm-wrestling.mp4"] {
            let src = try requireSharedData(v)
            let data = try Data(contentsOf: URL(fileURLWithPath: src))
            let p = temporaryDirectory() + "/truncated." + (v as NSString).pathExtension
            try data.prefix(data.count / 3).write(to: URL(fileURLWithPath: p))
            assertMediaError({
                let r = try VideoReader(p)
                while try r.skipFrame() {}
            }, contains: "truncated")
        }
    }

    func testAudioOnlyFile() throws {
        let p = temporaryDirectory() + "/tone.m4a"
        _ = try shell(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-y", p])
        guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("ffmpeg could not make an audio file") }
        assertMediaError({ _ = try VideoReader(p) }, contains: "no video stream")
    }
}
