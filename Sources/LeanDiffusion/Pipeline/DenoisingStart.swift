import LeanCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The picture a generation starts from: image-to-image without a mask (diffusers'
/// `StableDiffusionImg2ImgPipeline`), inpainting with one (`StableDiffusionInpaintPipeline`; white = repaint).
public struct InitImage: Sendable {
    public var image: RGBImage
    /// The inpainting mask, the image's size; nil for image-to-image.
    public var mask: RGBImage?
    /// How much is redrawn, 0 < strength <= 1: the loop runs the last `Int(steps · strength)` of the scheduler's
    /// timesteps, starting from the encoded picture noised to the first of them (diffusers' `get_timesteps`).
    public var strength: Double

    /// `strength` defaults as diffusers': 0.8 for image-to-image, 1.0 for inpainting.
    public init(image: RGBImage, mask: RGBImage? = nil, strength: Double? = nil) {
        self.image = image
        self.mask = mask
        self.strength = strength ?? (mask == nil ? 0.8 : 1.0)
    }
}

/// Where the shared denoising loop starts and what it does besides the scheduler step: text-to-image starts from
/// noise at index 0; image-to-image from the noised picture part-way; inpainting adds the mask and masked-image
/// latents to the UNet input (9-channel UNets) or puts the known region back after every step (4-channel UNets).
struct DenoisingStart {
    /// (batch, latent channels, h, w).
    var latents: [Float]
    /// The first index into the scheduler's timesteps.
    var startIndex: Int
    /// (batch, 1 + latent channels, h, w): mask and masked-image latents, concatenated after each image's latents
    /// on the channel axis (`torch.cat([latent_model_input, mask, masked_image_latents], dim=1)`).
    var conditioning: [Float]? = nil
    var knownRegion: KnownRegion? = nil
}

/// 4-channel inpainting: after each step, `(1 − mask) · known + mask · latents` with the picture's latents noised
/// to the next timestep (not noised after the last), as diffusers' inpainting loop does.
struct KnownRegion {
    /// (batch, C, h, w): the picture's latents, repeated per image.
    let imageLatents: [Float]
    /// The noise of the starting latents, reused for every re-noising.
    let noise: [Float]
    /// (h, w) in {0, 1}, the same for every image and channel.
    let mask: [Float]

    func apply(_ latents: [Float], nextIndex: Int?, scheduler: any Scheduler) -> [Float] {
        let known = nextIndex.map { scheduler.addNoise(imageLatents, noise: noise, stepIndex: $0) } ?? imageLatents
        let plane = mask.count
        var out = latents
        for i in 0..<out.count {
            let m = mask[i % plane]
            let a = (1 - m) * known[i], b = m * latents[i]
            out[i] = a + b
        }
        return out
    }
}

extension StableDiffusionPipeline {
    /// diffusers' `get_timesteps`: `init_timestep = min(int(steps · strength), steps)`, the loop from
    /// `t_start = steps − init_timestep` (every scheduler here has order 1). nil when no step would be left.
    static func startIndex(steps: Int, strength: Double) -> Int? {
        let initSteps = min(Int(Double(steps) * strength), steps)
        return initSteps >= 1 ? steps - initSteps : nil
    }

    /// The starting latents for `request` (already validated), drawing from `generator` in diffusers' order:
    /// text-to-image `randn · init_noise_sigma`; image-to-image the picture's posterior sample, then the noise;
    /// inpainting the picture's sample (4-channel UNets, or strength < 1), the noise, then the masked picture's.
    func prepareStart(_ request: GenerationRequest, _ checked: CheckedRequest, scheduler: any Scheduler,
                      generator: inout TorchGenerator) throws -> DenoisingStart {
        let shape = checked.latentShape
        let count = checked.latentCount
        guard let initImage = request.initImage else {
            return DenoisingStart(latents: generator.randn(count: count).map { $0 * scheduler.initNoiseSigma },
                                  startIndex: 0)
        }
        let start = checked.startIndex
        let processor = VAEImageProcessor(scaleFactor: vaeScaleFactor)
        let (pixels, width, height) = try processor.preprocess(initImage.image, width: checked.width,
                                                               height: checked.height)
        let batch = shape[0]
        func repeated(_ one: [Float]) -> [Float] { Array([[Float]](repeating: one, count: batch).joined()) }

        guard let mask = initImage.mask else {
            let imageLatents = repeated(try encodeSample(pixels, width: width, height: height, generator: &generator))
            let noise = generator.randn(count: count)
            return DenoisingStart(latents: scheduler.addNoise(imageLatents, noise: noise, stepIndex: start),
                                  startIndex: start)
        }
        let maskPixels = try processor.preprocessMask(mask, width: width, height: height).pixels
        let nineChannels = isInpaintingModel
        let strengthMax = initImage.strength == 1.0
        var imageLatents: [Float]? = nil
        if !nineChannels || !strengthMax {
            imageLatents = repeated(try encodeSample(pixels, width: width, height: height, generator: &generator))
        }
        let noise = generator.randn(count: count)
        let latents: [Float]
        if strengthMax {
            latents = noise.map { $0 * scheduler.initNoiseSigma }
        } else {
            latents = scheduler.addNoise(imageLatents!, noise: noise, stepIndex: start)
        }
        // masked_image = init_image * (mask < 0.5), then encoded with the same generator (for both UNet kinds).
        let plane = width * height
        var masked = pixels
        for i in 0..<masked.count { masked[i] = pixels[i] * (maskPixels[i % plane] < 0.5 ? 1 : 0) }
        let maskedLatents = try encodeSample(masked, width: width, height: height, generator: &generator)
        // interpolate(mask, size=(h, w)), mode "nearest": source pixel (f·y, f·x) for an exact factor f.
        let (h, w, f) = (shape[2], shape[3], vaeScaleFactor)
        var latentMask = [Float](repeating: 0, count: h * w)
        for y in 0..<h { for x in 0..<w { latentMask[y * w + x] = maskPixels[(y * f) * width + x * f] } }

        var result = DenoisingStart(latents: latents, startIndex: start)
        if nineChannels {
            result.conditioning = repeated(latentMask + maskedLatents)
        } else {
            result.knownRegion = KnownRegion(imageLatents: imageLatents!, noise: noise, mask: latentMask)
        }
        return result
    }

    /// `scaling_factor · vae.encode(image).latent_dist.sample(generator)` for one (3, H, W) image in [-1, 1]:
    /// `mean + exp(0.5 · logvar) · randn`, with the pipeline's VAE slicing and tiling.
    func encodeSample(_ pixels: [Float], width: Int, height: Int,
                      generator: inout TorchGenerator) throws -> [Float] {
        let x = Tensor(pixels, shape: [1, 3, height, width]).converted(to: policy.dtype).withLayout(policy.layout)
        let (mean, logvar) = vae.encode(x, options: vaeOptions)
        try FiniteCheck.require(mean, "the VAE encoder")
        let m = mean.toFloats(), lv = logvar.toFloats()
        let eps = generator.randn(count: m.count)
        let scale = vaeConfig.scalingFactor
        var out = [Float](repeating: 0, count: m.count)
        for i in 0..<m.count {
            let std = expf(0.5 * lv[i])
            let sample = m[i] + std * eps[i]
            out[i] = scale * sample
        }
        return out
    }
}
