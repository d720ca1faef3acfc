#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import XCTest
import LeanCore
import LeanDiffusion
import SafeTensors

/// VAE tiling and slicing (`AutoencoderKL.decode/encode(_:options:)`) against diffusers' `tiled_decode`,
/// `_tiled_encode` and slicing on the sd1-tiny VAE (Fixtures/vae-tiling, tools/make_vae_tiling_fixtures.py),
/// with tiles of 32 and 64 px so that tiling triggers on tiny inputs.
final class VAETilingTests: XCTestCase {
    static let fixtures: String = {
        var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast()
        return parts.joined(separator: "/") + "/Fixtures"
    }()
    static let vaeDir = fixtures + "/pipelines/sd1-tiny/vae"

    static let policies: [(name: String, policy: ComputePolicy, tolerance: Float)] = [
        ("f32/nchw", ComputePolicy(dtype: .f32, layout: .nchw, attention: .standard), 1e-4),
        ("f32/nhwc", ComputePolicy(dtype: .f32, layout: .nhwc, attention: .flash), 1e-4),
        ("bf16/nhwc", ComputePolicy(dtype: .bf16, layout: .nhwc, attention: .flash), 3e-2),
    ].filter { CPUCapabilities.supports($0.policy.dtype) }  // bf16 needs AVX-512 (oneDNN)

