import CycleTimeData
import CycleTimeVideo
import Foundation

/// VIP part segmentation: mIoU over the classes from one confusion matrix over all scored frames.
public struct ConfusionMatrix: Sendable {
    public let classes: Int
    /// counts[gt * classes + pred]
    public private(set) var counts: [Int]
    /// Ground-truth pixels of each class predicted as an id outside 0..<classes (wrong, no column).
    public private(set) var outside: [Int]
    public init(classes: Int) {
        self.classes = classes
        counts = [Int](repeating: 0, count: classes * classes); outside = [Int](repeating: 0, count: classes)
    }

    /// Adds a frame; ground-truth values outside 0..<classes (e.g. 255) are ignored, predicted
    /// values outside count as wrong.
    public mutating func add(groundTruth gt: [UInt8], prediction pred: [UInt8]) {
        precondition(gt.count == pred.count)
        for i in 0..<gt.count {
            let g = Int(gt[i]), p = Int(pred[i])
            guard g < classes else { continue }
            if p < classes { counts[g * classes + p] += 1 } else { outside[g] += 1 }
        }
    }

    /// IoU per class (nan when the class is absent from both) and their mean over present classes.
    public func iou() -> (perClass: [Double], mean: Double) {
        var per: [Double] = []
        for k in 0..<classes {
            let tp = counts[k * classes + k]
            var row = 0, col = 0
            for j in 0..<classes { row += counts[k * classes + j]; col += counts[j * classes + k] }
            row += outside[k]
            let union = row + col - tp
            per.append(union == 0 ? .nan : Double(tp) / Double(union))
        }
        let present = per.filter { !$0.isNaN }
        return (per, present.isEmpty ? .nan : present.reduce(0, +) / Double(present.count))
    }
}

/// What `cycletime eval vip` writes to `miou.json`: keys `miou` and `per_class` (nan = a class
/// absent from ground truth and predictions).
public struct VIPResult: Sendable, Codable, Equatable {
    /// IoU of each class 0..<classes.
    public var perClass: [Double]
    /// Mean IoU over the present classes.
    public var mean: Double
    public init(perClass: [Double], mean: Double) { self.perClass = perClass; self.mean = mean }
    enum CodingKeys: String, CodingKey { case perClass = "per_class", mean = "miou" }
}

public enum VIPEvaluation {
    public static let classes = 20

    /// mIoU of `<results>/<video>/<frame>.png` against the VIP category masks (frames with a
    /// ground-truth mask, the first frame of each video excluded as it is given).
    public static func evaluate(root: String, results: String, split: String = "val") throws -> VIPResult {
        let ds: VIPDataset
        do { ds = try VIPDataset(root: root, split: split) } catch { throw EvaluationError("\(error)") }
        var cm = ConfusionMatrix(classes: classes)
        for name in ds.videoNames {
            let v: VIPVideo
            do { v = try ds.video(name) } catch { throw EvaluationError("\(error)") }
            for (i, gp) in v.maskPaths.sorted(by: { $0.key < $1.key }) where i > 0 {
                let stem = ((gp as NSString).lastPathComponent as NSString).deletingPathExtension
                let pp = results + "/\(name)/\(stem).png"
                guard FileManager.default.fileExists(atPath: pp) else { throw EvaluationError("\(pp): missing result frame (video '\(name)', frame '\(stem)')") }
                let g = try DAVISEvaluation.readLabels(gp), p = try DAVISEvaluation.readLabels(pp)
                guard g.width == p.width && g.height == p.height else { throw EvaluationError("\(pp): \(p.width)x\(p.height), the mask is \(g.width)x\(g.height)") }
                cm.add(groundTruth: g.pixels, prediction: p.pixels)
            }
        }
        let r = cm.iou()
        return VIPResult(perClass: r.perClass, mean: r.mean)
    }
}
