import Foundation
import XCTest
@testable import CycleTimeData
import CycleTimeVideo
import CycleTimeCore
import TestSupport

final class DatasetsTests: XCTestCase {
    func testDAVIS() throws {
        let root = try requireSharedData("davis-mini")
        let ds = try DAVISDataset(root: root, set: "val")
        XCTAssertEqual(ds.sequenceNames, ["blackswan", "car-shadow", "dog", "libby"])  // val.txt order
        let counts = try ds.sequenceNames.map { try ds.sequence($0).frameCount }
        XCTAssertEqual(counts, [50, 40, 60, 49])  // README of the data
        let s = try ds.sequence(at: 0)
        XCTAssertEqual(s.annotationPaths.count, 50)
        XCTAssertEqual(try s.objectIds(), [1])
        let pal = try s.palette()
        XCTAssertEqual(pal[0], [0, 0, 0]); XCTAssertEqual(pal[1], [128, 0, 0])
        let m = try s.firstMask()
        XCTAssertEqual(m.width, 854); XCTAssertEqual(m.height, 480)
        let f = try s.frame(0)
        XCTAssertEqual(f.shape, [3, 480, 854])
    }

    func testJHMDB() throws {
        let root = try requireSharedData("jhmdb-mini")
        let ds = try JHMDBDataset(root: root)
        XCTAssertEqual(ds.clips.count, 1)
        let c = ds.clips[0]
        XCTAssertEqual(c.className, "catch")
        XCTAssertEqual(c.frameCount, 40)
        XCTAssertEqual(try c.frame(0).shape, [3, 240, 320])
        let j = try c.joints()
        XCTAssertEqual(j.shape, [40, 15, 2])
        // scipy.io.loadmat(...)['pos_img'][:, 0, 0] = (286.5, 106.5); [:, 14, 39] = (178.414..., 225.572...).
        XCTAssertEqual(j[0, 0, 0], 286.5); XCTAssertEqual(j[0, 0, 1], 106.5)
        XCTAssertEqual(j[39, 14, 0], 178.41439478, accuracy: 1e-4); XCTAssertEqual(j[39, 14, 1], 225.57242713, accuracy: 1e-4)
        let pm = try c.puppetMask()
        XCTAssertEqual(pm.shape, [40, 240, 320])
        var s5: Float = 0
        for i in 0..<(240 * 320) { s5 += pm.data[5 * 240 * 320 + i] }
        XCTAssertEqual(s5, 2391)  // scipy: part_mask[:, :, 5].sum()
    }

    func testJHMDBSplitList() throws {
        let root = try requireSharedData("jhmdb-mini")
        let splits = temporaryDirectory()
        let clip = "Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"
        try "\(clip).avi 2\nother_clip.avi 1\n".write(toFile: splits + "/catch_test_split1.txt", atomically: true, encoding: .utf8)
        XCTAssertEqual(try JHMDBDataset(root: root, splitDir: splits, split: 1, train: false).clips.map(\.name), [clip])
        XCTAssertEqual(try JHMDBDataset(root: root, splitDir: splits, split: 1, train: true).clips.count, 0)
    }

    func testVIPLayout() throws {
        // A VIP-layout folder written here: Images/<video>/*.jpg, Annotations/Category_ids/<video>/*.png.
        let root = temporaryDirectory()
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/Images/videoA", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/Annotations/Category_ids/videoA", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/lists", withIntermediateDirectories: true)
        try "videoA\n".write(toFile: root + "/lists/val_videos.txt", atomically: true, encoding: .utf8)
        for i in 0..<3 {
            let name = String(format: "%012d", i)
            try Image(width: 8, height: 6, channels: 3, pixels: [UInt8](repeating: UInt8(40 * i), count: 144)).writeJPEG(root + "/Images/videoA/\(name).jpg")
            if i != 1 {
                let mask = (0..<48).map { UInt8(($0 + i) % 20) }
                try Image(width: 8, height: 6, channels: 1, pixels: mask).writePNG(root + "/Annotations/Category_ids/videoA/\(name).png")
            }
        }
        let ds = try VIPDataset(root: root)
        XCTAssertEqual(ds.videoNames, ["videoA"])
        let v = try ds.video("videoA")
        XCTAssertEqual(v.framePaths.count, 3)
        XCTAssertEqual(Set(v.maskPaths.keys), [0, 2])
        let m = try v.mask(2)
        XCTAssertEqual(m.shape, [6, 8])
        XCTAssertEqual(m[0, 0], 2); XCTAssertEqual(m[0, 1], 3)
        XCTAssertThrowsError(try v.mask(1))
        XCTAssertEqual(try v.frame(0).shape, [3, 6, 8])
    }

    func testMissingLayoutsAreErrors() {
        XCTAssertThrowsError(try JHMDBDataset(root: "/nonexistent"))
        XCTAssertThrowsError(try DAVISDataset(root: "/nonexistent"))
        XCTAssertThrowsError(try VIPDataset(root: "/nonexistent"))
    }
}
