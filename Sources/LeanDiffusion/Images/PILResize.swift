#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Pillow's `Image.resize(size, resample=LANCZOS)` for 8-bit images, bit for bit: the algorithm of Pillow's
/// src/libImaging/Resample.c (`precompute_coeffs`, `normalize_coeffs_8bpc`, `ImagingResampleInner`). Filter
/// weights are computed in double, normalised to sum 1, then rounded to fixed point with 22 fraction bits
/// (PRECISION_BITS = 32 - 8 - 2); each output sample is `1 << 21` plus the weighted sum in 32-bit integers, shifted
/// down and clipped to 0...255. Two passes, each through 8-bit pixels; a horizontal pass that runs first covers
/// only the rows the vertical pass reads; a pass whose dimension is unchanged is skipped, and an unchanged size
/// returns the image itself (PIL returns a copy).
enum PILResize {
    static let precisionBits: Int32 = 32 - 8 - 2
    static let support = 3.0  // Lanczos a = 3

    /// Pillow's `lanczos_filter`: sinc(x) * sinc(x / 3) on [-3, 3).
    static func lanczos(_ x: Double) -> Double {
        func sinc(_ x: Double) -> Double {
            if x == 0 { return 1 }
            let px = x * Double.pi
            return sin(px) / px
        }
        return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0
    }

    /// For each output index: the first input index, the number of taps, and the taps' fixed-point weights
    /// (`ksize` slots per output, the unused ones zero).
    struct Coefficients {
        var ksize: Int
        var first: [Int]
        var count: [Int]
        var weights: [Int32]
    }

    /// `precompute_coeffs` for the box (0, inSize) then `normalize_coeffs_8bpc`.
    static func coefficients(inSize: Int, outSize: Int) -> Coefficients {
        // Pillow computes (double)(in1 - in0) / outSize with float box edges; sizes up to 2^24 are exact floats.
        let scale = Double(inSize) / Double(outSize)
        let filterscale = max(scale, 1.0)
        let support = Self.support * filterscale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        var first = [Int](repeating: 0, count: outSize)
        var count = [Int](repeating: 0, count: outSize)
        var weights = [Int32](repeating: 0, count: outSize * ksize)
        let invFilterscale = 1.0 / filterscale
        var k = [Double](repeating: 0, count: ksize)
        for xx in 0..<outSize {
            let center = 0.0 + (Double(xx) + 0.5) * scale
            var ww = 0.0
            // C's (int) truncates toward zero; negative values clamp to 0 either way.
            let xmin = max(Int(center - support + 0.5), 0)
            let xmax = min(Int(center + support + 0.5), inSize) - xmin
            for x in 0..<max(xmax, 0) {
                let w = lanczos((Double(x + xmin) - center + 0.5) * invFilterscale)
                k[x] = w
                ww += w
            }
            for x in 0..<max(xmax, 0) where ww != 0 { k[x] /= ww }
            let one = Double(Int32(1) << precisionBits)
            for x in 0..<max(xmax, 0) {
                weights[xx * ksize + x] = k[x] < 0 ? Int32(-0.5 + k[x] * one) : Int32(0.5 + k[x] * one)
            }
            first[xx] = xmin
            count[xx] = max(xmax, 0)
        }
        return Coefficients(ksize: ksize, first: first, count: count, weights: weights)
    }

    /// Pillow's `clip8`: the sum's integer part (arithmetic shift), clamped to a byte.
    @inline(__always)
    static func clip8(_ ss: Int32) -> UInt8 {
        let v = ss >> precisionBits
        return v < 0 ? 0 : v > 255 ? 255 : UInt8(v)
    }

    /// Resizes interleaved 8-bit pixels with `channels` samples per pixel. Sizes must be positive (callers check).
    /// The pass order is Pillow 12.2's and later (Resample.c `horizontal_first`): vertical first when the height
    /// shrinks and the width does not, horizontal first otherwise. The order changes rounded pixels (by up to 20
    /// levels measured on the 37x29 fixture resized to 50x20), so older Pillow differs from this for that case.
    static func resize(_ pixels: [UInt8], width: Int, height: Int, channels: Int, toWidth: Int,
                       toHeight: Int) -> [UInt8] {
        let needHorizontal = toWidth != width, needVertical = toHeight != height
        guard needHorizontal || needVertical else { return pixels }
        if toWidth >= width && toHeight < height {
            let v = verticalPass(pixels, rowLength: width * channels, rowShift: 0,
                                 coefficients(inSize: height, outSize: toHeight))
            return needHorizontal
                ? horizontalPass(v, width: width, rows: 0..<toHeight, channels: channels,
                                 coefficients(inSize: width, outSize: toWidth))
                : v
        }
        let vertical = coefficients(inSize: height, outSize: toHeight)
        // The source rows the vertical pass reads (all of them when it is skipped).
        let rowFirst = vertical.first[0]
        let rowLast = vertical.first[toHeight - 1] + vertical.count[toHeight - 1]
        var image = pixels
        if needHorizontal {
            image = horizontalPass(pixels, width: width, rows: rowFirst..<rowLast, channels: channels,
                                   coefficients(inSize: width, outSize: toWidth))
        }
        if needVertical {
            image = verticalPass(image, rowLength: toWidth * channels, rowShift: needHorizontal ? rowFirst : 0,
                                 vertical)
        }
        return image
    }

