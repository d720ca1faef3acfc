#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reproduces `torch.randn(n, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)`
/// on x86-64 CPUs (the `normal_fill_AVX2` kernel with the Cephes `log256_ps`/`sincos256_ps`
/// approximations from `avx_mathfun.h`, including the FMA contractions GCC applies when building
/// the official wheels), and the double-precision scalar Box-Muller used for `numel < 16`.
///
/// Successive `randn` calls continue the same stream, exactly like successive torch calls on one
/// generator (including the cached second Gaussian of the scalar path).
public struct TorchGenerator: Sendable {
    private var state: [UInt32]
    private var index: Int
    /// `CPUGeneratorImpl::next_double_normal_sample`
    private var cachedDoubleNormal: Double?

    public let seed: UInt64

    public init(seed: UInt64) {
        self.seed = seed
        var s = [UInt32](repeating: 0, count: 624)
        s[0] = UInt32(truncatingIfNeeded: seed)
        for j in 1..<624 {
            s[j] = 1812433253 &* (s[j - 1] ^ (s[j - 1] >> 30)) &+ UInt32(j)
        }
        state = s
        index = 624
        cachedDoubleNormal = nil
    }

    // MARK: MT19937

    private mutating func twist() {
        let n = 624, m = 397
        state.withUnsafeMutableBufferPointer { st in
            for i in 0..<n {
                let y = (st[i] & 0x8000_0000) | (st[(i + 1) % n] & 0x7fff_ffff)
                var v = y >> 1
                if y & 1 != 0 { v ^= 0x9908_b0df }
                st[i] = st[(i + m) % n] ^ v
            }
        }
        index = 0
    }

    /// One tempered 32-bit MT19937 output (`at::mt19937::operator()`).
    public mutating func nextUInt32() -> UInt32 {
        if index >= 624 { twist() }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c_5680
        y ^= (y << 15) & 0xefc6_0000
        y ^= y >> 18
        return y
    }

    /// `uniform_real_distribution<float>(0, 1)`: 24 random bits.
    @inline(__always)
    private mutating func uniformFloat() -> Float {
        Float(nextUInt32() & 0xFF_FFFF) * (1.0 / 16_777_216.0)
    }

