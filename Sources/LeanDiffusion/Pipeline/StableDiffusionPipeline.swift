import Logging
import SafeTensors
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What to draw. Mirrors the arguments of diffusers' `StableDiffusionPipeline.__call__`.
public struct GenerationRequest: Sendable {
    public var prompts: [String]
    /// One per prompt, or nil for the empty negative prompt diffusers uses.
    public var negativePrompts: [String]?
    public var steps: Int = 50
    /// Classifier-free guidance is off at or below 1, as in diffusers.
    public var guidanceScale: Float = 7.5
    public var width: Int? = nil
    public var height: Int? = nil
    public var imagesPerPrompt: Int = 1
    /// `torch.Generator("cpu").manual_seed(seed)`; a random seed when nil.
    public var seed: UInt64? = nil
    /// Replace the folder's scheduler (diffusers' `Cls.from_config(pipe.scheduler.config)`).
    public var scheduler: SchedulerKind? = nil
    /// Overrides the config's `timestep_spacing`, as `Cls.from_config(config, timestep_spacing=...)` (e.g. trailing
    /// for SD-Turbo style 1-4 step sampling); nil keeps the config's (or the class default).
    public var timestepSpacing: TimestepSpacing? = nil
    /// CLIP skip: use the hidden state this many layers before the last (0 = last layer).
    public var clipSkip: Int = 0
    /// Start from a picture instead of noise: image-to-image, or inpainting when it has a mask. `width` and
    /// `height` then default to the picture's size rounded down to a multiple of 8 (given, the picture is resized
    /// to them with PIL's Lanczos, as diffusers' image processor does).
    public var initImage: InitImage? = nil

    public init(prompts: [String], negativePrompts: [String]? = nil) {
        self.prompts = prompts
        self.negativePrompts = negativePrompts
    }

    public init(prompt: String, negativePrompt: String? = nil) {
        self.init(prompts: [prompt], negativePrompts: negativePrompt.map { [$0] })
    }
}

/// Progress of the denoising loop; return false from the callback to cancel.
public struct StepProgress: Sendable {
    public let step: Int
    public let totalSteps: Int
    public let timestep: Float
    public let seconds: Double
}

/// A diffusers `StableDiffusionPipeline` folder, loaded: tokenizer, text encoder, UNet, VAE and scheduler config.
public final class StableDiffusionPipeline {
    public let directory: String
    public let policy: ComputePolicy
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextModel
    public let unet: UNet2DConditionModel
    public let vae: AutoencoderKL
    public let unetConfig: UNetConfig
    public let vaeConfig: VAEConfig
    public let schedulerConfig: SchedulerConfig
    /// The scheduler the folder names, used when a request does not choose one.
    public let defaultScheduler: SchedulerKind
    /// VAE slicing and tiling for `decode` (off by default, as in diffusers).
    public var vaeOptions = VAEOptions()
    /// What `generate` compares its memory estimate with (default: this machine's available memory).
    public var availableMemory = AvailableMemory.system
    var logger: Logger
    /// Where the weights live between and during runs.
    public var offload: OffloadMode { offloadController.mode }
    let offloadController: OffloadController
    /// The init's weight loading, reported as the first phase of every run.
    let loadPhase: PhaseReport
    /// Guidance and steps the folder recommends (`lean_diffusion.json`; empty when it has none), for callers that
    /// fill a `GenerationRequest` from user input.
    public let samplingDefaults: SamplingDefaults
    /// What the last `generate` call did, phase by phase.
    public private(set) var lastReport: RunReport?
    /// Sequential offload's streamer (nil in the other modes).
    public var weightStreamer: WeightStreamer? { offloadController.streamer }
    /// The folder of its configs (components, configs, tokenizer; for a folder pipeline, its weights too).
    public let folder: DiffusersFolder
    /// The LoRAs applied to its weights.
    public let loras: [LoRASpec]
    /// The single-file checkpoint it was loaded from, if any.
    public let singleFile: SingleFileCheckpoint?
    /// The memory system and kernel state this pipeline owns (tracker, planned arenas, primitive cache, buffer
    /// pool): every load, generate and decode runs in it, so pipelines in one process share nothing mutable.
    public let context: RuntimeContext

