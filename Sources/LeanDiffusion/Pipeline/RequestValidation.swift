/// A request that passed `StableDiffusionPipeline.validate`: sizes resolved and known not to overflow.
struct CheckedRequest {
    let width: Int
    let height: Int
    /// prompts x images per prompt.
    let batch: Int
    let guidance: Bool
    /// (batch, the VAE's latent channels, height / f, width / f) and its element count.
    let latentShape: [Int]
    let latentCount: Int
    /// The first index into the scheduler's timesteps (0 from noise; image-to-image and inpainting start later).
    var startIndex = 0
}

/// Bounds on a request, far above what any machine can draw, so that sizes computed from them fit in `Int`.
public enum RequestLimits {
    /// Largest image side in pixels.
    public static let maxSide = 1 << 20
    /// Largest number of images in one call (prompts x images per prompt).
    public static let maxBatch = 4096
}

extension StableDiffusionPipeline {
    /// Checks `request` as `generate` would before any work (every field, then, with `memory`, the estimate
    /// against available memory) without running it: services call it when a request arrives, so a bad one is
    /// refused before it waits in a queue. Throws `PipelineError.invalidRequest` naming the field, or
    /// `.insufficientMemory`. Without `memory` it reads only the pipeline's configuration (not its weights or
    /// offload state), so it may run on one thread while another generates with the same pipeline.
    public func check(_ request: GenerationRequest, memory: Bool = true) throws {
        _ = try validate(request, memory: memory)
    }

    /// How many denoising steps `generate(request)` runs (and reports progress for): the scheduler's timesteps
    /// (PNDM's PLMS schedule has one more than `steps`), less those image-to-image skips. Checks the request as
    /// `check(_:memory: false)` does.
    public func denoisingSteps(for request: GenerationRequest) throws -> Int {
        let checked = try validate(request, memory: false)
        return try makeScheduler(for: request).timesteps.count - checked.startIndex
    }

    /// Checks every field of `request` (and the pipeline's `vaeOptions`) against this pipeline before anything is
    /// computed: sizes, steps against the scheduler's table, guidance, CLIP skip, counts, then the memory estimate.
    /// Every failure is a `PipelineError.invalidRequest` naming the field, or `.insufficientMemory`.
    func validate(_ request: GenerationRequest, memory: Bool = true) throws -> CheckedRequest {
        func bad(_ field: String, _ reason: String) -> PipelineError { .invalidRequest(field: field, reason: reason) }
        let factor = vaeScaleFactor
        var width = request.width ?? defaultSize, height = request.height ?? defaultSize
        if let initImage = request.initImage {
            (width, height) = try validate(initImage, width: request.width, height: request.height)
        } else if isInpaintingModel {
            throw bad("initImage", "this is an inpainting model (its UNet takes \(unetConfig.inChannels) channels: latents, "
                      + "mask and masked picture); give it a picture and a mask (--init-image, --mask)")
        }
        for (field, v) in [("width", width), ("height", height)] {
            guard v > 0, v % factor == 0, v <= RequestLimits.maxSide else {
                throw bad(field, "\(v) must be a positive multiple of \(factor) up to \(RequestLimits.maxSide) "
                          + "(width and height must be positive multiples of \(factor); got \(width)x\(height))")
            }
        }
        guard !request.prompts.isEmpty else { throw bad("prompts", "at least one prompt is needed") }
        guard request.imagesPerPrompt > 0 else {
            throw bad("imagesPerPrompt", "\(request.imagesPerPrompt): images per prompt must be at least 1")
        }
        let (batch, overflow) = request.prompts.count.multipliedReportingOverflow(by: request.imagesPerPrompt)
        guard !overflow, batch <= RequestLimits.maxBatch else {
            throw bad("imagesPerPrompt", "\(request.prompts.count) prompts x \(request.imagesPerPrompt) images is more than "
                      + "\(RequestLimits.maxBatch) images in one call; generate them in several calls")
        }
        if let neg = request.negativePrompts, neg.count != request.prompts.count {
            throw bad("negativePrompts", "\(neg.count) negative prompts for \(request.prompts.count) prompts")
        }
        let trained = schedulerConfig.numTrainTimesteps ?? 1000
        guard request.steps >= 1, request.steps < trained else {
            throw bad("steps", "\(request.steps) is outside 1...\(trained - 1) (steps must be at least 1 and below the "
                      + "scheduler's num_train_timesteps, \(trained))")
        }
        guard request.guidanceScale.isFinite else {
            throw bad("guidanceScale", "\(request.guidanceScale) is not a finite number; use a scale such as 7.5, or 1 to turn guidance off")
        }
        let layers = textEncoder.config.numHiddenLayers
        guard request.clipSkip >= 0, request.clipSkip < layers else {
            throw bad("clipSkip", "\(request.clipSkip) is outside 0...\(layers - 1) (clip skip must not be negative and the "
                      + "text encoder has \(layers) layers)")
        }
        try validateVAEOptions()
        // The scheduler's own checks (unsupported settings, timesteps past the table) before any work is done.
        _ = try makeScheduler(for: request)

        // (batch, C, h, w): each factor is bounded above, so only the product needs checking.
        let shape = [batch, vaeConfig.latentChannels, height / factor, width / factor]
        var count = 1
        for d in shape {
            let (p, o) = count.multipliedReportingOverflow(by: d)
            guard !o else { throw bad("width", "\(width)x\(height) x \(batch) images is too large to address") }
            count = p
        }
        var checked = CheckedRequest(width: width, height: height, batch: batch, guidance: request.guidanceScale > 1,
                                     latentShape: shape, latentCount: count)
        if let initImage = request.initImage {
            guard let start = Self.startIndex(steps: request.steps, strength: initImage.strength) else {
                throw bad("strength", "\(initImage.strength) x \(request.steps) steps leaves no denoising step "
                          + "(int(steps x strength) must be at least 1); raise the strength or the steps")
            }
            checked.startIndex = start
        }
        if memory { try checkMemory(checked) }
        return checked
    }

