/// Element types the runtime stores. Compute in the Swift kernels is always f32; half types are converted in
/// registers (bf16 is a truncated f32, f16 goes through the hardware F16C conversion).
public enum DType: String, Sendable, CaseIterable, CustomStringConvertible {
    case f32, f16, bf16

    public var byteSize: Int { self == .f32 ? 4 : 2 }
    public var description: String { rawValue }
}

/// Physical order of a 4-D activation. Shapes are always given logically as (N, C, H, W); the layout only says how
/// the elements sit in memory, so model code never changes when the policy picks channels-last.
public enum Layout: String, Sendable, CaseIterable {
    case nchw, nhwc
}

@inline(__always) public func bf16Bits(_ x: Float) -> UInt16 {
    // Round to nearest even, as torch and oneDNN do; NaN stays NaN.
    let b = x.bitPattern
    if x.isNaN { return UInt16(truncatingIfNeeded: (b >> 16) | 0x40) }
    let rounding = ((b >> 16) & 1) &+ 0x7FFF
    return UInt16(truncatingIfNeeded: (b &+ rounding) >> 16)
}

@inline(__always) public func floatFromBF16(_ h: UInt16) -> Float {
    Float(bitPattern: UInt32(h) << 16)
}

/// Bulk conversions between storage types and f32 working buffers.
public enum Convert {
    public static func toFloat(_ src: UnsafeRawPointer, _ dtype: DType, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        switch dtype {
        case .f32: dst.update(from: src.assumingMemoryBound(to: Float.self), count: n)
        case .bf16:
            let s = src.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { dst[i] = floatFromBF16(s[i]) }
        case .f16:
            let s = src.assumingMemoryBound(to: Float16.self)
            for i in 0..<n { dst[i] = Float(s[i]) }
        }
    }

    public static func fromFloat(_ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, _ dtype: DType, _ n: Int) {
        switch dtype {
        case .f32: dst.assumingMemoryBound(to: Float.self).update(from: src, count: n)
        case .bf16:
            let d = dst.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { d[i] = bf16Bits(src[i]) }
        case .f16:
            let d = dst.assumingMemoryBound(to: Float16.self)
            for i in 0..<n { d[i] = Float16(src[i]) }
        }
    }
}
