import ArgumentParser
import CycleTimeCore
import CycleTimeVideo
import Foundation

/// `cycletime video info|frames`.
struct VideoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "video", abstract: "Inspect videos and extract frames (FFmpeg).",
        subcommands: [VideoInfoCommand.self, VideoFramesCommand.self])
}

struct VideoInfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Video metadata as JSON.")
    @Argument(help: "Video file") var file: String

    func run() throws {
        let m = try VideoReader.probe(file)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try enc.encode(m), as: UTF8.self))
    }
}

struct VideoFramesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "frames", abstract: "Write numbered frames (00000.png …), like ffmpeg -vf fps=F,scale.")
    @Argument(help: "Video file") var file: String
    @Option(help: "Resample to this frame rate (default: every frame)") var fps: Double?
    @Option(name: .customLong("short-side"), help: "Resize so the shorter side has this many pixels") var shortSide: Int?
    @Option(help: "Output folder (created)") var out: String
    @Option(help: "png or jpg") var format: String = "png"
    @Option(help: "First frame number in file names") var start: Int = 0

    func validate() throws {
        guard ["png", "jpg", "jpeg"].contains(format.lowercased()) else { throw ValidationError("--format must be png or jpg") }
        if let fps, !(fps > 0 && fps <= 1000) { throw ValidationError("--fps must be in (0, 1000]") }
        if let shortSide, !(1...VideoResize.maxSide).contains(shortSide) { throw ValidationError("--short-side must be in 1...\(VideoResize.maxSide)") }
        if !(0...9_999_999).contains(start) { throw ValidationError("--start must be in 0...9999999") }
    }

    /// The frames are written into a hidden temporary folder renamed to `out` when every frame is
    /// written: a failure (a truncated video, a full disk) leaves no folder that looks complete, and
    /// an existing `out` is replaced whole (no old frames beside the new ones).
    func run() throws {
        let reader = try VideoReader(file, fps: fps, resize: shortSide.map { .shortSide($0) } ?? .none)
        let parent = URL(fileURLWithPath: out).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        let n = try AtomicFile.withTemporary(for: out) { tmp -> Int in
            try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
            var n = 0
            while let f = try reader.nextFrame() {
                let name = String(format: "%05d.%@", start + n, format.lowercased() == "png" ? "png" : "jpg")
                try f.image.write(tmp + "/" + name)
                n += 1
            }
            return n
        }
        print("\(n) frames \(reader.outputWidth)x\(reader.outputHeight) written to \(out)")
    }
}
