import CycleTimeCore
import Foundation

/// An RGB colour.
public struct RGB: Equatable, Sendable {
    public var r: UInt8, g: UInt8, b: UInt8
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) { self.r = r; self.g = g; self.b = b }
    public static let white = RGB(255, 255, 255), black = RGB(0, 0, 0), red = RGB(230, 40, 40)
    public static let green = RGB(40, 200, 60), yellow = RGB(255, 220, 0), cyan = RGB(0, 210, 230)
    /// Distinct colours for points, boxes and keypoints.
    public static let cycle = [RGB(255, 60, 60), RGB(60, 220, 60), RGB(60, 140, 255), RGB(255, 210, 0),
                               RGB(255, 80, 255), RGB(0, 230, 230), RGB(255, 140, 0), RGB(170, 100, 255)]
}

/// An RGB image to draw on (row-major, 3 bytes per pixel): mask overlays, boxes, lines, points,
/// text in a built-in 5x7 bitmap font, heat maps, and grids of frames. Saved through libpng.
public struct Canvas: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public var rgb: [UInt8]

    public init(width: Int, height: Int, fill: RGB = .white) {
        self.width = width; self.height = height
        rgb = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) { rgb[3 * i] = fill.r; rgb[3 * i + 1] = fill.g; rgb[3 * i + 2] = fill.b }
    }

    /// The image as RGB (palette and gray images expanded).
    public init(image: Image) {
        width = image.width; height = image.height; rgb = image.rgbBytes()
    }

    public var image: Image { Image(width: width, height: height, channels: 3, pixels: rgb) }

    public func pixel(_ x: Int, _ y: Int) -> RGB {
        let i = 3 * (y * width + x)
        return RGB(rgb[i], rgb[i + 1], rgb[i + 2])
    }

    /// Blends `c` into pixel (x, y) with opacity `alpha` (0...1); outside pixels are ignored.
    public mutating func blend(_ x: Int, _ y: Int, _ c: RGB, alpha: Double = 1) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = 3 * (y * width + x)
        if alpha >= 1 { rgb[i] = c.r; rgb[i + 1] = c.g; rgb[i + 2] = c.b; return }
        let a = max(0, alpha)
        func mix(_ o: UInt8, _ n: UInt8) -> UInt8 { UInt8(min(255, max(0, (Double(o) * (1 - a) + Double(n) * a).rounded()))) }
        rgb[i] = mix(rgb[i], c.r); rgb[i + 1] = mix(rgb[i + 1], c.g); rgb[i + 2] = mix(rgb[i + 2], c.b)
    }

    /// A filled rectangle (corners included, clipped to the canvas).
    public mutating func fillRect(x0: Int, y0: Int, x1: Int, y1: Int, _ c: RGB, alpha: Double = 1) {
        let ya = max(0, min(y0, y1)), yb = min(height - 1, max(y0, y1)), xa = max(0, min(x0, x1)), xb = min(width - 1, max(x0, x1))
        guard ya <= yb, xa <= xb else { return }
        for y in ya...yb {
            for x in xa...xb { blend(x, y, c, alpha: alpha) }
        }
    }

    /// A filled disc.
    public mutating func fillCircle(cx: Double, cy: Double, radius r: Double, _ c: RGB, alpha: Double = 1) {
        guard cx.isFinite, cy.isFinite, r.isFinite, abs(cx) < 1e6, abs(cy) < 1e6, r < 1e4 else { return }
        let x0 = max(-1, Int(floor(cx - r))), x1 = min(width, Int(ceil(cx + r))), y0 = max(-1, Int(floor(cy - r))), y1 = min(height, Int(ceil(cy + r)))
        guard x0 <= x1, y0 <= y1 else { return }
        for y in y0...y1 {
            for x in x0...x1 {
                let dx = Double(x) - cx, dy = Double(y) - cy
                if dx * dx + dy * dy <= r * r { blend(x, y, c, alpha: alpha) }
            }
        }
    }

    /// A line of the given thickness (discs stamped along it).
    public mutating func line(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, _ c: RGB, thickness: Double = 2) {
        // Non-finite or far-off coordinates (e.g. a diverged transform) draw nothing.
        guard [x0, y0, x1, y1].allSatisfy({ $0.isFinite && abs($0) < 1e5 }) else { return }
        let n = max(1, Int(ceil(max(abs(x1 - x0), abs(y1 - y0)))))
        for i in 0...n {
            let t = Double(i) / Double(n)
            let x = x0 + (x1 - x0) * t, y = y0 + (y1 - y0) * t
            if thickness <= 1 { blend(Int(x.rounded()), Int(y.rounded()), c) } else { fillCircle(cx: x, cy: y, radius: thickness / 2, c) }
        }
    }

    /// A closed polygon outline (e.g. a rotated box).
    public mutating func polygon(_ pts: [(Double, Double)], _ c: RGB, thickness: Double = 2) {
        for i in pts.indices {
            let a = pts[i], b = pts[(i + 1) % pts.count]
            line(a.0, a.1, b.0, b.1, c, thickness: thickness)
        }
    }

    /// An axis-aligned box outline.
    public mutating func box(x0: Double, y0: Double, x1: Double, y1: Double, _ c: RGB, thickness: Double = 2) {
        polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], c, thickness: thickness)
    }

    /// Text in the 5x7 font (letters drawn as capitals), `scale` pixels per font dot, on an
    /// optional background box. (x, y) is the top-left corner.
    public mutating func text(_ s: String, x: Int, y: Int, _ c: RGB = .white, scale: Int = 1, background: RGB? = RGB(0, 0, 0)) {
        let size = BitmapFont.size(s, scale: scale)
        if let background {
            fillRect(x0: x - scale, y0: y - scale, x1: x + size.width + scale - 1, y1: y + size.height + scale - 1, background, alpha: 0.7)
        }
        for (i, ch) in s.enumerated() {
            let rows = BitmapFont.glyph(ch)
            for (ry, bits) in rows.enumerated() {
                for rx in 0..<5 where bits & (1 << (4 - rx)) != 0 {
                    fillRect(x0: x + (i * 6 + rx) * scale, y0: y + ry * scale, x1: x + (i * 6 + rx) * scale + scale - 1,
                             y1: y + ry * scale + scale - 1, c)
                }
            }
        }
    }

    /// A detection: the box outline (pixels, clipped to the canvas) and `lines` of text stacked at
    /// its top-left corner, above the box when there is room, else inside it, kept on the canvas.
    public mutating func labeledBox(x0: Double, y0: Double, x1: Double, y1: Double, lines: [String], _ c: RGB,
                                    thickness: Double = 2, scale: Int = 1) {
        let w = Double(width - 1), h = Double(height - 1)
        func clip(_ v: Double, _ hi: Double) -> Double { v.isFinite ? min(max(v, 0), hi) : 0 }
        let bx0 = clip(min(x0, x1), w), bx1 = clip(max(x0, x1), w), by0 = clip(min(y0, y1), h), by1 = clip(max(y0, y1), h)
        box(x0: bx0, y0: by0, x1: bx1, y1: by1, c, thickness: thickness)
        let lineHeight = 9 * scale
        let block = lines.count * lineHeight
        var y = Int(by0) - block - Int(thickness.rounded(.up))
        if y < scale { y = Int(by0) + Int(thickness.rounded(.up)) + scale }
        for s in lines {
            let size = BitmapFont.size(s, scale: scale)
            let x = max(scale, min(Int(bx0) + scale, width - size.width - scale))
            text(s, x: x, y: min(y, height - size.height - scale), c, scale: scale)
            y += lineHeight
        }
    }

    /// Overlays a label map (one byte per pixel, any size: sampled by nearest neighbour) with the
    /// palette's colours at `alpha`; label 0 (background) is left untouched. Object borders are
    /// drawn opaque when `outline` is set.
    public mutating func overlayLabels(_ labels: [UInt8], width lw: Int, height lh: Int, palette: [[UInt8]]?, alpha: Double = 0.5, outline: Bool = true) {
        precondition(labels.count == lw * lh, "overlayLabels: \(labels.count) labels for \(lw)x\(lh)")
        func label(_ x: Int, _ y: Int) -> UInt8 {
            let sx = min(lw - 1, x * lw / width), sy = min(lh - 1, y * lh / height)
            return labels[sy * lw + sx]
        }
        for y in 0..<height {
            for x in 0..<width {
                let l = label(x, y)
                guard l != 0 else { continue }
                let c = Self.labelColor(Int(l), palette: palette)
                let edge = outline && ((x > 0 && label(x - 1, y) != l) || (y > 0 && label(x, y - 1) != l)
                    || (x + 1 < width && label(x + 1, y) != l) || (y + 1 < height && label(x, y + 1) != l))
                blend(x, y, c, alpha: edge ? 1 : alpha)
            }
        }
    }

    /// The colour of label `l`: the palette's when it has one (and it is not black), else a fixed cycle.
    static func labelColor(_ l: Int, palette: [[UInt8]]?) -> RGB {
        if let p = palette, l < p.count, p[l].count == 3, p[l] != [0, 0, 0] { return RGB(p[l][0], p[l][1], p[l][2]) }
        return RGB.cycle[(l - 1) % RGB.cycle.count]
    }

    /// Overlays a heat map (`values` row-major h x w, bilinearly upsampled to the canvas) through
    /// the colormap, with opacity growing with the value (`alpha` at the maximum).
    public mutating func overlayHeatmap(_ values: [Float], width hw: Int, height hh: Int, alpha: Double = 0.65) {
        precondition(values.count == hw * hh, "overlayHeatmap: \(values.count) values for \(hw)x\(hh)")
        let lo = Double(values.min() ?? 0), hi = Double(values.max() ?? 1)
        let span = hi > lo ? hi - lo : 1
        for y in 0..<height {
            let fy = min(max((Double(y) + 0.5) * Double(hh) / Double(height) - 0.5, 0), Double(hh - 1))
            let y0 = Int(fy), y1 = min(y0 + 1, hh - 1), wy = fy - Double(y0)
            for x in 0..<width {
                let fx = min(max((Double(x) + 0.5) * Double(hw) / Double(width) - 0.5, 0), Double(hw - 1))
                let x0 = Int(fx), x1 = min(x0 + 1, hw - 1), wx = fx - Double(x0)
                let v = Double(values[y0 * hw + x0]) * (1 - wx) * (1 - wy) + Double(values[y0 * hw + x1]) * wx * (1 - wy)
                    + Double(values[y1 * hw + x0]) * (1 - wx) * wy + Double(values[y1 * hw + x1]) * wx * wy
                let t = (v - lo) / span
                blend(x, y, Colormap.turbo(t), alpha: alpha * (0.25 + 0.75 * t))
            }
        }
    }

    /// A bilinear resize (area-averaged when shrinking by more than 2x).
    public func resized(width w: Int, height h: Int) -> Canvas {
        var src = self
        // Halve while more than twice too big (box filter), then bilinear.
        while src.width >= 2 * w && src.height >= 2 * h && src.width > 1 && src.height > 1 {
            var half = Canvas(width: src.width / 2, height: src.height / 2)
            for y in 0..<half.height {
                for x in 0..<half.width {
                    for c in 0..<3 {
                        var s = 0
                        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] { s += Int(src.rgb[3 * ((2 * y + dy) * src.width + 2 * x + dx) + c]) }
                        half.rgb[3 * (y * half.width + x) + c] = UInt8((s + 2) / 4)
                    }
                }
            }
            src = half
        }
        var out = Canvas(width: w, height: h)
        for y in 0..<h {
            let fy = min(max((Double(y) + 0.5) * Double(src.height) / Double(h) - 0.5, 0), Double(src.height - 1))
            let y0 = Int(fy), y1 = min(y0 + 1, src.height - 1), wy = fy - Double(y0)
            for x in 0..<w {
                let fx = min(max((Double(x) + 0.5) * Double(src.width) / Double(w) - 0.5, 0), Double(src.width - 1))
                let x0 = Int(fx), x1 = min(x0 + 1, src.width - 1), wx = fx - Double(x0)
                for c in 0..<3 {
                    func p(_ xx: Int, _ yy: Int) -> Double { Double(src.rgb[3 * (yy * src.width + xx) + c]) }
                    let v = p(x0, y0) * (1 - wx) * (1 - wy) + p(x1, y0) * wx * (1 - wy) + p(x0, y1) * (1 - wx) * wy + p(x1, y1) * wx * wy
                    out.rgb[3 * (y * w + x) + c] = UInt8(min(255, max(0, v.rounded())))
                }
            }
        }
        return out
    }

    /// Resized to the given width, keeping the aspect ratio.
    public func resized(width w: Int) -> Canvas {
        resized(width: w, height: max(1, Int((Double(height) * Double(w) / Double(width)).rounded())))
    }

    /// The rectangle at (x, y) of the given size (clipped to the canvas).
    public func cropped(x: Int, y: Int, width w: Int, height h: Int) -> Canvas {
        let x0 = max(0, min(x, width - 1)), y0 = max(0, min(y, height - 1))
        let cw = max(1, min(w, width - x0)), ch = max(1, min(h, height - y0))
        var out = Canvas(width: cw, height: ch)
        for yy in 0..<ch {
            let s = 3 * ((y0 + yy) * width + x0)
            out.rgb.replaceSubrange(3 * yy * cw..<3 * (yy + 1) * cw, with: rgb[s..<s + 3 * cw])
        }
        return out
    }

    /// Pastes `other` with its top-left corner at (x, y).
    public mutating func paste(_ other: Canvas, x: Int, y: Int) {
        for yy in 0..<other.height where y + yy >= 0 && y + yy < height {
            for xx in 0..<other.width where x + xx >= 0 && x + xx < width {
                let s = 3 * (yy * other.width + xx), d = 3 * ((y + yy) * width + x + xx)
                rgb[d] = other.rgb[s]; rgb[d + 1] = other.rgb[s + 1]; rgb[d + 2] = other.rgb[s + 2]
            }
        }
    }

    /// A grid of tiles (rows of canvases, each tile labelled at its top-left), optional row labels on
    /// the left and column titles on top, `gap` pixels apart on white.
    public static func grid(_ rows: [[Canvas]], tileLabels: [[String]]? = nil, rowLabels: [String]? = nil,
                            columnTitles: [String]? = nil, gap: Int = 4) -> Canvas {
        let cols = rows.map(\.count).max() ?? 0
        let colW = (0..<cols).map { c in rows.compactMap { c < $0.count ? $0[c].width : nil }.max() ?? 0 }
        let rowH = rows.map { $0.map(\.height).max() ?? 0 }
        let labelW = rowLabels.map { ($0.map { BitmapFont.size($0, scale: 1).width }.max() ?? 0) + 2 * gap } ?? 0
        let titleH = columnTitles == nil ? 0 : 7 + 2 * gap
        let w = labelW + colW.reduce(0, +) + gap * (cols + 1)
        let h = titleH + rowH.reduce(0, +) + gap * (rows.count + 1)
        var out = Canvas(width: max(w, 1), height: max(h, 1))
        var y = titleH + gap
        for (r, row) in rows.enumerated() {
            var x = labelW + gap
            if let rowLabels, r < rowLabels.count {
                out.text(rowLabels[r], x: gap, y: y + rowH[r] / 2 - 3, .black, background: nil)
            }
            for (c, tile) in row.enumerated() {
                out.paste(tile, x: x, y: y)
                if let l = tileLabels, r < l.count, c < l[r].count, !l[r][c].isEmpty {
                    out.text(l[r][c], x: x + 2, y: y + 2, .white)
                }
                if r == 0, let t = columnTitles, c < t.count {
                    out.text(t[c], x: x, y: gap, .black, background: nil)
                }
                x += colW[c] + gap
            }
            y += rowH[r] + gap
        }
        return out
    }

    /// A palette image of at most `colors` colours chosen by median cut on 5-bit-per-channel
    /// colours (no dithering): about a third of the bytes of an RGB PNG for photographs.
    public func quantized(colors: Int = 256) -> Image {
        func bin(_ i: Int) -> Int { (Int(rgb[3 * i]) >> 3) << 10 | (Int(rgb[3 * i + 1]) >> 3) << 5 | Int(rgb[3 * i + 2]) >> 3 }
        var counts = [Int](repeating: 0, count: 1 << 15)
        for i in 0..<(width * height) { counts[bin(i)] += 1 }
        func channel(_ b: Int, _ c: Int) -> Int { (b >> (10 - 5 * c)) & 31 }
        var boxes: [[Int]] = [counts.indices.filter { counts[$0] > 0 }]
        while boxes.count < colors {
            // Split the box with the most pixels that has more than one colour, along its widest channel, at the median.
            guard let k = boxes.indices.filter({ boxes[$0].count > 1 }).max(by: {
                boxes[$0].reduce(0) { $0 + counts[$1] } < boxes[$1].reduce(0) { $0 + counts[$1] }
            }) else { break }
            let box = boxes[k]
            let ranges = (0..<3).map { c in (box.map { channel($0, c) }.max() ?? 0) - (box.map { channel($0, c) }.min() ?? 0) }
            let c = ranges.indices.max { ranges[$0] < ranges[$1] } ?? 0
            let sorted = box.sorted { channel($0, c) < channel($1, c) }
            let total = sorted.reduce(0) { $0 + counts[$1] }
            var acc = 0, cut = 1
            for (i, b) in sorted.enumerated() {
                acc += counts[b]
                if acc * 2 >= total { cut = min(max(i + 1, 1), sorted.count - 1); break }
            }
            boxes[k] = Array(sorted[..<cut])
            boxes.append(Array(sorted[cut...]))
        }
        var index = [UInt8](repeating: 0, count: 1 << 15)
        var palette: [[UInt8]] = []
        for (i, box) in boxes.enumerated() {
            var sum = [0, 0, 0], n = 0
            for b in box {
                index[b] = UInt8(i)
                for c in 0..<3 { sum[c] += counts[b] * (channel(b, c) * 8 + 4) }
                n += counts[b]
            }
            palette.append(sum.map { UInt8(min(255, $0 / max(n, 1))) })
        }
        let px = (0..<(width * height)).map { index[bin($0)] }
        return Image(width: width, height: height, channels: 1, pixels: px, palette: palette.isEmpty ? [[0, 0, 0]] : palette)
    }

    /// PNG bytes through libpng (written to a temporary file): RGB, or a palette image when `quantize`.
    public func pngData(quantize: Bool = false) throws -> Data {
        let tmp = NSTemporaryDirectory() + "/cycletime-report-\(getpid())-\(UUID().uuidString).png"
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try (quantize ? quantized() : image).writePNG(tmp)
        guard let d = FileManager.default.contents(atPath: tmp) else { throw MediaError(file: tmp, "cannot read back the PNG just written") }
        return d
    }
}

