import XCTest
@testable import LeanDiffusion
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// AUTOMATIC1111 infotext (format and parse), PNG text chunks through libpng, SHA-256 and the model hash, against
/// PNGs and hashes made by PIL and hashlib (tools/make_metadata_fixtures.py, Fixtures/metadata).
final class InfotextTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/metadata")

    struct Expected: Decodable {
        let parameters: [String: String]
        let sha256: [String: String]
    }

    func expected() throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("expected.json")))
    }

    func scratch(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lean-meta-\(UUID())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir.appendingPathComponent(name).path
    }

    /// The exact text for a typical run, in A1111's order and spelling.
    func testFormat() {
        let p = GenerationParameters(prompt: "a cat", negativePrompt: "blurry", steps: 20, sampler: "DPM++ 2M",
                                     scheduleType: "Karras", cfgScale: 7.5, seed: 42, width: 512, height: 512,
                                     modelHash: "0123456789", model: "sd15", clipSkip: 1)
        XCTAssertEqual(p.infotext, """
            a cat
            Negative prompt: blurry
            Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 42, Size: 512x512, \
            Model hash: 0123456789, Model: sd15, Clip skip: 2, Version: LeanDiffusion \(LeanDiffusionVersion.string)
            """)
        // No negative prompt line when empty; CLIP skip 0 (the last layer) is A1111's 1, left out; 1.0 as Python prints it.
        let q = GenerationParameters(prompt: "x", steps: 4, sampler: "LCM", scheduleType: nil, cfgScale: 1, seed: 1,
                                     width: 64, height: 64, modelHash: nil, model: "m, with: comma")
        XCTAssertEqual(q.infotext, "x\nSteps: 4, Sampler: LCM, CFG scale: 1.0, Seed: 1, Size: 64x64, "
                       + "Model: \"m, with: comma\", Version: LeanDiffusion \(LeanDiffusionVersion.string)")
        XCTAssertEqual(GenerationParameters.quote("a\"b\\c\nd\u{01}é, 日"), "\"a\\\"b\\\\c\\nd\\u0001é, 日\"")
        XCTAssertEqual(GenerationParameters.quote("plain \"text\""), "plain \"text\"")
    }

    /// Format then parse gives the same prompt, negative prompt and fields: commas, colons, quotes, backslashes,
    /// newlines and non-ASCII in prompts and values.
    func testRoundTrip() {
        let prompts = ["a red circle, on blue", "say \"hello\": twice", "line one\nline two, three\n(four:1.2)",
                       "café 日本 🐱, naïve", "back\\slash \\\"x\\\"", "Steps: 3, Sampler: fake, Seed: 1"]
        for (i, prompt) in prompts.enumerated() {
            let negative = i % 2 == 0 ? "" : "blurry, \"bad\"\nugly: yes"
            let p = GenerationParameters(prompt: prompt, negativePrompt: negative, steps: 30 + i, sampler: "Euler a",
                                         scheduleType: "SGM Uniform", cfgScale: 2.25, seed: UInt64(i) << 40,
                                         width: 512, height: 768, modelHash: "abcdef0123", model: "my model: v2, final",
                                         clipSkip: i % 3,
                                         extra: [InfotextField("Lora hashes", "a: 1, b: 2"),
                                                 InfotextField("Note", "quote \" and \\ and\ttab, 日本")])
            let parsed = GenerationParameters(infotext: p.infotext)
            XCTAssertEqual(parsed, p, "round trip of \(p.infotext)")
            XCTAssertEqual(parsed.steps, 30 + i)
            XCTAssertEqual(parsed.seed, UInt64(i) << 40)
            XCTAssertEqual(parsed.cfgScale, 2.25)
            XCTAssertEqual(parsed.size?.width, 512)
            XCTAssertEqual(parsed.size?.height, 768)
            XCTAssertEqual(parsed.clipSkip, i % 3 + 1)
            XCTAssertEqual(parsed.model, "my model: v2, final")
        }
    }

    /// A1111's parsing rules: fewer than 3 pairs on the last line make it part of the prompt; empty values are
    /// dropped; a later duplicate key wins; lines are stripped; a bad quoted value is kept as written.
    func testParseRules() {
        let a = GenerationParameters(infotext: "  just a prompt, with: one pair  \n")
        XCTAssertEqual(a.prompt, "just a prompt, with: one pair")
        XCTAssertEqual(a.fields, [])
        let b = GenerationParameters(infotext: "p\n Negative prompt:  n1 \nn2\nSteps: 5, Empty: , Seed: 3, Steps: 6, Bad: \"\\q, x\", Size: 8x16")
        XCTAssertEqual(b.prompt, "p")
        XCTAssertEqual(b.negativePrompt, "n1\nn2")
        XCTAssertEqual(b.fields.map(\.key), ["Steps", "Seed", "Bad", "Size"])
        XCTAssertEqual(b.steps, 6)
        XCTAssertEqual(b["Bad"], "\"\\q, x\"", "an invalid JSON escape keeps the quoted text as written")
        XCTAssertEqual(b.clipSkip, 1)
    }

    /// Our reader gives the text PIL wrote (tEXt Latin-1, iTXt UTF-8, a tEXt after the image data), and the parser
    /// the fields A1111 would.
    func testReadsPILWrittenParameters() throws {
        let e = try expected()
        for (file, text) in e.parameters {
            let path = Self.fixtures.appendingPathComponent(file).path
            XCTAssertEqual(try PNGText.text("parameters", from: path), text, file)
        }
        let chunks = try PNGText.read(from: Self.fixtures.appendingPathComponent("a1111-latin1.png").path)
        XCTAssertEqual(chunks.map(\.keyword), ["parameters", "Software"])
        let p = GenerationParameters(infotext: e.parameters["a1111-latin1.png"]!)
        XCTAssertEqual(p.prompt, "masterpiece, a \"red\" circle: on blue, café\nsecond line of the prompt")
        XCTAssertEqual(p.negativePrompt, "blurry, lowres")
        XCTAssertEqual(p.sampler, "DPM++ 2M")
        XCTAssertEqual(SchedulerKind(a1111SamplerName: p.sampler!), .dpmpp2m)
        XCTAssertEqual(p.scheduleType, "Karras")
        XCTAssertEqual(p.cfgScale, 7)
        XCTAssertEqual(p.seed, 965400086)
        XCTAssertEqual(p["Lora hashes"], "add_detail: 7c6bad76eb54, more_art: 64e2c4a9c6")
        XCTAssertEqual(p["Version"], "v1.10.1")
        let u = GenerationParameters(infotext: e.parameters["a1111-utf8.png"]!)
        XCTAssertEqual(u.prompt, "日本の庭園, 桜")
        XCTAssertEqual(u.model, "tiny, sd")
        XCTAssertNil(try PNGText.text("parameters", from: Self.fixtures.appendingPathComponent("no-parameters.png").path))
    }

    /// Written chunks read back (tEXt for Latin-1, iTXt otherwise), the pixels are unchanged, and bad input is a
    /// named error.
    func testWriteAndReadBack() throws {
        let image = RGBImage(width: 5, height: 3, pixels: (0..<45).map { UInt8($0 * 5) })
        let path = scratch("m.png")
        let chunks = [PNGTextChunk(keyword: "parameters", text: "café, \"x\"\nNegative prompt: y\nSteps: 1, A: 2, B: 3"),
                      PNGTextChunk(keyword: "Comment", text: "日本 🐱"),
                      PNGTextChunk(keyword: "nul", text: "a\u{0}b")]
        try image.writePNG(to: path, text: chunks)
        XCTAssertEqual(try RGBImage.readPNG(from: path), image)
        let back = try PNGText.read(from: path)
        XCTAssertEqual(back.map(\.keyword), ["parameters", "Comment", "nul"])
        XCTAssertEqual(back[0].text, chunks[0].text)
        XCTAssertEqual(back[1].text, chunks[1].text)
        XCTAssertEqual(back[2].text, "ab", "NUL is dropped")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertNotNil(bytes.range(of: Data("tEXtparameters".utf8) + [0] + Data("caf".utf8) + [0xE9]), "Latin-1 tEXt chunk")
        XCTAssertNotNil(bytes.range(of: Data("iTXtComment".utf8)), "iTXt chunk for non-Latin-1 text")
        XCTAssertThrowsError(try image.writePNG(to: scratch("k.png"), text: [PNGTextChunk(keyword: "", text: "x")])) {
            XCTAssertEqual($0 as? ImageMetadataError, .invalidKeyword(""))
        }
        let missing = scratch("missing.png")
        XCTAssertThrowsError(try PNGText.read(from: missing)) {
            XCTAssertEqual($0 as? ImageMetadataError, .fileNotFound(missing))
        }
        let notPNG = scratch("t.png")
        try Data("not a png".utf8).write(to: URL(fileURLWithPath: notPNG))
        XCTAssertThrowsError(try PNGText.read(from: notPNG)) { e in
            guard case .notPNG? = e as? ImageMetadataError else { return XCTFail("\(e)") }
        }
        // A truncated PNG (image data cut off) is a named error too.
        let truncated = scratch("cut.png")
        try bytes.prefix(bytes.count - 20).write(to: URL(fileURLWithPath: truncated))
        XCTAssertThrowsError(try PNGText.read(from: truncated)) { e in
            guard case .notPNG? = e as? ImageMetadataError else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try PNGText.read(from: FileManager.default.temporaryDirectory.path)) { e in
            guard case .unreadable? = e as? ImageMetadataError else { return XCTFail("\(e)") }
        }
    }

    func testSHA256AgainstHashlib() throws {
        let e = try expected()
        func hex(_ bytes: [UInt8]) -> String { var h = SHA256(); h.update(bytes); return SHA256.hex(h.finalize()) }
        XCTAssertEqual(hex([]), e.sha256["empty"])
        XCTAssertEqual(hex(Array("abc".utf8)), e.sha256["abc"])
        for n in [55, 56, 63, 64, 65, 119, 120] {
            XCTAssertEqual(hex([UInt8](repeating: 97, count: n)), e.sha256["a_\(n)"], "\(n) bytes")
        }
        let pattern = (0..<5_000_003).map { UInt8(truncatingIfNeeded: ($0 * 7 + $0 / 251) % 256) }
        // In uneven pieces, and from a file (4 MiB reads): the same digest.
        var h = SHA256()
        var i = 0
        for piece in [1, 63, 64, 1000, 4_999_000, 10_000] {
            let end = min(i + piece, pattern.count)
            h.update(pattern[i..<end])
            i = end
        }
        h.update(pattern[i...])
        XCTAssertEqual(SHA256.hex(h.finalize()), e.sha256["pattern_5000003"])
        let file = scratch("pattern.bin")
        try Data(pattern).write(to: URL(fileURLWithPath: file))
        XCTAssertEqual(SHA256.hex(try SHA256.ofFiles([file])), e.sha256["pattern_5000003"])
        XCTAssertEqual(try ModelHash.sha256(forModel: file), e.sha256["pattern_5000003"])
        XCTAssertEqual(try ModelHash.shortHash(forModel: file), String(e.sha256["pattern_5000003"]!.prefix(10)))
        XCTAssertEqual(ModelHash.name(forModel: file), "pattern")
        XCTAssertThrowsError(try ModelHash.shortHash(forModel: scratch("nothing.safetensors")))
    }

    /// A diffusers folder's hash is its UNet weights' (the variant's file when one is loaded).
    func testModelHashOfAFolder() throws {
        let dir = PipelineTests.fixtures.appendingPathComponent("sd1-tiny").path
        let unet = dir + "/unet/diffusion_pytorch_model.safetensors"
        XCTAssertEqual(try ModelHash.files(forModel: dir), [unet])
        XCTAssertEqual(try ModelHash.files(forModel: dir + "/", variant: "fp16"), [dir + "/unet/diffusion_pytorch_model.fp16.safetensors"])
        XCTAssertEqual(try ModelHash.sha256(forModel: dir), SHA256.hex(try SHA256.ofFiles([unet])))
        XCTAssertEqual(ModelHash.name(forModel: dir + "/"), "sd1-tiny")
    }

    /// Sampler names and schedule types for every kind; a pipeline's parameters name what it ran.
    func testNamesAndPipelineParameters() throws {
        XCTAssertEqual(SchedulerKind.allCases.map(\.a1111SamplerName), ["PLMS", "DDIM", "Euler", "Euler a", "DPM++ 2M", "UniPC", "LCM"])
        for k in SchedulerKind.allCases { XCTAssertEqual(SchedulerKind(a1111SamplerName: k.a1111SamplerName), k) }
        var c = SchedulerConfig.stableDiffusion15
        XCTAssertEqual(SchedulerKind.dpmpp2m.a1111ScheduleType(config: c), "Uniform")
        XCTAssertEqual(SchedulerKind.pndm.a1111ScheduleType(config: c), "Automatic")
        c.useKarrasSigmas = true
        XCTAssertEqual(SchedulerKind.dpmpp2m.a1111ScheduleType(config: c), "Karras")
        c.timestepSpacing = "trailing"
        XCTAssertEqual(SchedulerKind.eulerAncestral.a1111ScheduleType(config: c), "SGM Uniform")
        c.useKarrasSigmas = nil
        c.timestepSpacing = "leading"
        XCTAssertEqual(SchedulerKind.euler.a1111ScheduleType(config: c), "DDIM")

        let pipe = try StableDiffusionPipeline(directory: PipelineTests.fixtures.appendingPathComponent("sd1-tiny").path)
        var r = GenerationRequest(prompts: ["one, two", "three"], negativePrompts: ["bad", ""])
        r.imagesPerPrompt = 2
        r.steps = 4
        r.guidanceScale = 2
        r.scheduler = .eulerAncestral
        r.timestepSpacing = .trailing
        r.clipSkip = 1
        let params = pipe.generationParameters(for: r, seed: 9, modelHash: "0000000000", model: "sd1-tiny")
        XCTAssertEqual(params.count, 4)
        XCTAssertEqual(params.map(\.prompt), ["one, two", "one, two", "three", "three"])
        XCTAssertEqual(params.map(\.negativePrompt), ["bad", "bad", "", ""])
        XCTAssertEqual(params[3].infotext, "three\nSteps: 4, Sampler: Euler a, Schedule type: SGM Uniform, CFG scale: 2.0, "
                       + "Seed: 9, Size: 64x64, Model hash: 0000000000, Model: sd1-tiny, Clip skip: 2, Batch size: 4, "
                       + "Batch pos: 3, Version: LeanDiffusion \(LeanDiffusionVersion.string)")
    }
}
