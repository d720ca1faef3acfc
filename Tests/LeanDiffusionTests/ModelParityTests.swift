#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import XCTest
import LeanCore
import LeanDiffusion
import SafeTensors

/// Parity of the three SD models against diffusers/transformers on tiny random-weight pipelines
/// (Fixtures/pipelines/{sd1-tiny,sd2-tiny-v}, reference/components.safetensors).
final class ModelParityTests: XCTestCase {
    static let fixtures: String = {
        var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast()
        return parts.joined(separator: "/") + "/Fixtures/pipelines"
    }()
    static let pipelines = ["sd1-tiny", "sd2-tiny-v"]

    /// Every policy checked: fp32 in both layouts with flash and standard attention, and bf16.
    static let policies: [(name: String, policy: ComputePolicy, tolerance: Float)] = [
        ("f32/nchw/standard", ComputePolicy(dtype: .f32, layout: .nchw, attention: .standard), 1e-4),
        ("f32/nchw/flash", ComputePolicy(dtype: .f32, layout: .nchw, attention: .flash), 1e-4),
        ("f32/nhwc/standard", ComputePolicy(dtype: .f32, layout: .nhwc, attention: .standard), 1e-4),
        ("f32/nhwc/flash", ComputePolicy(dtype: .f32, layout: .nhwc, attention: .flash), 1e-4),
        ("f32/nhwc/sliced", ComputePolicy(dtype: .f32, layout: .nhwc, attention: .sliced(headsPerSlice: 1)), 1e-4),
        ("bf16/nhwc/flash", ComputePolicy(dtype: .bf16, layout: .nhwc, attention: .flash), 3e-2),
        ("bf16/nchw/standard", ComputePolicy(dtype: .bf16, layout: .nchw, attention: .standard), 3e-2),
        ("f16/nhwc/flash", ComputePolicy(dtype: .f16, layout: .nhwc, attention: .flash), 5e-3),
    ].filter { CPUCapabilities.supports($0.policy.dtype) }  // bf16 needs AVX-512 (oneDNN)

    func dir(_ p: String, _ component: String = "") -> String { "\(Self.fixtures)/\(p)/\(component)" }

    func reference(_ p: String) throws -> SafeTensorsFile {
        let path = dir(p, "reference/components.safetensors")
        try XCTSkipUnless(FileManager.default.fileExists(atPath: path), "fixture \(path) not generated")
        return try SafeTensorsFile(path: path)
    }

    func ref(_ f: SafeTensorsFile, _ name: String) throws -> Tensor {
        guard let info = f.info(name) else { throw XCTSkip("reference \(name) missing") }
        return Tensor(try f.floats(name), shape: info.shape)
    }

    /// max |a − b| / max |b|.
    func relErr(_ a: Tensor, _ b: Tensor) -> Float {
        XCTAssertEqual(a.shape, b.shape)
        let x = a.toFloats(), y = b.toFloats()
        var d: Float = 0, m: Float = 0
        for i in 0..<min(x.count, y.count) { d = max(d, abs(x[i] - y[i])); m = max(m, abs(y[i])) }
        if x.contains(where: { !$0.isFinite }) { return .infinity }
        return d / max(m, 1e-12)
    }

    func check(_ label: String, _ got: Tensor, _ want: Tensor, _ tol: Float) {
        let e = relErr(got, want)
        print("PARITY \(label): \(e) (tol \(tol))")
        XCTAssertLessThanOrEqual(e, tol, label)
    }

    func testTextEncoder() throws {
        for p in Self.pipelines {
            let r = try reference(p)
            let ids = try r.floats("text.input_ids").map { Int32($0) }
            let want = try ref(r, "text.last_hidden_state")
            let config = try CLIPTextConfig.load(from: dir(p, "text_encoder"))
            let weights = try WeightLoader(componentDirectory: dir(p, "text_encoder"))
            for (name, policy, tol) in Self.policies {
                let model = try CLIPTextModel(config: config, weights: weights, policy: policy)
                check("\(p) text \(name)", model([ids]), want, tol)
            }
        }
    }

