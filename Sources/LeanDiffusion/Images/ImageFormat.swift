/// What a file's first bytes say it is. The format comes from the bytes, never the file name: a JPEG named .png
/// is read as a JPEG, a text file named .png is refused as text.
enum ImageFormat: Equatable {
    case png
    case jpeg
    /// A real image format we do not decode ("a GIF image").
    case otherImage(String)
    /// Not an image ("an empty file", "text (starts \"...\")").
    case notImage(String)

    static func sniff(_ bytes: [UInt8]) -> ImageFormat {
        func starts(_ prefix: [UInt8], at offset: Int = 0) -> Bool {
            bytes.count >= offset + prefix.count && Array(bytes[offset..<offset + prefix.count]) == prefix
        }
        func ascii(_ s: String) -> [UInt8] { Array(s.utf8) }
        if bytes.isEmpty { return .notImage("an empty file") }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if starts([0xFF, 0xD8, 0xFF]) { return .jpeg }
        if starts(ascii("GIF87a")) || starts(ascii("GIF89a")) { return .otherImage("a GIF image") }
        if starts(ascii("RIFF")) && starts(ascii("WEBP"), at: 8) { return .otherImage("a WebP image") }
        if starts(ascii("II*\0")) || starts(ascii("MM\0*")) { return .otherImage("a TIFF image") }
        if starts(ascii("ftyp"), at: 4) && bytes.count >= 12 {
            let brand = String(decoding: bytes[8..<12], as: UTF8.self)
            if ["avif", "avis"].contains(brand) { return .otherImage("an AVIF image") }
            if ["heic", "heix", "heim", "heis", "mif1", "msf1"].contains(brand) { return .otherImage("a HEIF/HEIC image") }
            return .notImage("an ISO media file (brand \"\(brand)\", e.g. MP4 video)")
        }
        if starts([0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20]) || starts([0xFF, 0x4F, 0xFF, 0x51]) {
            return .otherImage("a JPEG 2000 image")
        }
        if starts(ascii("qoif")) { return .otherImage("a QOI image") }
        if starts(ascii("8BPS")) { return .otherImage("a Photoshop (PSD) file") }
        if starts([0, 0, 1, 0]) && bytes.count >= 6 { return .otherImage("an ICO icon") }
        if starts(ascii("BM")) && bytes.count >= 26 && bytes[6..<10].allSatisfy({ $0 == 0 }) {
            return .otherImage("a BMP image")
        }
        if starts(ascii("%PDF")) { return .notImage("a PDF document") }
        if starts([0x50, 0x4B, 0x03, 0x04]) { return .notImage("a ZIP archive") }
        if starts([0x1F, 0x8B]) { return .notImage("gzip-compressed data") }
        if let text = textPreview(bytes) { return .notImage("text (starts \"\(text)\")") }
        let hex = bytes.prefix(8).map { byte -> String in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }
        return .notImage("binary data (starts \(hex.joined(separator: " ")))")
    }

    /// The first characters when the first 512 bytes are UTF-8 text without control characters other than tab,
    /// newline, carriage return and form feed (a multi-byte character cut at byte 512 still counts as text).
    static func textPreview(_ bytes: [UInt8]) -> String? {
        let head = Array(bytes.prefix(512))
        // A multi-byte character cut by the 512-byte prefix: retry without its first 1...3 bytes.
        let drops = bytes.count > 512 ? 0...3 : 0...0
        guard let text = drops.lazy.compactMap({ String(validating: head.dropLast($0), as: UTF8.self) }).first else {
            return nil
        }
        for scalar in text.unicodeScalars where scalar.value < 0x20 || scalar.value == 0x7F {
            if ![0x09, 0x0A, 0x0D, 0x0C].contains(scalar.value) { return nil }
        }
        let preview = text.prefix(24).map { c -> String in
            switch c {
            case "\n": return "\\n"
            case "\r": return "\\r"
            case "\t": return "\\t"
            case "\"": return "\\\""
            default: return String(c)
            }
        }.joined()
        return preview + (text.count > 24 ? "..." : "")
    }
}
