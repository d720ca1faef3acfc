#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Numeric building blocks reproducing what torch (CPU, float32) and numpy (float64) compute inside
/// diffusers' schedulers. Internal; names are namespaced to avoid clashes inside the module.
enum SchedulerMath {
    // MARK: beta / alpha tables (torch float32)

    /// `torch.linspace(start, end, n, dtype=float32)` on CPU: scalar kernel, FMA-contracted
    /// (`start + step*i` below the midpoint, `end - step*(n-1-i)` above), verified against torch 2.15.
    static func torchLinspaceF32(_ start: Double, _ end: Double, _ n: Int) -> [Float] {
        let s = Float(start), e = Float(end)
        if n == 1 { return [s] }
        let step = (e - s) / Float(n - 1)
        let half = n / 2
        return (0..<n).map { i in
            i < half ? s.addingProduct(step, Float(i)) : e.addingProduct(-step, Float(n - 1 - i))
        }
    }

    static func betas(_ c: ResolvedBaseConfig) throws -> [Float] {
        let n = c.numTrainTimesteps
        if let tb = c.trainedBetas {
            guard tb.count == n else { throw SchedulerError.invalidConfig("trained_betas count \(tb.count) != \(n)") }
            return tb.map { Float($0) }
        }
        switch c.betaSchedule {
        case .linear:
            return torchLinspaceF32(c.betaStart, c.betaEnd, n)
        case .scaledLinear:
            return torchLinspaceF32(c.betaStart.squareRoot(), c.betaEnd.squareRoot(), n).map { $0 * $0 }
        case .squaredcosCapV2:
            // betas_for_alpha_bar, python float64, then torch.tensor(float32)
            func alphaBar(_ t: Double) -> Double {
                let v = cos((t + 0.008) / 1.008 * Double.pi / 2)
                return v * v
            }
            return (0..<n).map { i in
                let t1 = Double(i) / Double(n), t2 = Double(i + 1) / Double(n)
                return Float(Swift.min(1 - alphaBar(t2) / alphaBar(t1), 0.999))
            }
        }
    }

    /// `torch.cumprod(1 - betas)`: float32 storage, double accumulation.
    static func alphasCumprod(_ betas: [Float]) -> [Float] {
        var acc = 1.0
        return betas.map { b in
            acc *= Double(Float(1) - b)
            return Float(acc)
        }
    }

    /// `((1 - ac) / ac) ** 0.5` in torch float32.
    static func sigmaTable(_ ac: [Float]) -> [Float] {
        ac.map { ((1 - $0) / $0).squareRoot() }
    }

    // MARK: numpy float64 helpers

    /// `np.linspace(start, stop, num)` (float64, endpoint=True).
    static func npLinspace(_ start: Double, _ stop: Double, _ num: Int) -> [Double] {
        if num <= 0 { return [] }
        if num == 1 { return [start] }
        let div = Double(num - 1)
        let step = (stop - start) / div
        var y = (0..<num).map { Double($0) * step + start }
        y[num - 1] = stop
        return y
    }

    /// `np.arange(start, stop, step)` for float64 (numpy's two-value fill: `start + i*((start+step)-start)`).
    static func npArange(_ start: Double, _ stop: Double, _ step: Double) -> [Double] {
        let len = Int(((stop - start) / step).rounded(.up))
        if len <= 0 { return [] }
        var out = [Double](repeating: 0, count: len)
        out[0] = start
        if len > 1 { out[1] = start + step }
        let delta = (start + step) - start
        if len > 2 { for i in 2..<len { out[i] = start + Double(i) * delta } }
        return out
    }

    /// `np.round` (half to even).
    @inline(__always) static func npRound(_ x: Double) -> Double { x.rounded(.toNearestOrEven) }

    /// `np.interp(x, arange(len(fp)), fp)` (float64).
    static func npInterpUnitGrid(_ x: Double, _ fp: [Double]) -> Double {
        let last = fp.count - 1
        if x > Double(last) { return fp[last] }
        if x < 0 { return fp[0] }
        let j = Int(x.rounded(.down))
        if j >= last { return fp[last] }
        if Double(j) == x { return fp[j] }
        let slope = (fp[j + 1] - fp[j]) / 1.0
        return slope * (x - Double(j)) + fp[j]
    }

