import CycleTimeCore
import CycleTimeVideo
import Foundation

/// Errors of dataset layouts (missing folders, malformed lists).
public struct DatasetError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let path: String
    public let message: String
    public init(_ path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "\(path): \(message)" }
    public var errorDescription: String? { description }
}

/// Sorted file names (not paths) in a folder with one of the extensions.
func listFiles(_ dir: String, extensions: Set<String>) throws -> [String] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
        throw DatasetError(dir, "no such folder")
    }
    return names.filter { extensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
}

func readLines(_ path: String) throws -> [String] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw DatasetError(path, "cannot read list file") }
    return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
}

/// Stacks [3,H,W] frames into [T,3,H,W].
public func stackFrames(_ frames: [Tensor]) -> Tensor {
    precondition(!frames.isEmpty)
    let per = frames[0].count
    let out = Tensor(uninitialized: [frames.count] + frames[0].shape)
    for (i, f) in frames.enumerated() {
        precondition(f.shape == frames[0].shape, "stackFrames: shapes differ")
        (out.data + i * per).update(from: f.data, count: per)
    }
    return out
}

// MARK: DAVIS-2017

/// One DAVIS sequence: frame and annotation paths.
public struct DAVISSequence: Sendable {
    public let name: String
    public let framePaths: [String]
    /// Annotation PNG per frame index when present (DAVIS val has every frame; others only some).
    public let annotationPaths: [Int: String]

    public var frameCount: Int { framePaths.count }
    public func frame(_ i: Int, mean: [Float]? = nil, std: [Float]? = nil) throws -> Tensor {
        try Image.read(framePaths[i]).tensor(mean: mean, std: std)
    }
    /// Indexed annotation of frame i (indices = object ids, plus the palette).
    public func annotation(_ i: Int) throws -> Image {
        guard let p = annotationPaths[i] else { throw DatasetError(name, "no annotation for frame \(i)") }
        return try Image.readPNG(p)
    }
    /// First-frame mask (object ids; 0 = background).
    public func firstMask() throws -> Image { try annotation(0) }
    /// Object ids (non-zero, sorted) present in the first-frame mask, as DAVIS-2017 defines the objects.
    public func objectIds() throws -> [Int] {
        let m = try firstMask()
        return Set(m.pixels.map(Int.init)).subtracting([0, 255]).sorted()
    }
    /// Palette of the first annotation.
    public func palette() throws -> [[UInt8]] { try firstMask().palette ?? [] }
}

/// DAVIS-2017 layout: `JPEGImages/<res>/<seq>/*.jpg`, `Annotations/<res>/<seq>/*.png`,
/// `ImageSets/2017/<set>.txt` (sequences in the order of the set file).
public struct DAVISDataset: Sendable {
    public let root: String
    public let resolution: String
    public let sequenceNames: [String]

    public init(root: String, set: String = "val", resolution: String = "480p") throws {
        self.root = root
        self.resolution = resolution
        let list = root + "/ImageSets/2017/\(set).txt"
        if FileManager.default.fileExists(atPath: list) {
            sequenceNames = try readLines(list)
        } else {
            sequenceNames = try listFiles(root + "/JPEGImages/\(resolution)", extensions: [""]).sorted()
        }
    }

    public var count: Int { sequenceNames.count }

    public func sequence(_ name: String) throws -> DAVISSequence {
        let fdir = root + "/JPEGImages/\(resolution)/\(name)"
        let adir = root + "/Annotations/\(resolution)/\(name)"
        let frames = try listFiles(fdir, extensions: ["jpg", "jpeg", "png"])
        if frames.isEmpty { throw DatasetError(fdir, "no frames") }
        let annNames = (try? listFiles(adir, extensions: ["png"])) ?? []
        var ann: [Int: String] = [:]
        let stems = Dictionary(uniqueKeysWithValues: frames.enumerated().map { (($0.element as NSString).deletingPathExtension, $0.offset) })
        for a in annNames {
            if let i = stems[(a as NSString).deletingPathExtension] { ann[i] = adir + "/" + a }
        }
        return DAVISSequence(name: name, framePaths: frames.map { fdir + "/" + $0 }, annotationPaths: ann)
    }

    public func sequence(at i: Int) throws -> DAVISSequence { try sequence(sequenceNames[i]) }

    /// The ground-truth annotations of a sequence, sorted by name: the official evaluator's frame
    /// list, whether or not each frame's JPEG is present.
    public func annotationFiles(of name: String) throws -> [String] {
        let adir = root + "/Annotations/\(resolution)/\(name)"
        return try listFiles(adir, extensions: ["png"]).map { adir + "/" + $0 }
    }
}

// MARK: JHMDB

/// One JHMDB clip: frames and 15 joints per frame.
public struct JHMDBClip: Sendable {
    public let className: String
    public let name: String
    public let framePaths: [String]
    public let jointsPath: String
    public let puppetMaskPath: String?

    public var frameCount: Int { framePaths.count }
    public func frame(_ i: Int, mean: [Float]? = nil, std: [Float]? = nil) throws -> Tensor {
        try Image.read(framePaths[i]).tensor(mean: mean, std: std)
    }

    /// Joints [T,15,2] as (x, y) in the file's 1-based pixel coordinates (`pos_img`, 2x15xT).
    public func joints() throws -> Tensor {
        let m = try MatFile.read(jointsPath)
        guard let p = m["pos_img"]?.array, p.dims.count == 3, p.dims[0] == 2 else {
            throw DatasetError(jointsPath, "no pos_img of shape 2x15xT")
        }
        let j = p.dims[1], t = p.dims[2]
        let out = Tensor(uninitialized: [t, j, 2])
        for f in 0..<t { for k in 0..<j { for c in 0..<2 { out.data[(f * j + k) * 2 + c] = Float(p[c, k, f]) } } }
        return out
    }

