import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Per-test scratch directory, removed afterwards.
final class TempDir {
    let path: String
    init() {
        var template = Array("/tmp/lean-diffusion-test-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = String(cString: p!)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { path + "/" + name }
}

@discardableResult
func writeFile(_ path: String, _ bytes: [UInt8]) -> String {
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
    return path
}

func writeText(_ path: String, _ text: String) { writeFile(path, Array(text.utf8)) }

func makeDir(_ path: String) { try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
