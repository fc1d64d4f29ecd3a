import Foundation
import XCTest
@testable import CycleTimeVideo
import CycleTimeCore
import TestSupport

final class ImageTests: XCTestCase {
    func davisPalette() -> [[UInt8]] {
        // The DAVIS / Pascal VOC colour map (bit-interleaved), 256 entries.
        (0..<256).map { i -> [UInt8] in
            var r = 0, g = 0, b = 0, c = i
            for j in 0..<8 {
                r |= ((c >> 0) & 1) << (7 - j); g |= ((c >> 1) & 1) << (7 - j); b |= ((c >> 2) & 1) << (7 - j)
                c >>= 3
            }
            return [UInt8(r), UInt8(g), UInt8(b)]
        }
    }

    func testPaletteRoundTrip() throws {
        let w = 7, h = 5
        let idx = (0..<(w * h)).map { UInt8($0 % 4) }
        let img = Image(width: w, height: h, channels: 1, pixels: idx, palette: Array(davisPalette().prefix(4)))
        let p = temporaryDirectory() + "/mask.png"
        try img.writePNG(p)
        let back = try Image.readPNG(p)
        XCTAssertEqual(back, img)
        XCTAssertEqual(back.palette?[1], [128, 0, 0])
    }

    func testRGBAndGrayRoundTrip() throws {
        let rgb = Image(width: 3, height: 2, channels: 3, pixels: (0..<18).map { UInt8($0 * 13) })
        let gray = Image(width: 4, height: 3, channels: 1, pixels: (0..<12).map { UInt8($0 * 20) })
        let d = temporaryDirectory()
        try rgb.writePNG(d + "/rgb.png")
        try gray.writePNG(d + "/gray.png")
        XCTAssertEqual(try Image.read(d + "/rgb.png"), rgb)
        XCTAssertEqual(try Image.read(d + "/gray.png"), gray)
        let t = rgb.tensor()
        XCTAssertEqual(t.shape, [3, 2, 3])
        XCTAssertEqual(t[1, 0, 0], Float(13) / 255, accuracy: 1e-7)
    }

    func testPaletteReadsIdenticalInPillow() throws {
        let w = 9, h = 6
        let idx = (0..<(w * h)).map { UInt8(($0 * 7) % 5) }
        let pal = Array(davisPalette().prefix(5))
        let p = temporaryDirectory() + "/pillow.png"
        try Image(width: w, height: h, channels: 1, pixels: idx, palette: pal).writePNG(p)
        let script = """
        import sys
        try:
            from PIL import Image
        except ImportError:
            print("NOPIL"); sys.exit(0)
        im = Image.open(sys.argv[1]); print(im.mode); print(",".join(str(v) for v in im.getdata()))
        print(",".join(str(v) for v in im.getpalette()[:15]))
        """
        let out = String(decoding: try shell(["python3", "-c", script, p]), as: UTF8.self).split(separator: "\n").map(String.init)
        if out.first == "NOPIL" { throw XCTSkip("Pillow is not installed") }
        XCTAssertEqual(out[0], "P")
        XCTAssertEqual(out[1], idx.map(String.init).joined(separator: ","))
        XCTAssertEqual(out[2], pal.flatMap { $0 }.map(String.init).joined(separator: ","))
    }

    func testDAVISAnnotationIsIndexed() throws {
        let p = try requireSharedData("davis-mini/Annotations/480p/blackswan/00000.png")
        let m = try Image.readPNG(p)
        XCTAssertTrue(m.isIndexed)
        XCTAssertEqual(m.channels, 1)
        XCTAssertEqual(m.width, 854); XCTAssertEqual(m.height, 480)
        XCTAssertEqual(Set(m.pixels), [0, 1])
        XCTAssertEqual(m.palette?[1], [128, 0, 0])
    }

