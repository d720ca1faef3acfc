/// diffusers `LCMScheduler` (Latent Consistency Models), CPU float32 semantics of diffusers 0.42.1.
///
/// Timesteps are taken from the distillation schedule of `original_inference_steps` points
/// (`k = num_train_timesteps // original_inference_steps`, points `k·i − 1`), at the indices
/// `floor(linspace(0, original, steps, endpoint=False))` of that schedule reversed; `timestep_spacing` and
/// `steps_offset` are accepted but unused, as in diffusers. Each step predicts x0 (epsilon, v or sample), applies the
/// consistency boundary condition `denoised = c_out·x0 + c_skip·sample` with
/// `c_skip = σ²/((t·s)² + σ²)`, `c_out = t·s/√((t·s)² + σ²)` (σ = 0.5, s = `timestep_scaling`), and, except after the
/// last step, re-noises to the next timestep with `randn(sample.count)` from the generator (diffusers'
/// `randn_tensor(shape, generator=cpu_generator)`, so seeds give diffusers' images).
public struct LCMScheduler: Scheduler {
    let base: ResolvedBaseConfig
    public let originalInferenceSteps: Int
    public let timestepScaling: Float
    public let clipSample: Bool
    public let clipSampleRange: Float
    public let alphasCumprod: [Float]
    public let finalAlphaCumprod: Float
    public private(set) var timesteps: [Int] = []
    public var timestepValues: [Float] { timesteps.map { Float($0) } }
    public var initNoiseSigma: Float { 1 }

    /// `LCMScheduler.from_config(config)`: absent keys take LCM's own defaults (scaled_linear 0.00085…0.012,
    /// `original_inference_steps` 50, `timestep_scaling` 10, `set_alpha_to_one` true, `clip_sample` false).
    public init(config: SchedulerConfig) throws {
        var c = config
        c.betaStart = c.betaStart ?? 0.00085
        c.betaEnd = c.betaEnd ?? 0.012
        c.betaSchedule = c.betaSchedule ?? BetaSchedule.scaledLinear.rawValue
        base = try ResolvedBaseConfig(c, defaultSpacing: .leading, acceptsZeroSNR: true)
        if config.thresholding == true { throw SchedulerError.unsupported("thresholding=true") }
        originalInferenceSteps = config.originalInferenceSteps ?? 50
        guard originalInferenceSteps >= 1, originalInferenceSteps <= base.numTrainTimesteps else {
            throw SchedulerError.invalidValue(field: "original_inference_steps", value: "\(originalInferenceSteps)",
                                              reason: "must be in 1...num_train_timesteps (\(base.numTrainTimesteps))")
        }
        timestepScaling = Float(config.timestepScaling ?? 10)
        clipSample = config.clipSample ?? false
        clipSampleRange = Float(config.clipSampleRange ?? 1.0)
        alphasCumprod = SchedulerMath.alphasCumprod(try SchedulerMath.betas(base))
        finalAlphaCumprod = (config.setAlphaToOne ?? true) ? 1 : alphasCumprod[0]
    }

    public mutating func setTimesteps(_ n: Int) throws {
        try base.checkSteps(n)
        let original = originalInferenceSteps
        guard n <= original else {
            throw SchedulerError.moreStepsThanOriginalSchedule(n, originalInferenceSteps: original)
        }
        let k = base.numTrainTimesteps / original
        let origin = (1...original).map { $0 * k - 1 }.reversed() as [Int]
        // np.floor(np.linspace(0, original, num=n, endpoint=False)): i * (original / n), float64.
        let step = Double(original) / Double(n)
        let ts = (0..<n).map { origin[Int((Double($0) * step).rounded(.down))] }
        try base.checkTimesteps(ts)
        timesteps = ts
    }

    public func scaleModelInput(_ sample: [Float], stepIndex: Int) -> [Float] { sample }

    public func addNoise(_ original: [Float], noise: [Float], stepIndex: Int) -> [Float] {
        SchedulerMath.ddpmAddNoise(original, noise, alphaCumprod: alphasCumprod[timesteps[stepIndex]])
    }

    /// `get_scalings_for_boundary_condition_discrete` with a tensor timestep (as the pipeline passes it): float32,
    /// `0.25 / x` as torch's `reciprocal(x) * 0.25`, `** 2` as a product, `** 0.5` as a square root.
    func boundaryScalings(_ t: Int) -> (cSkip: Float, cOut: Float) {
        let scaled = Float(t) * timestepScaling
        let denominator = scaled * scaled + 0.25
        return ((1 / denominator) * 0.25, scaled / denominator.squareRoot())
    }

    public mutating func step(modelOutput e: [Float], stepIndex i: Int, sample x: [Float],
                              generator: inout TorchGenerator) -> [Float] {
        let t = timesteps[i]
        let prevT = i + 1 < timesteps.count ? timesteps[i + 1] : t
        let aT = alphasCumprod[t]
        let aPrev = prevT >= 0 ? alphasCumprod[prevT] : finalAlphaCumprod
        let bT: Float = 1 - aT, bPrev: Float = 1 - aPrev
        let (cSkip, cOut) = boundaryScalings(t)
        let sqA = aT.squareRoot(), sqB = bT.squareRoot()
        var x0: [Float]
        switch base.predictionType {
        case .epsilon: x0 = SchedulerMath.map2(x, e) { (xv, ev) in (xv - sqB * ev) / sqA }
        case .sample: x0 = e
        case .vPrediction: x0 = SchedulerMath.map2(x, e) { (xv, ev) in sqA * xv - sqB * ev }
        }
        if clipSample {
            let r = clipSampleRange
            x0 = x0.map { Swift.min(Swift.max($0, -r), r) }
        }
        let denoised = SchedulerMath.map2(x0, x) { (x0v, xv) in cOut * x0v + cSkip * xv }
        // No noise after the last step (nor for one-step sampling).
        guard i != timesteps.count - 1 else { return denoised }
        let noise = generator.randn(count: e.count)
        let sqAPrev = aPrev.squareRoot(), sqBPrev = bPrev.squareRoot()
        return SchedulerMath.map2(denoised, noise) { (dv, nv) in sqAPrev * dv + sqBPrev * nv }
    }
}
