import CycleTimeCore
import CycleTimeVideo
import Foundation
import TestSupport
import XCTest

@testable import CycleTimeDetection

final class AVADatasetTests: XCTestCase {
    /// mmaction2 (img_00001.jpg) and PySlowFast (<video_id>_000001.jpg) frame folders, and JHMDB's
    /// 00001.png: frames found, counted, read in order; a missing video is an error naming it.
    func testFrameFolderConventions() throws {
        let davis = try requireSharedData("davis-mini") + "/JPEGImages/480p/blackswan"
        let root = temporaryDirectory("frames")
        for (video, name) in [("vidA", { (n: Int) in String(format: "img_%05d.jpg", n) }), ("vidB", { (n: Int) in String(format: "vidB_%06d.jpg", n) })] {
            try FileManager.default.createDirectory(atPath: root + "/" + video, withIntermediateDirectories: true)
            for n in 1...7 {
                try FileManager.default.copyItem(atPath: davis + String(format: "/%05d.jpg", n - 1), toPath: root + "/\(video)/" + name(n))
            }
        }
        let store = AVAFrameStore(source: .frameFolders(root))
        XCTAssertEqual(try store.frameCount("vidA"), 7)
        XCTAssertEqual(try store.frameCount("vidB"), 7)
        let f = try store.frames("vidB", [0, 3, 9])  // clamped to 1...7
        let third = try Image.read(davis + "/00002.jpg")
        XCTAssertEqual(f[1].rgb, third.pixels)
        XCTAssertEqual(f[0].rgb, try Image.read(davis + "/00000.jpg").pixels)
        XCTAssertEqual(f[2].rgb, try Image.read(davis + "/00006.jpg").pixels)
        XCTAssertThrowsError(try store.frameCount("nope")) { e in
            XCTAssertTrue("\(e)".contains("no frame folder for video id 'nope'"), "\(e)")
        }
        let jhmdb = try requireSharedData("jhmdb-mini") + "/Frames/catch"
        XCTAssertEqual(try AVAFrameStore(source: .frameFolders(jhmdb)).frameCount("Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"), 40)
        XCTAssertEqual(try AVAFrameSource.resolve(jhmdb, kind: "auto"), .frameFolders(jhmdb))
    }

    /// Video frames at 30 fps by AVA numbering: a clip's window decoded after a seek equals the same
    /// frames decoded from the start; cached frames are not decoded again; the cache stays bounded.
    func testVideoWindowMatchesSequentialDecodeAndCacheIsBounded() throws {
        let videos = try requireSharedData("videos")
        XCTAssertEqual(try AVAFrameSource.resolve(videos, kind: "auto"), .videos(videos))
        let store = AVAFrameStore(source: .videos(videos), fps: 30, decodeShortSide: 64, cacheBytes: 1 << 20)
        XCTAssertEqual(try store.frameCount("pool-cleaning"), 300)
        let numbers = AVAClipSampler(frames: 4, interval: 4, fps: 30, windowStart: 0).frameNumbers(5)  // keyframe 151
        XCTAssertEqual(numbers, [143, 147, 151, 155])
        let window = try store.frames("pool-cleaning", numbers)
        let reader = try VideoReader(videos + "/pool-cleaning.mp4", fps: 30, resize: .shortSide(64))
        var seq: [Int: [UInt8]] = [:]
        while let f = try reader.nextFrame(), f.index < 155 { if numbers.contains(f.index + 1) { seq[f.index + 1] = f.rgb } }
        for (i, n) in numbers.enumerated() { XCTAssertEqual(window[i].rgb, seq[n], "frame \(n)") }
        let loaded = store.framesLoaded
        _ = try store.frames("pool-cleaning", numbers)
        XCTAssertEqual(store.framesLoaded, loaded, "cached frames are not decoded again")
        // 64 x 85 x 3 bytes a frame, 1 MiB cache: a long run of clips stays within the budget.
        for s in 1...8 { _ = try store.frames("pool-cleaning", AVAClipSampler(frames: 4, interval: 4, fps: 30, windowStart: 0).frameNumbers(s)) }
        XCTAssertLessThanOrEqual(store.cachedFrameBytes, 1 << 20)
        XCTAssertThrowsError(try store.frameCount("missing-video")) { e in
            XCTAssertTrue("\(e)".contains("no video file for video id 'missing-video'"), "\(e)")
        }
    }

    /// Boxes follow the crop (clipped, renormalized) and the flip; boxes left outside are dropped.
    func testCropBoxesHandComputed() {
        let boxes = [AVABox(0.25, 0.25, 0.75, 0.75), AVABox(0, 0, 0.1, 0.1)]
        // 200x100 frame, crop x 50..150, y 0..100.
        let r = AVADataset.cropBoxes(boxes, [[1], [2]], crop: (x: 50, y: 0, w: 100, h: 100), width: 200, height: 100, flip: false)
        XCTAssertEqual(r.boxes, [AVABox(0, 0.25, 1, 0.75)])
        XCTAssertEqual(r.actions, [[1]])
        let c = AVADataset.cropBoxes([AVABox(0.25, 0.25, 0.5, 0.75)], [[3]], crop: (x: 0, y: 0, w: 200, h: 100), width: 200, height: 100, flip: true)
        XCTAssertEqual(c.boxes[0].x1, 0.5, accuracy: 1e-12)
        XCTAssertEqual(c.boxes[0].x2, 0.75, accuracy: 1e-12)
    }