    /// `uniform_real_distribution<double>(0, 1)`: `random64()` masked to 53 bits.
    @inline(__always)
    private mutating func uniformDouble() -> Double {
        let hi = UInt64(nextUInt32())
        let lo = UInt64(nextUInt32())
        let r = (hi << 32) | lo
        return Double(r & ((UInt64(1) << 53) - 1)) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `at::normal_distribution<double>(0, 1)` with the generator-held cache.
    private mutating func normalDouble() -> Double {
        if let c = cachedDoubleNormal {
            cachedDoubleNormal = nil
            return c
        }
        let u1 = uniformDouble()
        let u2 = uniformDouble()
        let r = (-2.0 * log1p(-u2)).squareRoot()
        let theta = 2.0 * Double.pi * u1
        cachedDoubleNormal = r * sin(theta)
        return r * cos(theta)
    }

    // MARK: randn

    /// Standard normal float32 samples, bit-identical to torch's CPU `randn` on x86-64.
    public mutating func randn(count: Int) -> [Float] {
        precondition(count >= 0)
        if count == 0 { return [] }
        if count < 16 {
            var out = [Float](repeating: 0, count: count)
            for i in 0..<count { out[i] = Float(normalDouble()) }
            return out
        }
        var data = [Float](repeating: 0, count: count)
        for i in 0..<count { data[i] = uniformFloat() }
        data.withUnsafeMutableBufferPointer { buf in
            let p = buf.baseAddress!
            var i = 0
            while i + 16 <= count {
                Self.normalFill16(p + i)
                i += 16
            }
        }
        if count % 16 != 0 {
            for i in (count - 16)..<count { data[i] = uniformFloat() }
            data.withUnsafeMutableBufferPointer { buf in
                Self.normalFill16(buf.baseAddress! + (count - 16))
            }
        }
        return data
    }

    /// `normal_fill_16_AVX2` with mean 0, std 1 (the final `fmadd(n, 1, 0)` is exact).
    @inline(__always)
    private static func normalFill16(_ d: UnsafeMutablePointer<Float>) {
        let twoPi = Float(2.0 * Double.pi)  // _mm256_set1_ps(2.0f * c10::pi<double>)
        for j in 0..<8 {
            let u1: Float = 1.0 - d[j]
            let u2 = d[j + 8]
            let radius = (Float(-2.0) * cephesLog(u1)).squareRoot()
            let theta = twoPi * u2
            let (s, c) = cephesSinCos(theta)
            d[j] = radius * c
            d[j + 8] = radius * s
        }
    }

    @inline(__always)
    private static func fma(_ a: Float, _ b: Float, _ c: Float) -> Float {
        c.addingProduct(a, b)  // single rounding: llvm.fma.f32
    }

    /// `log256_ps`, one lane, with the FMA contractions of the shipped binary.
    @inline(__always)
    static func cephesLog(_ x0: Float) -> Float {
        let invalid = x0 <= 0
        var x = Swift.max(x0, Float(bitPattern: 0x0080_0000))
        let imm0 = Int32(bitPattern: x.bitPattern >> 23) - 0x7f
        x = Float(bitPattern: (x.bitPattern & ~UInt32(0x7f80_0000)) | Float(0.5).bitPattern)
        var e = Float(imm0)
        e = e + 1.0
        let mask = x < Float(0.707106781186547524)
        let tmp: Float = mask ? x : 0
        x = x - 1.0
        e = e - (mask ? 1.0 : 0.0)
        x = x + tmp

        let z = x * x
        var y: Float = 7.0376836292E-2
        y = fma(y, x, -1.1514610310E-1)
        y = fma(y, x, 1.1676998740E-1)
        y = fma(y, x, -1.2420140846E-1)
        y = fma(y, x, 1.4249322787E-1)
        y = fma(y, x, -1.6668057665E-1)
        y = fma(y, x, 2.0000714765E-1)
        y = fma(y, x, -2.4999993993E-1)
        y = fma(y, x, 3.3333331174E-1)
        y = y * x
        let eq1 = e * Float(-2.12194440e-4)
        y = fma(y, z, eq1)
        y = fma(z, -0.5, y)
        x = x + y
        x = fma(e, 0.693359375, x)
        return invalid ? Float.nan : x
    }

    /// `sincos256_ps`, one lane, with the FMA contractions of the shipped binary.
    @inline(__always)
    static func cephesSinCos(_ theta: Float) -> (sin: Float, cos: Float) {
        var signSin = theta.bitPattern & 0x8000_0000
        var x = Float(bitPattern: theta.bitPattern & 0x7fff_ffff)
        let yf = x * Float(1.27323954473516)
        var j = Int32(yf)  // cvttps (inputs here are small and non-negative)
        j = (j &+ 1) & ~1
        let y = Float(j)
        let swapSignSin = UInt32(bitPattern: j & 4) << 29
        let polyMask = (j & 2) == 0
        let signCos = UInt32(bitPattern: ~(j &- 2) & 4) << 29
        signSin ^= swapSignSin

        x = fma(y, -0.78515625, x)
        x = fma(y, -2.4187564849853515625e-4, x)
        x = fma(y, -3.77489497744594108e-8, x)

        let z = x * x
        var yc = fma(Float(2.443315711809948E-5), z, -1.388731625493765E-3)
        yc = fma(yc, z, 4.166664568298827E-2)
        yc = yc * z
        let halfZ = z * 0.5
        yc = fma(yc, z, -halfZ)
        yc = yc + 1.0

        var ys = fma(Float(-1.9515295891E-4), z, 8.3321608736E-3)
        ys = fma(ys, z, -1.6666654611E-1)
        ys = ys * z
        ys = fma(ys, x, x)

        let sinV = polyMask ? ys : yc
        let cosV = polyMask ? yc : ys
        return (Float(bitPattern: sinV.bitPattern ^ signSin), Float(bitPattern: cosV.bitPattern ^ signCos))
    }
}
