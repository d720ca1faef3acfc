#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Testing
import LeanDiffusion

/// Parity of `CLIPTokenizer` with transformers 5's (tokenizers-backed) CLIPTokenizer on the real CLIP
/// vocabulary in Models/clip-tokenizer, and on folders differing from it in their config files only.
/// Fixtures come from tools/make_tokenizer_fixtures.py.
@Suite struct TokenizerTests {
    static let repoRoot: String = {
        // <root>/Tests/LeanDiffusionTests/TokenizerTests.swift
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()
    static let vocabDir = repoRoot + "/Models/clip-tokenizer"
    static let fixtureDir = repoRoot + "/Tests/LeanDiffusionTests/Fixtures/tokenizer"

    struct Expected: Decodable {
        var ids: [[Int]]
        var variants: [Variant]
    }

    /// A tokenizer folder with Models/clip-tokenizer's vocabulary and other config files; `ids` holds the
    /// prompts (by index) whose ids differ from the base ones.
    struct Variant: Decodable {
        var name: String
        var tokenizer_config: String
        var special_tokens_map: String?
        var pad_token_id: Int
        var ids: [String: [Int]]
    }

    static func loadFixtures() throws -> (prompts: [String], expected: Expected) {
        let prompts = try JSONDecoder().decode(
            [String].self, from: Data(contentsOf: URL(fileURLWithPath: fixtureDir + "/prompts.json")))
        let expected = try JSONDecoder().decode(
            Expected.self, from: Data(contentsOf: URL(fileURLWithPath: fixtureDir + "/expected_ids.json")))
        return (prompts, expected)
    }

    /// A temp copy of the tokenizer folder with the given tokenizer_config.json (SD 2.x style).
    static func makeTempTokenizer(config: String, specialTokensMap: String? = nil) throws -> String {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.path + "/clip-tok-\(UInt64.random(in: 0...UInt64.max))"
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for name in ["vocab.json", "merges.txt"] {
            try fm.copyItem(atPath: vocabDir + "/" + name, toPath: dir + "/" + name)
        }
        try Data(config.utf8).write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
        if let map = specialTokensMap {
            try Data(map.utf8).write(to: URL(fileURLWithPath: dir + "/special_tokens_map.json"))
        }
        return dir
    }

    @Test func astronautExample() throws {
        let tok = try CLIPTokenizer(directory: Self.vocabDir)
        #expect(tok.vocabularySize == 49408)
        #expect(tok.bosTokenId == 49406 && tok.eosTokenId == 49407 && tok.padTokenId == 49407)
        #expect(tok.maxLength == 77)
        let ids = tok.encode("a photo of an astronaut riding a horse on mars")
        #expect(ids == [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407])
        let padded = tok.encodePadded("a photo of an astronaut riding a horse on mars")
        #expect(padded.count == 77)
        #expect(padded.prefix(12).map(Int.init) == ids)
        #expect(padded.dropFirst(12).allSatisfy { $0 == 49407 })
        #expect(tok.encode("") == [49406, 49407])
        #expect(tok.encode("   \t\n") == [49406, 49407])
    }

    @Test func fixturePromptsMatchTransformers() throws {
        let tok = try CLIPTokenizer(directory: Self.vocabDir)
        let (prompts, expected) = try Self.loadFixtures()
        #expect(prompts.count >= 1000)
        #expect(prompts.count == expected.ids.count)
        var mismatches: [String] = []
        for (i, prompt) in prompts.enumerated() {
            let got = tok.encode(prompt)
            if got != expected.ids[i] {
                mismatches.append("#\(i) \(prompt.debugDescription.prefix(80)): got \(got) want \(expected.ids[i])")
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) of \(prompts.count) mismatched:\n\(mismatches.prefix(20).joined(separator: "\n"))")
    }

    @Test func truncationKeepsEos() throws {
        let tok = try CLIPTokenizer(directory: Self.vocabDir)
        let long = Array(repeating: "word", count: 200).joined(separator: " ")
        let ids = tok.encode(long)
        #expect(ids.count == 77 && ids.first == 49406 && ids.last == 49407)
        #expect(tok.tokenIds(long).count == 200)
        #expect(tok.encodePadded(long).count == 77)
        let short = tok.encodePadded("a cat", length: 8)
        #expect(short == [49406, 320, 2368, 49407, 49407, 49407, 49407, 49407])
        #expect(tok.encodePadded(long, length: 5) == [49406, 2653, 2653, 2653, 49407])
    }

    /// SD 2.x's pad "!" (id 0, split off like a special token), special tokens given as strings or dictionaries,
    /// `normalized` flags (which make "<|ENDOFTEXT|>" the eos token or not), `added_tokens_decoder`.
    @Test func configVariantsMatchTransformers() throws {
        let (prompts, expected) = try Self.loadFixtures()
        #expect(expected.variants.count >= 8)
        for variant in expected.variants {
            let dir = try Self.makeTempTokenizer(config: variant.tokenizer_config, specialTokensMap: variant.special_tokens_map)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let tok = try CLIPTokenizer(directory: dir)
            #expect(tok.padTokenId == variant.pad_token_id, "\(variant.name)")
            #expect(tok.maxLength == 77)
            let padded = tok.encodePadded("a photo of an astronaut riding a horse on mars")
            #expect(padded.count == 77)
            #expect(padded.prefix(12).map(Int.init) == [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407])
            #expect(padded.dropFirst(12).allSatisfy { Int($0) == variant.pad_token_id })
            var mismatches: [String] = []
            for (i, prompt) in prompts.enumerated() {
                let want = variant.ids[String(i)] ?? expected.ids[i]
                let got = tok.encode(prompt)
                if got != want { mismatches.append("#\(i) \(prompt.debugDescription.prefix(60)): got \(got) want \(want)") }
            }
            #expect(mismatches.isEmpty, "\(variant.name): \(mismatches.count) mismatched:\n\(mismatches.prefix(10).joined(separator: "\n"))")
        }
    }

    /// Examples of what changed with transformers 5 (tokenizers) against the slow tokenizer of transformers 4.
    @Test func fastTokenizerBehaviour() throws {
        let tok = try CLIPTokenizer(directory: Self.vocabDir)
        // CJK is no longer split per ideograph.
        #expect(tok.encode("東京") == [49406, 48338, 21078, 361, 49407])
        #expect(tok.encode("夜景") == [49406, 23170, 250, 48132, 363, 49407])
        // Control and zero-width characters are kept (byte-level), not dropped.
        #expect(tok.encode("a\u{0}b") == [49406, 320, 444, 321, 49407])
        #expect(tok.encode("zero\u{200B}width") == [49406, 5848, 9844, 23571, 49407])
        // Lowercasing per scalar: no final sigma.
        #expect(tok.encode("ΟΔΟΣ") == [49406, 138, 123, 138, 112, 138, 123, 139, 481, 49407])
        // SD 1.x's eos is not normalised: an upper-case variant is text, and the literal is cut in three.
        #expect(tok.encode("<|ENDOFTEXT|>") == [49406, 27, 347, 40786, 4160, 91, 285, 49407])
        #expect(tok.encode("<|STARTOFTEXT|>") == [49406, 49406, 49407])
        #expect(tok.maxTokenId == 49407)
    }

    /// An `added_tokens_decoder` entry vocab.json lacks (a textual-inversion token) gets the next id.
    @Test func addedTokenBeyondVocabulary() throws {
        let (_, expected) = try Self.loadFixtures()
        let variant = try #require(expected.variants.first { $0.name == "added-token-beyond-vocab" })
        let dir = try Self.makeTempTokenizer(config: variant.tokenizer_config, specialTokensMap: variant.special_tokens_map)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tok = try CLIPTokenizer(directory: dir)
        #expect(tok.maxTokenId == 49408)
        #expect(tok.encode("a <CAT-TOY> on a beach") == [49406, 320, 49408, 525, 320, 2117, 49407])
    }

    /// transformers refuses a special token given as a dictionary without "__type" in tokenizer_config.json
    /// (TypeError); it is accepted here, as an AddedToken.
    @Test func plainDictionarySpecialTokens() throws {
        let config = #"{"pad_token": {"content": "!", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false}, "bos_token": {"content": "<|startoftext|>"}}"#
        let dir = try Self.makeTempTokenizer(config: config)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tok = try CLIPTokenizer(directory: dir)
        #expect(tok.padTokenId == 0 && tok.bosTokenId == 49406 && tok.maxLength == 77)
        #expect(tok.encode("hi!!") == [49406, 1883, 0, 0, 49407])
    }

    /// merges.txt as tokenizers reads it: two tokens separated by one space, all three in the vocabulary.
    @Test func malformedMergesErrors() throws {
        let dir = try Self.makeTempTokenizer(config: #"{"model_max_length": 77}"#)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/merges.txt"
        let original = try String(contentsOfFile: path, encoding: .utf8)
        for (text, needle) in [("#version: 0.2\ni n\nt h h\n", "line 3"), ("#version: 0.2\ni n\nq\u{263A} x\n", "not in vocab.json"),
                               ("#version: 0.2\n\ni n\n", "line 2"), ("#version: 0.2\n", "no merges")] {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            do {
                _ = try CLIPTokenizer(directory: dir)
                Issue.record("expected an error for \(text.debugDescription)")
            } catch let error as CLIPTokenizerError {
                guard case .malformedFile(let p, let reason) = error else {
                    Issue.record("wrong error \(error)")
                    continue
                }
                #expect(p == path && reason.contains(needle), "\(reason)")
            }
        }
        // CRLF line ends are accepted (Rust's lines()), with the same ids.
        try Data(original.replacingOccurrences(of: "\n", with: "\r\n").utf8).write(to: URL(fileURLWithPath: path))
        let tok = try CLIPTokenizer(directory: dir)
        #expect(tok.encode("a photo of an astronaut") == [49406, 320, 1125, 539, 550, 18376, 49407])
    }

    @Test func missingFolderError() throws {
        let dir = "/nonexistent/clip-tokenizer-folder"
        do {
            _ = try CLIPTokenizer(directory: dir)
            Issue.record("expected an error")
        } catch let error as CLIPTokenizerError {
            guard case .missingFile(let path) = error else {
                Issue.record("wrong error \(error)")
                return
            }
            #expect(path.hasPrefix(dir))
            #expect(error.description.contains(dir))
        }
    }

    @Test func malformedVocabError() throws {
        let dir = try Self.makeTempTokenizer(config: #"{"pad_token": "!"}"#)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("{\"a\": 1,".utf8).write(to: URL(fileURLWithPath: dir + "/vocab.json"))
        #expect(throws: CLIPTokenizerError.self) { _ = try CLIPTokenizer(directory: dir) }
        do {
            _ = try CLIPTokenizer(directory: dir)
        } catch let error as CLIPTokenizerError {
            guard case .malformedFile(let path, _) = error else {
                Issue.record("wrong error \(error)")
                return
            }
            #expect(path == dir + "/vocab.json")
        }
        try Data("not json".utf8).write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
        #expect(throws: CLIPTokenizerError.malformedFile(path: dir + "/tokenizer_config.json", reason: "")) {
            do { _ = try CLIPTokenizer(directory: dir) } catch CLIPTokenizerError.malformedFile(let path, _) {
                throw CLIPTokenizerError.malformedFile(path: path, reason: "")
            }
        }
    }

    @Test func speed() throws {
        let clock = ContinuousClock()
        var tok: CLIPTokenizer?
        let load = try clock.measure { tok = try CLIPTokenizer(directory: Self.vocabDir) }
        let (prompts, _) = try Self.loadFixtures()
        var total = 0
        let run = clock.measure {
            for p in prompts.prefix(1000) { total += tok!.encode(p).count }
        }
        print("CLIPTokenizer: load \(load), 1000 prompts \(run) (\(total) ids)")
        // Loose bounds so that debug builds pass; release is far below (see report).
        #expect(load < .seconds(10))
        #expect(run < .seconds(10))
    }
}
