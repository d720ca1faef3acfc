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

@main
struct LeanDiffusionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lean-diffusion",
        abstract: "Stable Diffusion inference in little memory, fast.",
        subcommands: [Generate.self, Inspect.self, Tokenize.self, Convert.self, Info.self],
        defaultSubcommand: Generate.self)
}

/// Where the repository's embedded models live: next to the executable's build folder in a checkout, or named by
/// `LEAN_DIFFUSION_HOME`.
enum Embedded {
    static func modelsDirectory() -> String {
        if let home = getenv("LEAN_DIFFUSION_HOME") { return String(cString: home) + "/Models" }
        // .build/<config>/lean-diffusion -> repository root
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = dir.appendingPathComponent("Models")
            if FileManager.default.fileExists(atPath: candidate.appendingPathComponent("tiny-sd").path) { return candidate.path }
            dir = dir.deletingLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath + "/Models"
    }
    static var defaultModel: String { modelsDirectory() + "/tiny-sd" }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the components, tensors, dtypes, parameter counts and bytes of a safetensors file or a diffusers folder.")

    @Argument(help: "A .safetensors file, a diffusers pipeline folder, or one component's folder.")
    var path: String

    @Flag(name: .long, help: "List every tensor with its dtype and shape.")
    var tensors = false

    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        let inspector = try ModelInspector(path: path)
        print(json ? try inspector.renderJSON(listTensors: tensors) : inspector.render(listTensors: tensors))
        if !json, path.hasSuffix(".safetensors"), let lora = try? LoRAFile(path: path) { print(lora.summary) }
        if !json, path.hasSuffix(".safetensors"), let single = try? SingleFileCheckpoint(path: path) {
            print("single-file checkpoint: \(single.architecture.rawValue) (text encoder \(single.textEncoderLayout.rawValue)"
                  + (single.hasEMAWeights ? ", EMA weights present, not used" : "") + ")")
        }
    }
}

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a PyTorch checkpoint (.ckpt/.pt/.pth, read without running its code) or a .safetensors file to .safetensors, optionally re-saving its floats as fp16, bf16 or fp32; or a single-file SD checkpoint to a diffusers folder (an output without .safetensors).")

    @Argument(help: "The input: a zip-format PyTorch checkpoint or a .safetensors file.")
    var input: String

    @Argument(help: "The output .safetensors file, or a new folder for a single file's diffusers layout (written to a temporary name, then renamed).")
    var output: String

    @Option(help: "With a folder output: the diffusers folder whose configs and tokenizer to use (default: the shipped configs of the detected architecture).")
    var config: String?

    @Option(help: "Re-save floating-point tensors as fp16 | bf16 | fp32 (default: keep each tensor's type).")
    var dtype: String?

    func run() throws {
        if !output.hasSuffix(".safetensors") {
            guard input.hasSuffix(".safetensors"), dtype == nil else {
                throw ValidationError("a folder output takes a single-file .safetensors checkpoint (and no --dtype)")
            }
            let single = try SingleFileCheckpoint(path: input)
            try single.writeDiffusersFolder(to: output, configRoot: config ?? Embedded.modelsDirectory() + "/configs/" + single.architecture.rawValue)
            FileHandleOutput.stderr("wrote \(output): a diffusers \(single.architecture.rawValue) folder\n")
            return
        }
        try OutputTarget.check(output)
        var st = stat()
        if stat(input, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
            guard dtype == nil else { throw ValidationError("--dtype is for checkpoint files, not folders") }
            try DiffusersFolder(path: input).writeSingleFile(to: output)
            FileHandleOutput.stderr("wrote \(output): the folder as one original-layout checkpoint\n")
            return
        }
        let target: SafeTensorsDType?
        switch dtype?.lowercased() {
        case nil: target = nil
        case "fp16", "f16", "float16": target = .F16
        case "bf16", "bfloat16": target = .BF16
        case "fp32", "f32", "float32": target = .F32
        default: throw ValidationError("--dtype must be fp16, bf16 or fp32 (got \(dtype!))")
        }
        var checkpoint: TorchCheckpoint
        if input.hasSuffix(".safetensors") {
            checkpoint = try TorchCheckpoint(safetensors: input)
        } else {
            checkpoint = try TorchCheckpoint(path: input)
        }
        if let target { checkpoint.convert(to: target) }
        try checkpoint.writeSafeTensors(to: output)
        FileHandleOutput.stderr("wrote \(output): \(checkpoint.tensors.count) tensors\n")
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the CLIP token ids of a text as a JSON array.")

    @Option(help: "A diffusers pipeline folder (its tokenizer/ is used) or a tokenizer folder.")
    var model: String?

    @Argument(help: "The text to tokenize.")
    var text: String

    @Flag(help: "Pad to the model's maximum length (77) with the pad token, as the pipeline does.")
    var pad = false

    func run() throws {
        let root = model ?? Embedded.defaultModel
        let dir = FileManager.default.fileExists(atPath: root + "/tokenizer/vocab.json") ? root + "/tokenizer" : root
        let tokenizer = try CLIPTokenizer(directory: dir)
        let ids = pad ? tokenizer.encodePadded(text).map(Int.init) : tokenizer.encode(text)
        print("[" + ids.map(String.init).joined(separator: ", ") + "]")
    }
}

