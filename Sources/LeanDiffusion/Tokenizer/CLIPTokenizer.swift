#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SafeTensors

/// Errors thrown while loading a CLIP tokenizer folder. Every case names the file involved.
public enum CLIPTokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A required file (vocab.json, merges.txt, tokenizer_config.json) does not exist.
    case missingFile(path: String)
    /// The file exists but could not be read.
    case unreadableFile(path: String, reason: String)
    /// The file was read but its contents are not what a CLIP tokenizer folder holds.
    case malformedFile(path: String, reason: String)

    public var description: String {
        switch self {
        case .missingFile(let path):
            return "CLIPTokenizer: missing file \(path)"
        case .unreadableFile(let path, let reason):
            return "CLIPTokenizer: cannot read \(path): \(reason)"
        case .malformedFile(let path, let reason):
            return "CLIPTokenizer: malformed \(path): \(reason)"
        }
    }
}

/// CLIP byte-level BPE tokenizer, giving the ids of transformers 5's `CLIPTokenizer.from_pretrained(folder)`:
/// the tokenizers-backed (Rust) tokenizer that today's diffusers loads, which is also the original CLIP's
/// behaviour without ftfy. Per text:
///
/// 1. split off the added tokens matched on the raw text (leftmost-longest, case-sensitive): the special tokens
///    whose `normalized` flag is false (see below);
/// 2. normalise each remaining piece: NFC, every run of `White_Space` scalars to one space, then lower-case
///    each scalar by its full mapping (`char::to_lowercase`: "İ" -> "i̇", "Σ" -> "σ" everywhere, no final sigma);
///    nothing is dropped: control, format, zero-width, private-use characters and U+FFFD stay;
/// 3. split off the added tokens whose `normalized` flag is true, matched on the normalised text (so
///    "<|STARTOFTEXT|>" is the bos token when bos is normalised);
/// 4. the CLIP split `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+`
///    (case-sensitive; whitespace is dropped), then the byte-level pre-tokenizer's GPT-2 split, which only cuts
///    the two literals into "<|", "startoftext" / "endoftext", "|>"; CJK text is not split per character;
/// 5. byte-level BPE of each piece with a `</w>` end-of-word suffix, merging the lowest-ranked pair, leftmost
///    first (tokenizers' `Word::merge_all`).
///
/// The special tokens bos, eos, unk and pad come from tokenizer_config.json, overridden by
/// special_tokens_map.json unless the config has `added_tokens_decoder` (transformers then ignores that file);
/// absent ones are CLIP's defaults. Each is an added token whose `normalized` flag is the one given in its
/// dictionary, else false (a plain string is false too); when two name the same text the later of bos, eos,
/// unk, pad wins, as transformers adds them in that order (SD 1.x's folders: `<|endoftext|>` not normalised,
/// since pad is the plain string; SD 2.x's: normalised, since pad is "!"). Entries of `added_tokens_decoder`
/// are added tokens too, with their id from vocab.json or, for text vocab.json lacks, the next id after it.
///
/// Known, documented limits: letters and numbers are those of Unicode 16.0 (the Oniguruma tables of tokenizers
/// 0.23): a scalar assigned later is neither (Swift's tables are newer); `lstrip`, `rstrip` and `single_word`
/// flags of added tokens are ignored (no CLIP folder sets them); a folder holding only tokenizer.json (what
/// transformers 5's `save_pretrained` writes) is read for its vocabulary, merges and added tokens. NFC is the
/// standard library's `String._nfcCodeUnits` (Foundation's `precomposedStringWithCanonicalMapping` where
/// FoundationEssentials is unavailable). The BPE memo is per call (no shared mutable state, so the struct is
/// trivially Sendable).
public struct CLIPTokenizer: Sendable {
    /// Sequence length the text encoder expects (77 for every Stable Diffusion CLIP).
    public let maxLength: Int
    public let bosTokenId: Int
    public let eosTokenId: Int
    public let padTokenId: Int
    public let unkTokenId: Int
    /// Number of entries in vocab.json.
    public let vocabularySize: Int
    /// The largest id `encode` can return (vocab.json's largest, or an added token's beyond it); the text
    /// encoder's vocab_size must exceed it.
    public var maxTokenId: Int { largestId }

