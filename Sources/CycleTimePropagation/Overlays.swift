import CycleTimeCore
import CycleTimeVideo
import Foundation

/// `--overlays` of the propagate commands: each frame with its propagated labels drawn on it, as
/// `<dir>/<frame>.png` and the whole sequence as `<dir>.mp4`. Both are written under temporary
/// names (`AtomicFile`) and renamed by `finish()`, so an interrupted run leaves no overlay that
/// looks complete.
public final class OverlayWriter {
    let dir: String, partial: String, videoPath: String, videoPartial: String
    let fps: Double
    private var video: VideoWriter?

    public init(dir: String, fps: Double) throws {
        self.dir = dir; self.fps = fps
        partial = AtomicFile.temporaryPath(for: dir)
        videoPath = dir + ".mp4"
        videoPartial = AtomicFile.temporaryPath(for: videoPath)
        try? FileManager.default.removeItem(atPath: partial)
        try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: true)
    }

    /// Adds frame `stem` (frames must come in order).
    public func add(_ canvas: Canvas, stem: String) throws {
        do {
            try canvas.image.writePNG(partial + "/" + stem + ".png")
            // The encoder needs even sizes: drop a last odd row or column.
            let w = canvas.width & ~1, h = canvas.height & ~1
            if video == nil { video = try VideoWriter(path: videoPartial, width: w, height: h, fps: fps) }
            let c = (w == canvas.width && h == canvas.height) ? canvas : canvas.cropped(x: 0, y: 0, width: w, height: h)
            try video?.write(rgb: c.rgb)
        } catch { throw EvaluationError("overlays \(dir): \(error)") }
    }

    public func finish() throws {
        do {
            try video?.finish()
            video = nil
            try AtomicFile.commit(partial, to: dir)
            if FileManager.default.fileExists(atPath: videoPartial) { try AtomicFile.commit(videoPartial, to: videoPath) }
        } catch { throw EvaluationError("overlays \(dir): \(error)") }
    }

    /// A frame with a label map (palette colours at half opacity, opaque outlines).
    public static func mask(_ frame: Image, labels: [Int], width: Int, height: Int, palette: [[UInt8]]?) -> Canvas {
        var c = Canvas(image: frame)
        c.overlayLabels(labels.map { UInt8(clamping: $0) }, width: width, height: height, palette: palette, alpha: 0.5, outline: true)
        return c
    }

    /// A frame with keypoints (0-based pixels; negative = not predicted), one colour per joint.
    public static func keypoints(_ frame: Image, _ points: [Point2]) -> Canvas {
        var c = Canvas(image: frame)
        func ok(_ i: Int) -> Bool { i < points.count && points[i].x >= 0 && points[i].y >= 0 }
        for (a, b) in JHMDBEvaluation.skeleton where ok(a) && ok(b) {
            c.line(points[a].x, points[a].y, points[b].x, points[b].y, RGB(255, 255, 255), thickness: 2)
        }
        for (j, p) in points.enumerated() where ok(j) {
            c.fillCircle(cx: p.x, cy: p.y, radius: 3.5, Colormap.turbo(Double(j) / Double(max(points.count - 1, 1))))
        }
        return c
    }
}
