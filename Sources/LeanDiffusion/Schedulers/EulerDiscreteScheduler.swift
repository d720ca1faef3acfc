#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// diffusers `EulerDiscreteScheduler` (s_churn = 0), CPU float32 semantics.
public struct EulerDiscreteScheduler: Scheduler {
    let base: ResolvedBaseConfig
    public let useKarrasSigmas: Bool
    public let finalSigmasType: FinalSigmasType
    let sigmaMinOverride: Double?
    let sigmaMaxOverride: Double?
    public let alphasCumprod: [Float]
    public private(set) var sigmas: [Float] = []
    public private(set) var timestepValues: [Float] = []
    public var timesteps: [Int] { timestepValues.map { Int($0.rounded()) } }
    public var initNoiseSigma: Float { EulerSigmas.initNoiseSigma(sigmas, spacing: base.timestepSpacing) }

    public init(config: SchedulerConfig) throws {
        base = try ResolvedBaseConfig(config, defaultSpacing: .linspace, acceptsZeroSNR: true)
        if let it = base.settings.interpolationType, it != .linear { throw SchedulerError.unsupported("interpolation_type=\(it.rawValue)") }
        if config.useExponentialSigmas == true || config.useBetaSigmas == true {
            throw SchedulerError.unsupported("exponential/beta sigmas")
        }
        if base.settings.timestepType == .continuous && base.predictionType == .vPrediction {
            throw SchedulerError.unsupported("timestep_type=continuous")
        }
        useKarrasSigmas = config.useKarrasSigmas ?? false
        finalSigmasType = base.settings.finalSigmasType ?? .zero
        sigmaMinOverride = config.sigmaMin
        sigmaMaxOverride = config.sigmaMax
        alphasCumprod = SchedulerMath.alphasCumprod(try SchedulerMath.betas(base))
    }

    public mutating func setTimesteps(_ n: Int) throws {
        try base.checkSteps(n)
        var ts = SchedulerMath.eulerTimesteps(base, n)
        let table = SchedulerMath.sigmaTable(alphasCumprod)
        let tableD = table.map { Double($0) }
        var sig = ts.map { SchedulerMath.npInterpUnitGrid(Double($0), tableD) }
        if useKarrasSigmas {
            let logSigmas = table.map { logf($0) }
            sig = SchedulerMath.karras(sigmaMin: sigmaMinOverride ?? sig[sig.count - 1], sigmaMax: sigmaMaxOverride ?? sig[0], steps: n)
            ts = sig.map { Float(SchedulerMath.sigmaToT($0, logSigmas: logSigmas)) }
        }
        let last: Double = finalSigmasType == .zero ? 0 : Double(((1 - alphasCumprod[0]) / alphasCumprod[0]).squareRoot())
        sigmas = (sig + [last]).map { Float($0) }
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
        let sigmaHat = sigma * 1.0  // gamma = 0 (s_churn = 0)
        let x0 = EulerSigmas.predictX0(x, e, sigma: sigma, sigmaHat: sigmaHat, prediction: base.predictionType)
        let dt = sigmas[i + 1] - sigmaHat
        return SchedulerMath.map2(x, x0) { (xv, x0v) in
            let d = (xv - x0v) / sigmaHat
            return xv + d * dt
        }
    }
}

/// Shared pieces of the two Euler schedulers.
enum EulerSigmas {
    static func initNoiseSigma(_ sigmas: [Float], spacing: TimestepSpacing) -> Float {
        guard let m = sigmas.max() else { return 1 }
        if spacing == .linspace || spacing == .trailing { return m }
        return (m * m + 1).squareRoot()
    }

    static func predictX0(_ x: [Float], _ e: [Float], sigma: Float, sigmaHat: Float, prediction: PredictionType) -> [Float] {
        switch prediction {
        case .epsilon:
            return SchedulerMath.map2(x, e) { (xv, ev) in xv - sigmaHat * ev }
        case .vPrediction:
            let s2p1 = sigma * sigma + 1
            let cOut = -sigma / s2p1.squareRoot()
            return SchedulerMath.map2(x, e) { (xv, ev) in ev * cOut + xv / s2p1 }
        default:  // "sample"
            return e
        }
    }
}