    /// Components a Stable Diffusion 1.x/2.x folder must have, with the classes we implement.
    static let requiredComponents: [(name: String, classes: [String])] = [
        ("tokenizer", ["CLIPTokenizer", "CLIPTokenizerFast"]),
        ("text_encoder", ["CLIPTextModel"]),
        ("unet", ["UNet2DConditionModel"]),
        ("vae", ["AutoencoderKL"]),
        ("scheduler", SchedulerKind.allCases.map(\.diffusersClassName)),
    ]

    /// Loads a pipeline folder, or a single-file checkpoint (`directory` a `.safetensors` file in the original
    /// layout; see `SingleFileCheckpoint`). `variant` picks `*.<variant>.safetensors` weight files (e.g. "fp16");
    /// without it the plain files are used, falling back to a variant when that is all the folder has. `offload`
    /// chooses where weights live (see `OffloadMode`); `streamingBudgetBytes` bounds resident weight bytes under
    /// sequential offload (default: three times the largest weight).
    ///
    /// A single file takes its configs, tokenizer and scheduler from `config` (a diffusers folder, as
    /// `from_single_file(config=)`), else from `configsDirectory/<architecture>` (LeanDiffusion's `Models/configs`).
    /// `vae` replaces the VAE: a diffusers VAE folder, or a `.safetensors` file in either layout. `loras` are
    /// applied to the UNet and text encoder weights as they load (see `LoRAPolicy`), in every offload mode.
    public init(directory: String, policy: ComputePolicy = ComputePolicy(), variant: String? = nil,
                offload: OffloadMode = .none, streamingBudgetBytes: Int? = nil,
                config: String? = nil, configsDirectory: String? = nil, vae vaePath: String? = nil,
                loras: [LoRASpec] = [],
                context: RuntimeContext = RuntimeContext(),
                logger: Logger = Logger(label: "lean-diffusion")) throws {
        try policy.checkSupported()
        let single = RegularFile.exists(directory) ? try SingleFileCheckpoint(path: directory) : nil
        self.singleFile = single
        self.loras = loras
        let configRoot: String
        if let single {
            if let config {
                configRoot = config
            } else if let configsDirectory {
                configRoot = configsDirectory + "/" + single.architecture.rawValue
            } else {
                throw PipelineError.invalidArgument("\(directory) is a single-file checkpoint: its configs come from a "
                    + "diffusers folder (config:) or LeanDiffusion's Models/configs (configsDirectory:)")
            }
        } else {
            guard config == nil else {
                throw PipelineError.invalidArgument("config: is for single-file checkpoints; \(directory) is a folder")
            }
            configRoot = directory
        }
        let replacementVAE = try vaePath.map(VAEReplacement.init(path:))
        self.directory = directory
        self.policy = policy
        self.logger = logger
        self.context = context
        let offloadController = OffloadController(mode: offload, budgetBytes: streamingBudgetBytes, context: context)
        self.offloadController = offloadController
        let folder = try DiffusersFolder(path: configRoot)
        self.folder = folder
        let indexPath = folder.indexPath
        if let cls = folder.pipelineClass, cls != "StableDiffusionPipeline" {
            throw PipelineError.unsupportedPipeline(cls, file: indexPath)
        }
        var index: [String: String] = [:]
        for (name, classes) in Self.requiredComponents {
            guard let component = folder.component(name), let cls = component.className else {
                throw PipelineError.missingComponent(name: name, folder: directory)
            }
            guard classes.contains(cls) else {
                throw PipelineError.unsupportedComponent(name: name, className: cls, file: indexPath)
            }
            guard FileManager.default.fileExists(atPath: component.directory) else {
                throw PipelineError.missingComponent(name: name, folder: directory)
            }
            index[name] = cls
        }

        tokenizer = try CLIPTokenizer(directory: configRoot + "/tokenizer")

        let schedulerPath = configRoot + "/scheduler/scheduler_config.json"
        var sc = try SchedulerConfig.load(path: schedulerPath)
        // StableDiffusionPipeline.__init__ repairs two legacy settings before anything runs.
        if let offset = sc.stepsOffset, offset != 1 { sc.stepsOffset = 1 }
        if sc.clipSample == true { sc.clipSample = false }
        schedulerConfig = sc
        defaultScheduler = SchedulerKind(diffusersClassName: index["scheduler"]!)!
        samplingDefaults = try SamplingDefaults(directory: configRoot)

        let textConfig = try CLIPTextConfig.load(from: configRoot + "/text_encoder")
        unetConfig = try UNetConfig.load(from: configRoot + "/unet")
        vaeConfig = try VAEConfig.load(from: replacementVAE?.configDirectory ?? configRoot + "/vae")
        try Self.checkCompatibility(directory: directory, tokenizer: tokenizer, text: textConfig, unet: unetConfig,
                                    vae: vaeConfig, scheduler: sc, kind: index["scheduler"]!, schedulerPath: schedulerPath)
        let (unetConfig, vaeConfig) = (self.unetConfig, self.vaeConfig)
        var phases: [PhaseReport] = []
        let models = try PhaseClock(tracker: context.tracker).measure("load", into: &phases) {
            () throws -> (CLIPTextModel, UNet2DConditionModel, AutoencoderKL) in
          try context.run {
            func weights(_ name: String, _ c: OffloadController.Component) throws -> WeightLoader {
                let loader: WeightLoader
                if c == .vae, let replacementVAE {
                    loader = try replacementVAE.loader(vaeConfig, policy.dtype)
                } else if let single {
                    switch c {
                    case .textEncoder: loader = try single.textEncoderLoader(dtype: policy.dtype)
                    case .unet: loader = try single.loader(unet: unetConfig, dtype: policy.dtype)
                    case .vae: loader = single.loader(vae: vaeConfig, dtype: policy.dtype)
                    }
                } else {
                    loader = try Self.weights(directory + "/" + name, variant, policy)
                }
                return loader.registering(in: offloadController.registry(c))
            }
            let models = (try CLIPTextModel(config: textConfig, weights: try weights("text_encoder", .textEncoder), policy: policy),
                          try UNet2DConditionModel(config: unetConfig, weights: try weights("unet", .unet), policy: policy),
                          try AutoencoderKL(config: vaeConfig, weights: try weights("vae", .vae), policy: policy))
            _ = try LoRAPolicy.apply(loras, to: [.unet: offloadController.registry(.unet),
                                             .textEncoder: offloadController.registry(.textEncoder)], dtype: policy.dtype)
            offloadController.prepare()
            try context.checkFailures()
            return models
          }
        }
        (textEncoder, unet, vae) = models
        loadPhase = phases[0]
        logger.info("loaded \(directory) in \(loadPhase.seconds) s (\(policy.dtype), \(policy.layout), offload \(offload))")
    }

