#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SafeTensors

/// Errors thrown by scheduler construction and `setTimesteps`.
public enum SchedulerError: Error, Equatable, CustomStringConvertible {
    case zeroSteps
    /// More steps than the schedule has room for: at most `max` (num_train_timesteps - 1).
    case tooManySteps(Int, max: Int)
    case unsupported(String)
    case invalidConfig(String)
    /// A field of scheduler_config.json with a value that is unknown or out of range.
    case invalidValue(field: String, value: String, reason: String)
    /// The settings give a timestep outside the trained range (a large steps_offset, say).
    case timestepOutOfRange(timestep: Int, numTrainTimesteps: Int)
    /// LCM picks its steps from the `original_inference_steps` of its distillation schedule: no more than that.
    case moreStepsThanOriginalSchedule(Int, originalInferenceSteps: Int)

    public var description: String {
        switch self {
        case .zeroSteps: return "number of inference steps must be at least 1"
        case .tooManySteps(let n, let max):
            return "\(n) inference steps is too many: at most \(max) (num_train_timesteps - 1); use fewer steps"
        case .unsupported(let s): return "unsupported scheduler setting: \(s)"
        case .invalidConfig(let s): return "invalid scheduler config: \(s)"
        case .invalidValue(let f, let v, let r): return "scheduler config field '\(f)' = \(v): \(r)"
        case .timestepOutOfRange(let t, let n):
            return "the schedule reaches timestep \(t), outside the trained 0...\(n - 1); lower steps_offset or the steps"
        case .moreStepsThanOriginalSchedule(let n, let o):
            return "\(n) inference steps is too many for LCM: at most original_inference_steps = \(o); use fewer steps"
        }
    }
}

/// A diffusers noise scheduler working on flat float32 latents (CPU fp32 semantics of diffusers).
///
/// Usage mirrors a diffusers pipeline: `latents *= initNoiseSigma`, then for each `i` in
/// `0..<timesteps.count`: `unetInput = scaleModelInput(latents, stepIndex: i)`, run the UNet at
/// `timestepValues[i]`, `latents = step(modelOutput:stepIndex:i, sample: latents, generator: &g)`.
/// `step` must be called once per index, in order (multistep schedulers keep history).
public protocol Scheduler {
    /// One entry per UNet call (PNDM with `skip_prk_steps` has `steps + 1`). For Euler schedulers with
    /// non-integer timesteps (spacing "linspace", Karras) this is the value rounded to nearest; feed the
    /// UNet `timestepValues` to match diffusers exactly.
    var timesteps: [Int] { get }
    /// The exact timestep values diffusers feeds to the UNet (float32).
    var timestepValues: [Float] { get }
    var initNoiseSigma: Float { get }
    func scaleModelInput(_ sample: [Float], stepIndex: Int) -> [Float]
    mutating func step(modelOutput: [Float], stepIndex: Int, sample: [Float], generator: inout TorchGenerator) -> [Float]
    mutating func setTimesteps(_ n: Int) throws
    /// diffusers' `add_noise(original, noise, timesteps[stepIndex])` with this scheduler's formula (image-to-image's
    /// starting latents, inpainting's re-noised known region). `stepIndex` indexes `timesteps`; where diffusers
    /// reads it from `begin_index` / `step_index` (Euler, DPM-Solver, UniPC) that is the same index.
    func addNoise(_ original: [Float], noise: [Float], stepIndex: Int) -> [Float]
}

extension SchedulerMath {
    /// DDPMScheduler-style `add_noise` (DDIM, PNDM, LCM): `ᾱ[t] ** 0.5 · x + (1 − ᾱ[t]) ** 0.5 · ε` in float32
    /// (torch's pow(·, 0.5) is its sqrt), each product rounded before the sum as two torch ops do.
    static func ddpmAddNoise(_ x: [Float], _ noise: [Float], alphaCumprod a: Float) -> [Float] {
        let sa = a.squareRoot(), sb = (1 - a).squareRoot()
        return map2(x, noise) { (xv, nv) in
            let p = sa * xv, q = sb * nv
            return p + q
        }
    }