    /// The picture, mask and strength of an image-to-image or inpainting request; returns the output size (the
    /// request's, else the picture's rounded down to a multiple of the VAE's factor).
    func validate(_ initImage: InitImage, width: Int?, height: Int?) throws -> (width: Int, height: Int) {
        func bad(_ field: String, _ reason: String) -> PipelineError { .invalidRequest(field: field, reason: reason) }
        let s = initImage.strength
        guard s.isFinite, s > 0, s <= 1 else {
            throw bad("strength", "\(s) must be in (0, 1]: how much of the picture is redrawn (1 = all of it)")
        }
        let image = initImage.image
        if let mask = initImage.mask {
            do { try VAEImageProcessor.checkMaskSize(image: image, mask: mask) } catch {
                throw bad("mask", error.description)
            }
        } else if isInpaintingModel {
            throw bad("mask", "this is an inpainting model (its UNet takes \(unetConfig.inChannels) channels); give it "
                      + "a mask (--mask; white = repaint) with the picture")
        }
        do {
            return try VAEImageProcessor(scaleFactor: vaeScaleFactor)
                .targetSize(imageWidth: image.width, imageHeight: image.height, width: width, height: height)
        } catch {
            throw bad(width == nil && height == nil ? "initImage" : "width", error.description)
        }
    }

    /// `vaeOptions` against this VAE (tile size, overlap, the stride they leave), for `generate` and `decode`.
    func validateVAEOptions() throws {
        func bad(_ field: String, _ reason: String) -> PipelineError { .invalidRequest(field: field, reason: reason) }
        let factor = vaeScaleFactor
        if vaeOptions.tiling {
            let t = vaeOptions.sampleTile(for: vaeConfig)
            if let explicit = vaeOptions.tileSampleSize {
                guard explicit > 0, explicit % factor == 0, explicit <= RequestLimits.maxSide else {
                    throw bad("vaeOptions.tileSampleSize", "\(explicit) must be a positive multiple of \(factor) (the VAE's scale factor)")
                }
            } else if t < factor {
                throw bad("vaeOptions.tileSampleSize", "the VAE config's sample_size \(t) (the default tile) is smaller than "
                          + "the VAE's scale factor \(factor); set a tile size")
            }
            guard vaeOptions.tileOverlap.isFinite, vaeOptions.tileOverlap >= 0, vaeOptions.tileOverlap < 1 else {
                throw bad("vaeOptions.tileOverlap", "\(vaeOptions.tileOverlap) must be in [0, 1)")
            }
            guard Int(Double(t / factor) * (1 - Double(vaeOptions.tileOverlap))) > 0 else {
                throw bad("vaeOptions.tileOverlap", "\(vaeOptions.tileOverlap) leaves no stride between \(t)-pixel tiles")
            }
        }
    }
}
