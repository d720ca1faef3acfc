/// diffusers' `VaeImageProcessor` for PIL-image input, as a value: the image-to-image processor
/// (`VaeImageProcessor(vae_scale_factor=8)`) in `preprocess`, the inpainting mask processor
/// (`do_normalize=False, do_binarize=True, do_convert_grayscale=True`) in `preprocessMask`. The float steps are
/// numpy's and torch's float32 operations in the same order, so the results are equal bit for bit.
public struct VAEImageProcessor: Sendable, Equatable {
    /// 2^(number of VAE blocks - 1): 8 for Stable Diffusion. Latents are 1/scaleFactor of the image size.
    public var scaleFactor: Int

    public init(scaleFactor: Int = 8) {
        self.scaleFactor = scaleFactor
    }

    /// The size `preprocess` produces: diffusers' `get_default_height_width` for the sides not given (the image's,
    /// rounded down to a multiple of the scale factor); a given side must already be a positive multiple of it
    /// (diffusers rounds a given side down silently too; a request for 500 pixels that yields 496 is refused here
    /// instead, so the caller learns the size it gets).
    public func targetSize(imageWidth: Int, imageHeight: Int, width: Int?, height: Int?)
        throws(ImageInputError) -> (width: Int, height: Int)
    {
        guard scaleFactor > 0 else {
            throw .invalidSize(width: width ?? imageWidth, height: height ?? imageHeight,
                               reason: "the VAE scale factor \(scaleFactor) is not positive")
        }
        for (name, side) in [("width", width), ("height", height)] {
            if let side, side <= 0 || side % scaleFactor != 0 {
                throw .invalidSize(width: width ?? imageWidth, height: height ?? imageHeight,
                                   reason: "the \(name) must be a positive multiple of \(scaleFactor); "
                                       + "use \(max(scaleFactor, side - side % scaleFactor))")
            }
        }
        let w = width ?? imageWidth - imageWidth % scaleFactor
        let h = height ?? imageHeight - imageHeight % scaleFactor
        guard w > 0, h > 0 else {
            throw .invalidSize(width: imageWidth, height: imageHeight,
                               reason: "the image is smaller than \(scaleFactor) pixels on a side; "
                                   + "give a larger image or an explicit width and height")
        }
        try PILResize.checkTarget(width: w, height: h)
        return (w, h)
    }

    /// The image as diffusers' `image_processor.preprocess(image, height, width)` gives it to the VAE encoder:
    /// resized with PIL's Lanczos when the target size differs, then `np.array(img).astype(np.float32) / 255.0`
    /// and `2.0 * x - 1.0`. `pixels` is (3, height, width) planar in [-1, 1].
    public func preprocess(_ image: RGBImage, width: Int? = nil, height: Int? = nil)
        throws(ImageInputError) -> (pixels: [Float], width: Int, height: Int)
    {
        let (w, h) = try targetSize(imageWidth: image.width, imageHeight: image.height, width: width, height: height)
        let resized = try image.resizedLanczos(width: w, height: h)
        let plane = w * h
        var out = [Float](repeating: 0, count: 3 * plane)
        resized.pixels.withUnsafeBufferPointer { px in
            out.withUnsafeMutableBufferPointer { dst in
                for i in 0..<plane {
                    for c in 0..<3 {
                        // Two float32 roundings, as numpy's division and torch's 2 * x - 1 (2 * x itself is exact).
                        let x = Float(px[3 * i + c]) / 255
                        dst[c * plane + i] = 2 * x - 1
                    }
                }
            }
        }
        return (out, w, h)
    }

    /// An inpainting mask as diffusers' `mask_processor.preprocess(mask, height, width)` gives it: Lanczos resize
    /// of the RGB mask (when the size differs), then `convert("L")`, `/ 255.0`, and binarize (< 0.5 is 0, else 1):
    /// diffusers resizes before converting to grey, and the order changes rounded pixels. `pixels` is
    /// (1, height, width), each 0 or 1 (1 = repaint).
    public func preprocessMask(_ mask: RGBImage, width: Int? = nil, height: Int? = nil)
        throws(ImageInputError) -> (pixels: [Float], width: Int, height: Int)
    {
        let (w, h) = try targetSize(imageWidth: mask.width, imageHeight: mask.height, width: width, height: height)
        let grey = try mask.resizedLanczos(width: w, height: h).grayscale()
        let out = grey.pixels.map { v -> Float in Float(v) / 255 < 0.5 ? 0 : 1 }
        return (out, w, h)
    }

    /// Refuses a mask whose size differs from its image's (`ImageInputError.maskSize`); call it before
    /// preprocessing both.
    public static func checkMaskSize(image: RGBImage, mask: RGBImage) throws(ImageInputError) {
        guard image.width == mask.width, image.height == mask.height else {
            throw .maskSize(image: (image.width, image.height), mask: (mask.width, mask.height))
        }
    }
}
