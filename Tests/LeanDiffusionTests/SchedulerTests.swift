import XCTest
@testable import LeanDiffusion
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Reference data written by tools/make_scheduler_fixtures.py (real torch + diffusers, CPU float32).
struct SchedulerFixtureFile: Decodable {
    struct Case: Decodable {
        let name: String
        let kind: String
        let config: SchedulerConfig
        let steps: Int
        let timesteps: [Double]
        let sigmas: [Double]?
        let init_noise_sigma: Double
        let coeffs: [Double]
        let offset: Int
        let count: Int
    }
    struct Table: Decodable { let offset: Int }
    struct RandnCase: Decodable { let seed: UInt64; let sizes: [Int]; let offset: Int }
    let torch: String
    let diffusers: String
    let shape: [Int]
    let latent_offset: Int
    let noise_offset: Int
    let noise_seed: UInt64
    let cases: [Case]
    let tables: [String: Table]
    let randn: [RandnCase]

    static let directory: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("schedulers")

    static func load() throws -> (SchedulerFixtureFile, Data) {
        let json = try Data(contentsOf: directory.appendingPathComponent("cases.json"))
        let blob = try Data(contentsOf: directory.appendingPathComponent("data.bin"))
        let decoder = JSONDecoder()
        decoder.allowsJSON5 = true
        return (try decoder.decode(SchedulerFixtureFile.self, from: json), blob)
    }

    static func floats(_ blob: Data, offset: Int, count: Int) -> [Float] {
        precondition(offset + 4 * count <= blob.count, "fixture blob too short")
        return (0..<count).map { i in
            let o = offset + 4 * i
            let bits = UInt32(blob[o]) | UInt32(blob[o + 1]) << 8 | UInt32(blob[o + 2]) << 16 | UInt32(blob[o + 3]) << 24
            return Float(bitPattern: bits)
        }
    }
}

final class SchedulerTests: XCTestCase {
    /// Runs every fixture case through the Swift scheduler and compares timesteps (exactly), sigmas,
    /// init_noise_sigma and all step outputs (max |diff| / max |ref| per step).
    func testSchedulersMatchDiffusers() throws {
        let (fx, blob) = try SchedulerFixtureFile.load()
        let n = fx.shape.reduce(1, *)
        let latent0 = SchedulerFixtureFile.floats(blob, offset: fx.latent_offset, count: n)
        let fixedNoise = SchedulerFixtureFile.floats(blob, offset: fx.noise_offset, count: n)
        var worstByKind: [String: Double] = [:]
        for c in fx.cases {
            guard let kind = SchedulerKind(rawValue: c.kind) else { XCTFail("unknown kind \(c.kind)"); continue }
            var s = try kind.make(config: c.config, steps: c.steps)
            // Integer schedules must match exactly. Float schedules (Euler + Karras) go through _sigma_to_t on
            // sigmas that torch computes with MKL's sqrt (not correctly rounded, see below): relative 1e-6.
            XCTAssertEqual(s.timestepValues.count, c.timesteps.count, "\(c.name): timestep count")
            for (a, b) in zip(s.timestepValues, c.timesteps) {
                if b == b.rounded() && !(c.config.useKarrasSigmas == true && kind == .euler) {
                    XCTAssertEqual(Double(a), b, "\(c.name): timesteps")
                } else {
                    XCTAssertEqual(Double(a), b, accuracy: max(abs(b) * 1e-6, 1e-5), "\(c.name): timesteps")
                }
            }
            XCTAssertEqual(s.timesteps.count, c.count, "\(c.name): timestep count")
            if let sig = c.sigmas {
                let mine: [Float]? = (s as? EulerDiscreteScheduler)?.sigmas ?? (s as? EulerAncestralScheduler)?.sigmas
                    ?? (s as? DPMSolverMultistepScheduler)?.sigmas ?? (s as? UniPCMultistepScheduler)?.sigmas
                // torch's float32 sqrt on CPU goes through MKL VML (vsSqrt), which is not correctly rounded
                // (about 19% of inputs differ by 1 ulp), so the sigma table can differ by 1-2 ulp.
                if let mine {
                    XCTAssertEqual(mine.count, sig.count, "\(c.name): sigma count")
                    for (a, b) in zip(mine, sig) {
                        let ulps = abs(Int(Int32(bitPattern: a.bitPattern)) - Int(Int32(bitPattern: Float(b).bitPattern)))
                        XCTAssertLessThanOrEqual(ulps, 2, "\(c.name): sigma \(a) vs \(b)")
                    }
                }
            }
            XCTAssertEqual(Double(s.initNoiseSigma), c.init_noise_sigma, "\(c.name): init_noise_sigma")
            var gen = TorchGenerator(seed: fx.noise_seed)
            var x = latent0.map { $0 * s.initNoiseSigma }
            var worst = 0.0
            for i in 0..<s.timesteps.count {
                let inp = s.scaleModelInput(x, stepIndex: i)
                let cf = Float(c.coeffs[i])
                let mo = (0..<n).map { k in Float(0.1) * inp[k] + cf * fixedNoise[k] }
                x = s.step(modelOutput: mo, stepIndex: i, sample: x, generator: &gen)
                let ref = SchedulerFixtureFile.floats(blob, offset: c.offset + 4 * n * i, count: n)
                let scale = Double(ref.map { abs($0) }.max() ?? 1)
                let diff = zip(x, ref).map { Double(abs($0 - $1)) }.max() ?? 0
                worst = max(worst, diff / max(scale, 1e-30))
            }
            XCTAssertLessThan(worst, 1e-5, "\(c.name): max relative error \(worst)")
            worstByKind[c.kind] = max(worstByKind[c.kind] ?? 0, worst)
            print("scheduler-parity \(c.name): \(worst)")
        }
        for (k, v) in worstByKind.sorted(by: { $0.key < $1.key }) { print("scheduler-parity worst \(k): \(v)") }
    }

