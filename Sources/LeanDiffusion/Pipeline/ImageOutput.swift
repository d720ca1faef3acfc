import CPNG
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An 8-bit RGB image, row-major, as diffusers' `numpy_to_pil` produces it.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "RGB image needs width*height*3 bytes")
        (self.width, self.height, self.pixels) = (width, height, pixels)
    }

    /// From a decoded (3, H, W) image in [-1, 1], with diffusers' post-processing: (x / 2 + 0.5).clamp(0, 1),
    /// then `(x * 255).round()` (half to even, as numpy rounds). NaN becomes 0 rather than trapping in the
    /// conversion; `generate` refuses non-finite decoder output before it gets here.
    public init(decoded chw: UnsafePointer<Float>, width: Int, height: Int) {
        var px = [UInt8](repeating: 0, count: width * height * 3)
        let plane = width * height
        for c in 0..<3 {
            for i in 0..<plane {
                let x = chw[c * plane + i] / 2 + 0.5
                // Comparisons are false for NaN, so it takes the 0 branch; ±inf clamp like any large value.
                let v: Float = x > 0 ? (x < 1 ? x : 1) : 0
                px[i * 3 + c] = UInt8((v * 255).rounded(.toNearestOrEven))
            }
        }
        self.init(width: width, height: height, pixels: px)
    }

    /// Writes a PNG through libpng's simplified API (no setjmp/longjmp needed from Swift), atomically: to a
    /// temporary file beside `path`, renamed over it when complete (`AtomicFile`), so a failure never leaves a
    /// truncated PNG or destroys an existing file. Errors name the file and the system's reason.
    public func writePNG(to path: String) throws {
        try AtomicFile.write(to: path) { file in try encodePNG(to: file, path: path) }
    }

    /// The PNG bytes onto an open `FILE*`.
    func encodePNG(to file: UnsafeMutablePointer<FILE>, path: String) throws {
        guard width > 0, height > 0, width <= Int(UInt32.max / 3), height <= Int(UInt32.max) else {
            throw PipelineError.outputFailed(path: path, reason: "a PNG cannot hold a \(width)x\(height) image")
        }
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = UInt32(PNG_FORMAT_RGB)
        errno = 0
        let ok = pixels.withUnsafeBufferPointer { buf in
            png_image_write_to_stdio(&image, file, 0, buf.baseAddress, 0, nil)
        }
        if ok == 0 {
            let e = errno
            let message = withUnsafeBytes(of: image.message) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            png_image_free(&image)
            let reason = e != 0 ? "\(String(cString: strerror(e))) (libpng: \(message))" : "libpng: \(message)"
            throw PipelineError.outputFailed(path: path, reason: reason)
        }
    }

    /// Reads an 8-bit RGB PNG (tests compare our output with diffusers' files).
    public static func readPNG(from path: String) throws -> RGBImage {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        guard png_image_begin_read_from_file(&image, path) != 0 else {
            throw PipelineError.outputFailed(path: path, reason: "not a readable PNG")
        }
        image.format = UInt32(PNG_FORMAT_RGB)
        // Int arithmetic: the UInt32 product overflows (and traps) for a hostile header.
        let (w, h) = (Int(image.width), Int(image.height))
        guard w > 0, h > 0, w <= 1 << 20, h <= 1 << 20, w * h <= 1 << 30 else {
            png_image_free(&image)
            throw PipelineError.outputFailed(path: path, reason: "PNG of \(w)x\(h) pixels is too large to read")
        }
        var px = [UInt8](repeating: 0, count: w * h * 3)
        let ok = px.withUnsafeMutableBufferPointer { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
        guard ok != 0 else {
            png_image_free(&image)
            throw PipelineError.outputFailed(path: path, reason: "PNG decode failed")
        }
        return RGBImage(width: Int(image.width), height: Int(image.height), pixels: px)
    }
}
