#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// diffusers `DPMSolverMultistepScheduler` with `algorithm_type="dpmsolver++"` (DPM++ 2M), orders 1-2,
/// midpoint or heun, optional Karras sigmas. CPU float32 semantics.
public struct DPMSolverMultistepScheduler: Scheduler {
    let base: ResolvedBaseConfig
    public let solverOrder: Int
    public let solverType: SolverType
    public let lowerOrderFinal: Bool
    public let eulerAtFinal: Bool
    public let useKarrasSigmas: Bool
    public let finalSigmasType: FinalSigmasType
    let lambdaMinClipped: Double
    public let alphasCumprod: [Float]
    public private(set) var sigmas: [Float] = []
    public private(set) var timesteps: [Int] = []
    public var timestepValues: [Float] { timesteps.map { Float($0) } }
    public var initNoiseSigma: Float { 1 }
    private var modelOutputs: [[Float]?] = []
    private var lowerOrderNums = 0

    public init(config: SchedulerConfig) throws {
        base = try ResolvedBaseConfig(config, defaultSpacing: .linspace, acceptsZeroSNR: true)
        if config.thresholding == true { throw SchedulerError.unsupported("thresholding=true") }
        let algo = base.settings.algorithmType ?? .dpmsolverPlusPlus
        guard algo == .dpmsolverPlusPlus else { throw SchedulerError.unsupported("algorithm_type=\(algo.rawValue)") }
        solverOrder = config.solverOrder ?? 2
        guard solverOrder == 1 || solverOrder == 2 else { throw SchedulerError.unsupported("solver_order=\(solverOrder)") }
        solverType = base.settings.solverType ?? .midpoint
        guard solverType == .midpoint || solverType == .heun else { throw SchedulerError.unsupported("solver_type=\(solverType.rawValue) (DPM-Solver takes midpoint or heun)") }
        lowerOrderFinal = config.lowerOrderFinal ?? true
        eulerAtFinal = config.eulerAtFinal ?? false
        useKarrasSigmas = config.useKarrasSigmas ?? false
        if config.useExponentialSigmas == true || config.useBetaSigmas == true || config.useLuLambdas == true
            || config.useFlowSigmas == true {
            throw SchedulerError.unsupported("exponential/beta/lu/flow sigmas")
        }
        if let v = base.settings.varianceType, v == .learned || v == .learnedRange {
            throw SchedulerError.unsupported("variance_type=\(v.rawValue)")
        }
        finalSigmasType = base.settings.finalSigmasType ?? .zero
        lambdaMinClipped = config.lambdaMinClipped ?? -Double.infinity
        alphasCumprod = SchedulerMath.alphasCumprod(try SchedulerMath.betas(base))
    }

    public mutating func setTimesteps(_ n: Int) throws {
        try base.checkSteps(n)
        // clipped_idx = searchsorted(flip(lambda_t), lambda_min_clipped)
        var lastT = base.numTrainTimesteps
        if lambdaMinClipped > -Double.infinity {
            let lambdas = alphasCumprod.map { logf($0.squareRoot()) - logf((1 - $0).squareRoot()) }
            let flipped = Array(lambdas.reversed())
            let clipped = flipped.firstIndex { Double($0) >= lambdaMinClipped } ?? flipped.count
            lastT = base.numTrainTimesteps - clipped
        }
        let (ts, sig) = MultistepSchedule.make(base, n, lastTimestep: lastT, alphasCumprod: alphasCumprod,
                                              karras: useKarrasSigmas, sigmaMin: nil, sigmaMax: nil,
                                              finalSigmasType: finalSigmasType, karrasFinalIsLast: false)
        timesteps = ts
        sigmas = sig
        modelOutputs = Array(repeating: nil, count: solverOrder)
        lowerOrderNums = 0
    }

    public func addNoise(_ original: [Float], noise: [Float], stepIndex: Int) -> [Float] {
        SchedulerMath.multistepAddNoise(original, noise, sigma: sigmas[stepIndex])
    }

    public func scaleModelInput(_ sample: [Float], stepIndex: Int) -> [Float] { sample }

    public mutating func step(modelOutput e: [Float], stepIndex i: Int, sample x: [Float],
                              generator: inout TorchGenerator) -> [Float] {
        let n = timesteps.count
        let lof = (i == n - 1) && (eulerAtFinal || (lowerOrderFinal && n < 15) || finalSigmasType == .zero)
        let x0 = MultistepSchedule.convertToX0(e, x, sigma: sigmas[i], prediction: base.predictionType)
        if solverOrder > 1 { for k in 0..<(solverOrder - 1) { modelOutputs[k] = modelOutputs[k + 1] } }
        modelOutputs[solverOrder - 1] = x0
        let prev: [Float]
        if solverOrder == 1 || lowerOrderNums < 1 || lof {
            prev = firstOrder(x0, x, i)
        } else {
            prev = secondOrder(modelOutputs[solverOrder - 1]!, modelOutputs[solverOrder - 2]!, x, i)
        }
        if lowerOrderNums < solverOrder { lowerOrderNums += 1 }
        return prev
    }