    func testBetaTablesAndSanityConstants() throws {
        let (fx, blob) = try SchedulerFixtureFile.load()
        for (name, schedule) in [("scaled_linear", "scaled_linear"), ("linear", "linear"), ("cos", "squaredcos_cap_v2")] {
            var cfg = SchedulerConfig.stableDiffusion15
            cfg.betaSchedule = schedule
            let base = try ResolvedBaseConfig(cfg, defaultSpacing: "leading", acceptsZeroSNR: true)
            let betas = try SchedulerMath.betas(base)
            let ac = SchedulerMath.alphasCumprod(betas)
            let off = fx.tables[name]!.offset
            let refB = SchedulerFixtureFile.floats(blob, offset: off, count: 1000)
            let refA = SchedulerFixtureFile.floats(blob, offset: off + 4000, count: 1000)
            XCTAssertEqual(betas.map(\.bitPattern), refB.map(\.bitPattern), "\(name) betas")
            XCTAssertEqual(ac.map(\.bitPattern), refA.map(\.bitPattern), "\(name) alphas_cumprod")
        }
        // Spec section 0 sanity constants (SD1.5).
        let base = try ResolvedBaseConfig(.stableDiffusion15, defaultSpacing: "leading", acceptsZeroSNR: true)
        let betas = try SchedulerMath.betas(base)
        let ac = SchedulerMath.alphasCumprod(betas)
        let sig = SchedulerMath.sigmaTable(ac)
        XCTAssertEqual(betas[0], 0.00084999995, accuracy: 1e-10)
        XCTAssertEqual(betas[999], 0.011999999, accuracy: 1e-9)
        XCTAssertEqual(ac[0], 0.99915, accuracy: 1e-7)
        XCTAssertEqual(ac[981], 0.005775496, accuracy: 1e-8)
        XCTAssertEqual(ac[999], 0.004660095, accuracy: 1e-8)
        XCTAssertEqual(sig[999], 14.614647, accuracy: 1e-5)
        XCTAssertEqual(sig[981], 13.120416, accuracy: 1e-5)
        XCTAssertEqual((sig[981] * sig[981] + 1).squareRoot(), 13.158469, accuracy: 1e-5)
    }

    func testTimestepLayouts() throws {
        var pndm = try PNDMScheduler(config: .stableDiffusion15)
        try pndm.setTimesteps(50)
        XCTAssertEqual(pndm.timesteps.count, 51)
        XCTAssertEqual(Array(pndm.timesteps.prefix(4)), [981, 961, 961, 941])
        XCTAssertEqual(pndm.timesteps.last, 1)
        var ddim = try DDIMScheduler(config: .stableDiffusion15)
        try ddim.setTimesteps(50)
        XCTAssertEqual(ddim.timesteps.first, 981)
        XCTAssertEqual(ddim.timesteps.last, 1)
        // from_config class change: Euler takes its own default spacing "linspace".
        let euler = try SchedulerKind.euler.make(config: .stableDiffusion15, steps: 50)
        XCTAssertEqual(euler.timestepValues.first, 999)
        XCTAssertEqual(euler.timestepValues[1], Float(999.0 - 999.0 / 49.0))
    }