    /// `ImagingResampleHorizontal_8bpc` over source rows `rows`: one output row per source row.
    static func horizontalPass(_ pixels: [UInt8], width: Int, rows: Range<Int>, channels: Int,
                               _ c: Coefficients) -> [UInt8] {
        let toWidth = c.first.count
        let half = Int32(1) << (precisionBits - 1)
        var out = [UInt8](repeating: 0, count: toWidth * rows.count * channels)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                c.weights.withUnsafeBufferPointer { kk in
                    for yy in 0..<rows.count {
                        let line = (yy + rows.lowerBound) * width * channels
                        for xx in 0..<toWidth {
                            let (xmin, n, k) = (c.first[xx], c.count[xx], xx * c.ksize)
                            for ch in 0..<channels {
                                var ss = half
                                for x in 0..<n {
                                    // Wrapping 32-bit arithmetic, as Pillow's int accumulators.
                                    ss = ss &+ Int32(src[line + (x + xmin) * channels + ch]) &* kk[k + x]
                                }
                                dst[(yy * toWidth + xx) * channels + ch] = clip8(ss)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// `ImagingResampleVertical_8bpc`: source row r is row r - rowShift of `pixels` (rows of `rowLength` bytes).
    static func verticalPass(_ pixels: [UInt8], rowLength: Int, rowShift: Int, _ c: Coefficients) -> [UInt8] {
        let toHeight = c.first.count
        let half = Int32(1) << (precisionBits - 1)
        var out = [UInt8](repeating: 0, count: rowLength * toHeight)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                c.weights.withUnsafeBufferPointer { kk in
                    for yy in 0..<toHeight {
                        let (ymin, n, k) = (c.first[yy] - rowShift, c.count[yy], yy * c.ksize)
                        for i in 0..<rowLength {
                            var ss = half
                            for y in 0..<n {
                                ss = ss &+ Int32(src[(y + ymin) * rowLength + i]) &* kk[k + y]
                            }
                            dst[yy * rowLength + i] = clip8(ss)
                        }
                    }
                }
            }
        }
        return out
    }
}

extension RGBImage {
    /// PIL's `image.resize((width, height), resample=Image.LANCZOS)`, bit-exact (see `PILResize`). Throws
    /// `ImageInputError.invalidSize` for a size that is not positive or is over the input limits.
    public func resizedLanczos(width toWidth: Int, height toHeight: Int) throws(ImageInputError) -> RGBImage {
        try PILResize.checkTarget(width: toWidth, height: toHeight)
        guard width > 0, height > 0 else {
            throw .invalidSize(width: width, height: height, reason: "an empty image cannot be resized")
        }
        let px = PILResize.resize(pixels, width: width, height: height, channels: 3, toWidth: toWidth, toHeight: toHeight)
        return RGBImage(width: toWidth, height: toHeight, pixels: px)
    }
}

extension GrayImage {
    /// PIL's `image.resize((width, height), resample=Image.LANCZOS)` for an "L" image, bit-exact.
    public func resizedLanczos(width toWidth: Int, height toHeight: Int) throws(ImageInputError) -> GrayImage {
        try PILResize.checkTarget(width: toWidth, height: toHeight)
        guard width > 0, height > 0 else {
            throw .invalidSize(width: width, height: height, reason: "an empty image cannot be resized")
        }
        let px = PILResize.resize(pixels, width: width, height: height, channels: 1, toWidth: toWidth, toHeight: toHeight)
        return GrayImage(width: toWidth, height: toHeight, pixels: px)
    }
}

extension PILResize {
    static func checkTarget(width: Int, height: Int) throws(ImageInputError) {
        guard width > 0, height > 0 else {
            throw .invalidSize(width: width, height: height, reason: "width and height must be positive")
        }
        guard width <= RGBImage.maxInputSide, height <= RGBImage.maxInputSide,
              width * height <= RGBImage.maxInputPixels else {
            throw .invalidSize(width: width, height: height,
                               reason: "over the limits (sides up to \(RGBImage.maxInputSide), "
                                   + "\(RGBImage.maxInputPixels) pixels)")
        }
    }
}