    /// sd1-tiny stores the text encoder under `text_model.`, sd2-tiny-v at the root (transformers 5); both load.
    func testTextEncoderKeyForms() throws {
        var forms: Set<Bool> = []
        for p in Self.pipelines {
            _ = try reference(p)
            let weights = try WeightLoader(componentDirectory: dir(p, "text_encoder"))
            forms.insert(weights.containsScope("text_model"))
            XCTAssertNoThrow(try CLIPTextModel(config: CLIPTextConfig.load(from: dir(p, "text_encoder")), weights: weights))
        }
        XCTAssertEqual(forms, [true, false], "fixtures should cover both text-encoder key forms")
    }

    func testUNet() throws {
        for p in Self.pipelines {
            let r = try reference(p)
            let config = try UNetConfig.load(from: dir(p, "unet"))
            let weights = try WeightLoader(componentDirectory: dir(p, "unet"))
            for (name, policy, tol) in Self.policies {
                let model = try UNet2DConditionModel(config: config, weights: weights, policy: policy)
                for case_ in ["unet", "unet2"] {
                    let out = model(try ref(r, "\(case_).sample"), timestep: try r.floats("\(case_).timestep")[0],
                                    encoderHiddenStates: try ref(r, "\(case_).encoder_hidden_states"))
                    XCTAssertEqual(out.dtype, .f32)
                    XCTAssertEqual(out.layout, .nchw)
                    check("\(p) \(case_) \(name)", out, try ref(r, "\(case_).out"), tol)
                }
            }
        }
    }

    func testVAE() throws {
        for p in Self.pipelines {
            let r = try reference(p)
            let config = try VAEConfig.load(from: dir(p, "vae"))
            let weights = try WeightLoader(componentDirectory: dir(p, "vae"))
            for (name, policy, tol) in Self.policies {
                let vae = try AutoencoderKL(config: config, weights: weights, policy: policy)
                check("\(p) vae.decode \(name)", vae.decode(try ref(r, "vae.latents")), try ref(r, "vae.decoded"), tol)
                let (mean, logvar) = vae.encode(try ref(r, "vae.image"))
                check("\(p) vae.encode mean \(name)", mean, try ref(r, "vae.encoded_mean"), tol)
                check("\(p) vae.encode logvar \(name)", logvar, try ref(r, "vae.encoded_logvar"), tol)
            }
        }
    }

    /// Fixtures/model-extras (made by make_model_extras.py on the pipelines' weights): clip_skip=1, and a 7x10 latent
    /// (not a multiple of 2), which makes the UNet upsample to the skip's size rather than 2x.
    func testClipSkipAndOddLatent() throws {
        for p in Self.pipelines {
            _ = try reference(p)
            let r = try SafeTensorsFile(path: "\(Self.fixtures)/../model-extras/\(p).safetensors")
            let ids = try r.floats("text.input_ids").map { Int32($0) }
            let tc = try CLIPTextConfig.load(from: dir(p, "text_encoder"))
            let tw = try WeightLoader(componentDirectory: dir(p, "text_encoder"))
            let uc = try UNetConfig.load(from: dir(p, "unet"))
            let uw = try WeightLoader(componentDirectory: dir(p, "unet"))
            for (name, policy, tol) in Self.policies {
                let te = try CLIPTextModel(config: tc, weights: tw, policy: policy)
                check("\(p) text clip_skip=0 \(name)", te([ids]), try ref(r, "text.last_hidden_state"), tol)
                check("\(p) text clip_skip=1 \(name)", te([ids], clipSkip: 1), try ref(r, "text.clip_skip1"), tol)
                let unet = try UNet2DConditionModel(config: uc, weights: uw, policy: policy)
                let out = unet(try ref(r, "unet3.sample"), timestep: try r.floats("unet3.timestep")[0],
                               encoderHiddenStates: try ref(r, "unet3.encoder_hidden_states"))
                check("\(p) unet 7x10 \(name)", out, try ref(r, "unet3.out"), tol)
            }
        }
    }

