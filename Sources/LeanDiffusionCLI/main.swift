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
        subcommands: [Generate.self, Inspect.self, Tokenize.self],
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

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate images from a prompt.")
    func run() throws {
        throw ValidationError("generate is not available yet")
    }
}
