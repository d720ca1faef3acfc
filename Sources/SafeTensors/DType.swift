/// Element types that can appear in a safetensors header.
///
/// Raw values are the exact spellings used by the format, so an unknown spelling
/// is a validation error rather than a silent fallback.
public enum SafeTensorsDType: String, CaseIterable, Sendable, Codable {
    case F64, F32, F16, BF16
    case F8_E4M3, F8_E5M2
    case I64, I32, I16, I8
    case U64, U32, U16, U8
    case BOOL

    /// Bytes per element; the header's byte ranges are checked against this.
    public var byteSize: Int {
        switch self {
        case .F64, .I64, .U64: return 8
        case .F32, .I32, .U32: return 4
        case .F16, .BF16, .I16, .U16: return 2
        case .F8_E4M3, .F8_E5M2, .I8, .U8, .BOOL: return 1
        }
    }

    /// True for the types `SafeTensorsFile.floats` is normally used with; other
    /// numeric types still convert, but lossy for large 64-bit integers.
    public var isFloatingPoint: Bool {
        switch self {
        case .F64, .F32, .F16, .BF16, .F8_E4M3, .F8_E5M2: return true
        default: return false
        }
    }
}