/// Colormaps: value in 0...1 -> colour.
public enum Colormap {
    /// Google's Turbo, as piecewise-linear control points.
    static let turboStops: [(Double, Double, Double)] = [
        (0.19, 0.07, 0.23), (0.27, 0.35, 0.86), (0.16, 0.66, 0.96), (0.10, 0.89, 0.71), (0.42, 0.99, 0.36),
        (0.75, 0.94, 0.19), (0.98, 0.73, 0.22), (0.96, 0.42, 0.09), (0.80, 0.16, 0.02), (0.48, 0.02, 0.01),
    ]

    public static func turbo(_ t: Double) -> RGB {
        let v = min(max(t.isFinite ? t : 0, 0), 1) * Double(turboStops.count - 1)
        let i = min(Int(v), turboStops.count - 2), f = v - Double(i)
        let a = turboStops[i], b = turboStops[i + 1]
        func c(_ x: Double, _ y: Double) -> UInt8 { UInt8(min(255, max(0, ((x + (y - x) * f) * 255).rounded()))) }
        return RGB(c(a.0, b.0), c(a.1, b.1), c(a.2, b.2))
    }
}

/// A 5x7 bitmap font (ASCII capitals, digits, punctuation; lower case drawn as capitals; others as '?').
/// Each glyph is 7 rows of 5 bits, leftmost dot in bit 4; characters advance 6 dots.
public enum BitmapFont {
    static let table: [Character: String] = [
        " ": "00000 00000 00000 00000 00000 00000 00000",
        "0": "01110 10001 10011 10101 11001 10001 01110", "1": "00100 01100 00100 00100 00100 00100 01110",
        "2": "01110 10001 00001 00010 00100 01000 11111", "3": "11111 00010 00100 00010 00001 10001 01110",
        "4": "00010 00110 01010 10010 11111 00010 00010", "5": "11111 10000 11110 00001 00001 10001 01110",
        "6": "00110 01000 10000 11110 10001 10001 01110", "7": "11111 00001 00010 00100 01000 01000 01000",
        "8": "01110 10001 10001 01110 10001 10001 01110", "9": "01110 10001 10001 01111 00001 00010 01100",
        "A": "01110 10001 10001 11111 10001 10001 10001", "B": "11110 10001 10001 11110 10001 10001 11110",
        "C": "01110 10001 10000 10000 10000 10001 01110", "D": "11100 10010 10001 10001 10001 10010 11100",
        "E": "11111 10000 10000 11110 10000 10000 11111", "F": "11111 10000 10000 11110 10000 10000 10000",
        "G": "01110 10001 10000 10111 10001 10001 01111", "H": "10001 10001 10001 11111 10001 10001 10001",
        "I": "01110 00100 00100 00100 00100 00100 01110", "J": "00111 00010 00010 00010 00010 10010 01100",
        "K": "10001 10010 10100 11000 10100 10010 10001", "L": "10000 10000 10000 10000 10000 10000 11111",
        "M": "10001 11011 10101 10101 10001 10001 10001", "N": "10001 10001 11001 10101 10011 10001 10001",
        "O": "01110 10001 10001 10001 10001 10001 01110", "P": "11110 10001 10001 11110 10000 10000 10000",
        "Q": "01110 10001 10001 10001 10101 10010 01101", "R": "11110 10001 10001 11110 10100 10010 10001",
        "S": "01111 10000 10000 01110 00001 00001 11110", "T": "11111 00100 00100 00100 00100 00100 00100",
        "U": "10001 10001 10001 10001 10001 10001 01110", "V": "10001 10001 10001 10001 10001 01010 00100",
        "W": "10001 10001 10001 10101 10101 10101 01010", "X": "10001 10001 01010 00100 01010 10001 10001",
        "Y": "10001 10001 10001 01010 00100 00100 00100", "Z": "11111 00001 00010 00100 01000 10000 11111",
        ".": "00000 00000 00000 00000 00000 01100 01100", ",": "00000 00000 00000 00000 01100 00100 01000",
        ":": "00000 01100 01100 00000 01100 01100 00000", ";": "00000 01100 01100 00000 01100 00100 01000",
        "-": "00000 00000 00000 11111 00000 00000 00000", "_": "00000 00000 00000 00000 00000 00000 11111",
        "/": "00000 00001 00010 00100 01000 10000 00000", "%": "11000 11001 00010 00100 01000 10011 00011",
        "(": "00010 00100 01000 01000 01000 00100 00010", ")": "01000 00100 00010 00010 00010 00100 01000",
        "=": "00000 00000 11111 00000 11111 00000 00000", "+": "00000 00100 00100 11111 00100 00100 00000",
        "#": "01010 01010 11111 01010 11111 01010 01010", "?": "01110 10001 00001 00010 00100 00000 00100",
        "!": "00100 00100 00100 00100 00100 00000 00100", "'": "01100 00100 01000 00000 00000 00000 00000",
        "*": "00000 00100 10101 01110 10101 00100 00000", "<": "00010 00100 01000 10000 01000 00100 00010",
        ">": "01000 00100 00010 00001 00010 00100 01000", "[": "01110 01000 01000 01000 01000 01000 01110",
        "]": "01110 00010 00010 00010 00010 00010 01110", "&": "01100 10010 10100 01000 10101 10010 01101",
        "@": "01110 10001 00001 01101 10101 10101 01110", "|": "00100 00100 00100 00100 00100 00100 00100",
        "\"": "01010 01010 01010 00000 00000 00000 00000",
    ]

    static let glyphs: [Character: [UInt8]] = table.mapValues { s in
        s.split(separator: " ").map { UInt8($0, radix: 2) ?? 0 }
    }

    public static func glyph(_ c: Character) -> [UInt8] {
        if let g = glyphs[c] { return g }
        let u = c.uppercased()
        if u.count == 1, let g = glyphs[Character(u)] { return g }
        return glyphs["?"] ?? []
    }

    public static func size(_ s: String, scale: Int) -> (width: Int, height: Int) {
        (max(0, s.count * 6 - 1) * scale, 7 * scale)
    }
}
