import XCTest
import LeanDiffusion

/// A tokenizer folder as transformers 5's `save_pretrained` writes it (tokenizer.json + tokenizer_config.json, no
/// vocab.json / merges.txt): the same ids as transformers 5 with that folder (tools/make_tokenizer_json_fixture.py).
final class TokenizerJSONTests: XCTestCase {
    static let root = PipelineTests.fixtures.deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let fixture = PipelineTests.fixtures.deletingLastPathComponent().appendingPathComponent("tokenizer")

    struct Expected: Decodable { let ids: [[Int]] }

    func testTokenizerJSONOnlyFolder() throws {
        let tmp = TempDir()
        let src = Self.root.appendingPathComponent("Models/clip-tokenizer")
        // tokenizer.json as save_pretrained writes it: the vocabulary, merges as [a, b] pairs, the added tokens.
        let vocab = try String(contentsOf: src.appendingPathComponent("vocab.json"), encoding: .utf8)
        let merges = try String(contentsOf: src.appendingPathComponent("merges.txt"), encoding: .utf8)
            .split(separator: "\n").filter { !$0.hasPrefix("#version") }
            .map { line -> String in
                let p = line.split(separator: " ", omittingEmptySubsequences: false).map { String($0) }
                let data = try! JSONEncoder().encode(p)
                return String(decoding: data, as: UTF8.self)
            }
        let added = try String(contentsOf: Self.fixture.appendingPathComponent("json-only/added_tokens.json"), encoding: .utf8)
        let json = "{\"added_tokens\": \(added), \"model\": {\"type\": \"BPE\", \"vocab\": \(vocab), \"merges\": [\(merges.joined(separator: ","))]}}"
        try Data(json.utf8).write(to: URL(fileURLWithPath: tmp.file("tokenizer.json")))
        try FileManager.default.copyItem(atPath: Self.fixture.appendingPathComponent("json-only/tokenizer_config.json").path,
                                         toPath: tmp.file("tokenizer_config.json"))
        let tok = try CLIPTokenizer(directory: tmp.path)
        let prompts = try JSONDecoder().decode([String].self, from: Data(contentsOf: Self.fixture.appendingPathComponent("prompts.json")))
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: Self.fixture.appendingPathComponent("json-only/expected_ids.json")))
        XCTAssertEqual(prompts.count, expected.ids.count)
        var wrong = 0
        for (p, e) in zip(prompts, expected.ids) where tok.encode(p).map({ Int($0) }) != e {
            if wrong < 3 { print("tokenizer.json mismatch: \(p.debugDescription): \(tok.encode(p)) vs \(e)") }
            wrong += 1
        }
        XCTAssertEqual(wrong, 0, "\(wrong) of \(prompts.count) prompts differ from transformers 5")
    }
}
