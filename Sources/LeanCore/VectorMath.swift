/// Vector transcendental functions for the activation and softmax kernels. libm's scalar `expf` costs a call per
/// element, which on a UNet step's hundreds of millions of activations would rival the convolutions. These keep
/// relative error near 2e-7 (exp) and 1.2e-7 (erf), far inside the parity tolerances.
public typealias FloatV = SIMD16<Float>

public typealias IntV = SIMD16<Int32>

/// All-ones lanes where a < b (finite or infinite operands): the sign of a - b, spread by an arithmetic shift.
/// Written with integer SIMD ops because `SIMD.replacing(with:where:)` and `pointwiseMin/Max` compile to a loop
/// over lanes in -O builds, which made every activation several times slower.
@inline(__always)
public func lessMask(_ a: FloatV, _ b: FloatV) -> IntV {
    unsafeBitCast(a - b, to: IntV.self) &>> 31
}

/// `mask ? t : f` per lane, for masks from `lessMask`.
@inline(__always)
public func select(_ mask: IntV, _ t: FloatV, _ f: FloatV) -> FloatV {
    let ti = unsafeBitCast(t, to: IntV.self), fi = unsafeBitCast(f, to: IntV.self)
    return unsafeBitCast((ti & mask) | (fi & ~mask), to: FloatV.self)
}

@inline(__always) public func vmax(_ a: FloatV, _ b: FloatV) -> FloatV { select(lessMask(a, b), b, a) }
@inline(__always) public func vmin(_ a: FloatV, _ b: FloatV) -> FloatV { select(lessMask(a, b), a, b) }

/// exp(x); below -87.3 (where exp underflows f32's normal range) the result is exactly 0, including for -inf, which
/// lets softmax kernels exponentiate masked scores without a separate select.
@inline(__always)
public func vexp(_ x: FloatV) -> FloatV {
    let lo = FloatV(repeating: -87.3)
    let underflow = lessMask(x, lo)
    let xc = vmin(select(underflow, lo, x), FloatV(repeating: 88.7))
    // Round x·log2(e) to an integer with the 1.5·2^23 trick: the sum's low mantissa bits hold n.
    let magic: Float = 12582912
    let t = xc * 1.44269504088896341 + magic
    let n = t - magic
    var r = xc - n * 0.693359375
    r = r - n * (-2.12194440e-4)
    // Cephes expf polynomial.
    var p = FloatV(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let y = p * (r * r) + r + 1
    let ni = unsafeBitCast(t, to: IntV.self) &- Int32(bitPattern: magic.bitPattern)
    let scale = unsafeBitCast((ni &+ 127) &<< 23, to: FloatV.self)
    return select(underflow, FloatV(), y * scale)
}

@inline(__always)
public func vsigmoid(_ x: FloatV) -> FloatV { 1 / (1 + vexp(-x)) }

@inline(__always)
public func vtanh(_ x: FloatV) -> FloatV {
    let xc = vmax(vmin(x, FloatV(repeating: 15)), FloatV(repeating: -15))
    let e = vexp(2 * xc)
    return (e - 1) / (e + 1)
}

/// erf through erfc's Chebyshev fit (Numerical Recipes `erfcc`, fractional error < 1.2e-7).
@inline(__always)
public func verf(_ x: FloatV) -> FloatV {
    let sign = unsafeBitCast(x, to: IntV.self) & IntV(repeating: Int32(bitPattern: 0x8000_0000))
    let z = unsafeBitCast(unsafeBitCast(x, to: IntV.self) & IntV(repeating: 0x7FFF_FFFF), to: FloatV.self)
    let t = 1 / (1 + 0.5 * z)
    var p = FloatV(repeating: 0.17087277)
    p = p * t - 0.82215223
    p = p * t + 1.48851587
    p = p * t - 1.13520398
    p = p * t + 0.27886807
    p = p * t - 0.18628806
    p = p * t + 0.09678418
    p = p * t + 0.37409196
    p = p * t + 1.00002368
    p = p * t - 1.26551223
    let erfc = t * vexp(-z * z + p)
    // erf is odd: copy x's sign onto the non-negative result.
    return unsafeBitCast(unsafeBitCast(1 - erfc, to: IntV.self) | sign, to: FloatV.self)
}

/// Scalar versions for tails, sharing the vector code so results do not depend on position.
@inline(__always) func sexp(_ x: Float) -> Float { vexp(FloatV(repeating: x))[0] }
