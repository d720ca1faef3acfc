import XCTest
import LeanDiffusion
import SafeTensors

/// Shared by the error tests: scratch copies of the tiny pipeline to damage, JSON edits, error matching.
enum ErrorTestSupport {
    static let sd1 = PipelineTests.fixtures.appendingPathComponent("sd1-tiny").path

    /// A scratch copy of sd1-tiny, removed when `test` ends.
    static func scratchCopy(_ test: XCTestCase) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lean-err-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for item in ["model_index.json", "scheduler", "tokenizer", "text_encoder", "unet", "vae"] {
            try FileManager.default.copyItem(atPath: sd1 + "/" + item, toPath: dir + "/" + item)
        }
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// Rewrites `key` of the JSON object in `path` (nil removes it); `raw` is inserted as JSON text.
    static func setField(_ path: String, _ key: String, raw: String?) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
        object.removeValue(forKey: key)
        var json = String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
        if let raw {
            json.removeLast()  // "}"
            json += (object.isEmpty ? "" : ",") + "\"\(key)\": \(raw)}"
        }
        try json.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Rewrites one tensor of a safetensors file (F32 / F16 data) with `transform` applied to its floats.
    static func editTensor(_ path: String, _ name: String, _ transform: (inout [Float]) -> Void) throws {
        let file = try SafeTensorsFile(path: path)
        var tensors: [SafeTensorsWriter.Tensor] = []
        for info in file.tensors {
            var data = try file.copyBytes(info.name)
            if info.name == name {
                var f = try file.floats(name)
                transform(&f)
                switch info.dtype {
                case .F32: data = f.withUnsafeBytes { Array($0) }
                case .F16: data = f.map { Float16($0) }.withUnsafeBytes { Array($0) }
                default: fatalError("test helper: \(info.dtype) not handled")
                }
            }
            tensors.append((name: info.name, dtype: info.dtype, shape: info.shape, data: data))
        }
        try SafeTensorsWriter.write(tensors, to: path)
    }

    static func tinyRequest(steps: Int = 2) -> GenerationRequest {
        var r = GenerationRequest(prompt: "a red circle")
        r.steps = steps
        r.width = 64
        r.height = 64
        r.seed = 1
        return r
    }
}

extension XCTestCase {
    /// Fails unless `body` throws an error whose description contains every string of `expected`; returns the text.
    @discardableResult
    func expectError(_ expected: String..., file: StaticString = #filePath, line: UInt = #line,
                     _ body: () throws -> Void) -> String {
        do {
            try body()
            XCTFail("expected an error mentioning \(expected)", file: file, line: line)
            return ""
        } catch {
            let text = "\(error)"
            for e in expected {
                XCTAssert(text.contains(e), "error '\(text)' does not mention '\(e)'", file: file, line: line)
            }
            return text
        }
    }
}
