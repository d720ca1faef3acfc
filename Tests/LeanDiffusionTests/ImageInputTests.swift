import XCTest
import LeanDiffusion
import SafeTensors

/// Image input against PIL and diffusers (tools/make_image_fixtures.py): every decoded PNG and JPEG fixture equals
/// `diffusers.utils.load_image` bit for bit (JPEG included: Debian's libjpeg-turbo 2.1 and Pillow's bundled 3.x
/// both use the islow IDCT and fancy upsampling, which are exact integer algorithms), Lanczos resizes equal PIL's,
/// preprocessing equals VaeImageProcessor's float32 output exactly, and bad inputs give named errors.
final class ImageInputTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/images")

    static func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    static func expected() throws -> SafeTensorsFile {
        try SafeTensorsFile(path: path("expected.safetensors"))
    }

    /// The (H, W, 3) or (H, W) uint8 array `name` as an image.
    func expectedRGB(_ file: SafeTensorsFile, _ name: String) throws -> RGBImage {
        let info = try XCTUnwrap(file.info(name), name)
        XCTAssertEqual(info.shape.count, 3, name)
        return RGBImage(width: info.shape[1], height: info.shape[0], pixels: try file.copyBytes(name))
    }

    func expectedGray(_ file: SafeTensorsFile, _ name: String) throws -> GrayImage {
        let info = try XCTUnwrap(file.info(name), name)
        return GrayImage(width: info.shape[1], height: info.shape[0], pixels: try file.copyBytes(name))
    }

    func assertSame(_ a: RGBImage, _ b: RGBImage, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.width, b.width, "\(what): width", file: file, line: line)
        XCTAssertEqual(a.height, b.height, "\(what): height", file: file, line: line)
        guard a.pixels.count == b.pixels.count else { return }
        let diffs = zip(a.pixels, b.pixels).map { abs(Int($0) - Int($1)) }
        let differing = diffs.filter { $0 != 0 }.count
        XCTAssertEqual(differing, 0, "\(what): \(differing) samples differ, max |diff| \(diffs.max() ?? 0)",
                       file: file, line: line)
    }

    func testEveryDecodedFixtureEqualsPIL() throws {
        let file = try Self.expected()
        let names = file.tensorNames.filter { $0.hasPrefix("decoded/") }
        // Every colour type and bit depth, JPEG variants, all eight orientations, metadata variants.
        XCTAssertEqual(names.count, 39)
        for name in names {
            let fixture = String(name.dropFirst("decoded/".count))
            let image = try RGBImage.load(path: Self.path(fixture))
            assertSame(image, try expectedRGB(file, name), fixture)
        }
    }

    func testEveryExifOrientation() throws {
        let file = try Self.expected()
        let upright = try RGBImage.load(path: Self.path("jpeg-exif1.jpg"))
        XCTAssertEqual([upright.width, upright.height], [21, 13])
        for orientation in 1...8 {
            let name = "jpeg-exif\(orientation).jpg"
            let image = try RGBImage.load(path: Self.path(name))
            assertSame(image, try expectedRGB(file, "decoded/" + name), name)
            // The same JPEG data underneath: the orientation is only a transpose of the upright pixels.
            assertSame(image, upright.exifTransposed(orientation: orientation), "\(name) as a transpose")
            XCTAssertEqual(image.width, orientation >= 5 ? 13 : 21, name)
        }
        // PNG eXIf before and after the image data, XMP, ImageMagick's raw profile.
        let rgb = try RGBImage.load(path: Self.path("png-rgb8.png"))
        for (name, orientation) in [("png-exif6.png", 6), ("png-exif8-after-idat.png", 8), ("png-xmp3.png", 3),
                                    ("png-rawprofile5.png", 5)] {
            assertSame(try RGBImage.load(path: Self.path(name)), rgb.exifTransposed(orientation: orientation), name)
        }
        let plain = try RGBImage.load(path: Self.path("jpeg-exif1.jpg"))
        assertSame(try RGBImage.load(path: Self.path("jpeg-xmp6.jpg")), plain.exifTransposed(orientation: 6), "XMP")
        // An Exif block whose IFD offset is past its end: no orientation, as Pillow.
        assertSame(try RGBImage.load(path: Self.path("jpeg-exif-bad-offset.jpg")), plain, "bad Exif offset")
    }

    func testFormatComesFromTheBytes() throws {
        assertSame(try RGBImage.load(path: Self.path("jpeg-as.png")),
                   try RGBImage.load(path: Self.path("jpeg-420.jpg")), "a JPEG named .png")
    }

    func testGrayscaleEqualsPILConvertL() throws {
        let file = try Self.expected()
        for name in ["png-rgb8.png", "jpeg-420.jpg"] {
            let grey = try RGBImage.load(path: Self.path(name)).grayscale()
            XCTAssertEqual(grey, try expectedGray(file, "grey/" + name), name)
        }
    }

    func testLanczosEqualsPIL() throws {
        let file = try Self.expected()
        let rgb = try RGBImage.load(path: Self.path("png-rgb8.png"))
        let grey = rgb.grayscale()
        let sizes = file.tensorNames.filter { $0.hasPrefix("resize/rgb/") }.map { $0.dropFirst("resize/rgb/".count) }
        XCTAssertEqual(sizes.count, 8)
        for size in sizes {
            let wh = size.split(separator: "x").map { Int($0)! }
            assertSame(try rgb.resizedLanczos(width: wh[0], height: wh[1]),
                       try expectedRGB(file, "resize/rgb/\(size)"), "RGB to \(size)")
            XCTAssertEqual(try grey.resizedLanczos(width: wh[0], height: wh[1]),
                           try expectedGray(file, "resize/l/\(size)"), "L to \(size)")
        }
        XCTAssertEqual(try rgb.resizedLanczos(width: rgb.width, height: rgb.height), rgb, "same size: unchanged")
    }

    func testPreprocessEqualsDiffusers() throws {
        let file = try Self.expected()
        let processor = VAEImageProcessor()
        let image = try RGBImage.load(path: Self.path("pre-45x35.png"))
        let cases: [(String, RGBImage, Int?, Int?, Int, Int)] = [
            ("preprocess/default", image, nil, nil, 40, 32),
            ("preprocess/48x40", image, 48, 40, 48, 40),
            ("preprocess/24x16", try RGBImage.load(path: Self.path("pre-24x16.png")), nil, nil, 24, 16),
        ]
        for (name, input, width, height, ew, eh) in cases {
            let out = try processor.preprocess(input, width: width, height: height)
            XCTAssertEqual([out.width, out.height], [ew, eh], name)
            XCTAssertEqual(file.info(name)?.shape, [1, 3, eh, ew], name)
            let want = try file.floats(name)
            XCTAssertEqual(out.pixels.count, want.count, name)
            let differing = zip(out.pixels, want).filter { $0.bitPattern != $1.bitPattern }.count
            XCTAssertEqual(differing, 0, "\(name): \(differing) floats differ")
        }
        let mask = try RGBImage.load(path: Self.path("mask-45x35.png"))
        for (name, width, height, ew, eh) in [("mask/default", nil, nil, 40, 32), ("mask/48x40", 48, 40, 48, 40)] {
            let out = try processor.preprocessMask(mask, width: width, height: height)
            XCTAssertEqual([out.width, out.height], [ew, eh], name)
            XCTAssertEqual(out.pixels, try file.copyBytes(name).map(Float.init), name)
        }
    }

    func testSizesAreValidated() throws {
        let processor = VAEImageProcessor()
        let image = try RGBImage.load(path: Self.path("pre-45x35.png"))
        for (w, h) in [(44, 32), (40, 0), (-8, 32), (40, 30)] {
            XCTAssertThrowsError(try processor.preprocess(image, width: w, height: h)) { error in
                guard case ImageInputError.invalidSize = error else { return XCTFail("\(w)x\(h): \(error)") }
                XCTAssertTrue("\(error)".contains("multiple of 8"), "\(error)")
            }
        }
        let tiny = RGBImage(width: 7, height: 20, pixels: [UInt8](repeating: 0, count: 7 * 20 * 3))
        XCTAssertThrowsError(try processor.preprocess(tiny)) { error in
            XCTAssertTrue("\(error)".contains("smaller than 8 pixels"), "\(error)")
        }
        XCTAssertThrowsError(try image.resizedLanczos(width: 0, height: 5))
        XCTAssertThrowsError(try image.resizedLanczos(width: 100_000, height: 5))
    }

    func testMaskOfAnotherSizeIsANamedError() throws {
        let image = try RGBImage.load(path: Self.path("pre-45x35.png"))
        let mask = try RGBImage.load(path: Self.path("png-rgb8.png"))
        XCTAssertNoThrow(try VAEImageProcessor.checkMaskSize(image: image, mask: image))
        XCTAssertThrowsError(try VAEImageProcessor.checkMaskSize(image: image, mask: mask)) { error in
            XCTAssertEqual(error as? ImageInputError, .maskSize(image: (45, 35), mask: (37, 29)))
            XCTAssertTrue("\(error)".contains("the mask is 37x29 but the image is 45x35"), "\(error)")
        }
    }

    func testBadInputsAreNamedErrors() throws {
        let tmp = TempDir()
        makeDir(tmp.file("folder.png"))
        func expect(_ path: String, _ check: (ImageInputError) -> Bool, _ words: String) {
            XCTAssertThrowsError(try RGBImage.load(path: path)) { error in
                guard let e = error as? ImageInputError, check(e) else { return XCTFail("\(path): \(error)") }
                XCTAssertTrue("\(e)".contains(path), "names the file: \(e)")
                XCTAssertTrue("\(e)".contains(words), "\(e)")
            }
        }
        expect(tmp.file("missing.png"), { if case .fileNotFound = $0 { true } else { false } }, "not found")
        expect(tmp.file("folder.png"), { if case .notRegularFile = $0 { true } else { false } }, "a directory")
        expect(Self.path("text.png"), { if case .notAnImage = $0 { true } else { false } },
               "text (starts \"hello, this is not an im...\")")
        expect(Self.path("empty.png"), { if case .notAnImage = $0 { true } else { false } }, "an empty file")
        expect(Self.path("truncated.jpg"), { if case .corrupt(_, "JPEG", _) = $0 { true } else { false } },
               "Premature end of JPEG file")
        expect(Self.path("truncated.png"), { if case .corrupt(_, "PNG", _) = $0 { true } else { false } },
               "truncated")
        for name in ["too-large.png", "too-large.jpg"] {
            expect(Self.path(name), { $0 == .tooLarge(path: Self.path(name), width: 20000, height: 20000,
                                                      maxSide: 16384, maxPixels: 1 << 27) }, "20000x20000")
        }
        let header = Array(try Data(contentsOf: URL(fileURLWithPath: Self.path("jpeg-420.jpg"))).prefix(100))
        expect(writeFile(tmp.file("header.jpg"), header), { if case .corrupt = $0 { true } else { false } },
               "Premature end of JPEG file, then: ")
        let gif = writeFile(tmp.file("a.png"), Array("GIF89a".utf8) + [UInt8](repeating: 0, count: 20))
        expect(gif, { if case .unsupported = $0 { true } else { false } }, "a GIF image")
        let binary = writeFile(tmp.file("b.jpg"), [0, 1, 2, 3, 0xFE, 0xFF, 7, 8, 9])
        expect(binary, { if case .notAnImage = $0 { true } else { false } }, "binary data (starts 00 01 02 03 fe ff 07 08)")
    }

    /// Every prefix of a PNG and a JPEG, and corrupted bytes, give an error or an image, never a trap; a prefix
    /// that cuts the image data is always an error (never a partly grey image).
    func testDamagedDataNeverTraps() throws {
        let tmp = TempDir()
        for name in ["png-interlaced-rgb8.png", "jpeg-progressive.jpg", "jpeg-420.jpg", "png-palette4.png"] {
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: Self.path(name))))
            let full = try RGBImage.load(path: Self.path(name))
            for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 97)) {
                let path = writeFile(tmp.file("cut-\(cut)-" + name), Array(bytes[..<cut]))
                if let image = try? RGBImage.load(path: path) {
                    // Only a cut after the image data (a missing IEND/EOI) may still decode, and then completely.
                    XCTAssertEqual(image, full, "\(name) cut at \(cut) of \(bytes.count)")
                }
            }
            var rng = SystemRandomNumberGenerator()
            for trial in 0..<40 {
                var damaged = bytes
                for _ in 0..<3 { damaged[Int.random(in: 8..<bytes.count, using: &rng)] ^= 0x5A }
                _ = try? RGBImage.load(path: writeFile(tmp.file("damaged-\(trial)-" + name), damaged))
            }
        }
    }
}
