import CJPEG
import CPNG
import CycleTimeCore
import Foundation

/// An 8-bit image, row-major, interleaved channels. For an indexed (palette) image `pixels` holds
/// palette INDICES (one channel) and `palette` the RGB colours.
public struct Image: Equatable, Sendable {
    public var width: Int
    public var height: Int
    /// 1 gray (or palette indices), 2 gray+alpha, 3 RGB, 4 RGBA.
    public var channels: Int
    public var pixels: [UInt8]
    /// RGB triples of an indexed image (nil for a direct-colour image).
    public var palette: [[UInt8]]?

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8], palette: [[UInt8]]? = nil) {
        precondition(pixels.count == width * height * channels, "Image: \(pixels.count) bytes for \(width)x\(height)x\(channels)")
        self.width = width; self.height = height; self.channels = channels; self.pixels = pixels; self.palette = palette
    }

    public var isIndexed: Bool { palette != nil }

    /// RGB24 bytes (palette images expanded through the palette, gray replicated, alpha dropped).
    public func rgbBytes() -> [UInt8] {
        if channels == 3 && palette == nil { return pixels }
        let n = width * height
        var out = [UInt8](repeating: 0, count: n * 3)
        for i in 0..<n {
            if let pal = palette {
                let idx = Int(pixels[i])
                let c = idx < pal.count ? pal[idx] : [0, 0, 0]
                out[3 * i] = c[0]; out[3 * i + 1] = c[1]; out[3 * i + 2] = c[2]
            } else if channels <= 2 {
                let v = pixels[i * channels]
                out[3 * i] = v; out[3 * i + 1] = v; out[3 * i + 2] = v
            } else {
                for c in 0..<3 { out[3 * i + c] = pixels[i * channels + c] }
            }
        }
        return out
    }

    /// Float32 RGB tensor [3,H,W] with values in 0...1, optionally normalized `(x - mean) / std`.
    public func tensor(mean: [Float]? = nil, std: [Float]? = nil) -> Tensor {
        let rgb = rgbBytes()
        let t = Tensor(uninitialized: [3, height, width])
        rgb.withUnsafeBufferPointer { src in
            rgbToPlanarFloat(src.baseAddress!, rowStride: width * 3, width: width, height: height, out: t.data,
                             lut: ColorLUT(mean: mean, std: std))
        }
        return t
    }

    /// The single channel (indices, gray) as a Float tensor [H,W] (e.g. a segmentation mask).
    public func indexTensor() -> Tensor {
        let t = Tensor(uninitialized: [height, width])
        for i in 0..<(width * height) { t.data[i] = Float(pixels[i * channels]) }
        return t
    }

    // MARK: files

    /// Reads a PNG or JPEG (chosen by signature).
    public static func read(_ path: String) throws -> Image {
        guard FileManager.default.fileExists(atPath: path) else { throw MediaError(file: path, "no such file") }
        let head = (try? FileHandle(forReadingFrom: URL(fileURLWithPath: path)).read(upToCount: 8)) ?? Data()
        if head.isEmpty { throw MediaError(file: path, "empty file") }
        if head.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return try readPNG(path) }
        if head.starts(with: [0xFF, 0xD8]) { return try readJPEG(path) }
        throw MediaError(file: path, "not a PNG or JPEG image")
    }

    /// Reads a PNG through libpng. An indexed PNG gives the indices plus the palette.
    public static func readPNG(_ path: String) throws -> Image {
        var img = ct_png_image()
        var err = [CChar](repeating: 0, count: 256)
        if ct_png_read(path, &img, &err, err.count) != 0 {
            throw MediaError(file: path, "PNG: " + cstr(err))
        }
        defer { ct_png_free(img.pixels) }
        let n = Int(img.width) * Int(img.height) * Int(img.channels)
        let px = [UInt8](UnsafeBufferPointer(start: img.pixels, count: n))
        var palette: [[UInt8]]? = nil
        if img.isPalette != 0 {
            palette = withUnsafeBytes(of: &img.palette) { raw in
                (0..<Int(img.paletteCount)).map { i in [raw[3 * i], raw[3 * i + 1], raw[3 * i + 2]] }
            }
        }
        return Image(width: Int(img.width), height: Int(img.height), channels: Int(img.channels), pixels: px, palette: palette)
    }

    /// Reads a JPEG through libjpeg-turbo as RGB.
    public static func readJPEG(_ path: String) throws -> Image {
        var w: Int32 = 0, h: Int32 = 0
        var p: UnsafeMutablePointer<UInt8>? = nil
        var err = [CChar](repeating: 0, count: 256)
        if ct_jpeg_read(path, &w, &h, &p, &err, err.count) != 0 {
            throw MediaError(file: path, "JPEG: " + cstr(err))
        }
        defer { free(p) }
        let px = [UInt8](UnsafeBufferPointer(start: p, count: Int(w) * Int(h) * 3))
        return Image(width: Int(w), height: Int(h), channels: 3, pixels: px)
    }

    /// Writes a PNG through libpng (RGB, RGBA, gray, gray+alpha, or indexed keeping the palette).
    public func writePNG(_ path: String) throws {
        var err = [CChar](repeating: 0, count: 256)
        var pal = [UInt8]()
        if let palette {
            guard channels == 1, palette.count >= 1, palette.count <= 256 else {
                throw MediaError(file: path, "PNG: an indexed image needs 1 channel and 1...256 palette entries")
            }
            for c in palette { pal += [c[0], c[1], c[2]] }
            if let m = pixels.max(), Int(m) >= palette.count {
                throw MediaError(file: path, "PNG: index \(m) outside the \(palette.count)-colour palette")
            }
        }
        let rc = pixels.withUnsafeBufferPointer { px in
            pal.withUnsafeBufferPointer { pp in
                ct_png_write(path, Int32(width), Int32(height), Int32(channels), px.baseAddress, pp.baseAddress,
                             Int32(palette?.count ?? 0), &err, err.count)
            }
        }
        if rc != 0 { throw MediaError(file: path, "PNG: " + cstr(err)) }
    }

    /// Writes an RGB (or gray, expanded) image as JPEG.
    public func writeJPEG(_ path: String, quality: Int = 95) throws {
        var err = [CChar](repeating: 0, count: 256)
        let rgb = rgbBytes()
        let rc = rgb.withUnsafeBufferPointer { px in
            ct_jpeg_write(path, Int32(width), Int32(height), px.baseAddress, Int32(quality), &err, err.count)
        }
        if rc != 0 { throw MediaError(file: path, "JPEG: " + cstr(err)) }
    }

    /// Writes by extension: .png or .jpg/.jpeg.
    public func write(_ path: String) throws {
        let ext = (path as NSString).pathExtension.lowercased()
        if ext == "jpg" || ext == "jpeg" { try writeJPEG(path) } else { try writePNG(path) }
    }

    /// An RGB image from a [3,H,W] tensor with values in 0...1 (clamped, rounded).
    public init(rgb t: Tensor) {
        precondition(t.rank == 3 && t.shape[0] == 3, "Image(rgb:) needs [3,H,W], got \(t.shape)")
        let h = t.shape[1], w = t.shape[2]
        var px = [UInt8](repeating: 0, count: w * h * 3)
        let d = t.data
        for c in 0..<3 {
            for i in 0..<(w * h) {
                let v = min(max(d[c * w * h + i] * 255 + 0.5, 0), 255)
                px[3 * i + c] = UInt8(v)
            }
        }
        self.init(width: w, height: h, channels: 3, pixels: px)
    }
}