    func testJPEGMatchesPillow() throws {
        let p = try requireSharedData("davis-mini/JPEGImages/480p/blackswan/00000.jpg")
        let img = try Image.read(p)
        XCTAssertEqual(img.width, 854); XCTAssertEqual(img.height, 480); XCTAssertEqual(img.channels, 3)
        let script = """
        import sys
        try:
            from PIL import Image
        except ImportError:
            print("NOPIL"); sys.exit(0)
        sys.stdout.buffer.write(Image.open(sys.argv[1]).convert("RGB").tobytes())
        """
        let out = try shell(["python3", "-c", script, p])
        if out.starts(with: Array("NOPIL".utf8)) { throw XCTSkip("Pillow is not installed") }
        XCTAssertEqual(out.count, img.pixels.count)
        XCTAssertGreaterThan(psnr([UInt8](out), img.pixels), 45)
    }

    func testWrongCRCIsAnError() throws {
        let p = temporaryDirectory() + "/crc.png"
        try Image(width: 4, height: 4, channels: 3, pixels: [UInt8](repeating: 77, count: 48)).writePNG(p)
        var data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: p)))
        // IHDR's CRC sits at bytes 29...32 (8 signature + 8 tag + 13 data).
        data[30] ^= 0xFF
        try Data(data).write(to: URL(fileURLWithPath: p))
        XCTAssertThrowsError(try Image.read(p)) { e in XCTAssertTrue("\(e)".contains("CRC"), "\(e)") }
    }

    func testTruncatedAndBadImages() throws {
        let d = temporaryDirectory()
        let p = d + "/big.png"
        let px = (0..<(64 * 64 * 3)).map { UInt8(($0 * 31) % 251) }
        try Image(width: 64, height: 64, channels: 3, pixels: px).writePNG(p)
        let data = try Data(contentsOf: URL(fileURLWithPath: p))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: d + "/trunc.png"))
        XCTAssertThrowsError(try Image.read(d + "/trunc.png")) { e in XCTAssertTrue("\(e)".contains("trunc.png: PNG"), "\(e)") }
        XCTAssertThrowsError(try Image.read(d + "/none.png")) { e in XCTAssertTrue("\(e)".contains("no such file")) }
        FileManager.default.createFile(atPath: d + "/empty.png", contents: Data())
        XCTAssertThrowsError(try Image.read(d + "/empty.png")) { e in XCTAssertTrue("\(e)".contains("empty")) }
        FileManager.default.createFile(atPath: d + "/text.jpg", contents: Data("hello".utf8))
        XCTAssertThrowsError(try Image.read(d + "/text.jpg"))
        FileManager.default.createFile(atPath: d + "/bad.jpg", contents: Data([0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 1, 2]))
        XCTAssertThrowsError(try Image.read(d + "/bad.jpg")) { e in XCTAssertTrue("\(e)".contains("JPEG"), "\(e)") }
    }

    /// A JPEG cut in half decodes in libjpeg with grey filling the rest (a warning only): it is an
    /// error here, naming the file. So is a header declaring more pixels than the limit.
    func testTruncatedJPEGAndHugeDeclaredSizeAreErrors() throws {
        let d = temporaryDirectory()
        let full = d + "/full.jpg"
        let px = (0..<(96 * 64 * 3)).map { UInt8(($0 * 37) % 253) }
        try Image(width: 96, height: 64, channels: 3, pixels: px).writeJPEG(full)
        XCTAssertNoThrow(try Image.read(full))
        let data = try Data(contentsOf: URL(fileURLWithPath: full))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: d + "/half.jpg"))
        XCTAssertThrowsError(try Image.read(d + "/half.jpg")) { e in
            XCTAssertTrue("\(e)".contains("half.jpg: JPEG") && "\(e)".contains("Premature end"), "\(e)")
        }
        // The SOF0 marker's height and width fields set to 40000 x 40000.
        var huge = [UInt8](data)
        if let sof = (0..<(huge.count - 9)).first(where: { huge[$0] == 0xFF && huge[$0 + 1] == 0xC0 }) {
            huge[sof + 5] = 0x9C; huge[sof + 6] = 0x40; huge[sof + 7] = 0x9C; huge[sof + 8] = 0x40
        }
        try Data(huge).write(to: URL(fileURLWithPath: d + "/huge.jpg"))
        XCTAssertThrowsError(try Image.read(d + "/huge.jpg")) { e in XCTAssertTrue("\(e)".contains("limit of 2^28 pixels"), "\(e)") }
    }
}
