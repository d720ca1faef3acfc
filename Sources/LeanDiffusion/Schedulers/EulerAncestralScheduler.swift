/// diffusers `EulerAncestralDiscreteScheduler`; draws `randn(sample.count)` from the generator every step,
/// exactly like `randn_tensor(shape, generator=cpu_generator)`.
public struct EulerAncestralScheduler: Scheduler {
    let base: ResolvedBaseConfig
    public let alphasCumprod: [Float]
    public private(set) var sigmas: [Float] = []
    public private(set) var timestepValues: [Float] = []
    public var timesteps: [Int] { timestepValues.map { Int($0.rounded()) } }
    public var initNoiseSigma: Float { EulerSigmas.initNoiseSigma(sigmas, spacing: base.timestepSpacing) }

    public init(config: SchedulerConfig) throws {
        base = try ResolvedBaseConfig(config, defaultSpacing: .linspace, acceptsZeroSNR: true)
        if base.predictionType == .sample { throw SchedulerError.unsupported("Euler ancestral prediction_type=sample") }
        alphasCumprod = SchedulerMath.alphasCumprod(try SchedulerMath.betas(base))
    }

    public mutating func setTimesteps(_ n: Int) throws {
        try base.checkSteps(n)
        let ts = SchedulerMath.eulerTimesteps(base, n)
        let tableD = SchedulerMath.sigmaTable(alphasCumprod).map { Double($0) }
        sigmas = ts.map { Float(SchedulerMath.npInterpUnitGrid(Double($0), tableD)) } + [0]
        timestepValues = ts
    }

    public func addNoise(_ original: [Float], noise: [Float], stepIndex: Int) -> [Float] {
        SchedulerMath.sigmaAddNoise(original, noise, sigma: sigmas[stepIndex])
    }

    public func scaleModelInput(_ sample: [Float], stepIndex: Int) -> [Float] {
        let s = sigmas[stepIndex]
        let d = (s * s + 1).squareRoot()
        return sample.map { $0 / d }
    }

    public mutating func step(modelOutput e: [Float], stepIndex i: Int, sample x: [Float],
                              generator: inout TorchGenerator) -> [Float] {
        let sigma = sigmas[i]
        let x0 = EulerSigmas.predictX0(x, e, sigma: sigma, sigmaHat: sigma, prediction: base.predictionType)
        let sFrom = sigmas[i], sTo = sigmas[i + 1]
        let sUp = (((sTo * sTo) * (sFrom * sFrom - sTo * sTo)) / (sFrom * sFrom)).squareRoot()
        let sDown = (sTo * sTo - sUp * sUp).squareRoot()
        let dt = sDown - sigma
        var prev = SchedulerMath.map2(x, x0) { (xv, x0v) in
            let d = (xv - x0v) / sigma
            return xv + d * dt
        }
        let noise = generator.randn(count: e.count)
        prev = SchedulerMath.map2(prev, noise) { $0 + $1 * sUp }
        return prev
    }
}
