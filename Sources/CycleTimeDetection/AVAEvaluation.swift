import Foundation

/// How frame-mAP is computed; the codebases differ and researchers compare figures across them.
public struct AVAEvalProtocol: Sendable, Equatable {
    /// Detections kept per keyframe across classes (highest scores); 0 = no cap.
    public var maxDetectionsPerFrame: Int
    /// Detections at keyframes without ground truth count as false positives (else ignored).
    public var countFramesWithoutGroundTruth: Bool
    /// Classes with ground truth but no detection are left out of the mean (else they score AP 0).
    public var dropClassesWithoutDetections: Bool
    public var iouThreshold: Double

    public init(maxDetectionsPerFrame: Int, countFramesWithoutGroundTruth: Bool, dropClassesWithoutDetections: Bool, iouThreshold: Double = 0.5) {
        self.maxDetectionsPerFrame = maxDetectionsPerFrame
        self.countFramesWithoutGroundTruth = countFramesWithoutGroundTruth
        self.dropClassesWithoutDetections = dropClassesWithoutDetections
        self.iouThreshold = iouThreshold
    }

    /// ActivityNet's official AVA protocol: at most 50 detections per keyframe, keyframes without
    /// ground truth ignored, a class with ground truth and no detection scores 0.
    public static let official = AVAEvalProtocol(maxDetectionsPerFrame: 50, countFramesWithoutGroundTruth: false, dropClassesWithoutDetections: false)
    /// mmaction2 0.x and PySlowFast: no cap, detections at keyframes without ground truth are false positives.
    public static let mmaction2v0 = AVAEvalProtocol(maxDetectionsPerFrame: 0, countFramesWithoutGroundTruth: true, dropClassesWithoutDetections: false)
    /// mmaction2 1.x: no cap, keyframes without ground truth ignored, classes without detections dropped from the mean.
    public static let mmaction2v1 = AVAEvalProtocol(maxDetectionsPerFrame: 0, countFramesWithoutGroundTruth: false, dropClassesWithoutDetections: true)

    public static let named: [(name: String, value: AVAEvalProtocol)] = [
        ("official", .official), ("mmaction2-0.x", .mmaction2v0), ("pyslowfast", .mmaction2v0), ("mmaction2-1.x", .mmaction2v1),
    ]
    public static func named(_ s: String) -> AVAEvalProtocol? { named.first { $0.name == s.lowercased() }?.value }
}

/// Frame-mAP result: AP per label-map class that has ground truth (nil = not in the mean).
/// Also what `cycletime ava eval --json` prints (snake_case keys, a missing AP or mAP as null).
public struct AVAEvalResult: Sendable, Codable {
    public struct ClassResult: Sendable, Codable {
        public let id: Int
        public let name: String
        public let groundTruth: Int
        public let detections: Int
        /// nil when the class has no ground truth, or is dropped for having no detection.
        public let ap: Double?

        enum CodingKeys: String, CodingKey { case id, name, groundTruth = "ground_truth", detections, ap }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id); try c.encode(name, forKey: .name)
            try c.encode(groundTruth, forKey: .groundTruth); try c.encode(detections, forKey: .detections)
            try c.encode(ap, forKey: .ap)
        }
    }
    public let classes: [ClassResult]
    /// Mean over the classes with an AP; nil when no class has one.
    public let mAP: Double?
    public let evaluatedFrames: Int
    public let excludedFrames: Int
    public let framesWithoutGroundTruth: Int
    /// The protocol's name on the command line (`--protocol`), when known.
    public var protocolName: String? = nil
    /// mAP by frequency bin (`byFrequency`), when asked for.
    public var bins: [BinResult]? = nil

    enum CodingKeys: String, CodingKey {
        case classes, mAP, evaluatedFrames = "evaluated_frames", excludedFrames = "excluded_frames"
        case framesWithoutGroundTruth = "frames_without_gt", protocolName = "protocol", bins
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(classes, forKey: .classes); try c.encode(mAP, forKey: .mAP)
        try c.encode(evaluatedFrames, forKey: .evaluatedFrames); try c.encode(excludedFrames, forKey: .excludedFrames)
        try c.encode(framesWithoutGroundTruth, forKey: .framesWithoutGroundTruth)
        try c.encodeIfPresent(protocolName, forKey: .protocolName)
        try c.encodeIfPresent(bins, forKey: .bins)
    }
}

