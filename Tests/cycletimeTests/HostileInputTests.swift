import CycleTimeCore
import CycleTimeModels
import Foundation
import TestSupport
import XCTest

/// The executable as a hostile but fair user meets it, one test per class of fault: crashes
/// instead of errors, corrupted run directories, outputs that look complete and are not, bad data
/// accepted silently, misleading messages, hostile files. Each refused case asserts the exit code
/// (1, or 64 for a command-line error), one message line naming the file, key or flag, and that
/// nothing is left under an output's name (and no temporary beside it). The classes continue
/// in TrainCommandTests (locking, kill -9, resume checks) and OptionChecksTests (every flag).
final class HostileInputTests: XCTestCase {
    /// Cases run by this file (each test adds its own); quoted in the closing note.
    nonisolated(unsafe) static var casesRun = 0

    // MARK: 1. Crashes instead of errors

    func testNonFiniteAndHugeValuesAreErrorsNamingTheKeyOrFlag() throws {
        let exe = try cycletimeExecutable()
        let video = try requireSharedData("videos/arm-wrestling.mp4")
        let davis = try requireSharedData("davis-mini")
        let dir = temporaryDirectory("hostile-numbers")
        let cfg = try writeTinyConfig(dir, output: dir + "/run")
        let ava = try writeTinyAVARun(dir)
        let frames = dir + "/frames", features = dir + "/f.safetensors"
        let cases: [(String, [String], [String], [String])] = [
            ("optimizer.lr NaN", ["train", "--config", cfg, "--set", "optimizer.lr=.nan"], ["field 'optimizer.lr'"], [dir + "/run"]),
            ("grad_clip NaN (YAML key, not the Swift name)", ["train", "--config", cfg, "--set", "train.grad_clip=.nan"], ["field 'train.grad_clip'"], [dir + "/run"]),
            ("betas infinite", ["train", "--config", cfg, "--set", "optimizer.betas=[.inf, 0.999]"], ["field 'optimizer.betas'"], [dir + "/run"]),
            ("data.short_side huge", ["train", "--config", cfg, "--set", "data.short_side=100000"], ["field 'data.short_side'"], [dir + "/run"]),
            ("frame_size Int32.max", ["train", "--config", cfg, "--set", "timecycle.frame_size=2147483647"], ["field 'timecycle.frame_size'"], [dir + "/run"]),
            ("AVA lr infinite", ["ava", "train", "--config", ava, "--set", "optimizer.lr=.inf"], ["field 'optimizer.lr'"], [dir + "/run"]),
            ("frames --short-side 100000", ["video", "frames", video, "--short-side", "100000", "--out", frames], ["--short-side"], [frames]),
            ("frames --short-side Int32.max", ["video", "frames", video, "--short-side", "2147483647", "--out", frames], ["--short-side"], [frames]),
            ("features --short-side 9000", ["features", "--random-init", "--video", video, "--short-side", "9000", "--out", features], ["--short-side"], [features]),
            ("eval --bound-th NaN", ["eval", "davis", "--davis-root", davis, "--results", davis + "/results/osvos", "--bound-th", "nan"], ["--bound-th"], []),
        ]
        for (name, args, mentions, absent) in cases {
            try expectRefusal(exe, name, args, mentions: mentions, absent: absent)
        }
    }

    // MARK: 2. Corrupted run directories

