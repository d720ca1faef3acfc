import CPNG
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
    /// then `(x * 255).round()` (half to even, as numpy rounds).
    public init(decoded chw: UnsafePointer<Float>, width: Int, height: Int) {
        var px = [UInt8](repeating: 0, count: width * height * 3)
        let plane = width * height
        for c in 0..<3 {
            for i in 0..<plane {
                let v = min(max(chw[c * plane + i] / 2 + 0.5, 0), 1)
                px[i * 3 + c] = UInt8((v * 255).rounded(.toNearestOrEven))
            }
        }
        self.init(width: width, height: height, pixels: px)
    }

    /// Writes a PNG through libpng's simplified API (no setjmp/longjmp needed from Swift).
    public func writePNG(to path: String) throws {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = UInt32(PNG_FORMAT_RGB)
        let ok = pixels.withUnsafeBufferPointer { buf in
            png_image_write_to_file(&image, path, 0, buf.baseAddress, 0, nil)
        }
        if ok == 0 {
            let message = withUnsafeBytes(of: image.message) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            png_image_free(&image)
            throw PipelineError.outputFailed(path: path, reason: message)
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
        var px = [UInt8](repeating: 0, count: Int(image.width * image.height) * 3)
        let ok = px.withUnsafeMutableBufferPointer { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
        guard ok != 0 else {
            png_image_free(&image)
            throw PipelineError.outputFailed(path: path, reason: "PNG decode failed")
        }
        return RGBImage(width: Int(image.width), height: Int(image.height), pixels: px)
    }
}