    /// The weights of one component: the files `DiffusersFolder.weightFiles` picks for `variant`.
    static func weights(_ dir: String, _ variant: String?, _ policy: ComputePolicy) throws -> WeightLoader {
        try WeightLoader(paths: try DiffusersFolder.weightFiles(in: dir, variant: variant), dtype: policy.dtype)
    }

    /// Whether UNet calls run under an `ExecutionPlan` (the guide's traced UNet): after a warm-up and a recorded
    /// step, activations come from one arena laid out by liveness. Off under sequential offload by choice, not
    /// necessity (weights never come from the plan, and it replays there with no fallback): measured on SD1.5 bf16
    /// with a 40 MiB budget, the arena held peak RSS at 490 MB against 390 MB unplanned (the memory-first allocator
    /// hands freed activations back to the system), and steps were no faster (9.3-10.3 s against 8.6-9.1 s).
    public var planUNet = true
    /// Plan the UNet under sequential offload too (off by default; see `planUNet`).
    public var planUnderSequentialOffload = false
    /// One plan per UNet input shape.
    public private(set) var unetPlans: [[Int]: ExecutionPlan] = [:]

    func unetPlan(for shape: [Int]) -> ExecutionPlan? {
        guard planUNet, offload != .sequential || planUnderSequentialOffload else { return nil }
        if let plan = unetPlans[shape] { return plan }
        let logger = self.logger
        let plan = ExecutionPlan(log: { message in logger.debug("\(message)") })
        unetPlans[shape] = plan
        return plan
    }

    /// The default size: UNet sample_size times the VAE's downsampling factor (64 x 8 = 512 for SD 1.5).
    public var defaultSize: Int { unetConfig.sampleSize * vaeScaleFactor }
    public var vaeScaleFactor: Int { 1 << (vaeConfig.blockOutChannels.count - 1) }
    /// A 9-channel inpainting UNet (latents, mask, masked picture): it needs `InitImage` with a mask.
    public var isInpaintingModel: Bool { unetConfig.inChannels == vaeConfig.latentChannels + 5 }

