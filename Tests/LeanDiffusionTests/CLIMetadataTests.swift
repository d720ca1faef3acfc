import XCTest
@testable import LeanDiffusion
#if canImport(Glibc)
import Glibc
#endif

/// `generate` writes its parameters into the PNG (A1111's `parameters` chunk) unless `--no-metadata`, and `info`
/// prints them or exits with a named error. Runs the built `.build/release/lean-diffusion` (skipped when absent).
final class CLIMetadataTests: XCTestCase {
    struct Run { let status: Int32; let stdout: String; let stderr: String }

    func run(_ args: [String]) throws -> Run {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: CLIErrorTests.binary), "build lean-diffusion first")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLIErrorTests.binary)
        p.arguments = args
        let (out, err) = (Pipe(), Pipe())
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertNotEqual(p.terminationReason, .uncaughtSignal, "\(args)")
        return Run(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    func testGenerateWritesParametersAndInfoPrintsThem() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lean-cli-meta-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let model = ErrorTestSupport.sd1
        let prompt = "a red circle, \"on\": blue\nsecond line, café 日本"
        let g = try run(["generate", "--model", model, "--prompt", prompt, "--negative-prompt", "blurry, bad",
                         "--steps", "4", "--scheduler", "lcm", "--guidance", "1", "--seed", "42", "--clip-skip", "1",
                         "--quiet", "--output", dir + "/a.png"])
        XCTAssertEqual(g.status, 0, g.stderr)
        let hash = try ModelHash.shortHash(forModel: model)
        let expected = GenerationParameters(prompt: prompt, negativePrompt: "blurry, bad", steps: 4, sampler: "LCM",
                                            scheduleType: "Automatic", cfgScale: 1, seed: 42, width: 64, height: 64,
                                            modelHash: hash, model: "sd1-tiny", clipSkip: 1).infotext
        XCTAssertEqual(try PNGText.text("parameters", from: dir + "/a.png"), expected)
        let info = try run(["info", dir + "/a.png"])
        XCTAssertEqual(info.status, 0, info.stderr)
        XCTAssertEqual(info.stdout, expected + "\n")
        let fields = try run(["info", "--fields", dir + "/a.png"])
        XCTAssertTrue(fields.stdout.contains("\nSeed: 42\n"), fields.stdout)
        XCTAssertTrue(fields.stdout.contains("\nModel hash: \(hash)\n"), fields.stdout)
        // The seed drawn when none is given is the one recorded, and an SD-Turbo style run names its schedule.
        let t = try run(["generate", "--model", model, "--prompt", "x", "--steps", "1", "--scheduler", "euler-a",
                         "--timestep-spacing", "trailing", "--guidance", "0", "--quiet", "--output", dir + "/t.png"])
        XCTAssertEqual(t.status, 0, t.stderr)
        let tp = GenerationParameters(infotext: try XCTUnwrap(try PNGText.text("parameters", from: dir + "/t.png")))
        XCTAssertNotNil(tp.seed)
        XCTAssertEqual(tp.scheduleType, "SGM Uniform")
        XCTAssertEqual(tp.sampler, "Euler a")

        // --no-metadata: no chunk, and info says so.
        let n = try run(["generate", "--model", model, "--prompt", "x", "--steps", "2", "--quiet", "--no-metadata",
                         "--output", dir + "/n.png"])
        XCTAssertEqual(n.status, 0, n.stderr)
        XCTAssertEqual(try PNGText.read(from: dir + "/n.png"), [])
        let none = try run(["info", dir + "/n.png"])
        XCTAssertEqual(none.status, 1)
        XCTAssertTrue(none.stderr.contains("no generation parameters"), none.stderr)
        // A missing file and a file that is not a PNG: named errors, status 1.
        let missing = try run(["info", dir + "/missing.png"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("file not found"), missing.stderr)
        _ = FileManager.default.createFile(atPath: dir + "/text.png", contents: Data("hello".utf8))
        let text = try run(["info", dir + "/text.png"])
        XCTAssertEqual(text.status, 1)
        XCTAssertTrue(text.stderr.contains("not a readable PNG"), text.stderr)
    }

    /// A replacement VAE and LoRAs are named as A1111 names them: "VAE hash" (10 hex digits of the file's SHA-256),
    /// "VAE", and "Lora hashes" with each LoRA's 12-digit addnet hash (SHA-256 of the bytes after the safetensors
    /// header). Expected values from Python's hashlib:
    ///   hashlib.sha256(b[8 + int.from_bytes(b[:8], "little"):]).hexdigest()[:12] for the LoRAs,
    ///   hashlib.sha256(open(".../sd1-tiny/vae/diffusion_pytorch_model.safetensors", "rb").read()).hexdigest()[:10].
    func testLoRAAndVAEHashes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lean-cli-lora-meta-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let model = ErrorTestSupport.sd1
        let loras = CLIErrorTests.repo.appendingPathComponent("Tests/LeanDiffusionTests/Fixtures/lora").path
        XCTAssertEqual(try ModelHash.loraShortHash(path: loras + "/kohya.safetensors"), "593b4adc67db")
        XCTAssertEqual(try ModelHash.loraShortHash(path: loras + "/peft.safetensors"), "3b2ba0a5986e")
        let g = try run(["generate", "--model", model, "--prompt", "x", "--steps", "2", "--seed", "1", "--quiet",
                         "--lora", loras + "/kohya.safetensors:0.5", "--lora", loras + "/peft.safetensors",
                         "--vae", model + "/vae", "--output", dir + "/l.png"])
        XCTAssertEqual(g.status, 0, g.stderr)
        let text = try XCTUnwrap(try PNGText.text("parameters", from: dir + "/l.png"))
        XCTAssert(text.contains(", VAE hash: 49a90388c1, VAE: vae, "), text)
        XCTAssert(text.contains(", Lora hashes: \"kohya: 593b4adc67db, peft: 3b2ba0a5986e\", Version: "), text)
        let parsed = GenerationParameters(infotext: text)
        XCTAssertEqual(parsed["Lora hashes"], "kohya: 593b4adc67db, peft: 3b2ba0a5986e")
        XCTAssertEqual(parsed["VAE hash"], "49a90388c1")
        // Not a safetensors file: a named error, not a crash.
        _ = FileManager.default.createFile(atPath: dir + "/short.safetensors", contents: Data([1, 2, 3]))
        XCTAssertThrowsError(try ModelHash.loraShortHash(path: dir + "/short.safetensors"))
        _ = FileManager.default.createFile(atPath: dir + "/long.safetensors", contents: Data([255, 255, 255, 255, 255, 255, 255, 255, 0]))
        XCTAssertThrowsError(try ModelHash.loraShortHash(path: dir + "/long.safetensors"))
    }
}
