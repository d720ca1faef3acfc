/// One `Key: value` pair of an infotext's parameter line, its value unquoted.
public struct InfotextField: Sendable, Equatable {
    public var key: String
    public var value: String

    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

/// Generation parameters in AUTOMATIC1111's "infotext" format, the `parameters` text of its PNGs
/// (`create_infotext` in modules/processing.py, `parse_generation_parameters` and `quote` in
/// modules/infotext_utils.py):
///
/// ```
/// a photo of a cat, best quality
/// Negative prompt: blurry
/// Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 42, Size: 512x512, Model hash: 0123456789, Model: sd15, Version: LeanDiffusion 0.1.0
/// ```
///
/// The prompt comes first (it may span lines), then `Negative prompt: ...` when there is one, then one line of
/// `Key: value` pairs joined by ", " in which a value holding `,`, `:` or a newline is JSON-quoted (non-ASCII kept).
/// Parsing follows A1111: the last line is the parameter line when it holds at least 3 pairs, every other line is
/// stripped of surrounding whitespace, lines from the one starting `Negative prompt:` on are the negative prompt, a
/// quoted value is unquoted with JSON's rules (kept as written if that fails) and a pair with an empty value is
/// dropped. So a prompt round-trips unless a line of it has surrounding whitespace or starts with
/// `Negative prompt:`, as in A1111.
public struct GenerationParameters: Sendable, Equatable {
    public var prompt: String
    public var negativePrompt: String
    /// The parameter line's pairs in order.
    public var fields: [InfotextField]

    public init(prompt: String, negativePrompt: String = "", fields: [InfotextField] = []) {
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.fields = fields
    }

    /// The value of `key` (nil when absent); setting nil removes it, setting a new key appends it.
    public subscript(key: String) -> String? {
        get { fields.first { $0.key == key }?.value }
        set {
            if let i = fields.firstIndex(where: { $0.key == key }) {
                if let newValue { fields[i].value = newValue } else { fields.remove(at: i) }
            } else if let newValue {
                fields.append(InfotextField(key, newValue))
            }
        }
    }

    public var steps: Int? { self["Steps"].flatMap { Int($0) } }
    public var sampler: String? { self["Sampler"] }
    public var scheduleType: String? { self["Schedule type"] }
    public var cfgScale: Float? { self["CFG scale"].flatMap { Float($0) } }
    public var seed: UInt64? { self["Seed"].flatMap { UInt64($0) } }
    public var modelHash: String? { self["Model hash"] }
    public var model: String? { self["Model"] }
    /// A1111's 1-based CLIP skip (1 = the last layer, the default when absent).
    public var clipSkip: Int { self["Clip skip"].flatMap { Int($0) } ?? 1 }
    /// `Size: WxH`.
    public var size: (width: Int, height: Int)? {
        guard let s = self["Size"], let x = s.firstIndex(of: "x"),
              let w = Int(s[..<x]), let h = Int(s[s.index(after: x)...]) else { return nil }
        return (w, h)
    }

    // MARK: format

    /// The infotext: prompt, negative prompt line (when not empty), parameter line; stripped as A1111 does.
    public var infotext: String {
        var text = prompt
        if !negativePrompt.isEmpty { text += "\nNegative prompt: " + negativePrompt }
        let line = fields.map { $0.key == $0.value ? $0.key : "\($0.key): \(Self.quote($0.value))" }
        text += "\n" + line.joined(separator: ", ")
        return Self.pythonStrip(text)
    }