/// Classes binned by frequency: sorted by box count (most first, ties by id), the first third is
/// `head`, the next `mid`, the rest `tail` (classes without boxes are tail). mmaction2 and
/// PySlowFast fix no bins; thirds of the classes by training count is the split long-tail AVA
/// analyses report.
public struct AVAFrequencyBins: Sendable, Equatable {
    public enum Bin: String, Sendable, CaseIterable { case head, mid, tail }
    public let bins: [Int: Bin]

    public init(counts: [Int: Int], classes: [Int]? = nil) {
        let ids = (classes ?? Array(counts.keys)).sorted { (counts[$0] ?? 0, -$0) > (counts[$1] ?? 0, -$1) }
        var b: [Int: Bin] = [:]
        let n = ids.count
        for (i, id) in ids.enumerated() { b[id] = 3 * i < n ? .head : (3 * i < 2 * n ? .mid : .tail) }
        bins = b
    }
    public func bin(of id: Int) -> Bin? { bins[id] }
    public func classes(in bin: Bin) -> [Int] { bins.filter { $0.value == bin }.map(\.key).sorted() }
}

extension AVAEvalResult {
    /// The mAP of one frequency bin: the mean AP of its classes that have one.
    public struct BinResult: Sendable, Codable, Equatable {
        public let bin: String
        public let classes: [Int]
        public let mAP: Double?
    }

    /// The classes with ground truth binned by `counts` (boxes per class: the training split's, or
    /// by default this evaluation's ground truth), and each bin's mean AP, head first.
    public func byFrequency(counts: [Int: Int]? = nil) -> [BinResult] {
        let scored = classes.filter { $0.groundTruth > 0 }
        let bins = AVAFrequencyBins(counts: counts ?? Dictionary(uniqueKeysWithValues: scored.map { ($0.id, $0.groundTruth) }),
                                    classes: scored.map(\.id))
        return AVAFrequencyBins.Bin.allCases.map { bin in
            let ids = bins.classes(in: bin)
            let aps = scored.filter { ids.contains($0.id) }.compactMap(\.ap)
            return BinResult(bin: bin.rawValue, classes: ids, mAP: aps.isEmpty ? nil : aps.reduce(0, +) / Double(aps.count))
        }
    }
}

/// One detection inside a keyframe, in the evaluation's order.
struct FrameDetection {
    let score: Double
    let action: Int
    let box: AVABox
    /// The official tuple order (score, action_id, y1, x1, y2, x2), used for heap ties.
    func less(_ o: FrameDetection) -> Bool {
        let a = [score, Double(action), box.y1, box.x1, box.y2, box.x2]
        let b = [o.score, Double(o.action), o.box.y1, o.box.x1, o.box.y2, o.box.x2]
        for i in 0..<6 where a[i] != b[i] { return a[i] < b[i] }
        return false
    }
}

/// The top-`capacity` detections of a keyframe, kept exactly as the official `read_csv` does with
/// Python's heapq (so ties at the cut and the resulting order match it).
struct PyHeap {
    var items: [FrameDetection] = []
    let capacity: Int

    mutating func offer(_ d: FrameDetection) {
        if capacity < 1 || items.count < capacity {
            items.append(d); siftDown(0, items.count - 1)
        } else if d.score > items[0].score {
            items[0] = d; siftUp(0)
        }
    }
    private mutating func siftDown(_ start: Int, _ p: Int) {
        var pos = p
        let new = items[pos]
        while pos > start {
            let parent = (pos - 1) >> 1
            if new.less(items[parent]) { items[pos] = items[parent]; pos = parent; continue }
            break
        }
        items[pos] = new
    }
    private mutating func siftUp(_ p: Int) {
        var pos = p
        let end = items.count, start = p, new = items[pos]
        var child = 2 * pos + 1
        while child < end {
            let right = child + 1
            if right < end && !items[child].less(items[right]) { child = right }
            items[pos] = items[child]; pos = child; child = 2 * pos + 1
        }
        items[pos] = new
        siftDown(start, pos)
    }
    /// Descending score, stable over the heap's array order (Python's `sorted(key=-score)`).
    func sortedDescending() -> [FrameDetection] {
        items.enumerated().sorted { $0.element.score != $1.element.score ? $0.element.score > $1.element.score : $0.offset < $1.offset }.map(\.element)
    }
}

