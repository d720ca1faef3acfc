/// The EXIF orientation Pillow's `ImageOps.exif_transpose` acts on, found the way `Image.getexif` finds it: the
/// Exif block (JPEG APP1, PNG eXIf, else ImageMagick's "Raw profile type exif" PNG text), IFD0 tag 0x0112; when that
/// tag is absent, an XMP `tiff:Orientation` attribute or element. Every offset and count is bounds-checked; a
/// malformed block counts as having no orientation (where Pillow would raise for a bad TIFF header).
enum ExifOrientation {
    static let tag = 0x0112

    /// 2...8 when the image must be transposed, nil otherwise (absent, 1, or a value Pillow's table has no entry
    /// for).
    static func transposition(exif: [UInt8]?, rawProfileExif: [UInt8]?, xmp: [UInt8]?) -> Int? {
        let block = exif ?? rawProfileExif.flatMap(decodeRawProfile)
        let value: Value? = block.flatMap(orientationTag)
        switch value {
        case .some(.number(let v)): return (2...8).contains(v) ? v : nil
        case .some(.other): return nil  // tag present (so XMP is not consulted), no usable number
        case .none:
            guard let v = xmp.flatMap(xmpOrientation) else { return nil }
            return (2...8).contains(v) ? v : nil
        }
    }

    enum Value: Equatable {
        /// An integer, or a float/rational with an integral value (Pillow's dict lookup matches 6.0 and 6/1 too).
        case number(Int)
        /// Present with a value that is not an integer (ASCII, BYTE, a fraction): Pillow finds no transpose for it.
        case other
    }

    /// The first tag-0x0112 entry of IFD0 whose data Pillow would read, as Pillow's `ImageFileDirectory_v2.load`
    /// reads entries: unknown types and out-of-range data are skipped, a truncated directory keeps the entries
    /// before the cut.
    static func orientationTag(_ data: [UInt8]) -> Value? {
        var tiff = ArraySlice(data)
        let prefix = Array("Exif\0\0".utf8)
        for _ in 0..<2 where tiff.starts(with: prefix) { tiff = tiff.dropFirst(6) }
        let b = Array(tiff)
        guard b.count >= 8 else { return nil }
        let little: Bool
        switch (b[0], b[1]) {
        case (0x49, 0x49): little = true
        case (0x4D, 0x4D): little = false
        default: return nil
        }
        // Pillow's accepted headers: 42 in either byte order ("MM\0*", "MM*\0", ...); BigTIFF (43) is not Exif.
        guard (b[2] == 0x2A && b[3] == 0) || (b[2] == 0 && b[3] == 0x2A) else { return nil }
        func u16(_ at: Int) -> Int? {
            guard at >= 0, at + 2 <= b.count else { return nil }
            return little ? Int(b[at]) | Int(b[at + 1]) << 8 : Int(b[at]) << 8 | Int(b[at + 1])
        }
        func u32(_ at: Int) -> Int? {
            guard let lo = u16(little ? at : at + 2), let hi = u16(little ? at + 2 : at) else { return nil }
            return hi << 16 | lo
        }
        guard let ifd = u32(4), let count = u16(ifd) else { return nil }
        for i in 0..<count {
            let entry = ifd + 2 + 12 * i
            guard let tag = u16(entry), let type = u16(entry + 2), let n = u32(entry + 4) else { return nil }
            guard tag == Self.tag, let unit = unitSize(type), n > 0 else { continue }
            let size = n * unit  // n < 2^32, unit <= 8: no overflow in Int
            var at = entry + 8
            if size > 4 {
                guard let offset = u32(entry + 8) else { return nil }
                at = offset
            }
            guard at + size <= b.count else { continue }  // Pillow: "Possibly corrupt EXIF data", tag skipped
            return value(type: type, bytes: Array(b[at..<at + min(size, 8)]), little: little)
        }
        return nil
    }

    /// Byte sizes of the TIFF types Pillow registers loaders for (others are skipped as unsupported).
    static func unitSize(_ type: Int) -> Int? {
        switch type {
        case 1, 2, 6, 7: return 1
        case 3, 8: return 2
        case 4, 9, 11, 13: return 4
        case 5, 10, 12, 16: return 8
        default: return nil
        }
    }

