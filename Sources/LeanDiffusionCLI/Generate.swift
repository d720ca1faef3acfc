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

    @OptionGroup var modelOptions: ModelOptions

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

    @Option(help: "Use the text encoder's hidden state this many layers before the last.")
    var clipSkip: Int = 0

    @Option(help: "Write a JSON report (per phase: seconds, tracked peak bytes, RSS) to this file.")
    var report: String?

    @Flag(help: "Write no generation parameters into the PNG (by default a 'parameters' text chunk, AUTOMATIC1111's format).")
    var noMetadata = false

    @Flag(help: "No progress bar.")
    var quiet = false

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
        if initImage == nil {
            if mask != nil { throw ValidationError("--mask needs --init-image (the picture the mask belongs to)") }
            if strength != nil { throw ValidationError("--strength needs --init-image (the picture to start from)") }
        }
        if let s = strength, !(s.isFinite && s > 0 && s <= 1) {
            throw ValidationError("--strength must be in (0, 1]: how much of the picture is redrawn (got \(s))")
        }
        if clipSkip < 0 { throw ValidationError("--clip-skip must not be negative (got \(clipSkip))") }
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
        modelOptions.bootstrapLogging()
        let pipeline = try modelOptions.loadPipeline(logger: Logger(label: "lean-diffusion"))
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
        if modelOptions.verbose, let runReport { FileHandleOutput.stderr(runReport.table() + "\n") }
        let text = noMetadata ? nil : metadata(pipeline, request, modelPath: modelOptions.modelPath)
        try GenerationOutput.write(images, to: Array(paths.prefix(images.count)), text: text,
                                   report: report.flatMap { path in runReport.map { r in (path, { [UInt8](try r.jsonData()) }) } },
                                   wrote: { image, path in
                                       if !quiet { FileHandleOutput.stderr("wrote \(path) (\(image.width)x\(image.height))\n") }
                                   })
    }

    /// Each image's `parameters` chunk. The hashes read the model, VAE and LoRA files (streamed, seconds for SD
    /// 1.5); one that fails is left out with a warning rather than costing the images.
    func metadata(_ pipeline: StableDiffusionPipeline, _ request: GenerationRequest, modelPath: String) -> [[PNGTextChunk]] {
        let (provenance, warnings) = ModelProvenance.compute(modelPath: modelPath, variant: modelOptions.variant,
                                                             vaePath: modelOptions.vae, loras: pipeline.loras)
        for w in warnings { FileHandleOutput.stderr("warning: \(w)\n") }
        return pipeline.generationParameters(for: request, seed: request.seed!, provenance: provenance)
            .map { [PNGTextChunk(keyword: "parameters", text: $0.infotext)] }
    }

    /// FILE.png for one image; FILE-0.png, FILE-1.png, ... for several.
    static func outputPaths(_ output: String, count: Int) -> [String] {
        guard count > 1 else { return [output] }
        let base = output.hasSuffix(".png") ? String(output.dropLast(4)) : output
        return (0..<count).map { "\(base)-\($0).png" }
    }
}