    private let largestId: Int
    /// Symbol id of each byte as a non-final / final ("</w>") BPE symbol.
    private let byteSymbols: [Int32]
    private let byteEndSymbols: [Int32]
    /// (left << 32 | right) -> (rank << 32 | merged symbol).
    private let merges: [UInt64: UInt64]
    /// Symbols from here on are byte symbols vocab.json lacks (they never merge and encode as unk).
    private let firstExtraSymbol: Int
    /// Added tokens matched on the raw text / on the normalised text, longest first.
    private let rawAddedTokens: [AddedTokenPattern]
    private let normalizedAddedTokens: [AddedTokenPattern]

    private struct AddedTokenPattern: Sendable {
        var scalars: [Unicode.Scalar]
        var id: Int
    }

    /// Loads `vocab.json`, `merges.txt`, `tokenizer_config.json` and, when present and the config has no
    /// `added_tokens_decoder`, `special_tokens_map.json` (whose entries override the config's), as transformers 5.
    public init(directory: String) throws {
        let dir = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        let vocabPath = dir + "/vocab.json"
        let mergesPath = dir + "/merges.txt"
        let configPath = dir + "/tokenizer_config.json"
        let specialPath = dir + "/special_tokens_map.json"

        // Special tokens and length.
        var config = try Self.decode(TokenizerConfigFile.self, path: configPath)
        // tokenizer.json (what transformers 5's save_pretrained writes, often without vocab.json / merges.txt):
        // transformers then takes the vocabulary, the merges and, when the config has no added_tokens_decoder,
        // the added tokens from it; normaliser and pre-tokeniser stay CLIP's.
        let jsonPath = dir + "/tokenizer.json"
        let tokenizerJSON = Self.fileExists(jsonPath) ? try Self.decode(TokenizerJSONFile.self, path: jsonPath) : nil
        if let tokenizerJSON {
            guard tokenizerJSON.model.type == nil || tokenizerJSON.model.type == "BPE" else {
                throw CLIPTokenizerError.malformedFile(path: jsonPath, reason: "model type \(tokenizerJSON.model.type!) is not BPE")
            }
        }
        let configHasDecoder = config.added_tokens_decoder != nil
        if !configHasDecoder, let added = tokenizerJSON?.added_tokens, !added.isEmpty {
            var decoder: [String: TokenSpec] = [:]
            for t in added { decoder[String(t.id)] = TokenSpec(content: t.content, normalized: t.normalized, special: t.special) }
            config.added_tokens_decoder = decoder
        }
        var named: [NamedToken] = [
            NamedToken(spec: config.bos_token, defaultContent: "<|startoftext|>", fromMap: false),
            NamedToken(spec: config.eos_token, defaultContent: "<|endoftext|>", fromMap: false),
            NamedToken(spec: config.unk_token, defaultContent: "<|endoftext|>", fromMap: false),
            NamedToken(spec: config.pad_token, defaultContent: "<|endoftext|>", fromMap: false),
        ]
        if !configHasDecoder, Self.fileExists(specialPath) {
            let map = try Self.decode(TokenizerConfigFile.self, path: specialPath)
            for (k, spec) in [map.bos_token, map.eos_token, map.unk_token, map.pad_token].enumerated() {
                if let spec { named[k] = NamedToken(spec: spec, defaultContent: named[k].defaultContent, fromMap: true) }
            }
        }
        maxLength = try Self.maxLength(config.model_max_length, path: configPath)

        // Vocabulary.
        let vocab: [String: Int]
        if let fromJSON = tokenizerJSON?.model.vocab {
            vocab = fromJSON
        } else if let fast = Self.parseFlatIntObject(try Self.read(vocabPath)) {
            vocab = fast
        } else {
            do {
                vocab = try JSONDecoder().decode([String: Int].self, from: try Self.read(vocabPath))
            } catch {
                throw CLIPTokenizerError.malformedFile(path: vocabPath, reason: "invalid JSON (\(error))")
            }
        }
        vocabularySize = vocab.count
        let maxVocabId = vocab.values.max() ?? -1
        guard maxVocabId < Int(Int32.max) / 2, vocab.values.allSatisfy({ $0 >= 0 }) else {
            throw CLIPTokenizerError.malformedFile(path: vocabPath, reason: "token ids out of range")
        }

        // Added tokens: ids, and which are matched before / after normalisation.
        let added = Self.resolveAddedTokens(named: named, decoder: config.added_tokens_decoder)
        var addedIds: [String: Int] = [:]
        var raw: [AddedTokenPattern] = []
        var normalized: [AddedTokenPattern] = []
        var largest = maxVocabId
        var nextAddedId = vocab.count
        for token in added where addedIds[token.content] == nil {
            let id: Int
            if let known = vocab[token.content] {
                id = known
            } else {
                id = nextAddedId
                nextAddedId += 1
            }
            addedIds[token.content] = id
            largest = max(largest, id)
        }
        var finalFlag: [String: Bool] = [:]
        for token in added { finalFlag[token.content] = token.normalized }  // the last one added wins
        for (content, id) in addedIds {
            if finalFlag[content] == true {
                let pattern = Self.normalize(Array(content.unicodeScalars)[...])
                if !pattern.isEmpty { normalized.append(AddedTokenPattern(scalars: pattern, id: id)) }
            } else {
                raw.append(AddedTokenPattern(scalars: Array(content.unicodeScalars), id: id))
            }
        }
        let longestFirst = { (a: AddedTokenPattern, b: AddedTokenPattern) -> Bool in
            a.scalars.count != b.scalars.count ? a.scalars.count > b.scalars.count : a.id < b.id
        }
        rawAddedTokens = raw.sorted(by: longestFirst)
        normalizedAddedTokens = normalized.sorted(by: longestFirst)
        largestId = largest

        func namedId(_ k: Int, _ role: String) throws -> Int {
            let content = named[k].content
            guard vocab[content] != nil, let id = addedIds[content] else {
                throw CLIPTokenizerError.malformedFile(
                    path: vocabPath, reason: "\(role) token \"\(content)\" is not in the vocabulary")
            }
            return id
        }
        bosTokenId = try namedId(0, "bos")
        eosTokenId = try namedId(1, "eos")
        unkTokenId = try namedId(2, "unk")
        padTokenId = try namedId(3, "pad")

        // Byte symbols: vocab ids, plus extra ids (encoded as unk) for any byte vocab.json lacks.
        var nextSymbol = maxVocabId + 1
        firstExtraSymbol = nextSymbol
        func byteSymbol(_ s: String) -> Int32 {
            if let v = vocab[s] { return Int32(truncatingIfNeeded: v) }
            defer { nextSymbol += 1 }
            return Int32(truncatingIfNeeded: nextSymbol)
        }
        let byteChars = Self.bytesToUnicode()
        var bs = [Int32](repeating: 0, count: 256)
        var be = [Int32](repeating: 0, count: 256)
        for b in 0..<256 {
            let c = String(Character(byteChars[b]))
            bs[b] = byteSymbol(c)
            be[b] = byteSymbol(c + "</w>")
        }
        byteSymbols = bs
        byteEndSymbols = be
        if let lines = tokenizerJSON?.model.merges {
            merges = try Self.readMerges(Data(lines.joined(separator: "\n").utf8), path: jsonPath, vocab: vocab)
        } else {
            merges = try Self.readMerges(try Self.read(mergesPath), path: mergesPath, vocab: vocab)
        }
    }

