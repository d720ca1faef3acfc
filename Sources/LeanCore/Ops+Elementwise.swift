/// Operations on tensors. Heavy linear algebra goes to oneDNN; everything else is our own SIMD code, which works in
/// f32 registers whatever the storage type, so bf16 and f16 tensors cost only their conversion.
public enum Ops {}

/// Elements per conversion chunk: small enough for L1, large enough to amortise the loop.
let chunkSize = 4096

extension Ops {
    /// Applies `body` to f32 chunks of `inputs` (all the same count and layout) and stores into a new tensor.
    /// `body(out, ins, n)` gets the output buffer, the input buffers and the chunk length.
    /// With `into`, the result overwrites that tensor (which may be one of the inputs: each chunk is read before it
    /// is written); it must have the first input's shape, layout and the output type.
    static func mapChunks(_ inputs: [Tensor], outDType: DType? = nil, into: Tensor? = nil,
                          _ body: (UnsafeMutablePointer<Float>, [UnsafeMutablePointer<Float>], Int) -> Void) -> Tensor {
        let first = inputs[0]
        for t in inputs.dropFirst() {
            precondition(t.count == first.count, "shape mismatch: \(first.shape) vs \(t.shape)")
        }
        let inputs = inputs.map { $0.rank == 4 ? $0.withLayout(first.layout) : $0 }
        let dtype = outDType ?? first.dtype
        if let into {
            precondition(into.shape == first.shape && into.dtype == dtype && (first.rank != 4 || into.layout == first.layout),
                         "in-place destination \(into.shape) \(into.dtype) does not match \(first.shape) \(dtype)")
        }
        let out = into ?? Tensor(shape: first.shape, dtype: dtype, layout: first.layout)
        let n = first.count
        let chunks = (n + chunkSize - 1) / chunkSize
        parallelFor(chunks, minChunk: 8) { range in
            let bufs = (0...inputs.count).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: chunkSize) }
            defer { bufs.forEach { $0.deallocate() } }
            for c in range {
                let lo = c * chunkSize, m = min(chunkSize, n - lo)
                var ins: [UnsafeMutablePointer<Float>] = []
                for (i, t) in inputs.enumerated() {
                    Convert.toFloat(t.raw + lo * t.dtype.byteSize, t.dtype, bufs[i + 1], m)
                    ins.append(bufs[i + 1])
                }
                body(bufs[0], ins, m)
                Convert.fromFloat(bufs[0], out.raw + lo * dtype.byteSize, dtype, m)
            }
        }
        return out
    }

    /// A vectorised unary map with a scalar-identical tail (the tail goes through the same vector code).
    static func unary(_ x: Tensor, _ f: @escaping (FloatV) -> FloatV) -> Tensor {
        mapChunks([x]) { out, ins, n in
            let src = ins[0]
            var i = 0
            while i + 16 <= n {
                let v = UnsafeRawPointer(src + i).loadUnaligned(as: FloatV.self)
                UnsafeMutableRawPointer(out + i).storeBytes(of: f(v), as: FloatV.self)
                i += 16
            }
            if i < n {
                var v = FloatV(repeating: 0)
                for j in 0..<(n - i) { v[j] = src[i + j] }
                let r = f(v)
                for j in 0..<(n - i) { out[i + j] = r[j] }
            }
        }
    }

    static func binary(_ a: Tensor, _ b: Tensor, into: Tensor? = nil,
                       _ f: @escaping (FloatV, FloatV) -> FloatV) -> Tensor {
        mapChunks([a, b], into: into) { out, ins, n in
            var i = 0
            while i + 16 <= n {
                let x = UnsafeRawPointer(ins[0] + i).loadUnaligned(as: FloatV.self)
                let y = UnsafeRawPointer(ins[1] + i).loadUnaligned(as: FloatV.self)
                UnsafeMutableRawPointer(out + i).storeBytes(of: f(x, y), as: FloatV.self)
                i += 16
            }
            if i < n {
                var x = FloatV(repeating: 0), y = FloatV(repeating: 0)
                for j in 0..<(n - i) { x[j] = ins[0][i + j]; y[j] = ins[1][i + j] }
                let r = f(x, y)
                for j in 0..<(n - i) { out[i + j] = r[j] }
            }
        }
    }

    public static func silu(_ x: Tensor) -> Tensor { unary(x) { $0 * vsigmoid($0) } }
    /// GELU with erf, as torch's default `F.gelu`.
    public static func gelu(_ x: Tensor) -> Tensor { unary(x) { 0.5 * $0 * (1 + verf($0 * 0.70710678118654752)) } }
    /// GELU with the tanh approximation (`approximate="tanh"`).
    public static func geluTanh(_ x: Tensor) -> Tensor {
        unary(x) { v in 0.5 * v * (1 + vtanh(0.7978845608028654 * (v + 0.044715 * v * v * v))) }
    }
    /// CLIP's `quick_gelu`: x * sigmoid(1.702 x).
    public static func quickGelu(_ x: Tensor) -> Tensor { unary(x) { $0 * vsigmoid(1.702 * $0) } }
    public static func scale(_ x: Tensor, _ s: Float) -> Tensor { unary(x) { $0 * s } }
    public static func add(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b) { $0 + $1 } }
    /// `a + b` written over `destination` (usually `b`, a temporary the caller owns): residual adds without a new
    /// activation.
    public static func add(_ a: Tensor, _ b: Tensor, into destination: Tensor) -> Tensor {
        binary(a, b, into: destination) { $0 + $1 }
    }
    public static func sub(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b) { $0 - $1 } }
    public static func mul(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b) { $0 * $1 } }
    /// a * s + b * t, the shape of every scheduler update and guidance mix.
    public static func axpby(_ a: Tensor, _ s: Float, _ b: Tensor, _ t: Float) -> Tensor {
        binary(a, b) { $0 * s + $1 * t }
    }

    /// GEGLU as diffusers computes it: the projection's last axis splits into (hidden, gate) halves,
    /// result = hidden * gelu(gate).
    public static func geglu(_ x: Tensor) -> Tensor {
        let twoF = x.shape[x.rank - 1], f = twoF / 2, rows = x.count / twoF
        var outShape = x.shape
        outShape[outShape.count - 1] = f
        let out = Tensor(shape: outShape, dtype: x.dtype)
        parallelFor(rows, minChunk: 4) { r in
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: twoF)
            defer { buf.deallocate() }
            for row in r {
                Convert.toFloat(x.raw + row * twoF * x.dtype.byteSize, x.dtype, buf, twoF)
                var i = 0
                while i < f {
                    var h = FloatV(repeating: 0), g = FloatV(repeating: 0)
                    let m = min(16, f - i)
                    if m == 16 {
                        h = UnsafeRawPointer(buf + i).loadUnaligned(as: FloatV.self)
                        g = UnsafeRawPointer(buf + f + i).loadUnaligned(as: FloatV.self)
                    } else {
                        for j in 0..<m { h[j] = buf[i + j]; g[j] = buf[f + i + j] }
                    }
                    let r = h * (0.5 * g * (1 + verf(g * 0.70710678118654752)))
                    for j in 0..<m { buf[i + j] = r[j] }
                    i += 16
                }
                Convert.fromFloat(buf, out.raw + row * f * x.dtype.byteSize, x.dtype, f)
            }
        }
        return out
    }

    /// Adds a per-(batch, channel) vector to a 4-D tensor: the ResNet block's time-embedding injection.
    public static func addChannelBias(_ x: Tensor, _ v: Tensor) -> Tensor {
        precondition(x.rank == 4 && v.count == x.shape[0] * x.shape[1], "bias \(v.shape) for \(x.shape)")
        let (n, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        let vf = v.toFloats()
        let out = Tensor(shape: x.shape, dtype: x.dtype, layout: x.layout)
        let es = x.dtype.byteSize
        // NHWC: rows of C channels, one per pixel. NCHW: planes of HW pixels, one per channel.
        let (rows, rowLength) = x.layout == .nhwc ? (n * hw, c) : (n * c, hw)
        parallelFor(rows, minChunk: max(1, 4096 / rowLength)) { r in
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: rowLength)
            defer { buf.deallocate() }
            for row in r {
                Convert.toFloat(x.raw + row * rowLength * es, x.dtype, buf, rowLength)
                if x.layout == .nhwc {
                    let base = (row / hw) * c
                    for ch in 0..<c { buf[ch] += vf[base + ch] }
                } else {
                    let bias = vf[row]
                    for i in 0..<hw { buf[i] += bias }
                }
                Convert.fromFloat(buf, out.raw + row * rowLength * es, x.dtype, rowLength)
            }
        }
        return out
    }
}