    /// Training samples on real frames: [1, 3, T, crop, crop], the same for the same seed, other
    /// crops for other seeds; a flipped sample mirrors its box; test samples are the full frame.
    func testTrainingAndTestSamplesOnJHMDB() throws {
        let jhmdb = try requireSharedData("jhmdb-mini") + "/Frames/catch"
        let vid = "Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"
        var o = AVAClipOptions()
        o.sampler = AVAClipSampler(frames: 4, interval: 2, fps: 10, windowStart: 0)
        o.trainScales = 64...80; o.cropSize = 64; o.testShortSide = 48
        let store = AVAFrameStore(source: .frameFolders(jhmdb), fps: 10)
        let e = AVAEntry(key: AVAKey(vid, 1), boxes: [AVABox(0.531, 0.308, 0.728, 0.829)], actions: [[1]])
        let train = AVADataset(entries: [e], store: store, options: o, training: true)
        let a = try train.sample(0, seed: 5), b = try train.sample(0, seed: 5)
        XCTAssertEqual(a.clips.shape, [1, 3, 4, 64, 64])
        XCTAssertEqual(Array(UnsafeBufferPointer(start: a.clips.data, count: a.clips.count)), Array(UnsafeBufferPointer(start: b.clips.data, count: b.clips.count)))
        XCTAssertEqual(a.boxes, b.boxes)
        var distinct = Set<[Double]>()
        for s in 0..<8 {
            let x = try train.sample(0, seed: UInt64(s))
            XCTAssertEqual(x.boxes[0].count, 1)
            let bx = x.boxes[0][0]
            XCTAssertTrue(bx.x1 >= 0 && bx.x2 <= 1 && bx.x1 < bx.x2 && bx.y1 < bx.y2, "\(bx)")
            distinct.insert([bx.x1, bx.y1])
        }
        XCTAssertGreaterThan(distinct.count, 2, "crops and flips vary with the seed")
        let test = AVADataset(entries: [e], store: store, options: o, training: false)
        let t = try test.sample(0, seed: 1)
        XCTAssertEqual(t.clips.shape, [1, 3, 4, 48, 64])  // 320x240 -> short side 48
        XCTAssertEqual(t.boxes, [e.boxes])
        // `testClip` (what `ava demo` feeds) is the test sample's clip of the same frames; frames of two sizes are an error.
        let frames = try store.frames(vid, o.sampler.frameNumbers(1, frameCount: try store.frameCount(vid)))
        let own = try o.testClip(frames, name: "k")
        XCTAssertEqual(own.shape, t.clips.shape)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: own.data, count: own.count)), Array(UnsafeBufferPointer(start: t.clips.data, count: t.clips.count)))
        XCTAssertThrowsError(try o.testClip([frames[0], AVAFrame(width: 2, height: 2, rgb: [UInt8](repeating: 0, count: 12))], name: "k")) {
            XCTAssertEqual("\($0)", "k: frames of different sizes (320x240 and 2x2)")
        }
        // ImageNet normalization of the first pixel of the keyframe (frame 11 at 10 fps, second 1).
        let img = try Image.read(jhmdb + "/\(vid)/00011.png")
        let full = AVADataset(entries: [e], store: store, options: { var q = o; q.testShortSide = 240; return q }(), training: false)
        let ft = try full.sample(0, seed: 0).clips
        XCTAssertEqual(ft.shape, [1, 3, 4, 240, 320])
        let plane = 240 * 320
        XCTAssertEqual(ft.data[2 * plane], (Float(img.pixels[0]) / 255 - 0.485) / 0.229, accuracy: 1e-4)
    }

    /// Keyframes without proposals are returned to be reported and skipped, never given a whole-frame box.
    func testKeyframesWithoutProposalsAreSkipped() {
        let k1 = AVAKey("v", 902), k2 = AVAKey("v", 903), k3 = AVAKey("v", 904)
        let p = AVAProposals(path: "p.json", boxes: [k1: [ScoredBox(AVABox(0.1, 0.1, 0.5, 0.5), score: 0.95), ScoredBox(AVABox(0, 0, 1, 1), score: 0.3)]])
        let t = AVAEntries.testing(keys: [k1, k2, k3], proposals: p, excluded: [k3])
        XCTAssertEqual(t.entries.map(\.key), [k1])
        XCTAssertEqual(t.entries[0].boxes, [AVABox(0.1, 0.1, 0.5, 0.5)])
        XCTAssertEqual(t.missingProposals, [k2])
        XCTAssertTrue(AVAEntries.missingReport(t.missingProposals, proposals: "p.json").contains("no proposals for 1 keyframe (skipped): v,0903"))
        let gt: [AVAKey: [LabeledBox]] = [k1: [LabeledBox(box: AVABox(0.1, 0.1, 0.5, 0.5), personID: 0, actions: [1, 9])],
                                          k2: [LabeledBox(box: AVABox(0.2, 0.2, 0.6, 0.6), personID: 0, actions: [2])],
                                          k3: [LabeledBox(box: AVABox(0.2, 0.2, 0.6, 0.6), personID: 0, actions: [2])]]
        let tr = AVAEntries.training(groundTruth: gt, proposals: p, excluded: [k3], classes: AVAClassIndex(ids: [1, 2]))
        XCTAssertEqual(tr.entries.map(\.key), [k1])
        // The ground-truth box (class 9 is not trained) plus the matching proposal with its labels.
        XCTAssertEqual(tr.entries[0].boxes, [AVABox(0.1, 0.1, 0.5, 0.5), AVABox(0.1, 0.1, 0.5, 0.5)])
        XCTAssertEqual(tr.entries[0].actions, [[1], [1]])
        XCTAssertEqual(tr.missingProposals, [k2])
        XCTAssertEqual(tr.excluded, 1)
        let noProposals = AVAEntries.training(groundTruth: gt, proposals: nil, excluded: [], classes: AVAClassIndex(ids: [2]))
        XCTAssertEqual(noProposals.entries.map(\.key), [k2, k3])
    }
}
