import CycleTimeVideo
import Foundation
import TestSupport
import XCTest

final class RasterTests: XCTestCase {
    func testBlendAndRectangles() {
        var c = Canvas(width: 4, height: 3, fill: .black)
        c.blend(1, 1, .white, alpha: 0.5)
        XCTAssertEqual(c.pixel(1, 1), RGB(128, 128, 128))
        c.blend(9, 9, .white)  // outside: ignored
        c.fillRect(x0: 2, y0: 0, x1: 3, y1: 0, .red)
        XCTAssertEqual(c.pixel(3, 0), .red)
        XCTAssertEqual(c.pixel(0, 0), .black)
        let before = c
        c.fillRect(x0: -9, y0: -9, x1: -5, y1: -5, .red)    // off the canvas: nothing, no trap
        c.line(.nan, 0, 3, .infinity, .red)                  // a diverged box: nothing
        c.fillCircle(cx: 1e300, cy: 0, radius: 3, .red)
        c.text("OFF", x: -100, y: 50)
        XCTAssertEqual(c, before)
    }

    func testMaskOverlayUsesPaletteAlphaAndOutline() {
        var c = Canvas(width: 8, height: 8, fill: .black)
        var labels = [UInt8](repeating: 0, count: 16)  // 4x4 labels, upsampled 2x
        labels[5] = 1; labels[6] = 1; labels[9] = 1; labels[10] = 1
        c.overlayLabels(labels, width: 4, height: 4, palette: [[0, 0, 0], [200, 0, 0]], alpha: 0.5, outline: true)
        XCTAssertEqual(c.pixel(0, 0), .black)                      // background untouched
        XCTAssertEqual(c.pixel(2, 2), RGB(200, 0, 0))              // border: opaque
        c = Canvas(width: 8, height: 8, fill: .black)
        c.overlayLabels(labels, width: 4, height: 4, palette: [[0, 0, 0], [200, 0, 0]], alpha: 0.5, outline: false)
        XCTAssertEqual(c.pixel(3, 3), RGB(100, 0, 0))              // inside: alpha 0.5
    }

    func testTextUsesTheBitmapFont() {
        var c = Canvas(width: 20, height: 9, fill: .black)
        c.text("1", x: 1, y: 1, .white, background: nil)
        // '1' = 00100 01100 00100 ... : the stem is column 2.
        XCTAssertEqual(c.pixel(1 + 2, 1), .white)
        XCTAssertEqual(c.pixel(1 + 0, 1), .black)
        XCTAssertEqual(BitmapFont.size("ab", scale: 2).width, 22)
        XCTAssertEqual(BitmapFont.glyph("a"), BitmapFont.glyph("A"))
        XCTAssertEqual(BitmapFont.glyph("ß"), BitmapFont.glyph("?"))
    }

    /// A labeled box: the outline at its pixels, the text above it (inside it at the top edge), on the canvas.
    func testLabeledBoxDrawsOutlineAndTextAboveOrInside() {
        var c = Canvas(width: 60, height: 40, fill: .black)
        c.labeledBox(x0: 10, y0: 20, x1: 40, y1: 35, lines: ["1"], .red, thickness: 1)
        XCTAssertEqual(c.pixel(25, 35), .red)        // bottom edge
        XCTAssertEqual(c.pixel(10, 28), .red)        // left edge
        XCTAssertEqual(c.pixel(25, 28), .black)      // inside: untouched
        // '1' (stem in column 2) at x 11, in the 9-pixel line above the box: rows 10...16.
        XCTAssertEqual(c.pixel(11 + 2, 10), .red)
        XCTAssertEqual(c.pixel(11 + 2, 22), .black)
        var top = Canvas(width: 60, height: 40, fill: .black)
        top.labeledBox(x0: 10, y0: 0, x1: 40, y1: 35, lines: ["1"], .red, thickness: 1)
        XCTAssertEqual(top.pixel(11 + 2, 2), .red)   // no room above: inside, below the top edge
        var off = Canvas(width: 60, height: 40, fill: .black)
        off.labeledBox(x0: -50, y0: -5, x1: 1e9, y1: 80, lines: ["OFF"], .red)  // clipped to the canvas
        XCTAssertEqual(off.pixel(0, 39), .red)
        off.labeledBox(x0: .nan, y0: .infinity, x1: -.infinity, y1: 3, lines: ["X"], .red)  // no trap
    }

