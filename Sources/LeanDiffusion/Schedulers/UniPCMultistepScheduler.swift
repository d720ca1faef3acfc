#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// diffusers `UniPCMultistepScheduler` (predict_x0, bh1/bh2, solver_order 1-2), CPU float32 semantics.
public struct UniPCMultistepScheduler: Scheduler {
    let base: ResolvedBaseConfig
    public let solverOrder: Int
    public let solverType: SolverType
    public let lowerOrderFinal: Bool
    public let disableCorrector: [Int]
    public let useKarrasSigmas: Bool
    public let finalSigmasType: FinalSigmasType
    let sigmaMinOverride: Double?
    let sigmaMaxOverride: Double?
    public let alphasCumprod: [Float]
    public private(set) var sigmas: [Float] = []
    public private(set) var timesteps: [Int] = []
    public var timestepValues: [Float] { timesteps.map { Float($0) } }
    public var initNoiseSigma: Float { 1 }
    private var modelOutputs: [[Float]?] = []
    private var lowerOrderNums = 0
    private var lastSample: [Float]? = nil
    private var thisOrder = 1

    public init(config: SchedulerConfig) throws {
        base = try ResolvedBaseConfig(config, defaultSpacing: .linspace, acceptsZeroSNR: true)
        if config.thresholding == true { throw SchedulerError.unsupported("thresholding=true") }
        guard config.predictX0 ?? true else { throw SchedulerError.unsupported("predict_x0=false") }
        solverOrder = config.solverOrder ?? 2
        guard solverOrder == 1 || solverOrder == 2 else { throw SchedulerError.unsupported("solver_order=\(solverOrder)") }
        solverType = base.settings.solverType ?? .bh2
        guard solverType == .bh1 || solverType == .bh2 else { throw SchedulerError.unsupported("solver_type=\(solverType.rawValue) (UniPC takes bh1 or bh2)") }
        lowerOrderFinal = config.lowerOrderFinal ?? true
        disableCorrector = config.disableCorrector ?? []
        useKarrasSigmas = config.useKarrasSigmas ?? false
        if config.useExponentialSigmas == true || config.useBetaSigmas == true || config.useFlowSigmas == true {
            throw SchedulerError.unsupported("exponential/beta/flow sigmas")
        }
        finalSigmasType = base.settings.finalSigmasType ?? .zero
        sigmaMinOverride = config.sigmaMin
        sigmaMaxOverride = config.sigmaMax
        alphasCumprod = SchedulerMath.alphasCumprod(try SchedulerMath.betas(base))
    }

    public mutating func setTimesteps(_ n: Int) throws {
        try base.checkSteps(n)
        let (ts, sig) = MultistepSchedule.make(base, n, lastTimestep: base.numTrainTimesteps,
                                              alphasCumprod: alphasCumprod, karras: useKarrasSigmas,
                                              sigmaMin: sigmaMinOverride, sigmaMax: sigmaMaxOverride,
                                              finalSigmasType: finalSigmasType, karrasFinalIsLast: true)
        timesteps = ts
        sigmas = sig
        modelOutputs = Array(repeating: nil, count: solverOrder)
        lowerOrderNums = 0
        lastSample = nil
        thisOrder = 1
    }

    public func addNoise(_ original: [Float], noise: [Float], stepIndex: Int) -> [Float] {
        SchedulerMath.multistepAddNoise(original, noise, sigma: sigmas[stepIndex])
    }

    public func scaleModelInput(_ sample: [Float], stepIndex: Int) -> [Float] { sample }

    public mutating func step(modelOutput e: [Float], stepIndex i: Int, sample: [Float],
                              generator: inout TorchGenerator) -> [Float] {
        let useCorrector = i > 0 && !disableCorrector.contains(i - 1) && lastSample != nil
        let mConv = MultistepSchedule.convertToX0(e, sample, sigma: sigmas[i], prediction: base.predictionType)
        var x = sample
        if useCorrector, let last = lastSample {
            x = corrector(mConv, last, i, order: thisOrder)
        }
        if solverOrder > 1 { for k in 0..<(solverOrder - 1) { modelOutputs[k] = modelOutputs[k + 1] } }
        modelOutputs[solverOrder - 1] = mConv
        var order = lowerOrderFinal ? Swift.min(solverOrder, timesteps.count - i) : solverOrder
        order = Swift.min(order, lowerOrderNums + 1)
        thisOrder = order
        lastSample = x
        let prev = predictor(x, i, order: order)
        if lowerOrderNums < solverOrder { lowerOrderNums += 1 }
        return prev
    }

