/// diffusers `DDIMScheduler` (eta = 0, deterministic), CPU float32 semantics.
public struct DDIMScheduler: Scheduler {
    let base: ResolvedBaseConfig
    public let clipSample: Bool
    public let clipSampleRange: Float
    public let setAlphaToOne: Bool
    public let alphasCumprod: [Float]
    public let finalAlphaCumprod: Float
    public private(set) var timesteps: [Int] = []
    public var timestepValues: [Float] { timesteps.map { Float($0) } }
    public var initNoiseSigma: Float { 1 }
    public private(set) var numInferenceSteps = 0

    public init(config: SchedulerConfig) throws {
        base = try ResolvedBaseConfig(config, defaultSpacing: .leading, acceptsZeroSNR: true)
        if config.thresholding == true { throw SchedulerError.unsupported("thresholding=true") }
        clipSample = config.clipSample ?? true
        clipSampleRange = Float(config.clipSampleRange ?? 1.0)
        setAlphaToOne = config.setAlphaToOne ?? true
        alphasCumprod = SchedulerMath.alphasCumprod(try SchedulerMath.betas(base))
        finalAlphaCumprod = setAlphaToOne ? 1 : alphasCumprod[0]
    }

    public mutating func setTimesteps(_ n: Int) throws {
        try base.checkSteps(n)
        numInferenceSteps = n
        let ts = SchedulerMath.ddimTimesteps(base, n)
        try base.checkTimesteps(ts)
        timesteps = ts
    }

    public func scaleModelInput(_ sample: [Float], stepIndex: Int) -> [Float] { sample }

    public func addNoise(_ original: [Float], noise: [Float], stepIndex: Int) -> [Float] {
        SchedulerMath.ddpmAddNoise(original, noise, alphaCumprod: alphasCumprod[timesteps[stepIndex]])
    }

    public mutating func step(modelOutput e: [Float], stepIndex: Int, sample x: [Float],
                              generator: inout TorchGenerator) -> [Float] {
        let t = timesteps[stepIndex]
        let prevT = t - base.numTrainTimesteps / numInferenceSteps
        let aT = alphasCumprod[t]
        let aPrev = prevT >= 0 ? alphasCumprod[prevT] : finalAlphaCumprod
        let bT: Float = 1 - aT
        let sqA = aT.squareRoot(), sqB = bT.squareRoot()
        var x0: [Float], eps: [Float]
        switch base.predictionType {
        case .epsilon:
            x0 = SchedulerMath.map2(x, e) { (xv, ev) in (xv - sqB * ev) / sqA }
            eps = e
        case .sample:
            x0 = e
            eps = SchedulerMath.map2(x, e) { (xv, ev) in (xv - sqA * ev) / sqB }
        default:  // v_prediction
            x0 = SchedulerMath.map2(x, e) { (xv, ev) in sqA * xv - sqB * ev }
            eps = SchedulerMath.map2(x, e) { (xv, ev) in sqA * ev + sqB * xv }
        }
        if clipSample {
            let r = clipSampleRange
            x0 = x0.map { Swift.min(Swift.max($0, -r), r) }
        }
        // eta = 0: std_dev_t = 0, direction coefficient = (1 - a_prev - 0) ** 0.5
        let stdDev: Float = 0
        let dirCoeff = ((1 - aPrev) - stdDev * stdDev).squareRoot()
        let sqAPrev = aPrev.squareRoot()
        return SchedulerMath.map2(x0, eps) { (x0v, ev) in sqAPrev * x0v + dirCoeff * ev }
    }
}
