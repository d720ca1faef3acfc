/// A request that passed `StableDiffusionPipeline.validate`: sizes resolved and known not to overflow.
struct CheckedRequest {
    let width: Int
    let height: Int
    /// prompts x images per prompt.
    let batch: Int
    let guidance: Bool
    /// (batch, in_channels, height / f, width / f) and its element count.
    let latentShape: [Int]
    let latentCount: Int
}

/// Bounds on a request, far above what any machine can draw, so that sizes computed from them fit in `Int`.
public enum RequestLimits {
    /// Largest image side in pixels.
    public static let maxSide = 1 << 20
    /// Largest number of images in one call (prompts x images per prompt).
    public static let maxBatch = 4096
}

extension StableDiffusionPipeline {
    /// Checks every field of `request` (and the pipeline's `vaeOptions`) against this pipeline before anything is
    /// computed: sizes, steps against the scheduler's table, guidance, CLIP skip, counts, then the memory estimate.
    /// Every failure is a `PipelineError.invalidRequest` naming the field, or `.insufficientMemory`.
    func validate(_ request: GenerationRequest) throws -> CheckedRequest {
        func bad(_ field: String, _ reason: String) -> PipelineError { .invalidRequest(field: field, reason: reason) }
        let factor = vaeScaleFactor
        let width = request.width ?? defaultSize, height = request.height ?? defaultSize
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
        let shape = [batch, unetConfig.inChannels, height / factor, width / factor]
        var count = 1
        for d in shape {
            let (p, o) = count.multipliedReportingOverflow(by: d)
            guard !o else { throw bad("width", "\(width)x\(height) x \(batch) images is too large to address") }
            count = p
        }
        let checked = CheckedRequest(width: width, height: height, batch: batch, guidance: request.guidanceScale > 1,
                                     latentShape: shape, latentCount: count)
        try checkMemory(checked)
        return checked
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
