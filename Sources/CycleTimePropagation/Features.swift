import CycleTimeCore
import CycleTimeData
import CycleTimeModels
import CycleTimeNN
import CycleTimeVideo
import Foundation

/// Per-frame features for propagation: [h*w, C] rows (cell-major), on a grid of h x w cells.
public struct FrameFeatures: Sendable {
    public var values: [Float]
    public var height: Int, width: Int, channels: Int
}

/// What turns a frame into features: a ResNet (eval mode) fed frames normalized as given (ImageNet's
/// statistics by default, as the released CRW and TimeCycle test code), or the pixels' Lab colour
/// on the stride grid. The encoder runs at `precision` (`ResNet.inference`; the affinities of
/// propagation stay float32).
public enum FeatureExtractor {
    case encoder(ResNet, l2Normalize: Bool, normalization: Normalization = .imagenet, precision: Precision = .fp32)
    case pixels(stride: Int, l2Normalize: Bool)

    /// Feature grid size for an image of height x width.
    public func gridSize(height: Int, width: Int) -> (h: Int, w: Int) {
        switch self {
        case .encoder(let m, _, _, _): return (m.outputSize(height), m.outputSize(width))
        case .pixels(let s, _): return ((height + s - 1) / s, (width + s - 1) / s)
        }
    }

    /// Features of `image`, first squashed to squareSize x squareSize (bilinear, half-pixel centres,
    /// no antialiasing) when given. Throws only for bf16 on a CPU without AVX512-BF16.
    public func features(_ image: Image, squareSize: Int? = nil) throws -> FrameFeatures {
        let chw: Tensor
        let l2: Bool
        let H = squareSize ?? image.height, W = squareSize ?? image.width
        func squashed(_ x: Tensor) -> Tensor {
            (H == image.height && W == image.width) ? x : F.interpolate(x, size: [H, W], mode: .bilinear, alignCorners: false)
        }
        switch self {
        case .encoder(let model, let norm, let normalization, let precision):
            let x = squashed(image.tensor(mean: normalization.mean, std: normalization.std).unsqueezed(axis: 0))
            chw = try model.inference(x, precision: precision)
            l2 = norm
        case .pixels(let stride, let norm):
            let (h, w) = gridSize(height: H, width: W)
            let lab = squashed(labTensor(image).unsqueezed(axis: 0))
            chw = (h == H && w == W) ? lab : F.interpolate(lab, size: [h, w], mode: .bilinear, alignCorners: false)
            _ = stride
            l2 = norm
        }
        let c = chw.shape[1], h = chw.shape[2], w = chw.shape[3], hw = h * w
        var out = [Float](repeating: 0, count: hw * c)
        let d = chw.data
        for p in 0..<hw {
            var n: Float = 0
            for k in 0..<c { let v = d[k * hw + p]; out[p * c + k] = v; n += v * v }
            if l2 {
                // torch.nn.functional.normalize: x / max(||x||, 1e-12)
                let inv = 1 / max(n.squareRoot(), 1e-12)
                for k in 0..<c { out[p * c + k] *= inv }
            }
        }
        return FrameFeatures(values: out, height: h, width: w, channels: c)
    }
}

/// CIE Lab (D65) of an image's sRGB pixels as [3, H, W], scaled to about -1...1
/// (L / 50 - 1, a / 128, b / 128).
public func labTensor(_ image: Image) -> Tensor {
    let rgb = image.rgbBytes()
    let n = image.width * image.height
    let t = Tensor(uninitialized: [3, image.height, image.width])
    var lin = [Float](repeating: 0, count: 256)
    for i in 0..<256 {
        let v = Float(i) / 255
        lin[i] = v <= 0.04045 ? v / 12.92 : powf((v + 0.055) / 1.055, 2.4)
    }
    func f(_ x: Float) -> Float { x > 0.008856 ? cbrtf(x) : 7.787 * x + 16.0 / 116 }
    let d = t.data
    for i in 0..<n {
        let r = lin[Int(rgb[3 * i])], g = lin[Int(rgb[3 * i + 1])], b = lin[Int(rgb[3 * i + 2])]
        let x = (0.412453 * r + 0.357580 * g + 0.180423 * b) / 0.950456
        let y = 0.212671 * r + 0.715160 * g + 0.072169 * b
        let z = (0.019334 * r + 0.119193 * g + 0.950227 * b) / 1.088754
        let fx = f(x), fy = f(y), fz = f(z)
        let L = y > 0.008856 ? 116 * fy - 16 : 903.3 * y
        d[i] = L / 50 - 1
        d[n + i] = 500 * (fx - fy) / 128
        d[2 * n + i] = 200 * (fy - fz) / 128
    }
    return t
}

/// Label maps: ids <-> soft one-hot maps on the feature grid.
public enum LabelMaps {
    /// One-hot [L, H, W] of `ids` (channel k = pixels equal to ids[k]) resized bilinearly
    /// (half-pixel centres, no antialiasing) to h x w, as [h*w, L] rows.
    public static func softOneHot(_ mask: [Int], height H: Int, width W: Int, ids: [Int], gridHeight h: Int, gridWidth w: Int) -> [Float] {
        let L = ids.count
        let index = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($0.element, $0.offset) })
        let t = Tensor.zeros([1, L, H, W])
        for p in 0..<(H * W) { if let k = index[mask[p]] { t.data[k * H * W + p] = 1 } }
        let r = (h == H && w == W) ? t : F.interpolate(t, size: [h, w], mode: .bilinear, alignCorners: false)
        var out = [Float](repeating: 0, count: h * w * L)
        for k in 0..<L { for p in 0..<(h * w) { out[p * L + k] = r.data[k * h * w + p] } }
        return out
    }

    /// Soft labels [h*w, L] resized bilinearly to H x W, then argmax (first maximum) mapped to ids.
    public static func hardLabels(_ soft: [Float], gridHeight h: Int, gridWidth w: Int, ids: [Int], height H: Int, width W: Int) -> [Int] {
        let L = ids.count
        let t = Tensor(uninitialized: [1, L, h, w])
        for k in 0..<L { for p in 0..<(h * w) { t.data[k * h * w + p] = soft[p * L + k] } }
        let r = (h == H && w == W) ? t : F.interpolate(t, size: [H, W], mode: .bilinear, alignCorners: false)
        var out = [Int](repeating: 0, count: H * W)
        let d = r.data, plane = H * W
        for p in 0..<plane {
            var best = 0
            var bv = d[p]
            for k in 1..<max(L, 1) where d[k * plane + p] > bv { bv = d[k * plane + p]; best = k }
            out[p] = ids[best]
        }
        return out
    }
}
