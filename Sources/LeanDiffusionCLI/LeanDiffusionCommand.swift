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
struct LeanDiffusionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lean-diffusion",
        abstract: "Stable Diffusion inference in little memory, fast.",
        subcommands: [Generate.self, Serve.self, Inspect.self, Tokenize.self, Convert.self, Info.self],
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
    static func stderr(_ s: String) { write(s, to: 2) }

    static func stdout(_ s: String) { write(s, to: 1) }

    static func write(_ s: String, to fd: Int32) {
        var s = s
        // write(2) on fd 2: unbuffered, and no shared FILE* (which Swift 6 rightly calls shared mutable state).
        s.withUTF8 { buf in
            var done = 0
            while done < buf.count {
                #if canImport(Glibc)
                let n = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
                #else
                let n = Darwin.write(fd, buf.baseAddress! + done, buf.count - done)
                #endif
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
