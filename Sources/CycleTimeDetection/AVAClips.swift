import CycleTimeModels
import CycleTimeNN

/// Which frames make the clip around an AVA keyframe, counted as PySlowFast counts them: frames of
/// the 900-1800 s window extracted at `fps` (30), numbered from 1, keyframe at second s =
/// frame fps * (s - 900) + 1; the clip is T frames at interval tau centred on it,
/// range(center - T * tau / 2, center + T * tau / 2, tau), clamped to the available frames.
public struct AVAClipSampler: Sendable, Equatable {
    public var frames: Int
    public var interval: Int
    public var fps: Int
    public var windowStart: Int

    public init(frames: Int, interval: Int, fps: Int = 30, windowStart: Int = 900) {
        precondition(frames > 0 && interval > 0 && fps > 0, "AVAClipSampler: frames, interval and fps must be positive")
        self.frames = frames; self.interval = interval; self.fps = fps; self.windowStart = windowStart
    }

    /// 1-based frame number of the keyframe at second `timestamp`.
    public func keyframe(_ timestamp: Int) -> Int { fps * (timestamp - windowStart) + 1 }

    /// 1-based frame numbers of the clip, shifted by `jitter` frames (training), clamped to
    /// 1...frameCount when given.
    public func frameNumbers(_ timestamp: Int, jitter: Int = 0, frameCount: Int? = nil) -> [Int] {
        let center = keyframe(timestamp) + jitter
        let start = center - frames * interval / 2
        return (0..<frames).map { i in
            let f = start + i * interval
            guard let n = frameCount else { return f }
            return min(max(f, 1), n)
        }
    }
}

/// Backbone (a): the 2D encoder applied to every frame, features averaged over time:
/// [N, 3, T, H, W] -> [N, C, 1, h, w].
public final class FrameAveragedBackbone: Module {
    public let encoder: ResNet

    public init(encoder: ResNet) { self.encoder = encoder; super.init() }

    public override func callAsFunction(_ x: Tensor) -> Tensor {
        precondition(x.rank == 5, "FrameAveragedBackbone: input must be [N, C, T, H, W], got \(x.shape)")
        let n = x.shape[0], c = x.shape[1], t = x.shape[2], h = x.shape[3], w = x.shape[4]
        let frames = x.permuted([0, 2, 1, 3, 4]).reshaped([n * t, c, h, w])
        let f = encoder(frames)
        let fc = f.shape[1], fh = f.shape[2], fw = f.shape[3]
        return f.reshaped([n, t, fc, fh, fw]).mean(axis: 1, keepdim: false).reshaped([n, fc, 1, fh, fw])
    }
}