    func testHeatmapColormapAndResize() {
        var c = Canvas(width: 10, height: 10, fill: .black)
        c.overlayHeatmap([0, 0, 0, 1], width: 2, height: 2, alpha: 1)
        XCTAssertEqual(c.pixel(9, 9), Colormap.turbo(1))  // the maximum, opaque
        XCTAssertNotEqual(Colormap.turbo(0), Colormap.turbo(1))
        let r = c.resized(width: 5)
        XCTAssertEqual(r.width, 5)
        XCTAssertEqual(r.height, 5)
        let crop = c.cropped(x: 8, y: 8, width: 5, height: 5)
        XCTAssertEqual(crop.width, 2)
        XCTAssertEqual(crop.pixel(1, 1), c.pixel(9, 9))
    }

    func testGridLayoutAndPNGRoundTrip() throws {
        let a = Canvas(width: 10, height: 6, fill: .red), b = Canvas(width: 10, height: 6, fill: .green)
        let g = Canvas.grid([[a, b], [b, a]], gap: 2)
        XCTAssertEqual(g.width, 2 * 10 + 3 * 2)
        XCTAssertEqual(g.height, 2 * 6 + 3 * 2)
        XCTAssertEqual(g.pixel(2, 2), .red)
        XCTAssertEqual(g.pixel(14, 2), .green)
        let data = try g.pngData()
        let tmp = NSTemporaryDirectory() + "/raster-test-\(getpid()).png"
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try data.write(to: URL(fileURLWithPath: tmp))
        let back = try Image.readPNG(tmp)
        XCTAssertEqual(Canvas(image: back), g)
    }

    /// Median-cut palette of a real photograph: at most 256 colours, small error, smaller PNG.
    func testQuantizedPNGOfARealFrame() throws {
        let root = try requireSharedData("davis-mini")
        let c = Canvas(image: try Image.read(root + "/JPEGImages/480p/blackswan/00000.jpg")).resized(width: 213)
        let q = c.quantized()
        XCTAssertLessThanOrEqual(q.palette?.count ?? 0, 256)
        let back = q.rgbBytes()
        var err = 0.0
        for i in back.indices { err += abs(Double(back[i]) - Double(c.rgb[i])) }
        XCTAssertLessThan(err / Double(back.count), 6, "mean absolute error per channel")
        XCTAssertLessThan(try c.pngData(quantize: true).count, try c.pngData().count * 2 / 3)
        let two = Canvas.grid([[Canvas(width: 3, height: 3, fill: .red), Canvas(width: 3, height: 3, fill: .cyan)]], gap: 0)
        XCTAssertEqual(two.quantized().rgbBytes(), two.rgb.map { UInt8(($0 >> 3) * 8 + 4) })  // bin centres
    }

    func testBoxesAndLinesOnARealFrame() throws {
        let root = try requireSharedData("davis-mini")
        var c = Canvas(image: try Image.read(root + "/JPEGImages/480p/dog/00000.jpg"))
        c.box(x0: 10, y0: 10, x1: 100, y1: 60, .yellow, thickness: 3)
        XCTAssertEqual(c.pixel(50, 10), .yellow)
        XCTAssertEqual(c.pixel(100, 30), .yellow)
        c.polygon([(200, 200), (300, 220), (280, 300)], .cyan, thickness: 1)
        XCTAssertEqual(c.pixel(200, 200), .cyan)
        c.fillCircle(cx: 400, cy: 300, radius: 4, .red)
        XCTAssertEqual(c.pixel(400, 300), .red)
    }
}
