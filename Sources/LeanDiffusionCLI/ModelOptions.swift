import ArgumentParser
import LeanDiffusion
import Logging

/// The options that load a model and choose how it runs (precision, layout, attention, VAE, offload, plan), shared
/// by `generate` and `serve`: a model is loaded the same way for one image or for a server.
struct ModelOptions: ParsableArguments {
    @Option(help: "A diffusers StableDiffusionPipeline folder, or a single-file SD 1.x/2.x checkpoint (.safetensors, original layout) (default: the embedded model).")
    var model: String?

    @Option(help: "With a single-file --model: a diffusers folder whose configs, tokenizer and scheduler to use (default: the shipped configs of the detected architecture).")
    var config: String?

    @Option(help: "Replace the VAE: a diffusers VAE folder, or a .safetensors file (diffusers or original layout).")
    var vae: String?

    @Option(help: "A LoRA file (kohya or diffusers/PEFT keys) with an optional weight, FILE[:SCALE] (default 1); repeatable.")
    var lora: [String] = []

    @Option(help: "Weights and compute precision: fp32 | fp16 | bf16.")
    var dtype: String = "fp32"

    @Option(help: "Activation layout: nchw | nhwc (channels-last, faster here).")
    var layout: Layout = .nhwc

    @Option(help: "Attention: standard | sliced | flash (memory-efficient, the default).")
    var attention: String = "flash"

    @Option(help: "With --attention sliced, heads per slice: auto (half of each layer's heads), max (one) or a number.")
    var attentionSlice: String = "auto"

    @Option(help: "Weight file variant to load, e.g. fp16 for *.fp16.safetensors.")
    var variant: String?

    @Flag(help: "Decode the VAE one image at a time.")
    var vaeSlicing = false

    @Flag(help: "Decode the VAE in overlapping blended tiles above the tile size (diffusers' VAE tiling).")
    var vaeTiling = false

    @Option(help: "VAE tile size in pixels, a multiple of 8 (with --vae-tiling; default: the VAE config's sample_size, as diffusers).")
    var vaeTileSize: Int?

    @Option(help: "Where weights live: none (all resident) | model (one component at a time) | sequential (streamed).")
    var offload: OffloadMode = .none

    @Option(help: "Sequential offload: resident weight budget in MiB (default: three times the largest UNet weight).")
    var offloadBudget: Double?

    @Flag(help: "Run every UNet step freshly allocated instead of replaying the planned (traced) step.")
    var noPlan = false

    @Flag(help: "Log loading and timing details.")
    var verbose = false

    func validate() throws {
        if let b = offloadBudget {
            // Int(b * 1 MiB) traps for inf/nan and for values past Int's range.
            guard b.isFinite, b > 0, b <= Self.maxOffloadBudgetMiB else {
                throw ValidationError("--offload-budget must be a positive number of MiB up to \(Int(Self.maxOffloadBudgetMiB)) (got \(b))")
            }
            guard offload == .sequential else { throw ValidationError("--offload-budget needs --offload sequential") }
        }
        guard parsedDType != nil else { throw ValidationError("--dtype must be fp32, fp16 or bf16 (got \(dtype))") }
        guard parsedAttention != nil else {
            throw ValidationError("--attention must be standard, sliced or flash; --attention-slice auto, max or a positive number")
        }
        if let t = vaeTileSize {
            guard vaeTiling else { throw ValidationError("--vae-tile-size needs --vae-tiling") }
            if t <= 0 || t % 8 != 0 { throw ValidationError("--vae-tile-size must be a positive multiple of 8 (got \(t))") }
        }
    }

    /// FILE[:SCALE]: the scale is the text after the last colon when it reads as a number.
    static func parseLoRA(_ text: String) throws -> LoRASpec {
        if let colon = text.lastIndex(of: ":"), let scale = Float(text[text.index(after: colon)...]) {
            guard scale.isFinite else { throw ValidationError("--lora \(text): the scale must be a finite number") }
            return LoRASpec(path: String(text[..<colon]), scale: scale)
        }
        return LoRASpec(path: text)
    }

    /// 16 TiB: more than any machine, small enough that the byte count fits in an Int.
    static let maxOffloadBudgetMiB = Double(16 << 20)

    var parsedDType: DType? {
        switch dtype.lowercased() {
        case "fp32", "f32", "float32": return .f32
        case "fp16", "f16", "float16": return .f16
        case "bf16", "bfloat16": return .bf16
        default: return nil
        }
    }

    var parsedAttention: AttentionKernel? {
        switch attention.lowercased() {
        case "standard": return .standard
        case "flash": return .flash
        case "sliced":
            switch attentionSlice.lowercased() {
            case "auto": return .sliced(headsPerSlice: 0)
            case "max": return .sliced(headsPerSlice: 1)
            default: return Int(attentionSlice).flatMap { $0 > 0 ? .sliced(headsPerSlice: $0) : nil }
            }
        default: return nil
        }
    }

    /// The model the options name (the embedded one by default).
    var modelPath: String { model ?? Embedded.defaultModel }

    /// Logs to stderr: debug with --verbose, else warnings only.
    func bootstrapLogging() {
        let verbose = self.verbose
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = verbose ? .debug : .warning
            return handler
        }
    }

    /// Loads the pipeline with every option applied.
    func loadPipeline(logger: Logger) throws -> StableDiffusionPipeline {
        // Memory-first modes also return freed activations to the system: 650 MB less RSS on SD1.5 bf16, but
        // ~25% slower steps from the page faults, so the resident default keeps glibc's behaviour.
        if offload != .none { AllocatorPolicy.returnLargeBlocksToSystem() }
        let policy = ComputePolicy(dtype: parsedDType!, layout: layout, attention: parsedAttention!)
        let pipeline = try StableDiffusionPipeline(directory: modelPath, policy: policy,
                                                   variant: variant, offload: offload,
                                                   streamingBudgetBytes: offloadBudget.map { Int($0 * 1_048_576) },
                                                   config: config, configsDirectory: Embedded.modelsDirectory() + "/configs",
                                                   vae: vae, loras: try lora.map(Self.parseLoRA), logger: logger)
        pipeline.planUNet = !noPlan
        pipeline.vaeOptions = VAEOptions(slicing: vaeSlicing, tiling: vaeTiling, tileSampleSize: vaeTileSize)
        return pipeline
    }
}
