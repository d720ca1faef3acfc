extension SchedulerKind {
    /// AUTOMATIC1111's sampler name for this kind (the names of its sampler lists and of diffusers' scheduler
    /// overview table): PNDM with `skip_prk_steps` (SD's config) steps as PLMS does.
    public var a1111SamplerName: String {
        switch self {
        case .pndm: return "PLMS"
        case .ddim: return "DDIM"
        case .euler: return "Euler"
        case .eulerAncestral: return "Euler a"
        case .dpmpp2m: return "DPM++ 2M"
        case .unipc: return "UniPC"
        case .lcm: return "LCM"
        }
    }

    /// The kind whose A1111 sampler name is `name` (case-insensitive; "Euler a" or "k_euler_a").
    public init?(a1111SamplerName name: String) {
        let n = name.lowercased()
        let aliases: [String: SchedulerKind] = ["k_euler": .euler, "k_euler_a": .eulerAncestral,
                                                "k_euler_ancestral": .eulerAncestral, "k_dpmpp_2m": .dpmpp2m,
                                                "k_lcm": .lcm]
        guard let k = SchedulerKind.allCases.first(where: { $0.a1111SamplerName.lowercased() == n }) ?? aliases[n] else {
            return nil
        }
        self = k
    }

    /// A1111's "Schedule type" closest to this kind's timesteps under `config` (diffusers' "Noise schedules and
    /// schedule types" table): Karras sigmas → "Karras"; trailing spacing → "SGM Uniform"; linspace → "Uniform";
    /// leading → "DDIM" (A1111's DDIM schedule is leading with offset 1) for the sigma samplers, "Automatic" for PLMS
    /// and DDIM (whose own schedule that is) and for LCM (its own schedule, no spacing).
    public func a1111ScheduleType(config: SchedulerConfig) -> String {
        if self == .lcm { return "Automatic" }
        if config.useKarrasSigmas == true && [.euler, .dpmpp2m, .unipc].contains(self) { return "Karras" }
        let defaultSpacing: TimestepSpacing = (self == .pndm || self == .ddim) ? .leading : .linspace
        switch config.timestepSpacing.flatMap(TimestepSpacing.init(rawValue:)) ?? defaultSpacing {
        case .trailing: return "SGM Uniform"
        case .linspace: return "Uniform"
        case .leading: return (self == .pndm || self == .ddim) ? "Automatic" : "DDIM"
        }
    }
}

extension GenerationParameters {
    /// The parameters of one generated image in A1111's order (Steps, Sampler, Schedule type, CFG scale, Seed, Size,
    /// Model hash, Model, VAE hash, VAE, Denoising strength, Clip skip, `extra` (e.g. Lora hashes), Version). `clipSkip` is ours (0 = last layer), written as A1111's
    /// 1-based value and only when it is above 1; a nil model hash or name is left out, as A1111 leaves absent
    /// values out. `cfgScale` is written as Python prints a float ("7.5", "1.0").
    public init(prompt: String, negativePrompt: String = "", steps: Int, sampler: String, scheduleType: String?,
                cfgScale: Float, seed: UInt64, width: Int, height: Int, modelHash: String?, model: String?,
                vaeHash: String? = nil, vae: String? = nil,
                denoisingStrength: Double? = nil, clipSkip: Int = 0, extra: [InfotextField] = [],
                version: String = "LeanDiffusion \(LeanDiffusionVersion.string)") {
        var f: [InfotextField] = [InfotextField("Steps", "\(steps)"), InfotextField("Sampler", sampler)]
        if let scheduleType { f.append(InfotextField("Schedule type", scheduleType)) }
        f.append(InfotextField("CFG scale", "\(cfgScale)"))
        f.append(InfotextField("Seed", "\(seed)"))
        f.append(InfotextField("Size", "\(width)x\(height)"))
        if let modelHash { f.append(InfotextField("Model hash", modelHash)) }
        if let model { f.append(InfotextField("Model", model)) }
        if let vaeHash { f.append(InfotextField("VAE hash", vaeHash)) }
        if let vae { f.append(InfotextField("VAE", vae)) }
        if let denoisingStrength { f.append(InfotextField("Denoising strength", "\(denoisingStrength)")) }
        if clipSkip >= 1 { f.append(InfotextField("Clip skip", "\(clipSkip + 1)")) }
        f += extra
        f.append(InfotextField("Version", version))
        self.init(prompt: prompt, negativePrompt: negativePrompt, fields: f)
    }
}

extension StableDiffusionPipeline {
    /// The size of the images `generate(request)` returns: the request's, else the model's default, else for
    /// image-to-image the picture's rounded down to a multiple of the VAE's factor (as `generate` resizes it).
    public func outputSize(for request: GenerationRequest) -> (width: Int, height: Int) {
        var size = (width: request.width ?? defaultSize, height: request.height ?? defaultSize)
        if let initImage = request.initImage,
           let target = try? VAEImageProcessor(scaleFactor: vaeScaleFactor).targetSize(
               imageWidth: initImage.image.width, imageHeight: initImage.image.height,
               width: request.width, height: request.height) {
            size = target
        }
        return size
    }

    /// One `GenerationParameters` per image `generate(request)` returns (prompt-major, as the images), for a run
    /// with `seed` (pass the seed the run used: a request without one draws its own). With several images in one
    /// call they share the seed (one generator draws the batch's latents) and carry A1111's `Batch size` and
    /// `Batch pos`. Image-to-image and inpainting add A1111's `Denoising strength`, and their size is the output's
    /// (the picture's, rounded down to a multiple of 8, unless the request sets one).
    public func generationParameters(for request: GenerationRequest, seed: UInt64, modelHash: String?,
                                     model: String?) -> [GenerationParameters] {
        generationParameters(for: request, seed: seed, provenance: ModelProvenance(modelHash: modelHash, model: model))
    }

    /// As `generationParameters(for:seed:modelHash:model:)`, naming the VAE and LoRAs of `provenance` too.
    public func generationParameters(for request: GenerationRequest, seed: UInt64,
                                     provenance: ModelProvenance) -> [GenerationParameters] {
        let kind = request.schedulerKind(folderDefault: defaultScheduler)
        let config = request.schedulerConfig(from: schedulerConfig)
        let (width, height) = outputSize(for: request)
        let total = request.prompts.count * request.imagesPerPrompt
        return (0..<total).map { i in
            let p = i / request.imagesPerPrompt
            var extra = total > 1 ? [InfotextField("Batch size", "\(total)"), InfotextField("Batch pos", "\(i)")] : []
            if let loras = provenance.loraHashesField { extra.append(loras) }
            return GenerationParameters(prompt: request.prompts[p], negativePrompt: request.negativePrompts?[p] ?? "",
                                        steps: request.steps, sampler: kind.a1111SamplerName,
                                        scheduleType: kind.a1111ScheduleType(config: config),
                                        cfgScale: request.guidanceScale, seed: seed, width: width, height: height,
                                        modelHash: provenance.modelHash, model: provenance.model,
                                        vaeHash: provenance.vaeHash, vae: provenance.vae,
                                        denoisingStrength: request.initImage?.strength, clipSkip: request.clipSkip,
                                        extra: extra)
        }
    }
}