    func reference() throws -> SafeTensorsFile {
        let path = Self.fixtures + "/vae-tiling/sd1-tiny.safetensors"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: path), "fixture \(path) not generated")
        return try SafeTensorsFile(path: path)
    }

    func ref(_ f: SafeTensorsFile, _ name: String) throws -> Tensor {
        guard let info = f.info(name) else { throw XCTSkip("reference \(name) missing") }
        return Tensor(try f.floats(name), shape: info.shape)
    }

    func vae(_ policy: ComputePolicy) throws -> AutoencoderKL {
        try AutoencoderKL(directory: Self.vaeDir, policy: policy)
    }

    /// max |a − b| / max |b|.
    func relErr(_ a: Tensor, _ b: Tensor) -> Float {
        XCTAssertEqual(a.shape, b.shape)
        guard a.shape == b.shape else { return .infinity }
        let x = a.toFloats(), y = b.toFloats()
        if x.contains(where: { !$0.isFinite }) { return .infinity }
        var d: Float = 0, m: Float = 0
        for i in 0..<x.count { d = max(d, abs(x[i] - y[i])); m = max(m, abs(y[i])) }
        return d / max(m, 1e-12)
    }

    func check(_ label: String, _ got: Tensor, _ want: Tensor, _ tol: Float) {
        let e = relErr(got, want)
        print("VAE-TILING \(label): \(e) (tol \(tol))")
        XCTAssertLessThanOrEqual(e, tol, label)
    }

    func tiling(_ size: Int, overlap: Float = 0.25, slicing: Bool = false) -> VAEOptions {
        VAEOptions(slicing: slicing, tiling: true, tileSampleSize: size, tileOverlap: overlap)
    }

    /// Tile 32 px (latent 4, stride 3, blend 8 px), 64 px (latent 8, stride 6, blend 16 px) and 32 px at overlap 0.5;
    /// the low-precision policy runs the first only (it is slow here and checks the same code).
    func cases(_ policy: ComputePolicy) -> [(String, VAEOptions)] {
        let all = [("t32", tiling(32)), ("t64", tiling(64)), ("t32o50", tiling(32, overlap: 0.5))]
        return policy.dtype == .f32 ? all : Array(all.prefix(1))
    }

    func testTiledDecodeMatchesDiffusers() throws {
        let r = try reference()
        let z1 = try ref(r, "latent_12x10"), z2 = try ref(r, "latent_b2_8x8")
        for (name, policy, tol) in Self.policies {
            let vae = try vae(policy)
            for (key, opts) in cases(policy) {
                check("\(key) decode 12x10 \(name)", vae.decode(z1, options: opts), try ref(r, "\(key).decode_12x10"), tol)
                if key != "t32o50" {
                    check("\(key) decode 2x8x8 \(name)", vae.decode(z2, options: opts), try ref(r, "\(key).decode_b2_8x8"), tol)
                }
            }
            check("t32 sliced+tiled decode 2x8x8 \(name)", vae.decode(z2, options: tiling(32, slicing: true)),
                  try ref(r, "t32.decode_b2_8x8_sliced"), tol)
        }
    }

    func testTiledEncodeMatchesDiffusers() throws {
        let r = try reference()
        let image = try ref(r, "image_96x80")
        for (name, policy, tol) in Self.policies {
            let vae = try vae(policy)
            for (key, opts) in cases(policy) {
                let (mean, logvar) = vae.encode(image, options: opts)
                check("\(key) encode mean 96x80 \(name)", mean, try ref(r, "\(key).encode_96x80.mean"), tol)
                check("\(key) encode logvar 96x80 \(name)", logvar, try ref(r, "\(key).encode_96x80.logvar"), tol)
            }
        }
    }

    /// With no tile size given, the tile is the VAE config's `sample_size`, as diffusers' `enable_tiling()` with no
    /// sizes set by hand: sd1-tiny's 64 (latent tile 8), and the same weights with sample_size 44 (latent tile
    /// int(44 / 8) = 5; diffusers' crops then give a 123x106 image, which we reproduce).
    func testDefaultTileFromVAEConfig() throws {
        let r = try reference()
        let z = try ref(r, "latent_12x10"), image = try ref(r, "image_96x80")
        let policy = ComputePolicy(dtype: .f32, layout: .nhwc, attention: .flash)
        var config44 = try VAEConfig.load(from: Self.vaeDir)
        XCTAssertEqual(config44.sampleSize, 64)
        config44.sampleSize = 44
        let vae44 = try AutoencoderKL(config: config44, weights: try WeightLoader(componentDirectory: Self.vaeDir),
                                      policy: policy)
        let defaults = VAEOptions(tiling: true)
        XCTAssertNil(defaults.tileSampleSize)
        for (key, vae) in [("default", try vae(policy)), ("s44", vae44)] {
            let expectedTile = key == "default" ? (64, 8) : (44, 5)
            XCTAssertEqual(defaults.sampleTile(for: vae.config), expectedTile.0)
            XCTAssertEqual(defaults.latentTile(for: vae.config), expectedTile.1)
            check("\(key) tile from config: decode 12x10", vae.decode(z, options: defaults), try ref(r, "\(key).decode_12x10"), 1e-4)
            let (mean, logvar) = vae.encode(image, options: defaults)
            check("\(key) tile from config: encode mean 96x80", mean, try ref(r, "\(key).encode_96x80.mean"), 1e-4)
            check("\(key) tile from config: encode logvar 96x80", logvar, try ref(r, "\(key).encode_96x80.logvar"), 1e-4)
        }
        // The pipeline takes the default too (sd1-tiny's VAE: 64 px tiles, so a 96x80 decode is tiled).
        let pipe = try StableDiffusionPipeline(directory: Self.fixtures + "/pipelines/sd1-tiny", policy: policy)
        pipe.vaeOptions = VAEOptions(tiling: true)
        let scaled = z.toFloats().map { $0 * pipe.vaeConfig.scalingFactor }
        let tiled = try pipe.decode(scaled, shape: z.shape)
        pipe.vaeOptions = VAEOptions(tiling: true, tileSampleSize: 64)
        XCTAssertEqual(tiled, try pipe.decode(scaled, shape: z.shape))
    }

    /// Tiling makes a difference on these inputs (so the parity above is not the untiled path by accident).
    func testTiledDiffersFromUntiled() throws {
        let r = try reference()
        let vae = try vae(ComputePolicy(dtype: .f32, layout: .nchw))
        let e = relErr(vae.decode(try ref(r, "latent_12x10")), try ref(r, "t32.decode_12x10"))
        print("VAE-TILING untiled vs diffusers tiled 12x10: \(e)")
        XCTAssertGreaterThan(e, 1e-2)
    }

    func testSlicingEqualsUnsliced() throws {
        let r = try reference()
        let z2 = try ref(r, "latent_b2_8x8")
        let image = Tensor((0..<(2 * 3 * 40 * 24)).map { Float(($0 * 7919) % 255) / 127.5 - 1 }, shape: [2, 3, 40, 24])
        for (name, policy, _) in Self.policies {
            let vae = try vae(policy)
            let sliced = vae.decode(z2, options: VAEOptions(slicing: true))
            XCTAssertEqual(sliced.shape, [2, 3, 64, 64])
            let e = relErr(sliced, vae.decode(z2))
            print("VAE-TILING sliced vs unsliced decode \(name): \(e)")
            // Batch 1 and batch 2 may get other oneDNN kernels: 1.6e-6 measured on an AVX2-only CPU.
            XCTAssertLessThanOrEqual(e, 1e-5, "sliced decode \(name)")
            let (m1, l1) = vae.encode(image, options: VAEOptions(slicing: true))
            let (m0, l0) = vae.encode(image)
            // oneDNN may pick another convolution kernel for batch 1 than for batch 2 (f32/nchw encode: ~2.5e-6).
            let (em, el) = (relErr(m1, m0), relErr(l1, l0))
            print("VAE-TILING sliced vs unsliced encode \(name): mean \(em), logvar \(el)")
            XCTAssertLessThanOrEqual(em, 1e-5, "sliced encode mean \(name)")
            XCTAssertLessThanOrEqual(el, 1e-5, "sliced encode logvar \(name)")
            // Tiling within slices equals tiling the batch (tiles are per image either way).
            XCTAssertLessThanOrEqual(relErr(vae.decode(z2, options: tiling(32, slicing: true)),
                                            vae.decode(z2, options: tiling(32))), 1e-5, "sliced+tiled \(name)")
        }
    }

    /// At or below the tile (strict `>` in diffusers), tiling is off: bit-identical to the plain path.
    func testTilingOffAtOrBelowTileSize() throws {
        let r = try reference()
        let z1 = try ref(r, "latent_12x10")
        for (name, policy, _) in Self.policies {
            let vae = try vae(policy)
            XCTAssertEqual(vae.decode(z1, options: tiling(512)).toFloats(), vae.decode(z1).toFloats(), "decode 512 \(name)")
            XCTAssertEqual(vae.decode(z1, options: tiling(96)).toFloats(), vae.decode(z1).toFloats(), "decode 96 \(name)")
            let z44 = z1.toFloats().prefix(4 * 4 * 4)
            let z = Tensor(Array(z44), shape: [1, 4, 4, 4])
            XCTAssertEqual(vae.decode(z, options: tiling(32)).toFloats(), vae.decode(z).toFloats(), "decode 4x4 at 32 \(name)")
            let image = Tensor((0..<(3 * 32 * 32)).map { Float($0 % 97) / 48.5 - 1 }, shape: [1, 3, 32, 32])
            let (m1, l1) = vae.encode(image, options: tiling(32))
            let (m0, l0) = vae.encode(image)
            XCTAssertEqual(m1.toFloats(), m0.toFloats(), "encode 32x32 at 32 \(name)")
            XCTAssertEqual(l1.toFloats(), l0.toFloats(), "encode 32x32 at 32 \(name)")
        }
        // A tiling-off option set is never validated (diffusers ignores the sizes when use_tiling is False).
        let vae = try vae(ComputePolicy())
        var o = VAEOptions()
        o.tileSampleSize = 3
        XCTAssertEqual(vae.decode(z1, options: o).toFloats(), vae.decode(z1).toFloats())
    }

    /// The tracked peak of a tiled decode of a 48x48 latent (384 px) with 32 px tiles is a fraction of the untiled one.
    func testTiledDecodeMemory() throws {
        let vae = try vae(ComputePolicy(dtype: .f32, layout: .nhwc, attention: .flash))
        let z = Tensor((0..<(4 * 48 * 48)).map { sin(Float($0) * 0.37) }, shape: [1, 4, 48, 48])
        let tracker = RuntimeContext.current.tracker
        func peak(_ body: () -> Tensor) -> (Int, Tensor) {
            tracker.resetPeak(.cpu)
            let base = tracker.current(.cpu)
            let out = body()
            return (tracker.peak(.cpu) - base, out)
        }
        let opts = tiling(32)
        // Tiled first: any one-off allocation (weight packing on first use) counts against tiling, not for it.
        let clock = ContinuousClock()
        var t0 = clock.now
        let (tiledPeak, tiled) = peak { vae.decode(z, options: opts) }
        let tiledTime = clock.now - t0
        t0 = clock.now
        let (untiledPeak, untiled) = peak { vae.decode(z) }
        print("VAE-TILING time tiled \(tiledTime), untiled \(clock.now - t0)")
        XCTAssertEqual(tiled.shape, [1, 3, 384, 384])
        XCTAssertEqual(untiled.shape, [1, 3, 384, 384])
        let ratio = Double(tiledPeak) / Double(untiledPeak)
        print("VAE-TILING memory 1x4x48x48 tile 32 px: tiled peak \(tiledPeak) B, untiled peak \(untiledPeak) B, ratio \(ratio)")
        XCTAssertLessThan(ratio, 0.25, "tiled decode should peak well below the untiled one")
    }

    /// The pipeline's decode honours `vaeOptions`: tiled 8-bit images from the diffusers-tiled pixels.
    func testPipelineUsesVAEOptions() throws {
        let r = try reference()
        let pipe = try StableDiffusionPipeline(directory: Self.fixtures + "/pipelines/sd1-tiny",
                                               policy: ComputePolicy(dtype: .f32, layout: .nhwc))
        let z = try ref(r, "latent_12x10")
        let scaled = z.toFloats().map { $0 * pipe.vaeConfig.scalingFactor }
        let plain = try pipe.decode(scaled, shape: z.shape)
        pipe.vaeOptions = VAEOptions(tiling: true, tileSampleSize: 32)
        let tiled = try pipe.decode(scaled, shape: z.shape)
        XCTAssertEqual(tiled.count, 1)
        XCTAssertEqual([tiled[0].width, tiled[0].height], [80, 96])
        XCTAssertNotEqual(tiled, plain)
        // Against diffusers' tiled pixels through the same 8-bit conversion: at most one level off (rounding).
        let want = try ref(r, "t32.decode_12x10")
        let expected = want.toFloats()
        let plane = 96 * 80
        var worst = 0
        for p in 0..<plane {
            for c in 0..<3 {
                let v = Int((min(max(expected[c * plane + p] / 2 + 0.5, 0), 1) * 255).rounded())
                worst = max(worst, abs(Int(tiled[0].pixels[p * 3 + c]) - v))
            }
        }
        XCTAssertLessThanOrEqual(worst, 1, "8-bit pixels vs diffusers tiled decode")
    }
}
