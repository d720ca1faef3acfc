/// The string-valued settings of a `scheduler_config.json` as enums, each listing every value diffusers knows.
/// `SchedulerConfig` keeps the strings as written (diffusers' `from_config` passes keys on by name); they are
/// parsed here, once per scheduler construction and once when a pipeline loads its config, so an unknown value is
/// an error naming the field instead of a string compared deep inside a scheduler.
public enum PredictionType: String, CaseIterable, Sendable {
    case epsilon
    case vPrediction = "v_prediction"
    case sample
}

public enum TimestepSpacing: String, CaseIterable, Sendable {
    case leading, trailing, linspace
}

public enum BetaSchedule: String, CaseIterable, Sendable {
    case linear
    case scaledLinear = "scaled_linear"
    case squaredcosCapV2 = "squaredcos_cap_v2"
}

/// DPM-Solver's `algorithm_type` (only `dpmsolver++` is implemented).
public enum AlgorithmType: String, CaseIterable, Sendable {
    case dpmsolver
    case dpmsolverPlusPlus = "dpmsolver++"
    case sdeDpmsolver = "sde-dpmsolver"
    case sdeDpmsolverPlusPlus = "sde-dpmsolver++"
}

/// `solver_type`: midpoint / heun for DPM-Solver, bh1 / bh2 for UniPC.
public enum SolverType: String, CaseIterable, Sendable {
    case midpoint, heun, bh1, bh2
}

public enum FinalSigmasType: String, CaseIterable, Sendable {
    case zero
    case sigmaMin = "sigma_min"
}

public enum InterpolationType: String, CaseIterable, Sendable {
    case linear
    case logLinear = "log_linear"
}

public enum TimestepType: String, CaseIterable, Sendable {
    case discrete, continuous
}

public enum VarianceType: String, CaseIterable, Sendable {
    case fixedSmall = "fixed_small"
    case fixedSmallLog = "fixed_small_log"
    case fixedLarge = "fixed_large"
    case fixedLargeLog = "fixed_large_log"
    case learned
    case learnedRange = "learned_range"
}

/// Limits on a scheduler config's numbers.
public enum SchedulerLimits {
    /// `num_train_timesteps` above this is no real model's (SD uses 1000) and would allocate huge tables.
    public static let maxTrainTimesteps = 100_000
}

extension SchedulerConfig {
    /// The typed string settings; nil where the JSON has none.
    struct Settings {
        var betaSchedule: BetaSchedule?
        var predictionType: PredictionType?
        var timestepSpacing: TimestepSpacing?
        var algorithmType: AlgorithmType?
        var solverType: SolverType?
        var finalSigmasType: FinalSigmasType?
        var interpolationType: InterpolationType?
        var timestepType: TimestepType?
        var varianceType: VarianceType?
    }

    /// Parses every string setting; an unknown value throws `SchedulerError.invalidValue` naming the field.
    func settings() throws -> Settings {
        func parse<E: RawRepresentable & CaseIterable>(_ v: String?, _ field: String, _: E.Type) throws -> E?
        where E.RawValue == String {
            guard let v else { return nil }
            guard let e = E(rawValue: v) else {
                throw SchedulerError.invalidValue(field: field, value: "\"\(v)\"",
                                                  reason: "unknown value (known: \(E.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return e
        }
        return Settings(betaSchedule: try parse(betaSchedule, "beta_schedule", BetaSchedule.self),
                        predictionType: try parse(predictionType, "prediction_type", PredictionType.self),
                        timestepSpacing: try parse(timestepSpacing, "timestep_spacing", TimestepSpacing.self),
                        algorithmType: try parse(algorithmType, "algorithm_type", AlgorithmType.self),
                        solverType: try parse(solverType, "solver_type", SolverType.self),
                        finalSigmasType: try parse(finalSigmasType, "final_sigmas_type", FinalSigmasType.self),
                        interpolationType: try parse(interpolationType, "interpolation_type", InterpolationType.self),
                        timestepType: try parse(timestepType, "timestep_type", TimestepType.self),
                        varianceType: try parse(varianceType, "variance_type", VarianceType.self))
    }

    /// Every field checked: string settings known, numbers finite and in range. Called when a config is loaded and
    /// again by each scheduler (a library caller may build a `SchedulerConfig` by hand).
    public func validate() throws {
        _ = try settings()
        func bad(_ field: String, _ value: CustomStringConvertible, _ reason: String) -> SchedulerError {
            .invalidValue(field: field, value: value.description, reason: reason)
        }
        if let t = numTrainTimesteps, !(2...SchedulerLimits.maxTrainTimesteps).contains(t) {
            throw bad("num_train_timesteps", t, "must be in 2...\(SchedulerLimits.maxTrainTimesteps) (SD uses 1000)")
        }
        for (field, v) in [("beta_start", betaStart), ("beta_end", betaEnd)] {
            if let v, !(v > 0 && v < 1) { throw bad(field, v, "must lie strictly between 0 and 1") }
        }
        if let tb = trainedBetas {
            guard tb.count <= SchedulerLimits.maxTrainTimesteps else {
                throw bad("trained_betas", "\(tb.count) entries", "more than \(SchedulerLimits.maxTrainTimesteps)")
            }
            if let i = tb.firstIndex(where: { !($0 > 0 && $0 < 1) }) {
                throw bad("trained_betas", "entry \(i) = \(tb[i])", "every beta must lie strictly between 0 and 1")
            }
        }
        if let o = stepsOffset, !(0...1000).contains(o) { throw bad("steps_offset", o, "must be in 0...1000 (SD uses 1)") }
        if let r = clipSampleRange, !(r.isFinite && r > 0) { throw bad("clip_sample_range", r, "must be a positive number") }
        if let o = solverOrder, !(1...3).contains(o) { throw bad("solver_order", o, "must be 1, 2 or 3") }
        if let l = lambdaMinClipped, l.isNaN { throw bad("lambda_min_clipped", l, "must be a number (-Infinity for none)") }
        for (field, v) in [("sigma_min", sigmaMin), ("sigma_max", sigmaMax)] {
            if let v, !(v.isFinite && v > 0) { throw bad(field, v, "must be a positive finite number") }
        }
        if let a = sigmaMin, let b = sigmaMax, a > b { throw bad("sigma_min", a, "is larger than sigma_max \(b)") }
        if let o = originalInferenceSteps, !(1...SchedulerLimits.maxTrainTimesteps).contains(o) {
            throw bad("original_inference_steps", o, "must be in 1...\(SchedulerLimits.maxTrainTimesteps) (LCM uses 50)")
        }
        if let o = originalInferenceSteps, let t = numTrainTimesteps, o > t {
            throw bad("original_inference_steps", o, "is larger than num_train_timesteps \(t)")
        }
        if let s = timestepScaling, !(s.isFinite && s > 0) { throw bad("timestep_scaling", s, "must be a positive finite number (LCM uses 10)") }
        if let d = disableCorrector, d.count > SchedulerLimits.maxTrainTimesteps {
            throw bad("disable_corrector", "\(d.count) entries", "too many")
        }
    }
}