    /// Euler and Euler-ancestral `add_noise`: `x + ε · σ` (float32).
    static func sigmaAddNoise(_ x: [Float], _ noise: [Float], sigma s: Float) -> [Float] {
        map2(x, noise) { (xv, nv) in xv + nv * s }
    }

    /// DPM-Solver / UniPC `add_noise`: `α_t · x + σ_t · ε` with (α_t, σ_t) from `σ` (float32).
    static func multistepAddNoise(_ x: [Float], _ noise: [Float], sigma: Float) -> [Float] {
        let (a, s) = MultistepSchedule.alphaSigma(sigma)
        return map2(x, noise) { (xv, nv) in
            let p = a * xv, q = s * nv
            return p + q
        }
    }
}

public enum SchedulerKind: String, CaseIterable, Sendable {
    case pndm
    case ddim
    case euler
    case eulerAncestral = "euler-a"
    case dpmpp2m = "dpm++2m"
    case unipc
    case lcm

    /// The diffusers class this kind corresponds to.
    public var diffusersClassName: String {
        switch self {
        case .pndm: return "PNDMScheduler"
        case .ddim: return "DDIMScheduler"
        case .euler: return "EulerDiscreteScheduler"
        case .eulerAncestral: return "EulerAncestralDiscreteScheduler"
        case .dpmpp2m: return "DPMSolverMultistepScheduler"
        case .unipc: return "UniPCMultistepScheduler"
        case .lcm: return "LCMScheduler"
        }
    }

    public init?(diffusersClassName name: String) {
        guard let k = SchedulerKind.allCases.first(where: { $0.diffusersClassName == name }) else { return nil }
        self = k
    }

    /// Builds this scheduler from a folder's `scheduler_config.json`, with the semantics of
    /// `Cls.from_config(folder_scheduler.config)`: keys present in the JSON that the class accepts are used,
    /// every other parameter takes the class's own default (diffusers drops `_use_default_values`).
    /// Then calls `setTimesteps(steps)`.
    public func make(config: SchedulerConfig, steps: Int) throws -> any Scheduler {
        var s: any Scheduler
        switch self {
        case .pndm: s = try PNDMScheduler(config: config)
        case .ddim: s = try DDIMScheduler(config: config)
        case .euler: s = try EulerDiscreteScheduler(config: config)
        case .eulerAncestral: s = try EulerAncestralScheduler(config: config)
        case .dpmpp2m: s = try DPMSolverMultistepScheduler(config: config)
        case .unipc: s = try UniPCMultistepScheduler(config: config)
        case .lcm: s = try LCMScheduler(config: config)
        }
        try s.setTimesteps(steps)
        return s
    }
}

/// diffusers `scheduler_config.json`. Every field is optional: `nil` means "absent from the JSON", which
/// makes the concrete scheduler fall back to its own class default (diffusers' from_config semantics).
public struct SchedulerConfig: Decodable, Sendable, Equatable {
    public var className: String?
    public var numTrainTimesteps: Int?
    public var betaStart: Double?
    public var betaEnd: Double?
    public var betaSchedule: String?
    public var trainedBetas: [Double]?
    public var predictionType: String?
    public var timestepSpacing: String?
    public var stepsOffset: Int?
    public var setAlphaToOne: Bool?
    public var skipPrkSteps: Bool?
    public var clipSample: Bool?
    public var clipSampleRange: Double?
    public var thresholding: Bool?
    public var useKarrasSigmas: Bool?
    public var useExponentialSigmas: Bool?
    public var useBetaSigmas: Bool?
    public var useLuLambdas: Bool?
    public var useFlowSigmas: Bool?
    public var solverOrder: Int?
    public var algorithmType: String?
    public var solverType: String?
    public var lowerOrderFinal: Bool?
    public var eulerAtFinal: Bool?
    public var finalSigmasType: String?
    public var interpolationType: String?
    public var rescaleBetasZeroSnr: Bool?
    public var timestepType: String?
    public var predictX0: Bool?
    public var disableCorrector: [Int]?
    public var lambdaMinClipped: Double?
    public var varianceType: String?
    public var sigmaMin: Double?
    public var sigmaMax: Double?
    /// LCM: the distillation schedule's length (`original_inference_steps`, class default 50).
    public var originalInferenceSteps: Int?
    /// LCM: factor on the timestep in the boundary-condition scalings (`timestep_scaling`, class default 10).
    public var timestepScaling: Double?

