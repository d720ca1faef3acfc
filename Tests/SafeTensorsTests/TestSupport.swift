import XCTest
@testable import SafeTensors
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Per-test scratch directory, removed afterwards.
final class TempDir {
    let path: String
    init() {
        var template = Array("/tmp/safetensors-test-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = String(cString: p!)
    }
    deinit { _ = system("rm -rf '\(path)'") }
    func file(_ name: String) -> String { path + "/" + name }
}

@discardableResult
func writeFile(_ path: String, _ bytes: [UInt8]) -> String {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "open \(path)")
    bytes.withUnsafeBytes { b in
        var done = 0
        while done < b.count { done += write(fd, b.baseAddress! + done, b.count - done) }
    }
    close(fd)
    return path
}

func writeText(_ path: String, _ text: String) { writeFile(path, Array(text.utf8)) }

func makeDir(_ path: String) { mkdir(path, 0o755) }

/// Builds a file image from raw header text without any of the writer's checks.
func rawFile(_ json: String, data: [UInt8] = [], headerLength: UInt64? = nil) -> [UInt8] {
    let j = Array(json.utf8)
    var out: [UInt8] = []
    withUnsafeBytes(of: (headerLength ?? UInt64(j.count)).littleEndian) { out.append(contentsOf: $0) }
    out += j
    out += data
    return out
}

func rawFile(_ jsonBytes: [UInt8], data: [UInt8] = []) -> [UInt8] {
    var out: [UInt8] = []
    withUnsafeBytes(of: UInt64(jsonBytes.count).littleEndian) { out.append(contentsOf: $0) }
    return out + jsonBytes + data
}

/// Deterministic PRNG (SplitMix64) so mutation tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func floatBytes(_ v: [Float]) -> [UInt8] { SafeTensorsWriter.littleEndianBytes(v) }

func u16Bytes(_ v: [UInt16]) -> [UInt8] {
    v.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
}