    private func firstOrder(_ m: [Float], _ x: [Float], _ i: Int) -> [Float] {
        let (aT, sT) = MultistepSchedule.alphaSigma(sigmas[i + 1])
        let (aS, sS) = MultistepSchedule.alphaSigma(sigmas[i])
        let h = (logf(aT) - logf(sT)) - (logf(aS) - logf(sS))
        let c0 = sT / sS
        let c1 = aT * (expf(-h) - 1)
        return SchedulerMath.map2(x, m) { (xv, mv) in c0 * xv - c1 * mv }
    }

    private func secondOrder(_ m0: [Float], _ m1: [Float], _ x: [Float], _ i: Int) -> [Float] {
        let (aT, sT) = MultistepSchedule.alphaSigma(sigmas[i + 1])
        let (aS0, sS0) = MultistepSchedule.alphaSigma(sigmas[i])
        let (aS1, sS1) = MultistepSchedule.alphaSigma(sigmas[i - 1])
        let lT = logf(aT) - logf(sT), lS0 = logf(aS0) - logf(sS0), lS1 = logf(aS1) - logf(sS1)
        let h = lT - lS0, h0 = lS0 - lS1
        let r0 = h0 / h
        let invR0 = 1 / r0
        let c0 = sT / sS0
        let em1 = expf(-h) - 1
        let c1 = aT * em1
        let c2: Float = solverType == .midpoint ? 0.5 * (aT * em1) : aT * (em1 / h + 1)
        var out = [Float](repeating: 0, count: x.count)
        for k in 0..<x.count {
            let d1 = invR0 * (m0[k] - m1[k])
            if solverType == .midpoint {
                out[k] = (c0 * x[k] - c1 * m0[k]) - c2 * d1
            } else {
                out[k] = (c0 * x[k] - c1 * m0[k]) + c2 * d1
            }
        }
        return out
    }
}

/// Timestep/sigma construction and model-output conversion shared by DPM-Solver++ and UniPC.
enum MultistepSchedule {
    /// `_sigma_to_alpha_sigma_t`: alpha = 1 / (s**2 + 1)**0.5, sigma_t = s * alpha (float32).
    @inline(__always)
    static func alphaSigma(_ s: Float) -> (Float, Float) {
        let a = 1 / (s * s + 1).squareRoot()
        return (a, s * a)
    }

    static func convertToX0(_ e: [Float], _ x: [Float], sigma: Float, prediction: PredictionType) -> [Float] {
        let (a, s) = alphaSigma(sigma)
        switch prediction {
        case .epsilon: return SchedulerMath.map2(x, e) { (xv, ev) in (xv - s * ev) / a }
        case .vPrediction: return SchedulerMath.map2(x, e) { (xv, ev) in a * xv - s * ev }
        default: return e
        }
    }

    static func make(_ c: ResolvedBaseConfig, _ n: Int, lastTimestep: Int, alphasCumprod: [Float], karras: Bool,
                     sigmaMin: Double?, sigmaMax: Double?, finalSigmasType: FinalSigmasType,
                     karrasFinalIsLast: Bool) -> ([Int], [Float]) {
        var ts = SchedulerMath.multistepTimesteps(c, n, lastTimestep: lastTimestep)
        let table = SchedulerMath.sigmaTable(alphasCumprod)
        var sig: [Double]
        if karras {
            let logSigmas = table.map { logf($0) }
            sig = SchedulerMath.karras(sigmaMin: sigmaMin ?? Double(table[0]),
                                       sigmaMax: sigmaMax ?? Double(table[table.count - 1]), steps: n)
            ts = sig.map {
                let t = SchedulerMath.sigmaToT($0, logSigmas: logSigmas)
                return Int(c.betaSchedule == .squaredcosCapV2 && !karrasFinalIsLast ? t : SchedulerMath.npRound(t))
            }
        } else {
            let tableD = table.map { Double($0) }
            sig = ts.map { SchedulerMath.npInterpUnitGrid(Double($0), tableD) }
        }
        let last: Double
        if finalSigmasType == .zero {
            last = 0
        } else if karras && karrasFinalIsLast {
            last = sig[sig.count - 1]
        } else {
            last = Double(((1 - alphasCumprod[0]) / alphasCumprod[0]).squareRoot())
        }
        return (ts, (sig + [last]).map { Float($0) })
    }
}