    /// Text embeddings for the prompts (and the negative prompts first, when guidance is on), repeated per image.
    func encode(_ request: GenerationRequest, guidance: Bool) -> Tensor {
        let n = request.imagesPerPrompt
        func embed(_ texts: [String]) -> Tensor {
            let ids = texts.map { tokenizer.encodePadded($0) }
            let h = textEncoder(ids, clipSkip: request.clipSkip).converted(to: .f32)
            // repeat(1, n, 1).view(B * n, 77, D): each prompt's embedding n times in a row.
            if n == 1 { return h }
            let rows = (0..<texts.count).flatMap { i in Array(repeating: h.slice(batch: i..<(i + 1)), count: n) }
            return Ops.concat(rows, axis: 0)
        }
        let cond = embed(request.prompts)
        guard guidance else { return cond }
        let negatives = request.negativePrompts ?? Array(repeating: "", count: request.prompts.count)
        return Ops.concat([embed(negatives), cond], axis: 0)
    }

    /// Runs the whole pipeline: text encoding, the denoising loop and the VAE decode.
    /// `progress` is called after every step; returning false cancels with `PipelineError.cancelled`.
    public func generate(_ request: GenerationRequest,
                         progress: ((StepProgress) -> Bool)? = nil) throws -> [RGBImage] {
        try context.run { try generateInContext(request, progress: progress) }
    }

    private func generateInContext(_ request: GenerationRequest,
                                   progress: ((StepProgress) -> Bool)?) throws -> [RGBImage] {
        let checked = try validate(request)
        let (width, height) = (checked.width, checked.height)
        let (guidance, batch) = (checked.guidance, checked.batch)
        let clock = ContinuousClock()
        let phaseClock = PhaseClock(tracker: context.tracker)
        var phases = [loadPhase]
        defer { offloadController.runEnded() }

        let embeddings = try phaseClock.measure("text encoding", into: &phases) {
            defer { offloadController.finished(.textEncoder) }
            let e = encode(request, guidance: guidance).converted(to: policy.dtype)
            try context.checkFailures()
            return e
        }
        try FiniteCheck.require(embeddings, "the text encoder")

        var scheduler = try makeScheduler(for: request)
        let seed = request.seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        var generator = TorchGenerator(seed: seed)
        let latentShape = checked.latentShape
        let count = checked.latentCount
        let start: DenoisingStart
        if request.initImage != nil {
            start = try phaseClock.measure("encode", into: &phases) {
                defer { offloadController.finished(.vae) }
                let s = try prepareStart(request, checked, scheduler: scheduler, generator: &generator)
                try context.checkFailures()
                return s
            }
        } else {
            start = try prepareStart(request, checked, scheduler: scheduler, generator: &generator)
        }
        var latents = start.latents
        let total = scheduler.timesteps.count
        let unetShape = [batch, unetConfig.inChannels, latentShape[2], latentShape[3]]
        logger.debug("seed \(seed), \(total - start.startIndex) UNet calls from index \(start.startIndex), latents \(latentShape)")

        for i in start.startIndex..<total {
            let stepNumber = i - start.startIndex + 1, stepCount = total - start.startIndex
            try phaseClock.measure("step \(stepNumber)", into: &phases) {
                if i == start.startIndex { weightStreamer?.resetPeak() }
                let stepStart = clock.now
                var scaled = scheduler.scaleModelInput(latents, stepIndex: i)
                if let conditioning = start.conditioning {
                    scaled = Self.concatChannels(scaled, conditioning, batch: batch)
                }
                var input = Tensor(scaled, shape: unetShape)
                if guidance { input = Ops.concat([input, input], axis: 0) }
                let t = scheduler.timestepValues[i]
                let x = input.converted(to: policy.dtype).withLayout(policy.layout)
                let forward = { self.unet(x, timestep: t, encoderHiddenStates: embeddings) }
                let out = unetPlan(for: x.shape)?.run(forward) ?? forward()
                var noise = out.converted(to: .f32).toFloats()
                try FiniteCheck.require(noise, "the UNet", step: stepNumber, of: stepCount)
                if guidance {
                    // uncond + g * (text - uncond), in f32 as diffusers computes it.
                    let g = request.guidanceScale
                    var mixed = [Float](repeating: 0, count: count)
                    for j in 0..<count {
                        let u = noise[j], c = noise[count + j]
                        mixed[j] = u + g * (c - u)
                    }
                    noise = mixed
                }
                try context.checkFailures()
                latents = scheduler.step(modelOutput: noise, stepIndex: i, sample: latents, generator: &generator)
                if let known = start.knownRegion {
                    latents = known.apply(latents, nextIndex: i + 1 < total ? i + 1 : nil, scheduler: scheduler)
                }
                try FiniteCheck.require(latents, "the scheduler step (guidance \(request.guidanceScale))", step: stepNumber,
                                        of: stepCount)
                let seconds = (clock.now - stepStart).inSeconds
                if let progress, !progress(StepProgress(step: stepNumber, totalSteps: stepCount, timestep: t, seconds: seconds)) {
                    throw PipelineError.cancelled
                }
            }
        }
        let streamedPeak = weightStreamer?.stats.peakResidentBytes
        offloadController.finished(.unet)
        // The decode's peak comes on top of whatever the heap kept from the loop: give that back first.
        AllocatorPolicy.releaseFreeMemory()

        let images = try phaseClock.measure("decode", into: &phases) {
            defer { offloadController.finished(.vae) }
            let images = try decodeInContext(latents, shape: latentShape)
            try context.checkFailures()
            return images
        }
        let stats = weightStreamer?.stats
        lastReport = RunReport(offload: offload.rawValue, dtype: "\(policy.dtype)", width: width, height: height,
                               steps: total - start.startIndex, phases: phases,
                               weightBytes: ["text_encoder": offloadController.registry(.textEncoder).totalBytes,
                                             "unet": offloadController.registry(.unet).totalBytes,
                                             "vae": offloadController.registry(.vae).totalBytes],
                               streamedPeakResidentBytes: streamedPeak, demandLoads: stats?.demandLoads,
                               prefetchLoads: stats?.prefetchLoads)
        return images
    }