extension SchedulerKind: ExpressibleByArgument {}
extension TimestepSpacing: ExpressibleByArgument {}
extension DType: ExpressibleByArgument {}
extension Layout: ExpressibleByArgument {}
extension OffloadMode: ExpressibleByArgument {}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate images from a prompt.")

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
        do { try generate() } catch let e as PipelineError { throw CLIError(Self.describe(e)) }
    }

    /// A library error in the CLI's words: request fields become the options that set them.
    static func describe(_ e: PipelineError) -> String {
        guard case .invalidRequest(let field, let reason) = e else { return e.description }
        let options = ["steps": "--steps", "guidanceScale": "--guidance", "width": "--width", "height": "--height",
                       "imagesPerPrompt": "--count", "clipSkip": "--clip-skip", "prompts": "--prompt",
                       "negativePrompts": "--negative-prompt", "vaeOptions.tileSampleSize": "--vae-tile-size"]
        return "\(options[field] ?? field): \(reason)"
    }

    func generate() throws {
        // Fail on an unwritable output before loading anything.
        let paths = Self.outputPaths(output, count: count)
        for path in paths { try OutputTarget.check(path) }
        if let report { try OutputTarget.check(report) }
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

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the generation parameters stored in a PNG (AUTOMATIC1111's 'parameters' text).")

    @Argument(help: "A PNG written by lean-diffusion generate (or AUTOMATIC1111 and the tools that share its format).")
    var image: String

    @Flag(help: "Print the parsed fields, one 'Key: value' per line, instead of the text as stored.")
    var fields = false

    func run() throws {
        let text: String
        do {
            guard let t = try PNGText.text("parameters", from: image) else { throw ImageMetadataError.noParameters(image) }
            text = t
        } catch let e as ImageMetadataError { throw CLIError(e.description) }
        guard fields else { print(text); return }
        let p = GenerationParameters(infotext: text)
        print("Prompt: \(p.prompt)")
        print("Negative prompt: \(p.negativePrompt)")
        for f in p.fields { print("\(f.key): \(f.value)") }
    }
}

/// An error message for ArgumentParser to print as "Error: ..." (exit status 1).
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A one-line progress bar on stderr, redrawn in place.
final class ProgressBar {
    let enabled: Bool
    var drawn = false
    init(enabled: Bool) { self.enabled = enabled }

    func update(_ p: StepProgress) {
        guard enabled else { return }
        let width = 30
        let filled = p.totalSteps > 0 ? width * p.step / p.totalSteps : width
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = "\r[\(bar)] \(p.step)/\(p.totalSteps)  \(String(format2: p.seconds))s/step"
        FileHandleOutput.stderr(line)
        drawn = true
    }

    func finish() {
        if drawn { FileHandleOutput.stderr("\n") }
        drawn = false
    }
}

enum FileHandleOutput {
    static func stderr(_ s: String) {
        var s = s
        // write(2) on fd 2: unbuffered, and no shared FILE* (which Swift 6 rightly calls shared mutable state).
        s.withUTF8 { buf in
            var done = 0
            while done < buf.count {
                let n = write(2, buf.baseAddress! + done, buf.count - done)
                if n <= 0 { if n < 0 && errno == EINTR { continue }; break }
                done += n
            }
        }
    }
}

extension String {
    init(format2 value: Double) {
        let scaled = (value * 100).rounded()
        let cents = Int(scaled) % 100
        self = "\(Int(scaled) / 100).\(cents < 10 ? "0" : "")\(cents)"
    }
}
