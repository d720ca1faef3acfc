#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every failure carries the file it concerns, because loaders open many weight
/// files and an error without a path is useless in a log.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        // I/O
        case openFailed(errno: Int32)
        /// A directory where a .safetensors file should be.
        case notRegularFile
        /// A FIFO, device or socket where a .safetensors file should be (`kind` says which).
        case specialFile(kind: String)
        case statFailed(errno: Int32)
        case mmapFailed(errno: Int32)
        case readFailed(errno: Int32)
        case writeFailed(errno: Int32)
        case unexpectedEndOfFile
        // Framing
        case fileTooSmall(size: Int)
        case headerLengthZero
        case headerTooLarge(length: UInt64, limit: Int)
        case headerBeyondFileEnd(length: UInt64, fileSize: Int)
        // Header JSON
        case headerNotUTF8(offset: Int)
        case invalidJSON(offset: Int, reason: String)
        case duplicateKey(String)
        case topLevelNotObject
        // Tensor entries
        case entryNotObject(tensor: String)
        case missingField(tensor: String, field: String)
        case dtypeNotString(tensor: String)
        case unknownDType(tensor: String, dtype: String)
        case shapeNotArray(tensor: String)
        case nonIntegerDimension(tensor: String, index: Int, value: String)
        case negativeDimension(tensor: String, index: Int, value: Int)
        case shapeOverflow(tensor: String)
        case invalidDataOffsets(tensor: String, reason: String)
        case offsetsReversed(tensor: String, begin: Int, end: Int)
        case dataOutOfBounds(tensor: String, end: Int, dataSize: Int)
        case byteLengthMismatch(tensor: String, expected: Int, actual: Int)
        case overlappingTensors(String, String)
        case gapInData(before: String, offset: Int, expected: Int)
        case trailingData(used: Int, dataSize: Int)
        case invalidMetadata(reason: String)
        // Access
        case tensorNotFound(String)
        case bufferSizeMismatch(tensor: String, expected: Int, actual: Int)
        // Writer
        case invalidTensorForWrite(tensor: String, reason: String)
        // Inspector
        case pathNotFound
        case noWeights
        case invalidConfig(reason: String)
    }

    public let path: String
    public let kind: Kind

    public init(path: String, _ kind: Kind) {
        self.path = path
        self.kind = kind
    }

    public var description: String { "\(path): \(message)" }

    public var message: String {
        switch kind {
        case .openFailed(let e): return "cannot open file (\(errnoText(e)))"
        case .notRegularFile: return "is a directory, not a .safetensors file"
        case .specialFile(let kind): return "is \(kind), not a regular file; replace it with the .safetensors file itself"
        case .statFailed(let e): return "cannot stat file (\(errnoText(e)))"
        case .mmapFailed(let e): return "cannot memory-map file (\(errnoText(e)))"
        case .readFailed(let e): return "read failed (\(errnoText(e)))"
        case .writeFailed(let e): return "write failed (\(errnoText(e)))"
        case .unexpectedEndOfFile: return "file ended before the expected number of bytes could be read (was it truncated?)"
        case .fileTooSmall(let size): return "file is \(size) bytes; a safetensors file needs at least 8 bytes for the header length"
        case .headerLengthZero: return "header length is 0"
        case .headerTooLarge(let n, let limit): return "header length \(n) exceeds the \(limit)-byte limit"
        case .headerBeyondFileEnd(let n, let size): return "header length \(n) runs past the end of the \(size)-byte file (truncated download?)"
        case .headerNotUTF8(let off): return "header is not valid UTF-8 (at header byte \(off))"
        case .invalidJSON(let off, let reason): return "header is not valid JSON at header byte \(off): \(reason)"
        case .duplicateKey(let k): return "header contains duplicate key \(quoted(k))"
        case .topLevelNotObject: return "header JSON is not an object"
        case .entryNotObject(let t): return "entry \(quoted(t)) is not an object"
        case .missingField(let t, let f): return "tensor \(quoted(t)) is missing \"\(f)\""
        case .dtypeNotString(let t): return "tensor \(quoted(t)) has a dtype that is not a string"
        case .unknownDType(let t, let d): return "tensor \(quoted(t)) has unknown dtype \(quoted(d))"
        case .shapeNotArray(let t): return "tensor \(quoted(t)) has a shape that is not an array"
        case .nonIntegerDimension(let t, let i, let v): return "tensor \(quoted(t)) shape[\(i)] = \(v) is not an integer"
        case .negativeDimension(let t, let i, let v): return "tensor \(quoted(t)) shape[\(i)] = \(v) is negative"
        case .shapeOverflow(let t): return "tensor \(quoted(t)) shape is too large (element or byte count overflows)"
        case .invalidDataOffsets(let t, let r): return "tensor \(quoted(t)) data_offsets \(r); expected [begin, end]"
        case .offsetsReversed(let t, let b, let e): return "tensor \(quoted(t)) data_offsets [\(b), \(e)] has begin > end"
        case .dataOutOfBounds(let t, let e, let size): return "tensor \(quoted(t)) ends at data byte \(e), beyond the \(size)-byte data section (truncated file?)"
        case .byteLengthMismatch(let t, let exp, let act): return "tensor \(quoted(t)) spans \(act) bytes but shape and dtype require \(exp)"
        case .overlappingTensors(let a, let b): return "tensors \(quoted(a)) and \(quoted(b)) have overlapping data ranges"
        case .gapInData(let t, let off, let exp): return "tensor \(quoted(t)) starts at data byte \(off) but the previous tensor ended at \(exp); the data section must have no holes"
        case .trailingData(let used, let size): return "tensors cover \(used) bytes but the data section has \(size); unindexed trailing bytes"
        case .invalidMetadata(let r): return "__metadata__ \(r); it must be an object of string to string"
        case .tensorNotFound(let t): return "no tensor named \(quoted(t))"
        case .bufferSizeMismatch(let t, let exp, let act): return "tensor \(quoted(t)) has \(exp) bytes but the destination buffer has \(act)"
        case .invalidTensorForWrite(let t, let r): return "cannot write tensor \(quoted(t)): \(r)"
        case .pathNotFound: return "no such file or directory"
        case .noWeights: return "no .safetensors weight files found"
        case .invalidConfig(let r): return "invalid config: \(r)"
        }
    }
}

func quoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where scalar.value < 0x20 || scalar.value == 0x7f:
            out += "\\u{\(String(scalar.value, radix: 16))}"
        default: out.unicodeScalars.append(scalar)
        }
    }
    if out.count > 200 { out = String(out.prefix(197)) + "..." }
    return out + "\""
}

func errnoText(_ e: Int32) -> String {
    if let p = strerror(e) { return "errno \(e): \(String(cString: p))" }
    return "errno \(e)"
}
