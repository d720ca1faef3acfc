/// A small RFC 8259 parser.
///
/// FoundationEssentials has no `JSONSerialization`, and the safetensors header is
/// an object with arbitrary keys, so `Codable` does not fit. The parser is strict
/// on purpose: headers come from untrusted downloads and are fuzzed, so anything
/// ambiguous (duplicate keys, lone surrogates, leading zeros, NaN, trailing
/// commas, deep nesting) is rejected instead of guessed at. Object member order
/// is preserved because error messages and reports follow file order.
public enum StrictJSON {
    /// Nesting deeper than this is refused so hostile input cannot exhaust the stack.
    public static let maxDepth = 64

    public struct Member: Equatable, Sendable {
        public var key: String
        public var value: Value
        public init(key: String, value: Value) { self.key = key; self.value = value }
    }

    public enum Value: Equatable, Sendable {
        case null
        case bool(Bool)
        /// The literal text, kept so integers beyond `Int` and non-integers can be
        /// told apart from valid dimensions without a lossy detour through Double.
        case number(String)
        case string(String)
        case array([Value])
        case object([Member])

        public subscript(key: String) -> Value? {
            guard case .object(let members) = self else { return nil }
            return members.first(where: { $0.key == key })?.value
        }
        public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
        public var arrayValue: [Value]? { if case .array(let a) = self { return a }; return nil }
        public var objectMembers: [Member]? { if case .object(let m) = self { return m }; return nil }
        public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
        /// True for number literals without fraction or exponent.
        public var isIntegerLiteral: Bool {
            guard case .number(let raw) = self else { return false }
            return !raw.utf8.contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") })
        }
        /// Integer literals that fit in `Int`; nil for anything else.
        public var intValue: Int? {
            guard isIntegerLiteral, case .number(let raw) = self else { return nil }
            return Int(raw)
        }
        public var doubleValue: Double? {
            guard case .number(let raw) = self else { return nil }
            return Double(raw)
        }
    }

