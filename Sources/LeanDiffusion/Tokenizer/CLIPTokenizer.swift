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

/// CLIP byte-level BPE tokenizer, giving the same ids as transformers' slow `CLIPTokenizer`
/// (transformers 4.x `tokenization_clip.py`) when `ftfy` is not installed, i.e. text cleaning by
/// `BasicTokenizer(strip_accents=False, do_split_on_punc=False)`:
///
/// 1. split on the special-token strings (bos, eos, unk, pad; exact, case-sensitive), which map
///    straight to their ids;
/// 2. per remaining piece: drop NUL, U+FFFD and every `C*` scalar except tab/CR/LF, turn
///    whitespace into spaces, put spaces around CJK ideographs, NFC-normalise, split on
///    whitespace and lower-case each word (Python `str.lower`, including final sigma);
/// 3. the CLIP regex `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+`
///    (case-insensitive, as `regex.IGNORECASE`), hand-written over Unicode scalar properties;
/// 4. byte-level BPE with a `</w>` end-of-word suffix; unknown symbols map to the unk id.
///
/// Known, documented limits: scalar categories come from the Swift runtime's Unicode tables,
/// so scalars assigned after the Unicode version of the reference Python (14.0 for 3.11)
/// are kept here while that Python drops them as unassigned (e.g. U+1FAE8 from Unicode 15).
/// NFC uses the standard library's `String._nfcCodeUnits` (Foundation's
/// `precomposedStringWithCanonicalMapping` where FoundationEssentials is unavailable).
/// The BPE memo is per call (no shared mutable state, so the struct is trivially Sendable);
/// BPE on integer symbol ids is fast enough without a global cache.
public struct CLIPTokenizer: Sendable {
    /// Sequence length the text encoder expects (77 for every Stable Diffusion CLIP).
    public let maxLength: Int
    public let bosTokenId: Int
    public let eosTokenId: Int
    public let padTokenId: Int
    public let unkTokenId: Int
    /// Number of entries in vocab.json.
    public let vocabularySize: Int
    /// The largest id `encode` can return (the largest in vocab.json); the text encoder's vocab_size must exceed it.
    public var maxTokenId: Int { firstExtraSymbol - 1 }

    /// Symbol id of each byte as a non-final / final ("</w>") BPE symbol.
    private let byteSymbols: [Int32]
    private let byteEndSymbols: [Int32]
    /// (left << 32 | right) -> (rank << 32 | merged symbol).
    private let merges: [UInt64: UInt64]
    /// Symbols from here on are strings that merges.txt produces but vocab.json lacks (-> unk).
    private let firstExtraSymbol: Int
    /// Special-token strings split off before cleaning, longest first.
    private let specialTokens: [(scalars: [Unicode.Scalar], id: Int)]
    /// Vocab ids of the literal tokens "<|startoftext|>" / "<|endoftext|>" (the slow tokenizer's
    /// pre-seeded BPE cache entries).
    private let startOfTextId: Int
    private let endOfTextId: Int

