import XCTest
@testable import LeanDiffusion

/// Image-to-image and inpainting against diffusers: tools/make_img2img_fixtures.py ran diffusers'
/// `StableDiffusionImg2ImgPipeline` and `StableDiffusionInpaintPipeline` on the committed tiny pipelines (and a
/// 9-channel inpainting UNet, Fixtures/img2img/sd1-tiny-inpaint) from Fixtures/img2img/init.png and mask.png; our
/// PNGs must be within the text-to-image tolerances (PSNR >= 55 dB, max |difference| <= 2/255) of diffusers' PNGs.
final class ImageToImageTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/img2img")

    struct Cases: Decodable {
        let cases: [Case]
    }

    struct Case: Decodable {
        let name: String
        let pipeline: String
        let scheduler: String
        let strength: Double
        let prompt: PipelineTests.OneOrMany
        let negativePrompt: PipelineTests.OneOrMany?
        let steps: Int
        let guidanceScale: Float
        let seed: UInt64
        let numImagesPerPrompt: Int
        let image: String
        let mask: String?
        let width: Int
        let height: Int
        let pngFiles: [String]
        /// VAE slicing and tiling as the fixture script set them on diffusers' VAE.
        let vae: VAE?

        enum CodingKeys: String, CodingKey {
            case name, pipeline, scheduler, strength, prompt, steps, seed, image, mask, width, height, vae
            case negativePrompt = "negative_prompt", guidanceScale = "guidance_scale"
            case numImagesPerPrompt = "num_images_per_prompt", pngFiles = "png_files"
        }
    }

    struct VAE: Decodable {
        let slicing: Bool
        let tiling: Bool
        let tileSampleMinSize: Int
        enum CodingKeys: String, CodingKey { case slicing, tiling, tileSampleMinSize = "tile_sample_min_size" }
    }

    static func loadCases() throws -> [Case] {
        let data = try Data(contentsOf: fixtures.appendingPathComponent("reference/cases.json"))
        return try JSONDecoder().decode(Cases.self, from: data).cases
    }

    static func pipelineDirectory(_ name: String) -> String {
        name == "sd1-tiny-inpaint" ? fixtures.appendingPathComponent(name).path
            : PipelineTests.fixtures.appendingPathComponent(name).path
    }

    static func image(_ name: String) throws -> RGBImage {
        try RGBImage.load(path: fixtures.appendingPathComponent(name).path)
    }

    /// The case's request. Image-to-image leaves the size to the picture (diffusers' default); inpainting passes
    /// it, as the fixture script did.
    static func request(_ c: Case) throws -> GenerationRequest {
        var request = GenerationRequest(prompts: c.prompt.values, negativePrompts: c.negativePrompt?.values)
        request.steps = c.steps
        request.guidanceScale = c.guidanceScale
        request.seed = c.seed
        request.imagesPerPrompt = c.numImagesPerPrompt
        request.scheduler = try XCTUnwrap(SchedulerKind(rawValue: c.scheduler))
        request.initImage = InitImage(image: try image(c.image), mask: try c.mask.map(image), strength: c.strength)
        if c.mask != nil {
            request.width = c.width
            request.height = c.height
        }
        return request
    }

    func runCases(_ filter: (Case) -> Bool, policy: ComputePolicy = ComputePolicy(),
                  minPSNR: Double = 55, maxDiff: Int = 2) throws {
        let cases = try Self.loadCases().filter(filter)
        XCTAssertFalse(cases.isEmpty)
        var pipelines: [String: StableDiffusionPipeline] = [:]
        for c in cases {
            let pipe = try pipelines[c.pipeline]
                ?? StableDiffusionPipeline(directory: Self.pipelineDirectory(c.pipeline), policy: policy)
            pipelines[c.pipeline] = pipe
            pipe.vaeOptions = c.vae.map { VAEOptions(slicing: $0.slicing, tiling: $0.tiling,
                                                     tileSampleSize: $0.tileSampleMinSize) } ?? VAEOptions()
            let images = try pipe.generate(try Self.request(c))
            XCTAssertEqual(images.count, c.pngFiles.count, c.name)
            for (image, file) in zip(images, c.pngFiles) {
                let reference = try RGBImage.readPNG(from: Self.fixtures.appendingPathComponent("reference/" + file).path)
                XCTAssertEqual(image.width, reference.width, c.name)
                XCTAssertEqual(image.height, reference.height, c.name)
                guard image.width == reference.width, image.height == reference.height else { continue }
                let (p, d) = PipelineTests.psnr(image, reference)
                print("parity \(c.pipeline) \(c.name) \(file) [\(policy.dtype) \(policy.layout)]: PSNR \(p) dB, max diff \(d)/255")
                XCTAssertGreaterThanOrEqual(p, minPSNR, "\(c.name) \(file): PSNR")
                XCTAssertLessThanOrEqual(d, maxDiff, "\(c.name) \(file): max difference")
            }
        }
    }

    /// Every scheduler at strength 0.75; DDIM and Euler at 0.3 and 1.0; a batch of 2 prompts x 2 images; no
    /// guidance; v-prediction (SD 2.x); a 70x54 picture (the size rounded down to 64x48 as diffusers does); VAE
    /// slicing and 32-pixel tiles (diffusers' tiled encode and decode).
    func testImageToImage() throws {
        try runCases { $0.mask == nil }
    }

    /// 4-channel UNet (known region blended back after every step) and 9-channel inpainting UNet (mask and masked
    /// picture latents concatenated), at strength 1.0 and 0.7, with a batch, without guidance, with VAE tiling.
    func testInpainting() throws {
        try runCases { $0.mask != nil }
    }

    /// Model and sequential offload with a picture to encode: the same pixels as resident (the encoder is part of
    /// the VAE component: loaded for the encode phase, evicted after it under model offload, streamed under
    /// sequential), and under model offload nothing stays resident after the run.
    func testOffloadWithAPicture() throws {
        let all = try Self.loadCases()
        for name in ["img2img-euler-a-0.75", "inpaint-9ch-pndm-0.7"] {
            let c = try XCTUnwrap(all.first { $0.name == name })
            let reference = try StableDiffusionPipeline(directory: Self.pipelineDirectory(c.pipeline))
                .generate(try Self.request(c))
            for mode in [OffloadMode.model, .sequential] {
                let pipe = try StableDiffusionPipeline(directory: Self.pipelineDirectory(c.pipeline), offload: mode)
                for run in 0..<2 {
                    XCTAssertEqual(try pipe.generate(try Self.request(c)), reference, "\(name) \(mode) run \(run)")
                }
                let phases = try XCTUnwrap(pipe.lastReport?.phases.map(\.name))
                XCTAssertEqual(phases.filter { $0 == "encode" }.count, 1, "\(phases)")
                if mode == .model {
                    for component in OffloadController.Component.allCases {
                        XCTAssertEqual(pipe.offloadController.registry(component).residentBytes, 0,
                                       "\(name): \(component) resident after a model-offload run")
                    }
                }
            }
        }
    }

    // MARK: - Bad input

    func inpaintRequest(mask: RGBImage, strength: Double? = nil) throws -> GenerationRequest {
        var request = PipelineTests.tinyRequest(steps: 4)
        request.initImage = InitImage(image: try Self.image("init.png"), mask: mask, strength: strength)
        return request
    }

    func testMaskOfAnotherSize() throws {
        let pipe = try StableDiffusionPipeline(directory: Self.pipelineDirectory("sd1-tiny"))
        let mask = try RGBImage.load(path: ImageInputTests.dir.appendingPathComponent("mask-45x35.png").path)
        XCTAssertThrowsError(try pipe.generate(try inpaintRequest(mask: mask))) { error in
            guard case PipelineError.invalidRequest(let field, let reason) = error else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(field, "mask")
            XCTAssertTrue(reason.contains("45x35") && reason.contains("64x64"), reason)
        }
    }

    func testStrengthOutOfRange() throws {
        let pipe = try StableDiffusionPipeline(directory: Self.pipelineDirectory("sd1-tiny"))
        for strength in [0, 1.5, -0.1, .nan, .infinity] {
            var request = PipelineTests.tinyRequest(steps: 4)
            request.initImage = InitImage(image: try Self.image("init.png"), strength: strength)
            XCTAssertThrowsError(try pipe.generate(request), "strength \(strength)") { error in
                guard case PipelineError.invalidRequest(let field, let reason) = error else {
                    return XCTFail("\(error)")
                }
                XCTAssertEqual(field, "strength")
                XCTAssertTrue(reason.contains("(0, 1]"), reason)
            }
        }
        // 0.2 x 4 steps = int(0.8) = 0 steps left: diffusers would run an empty loop on the noised picture.
        var request = PipelineTests.tinyRequest(steps: 4)
        request.initImage = InitImage(image: try Self.image("init.png"), strength: 0.2)
        XCTAssertThrowsError(try pipe.generate(request)) { error in
            guard case PipelineError.invalidRequest(let field, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "strength")
            XCTAssertTrue(reason.contains("no denoising step"), reason)
        }
    }

    func testInpaintingModelNeedsPictureAndMask() throws {
        let pipe = try StableDiffusionPipeline(directory: Self.pipelineDirectory("sd1-tiny-inpaint"))
        XCTAssertTrue(pipe.isInpaintingModel)
        var request = PipelineTests.tinyRequest(steps: 2)
        XCTAssertThrowsError(try pipe.generate(request)) { error in
            guard case PipelineError.invalidRequest(let field, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "initImage")
        }
        request.initImage = InitImage(image: try Self.image("init.png"))
        XCTAssertThrowsError(try pipe.generate(request)) { error in
            guard case PipelineError.invalidRequest(let field, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "mask")
        }
    }

    /// The loop runs int(steps x strength) UNet calls (DDIM; PNDM runs one more, its PLMS warm-up step repeating a
    /// timestep, as diffusers' `timesteps[t_start:]` does), and progress counts those.
    func testProgressCountsTheStepsRun() throws {
        let pipe = try StableDiffusionPipeline(directory: Self.pipelineDirectory("sd1-tiny"))
        var request = PipelineTests.tinyRequest(steps: 8)
        request.scheduler = .ddim
        request.initImage = InitImage(image: try Self.image("init.png"), strength: 0.5)
        nonisolated(unsafe) var seen: [StepProgress] = []
        _ = try pipe.generate(request) { seen.append($0); return true }
        XCTAssertEqual(seen.map(\.step), [1, 2, 3, 4])
        XCTAssertEqual(Set(seen.map(\.totalSteps)), [4])
        XCTAssertEqual(pipe.lastReport?.steps, 4)
        XCTAssertNotNil(pipe.lastReport?.phases.first { $0.name == "encode" })
    }
}