    func testRunDirectoryMisuseIsRefusedWithoutChangingIt() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("hostile-rundir")
        let afile = dir + "/afile"
        try Data("x".utf8).write(to: URL(fileURLWithPath: afile))
        let cfg = try writeTinyConfig(dir, output: dir + "/run", steps: 1)
        try expectRefusal(exe, "--resume without a checkpoint", ["train", "--config", cfg, "--resume"],
                          mentions: [dir + "/run", "--resume given but the run has no checkpoint"], absent: [dir + "/run/checkpoints/latest.safetensors"])
        try expectRefusal(exe, "output_dir under a file", ["train", "--config", cfg, "--set", "output_dir=\(afile)/run"],
                          mentions: [afile, "cannot create the output directory"], absent: [])
        // A run killed before its first checkpoint leaves metrics with nothing behind them: a new
        // run starts them over instead of appending (steps 1, 2, 1 ...).
        try FileManager.default.createDirectory(atPath: dir + "/run", withIntermediateDirectories: true)
        try "{\"step\":1,\"loss\":1}\n{\"step\":2,\"loss\":1}\n".write(toFile: dir + "/run/metrics.jsonl", atomically: true, encoding: .utf8)
        let r = try runProcess(exe, ["train", "--config", cfg])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try metricsSteps(dir + "/run"), [1])
        Self.casesRun += 1
    }

    // MARK: 3. Outputs that look complete and are not

    func testFailedOrReplacedOutputsLeaveNothingThatLooksComplete() throws {
        let exe = try cycletimeExecutable()
        let video = try requireSharedData("videos/arm-wrestling.mp4")
        let dir = temporaryDirectory("hostile-outputs")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: video))
        let cut = dir + "/cut.mp4"
        try bytes.prefix(bytes.count * 2 / 5).write(to: URL(fileURLWithPath: cut))
        try expectRefusal(exe, "frames of a truncated mp4", ["video", "frames", cut, "--fps", "5", "--short-side", "64", "--out", dir + "/frames"],
                          mentions: ["cut.mp4"], absent: [dir + "/frames"])
        // Into an existing folder: the old frames do not survive beside the new ones.
        try FileManager.default.createDirectory(atPath: dir + "/old", withIntermediateDirectories: true)
        try Data("stale".utf8).write(to: URL(fileURLWithPath: dir + "/old/00099.png"))
        let r = try runProcess(exe, ["video", "frames", video, "--fps", "1", "--short-side", "32", "--out", dir + "/old"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir + "/old").sorted()
        XCTAssertEqual(names.first, "00000.png")
        XCTAssertFalse(names.contains("00099.png"), "\(names)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix(".") }, [])
        Self.casesRun += 1
    }

    /// A full disk (a 64 KiB tmpfs) is named as such, and leaves nothing under the output's name.
    func testAFullDiskSaysNoSpaceAndLeavesNoOutput() throws {
        let exe = try cycletimeExecutable()
        let video = try requireSharedData("videos/arm-wrestling.mp4")
        let mnt = temporaryDirectory("hostile-full-disk")
        guard getuid() == 0, try runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt]).status == 0 else {
            throw XCTSkip("mounting a small tmpfs needs root (and a machine that allows mounts)")
        }
        defer { _ = try? runProcess("/bin/umount", [mnt]) }
        try expectRefusal(exe, "frames on a full disk", ["video", "frames", video, "--fps", "5", "--out", mnt + "/frames"],
                          mentions: [mnt + "/frames", "No space left on device"], absent: [mnt + "/frames"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mnt), [], "temporaries left on the full disk")
        let dir = temporaryDirectory("hostile-full-disk-config")
        let cfg = try writeTinyConfig(dir, output: mnt + "/run", steps: 2)
        let r = try runProcess(exe, ["train", "--config", cfg])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("No space left on device"), r.stderr)
        XCTAssertFalse(r.stderr.contains("permissions?"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: mnt + "/run/checkpoints/latest.safetensors"))
        Self.casesRun += 2
    }

    // MARK: 4. Bad data accepted silently

    func testDamagedImagesMasksAndWeightsAreErrors() throws {
        let exe = try cycletimeExecutable()
        let davis = try requireSharedData("davis-mini")
        let video = try requireSharedData("videos/pool-cleaning.mp4")
        let dir = temporaryDirectory("hostile-data")
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: davis + "/JPEGImages/480p/blackswan/00000.jpg"))
        try jpeg.prefix(jpeg.count / 2).write(to: URL(fileURLWithPath: dir + "/half.jpg"))
        let out = dir + "/f.safetensors"
        try expectRefusal(exe, "JPEG cut in half", ["features", "--random-init", "--image", dir + "/half.jpg", "--out", out],
                          mentions: ["half.jpg"], absent: [out])
        try expectRefusal(exe, "first mask of another size",
                          ["propagate", "video", video, "--first-mask", davis + "/Annotations/480p/blackswan/00000.png", "--random-init", "--out", dir + "/masks"],
                          mentions: ["00000.png", "854x480", "340x256"], absent: [dir + "/masks/pool-cleaning"])
        // Weights holding a NaN (a diverged run) would give NaN features and empty masks.
        let model = ResNet(config: ResNetConfig(depth: 18, lastStage: "layer1"), initialize: false)
        let state = model.stateDict()
        let weight = try XCTUnwrap(state["layer1.0.conv1.weight"])
        weight.data[5] = .nan
        try SafeTensors.write(state, to: dir + "/nan.safetensors")
        try expectRefusal(exe, "NaN in the weights", ["features", "--checkpoint", dir + "/nan.safetensors", "--layer", "layer1", "--image",
                                                       davis + "/JPEGImages/480p/blackswan/00000.jpg", "--out", out],
                          mentions: ["nan.safetensors", "layer1.0.conv1.weight", "NaN"], absent: [out])
        try expectRefusal(exe, "NaN in propagation weights", ["propagate", "video", video, "--first-box", "10,10,50,50", "--imagenet", dir + "/nan.safetensors",
                                                               "--layer", "layer1", "--out", dir + "/masks"],
                          mentions: ["nan.safetensors", "NaN"], absent: [dir + "/masks/pool-cleaning"])
    }

    /// The official evaluator takes its frame list from the annotations: a missing JPEG changes nothing.
    func testDAVISEvaluationTakesItsFramesFromTheAnnotations() throws {
        let exe = try cycletimeExecutable()
        let davis = try requireSharedData("davis-mini")
        let dir = temporaryDirectory("hostile-davis")
        // A copy of davis-mini made of links, less one scored frame's JPEG.
        let fm = FileManager.default
        for rel in fm.subpaths(atPath: davis) ?? [] where !rel.hasPrefix("results") {
            var isDir: ObjCBool = false
            _ = fm.fileExists(atPath: davis + "/" + rel, isDirectory: &isDir)
            if isDir.boolValue { try fm.createDirectory(atPath: dir + "/" + rel, withIntermediateDirectories: true) }
            else { try fm.createSymbolicLink(atPath: dir + "/" + rel, withDestinationPath: davis + "/" + rel) }
        }
        try fm.removeItem(atPath: dir + "/JPEGImages/480p/dog/00030.jpg")
        let r = try runProcess(exe, ["eval", "davis", "--davis-root", dir, "--results", davis + "/results/osvos", "--no-write"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // ../shared/data/README.md: the official J&F-Mean of osvos on davis-mini.
        XCTAssertTrue(r.stdout.contains("0.817386"), r.stdout)
        Self.casesRun += 1
    }

    /// Usable but imperfect data is named once: a video shorter than a clip, an AVA keyframe
    /// outside its video, a keyframe whose proposal list is empty.
    func testShortVideosAndAVAKeyframesOutsideTheirVideoAreReported() throws {
        let exe = try cycletimeExecutable()
        let source = try requireSharedData("videos/arm-wrestling.mp4")
        let dir = temporaryDirectory("hostile-short")
        let short = dir + "/short.mp4"
        let cut = try runProcess("/usr/bin/ffmpeg", ["-v", "error", "-i", source, "-frames:v", "3", "-an", "-y", short])
        XCTAssertEqual(cut.status, 0, cut.stderr)
        let cfg = dir + "/short.yaml"
        try tinyConfigYAML(output: dir + "/run", videos: short, steps: 1).write(toFile: cfg, atomically: true, encoding: .utf8)
        let r = try runProcess(exe, ["train", "--config", cfg])
        XCTAssertEqual(r.status, 0, r.stderr)
        let warnings = r.stderr.split(separator: "\n").filter { $0.contains("short.mp4") && $0.contains("shorter than the clip") }
        XCTAssertEqual(warnings.count, 1, r.stderr)

        let avaDir = temporaryDirectory("hostile-ava")
        let ava = try writeTinyAVARun(avaDir, extra: "")
        // One keyframe far past the clip's end, one with an empty proposal list.
        var rows = try String(contentsOfFile: avaDir + "/gt.csv", encoding: .utf8)
        rows += "\(tinyAVAClip),0900,0.1,0.1,0.5,0.9,12,0\n\(tinyAVAClip),0001,0.2,0.2,0.6,0.9,11,1\n"
        try rows.write(toFile: avaDir + "/gt.csv", atomically: true, encoding: .utf8)
        var props = try String(contentsOfFile: avaDir + "/p.json", encoding: .utf8)
        props = props.replacingOccurrences(of: "\"\(tinyAVAClip),0001\": [[0.531, 0.308, 0.728, 0.829, 0.97]]", with: "\"\(tinyAVAClip),0001\": []")
        props = props.replacingOccurrences(of: "}\n", with: ", \"\(tinyAVAClip),0900\": [[0.1, 0.1, 0.5, 0.9, 0.99]]}\n")
        try props.write(toFile: avaDir + "/p.json", atomically: true, encoding: .utf8)
        let a = try runProcess(exe, ["ava", "train", "--config", ava, "--set", "train.steps=1"])
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertTrue(a.stderr.contains("1 keyframe outside its video (skipped): \(tinyAVAClip),0900"), a.stderr)
        XCTAssertTrue(a.stderr.contains("no proposals for 1 keyframe (skipped): \(tinyAVAClip),0001"), a.stderr)
        Self.casesRun += 3
    }

    // MARK: 5. Messages that mislead

    func testMessagesNameWhatIsWrong() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("hostile-messages")
        let ava = try writeTinyAVARun(dir)
        let image = try requireSharedData("davis-mini/JPEGImages/480p/blackswan/00000.jpg")
        try expectRefusal(exe, "video info of a folder", ["video", "info", dir], mentions: [dir, "is a folder"], absent: [])
        try expectRefusal(exe, "checkpoint is a folder", ["features", "--checkpoint", dir, "--image", image, "--out", dir + "/f.safetensors"],
                          mentions: [dir, "is a folder"], absent: [dir + "/f.safetensors"])
        try expectRefusal(exe, "mistyped command", ["trian", "--config", "x.yaml"], mentions: ["unknown command 'trian'", "did you mean 'train'"],
                          absent: [], statuses: [64])
        try expectRefusal(exe, "mistyped subcommand", ["ava", "tset", "--config", ava], mentions: ["unknown command 'tset' for 'cycletime ava'", "'test'"],
                          absent: [], statuses: [64])
        try expectRefusal(exe, "results in a missing folder", ["ava", "test", "--config", ava, "--out", dir + "/missing/r.csv"],
                          mentions: [dir + "/missing/r.csv", "does not exist"], absent: [dir + "/missing"])
        try expectRefusal(exe, "config is a folder", ["train", "--config", dir], mentions: [dir, "is a folder"], absent: [])
    }

    // MARK: 6. Hostile files

    func testHostileFilesAreBoundedBeforeAnythingIsAllocated() throws {
        let exe = try cycletimeExecutable()
        let video = try requireSharedData("videos/pool-cleaning.mp4")
        let davis = try requireSharedData("davis-mini")
        let dir = temporaryDirectory("hostile-files")
        let cfg = try writeTinyConfig(dir, output: dir + "/run")
        let base = try String(contentsOfFile: cfg, encoding: .utf8)
        // YAML: an alias bomb (10^9 values from a few lines), deep flow nesting, a huge file.
        var bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1...9 { bomb += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        try (bomb + base).write(toFile: dir + "/bomb.yaml", atomically: true, encoding: .utf8)
        try ("deep: " + String(repeating: "[", count: 20_000) + String(repeating: "]", count: 20_000) + "\n" + base)
            .write(toFile: dir + "/deep.yaml", atomically: true, encoding: .utf8)
        try (base + "\n# " + String(repeating: "x", count: 2 << 20) + "\n").write(toFile: dir + "/huge.yaml", atomically: true, encoding: .utf8)
        for (name, mention) in [("bomb", "aliases are expanded"), ("deep", "nested more than"), ("huge", "KiB")] {
            try expectRefusal(exe, "YAML \(name)", ["train", "--config", dir + "/\(name).yaml"], mentions: [name + ".yaml", mention], absent: [dir + "/run"])
        }
        // safetensors: a header declaring a tensor far larger than the file.
        let header = "{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[1099511627776],\"data_offsets\":[0,4398046511104]}}"
        var st = Data()
        var n = UInt64(header.utf8.count).littleEndian
        withUnsafeBytes(of: &n) { st.append(contentsOf: $0) }
        st.append(contentsOf: Array(header.utf8))
        st.append(contentsOf: [UInt8](repeating: 0, count: 16))
        try st.write(to: URL(fileURLWithPath: dir + "/huge.safetensors"))
        let out = dir + "/f.safetensors"
        try expectRefusal(exe, "safetensors declaring 4 TB", ["features", "--checkpoint", dir + "/huge.safetensors", "--image",
                                                              davis + "/JPEGImages/480p/blackswan/00000.jpg", "--out", out],
                          mentions: ["huge.safetensors"], absent: [out])
        // PNG and JPEG headers declaring 4 gigapixels (the real files, their size fields changed).
        let png = dir + "/giant.png"
        try Self.pngWithDeclaredSize(davis + "/Annotations/480p/blackswan/00000.png", width: 65535, height: 65535).write(to: URL(fileURLWithPath: png))
        try expectRefusal(exe, "PNG declaring 65535x65535", ["propagate", "video", video, "--first-mask", png, "--random-init", "--out", dir + "/masks"],
                          mentions: ["giant.png", "limit"], absent: [dir + "/masks/pool-cleaning"])
        let jpg = dir + "/giant.jpg"
        try Self.jpegWithDeclaredSize(davis + "/JPEGImages/480p/blackswan/00000.jpg", width: 20000, height: 20000).write(to: URL(fileURLWithPath: jpg))
        try expectRefusal(exe, "JPEG declaring 20000x20000", ["features", "--random-init", "--image", jpg, "--out", out],
                          mentions: ["giant.jpg", "limit"], absent: [out])
        // AVA CSV: a timestamp whose frame number would overflow.
        try "\(tinyAVAClip),99999999999999999,0.1,0.1,0.5,0.5,12,0.9\n".write(toFile: dir + "/det.csv", atomically: true, encoding: .utf8)
        try "11: stand\n12: catch\n".write(toFile: dir + "/labels.txt", atomically: true, encoding: .utf8)
        try expectRefusal(exe, "AVA timestamp 10^17", ["ava", "eval", "--gt", dir + "/det.csv", "--detections", dir + "/det.csv", "--labelmap", dir + "/labels.txt"],
                          mentions: ["det.csv:1", "timestamp"], absent: [])
    }

    // MARK: helpers

    /// Runs `args`; asserts the refusal: an exit code in `statuses`, one message line (besides
    /// warnings and the parser's usage lines) naming each of `mentions`, no trap, nothing at the
    /// `absent` paths and no hidden temporary beside them.
    func expectRefusal(_ exe: String, _ name: String, _ args: [String], mentions: [String], absent: [String],
                       statuses: Set<Int32> = [1, 64], file: StaticString = #filePath, line: UInt = #line) throws {
        Self.casesRun += 1
        let r = try runProcess(exe, args)
        XCTAssertTrue(statuses.contains(r.status), "\(name): exit \(r.status): \(r.stderr)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n").filter {
            !$0.hasPrefix("warning:") && !$0.hasPrefix("Usage:") && !$0.hasPrefix("  See ") && !$0.trimmingCharacters(in: .whitespaces).isEmpty
        }
        XCTAssertEqual(lines.count, 1, "\(name): \(r.stderr)", file: file, line: line)
        for m in mentions { XCTAssertTrue(r.stderr.contains(m), "\(name): '\(r.stderr)' lacks '\(m)'", file: file, line: line) }
        XCTAssertFalse(r.stderr.contains("Fatal error"), "\(name): \(r.stderr)", file: file, line: line)
        for path in absent {
            XCTAssertFalse(FileManager.default.fileExists(atPath: path), "\(name): \(path) exists", file: file, line: line)
            let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
            let temporaries = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter(AtomicFile.isTemporary)
            XCTAssertEqual(temporaries, [], "\(name): temporaries left in \(folder)", file: file, line: line)
        }
    }

    override class func tearDown() {
        print("HostileInputTests: \(casesRun) cases run")
        super.tearDown()
    }

    /// A real PNG whose IHDR declares another size (its CRC recomputed, so libpng reads the header).
    static func pngWithDeclaredSize(_ path: String, width: UInt32, height: UInt32) throws -> Data {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        // Signature (8), IHDR length (4), "IHDR" (4), width, height, ..., CRC over type + data (17 bytes).
        for (i, v) in [width, height].enumerated() {
            for k in 0..<4 { bytes[16 + 4 * i + k] = UInt8((v >> (24 - 8 * UInt32(k))) & 0xFF) }
        }
        let crc = crc32(bytes[12..<29])
        for k in 0..<4 { bytes[29 + k] = UInt8((crc >> (24 - 8 * UInt32(k))) & 0xFF) }
        return Data(bytes)
    }

    /// A real baseline JPEG whose SOF0 marker declares another size.
    static func jpegWithDeclaredSize(_ path: String, width: UInt16, height: UInt16) throws -> Data {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var i = 2
        while i + 9 < bytes.count {
            guard bytes[i] == 0xFF else { break }
            let marker = bytes[i + 1], length = Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            if marker == 0xC0 || marker == 0xC2 {
                bytes[i + 5] = UInt8(height >> 8); bytes[i + 6] = UInt8(height & 0xFF)
                bytes[i + 7] = UInt8(width >> 8); bytes[i + 8] = UInt8(width & 0xFF)
                return Data(bytes)
            }
            i += 2 + length
        }
        throw XCTSkip("\(path): no SOF marker found")
    }

    /// CRC-32 (IEEE, as PNG uses it).
    static func crc32<C: Collection>(_ data: C) -> UInt32 where C.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in data {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return c ^ 0xFFFF_FFFF
    }
}