/// VOC all-point average precision of detections (score, is true positive) against `numGT`
/// ground-truth instances. No detection gives 0.
public func vocAveragePrecision(_ dets: [(score: Double, tp: Bool)], numGT: Int) -> Double {
    guard numGT > 0, !dets.isEmpty else { return 0 }
    let curve = precisionRecall(dets, numGT: numGT)
    var precision = [0] + curve.precision + [0], recall = [0] + curve.recall + [1]
    for i in stride(from: precision.count - 2, through: 0, by: -1) { precision[i] = max(precision[i], precision[i + 1]) }
    var ap = 0.0
    for i in 1..<recall.count where recall[i] != recall[i - 1] { ap += (recall[i] - recall[i - 1]) * precision[i] }
    return ap
}

/// Precision and recall after each detection, taken in descending score order (numpy's
/// argsort(scores)[::-1]: ties in reverse index order), not interpolated: the curve `vocAveragePrecision`
/// integrates.
public func precisionRecall(_ dets: [(score: Double, tp: Bool)], numGT: Int) -> (precision: [Double], recall: [Double]) {
    let order = dets.indices.sorted { dets[$0].score != dets[$1].score ? dets[$0].score < dets[$1].score : $0 < $1 }.reversed()
    var precision: [Double] = [], recall: [Double] = []
    var tp = 0.0, fp = 0.0
    for i in order {
        if dets[i].tp { tp += 1 } else { fp += 1 }
        precision.append(tp / (tp + fp)); recall.append(numGT > 0 ? tp / Double(numGT) : 0)
    }
    return (precision, recall)
}

/// Greedy matching of one class's detections (already in descending score order) to ground truth:
/// each detection goes to its best-IoU box (first on ties); it is a true positive when that IoU
/// reaches the threshold and the box is not yet taken, else a false positive.
func matchDetections(_ dets: [AVABox], to gt: [AVABox], iouThreshold: Double) -> [Bool] {
    var taken = [Bool](repeating: false, count: gt.count)
    return dets.map { d in
        guard !gt.isEmpty else { return false }
        var best = 0, bestIoU = -1.0
        for (j, g) in gt.enumerated() { let v = d.iou(g); if v > bestIoU { bestIoU = v; best = j } }
        if bestIoU >= iouThreshold && !taken[best] { taken[best] = true; return true }
        return false
    }
}