    /// Per image, its `a` channels then its `b` channels (`torch.cat([a, b], dim=1)` of two (B, ·, h, w) arrays).
    static func concatChannels(_ a: [Float], _ b: [Float], batch: Int) -> [Float] {
        let (na, nb) = (a.count / batch, b.count / batch)
        var out: [Float] = []
        out.reserveCapacity(a.count + b.count)
        for i in 0..<batch {
            out.append(contentsOf: a[(i * na)..<((i + 1) * na)])
            out.append(contentsOf: b[(i * nb)..<((i + 1) * nb)])
        }
        return out
    }

    /// latents / scaling_factor → VAE decoder → 8-bit RGB, one image per batch item. `shape` is (B, C, h, w) with
    /// C the VAE's latent channels; the decoded pixels are checked for NaN/Inf before the clamp.
    public func decode(_ latents: [Float], shape: [Int]) throws -> [RGBImage] {
        func bad(_ reason: String) -> PipelineError { .invalidRequest(field: "latents", reason: reason) }
        guard shape.count == 4, shape.allSatisfy({ $0 > 0 && $0 <= RequestLimits.maxSide }) else {
            throw bad("shape \(shape) must be (batch, channels, height, width) with positive sizes")
        }
        guard shape[1] == vaeConfig.latentChannels else {
            throw bad("shape \(shape) has \(shape[1]) channels; the VAE takes \(vaeConfig.latentChannels)")
        }
        var count = 1
        for d in shape {
            let (p, o) = count.multipliedReportingOverflow(by: d)
            guard !o else { throw bad("shape \(shape) is too large to address") }
            count = p
        }
        guard latents.count == count else { throw bad("\(latents.count) values for shape \(shape) (\(count))") }
        try validateVAEOptions()
        return try context.run {
            let images = try decodeInContext(latents, shape: shape)
            try context.checkFailures()
            return images
        }
    }

    private func decodeInContext(_ latents: [Float], shape: [Int]) throws -> [RGBImage] {
        let scale = vaeConfig.scalingFactor
        let z = Tensor(latents.map { $0 / scale }, shape: shape).converted(to: policy.dtype).withLayout(policy.layout)
        let decoded = vae.decode(z, options: vaeOptions).converted(to: .f32).withLayout(.nchw)
        try FiniteCheck.require(decoded, "the VAE decoder")
        let (b, h, w) = (decoded.shape[0], decoded.shape[2], decoded.shape[3])
        let p = decoded.floatPointer()
        return (0..<b).map { RGBImage(decoded: p + $0 * 3 * h * w, width: w, height: h) }
    }
}
