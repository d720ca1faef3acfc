#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Ops {
    /// Group normalisation with optional fused SiLU (every ResNet block runs `silu(norm(x))`; fusing saves a full
    /// pass over the activation). Statistics are accumulated in double, so bf16 storage does not cost precision.
    ///
    /// `inPlace` writes the result over `x` (each row is read before it is written), for callers that own `x` and
    /// do not need it again: one activation less alive at the peak of a ResNet block.
    public static func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float,
                                 silu: Bool = false, inPlace: Bool = false) -> Tensor {
        precondition(x.rank >= 2, "group norm needs (N, C, ...) input, got \(x.shape)")
        let n = x.shape[0], c = x.shape[1], hw = x.count / (n * c)
        precondition(c % groups == 0, "\(c) channels do not split into \(groups) groups")
        let cg = c / groups
        let gamma = weight?.toFloats() ?? [Float](repeating: 1, count: c)
        let beta = bias?.toFloats() ?? [Float](repeating: 0, count: c)
        let out = inPlace ? x : Tensor(shape: x.shape, dtype: x.dtype, layout: x.layout)
        let es = x.dtype.byteSize
        let channelsLast = x.rank == 4 && x.layout == .nhwc

        // Pass 1: per (image, group) mean and 1/std.
        var mean = [Float](repeating: 0, count: n * groups), rstd = mean
        if !channelsLast {
            mean.withUnsafeMutableBufferPointer { mp in
                rstd.withUnsafeMutableBufferPointer { rp in
                    let (mp, rp) = (mp.baseAddress!, rp.baseAddress!)
                    parallelFor(n * groups) { r in
                        let len = cg * hw
                        let buf = UnsafeMutablePointer<Float>.allocate(capacity: chunkSize)
                        defer { buf.deallocate() }
                        for ng in r {
                            var s = 0.0, s2 = 0.0
                            var off = 0
                            while off < len {
                                let m = min(chunkSize, len - off)
                                Convert.toFloat(x.raw + (ng * len + off) * es, x.dtype, buf, m)
                                let (a, b) = sums(buf, m)
                                s += a; s2 += b
                                off += m
                            }
                            let mu = s / Double(len)
                            let v = max(0, s2 / Double(len) - mu * mu)
                            mp[ng] = Float(mu)
                            rp[ng] = Float(1 / (v + Double(eps)).squareRoot())
                        }
                    }
                }
            }
        } else {
            // Channels-last: each pixel row holds every group; accumulate per-thread partial sums over pixel ranges.
            let parts = RuntimeContext.current.settings.threads
            var partial = [Double](repeating: 0, count: parts * n * groups * 2)
            partial.withUnsafeMutableBufferPointer { pp in
                let pp = pp.baseAddress!
                for b in 0..<n {
                    parallelFor(parts) { r in
                        let buf = UnsafeMutablePointer<Float>.allocate(capacity: c)
                        defer { buf.deallocate() }
                        for part in r {
                            let lo = part * hw / parts, hi = (part + 1) * hw / parts
                            var acc = [Double](repeating: 0, count: groups * 2)
                            for p in lo..<hi {
                                Convert.toFloat(x.raw + ((b * hw + p) * c) * es, x.dtype, buf, c)
                                for g in 0..<groups {
                                    let (a, q) = sums(buf + g * cg, cg)
                                    acc[2 * g] += a; acc[2 * g + 1] += q
                                }
                            }
                            for g in 0..<(groups * 2) { pp[(part * n + b) * groups * 2 + g] = acc[g] }
                        }
                    }
                }
            }
            for b in 0..<n {
                for g in 0..<groups {
                    var s = 0.0, s2 = 0.0
                    for part in 0..<parts {
                        s += partial[((part * n + b) * groups + g) * 2]
                        s2 += partial[((part * n + b) * groups + g) * 2 + 1]
                    }
                    let len = Double(cg * hw)
                    let mu = s / len
                    mean[b * groups + g] = Float(mu)
                    rstd[b * groups + g] = Float(1 / (max(0, s2 / len - mu * mu) + Double(eps)).squareRoot())
                }
            }
        }

        // Pass 2: normalise, scale, shift, optional SiLU. y = x * a + b with per-channel a, b.
        let rows = channelsLast ? n * hw : n * c
        let rowLength = channelsLast ? c : hw
        parallelFor(rows, minChunk: max(1, 4096 / rowLength)) { r in
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: rowLength)
            let a = UnsafeMutablePointer<Float>.allocate(capacity: c), bb = UnsafeMutablePointer<Float>.allocate(capacity: c)
            defer { buf.deallocate(); a.deallocate(); bb.deallocate() }
            for row in r {
                Convert.toFloat(x.raw + row * rowLength * es, x.dtype, buf, rowLength)
                if channelsLast {
                    let b = row / hw
                    for ch in 0..<c {
                        let g = b * groups + ch / cg
                        a[ch] = rstd[g] * gamma[ch]
                        bb[ch] = beta[ch] - mean[g] * a[ch]
                    }
                    affine(buf, a, bb, c, silu: silu)
                } else {
                    let ch = row % c, g = (row / c) * groups + ch / cg
                    let s = rstd[g] * gamma[ch]
                    let t = beta[ch] - mean[g] * s
                    affineScalar(buf, s, t, hw, silu: silu)
                }
                Convert.fromFloat(buf, out.raw + row * rowLength * es, x.dtype, rowLength)
            }
        }
        return out
    }

    /// Layer normalisation over the last axis.
    public static func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
        let d = x.shape[x.rank - 1], rows = x.count / d
        let gamma = weight?.toFloats() ?? [Float](repeating: 1, count: d)
        let beta = bias?.toFloats() ?? [Float](repeating: 0, count: d)
        let out = Tensor(shape: x.shape, dtype: x.dtype)
        let es = x.dtype.byteSize
        parallelFor(rows, minChunk: max(1, 4096 / d)) { r in
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: d)
            let a = UnsafeMutablePointer<Float>.allocate(capacity: d), b = UnsafeMutablePointer<Float>.allocate(capacity: d)
            defer { buf.deallocate(); a.deallocate(); b.deallocate() }
            for row in r {
                Convert.toFloat(x.raw + row * d * es, x.dtype, buf, d)
                let (s, s2) = sums(buf, d)
                let mu = s / Double(d)
                let rs = Float(1 / (max(0, s2 / Double(d) - mu * mu) + Double(eps)).squareRoot())
                for i in 0..<d {
                    a[i] = rs * gamma[i]
                    b[i] = beta[i] - Float(mu) * a[i]
                }
                affine(buf, a, b, d, silu: false)
                Convert.fromFloat(buf, out.raw + row * d * es, x.dtype, d)
            }
        }
        return out
    }

    /// Softmax over the last axis, in f32.
    public static func softmax(_ x: Tensor) -> Tensor {
        let d = x.shape[x.rank - 1], rows = x.count / d
        let out = Tensor(shape: x.shape, dtype: x.dtype)
        let es = x.dtype.byteSize
        parallelFor(rows, minChunk: max(1, 4096 / d)) { r in
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: d)
            defer { buf.deallocate() }
            for row in r {
                Convert.toFloat(x.raw + row * d * es, x.dtype, buf, d)
                softmaxRow(buf, d)
                Convert.fromFloat(buf, out.raw + row * d * es, x.dtype, d)
            }
        }
        return out
    }

    @inline(__always)
    static func softmaxRow(_ buf: UnsafeMutablePointer<Float>, _ d: Int) {
        var mx = -Float.infinity
        for i in 0..<d { mx = max(mx, buf[i]) }
        if mx == -.infinity { mx = 0 }
        var sum: Float = 0
        var i = 0
        while i < d {
            let m = min(16, d - i)
            var v = FloatV(repeating: -.infinity)
            for j in 0..<m { v[j] = buf[i + j] }
            let e = vexp(v - mx)   // masked (-inf) scores give exactly 0
            for j in 0..<m { buf[i + j] = e[j]; sum += e[j] }
            i += 16
        }
        let inv = 1 / sum
        for j in 0..<d { buf[j] *= inv }
    }

    @inline(__always)
    static func sums(_ p: UnsafePointer<Float>, _ n: Int) -> (Double, Double) {
        // Float partial sums over 16 lanes, folded into double every 1024 elements: fast, and exact enough that
        // group statistics of a 64x64x320 activation agree with torch to 1e-6.
        var s = 0.0, s2 = 0.0
        var i = 0
        while i < n {
            let end = min(n, i + 1024)
            var vs = FloatV(repeating: 0), vq = FloatV(repeating: 0)
            while i + 16 <= end {
                let v = UnsafeRawPointer(p + i).loadUnaligned(as: FloatV.self)
                vs += v
                vq = vq.addingProduct(v, v)
                i += 16
            }
            var ts: Float = 0, tq: Float = 0
            while i < end { ts += p[i]; tq += p[i] * p[i]; i += 1 }
            s += Double(vs.sum() + ts)
            s2 += Double(vq.sum() + tq)
        }
        return (s, s2)
    }

    @inline(__always)
    static func affine(_ buf: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                       _ n: Int, silu: Bool) {
        var i = 0
        while i + 16 <= n {
            var v = UnsafeRawPointer(buf + i).loadUnaligned(as: FloatV.self)
            v = v * UnsafeRawPointer(a + i).loadUnaligned(as: FloatV.self) + UnsafeRawPointer(b + i).loadUnaligned(as: FloatV.self)
            if silu { v = v * vsigmoid(v) }
            UnsafeMutableRawPointer(buf + i).storeBytes(of: v, as: FloatV.self)
            i += 16
        }
        while i < n {
            var v = buf[i] * a[i] + b[i]
            if silu { v = v * vsigmoid(FloatV(repeating: v))[0] }
            buf[i] = v
            i += 1
        }
    }

    @inline(__always)
    static func affineScalar(_ buf: UnsafeMutablePointer<Float>, _ a: Float, _ b: Float, _ n: Int, silu: Bool) {
        var i = 0
        while i + 16 <= n {
            var v = UnsafeRawPointer(buf + i).loadUnaligned(as: FloatV.self) * a + b
            if silu { v = v * vsigmoid(v) }
            UnsafeMutableRawPointer(buf + i).storeBytes(of: v, as: FloatV.self)
            i += 16
        }
        while i < n {
            var v = buf[i] * a + b
            if silu { v = v * vsigmoid(FloatV(repeating: v))[0] }
            buf[i] = v
            i += 1
        }
    }
}