    /// Person mask [T,H,W] from `puppet_mask.mat` (`part_mask`, H x W x T).
    public func puppetMask() throws -> Tensor {
        guard let path = puppetMaskPath else { throw DatasetError(name, "no puppet_mask.mat") }
        let m = try MatFile.read(path)
        guard let p = m["part_mask"]?.array, p.dims.count == 3 else { throw DatasetError(path, "no part_mask of shape HxWxT") }
        let h = p.dims[0], w = p.dims[1], t = p.dims[2]
        let out = Tensor(uninitialized: [t, h, w])
        for y in 0..<h { for x in 0..<w { for f in 0..<t { out.data[(f * h + y) * w + x] = Float(p.values[(y * w + x) * t + f]) } } }
        return out
    }
}

/// JHMDB layout: `Frames/<class>/<clip>/%05d.png`, `joint_positions/<class>/<clip>/joint_positions.mat`,
/// optional `puppet_mask/<class>/<clip>/puppet_mask.mat`, and split lists
/// (`<class>_test_split<k>.txt` lines `<clip>.avi 1|2`, 1 = train, 2 = test).
public struct JHMDBDataset: Sendable {
    public let root: String
    public let clips: [JHMDBClip]

    /// All clips (classes and clips sorted), or those of a split: `splitDir` holding
    /// `<class>_test_split<split>.txt` files, `train` selecting label 1 (else 2).
    public init(root: String, splitDir: String? = nil, split: Int = 1, train: Bool = false) throws {
        self.root = root
        var selected: Set<String>? = nil
        if let splitDir {
            var s = Set<String>()
            for f in try listFiles(splitDir, extensions: ["txt"]) where f.hasSuffix("_test_split\(split).txt") {
                for line in try readLines(splitDir + "/" + f) {
                    let parts = line.split(separator: " ")
                    if parts.count >= 2, Int(parts[1]) == (train ? 1 : 2) { s.insert((String(parts[0]) as NSString).deletingPathExtension) }
                }
            }
            selected = s
        }
        var clips: [JHMDBClip] = []
        let framesRoot = root + "/Frames"
        let classes = (try? FileManager.default.contentsOfDirectory(atPath: framesRoot))?.sorted() ?? []
        if classes.isEmpty { throw DatasetError(framesRoot, "no JHMDB frame folders") }
        for c in classes {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: framesRoot + "/" + c))?.sorted() ?? []
            for n in names {
                if let selected, !selected.contains(n) { continue }
                let fdir = framesRoot + "/\(c)/\(n)"
                let frames = try listFiles(fdir, extensions: ["png", "jpg"])
                let jp = root + "/joint_positions/\(c)/\(n)/joint_positions.mat"
                guard FileManager.default.fileExists(atPath: jp) else { continue }
                let pm = root + "/puppet_mask/\(c)/\(n)/puppet_mask.mat"
                clips.append(JHMDBClip(className: c, name: n, framePaths: frames.map { fdir + "/" + $0 }, jointsPath: jp,
                                       puppetMaskPath: FileManager.default.fileExists(atPath: pm) ? pm : nil))
            }
        }
        self.clips = clips
    }
}

// MARK: VIP

/// One VIP video: frames and grayscale category masks (0 = background, 1...19 parts).
public struct VIPVideo: Sendable {
    public let name: String
    public let framePaths: [String]
    public let maskPaths: [Int: String]
    public func frame(_ i: Int, mean: [Float]? = nil, std: [Float]? = nil) throws -> Tensor {
        try Image.read(framePaths[i]).tensor(mean: mean, std: std)
    }
    /// Category mask of frame i as [H,W] (values are category ids).
    public func mask(_ i: Int) throws -> Tensor {
        guard let p = maskPaths[i] else { throw DatasetError(name, "no mask for frame \(i)") }
        return try Image.readPNG(p).indexTensor()
    }
}

/// VIP (Video Instance-level Parsing) layout: `Images/<video>/<frame>.jpg`,
/// `Annotations/Category_ids/<video>/<frame>.png`, optional `lists/<split>_videos.txt`.
public struct VIPDataset: Sendable {
    public let root: String
    public let videoNames: [String]
    public init(root: String, split: String = "val") throws {
        self.root = root
        let list = root + "/lists/\(split)_videos.txt"
        if FileManager.default.fileExists(atPath: list) { videoNames = try readLines(list) }
        else { videoNames = ((try? FileManager.default.contentsOfDirectory(atPath: root + "/Images")) ?? []).sorted() }
        if videoNames.isEmpty { throw DatasetError(root, "no VIP videos") }
    }
    public func video(_ name: String) throws -> VIPVideo {
        let fdir = root + "/Images/\(name)", mdir = root + "/Annotations/Category_ids/\(name)"
        let frames = try listFiles(fdir, extensions: ["jpg", "jpeg", "png"])
        let masks = Set((try? listFiles(mdir, extensions: ["png"])) ?? [])
        var mp: [Int: String] = [:]
        for (i, f) in frames.enumerated() {
            let m = (f as NSString).deletingPathExtension + ".png"
            if masks.contains(m) { mp[i] = mdir + "/" + m }
        }
        return VIPVideo(name: name, framePaths: frames.map { fdir + "/" + $0 }, maskPaths: mp)
    }
}
