/// Element conversion to `Float`.
///
/// Done with explicit bit manipulation instead of `Float16` because `Float16`
/// is unavailable on macOS/x86_64 and the loaders must behave identically everywhere.
public enum SafeTensorsConversion {
    /// IEEE binary16 bits to Float; exact for every input, NaN payloads preserved.
    @inlinable
    public static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = UInt32(h >> 10) & 0x1F
        let mant = UInt32(h & 0x3FF)
        if exp == 0 {
            if mant == 0 { return Float(bitPattern: sign) }
            let v = Float(mant) * 0x1p-24  // subnormal: mant * 2^-24, exact in Float
            return sign != 0 ? -v : v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
        return Float(bitPattern: sign | ((exp + 112) << 23) | (mant << 13))
    }

    /// bfloat16 is the top half of a binary32, so the conversion is a shift.
    @inlinable
    public static func bfloat16ToFloat(_ b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) << 16)
    }

    /// OCP FP8 E4M3 ("fn" variant: no infinities, S.1111.111 is NaN).
    @inlinable
    public static func e4m3ToFloat(_ b: UInt8) -> Float {
        let negative = b & 0x80 != 0
        let exp = Int((b >> 3) & 0xF)
        let mant = Float(b & 0x7)
        let v: Float
        if exp == 0xF && b & 0x7 == 0x7 { v = .nan }
        else if exp == 0 { v = mant * 0x1p-9 }
        else { v = (1 + mant / 8) * Float(sign: .plus, exponent: exp - 7, significand: 1) }
        return negative ? -v : v
    }

    /// FP8 E5M2 is binary16 with the low mantissa byte dropped.
    @inlinable
    public static func e5m2ToFloat(_ b: UInt8) -> Float {
        halfToFloat(UInt16(b) << 8)
    }

    /// Converts little-endian elements of `dtype`; `bytes.count` must be a multiple
    /// of the element size (trailing partial elements are ignored).
    public static func floats(from bytes: UnsafeRawBufferPointer, dtype: SafeTensorsDType) -> [Float] {
        let n = bytes.count / dtype.byteSize
        return [Float](unsafeUninitializedCapacity: n) { out, initialized in
            func load<T: FixedWidthInteger>(_ k: Int, _: T.Type) -> T {
                T(littleEndian: bytes.loadUnaligned(fromByteOffset: k * MemoryLayout<T>.size, as: T.self))
            }
            switch dtype {
            case .F32:
                #if _endian(little)
                if n > 0 { UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: bytes.baseAddress!, byteCount: n * 4) }
                #else
                for k in 0..<n { out[k] = Float(bitPattern: load(k, UInt32.self)) }
                #endif
            case .F64: for k in 0..<n { out[k] = Float(Double(bitPattern: load(k, UInt64.self))) }
            case .F16: for k in 0..<n { out[k] = halfToFloat(load(k, UInt16.self)) }
            case .BF16: for k in 0..<n { out[k] = bfloat16ToFloat(load(k, UInt16.self)) }
            case .F8_E4M3: for k in 0..<n { out[k] = e4m3ToFloat(bytes[k]) }
            case .F8_E5M2: for k in 0..<n { out[k] = e5m2ToFloat(bytes[k]) }
            case .I64: for k in 0..<n { out[k] = Float(Int64(bitPattern: load(k, UInt64.self))) }
            case .I32: for k in 0..<n { out[k] = Float(Int32(bitPattern: load(k, UInt32.self))) }
            case .I16: for k in 0..<n { out[k] = Float(Int16(bitPattern: load(k, UInt16.self))) }
            case .I8: for k in 0..<n { out[k] = Float(Int8(bitPattern: bytes[k])) }
            case .U64: for k in 0..<n { out[k] = Float(load(k, UInt64.self)) }
            case .U32: for k in 0..<n { out[k] = Float(load(k, UInt32.self)) }
            case .U16: for k in 0..<n { out[k] = Float(load(k, UInt16.self)) }
            case .U8: for k in 0..<n { out[k] = Float(bytes[k]) }
            case .BOOL: for k in 0..<n { out[k] = bytes[k] != 0 ? 1 : 0 }
            }
            initialized = n
        }
    }
}