    @inline(__always) private func lambda(_ s: Float) -> Float {
        let (a, st) = MultistepSchedule.alphaSigma(s)
        return logf(a) - logf(st)
    }

    /// R, b rows of the B(h) system for `order` (float32 torch semantics). Returns (h_phi_1, B_h, b).
    private func bhTerms(h: Float, order: Int) -> (Float, Float, [Float]) {
        let hh = -h
        let hPhi1 = expm1f(hh)
        var hPhiK = hPhi1 / hh - 1
        var fact = 1
        let bh: Float = solverType == .bh2 ? expm1f(hh) : hh
        var b: [Float] = []
        for k in 1...order {
            b.append((hPhiK * Float(fact)) / bh)
            fact *= k + 1
            hPhiK = hPhiK / hh - Float(1.0 / Double(fact))
        }
        return (hPhi1, bh, b)
    }

    /// UniP (bh) predictor from step i to i+1.
    private func predictor(_ x: [Float], _ i: Int, order: Int) -> [Float] {
        let m0 = modelOutputs[solverOrder - 1]!
        let (aT, sT) = MultistepSchedule.alphaSigma(sigmas[i + 1])
        let (_, sS0) = MultistepSchedule.alphaSigma(sigmas[i])
        let lS0 = lambda(sigmas[i])
        let h = lambda(sigmas[i + 1]) - lS0
        let (hPhi1, bh, _) = bhTerms(h: h, order: order)
        let c0 = sT / sS0, c1 = aT * hPhi1, c2 = aT * bh
        if order >= 2 {
            let m1 = modelOutputs[solverOrder - 2]!
            let rk = (lambda(sigmas[i - 1]) - lS0) / h
            let rho: Float = 0.5
            return (0..<x.count).map { k in
                let d1 = (m1[k] - m0[k]) / rk
                let xt = c0 * x[k] - c1 * m0[k]
                return xt - c2 * (rho * d1)
            }
        }
        let zeroTerm = c2 * 0
        return SchedulerMath.map2(x, m0) { (xv, mv) in (c0 * xv - c1 * mv) - zeroTerm }
    }

    /// UniC (bh) corrector for step i (from i-1 to i), using the fresh converted output `mT`.
    private func corrector(_ mT: [Float], _ last: [Float], _ i: Int, order: Int) -> [Float] {
        let m0 = modelOutputs[solverOrder - 1]!
        let (aT, sT) = MultistepSchedule.alphaSigma(sigmas[i])
        let (_, sS0) = MultistepSchedule.alphaSigma(sigmas[i - 1])
        let lS0 = lambda(sigmas[i - 1])
        let h = lambda(sigmas[i]) - lS0
        let (hPhi1, bh, b) = bhTerms(h: h, order: order)
        let c0 = sT / sS0, c1 = aT * hPhi1, c2 = aT * bh
        if order == 1 {
            let rho: Float = 0.5
            return (0..<last.count).map { k in
                let xt = c0 * last[k] - c1 * m0[k]
                return xt - c2 * (0 + rho * (mT[k] - m0[k]))
            }
        }
        let m1 = modelOutputs[solverOrder - 2]!
        let rk = (lambda(sigmas[i - 2]) - lS0) / h
        let rhos = Self.solve2(r: rk, b0: b[0], b1: b[1])
        return (0..<last.count).map { k in
            let d1 = (m1[k] - m0[k]) / rk
            let xt = c0 * last[k] - c1 * m0[k]
            return xt - c2 * (rhos.0 * d1 + rhos.1 * (mT[k] - m0[k]))
        }
    }

    /// `torch.linalg.solve([[1, 1], [r, 1]], [b0, b1])` in float32 (LU with partial pivoting, LAPACK order).
    static func solve2(r: Float, b0: Float, b1: Float) -> (Float, Float) {
        var a00: Float = 1, a01: Float = 1, a10 = r, a11: Float = 1
        var y0 = b0, y1 = b1
        if abs(a10) > abs(a00) {
            swap(&a00, &a10); swap(&a01, &a11); swap(&y0, &y1)
        }
        let l = a10 * (1 / a00)
        let u11 = a11 - l * a01
        y1 = y1 - l * y0
        let x1 = y1 / u11
        let x0 = (y0 - a01 * x1) / a00
        return (x0, x1)
    }
}