    /// `_convert_to_karras` (rho = 7), float64.
    static func karras(sigmaMin: Double, sigmaMax: Double, steps: Int) -> [Double] {
        let rho = 7.0
        let ramp = npLinspace(0, 1, steps)
        let minInv = pow(sigmaMin, 1 / rho)
        let maxInv = pow(sigmaMax, 1 / rho)
        return ramp.map { pow(maxInv + $0 * (minInv - maxInv), rho) }
    }

    /// `_sigma_to_t(sigma, log_sigmas)` with `log_sigmas = np.log(float32 sigma table)` (float32).
    static func sigmaToT(_ sigma: Double, logSigmas: [Float]) -> Double {
        let logSigma = log(Swift.max(sigma, 1e-10))
        var lowIdx = 0
        for (i, ls) in logSigmas.enumerated() where logSigma - Double(ls) >= 0 { lowIdx = i }
        lowIdx = Swift.min(lowIdx, logSigmas.count - 2)
        let highIdx = lowIdx + 1
        let low = logSigmas[lowIdx], high = logSigmas[highIdx]
        var w = (Double(low) - logSigma) / Double(low - high)
        w = Swift.min(Swift.max(w, 0), 1)
        return (1 - w) * Double(lowIdx) + w * Double(highIdx)
    }

    /// Integer timesteps of DDIM (descending).
    static func ddimTimesteps(_ c: ResolvedBaseConfig, _ n: Int) -> [Int] {
        let T = c.numTrainTimesteps
        switch c.timestepSpacing {
        case .linspace:
            return npLinspace(0, Double(T - 1), n).map { Int(npRound($0)) }.reversed()
        case .leading:
            let ratio = T / n
            return (0..<n).reversed().map { $0 * ratio + c.stepsOffset }
        default:  // trailing
            return npArange(Double(T), 0, -Double(T) / Double(n)).map { Int(npRound($0)) - 1 }
        }
    }

    /// Euler-family float timesteps (descending), as float32.
    static func eulerTimesteps(_ c: ResolvedBaseConfig, _ n: Int) -> [Float] {
        let T = c.numTrainTimesteps
        switch c.timestepSpacing {
        case .linspace:
            return npLinspace(0, Double(T - 1), n).map { Float($0) }.reversed()
        case .leading:
            let ratio = T / n
            return (0..<n).reversed().map { Float($0 * ratio) + Float(c.stepsOffset) }
        default:
            return npArange(Double(T), 0, -Double(T) / Double(n)).map { Float(npRound($0)) - 1 }
        }
    }

    /// DPM-Solver / UniPC integer timesteps (N+1 grid without the last point).
    static func multistepTimesteps(_ c: ResolvedBaseConfig, _ n: Int, lastTimestep: Int) -> [Int] {
        let T = c.numTrainTimesteps
        switch c.timestepSpacing {
        case .linspace:
            let v = npLinspace(0, Double(lastTimestep - 1), n + 1).map { Int(npRound($0)) }
            return Array(v.reversed().dropLast())
        case .leading:
            let ratio = lastTimestep / (n + 1)
            return (1...n).reversed().map { $0 * ratio + c.stepsOffset }
        default:
            return npArange(Double(lastTimestep), 0, -Double(T) / Double(n)).map { Int(npRound($0)) - 1 }
        }
    }

    // MARK: element-wise float32 kernels (each python operator = one rounding, left to right)

    @inline(__always)
    static func map2(_ a: [Float], _ b: [Float], _ f: (Float, Float) -> Float) -> [Float] {
        precondition(a.count == b.count, "latent size mismatch")
        var out = [Float](repeating: 0, count: a.count)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { po in
                    for i in 0..<po.count { po[i] = f(pa[i], pb[i]) }
                }
            }
        }
        return out
    }
}
