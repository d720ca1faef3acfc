/// An 8-bit single-channel image, row-major: PIL's mode "L" (an inpainting mask after `convert("L")`).
public struct GrayImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    /// `pixels` must hold `width * height` bytes (a programming error otherwise; decoders check sizes first).
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height, "grey image needs width*height bytes")
        (self.width, self.height, self.pixels) = (width, height, pixels)
    }
}

extension RGBImage {
    /// PIL's `convert("L")` exactly: L = (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16 (ITU-R 601-2 luma in
    /// 16-bit fixed point, Pillow's Convert.c `L24`).
    public func grayscale() -> GrayImage {
        let count = width * height
        var out = [UInt8](repeating: 0, count: count)
        pixels.withUnsafeBufferPointer { rgb in
            out.withUnsafeMutableBufferPointer { l in
                for i in 0..<count {
                    let r = UInt32(rgb[3 * i]), g = UInt32(rgb[3 * i + 1]), b = UInt32(rgb[3 * i + 2])
                    // At most 255 * 65536 + 0x8000 < 2^32: no overflow.
                    l[i] = UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
                }
            }
        }
        return GrayImage(width: width, height: height, pixels: out)
    }
}
