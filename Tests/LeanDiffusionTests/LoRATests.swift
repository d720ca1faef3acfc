import XCTest
@testable import LeanDiffusion
import LeanCore
import SafeTensors

/// LoRA against diffusers' `load_lora_weights` + `set_adapters` (tools/make_lora_fixtures.py): kohya and PEFT
/// files, scales 1.0 and 0.5, two LoRAs together, a single file with a LoRA, every offload mode.
final class LoRATests: XCTestCase {
    static let fixtures = PipelineTests.fixtures.deletingLastPathComponent()
    static let dir = fixtures.appendingPathComponent("lora")
    static let sd1 = PipelineTests.fixtures.appendingPathComponent("sd1-tiny").path
    static let single = fixtures.appendingPathComponent("single-file/sd1-tiny.safetensors").path

    struct Manifest: Decodable {
        struct Case: Decodable {
            struct LoRA: Decodable { let file: String; let scale: Float }
            let name: String
            let loras: [LoRA]
            let png: String
        }
        let cases: [Case]
    }

    static func request() -> GenerationRequest {
        var r = GenerationRequest(prompt: "a red circle on a blue background", negativePrompt: "blurry")
        r.steps = 4
        r.guidanceScale = 7.5
        r.seed = 42
        r.width = 64
        r.height = 64
        r.scheduler = .pndm
        return r
    }

    func image(_ model: String, _ loras: [LoRASpec], offload: OffloadMode = .none, dtype: DType = .f32) throws -> RGBImage {
        let pipe = try StableDiffusionPipeline(directory: model, policy: ComputePolicy(dtype: dtype), offload: offload,
                                               config: model.hasSuffix(".safetensors") ? Self.sd1 : nil, loras: loras)
        return try XCTUnwrap(pipe.generate(Self.request()).first)
    }

    func testMatchesDiffusers() throws {
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: Self.dir.appendingPathComponent("cases.json")))
        XCTAssertEqual(manifest.cases.count, 5)
        let plain = try RGBImage.readPNG(from: Self.dir.appendingPathComponent("plain.png").path)
        XCTAssertGreaterThanOrEqual(PipelineTests.psnr(try image(Self.sd1, []), plain).psnr, 55, "no LoRA")
        for c in manifest.cases {
            let specs = c.loras.map { LoRASpec(path: Self.dir.appendingPathComponent($0.file).path, scale: $0.scale) }
            let model = c.name.hasPrefix("single-file") ? Self.single : Self.sd1
            let ours = try image(model, specs)
            let reference = try RGBImage.readPNG(from: Self.dir.appendingPathComponent(c.png).path)
            let (p, d) = PipelineTests.psnr(ours, reference)
            print("lora parity \(c.name): PSNR \(p) dB, max diff \(d)/255 (plain image differs by \(PipelineTests.psnr(ours, plain).maxDiff))")
            XCTAssertGreaterThanOrEqual(p, 55, c.name)
            XCTAssertLessThanOrEqual(d, 2, c.name)
        }
    }

    /// A weight evicted and read back comes back with its delta: model and sequential offload give the resident image.
    func testEveryOffloadMode() throws {
        let specs = [LoRASpec(path: Self.dir.appendingPathComponent("kohya.safetensors").path),
                     LoRASpec(path: Self.dir.appendingPathComponent("peft.safetensors").path, scale: 0.5)]
        let resident = try image(Self.sd1, specs)
        for mode in [OffloadMode.model, .sequential] {
            let pipe = try StableDiffusionPipeline(directory: Self.sd1, offload: mode, streamingBudgetBytes: mode == .sequential ? 300_000 : nil,
                                                   loras: specs)
            for run in 0..<2 { XCTAssertEqual(try pipe.generate(Self.request()).first, resident, "\(mode) run \(run)") }
        }
        // bf16 and fp16: the delta is formed in f32 and rounded once; close to fp32.
        for dtype in [DType.bf16, .f16] where CPUCapabilities.supports(dtype) {
            let (p, _) = PipelineTests.psnr(try image(Self.sd1, specs, dtype: dtype), resident)
            print("lora \(dtype) vs f32: PSNR \(p) dB")
            XCTAssertGreaterThan(p, 30, "\(dtype)")
        }
    }

    /// The kohya text encoder names (lora_te_text_model_encoder_layers_N_...) reach the same weights as PEFT's
    /// (diffusers 0.42.1 drops the kohya ones; see the fixture script): the two files give the same image, which
    /// differs from the image without them.
    func testKohyaTextEncoderNames() throws {
        let kohya = try image(Self.sd1, [LoRASpec(path: Self.dir.appendingPathComponent("kohya-te.safetensors").path)])
        let peft = try image(Self.sd1, [LoRASpec(path: Self.dir.appendingPathComponent("peft-te.safetensors").path)])
        XCTAssertGreaterThanOrEqual(PipelineTests.psnr(kohya, peft).psnr, 60)
        XCTAssertGreaterThan(PipelineTests.psnr(kohya, try image(Self.sd1, [])).maxDiff, 10)
        let lora = try LoRAFile(path: Self.dir.appendingPathComponent("kohya-te.safetensors").path)
        XCTAssertEqual(lora.format, .kohya)
        XCTAssertEqual(lora.entries.map(\.target), [.textEncoder, .textEncoder, .textEncoder])
        XCTAssertEqual(lora.entries.first?.rank, 4)
        XCTAssertEqual(lora.entries.first?.alphaScale, 0.5)
    }

    func testBadLoRAs() throws {
        let tmp = TempDir()
        // Modules another model has: named, not ignored.
        let other = tmp.file("other.safetensors")
        try SafeTensorsWriter.write([("lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight", .F32, [2, 4], [UInt8](repeating: 0, count: 32)),
                                     ("lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight", .F32, [4, 2], [UInt8](repeating: 0, count: 32))],
                                    metadata: nil, to: other)
        XCTAssertThrowsError(try StableDiffusionPipeline(directory: Self.sd1, loras: [LoRASpec(path: other)])) {
            XCTAssertTrue("\($0)".contains("not in this model"), "\($0)")
        }
        // Mismatched pair, a file with no LoRA keys, a missing file, a non-finite scale.
        let pair = tmp.file("pair.safetensors")
        try SafeTensorsWriter.write([("unet.x.lora_A.weight", .F32, [2, 4], [UInt8](repeating: 0, count: 32)),
                                     ("unet.x.lora_B.weight", .F32, [4, 3], [UInt8](repeating: 0, count: 48))],
                                    metadata: nil, to: pair)
        XCTAssertThrowsError(try LoRAFile(path: pair)) { XCTAssertTrue("\($0)".contains("low-rank pair"), "\($0)") }
        XCTAssertThrowsError(try LoRAFile(path: Self.single)) { XCTAssertTrue("\($0)".contains("no LoRA weights"), "\($0)") }
        XCTAssertThrowsError(try LoRAFile(path: tmp.file("missing.safetensors")))
        XCTAssertThrowsError(try StableDiffusionPipeline(directory: Self.sd1, loras: [
            LoRASpec(path: Self.dir.appendingPathComponent("kohya.safetensors").path, scale: .nan)])) {
            XCTAssertTrue("\($0)".contains("finite"), "\($0)")
        }
    }
}