    enum CodingKeys: String, CodingKey {
        case className = "_class_name"
        case numTrainTimesteps = "num_train_timesteps"
        case betaStart = "beta_start"
        case betaEnd = "beta_end"
        case betaSchedule = "beta_schedule"
        case trainedBetas = "trained_betas"
        case predictionType = "prediction_type"
        case timestepSpacing = "timestep_spacing"
        case stepsOffset = "steps_offset"
        case setAlphaToOne = "set_alpha_to_one"
        case skipPrkSteps = "skip_prk_steps"
        case clipSample = "clip_sample"
        case clipSampleRange = "clip_sample_range"
        case thresholding
        case useKarrasSigmas = "use_karras_sigmas"
        case useExponentialSigmas = "use_exponential_sigmas"
        case useBetaSigmas = "use_beta_sigmas"
        case useLuLambdas = "use_lu_lambdas"
        case useFlowSigmas = "use_flow_sigmas"
        case solverOrder = "solver_order"
        case algorithmType = "algorithm_type"
        case solverType = "solver_type"
        case lowerOrderFinal = "lower_order_final"
        case eulerAtFinal = "euler_at_final"
        case finalSigmasType = "final_sigmas_type"
        case interpolationType = "interpolation_type"
        case rescaleBetasZeroSnr = "rescale_betas_zero_snr"
        case timestepType = "timestep_type"
        case predictX0 = "predict_x0"
        case disableCorrector = "disable_corrector"
        case lambdaMinClipped = "lambda_min_clipped"
        case varianceType = "variance_type"
        case sigmaMin = "sigma_min"
        case sigmaMax = "sigma_max"
        case originalInferenceSteps = "original_inference_steps"
        case timestepScaling = "timestep_scaling"
    }

    public init() {}

    /// The SD1.5 folder config (`runwayml/stable-diffusion-v1-5/scheduler/scheduler_config.json`).
    public static var stableDiffusion15: SchedulerConfig {
        var c = SchedulerConfig()
        c.className = "PNDMScheduler"
        c.betaStart = 0.00085
        c.betaEnd = 0.012
        c.betaSchedule = "scaled_linear"
        c.numTrainTimesteps = 1000
        c.setAlphaToOne = false
        c.skipPrkSteps = true
        c.stepsOffset = 1
        c.clipSample = false
        return c
    }

    /// Decodes a `scheduler_config.json` (accepts the `Infinity`/`NaN` literals Python's json writes) and checks
    /// every field (`validate()`).
    public static func load(from data: Data) throws -> SchedulerConfig {
        let d = JSONDecoder()
        d.allowsJSON5 = true
        try checkIntegers(data, decoder: d)
        let c = try d.decode(SchedulerConfig.self, from: data)
        try c.validate()
        return c
    }

    /// Integer fields checked as numbers first: `JSONDecoder` reports 1e30 for an `Int` as invalid JSON without
    /// naming the field.
    static func checkIntegers(_ data: Data, decoder: JSONDecoder) throws {
        guard case .object(let o)? = try? decoder.decode(ConfigJSON.self, from: data) else { return }
        func integral(_ v: ConfigJSON) -> Bool {
            guard case .number(let x) = v else { return true }  // other types: the typed decode names them
            return x.isFinite && x == x.rounded() && abs(x) <= 9_007_199_254_740_992
        }
        for key in ["num_train_timesteps", "steps_offset", "solver_order", "original_inference_steps"] {
            if let v = o[key], !integral(v) {
                throw SchedulerError.invalidValue(field: key, value: "\(v)", reason: "must be an integer in range")
            }
        }
        if case .array(let a)? = o["disable_corrector"], let bad = a.first(where: { !integral($0) }) {
            throw SchedulerError.invalidValue(field: "disable_corrector", value: "\(bad)", reason: "must be integers")
        }
    }

