import CImageDecode
import SafeTensors

extension RGBImage {
    /// The longest side an input image may have (SD works at 512 to 2048; 16384 leaves room for a large photo).
    public static let maxInputSide = 16384
    /// The most pixels an input image may have: 2^27 (134 Mpx, 402 MB as RGB), between Pillow's
    /// decompression-bomb warning (89 Mpx) and its error (179 Mpx).
    public static let maxInputPixels = 1 << 27
    /// The largest input file read into memory.
    public static let maxInputFileBytes = 1 << 30

    /// An input image for image-to-image or inpainting, as diffusers' `load_image(path)` gives it: PIL's
    /// `Image.open`, `ImageOps.exif_transpose`, `convert("RGB")`. PNG (1/2/4/8/16-bit grey, grey+alpha, RGB, RGBA,
    /// palette, interlaced) and JPEG (baseline, progressive, greyscale, CMYK), told apart by their first bytes.
    /// Alpha is dropped without compositing, as `convert("RGB")` does; 16-bit samples keep their high byte.
    /// Throws `ImageInputError` naming the file: missing, not a regular file, not an image, unsupported, damaged
    /// or truncated, too large.
    public static func load(path: String) throws(ImageInputError) -> RGBImage {
        let bytes: [UInt8]
        do {
            bytes = try RegularFile.read(path, byteLimit: maxInputFileBytes)
        } catch {
            switch error.reason {
            case .notFound: throw .fileNotFound(path: path)
            case .notRegular(let kind): throw .notRegularFile(path: path, kind: kind)
            case .tooLarge(let size, let limit): throw .fileTooLarge(path: path, size: size, limit: limit)
            case .openFailed, .readFailed: throw .unreadable(path: path, reason: error.message)
            }
        }
        return try decode(bytes, path: path)
    }

    /// `load(path:)` for bytes already in memory; `path` is only used in error messages.
    public static func decode(_ bytes: [UInt8], path: String) throws(ImageInputError) -> RGBImage {
        switch ImageFormat.sniff(bytes) {
        case .png: return try decodeLibrary(bytes, path: path, format: "PNG", lean_png_read_rgb8)
        case .jpeg: return try decodeLibrary(bytes, path: path, format: "JPEG", lean_jpeg_read_rgb)
        case .otherImage(let kind): throw .unsupported(path: path, what: kind)
        case .notImage(let kind): throw .notAnImage(path: path, looksLike: kind)
        }
    }

    private typealias Decoder = (UnsafePointer<UInt8>?, Int, UInt32, UInt64, UnsafeMutablePointer<lean_decoded_image>?,
                                 UnsafeMutablePointer<CChar>?, Int) -> Int32

    private static func decodeLibrary(_ bytes: [UInt8], path: String, format: String,
                                      _ decoder: Decoder) throws(ImageInputError) -> RGBImage {
        var image = lean_decoded_image()
        defer { lean_decoded_image_free(&image) }
        var message = [CChar](repeating: 0, count: 512)
        let status = bytes.withUnsafeBufferPointer { data in
            message.withUnsafeMutableBufferPointer { text in
                decoder(data.baseAddress, data.count, UInt32(maxInputSide), UInt64(maxInputPixels), &image,
                        text.baseAddress, text.count)
            }
        }
        let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let (w, h) = (Int(image.width), Int(image.height))
        switch Int(status) {
        case LEAN_IMAGE_OK: break
        case LEAN_IMAGE_TOO_LARGE:
            throw .tooLarge(path: path, width: w, height: h, maxSide: maxInputSide, maxPixels: maxInputPixels)
        case LEAN_IMAGE_UNSUPPORTED: throw .unsupported(path: path, what: "this \(format) (\(reason))")
        case LEAN_IMAGE_NO_MEMORY: throw .unreadable(path: path, reason: "out of memory decoding \(w)x\(h) \(format)")
        default: throw .corrupt(path: path, format: format, reason: reason)
        }
        // The decoders checked the size against the limits, so w * h * 3 fits easily in Int.
        guard let raw = image.pixels, w > 0, h > 0 else {
            throw .corrupt(path: path, format: format, reason: "no pixels decoded")
        }
        let decoded = RGBImage(width: w, height: h, pixels: Array(UnsafeBufferPointer(start: raw, count: w * h * 3)))
        func copied(_ p: UnsafeMutablePointer<UInt8>?, _ n: Int) -> [UInt8]? {
            p.map { Array(UnsafeBufferPointer(start: $0, count: n)) }
        }
        let orientation = ExifOrientation.transposition(
            exif: copied(image.exif, image.exif_length),
            rawProfileExif: copied(image.raw_profile_exif, image.raw_profile_exif_length),
            xmp: copied(image.xmp, image.xmp_length))
        return orientation.map { decoded.exifTransposed(orientation: $0) } ?? decoded
    }
}
