#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes safetensors files byte-compatible with the reference implementation's
/// layout rules (8-byte aligned, space-padded header; contiguous data), so files
/// we produce load everywhere and pass our own strict reader.
public enum SafeTensorsWriter {
    public typealias Tensor = (name: String, dtype: SafeTensorsDType, shape: [Int], data: [UInt8])

    /// Validates tensors and builds the padded header (including the 8-byte length
    /// prefix). Tensors are laid out in the given order.
    public static func header(for tensors: [(name: String, dtype: SafeTensorsDType, shape: [Int], byteCount: Int)],
                              metadata: [String: String]?, path: String = "<memory>") throws -> [UInt8] {
        var json = "{"
        var first = true
        if let metadata {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",")
            json += "}"
            first = false
        }
        var seen: Set<String> = []
        var offset = 0
        for t in tensors {
            func bad(_ r: String) -> SafeTensorsError { SafeTensorsError(path: path, .invalidTensorForWrite(tensor: t.name, reason: r)) }
            if t.name == "__metadata__" { throw bad("the name is reserved") }
            if !seen.insert(t.name).inserted { throw bad("duplicate name") }
            var elements = 1
            for d in t.shape {
                if d < 0 { throw bad("negative dimension") }
                let (p, o) = elements.multipliedReportingOverflow(by: d)
                if o { throw bad("shape overflows") }
                elements = p
            }
            let (expected, o) = elements.multipliedReportingOverflow(by: t.dtype.byteSize)
            if o { throw bad("shape overflows") }
            if expected != t.byteCount { throw bad("has \(t.byteCount) data bytes but shape and dtype need \(expected)") }
            if !first { json += "," }
            first = false
            let shape = t.shape.map(String.init).joined(separator: ",")
            json += "\(jsonString(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + t.byteCount)]}"
            offset += t.byteCount
        }
        json += "}"
        var bytes = Array(json.utf8)
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - bytes.count % 8) % 8))
        var out = [UInt8]()
        out.reserveCapacity(8 + bytes.count)
        withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: bytes)
        return out
    }

    /// A complete file image in memory (tests, fuzzing, small files).
    public static func serialize(_ tensors: [Tensor], metadata: [String: String]? = nil) throws -> [UInt8] {
        var out = try header(for: tensors.map { ($0.name, $0.dtype, $0.shape, $0.data.count) }, metadata: metadata)
        for t in tensors { out.append(contentsOf: t.data) }
        return out
    }

    /// Writes to a temporary file next to `path` and renames it into place, so a
    /// crash never leaves a truncated file that looks like a valid checkpoint.
    public static func write(_ tensors: [Tensor], metadata: [String: String]? = nil, to path: String) throws {
        let head = try header(for: tensors.map { ($0.name, $0.dtype, $0.shape, $0.data.count) }, metadata: metadata, path: path)
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SafeTensorsError(path: tmp, .openFailed(errno: errno)) }
        var ok = false
        defer {
            if !ok { close(fd); unlink(tmp) }
        }
        try writeAll(fd, head, path: tmp)
        for t in tensors { try writeAll(fd, t.data, path: tmp) }
        guard close(fd) == 0 else {
            let e = errno
            ok = true  // fd is closed either way
            unlink(tmp)
            throw SafeTensorsError(path: tmp, .writeFailed(errno: e))
        }
        ok = true
        guard rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            throw SafeTensorsError(path: path, .writeFailed(errno: e))
        }
    }

    /// F32 convenience: values are stored little-endian.
    public static func write(floats tensors: [(name: String, shape: [Int], values: [Float])],
                             metadata: [String: String]? = nil, to path: String) throws {
        try write(tensors.map { t in (t.name, SafeTensorsDType.F32, t.shape, littleEndianBytes(t.values)) }, metadata: metadata, to: path)
    }

    public static func littleEndianBytes(_ values: [Float]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        return out
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = sysWrite(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SafeTensorsError(path: path, .writeFailed(errno: errno))
                }
                done += n
            }
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

@inline(__always)
private func sysWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    write(fd, p, n)
}