    /// Reads and checks `path`; every failure is a `PipelineError` naming the file (and the field, when one is at
    /// fault).
    public static func load(path: String) throws -> SchedulerConfig {
        let bytes: [UInt8]
        do { bytes = try RegularFile.read(path) } catch {
            throw error.reason == .notFound ? PipelineError.missingFile(path) : PipelineError.unreadableFile(path: path, reason: error.message)
        }
        do {
            return try load(from: Data(bytes))
        } catch let e as SchedulerError {
            if case .invalidValue(let field, let value, let reason) = e {
                throw PipelineError.invalidConfig(file: path, field: field, reason: "\(value): \(reason)")
            }
            throw PipelineError.invalidConfig(file: path, field: "-", reason: e.description)
        } catch let e as DecodingError {
            throw PipelineError.invalidConfig(file: path, field: e.fieldPath, reason: e.reason)
        } catch {
            throw PipelineError.invalidConfig(file: path, field: "(root)", reason: "not valid JSON (\(error))")
        }
    }
}

extension DecodingError {
    /// The JSON key the error is about ("(root)" for the top level).
    var fieldPath: String {
        let path: [CodingKey]
        switch self {
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): path = c.codingPath
        case .keyNotFound(let k, let c): path = c.codingPath + [k]
        @unknown default: path = []
        }
        let names = path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
        return names.isEmpty ? "(root)" : names.joined(separator: ".")
    }

    /// A short reason without Swift's type dump.
    var reason: String {
        switch self {
        case .typeMismatch(let t, _): return "expected a value of type \(t)"
        case .valueNotFound(let t, _): return "expected a value of type \(t), found null"
        case .keyNotFound: return "required field is missing"
        case .dataCorrupted(let c): return c.debugDescription
        @unknown default: return "\(self)"
        }
    }
}

/// Parameters common to all six classes, resolved against one class's defaults.
struct ResolvedBaseConfig {
    var numTrainTimesteps: Int
    var betaStart: Double
    var betaEnd: Double
    var betaSchedule: BetaSchedule
    var trainedBetas: [Double]?
    var predictionType: PredictionType
    var timestepSpacing: TimestepSpacing
    var stepsOffset: Int
    /// Every string setting of the config, parsed.
    var settings: SchedulerConfig.Settings

    init(_ c: SchedulerConfig, defaultSpacing: TimestepSpacing, acceptsZeroSNR: Bool) throws {
        try c.validate()
        settings = try c.settings()
        numTrainTimesteps = c.numTrainTimesteps ?? 1000
        betaStart = c.betaStart ?? 0.0001
        betaEnd = c.betaEnd ?? 0.02
        betaSchedule = settings.betaSchedule ?? .linear
        trainedBetas = c.trainedBetas
        predictionType = settings.predictionType ?? .epsilon
        timestepSpacing = settings.timestepSpacing ?? defaultSpacing
        stepsOffset = c.stepsOffset ?? 0
        if acceptsZeroSNR, c.rescaleBetasZeroSnr == true {
            throw SchedulerError.unsupported("rescale_betas_zero_snr=true")
        }
        guard numTrainTimesteps > 1 else { throw SchedulerError.invalidConfig("num_train_timesteps") }
    }

    /// The same with the default spacing by name (tests).
    init(_ c: SchedulerConfig, defaultSpacing: String, acceptsZeroSNR: Bool) throws {
        guard let spacing = TimestepSpacing(rawValue: defaultSpacing) else {
            throw SchedulerError.invalidValue(field: "timestep_spacing", value: defaultSpacing, reason: "unknown value")
        }
        try self.init(c, defaultSpacing: spacing, acceptsZeroSNR: acceptsZeroSNR)
    }

    /// Checks `n` inference steps against the table: 1...num_train_timesteps - 1.
    func checkSteps(_ n: Int) throws {
        guard n > 0 else { throw SchedulerError.zeroSteps }
        guard n < numTrainTimesteps else { throw SchedulerError.tooManySteps(n, max: numTrainTimesteps - 1) }
    }

    /// Every timestep must index the alphas table.
    func checkTimesteps(_ ts: [Int]) throws {
        if let bad = ts.first(where: { $0 < 0 || $0 >= numTrainTimesteps }) {
            throw SchedulerError.timestepOutOfRange(timestep: bad, numTrainTimesteps: numTrainTimesteps)
        }
    }
}