    /// The `fp16` variant files load (F16 -> policy type) and stay close to the fp32 references.
    func testFP16VariantWeights() throws {
        let p = "sd1-tiny"
        let r = try reference(p)
        let path = dir(p, "unet/diffusion_pytorch_model.fp16.safetensors")
        try XCTSkipUnless(FileManager.default.fileExists(atPath: path), "no fp16 variant")
        let unet = try UNet2DConditionModel(config: UNetConfig.load(from: dir(p, "unet")),
                                            weights: WeightLoader(paths: [path]), policy: ComputePolicy())
        let out = unet(try ref(r, "unet.sample"), timestep: try r.floats("unet.timestep")[0],
                       encoderHiddenStates: try ref(r, "unet.encoder_hidden_states"))
        check("\(p) unet fp16-variant weights, f32 compute", out, try ref(r, "unet.out"), 1e-2)
        let te = try CLIPTextModel(config: CLIPTextConfig.load(from: dir(p, "text_encoder")),
                                   weights: WeightLoader(paths: [dir(p, "text_encoder/model.fp16.safetensors")]))
        check("\(p) text fp16-variant weights, f32 compute", te([try r.floats("text.input_ids").map { Int32($0) }]),
              try ref(r, "text.last_hidden_state"), 1e-2)
    }

    func testWrongShapeIsAClearError() throws {
        _ = try reference("sd1-tiny")
        let weights = try WeightLoader(componentDirectory: dir("sd1-tiny", "unet"))
        let actual = try XCTUnwrap(weights.shape("conv_in.weight"))
        XCTAssertThrowsError(try weights.scoped("conv_in").tensor("weight", shape: [actual[0] + 1] + actual.dropFirst())) { e in
            guard case ModelLoadError.shapeMismatch(let key, let file, _, let got) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(key, "conv_in.weight")
            XCTAssertTrue(file.hasSuffix("unet/diffusion_pytorch_model.safetensors"), file)
            XCTAssertEqual(got, actual)
            let msg = "\(e)"
            XCTAssertTrue(msg.contains("conv_in.weight") && msg.contains("\(actual)") && msg.contains(file), msg)
        }
        // A config that disagrees with the checkpoint fails at load with the offending key.
        var config = try UNetConfig.load(from: dir("sd1-tiny", "unet"))
        config.crossAttentionDim += 1
        XCTAssertThrowsError(try UNet2DConditionModel(config: config, weights: weights)) { e in
            XCTAssertTrue("\(e)".contains("attn2.to_k.weight"), "\(e)")
        }
    }

    func testMissingKeyIsAClearError() throws {
        _ = try reference("sd1-tiny")
        let weights = try WeightLoader(componentDirectory: dir("sd1-tiny", "vae"))
        XCTAssertThrowsError(try weights.scoped("decoder").scoped("nope").tensor("weight", shape: [1])) { e in
            guard case ModelLoadError.missingTensor(let key, let files) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(key, "decoder.nope.weight")
            XCTAssertEqual(files.count, 1)
            XCTAssertTrue("\(e)".contains("decoder.nope.weight") && "\(e)".contains("vae/diffusion_pytorch_model.safetensors"), "\(e)")
        }
        XCTAssertNil(try weights.optionalTensor("decoder.nope.weight", shape: [1]))
        XCTAssertTrue(weights.contains("decoder.conv_in.weight"))
        XCTAssertFalse(weights.contains("conv_in.weight"))
    }

    func testUnsupportedConfigIsAClearError() throws {
        let json = #"{"block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 32, "class_embed_type": "timestep"}"#
        XCTAssertThrowsError(try JSONDecoder().decode(UNetConfig.self, from: Data(json.utf8))) { e in
            XCTAssertTrue("\(e)".contains("class_embed_type"), "\(e)")
        }
        let clip = #"{"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, "hidden_act": "relu"}"#
        XCTAssertThrowsError(try JSONDecoder().decode(CLIPTextConfig.self, from: Data(clip.utf8))) { e in
            XCTAssertTrue("\(e)".contains("hidden_act") && "\(e)".contains("relu"), "\(e)")
        }
        XCTAssertThrowsError(try VAEConfig.load(from: "/nonexistent")) { e in
            XCTAssertTrue("\(e)".contains("/nonexistent/config.json"), "\(e)")
        }
    }
}