/// Frame-mAP at IoU 0.5 of AVA detections against ground truth (rows already restricted to the
/// label map's classes, e.g. by `AVACSV.read(labelMap:)`).
public func evaluateAVA(groundTruth: [AVARow], detections: [AVARow], labelMap: AVALabelMap,
                        excluded: Set<AVAKey> = [], protocol p: AVAEvalProtocol = .official) -> AVAEvalResult {
    let classIDs = Set(labelMap.ids)
    // Ground truth per keyframe (excluded keyframes dropped).
    var gt: [AVAKey: [(box: AVABox, action: Int)]] = [:]
    var excludedFrames = Set<AVAKey>()
    for r in groundTruth where classIDs.contains(r.actionID) {
        if excluded.contains(r.key) { excludedFrames.insert(r.key); continue }
        gt[r.key, default: []].append((r.box, r.actionID))
    }
    var numGT: [Int: Int] = [:]
    for list in gt.values { for g in list { numGT[g.action, default: 0] += 1 } }

    // Detections per keyframe, capped as the protocol says, in order of first appearance.
    var heaps: [AVAKey: PyHeap] = [:], order: [AVAKey] = []
    for r in detections where classIDs.contains(r.actionID) {
        if heaps[r.key] == nil { order.append(r.key) }
        heaps[r.key, default: PyHeap(capacity: p.maxDetectionsPerFrame)].offer(FrameDetection(score: r.extra ?? 1, action: r.actionID, box: r.box))
    }

    var perClass: [Int: [(score: Double, tp: Bool)]] = [:]
    var withoutGT = 0, evaluated = 0
    for key in order {
        if excluded.contains(key) { excludedFrames.insert(key); continue }
        let frameGT = gt[key]
        if frameGT == nil {
            withoutGT += 1
            if !p.countFramesWithoutGroundTruth { continue }
        }
        evaluated += 1
        // Invalid boxes (x2 <= x1 or y2 <= y1) are removed, as the official per-image evaluation does.
        let dets = (heaps[key]?.sortedDescending() ?? []).filter { $0.box.y1 < $0.box.y2 && $0.box.x1 < $0.box.x2 }
        for c in Set(dets.map(\.action)) {
            let cd = dets.filter { $0.action == c }
            let cg = (frameGT ?? []).filter { $0.action == c }.map(\.box)
            let tp = matchDetections(cd.map(\.box), to: cg, iouThreshold: p.iouThreshold)
            perClass[c, default: []] += zip(cd, tp).map { ($0.score, $1) }
        }
    }
    evaluated += gt.keys.filter { heaps[$0] == nil }.count

    var classes: [AVAEvalResult.ClassResult] = []
    var aps: [Double] = []
    for e in labelMap.entries {
        let n = numGT[e.id] ?? 0, dets = perClass[e.id] ?? []
        var ap: Double?
        if n > 0 && !(dets.isEmpty && p.dropClassesWithoutDetections) { ap = vocAveragePrecision(dets, numGT: n) }
        if let ap { aps.append(ap) }
        classes.append(.init(id: e.id, name: e.name, groundTruth: n, detections: dets.count, ap: ap))
    }
    return AVAEvalResult(classes: classes, mAP: aps.isEmpty ? nil : aps.reduce(0, +) / Double(aps.count),
                         evaluatedFrames: evaluated, excludedFrames: excludedFrames.count, framesWithoutGroundTruth: withoutGT)
}

/// Person AP of detected boxes against ground-truth boxes, PASCAL VOC style.
public struct PersonAP: Sendable, Equatable, Codable {
    /// All-point interpolated average precision (VOC 2010+; 0 when there is no detection).
    public var ap: Double
    public var groundTruth: Int
    public var detections: Int
    public var truePositives: Int
    /// The precision-recall curve: after each detection in descending score order (`precisionRecall`).
    public var precision: [Double] = []
    public var recall: [Double] = []
}

/// VOC all-point AP at `iouThreshold` of `detections` against `groundTruth` (boxes per keyframe):
/// within a keyframe, detections in descending score order each take their best-IoU ground-truth
/// box (first on ties), a true positive when the IoU reaches the threshold and the box is not yet
/// taken; then precision/recall over all detections by descending score (`vocAveragePrecision`).
/// Detections at keyframes without ground truth are false positives. nil without ground truth.
public func evaluatePersonAP(groundTruth: [AVAKey: [AVABox]], detections: [AVAKey: [ScoredBox]], iouThreshold: Double = 0.5) -> PersonAP? {
    let numGT = groundTruth.values.reduce(0) { $0 + $1.count }
    guard numGT > 0 else { return nil }
    var scored: [(score: Double, tp: Bool)] = []
    for key in detections.keys.sorted() {
        let dets = (detections[key] ?? []).enumerated()
            .sorted { $0.element.score != $1.element.score ? $0.element.score > $1.element.score : $0.offset < $1.offset }.map(\.element)
        let tp = matchDetections(dets.map(\.box), to: groundTruth[key] ?? [], iouThreshold: iouThreshold)
        scored += zip(dets, tp).map { ($0.score, $1) }
    }
    let curve = precisionRecall(scored, numGT: numGT)
    return PersonAP(ap: vocAveragePrecision(scored, numGT: numGT), groundTruth: numGT, detections: scored.count,
                    truePositives: scored.filter(\.tp).count, precision: curve.precision, recall: curve.recall)
}