    /// Loads `vocab.json`, `merges.txt`, `tokenizer_config.json` and, when present,
    /// `special_tokens_map.json` (whose entries override the config, as in transformers).
    public init(directory: String) throws {
        let dir = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        let vocabPath = dir + "/vocab.json"
        let mergesPath = dir + "/merges.txt"
        let configPath = dir + "/tokenizer_config.json"
        let specialPath = dir + "/special_tokens_map.json"

        // Special tokens and length.
        let config = try Self.decode(TokenizerConfigFile.self, path: configPath)
        var bos = config.bos_token?.content ?? "<|startoftext|>"
        var eos = config.eos_token?.content ?? "<|endoftext|>"
        var unk = config.unk_token?.content ?? "<|endoftext|>"
        var pad = config.pad_token?.content ?? "<|endoftext|>"
        if Self.fileExists(specialPath) {
            let map = try Self.decode(TokenizerConfigFile.self, path: specialPath)
            bos = map.bos_token?.content ?? bos
            eos = map.eos_token?.content ?? eos
            unk = map.unk_token?.content ?? unk
            pad = map.pad_token?.content ?? pad
        }
        maxLength = try Self.maxLength(config.model_max_length, path: configPath)

        // Vocabulary.
        let vocabData = try Self.read(vocabPath)
        let vocab: [String: Int]
        if let fast = Self.parseFlatIntObject(vocabData) {
            vocab = fast
        } else {
            do {
                vocab = try JSONDecoder().decode([String: Int].self, from: vocabData)
            } catch {
                throw CLIPTokenizerError.malformedFile(path: vocabPath, reason: "invalid JSON (\(error))")
            }
        }
        vocabularySize = vocab.count
        func id(_ token: String, _ role: String) throws -> Int {
            guard let id = vocab[token] else {
                throw CLIPTokenizerError.malformedFile(
                    path: vocabPath, reason: "\(role) token \"\(token)\" is not in the vocabulary")
            }
            return id
        }
        unkTokenId = try id(unk, "unk")
        bosTokenId = try id(bos, "bos")
        eosTokenId = try id(eos, "eos")
        padTokenId = try id(pad, "pad")
        startOfTextId = vocab["<|startoftext|>"] ?? unkTokenId
        endOfTextId = vocab["<|endoftext|>"] ?? unkTokenId
        var specials: [(scalars: [Unicode.Scalar], id: Int)] = []
        for (token, tokenId) in [(bos, bosTokenId), (eos, eosTokenId), (unk, unkTokenId), (pad, padTokenId)]
        where !token.isEmpty && !specials.contains(where: { String(String.UnicodeScalarView($0.scalars)) == token }) {
            specials.append((Array(token.unicodeScalars), tokenId))
        }
        specialTokens = specials.sorted { $0.scalars.count > $1.scalars.count }

        // Symbols: vocab ids, plus extra ids (mapping to unk) for strings that merges produce
        // but the vocabulary lacks.
        var interned = vocab
        let maxVocabId = vocab.values.max() ?? -1
        guard maxVocabId < Int(Int32.max) / 2, vocab.values.allSatisfy({ $0 >= 0 }) else {
            throw CLIPTokenizerError.malformedFile(path: vocabPath, reason: "token ids out of range")
        }
        var nextSymbol = maxVocabId + 1
        firstExtraSymbol = nextSymbol
        func symbol(_ s: String) -> Int32 {
            if let v = interned[s] { return Int32(truncatingIfNeeded: v) }
            let v = nextSymbol
            nextSymbol += 1
            interned[s] = v
            return Int32(truncatingIfNeeded: v)
        }
        let byteChars = Self.bytesToUnicode()
        var bs = [Int32](repeating: 0, count: 256)
        var be = [Int32](repeating: 0, count: 256)
        for b in 0..<256 {
            let c = String(Character(byteChars[b]))
            bs[b] = symbol(c)
            be[b] = symbol(c + "</w>")
        }

        // Merges: like the slow tokenizer, the whole file is stripped, line 0 (the
        // "#version" header) is skipped and at most 49152 - 256 - 2 merges are used.
        let mergesData = try Self.read(mergesPath)
        var table: [UInt64: UInt64] = [:]
        table.reserveCapacity(49_000)
        var rank: UInt64 = 0
        let limit = 49152 - 256 - 2
        try mergesData.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let bytes = raw.bindMemory(to: UInt8.self)
            var lineNumber = 0
            var lineStart = 0
            while lineStart < bytes.count && rank < limit {
                var lineEnd = lineStart
                while lineEnd < bytes.count && bytes[lineEnd] != 0x0A { lineEnd += 1 }
                defer {
                    lineNumber += 1
                    lineStart = lineEnd + 1
                }
                if lineNumber == 0 { continue }  // "#version: 0.2"
                // Fields separated by spaces/tabs (Python str.split()); CR ignored.
                var fields: [Range<Int>] = []
                var k = lineStart
                while k < lineEnd {
                    while k < lineEnd && (bytes[k] == 0x20 || bytes[k] == 0x09 || bytes[k] == 0x0D) { k += 1 }
                    let start = k
                    while k < lineEnd && !(bytes[k] == 0x20 || bytes[k] == 0x09 || bytes[k] == 0x0D) { k += 1 }
                    if k > start { fields.append(start..<k) }
                }
                if fields.isEmpty { continue }  // blank line
                guard fields.count == 2 else {
                    let line = String(decoding: UnsafeBufferPointer(rebasing: bytes[lineStart..<lineEnd]), as: UTF8.self)
                    throw CLIPTokenizerError.malformedFile(
                        path: mergesPath, reason: "line \(lineNumber + 1) is not a pair: \"\(line)\"")
                }
                let a = String(decoding: UnsafeBufferPointer(rebasing: bytes[fields[0]]), as: UTF8.self)
                let b = String(decoding: UnsafeBufferPointer(rebasing: bytes[fields[1]]), as: UTF8.self)
                let left = UInt64(UInt32(bitPattern: symbol(a)))
                let right = UInt64(UInt32(bitPattern: symbol(b)))
                let merged = UInt64(UInt32(bitPattern: symbol(a + b)))
                table[left << 32 | right] = rank << 32 | merged
                rank += 1
            }
        }
        if rank == 0 {
            throw CLIPTokenizerError.malformedFile(path: mergesPath, reason: "no merges after the header line")
        }
        byteSymbols = bs
        byteEndSymbols = be
        merges = table
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
        var pieceStart = 0
        var i = 0
        while i < scalars.count {
            if let (length, id) = matchSpecial(scalars, at: i) {
                if pieceStart < i { tokenizePiece(scalars[pieceStart..<i], into: &out, cache: &cache) }
                out.append(id)
                i += length
                pieceStart = i
            } else {
                i += 1
            }
        }
        if pieceStart < scalars.count {
            tokenizePiece(scalars[pieceStart...], into: &out, cache: &cache)
        }
        return out
    }

    private func matchSpecial(_ s: [Unicode.Scalar], at i: Int) -> (Int, Int)? {
        for special in specialTokens {
            let t = special.scalars
            if i + t.count <= s.count, s[i] == t[0] {
                var k = 1
                while k < t.count && s[i + k] == t[k] { k += 1 }
                if k == t.count { return (t.count, special.id) }
            }
        }
        return nil
    }

    /// BasicTokenizer cleaning + CLIP regex + BPE for one piece without special tokens.
    private func tokenizePiece(_ piece: ArraySlice<Unicode.Scalar>, into out: inout [Int], cache: inout [[UInt8]: [Int]]) {
        var cleaned: [Unicode.Scalar] = []
        cleaned.reserveCapacity(piece.count)
        var ascii = true
        for s in piece {
            let v = s.value
            if v < 0x80 {
                if v == 0x20 || v == 0x09 || v == 0x0A || v == 0x0D {
                    cleaned.append(" ")
                } else if v >= 0x21 && v != 0x7F {
                    cleaned.append(s)
                }  // else: NUL or another control character: dropped
                continue
            }
            ascii = false
            if v == 0xFFFD { continue }
            switch s.properties.generalCategory {
            case .control, .format, .privateUse, .surrogate, .unassigned:
                continue
            case .spaceSeparator:
                cleaned.append(" ")
            default:
                if Self.isCJK(v) {
                    cleaned.append(" ")
                    cleaned.append(s)
                    cleaned.append(" ")
                } else {
                    cleaned.append(s)
                }
            }
        }
        if !ascii {
            cleaned = Array(Self.nfc(String(String.UnicodeScalarView(cleaned))).unicodeScalars)
        }

        // Whitespace split (Python str.split()), then lower-case each word.
        var word: [Unicode.Scalar] = []
        var lowered: [Unicode.Scalar] = []
        func flush() {
            guard !word.isEmpty else { return }
            lowered.removeAll(keepingCapacity: true)
            Self.pythonLower(word, into: &lowered)
            scanWord(lowered, into: &out, cache: &cache)
            word.removeAll(keepingCapacity: true)
        }
        for s in cleaned {
            let v = s.value
            if v == 0x20 || (v >= 0x80 && s.properties.isWhitespace) {
                flush()
            } else {
                word.append(s)
            }
        }
        flush()
    }

    /// The CLIP pre-tokenisation regex over one whitespace-free, lower-cased word.
    private func scanWord(_ w: [Unicode.Scalar], into out: inout [Int], cache: inout [[UInt8]: [Int]]) {
        let n = w.count
        var i = 0
        while i < n {
            let v = w[i].value
            if v == 0x345 {
                // COMBINING GREEK YPOGEGRAMMENI case-folds to a letter, so under IGNORECASE it is
                // matched by neither [\p{L}] nor [^\s\p{L}\p{N}]: the regex skips it.
                i += 1
                continue
            }
            if v == 0x3C {  // "<"
                if Self.matchesLiteral(w, i, Self.startOfTextScalars) {
                    emitLiteralSpecial(w[i..<(i + Self.startOfTextScalars.count)], special: startOfTextId, into: &out, cache: &cache)
                    i += Self.startOfTextScalars.count
                    continue
                }
                if Self.matchesLiteral(w, i, Self.endOfTextScalars) {
                    emitLiteralSpecial(w[i..<(i + Self.endOfTextScalars.count)], special: endOfTextId, into: &out, cache: &cache)
                    i += Self.endOfTextScalars.count
                    continue
                }
            } else if v == 0x27, i + 1 < n {  // "'" contractions
                var length = 0
                let c1 = Self.fold(w[i + 1].value)
                switch c1 {
                case 0x73, 0x74, 0x6D, 0x64: length = 2  // 's 't 'm 'd
                case 0x72, 0x76:  // 're 've
                    if i + 2 < n, Self.fold(w[i + 2].value) == 0x65 { length = 3 }
                case 0x6C:  // 'll
                    if i + 2 < n, Self.fold(w[i + 2].value) == 0x6C { length = 3 }
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
            }
            emit(w[i..<j], into: &out, cache: &cache)
            i = j
        }
    }

    private enum ScalarKind { case letter, number, other }

    @inline(__always)
    private static func kind(_ s: Unicode.Scalar) -> ScalarKind {
        let v = s.value
        if v < 0x80 {
            if (v >= 0x61 && v <= 0x7A) || (v >= 0x41 && v <= 0x5A) { return .letter }
            if v >= 0x30 && v <= 0x39 { return .number }
            return .other
        }
        if v == 0x345 { return .number }  // never joins a letter or "other" run (see scanWord)
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        default:
            return .other
        }
    }

    /// Case-insensitive match of an ASCII literal (regex IGNORECASE: "ſ" matches "s").
    private static func matchesLiteral(_ w: [Unicode.Scalar], _ i: Int, _ literal: [UInt32]) -> Bool {
        guard i + literal.count <= w.count else { return false }
        for k in 0..<literal.count where fold(w[i + k].value) != literal[k] { return false }
        return true
    }

    @inline(__always)
    private static func fold(_ v: UInt32) -> UInt32 {
        if v >= 0x41 && v <= 0x5A { return v + 0x20 }
        if v == 0x17F { return 0x73 }  // LATIN SMALL LETTER LONG S
        if v == 0x212A { return 0x6B }  // KELVIN SIGN
        return v
    }

    private static let startOfTextScalars: [UInt32] = "<|startoftext|>".unicodeScalars.map(\.value)
    private static let endOfTextScalars: [UInt32] = "<|endoftext|>".unicodeScalars.map(\.value)

    /// The slow tokenizer's BPE cache is pre-seeded with the exact strings "<|startoftext|>" and
    /// "<|endoftext|>"; a case-insensitive variant (e.g. with "ſ") goes through BPE.
    private func emitLiteralSpecial(_ match: ArraySlice<Unicode.Scalar>, special: Int, into out: inout [Int], cache: inout [[UInt8]: [Int]]) {
        if match.allSatisfy({ $0.value < 0x80 }) {
            out.append(special)
        } else {
            emit(match, into: &out, cache: &cache)
        }
    }

    /// UTF-8 bytes of one regex match -> BPE -> vocab ids.
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

    /// Repeatedly merges every occurrence of the lowest-ranked adjacent pair.
    private func bpe(_ word: inout [Int32]) {
        var scratch = [Int32]()
        scratch.reserveCapacity(word.count)
        while word.count > 1 {
            var best = UInt64.max
            for k in 0..<(word.count - 1) {
                let key = UInt64(UInt32(bitPattern: word[k])) << 32 | UInt64(UInt32(bitPattern: word[k + 1]))
                if let value = merges[key], value < best { best = value }
            }
            if best == UInt64.max { return }
            let rank = best >> 32
            let merged = Int32(bitPattern: UInt32(truncatingIfNeeded: best))
            scratch.removeAll(keepingCapacity: true)
            var k = 0
            while k < word.count {
                if k + 1 < word.count {
                    let key = UInt64(UInt32(bitPattern: word[k])) << 32 | UInt64(UInt32(bitPattern: word[k + 1]))
                    if let value = merges[key], value >> 32 == rank {
                        scratch.append(merged)
                        k += 2
                        continue
                    }
                }
                scratch.append(word[k])
                k += 1
            }
            swap(&word, &scratch)
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

    /// BasicTokenizer._is_chinese_char.
    @inline(__always)
    private static func isCJK(_ v: UInt32) -> Bool {
        (v >= 0x4E00 && v <= 0x9FFF) || (v >= 0x3400 && v <= 0x4DBF) || (v >= 0x20000 && v <= 0x2A6DF)
            || (v >= 0x2A700 && v <= 0x2B73F) || (v >= 0x2B740 && v <= 0x2B81F) || (v >= 0x2B820 && v <= 0x2CEAF)
            || (v >= 0xF900 && v <= 0xFAFF) || (v >= 0x2F800 && v <= 0x2FA1F)
    }

    /// Python's `str.lower()`: full lowercase mapping per scalar, with the Final_Sigma rule.
    private static func pythonLower(_ word: [Unicode.Scalar], into out: inout [Unicode.Scalar]) {
        for (i, s) in word.enumerated() {
            let v = s.value
            if v < 0x80 {
                out.append(v >= 0x41 && v <= 0x5A ? Unicode.Scalar(v + 0x20)! : s)
            } else if v == 0x3A3 {
                out.append(Unicode.Scalar(isFinalSigma(word, i) ? 0x3C2 : 0x3C3)!)
            } else if s.properties.changesWhenLowercased {
                out.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
            } else {
                out.append(s)
            }
        }
    }

    /// \p{cased}\p{case-ignorable}* U+03A3 !(\p{case-ignorable}* \p{cased})
    private static func isFinalSigma(_ w: [Unicode.Scalar], _ i: Int) -> Bool {
        var j = i - 1
        while j >= 0 && w[j].properties.isCaseIgnorable { j -= 1 }
        guard j >= 0 && w[j].properties.isCased else { return false }
        j = i + 1
        while j < w.count && w[j].properties.isCaseIgnorable { j += 1 }
        return j == w.count || !w[j].properties.isCased
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
    }

    /// A token given as a plain string or as an AddedToken dictionary {"content": ...}.
    private struct TokenSpec: Decodable {
        var content: String
        private enum Keys: String, CodingKey { case content }
        init(from decoder: Decoder) throws {
            if let single = try? decoder.singleValueContainer(), let s = try? single.decode(String.self) {
                content = s
            } else {
                content = try decoder.container(keyedBy: Keys.self).decode(String.self, forKey: .content)
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