    /// merges.txt as tokenizers' `BPE::read_file` reads it: lines (LF or CRLF), those starting with "#version"
    /// skipped, every other one two tokens separated by one space; rank = order. Both tokens and their
    /// concatenation must be in the vocabulary (tokenizers refuses the file otherwise).
    private static func readMerges(_ data: Data, path: String, vocab: [String: Int]) throws -> [UInt64: UInt64] {
        var table: [UInt64: UInt64] = [:]
        table.reserveCapacity(49_000)
        var rank: UInt64 = 0
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let bytes = raw.bindMemory(to: UInt8.self)
            var lineNumber = 0
            var lineStart = 0
            while lineStart < bytes.count {
                var lineEnd = lineStart
                while lineEnd < bytes.count && bytes[lineEnd] != 0x0A { lineEnd += 1 }
                lineNumber += 1
                let next = lineEnd + 1
                defer { lineStart = next }
                if lineEnd > lineStart && bytes[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                let lineBytes = UnsafeBufferPointer(rebasing: bytes[lineStart..<lineEnd])
                guard let line = String(validating: lineBytes, as: UTF8.self) else {
                    throw CLIPTokenizerError.malformedFile(path: path, reason: "line \(lineNumber) is not UTF-8")
                }
                if line.hasPrefix("#version") { continue }
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw CLIPTokenizerError.malformedFile(
                        path: path, reason: "line \(lineNumber) is not two tokens separated by a space: \"\(line.prefix(80))\"")
                }
                let a = String(parts[0]), b = String(parts[1])
                for token in [a, b, a + b] where vocab[token] == nil {
                    throw CLIPTokenizerError.malformedFile(
                        path: path, reason: "line \(lineNumber): \"\(token)\" is not in vocab.json")
                }
                let left = UInt64(UInt32(truncatingIfNeeded: vocab[a]!))
                let right = UInt64(UInt32(truncatingIfNeeded: vocab[b]!))
                let merged = UInt64(UInt32(truncatingIfNeeded: vocab[a + b]!))
                table[left << 32 | right] = rank << 32 | merged
                rank += 1
            }
        }
        if rank == 0 {
            throw CLIPTokenizerError.malformedFile(path: path, reason: "no merges")
        }
        return table
    }

    // MARK: - Special tokens

    /// One of bos, eos, unk, pad as configured: a plain string or an AddedToken dictionary (`fromMap`: read from
    /// special_tokens_map.json, whose dictionaries transformers makes special tokens).
    private struct NamedToken {
        var spec: TokenSpec?
        var defaultContent: String
        var fromMap: Bool
        var content: String { spec?.content ?? defaultContent }
    }

    /// An added token as transformers' `AddedToken` compares them (content, flags, `normalized` resolved as
    /// `not special` when not given), or a plain string.
    private struct Candidate: Equatable {
        var content: String
        var isString: Bool
        var special: Bool
        var normalized: Bool?
        var lstrip = false, rstrip = false, singleWord = false

        static func == (a: Candidate, b: Candidate) -> Bool {
            a.content == b.content && a.isString == b.isString
                && (a.isString || (a.special == b.special && (a.normalized ?? !a.special) == (b.normalized ?? !b.special)
                    && a.lstrip == b.lstrip && a.rstrip == b.rstrip && a.singleWord == b.singleWord))
        }
    }

    /// The added tokens in the order transformers 5 adds them (`TokenizersBackend.__init__`), each with its final
    /// `normalized` flag: the `added_tokens_decoder` entries by id, then bos, eos, unk, pad where not already
    /// there (text in the decoder, or an equal string / AddedToken earlier in the list); a named token becomes
    /// special, so an unset `normalized` means false.
    private static func resolveAddedTokens(named: [NamedToken], decoder: [String: TokenSpec]?) -> [(content: String, normalized: Bool)] {
        func candidate(_ spec: TokenSpec?, content: String, forceSpecial: Bool) -> Candidate {
            guard let spec, !spec.isString else {
                return Candidate(content: content, isString: true, special: true, normalized: false)
            }
            return Candidate(content: spec.content, isString: false, special: forceSpecial || (spec.special ?? false),
                             normalized: spec.normalized, lstrip: spec.lstrip ?? false, rstrip: spec.rstrip ?? false,
                             singleWord: spec.single_word ?? false)
        }
        var list: [Candidate] = []
        var decoderContents: Set<String> = []
        var decoderByContent: [String: Candidate] = [:]
        if let decoder {
            let entries = decoder.compactMap { key, spec in Int(key).map { ($0, spec) } }.sorted { $0.0 < $1.0 }
            for (_, spec) in entries {
                let c = candidate(spec, content: spec.content, forceSpecial: false)
                list.append(c)
                decoderContents.insert(c.content)
                decoderByContent[c.content] = c
            }
        }
        for token in named {
            var c = candidate(token.spec, content: token.content, forceSpecial: token.fromMap)
            if let mapped = decoderByContent[c.content] { c = mapped }
            if decoderContents.contains(c.content) || list.contains(c) { continue }
            list.append(c)
        }
        let namedContents = Set(named.map(\.content))
        return list.compactMap { c in
            guard !c.content.isEmpty else { return nil }
            let special = c.special || namedContents.contains(c.content)
            return (c.content, c.isString ? false : (c.normalized ?? !special))
        }
    }

    // MARK: - Encoding

    /// `[bos] + ids + [eos]`, keeping only the first `maxLength - 2` content ids so that the
    /// result is at most `maxLength` long and always ends with eos (transformers'
    /// `tokenizer(text, truncation=True, max_length=maxLength).input_ids`).
    public func encode(_ text: String) -> [Int] {
        encode(text, maxLength: maxLength)
    }

    /// Like `encode(_:)`, then padded with the pad id to `length` (default `maxLength`):
    /// `tokenizer(text, padding="max_length", truncation=True, max_length=length).input_ids`.
    public func encodePadded(_ text: String, length: Int? = nil) -> [Int32] {
        let target = length ?? maxLength
        var ids = encode(text, maxLength: target).map { Int32(truncatingIfNeeded: $0) }
        if ids.count < target {
            ids.append(contentsOf: repeatElement(Int32(truncatingIfNeeded: padTokenId), count: target - ids.count))
        }
        return ids
    }

    /// Content ids only (no bos/eos), untruncated.
    public func tokenIds(_ text: String) -> [Int] {
        var cache: [[UInt8]: [Int]] = [:]
        return contentIds(text, cache: &cache)
    }

    private func encode(_ text: String, maxLength: Int) -> [Int] {
        var cache: [[UInt8]: [Int]] = [:]
        let content = contentIds(text, cache: &cache)
        var ids = [Int]()
        ids.reserveCapacity(min(content.count, max(maxLength - 2, 0)) + 2)
        ids.append(bosTokenId)
        ids.append(contentsOf: content.prefix(max(maxLength - 2, 0)))
        ids.append(eosTokenId)
        return ids
    }

    private func contentIds(_ text: String, cache: inout [[UInt8]: [Int]]) -> [Int] {
        let scalars = Array(text.unicodeScalars)
        var out: [Int] = []
        out.reserveCapacity(scalars.count / 3 + 4)
        Self.split(scalars[...], on: rawAddedTokens, into: &out) { piece, out in
            let normalized = Self.normalize(piece)
            Self.split(normalized[...], on: normalizedAddedTokens, into: &out) { part, out in
                preTokenize(part, into: &out, cache: &cache)
            }
        }
        return out
    }

    /// Leftmost-longest matches of `tokens` (sorted longest first) become their ids; the text between goes to `rest`.
    private static func split(_ s: ArraySlice<Unicode.Scalar>, on tokens: [AddedTokenPattern], into out: inout [Int],
                              rest: (ArraySlice<Unicode.Scalar>, inout [Int]) -> Void) {
        if tokens.isEmpty {
            if !s.isEmpty { rest(s, &out) }
            return
        }
        var pieceStart = s.startIndex
        var i = s.startIndex
        outer: while i < s.endIndex {
            for token in tokens {
                let t = token.scalars
                if s[i] == t[0], i + t.count <= s.endIndex {
                    var k = 1
                    while k < t.count && s[i + k] == t[k] { k += 1 }
                    if k == t.count {
                        if pieceStart < i { rest(s[pieceStart..<i], &out) }
                        out.append(token.id)
                        i += t.count
                        pieceStart = i
                        continue outer
                    }
                }
            }
            i += 1
        }
        if pieceStart < s.endIndex { rest(s[pieceStart...], &out) }
    }

    /// tokenizers' normalizer of CLIPTokenizer: NFC, `\s+` -> " ", Lowercase (per scalar, full mapping).
    private static func normalize(_ piece: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(piece.count)
        var inSpace = false
        if piece.allSatisfy({ $0.value < 0x80 }) {
            for s in piece {
                let v = s.value
                if v == 0x20 || (v >= 0x09 && v <= 0x0D) {
                    if !inSpace { out.append(" ") }
                    inSpace = true
                    continue
                }
                inSpace = false
                out.append(v >= 0x41 && v <= 0x5A ? Unicode.Scalar(v + 0x20)! : s)
            }
            return out
        }
        let composed = nfc(String(String.UnicodeScalarView(piece)))
        for s in composed.unicodeScalars {
            let v = s.value
            if isWhitespace(s) {
                if !inSpace { out.append(" ") }
                inSpace = true
                continue
            }
            inSpace = false
            if v < 0x80 {
                out.append(v >= 0x41 && v <= 0x5A ? Unicode.Scalar(v + 0x20)! : s)
            } else if s.properties.changesWhenLowercased {
                out.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
            } else {
                out.append(s)
            }
        }
        return out
    }

    /// `\s` of Oniguruma (tokenizers' regex engine) = Unicode White_Space.
    @inline(__always)
    private static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return v == 0x20 || (v >= 0x09 && v <= 0x0D) }
        return s.properties.isWhitespace
    }

    private static let startOfText: [Unicode.Scalar] = Array("<|startoftext|>".unicodeScalars)
    private static let endOfText: [Unicode.Scalar] = Array("<|endoftext|>".unicodeScalars)

    /// The CLIP split regex (then the byte-level GPT-2 split) over normalised text, each piece through BPE.
    private func preTokenize(_ w: ArraySlice<Unicode.Scalar>, into out: inout [Int], cache: inout [[UInt8]: [Int]]) {
        var i = w.startIndex
        let n = w.endIndex
        func starts(with literal: [Unicode.Scalar], at i: Int) -> Bool {
            guard i + literal.count <= n else { return false }
            for k in 0..<literal.count where w[i + k] != literal[k] { return false }
            return true
        }
        while i < n {
            let s = w[i]
            if Self.isWhitespace(s) {
                i += 1
                continue
            }
            if s == "<", let literal = [Self.startOfText, Self.endOfText].first(where: { starts(with: $0, at: i) }) {
                // ByteLevel's GPT-2 regex cuts the literal into "<|", the word, "|>".
                let end = i + literal.count
                emit(w[i..<(i + 2)], into: &out, cache: &cache)
                emit(w[(i + 2)..<(end - 2)], into: &out, cache: &cache)
                emit(w[(end - 2)..<end], into: &out, cache: &cache)
                i = end
                continue
            }
            if w[i] == "'", i + 1 < n {
                var length = 0
                switch w[i + 1].value {
                case 0x73, 0x74, 0x6D, 0x64: length = 2  // 's 't 'm 'd
                case 0x72: if i + 2 < n, w[i + 2].value == 0x65 { length = 3 }  // 're
                case 0x76: if i + 2 < n, w[i + 2].value == 0x65 { length = 3 }  // 've
                case 0x6C: if i + 2 < n, w[i + 2].value == 0x6C { length = 3 }  // 'll
                default: break
                }
                if length > 0 {
                    emit(w[i..<(i + length)], into: &out, cache: &cache)
                    i += length
                    continue
                }
            }
            let kind = Self.kind(w[i])
            var j = i + 1
            switch kind {
            case .letter:
                while j < n && Self.kind(w[j]) == .letter { j += 1 }
            case .number:
                break
            case .other:
                while j < n && Self.kind(w[j]) == .other { j += 1 }
            case .space:
                break
            }
            emit(w[i..<j], into: &out, cache: &cache)
            i = j
        }
    }

    private enum ScalarKind { case letter, number, other, space }

    /// \p{L} / \p{N} / \s of Oniguruma's Unicode 16.0 tables; anything else (including scalars assigned after
    /// Unicode 16.0, unassigned for tokenizers 0.23) is "other".
    @inline(__always)
    private static func kind(_ s: Unicode.Scalar) -> ScalarKind {
        let v = s.value
        if v < 0x80 {
            if (v >= 0x61 && v <= 0x7A) || (v >= 0x41 && v <= 0x5A) { return .letter }
            if v >= 0x30 && v <= 0x39 { return .number }
            if v == 0x20 || (v >= 0x09 && v <= 0x0D) { return .space }
            return .other
        }
        let p = s.properties
        let kind: ScalarKind
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            kind = .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            kind = .number
        default:
            return p.isWhitespace ? .space : .other
        }
        guard let age = p.age, age.major < 16 || (age.major == 16 && age.minor == 0) else { return .other }
        return kind
    }

    /// UTF-8 bytes of one piece -> BPE -> vocab ids.
    private func emit(_ match: ArraySlice<Unicode.Scalar>, into out: inout [Int], cache: inout [[UInt8]: [Int]]) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(match.count * 2)
        for s in match { bytes.append(contentsOf: UTF8.encode(s)!) }
        if bytes.count > 3, let hit = cache[bytes] {
            out.append(contentsOf: hit)
            return
        }
        var word = [Int32]()
        word.reserveCapacity(bytes.count)
        for (k, b) in bytes.enumerated() {
            word.append(k == bytes.count - 1 ? byteEndSymbols[Int(b)] : byteSymbols[Int(b)])
        }
        bpe(&word)
        let start = out.count
        for symbol in word {
            let id = Int(symbol)
            out.append(id < firstExtraSymbol ? id : unkTokenId)
        }
        if bytes.count > 3 { cache[bytes] = Array(out[start...]) }
    }

    /// tokenizers' `Word::merge_all` without dropout: repeatedly merges the lowest-ranked adjacent pair, the
    /// leftmost one where it occurs more than once.
    private func bpe(_ word: inout [Int32]) {
        while word.count > 1 {
            var best = UInt64.max
            var bestPosition = -1
            for k in 0..<(word.count - 1) {
                let key = UInt64(UInt32(bitPattern: word[k])) << 32 | UInt64(UInt32(bitPattern: word[k + 1]))
                if let value = merges[key], value < best {
                    best = value
                    bestPosition = k
                }
            }
            if bestPosition < 0 { return }
            word[bestPosition] = Int32(bitPattern: UInt32(truncatingIfNeeded: best))
            word.remove(at: bestPosition + 1)
        }
    }

    // MARK: - Text helpers

    /// Unicode NFC. FoundationEssentials has no `precomposedStringWithCanonicalMapping`; the
    /// standard library's (underscored but public) `_nfcCodeUnits` is the same normaliser that
    /// String comparison uses.
    private static func nfc(_ s: String) -> String {
        #if canImport(FoundationEssentials)
        return String(decoding: s._nfcCodeUnits, as: UTF8.self)
        #else
        return s.precomposedStringWithCanonicalMapping
        #endif
    }

    /// GPT-2 / CLIP byte -> printable unicode scalar table.
    private static func bytesToUnicode() -> [Unicode.Scalar] {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(256 + n)!
                n += 1
            }
        }
        return table
    }

    // MARK: - Files

    private struct TokenizerConfigFile: Decodable {
        var bos_token: TokenSpec?
        var eos_token: TokenSpec?
        var unk_token: TokenSpec?
        var pad_token: TokenSpec?
        var model_max_length: Double?
        var added_tokens_decoder: [String: TokenSpec]?
    }

    /// The parts of tokenizer.json read: the BPE model's vocabulary and merges ("a b" strings, or [a, b] pairs as
    /// newer tokenizers write them) and the added tokens.
    private struct TokenizerJSONFile: Decodable {
        struct Model: Decodable {
            var type: String?
            var vocab: [String: Int]
            var merges: [String]
            private enum Keys: String, CodingKey { case type, vocab, merges }
            init(from decoder: Decoder) throws {
                let c = try decoder.container(keyedBy: Keys.self)
                type = try c.decodeIfPresent(String.self, forKey: .type)
                vocab = try c.decode([String: Int].self, forKey: .vocab)
                if let lines = try? c.decode([String].self, forKey: .merges) {
                    merges = lines
                } else {
                    merges = try c.decode([[String]].self, forKey: .merges).map { $0.joined(separator: " ") }
                }
            }
        }
        struct Added: Decodable {
            var id: Int
            var content: String
            var normalized: Bool?
            var special: Bool?
        }
        var model: Model
        var added_tokens: [Added]?
    }

    /// A token given as a plain string or as an AddedToken dictionary {"content": ..., "normalized": ..., ...}.
    private struct TokenSpec: Decodable {
        init(content: String, normalized: Bool?, special: Bool?) {
            self.content = content
            isString = false
            self.normalized = normalized
            self.special = special
        }

        var content: String
        var isString: Bool
        var normalized: Bool?
        var special: Bool?
        var lstrip: Bool?
        var rstrip: Bool?
        var single_word: Bool?
        private enum Keys: String, CodingKey { case content, normalized, special, lstrip, rstrip, single_word }
        init(from decoder: Decoder) throws {
            if let single = try? decoder.singleValueContainer(), let s = try? single.decode(String.self) {
                content = s
                isString = true
            } else {
                let c = try decoder.container(keyedBy: Keys.self)
                content = try c.decode(String.self, forKey: .content)
                isString = false
                normalized = try c.decodeIfPresent(Bool.self, forKey: .normalized)
                special = try c.decodeIfPresent(Bool.self, forKey: .special)
                lstrip = try c.decodeIfPresent(Bool.self, forKey: .lstrip)
                rstrip = try c.decodeIfPresent(Bool.self, forKey: .rstrip)
                single_word = try c.decodeIfPresent(Bool.self, forKey: .single_word)
            }
        }
    }

    /// The longest `model_max_length` accepted (CLIP text encoders have 77 positions; long-prompt variants a few
    /// hundred).
    public static let maxModelMaxLength = 65_536

    /// `model_max_length`: absent, or transformers' "no limit" sentinel (`VERY_LARGE_INTEGER`, about 1e30, written
    /// by tokenizers saved without a length), means CLIP's 77; otherwise an integer in 2...65536.
    static func maxLength(_ value: Double?, path: String) throws -> Int {
        guard let value, value < 1e20 else { return 77 }
        guard value.isFinite, value == value.rounded(), value >= 2, value <= Double(maxModelMaxLength) else {
            throw CLIPTokenizerError.malformedFile(
                path: path, reason: "model_max_length \(value) must be an integer in 2...\(maxModelMaxLength) (77 for CLIP)")
        }
        return Int(value)
    }

    private static func fileExists(_ path: String) -> Bool {
        FileManager.default.fileExists(atPath: path)
    }

    private static func read(_ path: String) throws -> Data {
        do {
            return Data(try RegularFile.read(path))
        } catch {
            if error.reason == .notFound { throw CLIPTokenizerError.missingFile(path: path) }
            throw CLIPTokenizerError.unreadableFile(path: path, reason: error.message)
        }
    }

    private static func decode<T: Decodable>(_ type: T.Type, path: String) throws -> T {
        let data = try read(path)
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw CLIPTokenizerError.malformedFile(path: path, reason: "invalid JSON (\(error))")
        }
    }

    /// Fast path for vocab.json: a flat JSON object of string -> integer (JSONDecoder takes
    /// ~5x longer on the 49408 entries). Returns nil on anything unexpected; the caller then
    /// falls back to JSONDecoder, which also produces the error message.
    private static func parseFlatIntObject(_ data: Data) -> [String: Int]? {
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> [String: Int]? in
            let b = raw.bindMemory(to: UInt8.self)
            let n = b.count
            var i = 0
            @inline(__always) func skipSpace() {
                while i < n, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
            }
            func hex4() -> UInt32? {
                guard i + 4 <= n else { return nil }
                var v: UInt32 = 0
                for _ in 0..<4 {
                    let c = b[i]
                    let d: UInt32
                    switch c {
                    case 0x30...0x39: d = UInt32(c - 0x30)
                    case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                    case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                    default: return nil
                    }
                    v = v << 4 | d
                    i += 1
                }
                return v
            }
            var result: [String: Int] = [:]
            result.reserveCapacity(n / 16)
            var key: [UInt8] = []
            if n >= 3, b[0] == 0xEF, b[1] == 0xBB, b[2] == 0xBF { i = 3 }
            skipSpace()
            guard i < n, b[i] == 0x7B else { return nil }  // {
            i += 1
            skipSpace()
            if i < n, b[i] == 0x7D {
                i += 1
                skipSpace()
                return i == n ? result : nil
            }
            while true {
                skipSpace()
                guard i < n, b[i] == 0x22 else { return nil }  // "
                i += 1
                key.removeAll(keepingCapacity: true)
                while true {
                    guard i < n else { return nil }
                    let c = b[i]
                    if c == 0x22 { i += 1; break }
                    if c < 0x20 { return nil }
                    if c != 0x5C {
                        key.append(c)
                        i += 1
                        continue
                    }
                    i += 1
                    guard i < n else { return nil }
                    let e = b[i]
                    i += 1
                    switch e {
                    case 0x22, 0x5C, 0x2F: key.append(e)
                    case 0x62: key.append(0x08)
                    case 0x66: key.append(0x0C)
                    case 0x6E: key.append(0x0A)
                    case 0x72: key.append(0x0D)
                    case 0x74: key.append(0x09)
                    case 0x75:
                        guard var v = hex4() else { return nil }
                        if v >= 0xD800 && v < 0xDC00 {
                            guard i + 6 <= n, b[i] == 0x5C, b[i + 1] == 0x75 else { return nil }
                            i += 2
                            guard let low = hex4(), low >= 0xDC00 && low < 0xE000 else { return nil }
                            v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let scalar = Unicode.Scalar(v) else { return nil }
                        key.append(contentsOf: UTF8.encode(scalar)!)
                    default: return nil
                    }
                }
                skipSpace()
                guard i < n, b[i] == 0x3A else { return nil }  // :
                i += 1
                skipSpace()
                var negative = false
                if i < n, b[i] == 0x2D { negative = true; i += 1 }
                var value = 0
                var digits = 0
                while i < n, b[i] >= 0x30 && b[i] <= 0x39 {
                    value = value &* 10 &+ Int(b[i] - 0x30)
                    digits += 1
                    i += 1
                }
                guard digits > 0, digits < 16 else { return nil }
                guard let keyString = String(validating: key, as: UTF8.self) else { return nil }
                result[keyString] = negative ? -value : value
                skipSpace()
                guard i < n else { return nil }
                if b[i] == 0x2C { i += 1; continue }  // ,
                if b[i] == 0x7D { i += 1; break }  // }
                return nil
            }
            skipSpace()
            return i == n ? result : nil
        }
    }
}
