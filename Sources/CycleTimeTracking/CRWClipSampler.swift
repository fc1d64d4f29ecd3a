import Foundation
import CycleTimeCore

// The CRW training input, as the released code's transforms (frame_transforms 'crop', frame_aug
// 'grid'): each frame gets its own torchvision RandomResizedCrop to 256x256 (scale 0.8-0.95,
// ratio 0.7-1.3); a 7x7 grid of 64x64 windows with stride 32 is cut from it (skimage
// view_as_windows, row-major), and every window gets its own RandomResizedCrop back to 64x64
// (scale 0.7-0.9, torchvision's default ratio 3/4-4/3). Resizing is bilinear with half-pixel
// centres (F.interpolate, align_corners false, no antialiasing; the released code resizes PIL
// images). Frames come normalized: normalization is a per-channel affine map, so applying it
// before the (linear) crops and resizes gives the same patches as the released order.

/// A crop box in pixels.
public struct CropBox: Sendable, Equatable {
    public var top: Int, left: Int, height: Int, width: Int
    public init(top: Int, left: Int, height: Int, width: Int) {
        self.top = top; self.left = left; self.height = height; self.width = width
    }
}

/// Samples the patch grid of CRW clips; every random choice comes from the generator passed in.
public struct CRWClipSampler: Sendable {
    public var config: CRWConfig

    public init(config: CRWConfig = CRWConfig()) { self.config = config }

    /// torchvision's RandomResizedCrop.get_params: up to 10 draws of an area fraction in `scale`
    /// and a log-uniform aspect ratio in `ratio`; the first box that fits is placed uniformly; else
    /// the central crop with the ratio clamped to `ratio`.
    public static func randomResizedCropBox(height: Int, width: Int, scale: ClosedRange<Double>, ratio: ClosedRange<Double>,
                                            generator: inout RandomGenerator) -> CropBox {
        let area = Double(height * width)
        let logLo = Foundation.log(ratio.lowerBound), logHi = Foundation.log(ratio.upperBound)
        for _ in 0..<10 {
            let target = area * generator.uniform(scale.lowerBound, scale.upperBound)
            let aspect = Foundation.exp(generator.uniform(logLo, logHi))
            let w = Int((target * aspect).squareRoot().rounded())
            let h = Int((target / aspect).squareRoot().rounded())
            if w > 0 && w <= width && h > 0 && h <= height {
                let top = generator.int(below: height - h + 1)
                let left = generator.int(below: width - w + 1)
                return CropBox(top: top, left: left, height: h, width: w)
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < ratio.lowerBound {
            h = Int((Double(w) / ratio.lowerBound).rounded())
        } else if inRatio > ratio.upperBound {
            w = Int((Double(h) * ratio.upperBound).rounded())
        }
        return CropBox(top: (height - h) / 2, left: (width - w) / 2, height: h, width: w)
    }

    /// Bilinear resize (half-pixel centres, as F.interpolate with align_corners false) of the box
    /// of every channel of the planar image `src` [channels, height, width] to [channels, outH, outW].
    public static func resizeCrop(_ src: UnsafePointer<Float>, channels: Int, height: Int, width: Int, box: CropBox,
                                  outHeight: Int, outWidth: Int, into dst: UnsafeMutablePointer<Float>) {
        precondition(box.top >= 0 && box.left >= 0 && box.height >= 1 && box.width >= 1
                     && box.top + box.height <= height && box.left + box.width <= width,
                     "resizeCrop: box \(box) outside the \(height)x\(width) image")
        func taps(_ outSize: Int, _ inSize: Int, _ start: Int) -> [(Int, Int, Float)] {
            let s = Float(inSize) / Float(outSize)
            return (0..<outSize).map { o in
                let f = max(0, (Float(o) + 0.5) * s - 0.5)
                let i0 = min(Int(f), inSize - 1)
                return (start + i0, start + min(i0 + 1, inSize - 1), f - Float(i0))
            }
        }
        let ys = taps(outHeight, box.height, box.top), xs = taps(outWidth, box.width, box.left)
        for c in 0..<channels {
            let plane = src + c * height * width, out = dst + c * outHeight * outWidth
            for (oy, (y0, y1, wy)) in ys.enumerated() {
                let r0 = plane + y0 * width, r1 = plane + y1 * width, o = out + oy * outWidth
                for (ox, (x0, x1, wx)) in xs.enumerated() {
                    let top = r0[x0] * (1 - wx) + r0[x1] * wx
                    let bottom = r1[x0] * (1 - wx) + r1[x1] * wx
                    o[ox] = top * (1 - wy) + bottom * wy
                }
            }
        }
    }

    /// Patches [T, N, 3, p, p] of one clip of normalized frames [T, 3, H, W].
    public func patches(frames: Tensor, generator: inout RandomGenerator) -> Tensor {
        precondition(frames.rank == 4 && frames.shape[1] == 3, "CRWClipSampler: frames must be [T, 3, H, W], got \(frames.shape)")
        let c = config
        let t = frames.shape[0], h = frames.shape[2], w = frames.shape[3]
        let side = c.imageSize, p = c.patchSize, grid = c.gridSide, n = grid * grid
        let out = Tensor(uninitialized: [t, n, 3, p, p])
        let frame = Tensor(uninitialized: [3, side, side])
        for f in 0..<t {
            let box = Self.randomResizedCropBox(height: h, width: w, scale: c.frameCropScale, ratio: c.frameCropAspect, generator: &generator)
            Self.resizeCrop(frames.data + f * 3 * h * w, channels: 3, height: h, width: w, box: box,
                            outHeight: side, outWidth: side, into: frame.data)
            for gy in 0..<grid {
                for gx in 0..<grid {
                    var jitter = Self.randomResizedCropBox(height: p, width: p, scale: c.patchJitterScale, ratio: c.patchJitterAspect,
                                                           generator: &generator)
                    jitter.top += gy * c.patchStride
                    jitter.left += gx * c.patchStride
                    Self.resizeCrop(frame.data, channels: 3, height: side, width: side, box: jitter, outHeight: p, outWidth: p,
                                    into: out.data + ((f * n) + gy * grid + gx) * 3 * p * p)
                }
            }
        }
        return out
    }

    /// A batch of clips [B, T, 3, H, W] -> patches [B, T, N, 3, p, p] (clip after clip from one generator).
    public func patches(clips: Tensor, generator: inout RandomGenerator) -> Tensor {
        precondition(clips.rank == 5, "CRWClipSampler: clips must be [B, T, 3, H, W], got \(clips.shape)")
        let b = clips.shape[0]
        let per = clips.count / max(1, b)
        let items = (0..<b).map { i -> Tensor in
            let clip = Tensor(uninitialized: Array(clips.shape.dropFirst()))
            clip.data.update(from: clips.data + i * per, count: per)
            return patches(frames: clip, generator: &generator)
        }
        return Tensor.stack(items, axis: 0)
    }
}