    /// The first value of an entry; `bytes` holds at least one element.
    static func value(type: Int, bytes: [UInt8], little: Bool) -> Value {
        func unsigned(_ count: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<count { v |= UInt64(bytes[little ? i : count - 1 - i]) << (8 * UInt64(i)) }
            return v
        }
        func word(_ index: Int) -> UInt32 {  // the index-th 32-bit word, for rationals
            let s = Array(bytes[4 * index..<4 * index + 4])
            return little ? UInt32(s[0]) | UInt32(s[1]) << 8 | UInt32(s[2]) << 16 | UInt32(s[3]) << 24
                : UInt32(s[3]) | UInt32(s[2]) << 8 | UInt32(s[1]) << 16 | UInt32(s[0]) << 24
        }
        func integral(_ d: Double) -> Value {
            d.isFinite && d.rounded() == d && abs(d) < 1e9 ? .number(Int(d)) : .other
        }
        switch type {
        case 3: return .number(Int(unsigned(2)))
        case 4, 13: return .number(Int(unsigned(4)))
        case 6: return .number(Int(Int8(truncatingIfNeeded: unsigned(1))))
        case 8: return .number(Int(Int16(truncatingIfNeeded: unsigned(2))))
        case 9: return .number(Int(Int32(truncatingIfNeeded: unsigned(4))))
        case 11: return integral(Double(Float(bitPattern: UInt32(unsigned(4)))))
        case 12: return integral(Double(bitPattern: unsigned(8)))
        case 5, 10:
            let (n, d) = (word(0), word(1))
            guard d != 0 else { return .other }
            if type == 5 { return n % d == 0 ? .number(Int(n / d)) : .other }
            let (sn, sd) = (Int(Int32(bitPattern: n)), Int(Int32(bitPattern: d)))
            return sn % sd == 0 ? .number(sn / sd) : .other
        default: return .other  // BYTE and UNDEFINED decode to bytes, ASCII to a string; LONG8 is BigTIFF's
        }
    }

    /// ImageMagick's "Raw profile type exif" text: a header of three lines ("\nexif\n   <length>\n"), then hex
    /// digits over many lines. Pillow joins the lines after the third and reads them with `bytes.fromhex`, which
    /// skips whitespace between byte pairs. Anything else (odd digit count, other characters) is nil.
    static func decodeRawProfile(_ text: [UInt8]) -> [UInt8]? {
        let lines = text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        guard lines.count > 3 else { return nil }
        var out: [UInt8] = []
        var pending: UInt8? = nil
        for line in lines[3...] {
            for c in line {
                let digit: UInt8
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c - UInt8(ascii: "A") + 10
                case 0x20, 0x09, 0x0B, 0x0C, 0x0D:
                    if pending != nil { return nil }
                    continue
                default: return nil
                }
                if let high = pending {
                    out.append(high << 4 | digit)
                    pending = nil
                } else {
                    pending = digit
                }
            }
        }
        return pending == nil ? out : nil
    }

    /// The digit of the first `tiff:Orientation="d` or `tiff:Orientation>d` in XMP text (Pillow's regular
    /// expression `tiff:Orientation(="|>)([0-9])`).
    static func xmpOrientation(_ xmp: [UInt8]) -> Int? {
        let key = Array("tiff:Orientation".utf8)
        guard xmp.count > key.count else { return nil }
        var i = 0
        while i + key.count < xmp.count {
            if xmp[i] == key[0] && Array(xmp[i..<i + key.count]) == key {
                var j = i + key.count
                if xmp[j] == UInt8(ascii: "=") {
                    j += 1
                    guard j < xmp.count, xmp[j] == UInt8(ascii: "\"") else { i += 1; continue }
                } else if xmp[j] != UInt8(ascii: ">") {
                    i += 1
                    continue
                }
                j += 1
                if j < xmp.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(xmp[j]) {
                    return Int(xmp[j] - UInt8(ascii: "0"))
                }
            }
            i += 1
        }
        return nil
    }
}