    func testErrors() throws {
        for kind in SchedulerKind.allCases {
            XCTAssertThrowsError(try kind.make(config: .stableDiffusion15, steps: 0)) { err in
                XCTAssertEqual(err as? SchedulerError, .zeroSteps)
            }
        }
        var cfg = SchedulerConfig.stableDiffusion15
        cfg.thresholding = true
        XCTAssertThrowsError(try SchedulerKind.ddim.make(config: cfg, steps: 10))
        cfg = .stableDiffusion15
        cfg.rescaleBetasZeroSnr = true
        XCTAssertThrowsError(try SchedulerKind.euler.make(config: cfg, steps: 10))
        // LCM: no more steps than its distillation schedule has, settings checked.
        XCTAssertThrowsError(try SchedulerKind.lcm.make(config: .stableDiffusion15, steps: 51)) { err in
            XCTAssertEqual(err as? SchedulerError, .moreStepsThanOriginalSchedule(51, originalInferenceSteps: 50))
        }
        XCTAssertNoThrow(try SchedulerKind.lcm.make(config: .stableDiffusion15, steps: 50))
        cfg = .stableDiffusion15
        cfg.originalInferenceSteps = 8
        XCTAssertThrowsError(try SchedulerKind.lcm.make(config: cfg, steps: 9))
        cfg.originalInferenceSteps = 0
        XCTAssertThrowsError(try SchedulerKind.lcm.make(config: cfg, steps: 1))
        cfg.originalInferenceSteps = 2000
        XCTAssertThrowsError(try SchedulerKind.lcm.make(config: cfg, steps: 1))
        cfg = .stableDiffusion15
        cfg.timestepScaling = -1
        XCTAssertThrowsError(try SchedulerKind.lcm.make(config: cfg, steps: 4))
        cfg = .stableDiffusion15
        cfg.thresholding = true
        XCTAssertThrowsError(try SchedulerKind.lcm.make(config: cfg, steps: 4))
    }

    /// LCM's config keys decode, and its boundary scalings at the first timestep are diffusers' (float32).
    func testLCMConfigAndScalings() throws {
        let json = #"{"_class_name":"LCMScheduler","original_inference_steps":25,"timestep_scaling":2.5}"#
        let c = try SchedulerConfig.load(from: Data(json.utf8))
        XCTAssertEqual(SchedulerKind(diffusersClassName: c.className!), .lcm)
        XCTAssertEqual(c.originalInferenceSteps, 25)
        XCTAssertEqual(c.timestepScaling, 2.5)
        XCTAssertThrowsError(try SchedulerConfig.load(from: Data(#"{"original_inference_steps":2.5}"#.utf8)))
        let s = try LCMScheduler(config: SchedulerConfig())
        let (skip, out) = s.boundaryScalings(999)
        // torch: 0.25 / ((999 * 10.0) ** 2 + 0.25) and 9990 / (...) ** 0.5 on float32 tensors.
        XCTAssertEqual(skip, 2.5050075e-09, accuracy: 1e-15)
        XCTAssertEqual(out, 1, accuracy: 1e-7)
    }

    func testConfigDecoding() throws {
        let json = """
        {"_class_name":"PNDMScheduler","_diffusers_version":"0.6.0","beta_end":0.012,"beta_schedule":"scaled_linear",
         "beta_start":0.00085,"num_train_timesteps":1000,"set_alpha_to_one":false,"skip_prk_steps":true,
         "steps_offset":1,"trained_betas":null,"clip_sample":false,"lambda_min_clipped":-Infinity}
        """
        let c = try SchedulerConfig.load(from: Data(json.utf8))
        XCTAssertEqual(c.className, "PNDMScheduler")
        XCTAssertEqual(SchedulerKind(diffusersClassName: c.className!), .pndm)
        XCTAssertEqual(c.stepsOffset, 1)
        XCTAssertNil(c.trainedBetas)
        XCTAssertNil(c.timestepSpacing)
        XCTAssertEqual(c.lambdaMinClipped, -Double.infinity)
        var expected = SchedulerConfig.stableDiffusion15
        expected.lambdaMinClipped = -Double.infinity
        XCTAssertEqual(c, expected)
    }
}