/// Per-channel byte -> Float lookup: value(c, b) = (b/255 - mean[c]) / std[c].
public struct ColorLUT: Sendable {
    public var table: [Float]  // 3 * 256
    public init(mean: [Float]? = nil, std: [Float]? = nil) {
        let m = mean ?? [0, 0, 0], s = std ?? [1, 1, 1]
        precondition(m.count == 3 && s.count == 3, "mean and std need 3 values")
        table = [Float](repeating: 0, count: 768)
        for c in 0..<3 { for b in 0..<256 { table[c * 256 + b] = (Float(b) / 255 - m[c]) / s[c] } }
    }
}

/// Interleaved RGB24 rows -> planar Float [3,H,W] through the lookup table.
@inline(__always)
public func rgbToPlanarFloat(_ src: UnsafePointer<UInt8>, rowStride: Int, width: Int, height: Int,
                             out: UnsafeMutablePointer<Float>, lut: ColorLUT) {
    lut.table.withUnsafeBufferPointer { tb in
        let l = tb.baseAddress!
        let plane = width * height
        for y in 0..<height {
            let row = src + y * rowStride
            let o0 = out + y * width, o1 = o0 + plane, o2 = o1 + plane
            for x in 0..<width {
                o0[x] = l[Int(row[3 * x])]
                o1[x] = l[256 + Int(row[3 * x + 1])]
                o2[x] = l[512 + Int(row[3 * x + 2])]
            }
        }
    }
}
