/// diffusers `PNDMScheduler` in PLMS mode (`skip_prk_steps=True`, as configured by SD1.x/2.x).
public struct PNDMScheduler: Scheduler {
    let base: ResolvedBaseConfig
    public let alphasCumprod: [Float]
    public let finalAlphaCumprod: Float
    public private(set) var timesteps: [Int] = []
    public var timestepValues: [Float] { timesteps.map { Float($0) } }
    public var initNoiseSigma: Float { 1 }
    public private(set) var numInferenceSteps = 0
    private var ets: [[Float]] = []
    private var curSample: [Float]? = nil
    /// diffusers' `counter`: calls since `setTimesteps`. Equal to the step index from noise; image-to-image starts
    /// the loop part-way (`timesteps[t_start:]`) with the counter at 0, so PLMS warms up again from there.
    private var counter = 0

    public init(config: SchedulerConfig) throws {
        base = try ResolvedBaseConfig(config, defaultSpacing: .leading, acceptsZeroSNR: false)
        guard config.skipPrkSteps ?? false else {
            throw SchedulerError.unsupported("PNDM with skip_prk_steps=false (Runge-Kutta warm-up)")
        }
        if base.predictionType == .sample { throw SchedulerError.unsupported("PNDM prediction_type=sample") }
        alphasCumprod = SchedulerMath.alphasCumprod(try SchedulerMath.betas(base))
        finalAlphaCumprod = (config.setAlphaToOne ?? false) ? 1 : alphasCumprod[0]
    }

    public mutating func setTimesteps(_ n: Int) throws {
        try base.checkSteps(n)
        numInferenceSteps = n
        let T = base.numTrainTimesteps
        var asc: [Int]
        switch base.timestepSpacing {
        case .linspace:
            asc = SchedulerMath.npLinspace(0, Double(T - 1), n).map { Int(SchedulerMath.npRound($0)) }
        case .leading:
            asc = (0..<n).map { $0 * (T / n) + base.stepsOffset }
        default:
            asc = SchedulerMath.npArange(Double(T), 0, -Double(T) / Double(n)).reversed()
                .map { Int(SchedulerMath.npRound($0)) - 1 }
        }
        // plms = concat(_t[:-1], _t[-2:-1], _t[-1:])[::-1]
        var plms = Array(asc.dropLast())
        if asc.count >= 2 { plms.append(asc[asc.count - 2]) }
        plms.append(asc[asc.count - 1])
        // step() indexes alphas at every timestep and, at counter 1, at timesteps[1] + T / n.
        try base.checkTimesteps(plms + (plms.count > 1 ? [plms[plms.count - 2] + T / n] : []))
        timesteps = plms.reversed()
        ets = []
        curSample = nil
        counter = 0
    }

    public func scaleModelInput(_ sample: [Float], stepIndex: Int) -> [Float] { sample }

    public func addNoise(_ original: [Float], noise: [Float], stepIndex: Int) -> [Float] {
        SchedulerMath.ddpmAddNoise(original, noise, alphaCumprod: alphasCumprod[timesteps[stepIndex]])
    }

    public mutating func step(modelOutput e: [Float], stepIndex: Int, sample: [Float],
                              generator: inout TorchGenerator) -> [Float] {
        defer { counter += 1 }
        let ratio = base.numTrainTimesteps / numInferenceSteps
        var t = timesteps[stepIndex]
        var prevT = t - ratio
        if counter != 1 {
            if ets.count > 3 { ets.removeFirst(ets.count - 3) }
            ets.append(e)
        } else {
            prevT = t
            t = t + ratio
        }
        var x = sample
        let eP: [Float]
        if ets.count == 1 && counter == 0 {
            eP = e
            curSample = sample
        } else if ets.count == 1 && counter == 1 {
            eP = SchedulerMath.map2(e, ets[ets.count - 1]) { ($0 + $1) / 2 }
            x = curSample ?? sample
            curSample = nil
        } else if ets.count == 2 {
            eP = SchedulerMath.map2(ets[1], ets[0]) { (3 * $0 - $1) / 2 }
        } else if ets.count == 3 {
            let e1 = ets[2], e2 = ets[1], e3 = ets[0]
            eP = (0..<e1.count).map { i in ((23 * e1[i] - 16 * e2[i]) + 5 * e3[i]) / 12 }
        } else {
            let n = ets.count
            let e1 = ets[n - 1], e2 = ets[n - 2], e3 = ets[n - 3], e4 = ets[n - 4]
            let k = Float(1.0 / 24.0)
            eP = (0..<e1.count).map { i in
                k * (((55 * e1[i] - 59 * e2[i]) + 37 * e3[i]) - 9 * e4[i])
            }
        }
        return prevSample(x, t, prevT, eP)
    }

    /// `_get_prev_sample` (PNDM paper eq. 9).
    private func prevSample(_ x: [Float], _ t: Int, _ prevT: Int, _ eIn: [Float]) -> [Float] {
        let aT = alphasCumprod[t]
        let aPrev = prevT >= 0 ? alphasCumprod[prevT] : finalAlphaCumprod
        let bT: Float = 1 - aT
        let bPrev: Float = 1 - aPrev
        var e = eIn
        if base.predictionType == .vPrediction {
            let sa = aT.squareRoot(), sb = bT.squareRoot()
            e = SchedulerMath.map2(e, x) { sa * $0 + sb * $1 }
        }
        let sampleCoeff = (aPrev / aT).squareRoot()
        let denom = aT * bPrev.squareRoot() + ((aT * bT) * aPrev).squareRoot()
        let d = aPrev - aT
        return SchedulerMath.map2(x, e) { (xv, ev) in sampleCoeff * xv - (d * ev) / denom }
    }
}