    /// A1111's `quote`: JSON (`json.dumps(..., ensure_ascii=False)`) when the value holds `,`, `\n` or `:`.
    static func quote(_ v: String) -> String {
        guard v.contains(",") || v.contains("\n") || v.contains(":") else { return v }
        var out = "\""
        for s in v.unicodeScalars {
            switch s {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if s.value < 0x20 {
                    let hex = String(s.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(s)
                }
            }
        }
        return out + "\""
    }

    // MARK: parse

    /// Parses an infotext as A1111's `parse_generation_parameters` does (never fails: text that is not an infotext
    /// becomes the prompt).
    public init(infotext text: String) {
        var lines = Self.pythonStrip(text).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var pairs = Self.findPairs(Array(lines.removeLast().unicodeScalars))
        if pairs.count < 3 {
            lines = Self.pythonStrip(text).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            pairs = []
        }
        var prompt = "", negative = "", inNegative = false
        for raw in lines {
            var line = Self.pythonStrip(raw)
            if line.hasPrefix("Negative prompt:") {
                inNegative = true
                line = Self.pythonStrip(String(line.unicodeScalars.dropFirst(16)))
            }
            if inNegative { negative += (negative.isEmpty ? "" : "\n") + line } else { prompt += (prompt.isEmpty ? "" : "\n") + line }
        }
        var fields: [InfotextField] = []
        for (k, v) in pairs {
            guard let first = v.unicodeScalars.first, let last = v.unicodeScalars.last else { continue }  // v[0] raises
            let value = first == "\"" && last == "\"" ? (Self.jsonString(v) ?? v) : v
            if let i = fields.firstIndex(where: { $0.key == k }) { fields[i].value = value } else { fields.append(InfotextField(k, value)) }
        }
        self.init(prompt: prompt, negativePrompt: negative, fields: fields)
    }

    /// `re.findall(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)', line)`, by hand.
    static func findPairs(_ s: [Unicode.Scalar]) -> [(String, String)] {
        func isWord(_ c: Unicode.Scalar) -> Bool {
            c == "_" || c.properties.isAlphabetic || c.properties.numericType != nil
        }
        func str(_ r: Range<Int>) -> String { String(String.UnicodeScalarView(s[r])) }
        let n = s.count
        var out: [(String, String)] = []
        var pos = 0
        while pos < n {
            var i = pos
            while i < n && isPythonSpace(s[i]) { i += 1 }
            guard i < n, isWord(s[i]) else { pos += 1; continue }
            var j = i + 1
            while j < n && (isWord(s[j]) || s[j] == " " || s[j] == "-" || s[j] == "/") { j += 1 }
            guard j > i + 1, j < n, s[j] == ":" else { pos += 1; continue }
            var m = j + 1
            while m < n && isPythonSpace(s[m]) { m += 1 }
            // The quoted alternative first: '"', one or more of (backslash + any character | not \ or "), '"'.
            var matched: (value: Range<Int>, end: Int)? = nil
            if m < n, s[m] == "\"" {
                var q = m + 1, count = 0
                while q < n && s[q] != "\"" {
                    if s[q] == "\\" {
                        guard q + 1 < n, s[q + 1] != "\n" else { q = n; break }
                        q += 2
                    } else {
                        q += 1
                    }
                    count += 1
                }
                if q < n, count > 0, q + 1 == n || s[q + 1] == "," { matched = (m..<(q + 1), q + 1) }
            }
            if matched == nil {
                var c = m
                while c < n && s[c] != "," { c += 1 }
                matched = (m..<c, c)
            }
            let (value, end) = matched!
            out.append((str(i..<j), str(value)))
            pos = end < n ? end + 1 : end  // the ',' is part of the match
        }
        return out
    }

    /// `json.loads` of a JSON string literal; nil when it is not one (A1111 then keeps the text as written).
    static func jsonString(_ literal: String) -> String? {
        let s = Array(literal.unicodeScalars)
        guard s.count >= 2, s.first == "\"", s.last == "\"" else { return nil }
        var out = String.UnicodeScalarView()
        var i = 1
        func hex4(_ at: Int) -> UInt32? {
            guard at + 4 <= s.count - 1 else { return nil }
            return UInt32(String(String.UnicodeScalarView(s[at..<(at + 4)])), radix: 16)
        }
        while i < s.count - 1 {
            let c = s[i]
            if c == "\"" || c.value < 0x20 { return nil }  // an unescaped quote ends the string early; strict mode
            guard c == "\\" else { out.append(c); i += 1; continue }
            guard i + 1 < s.count - 1 else { return nil }
            let e = s[i + 1]
            i += 2
            switch e {
            case "\"": out.append("\"")
            case "\\": out.append("\\")
            case "/": out.append("/")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "n": out.append("\n")
            case "r": out.append("\r")
            case "t": out.append("\t")
            case "u":
                guard let u = hex4(i) else { return nil }
                i += 4
                if (0xD800..<0xDC00).contains(u) {
                    guard s.count - 1 >= i + 6, s[i] == "\\", s[i + 1] == "u", let lo = hex4(i + 2),
                          (0xDC00..<0xE000).contains(lo) else { return nil }  // a lone surrogate has no Swift string
                    i += 6
                    out.append(Unicode.Scalar(0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00))!)
                } else {
                    guard let scalar = Unicode.Scalar(u) else { return nil }
                    out.append(scalar)
                }
            default: return nil
            }
        }
        return String(out)
    }

    /// Python's `str.isspace` for one character.
    static func isPythonSpace(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 9...13, 28...32, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    /// Python's `str.strip()`.
    static func pythonStrip(_ s: String) -> String {
        let u = Array(s.unicodeScalars)
        var a = 0, b = u.count
        while a < b && isPythonSpace(u[a]) { a += 1 }
        while b > a && isPythonSpace(u[b - 1]) { b -= 1 }
        return String(String.UnicodeScalarView(u[a..<b]))
    }
}
