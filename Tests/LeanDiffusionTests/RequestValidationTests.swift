import XCTest
import LeanDiffusion

/// Requests are checked before any work: each bad field is a named error, huge sizes are refused by the memory
/// estimate within a second, and steps never index past the scheduler's table.
final class RequestValidationTests: XCTestCase {
    func pipeline() throws -> StableDiffusionPipeline { try StableDiffusionPipeline(directory: ErrorTestSupport.sd1) }

    func testFieldsAreChecked() throws {
        let pipe = try pipeline()
        func check(_ expected: String..., edit: (inout GenerationRequest) -> Void) {
            var r = ErrorTestSupport.tinyRequest()
            edit(&r)
            let text = expectError("invalid request") { _ = try pipe.generate(r) }
            for e in expected { XCTAssert(text.contains(e), "'\(text)' does not mention '\(e)'") }
        }
        check("guidanceScale", "nan") { $0.guidanceScale = .nan }
        check("guidanceScale", "inf") { $0.guidanceScale = .infinity }
        check("guidanceScale") { $0.guidanceScale = -.infinity }
        check("steps", "1...999") { $0.steps = 1000 }
        check("steps") { $0.steps = -5 }
        check("clipSkip", "2 layers") { $0.clipSkip = 2 }
        check("clipSkip") { $0.clipSkip = -1 }
        check("imagesPerPrompt") { $0.imagesPerPrompt = 0 }
        check("imagesPerPrompt", "several calls") { $0.imagesPerPrompt = Int.max }
        check("width", "multiple of 8") { $0.width = 60 }
        check("height") { $0.height = 0 }
        check("width") { $0.width = Int.max - 7 }
        check("negativePrompts") { $0.negativePrompts = ["a", "b"] }
        check("prompts") { $0.prompts = [] }
        var r = ErrorTestSupport.tinyRequest()
        r.steps = 999
        pipe.vaeOptions = VAEOptions(tiling: true, tileSampleSize: 12)
        defer { pipe.vaeOptions = VAEOptions() }
        expectError("vaeOptions.tileSampleSize") { _ = try pipe.generate(r) }
        pipe.vaeOptions = VAEOptions(tiling: true, tileSampleSize: 64, tileOverlap: .nan)
        expectError("vaeOptions.tileOverlap") { _ = try pipe.generate(r) }
    }

    /// `steps` equal to num_train_timesteps used to index past the alphas table (PNDM, DDIM); now every scheduler
    /// refuses it, and num_train_timesteps - 1 works for every one.
    func testStepsAtTheTableEdgeForEveryScheduler() throws {
        for kind in SchedulerKind.allCases {
            XCTAssertThrowsError(try kind.make(config: .stableDiffusion15, steps: 1000), "\(kind)") { e in
                XCTAssertEqual(e as? SchedulerError, .tooManySteps(1000, max: 999), "\(kind)")
            }
            // LCM takes at most original_inference_steps (here 999 of a 999-point distillation schedule).
            var edge = SchedulerConfig.stableDiffusion15
            if kind == .lcm { edge.originalInferenceSteps = 999 }
            let s = try kind.make(config: edge, steps: 999)
            XCTAssertTrue(s.timesteps.allSatisfy { (0..<1000).contains($0) }, "\(kind): \(s.timesteps.prefix(3))")
            // A steps_offset that pushes the schedule past the table is an error, not a trap.
            var c = SchedulerConfig.stableDiffusion15
            c.stepsOffset = 500
            if kind == .pndm || kind == .ddim {
                XCTAssertThrowsError(try kind.make(config: c, steps: 10), "\(kind)") { e in
                    XCTAssert("\(e)".contains("steps_offset"), "\(e)")
                }
            }
        }
        // Through the pipeline, the last valid step count runs (sd1-tiny's PNDM, one image, no guidance: quick).
        var r = ErrorTestSupport.tinyRequest(steps: 999)
        r.guidanceScale = 1
        r.width = 8
        r.height = 8
        var steps = 0
        expectError("cancelled") { _ = try pipeline().generate(r) { _ in steps += 1; return steps < 3 } }
        XCTAssertEqual(steps, 3)
    }

    /// 100000 x 100000 is refused by the estimate, quickly, with the numbers and what would help.
    func testHugeSizeIsRefusedByTheMemoryEstimate() throws {
        let pipe = try pipeline()
        var r = ErrorTestSupport.tinyRequest()
        r.width = 100_000
        r.height = 100_000
        let start = ContinuousClock.now
        let text = expectError("needs about", "TB", "is available", "VAE tiling", "a smaller size") { _ = try pipe.generate(r) }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(1), text)
        print("memory error: \(text)")
    }

    /// The available-bytes source is injectable: a 64x64 run fits in 1 GB but not in 1 MB.
    func testInjectedAvailableMemory() throws {
        let pipe = try StableDiffusionPipeline(directory: ErrorTestSupport.sd1)
        let r = ErrorTestSupport.tinyRequest()
        pipe.availableMemory = .fixed(1 << 30)
        XCTAssertEqual(try pipe.generate(r).count, 1)
        pipe.availableMemory = .fixed(1 << 20)
        expectError("needs about", "a fixed limit of 1.0 MB") { _ = try pipe.generate(r) }
        pipe.availableMemory = .unlimited
        XCTAssertEqual(try pipe.generate(r).count, 1)
    }

    /// Standard attention materialises B·heads·N·N scores; the estimate sees it and suggests flash attention.
    func testStandardAttentionScoresAreEstimated() throws {
        let pipe = try StableDiffusionPipeline(directory: ErrorTestSupport.sd1, policy: ComputePolicy(attention: .standard))
        pipe.availableMemory = .fixed(8 << 30)
        var r = ErrorTestSupport.tinyRequest()
        r.width = 4096
        r.height = 4096
        pipe.vaeOptions = VAEOptions(tiling: true)
        expectError("flash attention") { _ = try pipe.generate(r) }
    }
}
