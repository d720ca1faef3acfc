import XCTest
import LeanDiffusion

/// Config values are range-checked at load, each error naming the file and the field.
final class ConfigValidationTests: XCTestCase {
    let unetConfig = ErrorTestSupport.sd1 + "/unet/config.json"

    /// A UNet config.json with one field replaced, loaded from a scratch folder.
    func unet(_ key: String, _ raw: String?) throws -> Error? {
        let dir = try ErrorTestSupport.scratchCopy(self)
        try ErrorTestSupport.setField(dir + "/unet/config.json", key, raw: raw)
        do { _ = try UNetConfig.load(from: dir + "/unet"); return nil } catch { return error }
    }

    func assertUNet(_ key: String, _ raw: String, mentions expected: String..., line: UInt = #line) throws {
        let error = try XCTUnwrap(try unet(key, raw), "\(key) = \(raw) was accepted", line: line)
        let text = "\(error)"
        XCTAssert(text.contains("unet/config.json"), "'\(text)' does not name the file", line: line)
        for e in expected { XCTAssert(text.contains(e), "'\(text)' does not mention '\(e)'", line: line) }
    }

    func testUNetFields() throws {
        try assertUNet("attention_head_dim", "0", mentions: "attention_head_dim", "outside")
        try assertUNet("norm_num_groups", "0", mentions: "norm_num_groups", "outside")
        try assertUNet("norm_num_groups", "5", mentions: "norm_num_groups", "does not divide")
        try assertUNet("attention_head_dim", "3", mentions: "attention_head_dim", "do not divide")
        try assertUNet("block_out_channels", "[]", mentions: "block_out_channels", "empty")
        try assertUNet("block_out_channels", "[32, -64]", mentions: "block_out_channels", "outside")
        try assertUNet("layers_per_block", "0", mentions: "layers_per_block")
        try assertUNet("layers_per_block", "[1, 1, 1]", mentions: "layers_per_block", "expected 2 entries")
        try assertUNet("down_block_types", #"["DownBlock2D"]"#, mentions: "down_block_types", "1 entries for 2")
        try assertUNet("sample_size", "1e30", mentions: "sample_size", "out of range")
        try assertUNet("sample_size", "100000", mentions: "sample_size", "outside 1...4096")
        try assertUNet("cross_attention_dim", "1.5", mentions: "cross_attention_dim", "expected an integer")
        try assertUNet("in_channels", "-4", mentions: "in_channels")
        try assertUNet("norm_eps", "-1", mentions: "norm_eps")
        try assertUNet("downsample_padding", "7", mentions: "downsample_padding")
        XCTAssertNil(try unet("upcast_attention", "true"), "upcast_attention is honoured, not rejected")
    }

    func testTextEncoderAndVAEFields() throws {
        let dir = try ErrorTestSupport.scratchCopy(self)
        let text = dir + "/text_encoder/config.json", vae = dir + "/vae/config.json"
        try ErrorTestSupport.setField(text, "num_attention_heads", raw: "0")
        expectError("text_encoder/config.json", "num_attention_heads") { _ = try CLIPTextConfig.load(from: dir + "/text_encoder") }
        try ErrorTestSupport.setField(text, "num_attention_heads", raw: "4")
        try ErrorTestSupport.setField(text, "hidden_size", raw: "1e300")
        expectError("hidden_size", "out of range") { _ = try CLIPTextConfig.load(from: dir + "/text_encoder") }
        try ErrorTestSupport.setField(text, "hidden_size", raw: "32")
        try ErrorTestSupport.setField(text, "num_hidden_layers", raw: "0")
        expectError("num_hidden_layers") { _ = try CLIPTextConfig.load(from: dir + "/text_encoder") }

        try ErrorTestSupport.setField(vae, "shift_factor", raw: "0.1159")
        expectError("vae/config.json", "shift_factor", "SD3") { _ = try VAEConfig.load(from: dir + "/vae") }
        try ErrorTestSupport.setField(vae, "shift_factor", raw: "null")
        try ErrorTestSupport.setField(vae, "scaling_factor", raw: "0")
        expectError("scaling_factor") { _ = try VAEConfig.load(from: dir + "/vae") }
        try ErrorTestSupport.setField(vae, "scaling_factor", raw: "0.18215")
        try ErrorTestSupport.setField(vae, "out_channels", raw: "4")
        expectError("out_channels", "RGB") { _ = try VAEConfig.load(from: dir + "/vae") }
        try ErrorTestSupport.setField(vae, "out_channels", raw: "3")
        try ErrorTestSupport.setField(vae, "block_out_channels", raw: "[32, 32, 32, 32, 32, 32, 32, 32, 32, 32]")
        expectError("block_out_channels", "levels") { _ = try VAEConfig.load(from: dir + "/vae") }
    }

    func testSchedulerFields() throws {
        let dir = try ErrorTestSupport.scratchCopy(self)
        let path = dir + "/scheduler/scheduler_config.json"
        for (key, raw, expected) in [("num_train_timesteps", "1e30", "num_train_timesteps"),
                                     ("num_train_timesteps", "1000000", "2...100000"),
                                     ("num_train_timesteps", "1", "num_train_timesteps"),
                                     ("beta_start", "1.5", "strictly between 0 and 1"),
                                     ("beta_end", "-0.1", "beta_end"),
                                     ("prediction_type", #""eps""#, "known: epsilon, v_prediction, sample"),
                                     ("timestep_spacing", #""sideways""#, "timestep_spacing"),
                                     ("beta_schedule", #""cosine""#, "beta_schedule"),
                                     ("algorithm_type", #""dpm""#, "algorithm_type"),
                                     ("solver_type", #""rk4""#, "solver_type"),
                                     ("trained_betas", "[0.5, 2]", "trained_betas"),
                                     ("steps_offset", "-3", "steps_offset")] {
            let original = try String(contentsOfFile: path, encoding: .utf8)
            try ErrorTestSupport.setField(path, key, raw: raw)
            expectError("scheduler_config.json", expected) { _ = try SchedulerConfig.load(path: path) }
            // The pipeline refuses the folder at load with the same error.
            expectError("scheduler_config.json", key) { _ = try StableDiffusionPipeline(directory: dir) }
            try original.write(toFile: path, atomically: true, encoding: .utf8)
        }
        XCTAssertNoThrow(try SchedulerConfig.load(path: path))
    }

    func testTokenizerMaxLength() throws {
        let dir = try ErrorTestSupport.scratchCopy(self)
        let path = dir + "/tokenizer/tokenizer_config.json"
        try ErrorTestSupport.setField(path, "model_max_length", raw: "5.5")
        expectError("tokenizer_config.json", "model_max_length") { _ = try CLIPTokenizer(directory: dir + "/tokenizer") }
        try ErrorTestSupport.setField(path, "model_max_length", raw: "-1")
        expectError("model_max_length") { _ = try CLIPTokenizer(directory: dir + "/tokenizer") }
        // transformers' "no limit" sentinel means CLIP's 77.
        try ErrorTestSupport.setField(path, "model_max_length", raw: "1000000000000000019884624838656")
        XCTAssertEqual(try CLIPTokenizer(directory: dir + "/tokenizer").maxLength, 77)
    }

    /// Components that cannot work together are refused at load, naming both files.
    func testCrossComponentChecks() throws {
        let cases: [(file: String, key: String, raw: String, expected: [String])] = [
            ("unet/config.json", "cross_attention_dim", "64", ["cross_attention_dim 64", "hidden_size 32"]),
            ("tokenizer/tokenizer_config.json", "model_max_length", "100", ["model_max_length 100", "max_position_embeddings 77"]),
            ("unet/config.json", "in_channels", "8", ["in_channels 8", "latent_channels 4"]),
            ("text_encoder/config.json", "vocab_size", "1000", ["vocab_size 1000", "vocab.json"]),
        ]
        for c in cases {
            let dir = try ErrorTestSupport.scratchCopy(self)
            try ErrorTestSupport.setField(dir + "/" + c.file, c.key, raw: c.raw)
            let text = expectError("incompatible components") { _ = try StableDiffusionPipeline(directory: dir) }
            for e in c.expected { XCTAssert(text.contains(e), "'\(text)' does not mention '\(e)'") }
        }
        // in_channels 9 is an inpainting UNet (latents + mask + masked picture): accepted by the component checks,
        // then the 4-channel weights are refused by shape.
        let dir = try ErrorTestSupport.scratchCopy(self)
        try ErrorTestSupport.setField(dir + "/unet/config.json", "in_channels", raw: "9")
        expectError("conv_in.weight", "[32, 4, 3, 3]", "expected [32, 9, 3, 3]") {
            _ = try StableDiffusionPipeline(directory: dir)
        }
    }

    /// `upcast_attention` is honoured by construction: every attention kernel computes scores and softmax in f32
    /// (diffusers' upcast path), so under bf16 the flag gives the same image and is accepted rather than ignored.
    func testUpcastAttentionIsHonoured() throws {
        let dir = try ErrorTestSupport.scratchCopy(self)
        let request = PipelineTests.tinyRequest(steps: 2)
        // bf16 where oneDNN has bf16 kernels (AVX-512), else fp16 (also computed with the f32 upcast scores).
        let policy = ComputePolicy(dtype: CPUCapabilities.supports(.bf16) ? .bf16 : .f16)
        let plain = try StableDiffusionPipeline(directory: dir, policy: policy).generate(request)[0]
        try ErrorTestSupport.setField(dir + "/unet/config.json", "upcast_attention", raw: "true")
        let pipe = try StableDiffusionPipeline(directory: dir, policy: policy)
        XCTAssertTrue(pipe.unetConfig.upcastAttention)
        XCTAssertTrue(try pipe.generate(request)[0] == plain, "upcast images differ")
    }
}
