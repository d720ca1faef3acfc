import ArgumentParser
import LeanDiffusion
import Logging
import SafeTensors
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

extension SchedulerKind: ExpressibleByArgument {}
extension TimestepSpacing: ExpressibleByArgument {}
extension DType: ExpressibleByArgument {}
extension Layout: ExpressibleByArgument {}
extension OffloadMode: ExpressibleByArgument {}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate images from a prompt; from a picture too with --init-image (image-to-image), and a mask (inpainting).")

    @Option(help: "A diffusers StableDiffusionPipeline folder, or a single-file SD 1.x/2.x checkpoint (.safetensors, original layout) (default: the embedded model).")
    var model: String?

    @Option(help: "With a single-file --model: a diffusers folder whose configs, tokenizer and scheduler to use (default: the shipped configs of the detected architecture).")
    var config: String?

    @Option(help: "Replace the VAE: a diffusers VAE folder, or a .safetensors file (diffusers or original layout).")
    var vae: String?

    @Option(help: "A LoRA file (kohya or diffusers/PEFT keys) with an optional weight, FILE[:SCALE] (default 1); repeatable.")
    var lora: [String] = []

    @Option(help: "What to draw.")
    var prompt: String

    @Option(help: "What to steer away from.")
    var negativePrompt: String?

    @Option(help: "Start from this picture (PNG or JPEG; EXIF orientation honoured): image-to-image, or inpainting with --mask. The size defaults to the picture's, rounded down to a multiple of 8; --width/--height resize it (Lanczos).")
    var initImage: String?

    @Option(help: "With --init-image: the inpainting mask, a picture of the same size (white = repaint, black = keep).")
    var mask: String?

    @Option(help: "With --init-image: how much of the picture is redrawn, 0 < S <= 1; int(steps x S) steps run (default 0.8; 1 with --mask).")
    var strength: Double?

    @Option(help: "Output PNG; with --count > 1, FILE-0.png, FILE-1.png, ...")
    var output: String = "out.png"

    @Option(help: "Denoising steps (default: the model folder's lean_diffusion.json, else 30).")
    var steps: Int?

    @Option(help: "Classifier-free guidance scale, off at or below 1 (default: the model folder's lean_diffusion.json, else 7.5).")
    var guidance: Float?

    @Option(help: "Seed of torch.Generator(\"cpu\"); the same seed gives diffusers' latents.")
    var seed: UInt64?

    @Option(help: "Image width in pixels, a multiple of 8 (default: the model's).")
    var width: Int?

    @Option(help: "Image height in pixels, a multiple of 8 (default: the model's).")
    var height: Int?

    @Option(help: "pndm | ddim | euler | euler-a | dpm++2m | unipc | lcm (default: the model's).")
    var scheduler: SchedulerKind?

    @Option(help: "Override the scheduler config's timestep_spacing: leading | trailing | linspace (trailing for SD-Turbo).")
    var timestepSpacing: TimestepSpacing?

    @Option(help: "Images to generate for the prompt.")
    var count: Int = 1

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

    @Option(help: "Use the text encoder's hidden state this many layers before the last.")
    var clipSkip: Int = 0

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

    @Option(help: "Write a JSON report (per phase: seconds, tracked peak bytes, RSS) to this file.")
    var report: String?

    @Flag(help: "Run every UNet step freshly allocated instead of replaying the planned (traced) step.")
    var noPlan = false

    @Flag(help: "Write no generation parameters into the PNG (by default a 'parameters' text chunk, AUTOMATIC1111's format).")
    var noMetadata = false

    @Flag(help: "No progress bar.")
    var quiet = false

    @Flag(help: "Log loading and timing details.")
    var verbose = false

    func validate() throws {
        let maxSide = RequestLimits.maxSide
        if let w = width, w <= 0 || w % 8 != 0 || w > maxSide {
            throw ValidationError("--width must be a positive multiple of 8 up to \(maxSide) (got \(w))")
        }
        if let h = height, h <= 0 || h % 8 != 0 || h > maxSide {
            throw ValidationError("--height must be a positive multiple of 8 up to \(maxSide) (got \(h))")
        }
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1 (got \(steps))") }
        if count < 1 || count > RequestLimits.maxBatch {
            throw ValidationError("--count must be in 1...\(RequestLimits.maxBatch) (got \(count))")
        }
        if let g = guidance, !g.isFinite {
            throw ValidationError("--guidance must be a finite number such as 7.5, or 1 to turn guidance off (got \(g))")
        }
        if let b = offloadBudget {
            // Int(b * 1 MiB) traps for inf/nan and for values past Int's range.
            guard b.isFinite, b > 0, b <= Self.maxOffloadBudgetMiB else {
                throw ValidationError("--offload-budget must be a positive number of MiB up to \(Int(Self.maxOffloadBudgetMiB)) (got \(b))")
            }
            guard offload == .sequential else { throw ValidationError("--offload-budget needs --offload sequential") }
        }
        if initImage == nil {
            if mask != nil { throw ValidationError("--mask needs --init-image (the picture the mask belongs to)") }
            if strength != nil { throw ValidationError("--strength needs --init-image (the picture to start from)") }
        }
        if let s = strength, !(s.isFinite && s > 0 && s <= 1) {
            throw ValidationError("--strength must be in (0, 1]: how much of the picture is redrawn (got \(s))")
        }
        if clipSkip < 0 { throw ValidationError("--clip-skip must not be negative (got \(clipSkip))") }
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

    func run() throws {
        do { try generate() } catch let e as PipelineError {
            throw CLIError(Self.describe(e))
        } catch let e as ImageInputError { throw CLIError(e.description) }
    }

    /// A library error in the CLI's words: request fields become the options that set them.
    static func describe(_ e: PipelineError) -> String {
        guard case .invalidRequest(let field, let reason) = e else { return e.description }
        let options = ["steps": "--steps", "guidanceScale": "--guidance", "width": "--width", "height": "--height",
                       "imagesPerPrompt": "--count", "clipSkip": "--clip-skip", "prompts": "--prompt",
                       "negativePrompts": "--negative-prompt", "vaeOptions.tileSampleSize": "--vae-tile-size",
                       "initImage": "--init-image", "mask": "--mask", "strength": "--strength"]
        return "\(options[field] ?? field): \(reason)"
    }

    func generate() throws {
        // Fail on an unwritable output before loading anything.
        let paths = Self.outputPaths(output, count: count)
        for path in paths { try OutputTarget.check(path) }
        if let report { try OutputTarget.check(report) }
        // Pictures are read before the model: a bad file fails in milliseconds, not after the load.
        let start = try initImage.map { path in
            InitImage(image: try RGBImage.load(path: path), mask: try mask.map { try RGBImage.load(path: $0) },
                      strength: strength)
        }
        // Memory-first modes also return freed activations to the system: 650 MB less RSS on SD1.5 bf16, but
        // ~25% slower steps from the page faults, so the resident default keeps glibc's behaviour.
        if offload != .none { AllocatorPolicy.returnLargeBlocksToSystem() }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = verbose ? .debug : .warning
            return handler
        }
        let logger = Logger(label: "lean-diffusion")
        let policy = ComputePolicy(dtype: parsedDType!, layout: layout, attention: parsedAttention!)
        let pipeline: StableDiffusionPipeline
        // Errors propagate to ArgumentParser, which prints "Error: <description>" and exits with status 1.
        pipeline = try StableDiffusionPipeline(directory: model ?? Embedded.defaultModel, policy: policy,
                                               variant: variant, offload: offload,
                                               streamingBudgetBytes: offloadBudget.map { Int($0 * 1_048_576) },
                                               config: config, configsDirectory: Embedded.modelsDirectory() + "/configs",
                                               vae: vae, loras: try lora.map(Self.parseLoRA), logger: logger)
        pipeline.planUNet = !noPlan
        pipeline.vaeOptions = VAEOptions(slicing: vaeSlicing, tiling: vaeTiling, tileSampleSize: vaeTileSize)
        var request = GenerationRequest(prompt: prompt, negativePrompt: negativePrompt)
        request.steps = steps ?? pipeline.samplingDefaults.steps ?? 30
        request.guidanceScale = guidance ?? pipeline.samplingDefaults.guidanceScale ?? request.guidanceScale
        request.width = width
        request.height = height
        request.imagesPerPrompt = count
        // The seed is drawn here when not given, so that the image's metadata can name it.
        request.seed = seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        request.scheduler = scheduler
        request.timestepSpacing = timestepSpacing
        request.clipSkip = clipSkip
        request.initImage = start
        let bar = ProgressBar(enabled: !quiet && isatty(2) != 0)
        let images: [RGBImage]
        defer { bar.finish() }
        images = try pipeline.generate(request) { p in
            bar.update(p)
            return true
        }
        bar.finish()
        // Images first: a report that cannot be written must never cost the images.
        let runReport = pipeline.lastReport
        if verbose, let runReport { FileHandleOutput.stderr(runReport.table() + "\n") }
        let text = noMetadata ? nil : metadata(pipeline, request, modelPath: model ?? Embedded.defaultModel)
        try GenerationOutput.write(images, to: Array(paths.prefix(images.count)), text: text,
                                   report: report.flatMap { path in runReport.map { r in (path, { [UInt8](try r.jsonData()) }) } },
                                   wrote: { image, path in
                                       if !quiet { FileHandleOutput.stderr("wrote \(path) (\(image.width)x\(image.height))\n") }
                                   })
    }

    /// Each image's `parameters` chunk. The model hash reads the weights (streamed, seconds for SD 1.5); if that
    /// fails the images are written without it rather than lost.
    func metadata(_ pipeline: StableDiffusionPipeline, _ request: GenerationRequest, modelPath: String) -> [[PNGTextChunk]] {
        var hash: String? = nil
        do { hash = try ModelHash.shortHash(forModel: modelPath, variant: variant) } catch {
            FileHandleOutput.stderr("warning: no model hash in the metadata: \(error)\n")
        }
        return pipeline.generationParameters(for: request, seed: request.seed!, modelHash: hash,
                                             model: ModelHash.name(forModel: modelPath))
            .map { [PNGTextChunk(keyword: "parameters", text: $0.infotext)] }
    }

    /// FILE.png for one image; FILE-0.png, FILE-1.png, ... for several.
    static func outputPaths(_ output: String, count: Int) -> [String] {
        guard count > 1 else { return [output] }
        let base = output.hasSuffix(".png") ? String(output.dropLast(4)) : output
        return (0..<count).map { "\(base)-\($0).png" }
    }
}

