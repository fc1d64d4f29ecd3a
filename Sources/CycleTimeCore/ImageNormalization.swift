import Foundation

/// Per-channel normalization of RGB values in [0, 1]: x' = (x - mean) / std, as torchvision's
/// `transforms.Normalize`. The one home of these statistics: configs default to these values,
/// encoder specs record them, and data pipelines apply them.
public struct Normalization: Sendable, Equatable, Codable, CustomStringConvertible {
    public var mean: [Float]
    public var std: [Float]

    public init(mean: [Float], std: [Float]) {
        self.mean = mean; self.std = std
    }

    /// ImageNet's statistics (torchvision's pretrained models; the TimeCycle recipe and the released
    /// CRW and TimeCycle test code, whatever the encoder was trained with).
    public static let imagenet = Normalization(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

    /// The released contrastive random walk training pipeline's IMG_MEAN / IMG_STD.
    public static let crw = Normalization(mean: [0.4914, 0.4822, 0.4465], std: [0.2023, 0.1994, 0.2010])

    /// Three finite means and three finite, positive standard deviations.
    public var isValid: Bool {
        mean.count == 3 && std.count == 3 && mean.allSatisfy(\.isFinite) && std.allSatisfy { $0.isFinite && $0 > 0 }
    }

    /// The form kept in checkpoint metadata: "mean m0,m1,m2 std s0,s1,s2".
    public var description: String {
        "mean " + mean.map { "\($0)" }.joined(separator: ",") + " std " + std.map { "\($0)" }.joined(separator: ",")
    }

    /// Parses `description`'s form; nil when it is not that form or not valid.
    public init?(_ text: String) {
        let parts = text.split(separator: " ")
        guard parts.count == 4, parts[0] == "mean", parts[2] == "std" else { return nil }
        let m = parts[1].split(separator: ",").compactMap { Float($0) }, s = parts[3].split(separator: ",").compactMap { Float($0) }
        let n = Normalization(mean: m, std: s)
        guard n.isValid else { return nil }
        self = n
    }
}