    public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        public enum Kind: Equatable, Sendable {
            case syntax(String)
            case invalidUTF8
            case duplicateKey(String)
            case tooDeep
        }
        public var offset: Int
        public var kind: Kind
        public var description: String {
            switch kind {
            case .syntax(let m): return "offset \(offset): \(m)"
            case .invalidUTF8: return "offset \(offset): invalid UTF-8"
            case .duplicateKey(let k): return "offset \(offset): duplicate key \(quoted(k))"
            case .tooDeep: return "offset \(offset): nesting deeper than \(StrictJSON.maxDepth)"
            }
        }
    }

    /// Parses exactly one JSON value surrounded by optional whitespace.
    public static func parse(_ bytes: UnsafeRawBufferPointer, allowDuplicateKeys: Bool = false) throws(ParseError) -> Value {
        var p = Parser(bytes: bytes.bindMemory(to: UInt8.self), allowDuplicateKeys: allowDuplicateKeys)
        p.skipWhitespace()
        let v = try p.parseValue(depth: 0)
        p.skipWhitespace()
        if p.i != p.bytes.count { throw ParseError(offset: p.i, kind: .syntax("unexpected data after the top-level value")) }
        return v
    }

    public static func parse(_ bytes: [UInt8], allowDuplicateKeys: Bool = false) throws(ParseError) -> Value {
        do {
            return try bytes.withUnsafeBytes { raw in try parse(raw, allowDuplicateKeys: allowDuplicateKeys) }
        } catch let e as ParseError {
            throw e
        } catch {
            throw ParseError(offset: 0, kind: .syntax("\(error)"))
        }
    }

    public static func parse(_ text: String, allowDuplicateKeys: Bool = false) throws(ParseError) -> Value {
        try parse(Array(text.utf8), allowDuplicateKeys: allowDuplicateKeys)
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        let allowDuplicateKeys: Bool
        var i = 0

        init(bytes: UnsafeBufferPointer<UInt8>, allowDuplicateKeys: Bool) {
            self.bytes = bytes
            self.allowDuplicateKeys = allowDuplicateKeys
        }

        func fail(_ m: String, at off: Int? = nil) -> ParseError { ParseError(offset: off ?? i, kind: .syntax(m)) }

        mutating func skipWhitespace() {
            while i < bytes.count {
                switch bytes[i] {
                case 0x20, 0x09, 0x0A, 0x0D: i += 1
                default: return
                }
            }
        }

        mutating func parseValue(depth: Int) throws(ParseError) -> Value {
            guard i < bytes.count else { throw fail("unexpected end of input") }
            switch bytes[i] {
            case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
            case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
            case UInt8(ascii: "\""): return .string(try parseString())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
            default: throw fail("unexpected character")
            }
        }

        mutating func literal(_ word: StaticString) throws(ParseError) {
            let n = word.utf8CodeUnitCount
            guard bytes.count - i >= n else { throw fail("unexpected end of input") }
            let p = word.utf8Start
            for k in 0..<n where bytes[i + k] != p[k] { throw fail("invalid literal") }
            i += n
        }

        mutating func parseObject(depth: Int) throws(ParseError) -> Value {
            if depth > StrictJSON.maxDepth { throw ParseError(offset: i, kind: .tooDeep) }
            i += 1  // {
            var members: [Member] = []
            var seen: Set<String> = []
            skipWhitespace()
            if i < bytes.count && bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
            while true {
                skipWhitespace()
                guard i < bytes.count else { throw fail("unexpected end of input in object") }
                guard bytes[i] == UInt8(ascii: "\"") else { throw fail("expected string key") }
                let keyOffset = i
                let key = try parseString()
                skipWhitespace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':' after key") }
                i += 1
                skipWhitespace()
                let value = try parseValue(depth: depth)
                if seen.contains(key) {
                    if !allowDuplicateKeys { throw ParseError(offset: keyOffset, kind: .duplicateKey(key)) }
                    // Last one wins, matching common JSON libraries.
                    members.removeAll(where: { $0.key == key })
                }
                seen.insert(key)
                members.append(Member(key: key, value: value))
                skipWhitespace()
                guard i < bytes.count else { throw fail("unexpected end of input in object") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                throw fail("expected ',' or '}' in object")
            }
        }

        mutating func parseArray(depth: Int) throws(ParseError) -> Value {
            if depth > StrictJSON.maxDepth { throw ParseError(offset: i, kind: .tooDeep) }
            i += 1  // [
            var values: [Value] = []
            skipWhitespace()
            if i < bytes.count && bytes[i] == UInt8(ascii: "]") { i += 1; return .array(values) }
            while true {
                skipWhitespace()
                values.append(try parseValue(depth: depth))
                skipWhitespace()
                guard i < bytes.count else { throw fail("unexpected end of input in array") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(values) }
                throw fail("expected ',' or ']' in array")
            }
        }

        mutating func parseNumber() throws(ParseError) -> Value {
            let start = i
            func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
            if bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count, isDigit(bytes[i]) else { throw fail("invalid number") }
            if bytes[i] == UInt8(ascii: "0") {
                i += 1
                if i < bytes.count, isDigit(bytes[i]) { throw fail("leading zeros are not allowed") }
            } else {
                while i < bytes.count, isDigit(bytes[i]) { i += 1 }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard i < bytes.count, isDigit(bytes[i]) else { throw fail("expected digit after '.'") }
                while i < bytes.count, isDigit(bytes[i]) { i += 1 }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                guard i < bytes.count, isDigit(bytes[i]) else { throw fail("expected digit in exponent") }
                while i < bytes.count, isDigit(bytes[i]) { i += 1 }
            }
            return .number(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self))
        }

        mutating func hex4() throws(ParseError) -> UInt32 {
            guard bytes.count - i >= 4 else { throw fail("truncated \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let b = bytes[i]
                let d: UInt32
                switch b {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(b - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(b - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(b - UInt8(ascii: "A") + 10)
                default: throw fail("invalid hex digit in \\u escape")
                }
                v = v << 4 | d
                i += 1
            }
            return v
        }

        mutating func parseString() throws(ParseError) -> String {
            i += 1  // opening quote
            let start = i
            // Fast path: no escapes, just validate UTF-8 of the raw span.
            while i < bytes.count {
                let b = bytes[i]
                if b == UInt8(ascii: "\"") {
                    let span = UnsafeBufferPointer(rebasing: bytes[start..<i])
                    guard let s = String(validating: span, as: UTF8.self) else {
                        throw ParseError(offset: start + firstInvalidUTF8(span), kind: .invalidUTF8)
                    }
                    i += 1
                    return s
                }
                if b == UInt8(ascii: "\\") { break }
                if b < 0x20 { throw fail("unescaped control character in string") }
                i += 1
            }
            guard i < bytes.count else { throw fail("unterminated string", at: start - 1) }
            // Slow path with escapes.
            var out: [UInt8] = Array(UnsafeBufferPointer(rebasing: bytes[start..<i]))
            func appendScalar(_ v: UInt32, into out: inout [UInt8]) {
                // Callers exclude surrogates, so the scalar is always valid.
                UTF8.encode(Unicode.Scalar(v)!) { out.append($0) }
            }
            var lastRawSegmentStart = i
            while true {
                guard i < bytes.count else { throw fail("unterminated string", at: start - 1) }
                let b = bytes[i]
                if b == UInt8(ascii: "\"") {
                    i += 1
                    break
                }
                if b < 0x20 { throw fail("unescaped control character in string") }
                if b != UInt8(ascii: "\\") { out.append(b); i += 1; continue }
                lastRawSegmentStart = i
                i += 1
                guard i < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    let hi = try hex4()
                    if hi >= 0xD800 && hi <= 0xDBFF {
                        guard bytes.count - i >= 2, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                            throw fail("high surrogate not followed by a low surrogate", at: lastRawSegmentStart)
                        }
                        i += 2
                        let lo = try hex4()
                        guard lo >= 0xDC00 && lo <= 0xDFFF else {
                            throw fail("high surrogate not followed by a low surrogate", at: lastRawSegmentStart)
                        }
                        appendScalar(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00), into: &out)
                    } else if hi >= 0xDC00 && hi <= 0xDFFF {
                        throw fail("lone low surrogate", at: lastRawSegmentStart)
                    } else {
                        appendScalar(hi, into: &out)
                    }
                default:
                    throw fail("invalid escape", at: i - 2)
                }
            }
            guard let s = out.withUnsafeBufferPointer({ String(validating: $0, as: UTF8.self) }) else {
                throw ParseError(offset: start, kind: .invalidUTF8)
            }
            return s
        }

        func firstInvalidUTF8(_ span: UnsafeBufferPointer<UInt8>) -> Int {
            var it = span.makeIterator()
            var decoder = UTF8()
            var consumed = 0
            // Track offset by re-encoding lengths of decoded scalars.
            while true {
                switch decoder.decode(&it) {
                case .scalarValue(let s): consumed += UTF8.width(s)
                case .emptyInput: return consumed
                case .error: return consumed
                }
            }
        }
    }
}
