import XCTest
@testable import LeanDiffusion
import LeanCore
import SafeTensors

/// Single-file checkpoints in the original layout (tools/make_single_file_fixtures.py: the tiny pipelines' weights
/// as SD 1.x and SD 2.x files, fp16, with EMA decoys in the SD 1.x one) against what diffusers'
/// `from_single_file(config=<folder>)` drew from the same files.
final class SingleFileTests: XCTestCase {
    static let dir = PipelineTests.fixtures.deletingLastPathComponent().appendingPathComponent("single-file")

    struct Manifest: Decodable {
        struct Model: Decodable {
            let file: String
            let config: String
            let cases: [Case]
        }
        struct Case: Decodable {
            let name, scheduler, prompt, png: String
            let negative_prompt: String
            let steps: Int
            let guidance_scale: Float
            let seed: UInt64
            let width, height: Int
        }
        let models: [String: Model]
    }

    static func manifest() throws -> Manifest {
        try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: dir.appendingPathComponent("cases.json")))
    }

    func run(_ name: String, offload: OffloadMode = .none, dtype: DType = .f32, minPSNR: Double = 55, maxDiff: Int = 2) throws {
        let model = try XCTUnwrap(Self.manifest().models[name])
        let config = PipelineTests.fixtures.deletingLastPathComponent().appendingPathComponent(model.config).path
        let pipe = try StableDiffusionPipeline(directory: Self.dir.appendingPathComponent(model.file).path,
                                               policy: ComputePolicy(dtype: dtype), offload: offload, config: config)
        for c in model.cases {
            var request = GenerationRequest(prompt: c.prompt, negativePrompt: c.negative_prompt.isEmpty ? nil : c.negative_prompt)
            request.steps = c.steps
            request.guidanceScale = c.guidance_scale
            request.seed = c.seed
            request.width = c.width
            request.height = c.height
            request.scheduler = try XCTUnwrap(SchedulerKind(rawValue: c.scheduler))
            let image = try XCTUnwrap(pipe.generate(request).first)
            let reference = try RGBImage.readPNG(from: Self.dir.appendingPathComponent(c.png).path)
            let (p, d) = PipelineTests.psnr(image, reference)
            print("single-file parity \(name) \(c.name) [\(dtype), offload \(offload)]: PSNR \(p) dB, max diff \(d)/255")
            XCTAssertGreaterThanOrEqual(p, minPSNR, "\(name) \(c.name)")
            XCTAssertLessThanOrEqual(d, maxDiff, "\(name) \(c.name)")
        }
    }

    /// SD 1.x layout (HF CLIP under cond_stage_model.transformer, EMA decoys ignored).
    func testSD1SingleFileMatchesDiffusers() throws { try run("sd1-tiny") }

    /// SD 2.x layout: OpenCLIP text encoder with fused q/k/v read as views, v-prediction.
    func testSD2SingleFileMatchesDiffusers() throws { try run("sd2-tiny-v") }

    /// Streaming offload reads the single file too (its views included), with the same pixels.
    func testSingleFileUnderOffload() throws {
        try run("sd2-tiny-v", offload: .sequential)
        try run("sd1-tiny", offload: .model)
    }

    /// The architecture is told from names and shapes; the tiny files are SD 1.x (CLIP, EMA present) and SD 2.x
    /// (OpenCLIP) by layout, and 4-channel.
    func testDetection() throws {
        let sd1 = try SingleFileCheckpoint(path: Self.dir.appendingPathComponent("sd1-tiny.safetensors").path)
        XCTAssertEqual(sd1.textEncoderLayout, .clip)
        XCTAssertTrue(sd1.hasEMAWeights)
        XCTAssertEqual(sd1.architecture, .sd1, "tiny cross-attention width is not 1024")
        let sd2 = try SingleFileCheckpoint(path: Self.dir.appendingPathComponent("sd2-tiny-v.safetensors").path)
        XCTAssertEqual(sd2.textEncoderLayout, .openClip)
        XCTAssertFalse(sd2.hasEMAWeights)

        // Shapes decide: a 9-channel conv_in is inpainting, 1024-wide attn2.to_k is SD 2.x, SDXL is refused.
        let tmp = TempDir()
        func file(_ tensors: [(String, [Int])]) throws -> String {
            let path = tmp.file("\(tensors.count)-\(UUID()).safetensors")
            try SafeTensorsWriter.write(tensors.map { (name: $0.0, dtype: .F16, shape: $0.1,
                                                        data: [UInt8](repeating: 0, count: 2 * $0.1.reduce(1, *))) },
                                        metadata: nil, to: path)
            return path
        }
        let conv = SingleFileCheckpoint.inpaintingKey, toK = SingleFileCheckpoint.sd2Key
        XCTAssertEqual(try SingleFileCheckpoint(path: file([(conv, [8, 9, 3, 3])])).architecture, .sd1Inpainting)
        XCTAssertEqual(try SingleFileCheckpoint(path: file([(conv, [8, 4, 3, 3]), (toK, [8, 1024])])).architecture, .sd2)
        XCTAssertEqual(try SingleFileCheckpoint(path: file([(conv, [8, 9, 3, 3]), (toK, [8, 1024])])).architecture, .sd2Inpainting)
        XCTAssertEqual(try SingleFileCheckpoint(path: file([(conv, [8, 4, 3, 3]), (toK, [8, 768])])).architecture, .sd1)
        XCTAssertThrowsError(try SingleFileCheckpoint(path: file([(conv, [8, 4, 3, 3]), ("conditioner.embedders.0.x", [1])]))) {
            XCTAssertTrue("\($0)".contains("SDXL"), "\($0)")
        }
        XCTAssertThrowsError(try SingleFileCheckpoint(path: file([("something.else", [2])]))) {
            XCTAssertTrue("\($0)".contains("not a Stable Diffusion"), "\($0)")
        }
        XCTAssertThrowsError(try SingleFileCheckpoint(path: tmp.file("model.ckpt"))) {
            XCTAssertTrue("\($0)".contains(".ckpt"), "\($0)")
        }
    }

    /// A single file without configs is a named error; `vae:` replaces the VAE with a file in the original layout.
    func testConfigsAndVAEReplacement() throws {
        let path = Self.dir.appendingPathComponent("sd1-tiny.safetensors").path
        XCTAssertThrowsError(try StableDiffusionPipeline(directory: path)) {
            XCTAssertTrue("\($0)".contains("configs"), "\($0)")
        }
        let folder = PipelineTests.fixtures.appendingPathComponent("sd1-tiny").path
        let request = PipelineTests.tinyRequest(steps: 3)
        let reference = try StableDiffusionPipeline(directory: folder).generate(request)
        // The VAE from the single file itself (original layout), and from the folder's VAE directory.
        for vae in [path, folder + "/vae"] {
            let pipe = try StableDiffusionPipeline(directory: folder + "/../sd1-tiny", vae: vae)
            let image = try XCTUnwrap(pipe.generate(request).first)
            let (p, d) = PipelineTests.psnr(image, reference[0])
            // The single file's VAE is fp16-rounded: close, not equal.
            XCTAssertGreaterThanOrEqual(p, 40, vae)
            XCTAssertLessThanOrEqual(d, 8, vae)
        }
    }

    /// The shipped configs (Models/configs, tools/make_shipped_configs.py) parse, pass the cross-component checks, and
    /// say what each architecture is.
    func testShippedConfigs() throws {
        let root = PipelineTests.fixtures.deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Models/configs").path
        for arch in SingleFileArchitecture.allCases {
            let dir = root + "/" + arch.rawValue
            let folder = try DiffusersFolder(path: dir)
            let tokenizer = try CLIPTokenizer(directory: dir + "/tokenizer")
            let text = try CLIPTextConfig.load(from: dir + "/text_encoder")
            let unet = try UNetConfig.load(from: dir + "/unet")
            let vae = try VAEConfig.load(from: dir + "/vae")
            let schedulerPath = dir + "/scheduler/scheduler_config.json"
            let scheduler = try SchedulerConfig.load(path: schedulerPath)
            let kind = try XCTUnwrap(folder.component("scheduler")?.className)
            let sd2 = arch == .sd2 || arch == .sd2Inpainting
            XCTAssertEqual(unet.crossAttentionDim, sd2 ? 1024 : 768, arch.rawValue)
            XCTAssertEqual(text.hiddenSize, sd2 ? 1024 : 768, arch.rawValue)
            XCTAssertEqual(text.numHiddenLayers, sd2 ? 23 : 12, arch.rawValue)
            XCTAssertEqual(unet.inChannels, arch == .sd1Inpainting || arch == .sd2Inpainting ? 9 : 4, arch.rawValue)
            XCTAssertEqual(tokenizer.encodePadded("a cat").last, sd2 ? 0 : 49407, "\(arch.rawValue) pad token")
            if arch == .sd2 { XCTAssertEqual(scheduler.predictionType, "v_prediction") }
            if unet.inChannels == 4 {
                XCTAssertNoThrow(try StableDiffusionPipeline.checkCompatibility(
                    directory: dir, tokenizer: tokenizer, text: text, unet: unet, vae: vae, scheduler: scheduler,
                    kind: kind, schedulerPath: schedulerPath), arch.rawValue)
            }
        }
    }

    /// A single file written as a diffusers folder (configs from `configRoot`, views written as tensors) loads as a
    /// folder and draws what the single file draws, for both text encoder layouts; an existing target is refused.
    func testConvertToDiffusersFolder() throws {
        let tmp = TempDir()
        for name in ["sd1-tiny", "sd2-tiny-v"] {
            let path = Self.dir.appendingPathComponent(name + ".safetensors").path
            let config = PipelineTests.fixtures.appendingPathComponent(name).path
            let single = try SingleFileCheckpoint(path: path)
            let target = tmp.file(name)
            try single.writeDiffusersFolder(to: target, configRoot: config)
            let request = PipelineTests.tinyRequest(steps: 3)
            let fromFolder = try StableDiffusionPipeline(directory: target).generate(request)
            let fromFile = try StableDiffusionPipeline(directory: path, config: config).generate(request)
            XCTAssertEqual(fromFolder, fromFile, name)
            XCTAssertThrowsError(try single.writeDiffusersFolder(to: target, configRoot: config)) {
                XCTAssertTrue("\($0)".contains("exists"), "\($0)")
            }
        }
    }

    /// A diffusers folder written as one original-layout file (OpenCLIP for the GELU text encoder) reads back as a
    /// single file with the folder's configs and draws the folder's image.
    func testFolderToSingleFile() throws {
        let tmp = TempDir()
        for (name, layout) in [("sd1-tiny", SingleFileCheckpoint.TextEncoderLayout.clip), ("sd2-tiny-v", .openClip)] {
            let folder = PipelineTests.fixtures.appendingPathComponent(name).path
            let target = tmp.file(name + ".safetensors")
            try DiffusersFolder(path: folder).writeSingleFile(to: target)
            let single = try SingleFileCheckpoint(path: target)
            XCTAssertEqual(single.textEncoderLayout, layout, name)
            let request = PipelineTests.tinyRequest(steps: 3)
            XCTAssertEqual(try StableDiffusionPipeline(directory: target, config: folder).generate(request),
                           try StableDiffusionPipeline(directory: folder).generate(request), name)
        }
    }
}
