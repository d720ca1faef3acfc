import CPNGText
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A PNG text chunk: a keyword (1-79 Latin-1 characters) and its text.
public struct PNGTextChunk: Sendable, Equatable {
    public var keyword: String
    public var text: String

    public init(keyword: String, text: String) {
        self.keyword = keyword
        self.text = text
    }

    /// How PIL's `PngInfo.add_text` (and so AUTOMATIC1111) stores it: tEXt with the text as Latin-1 when every
    /// character is in Latin-1, else an uncompressed iTXt chunk in UTF-8. NUL, which neither chunk can hold inside its
    /// text (libpng ends the string there), is dropped.
    var encoded: (bytes: [UInt8], utf8: Bool) {
        let scalars = text.unicodeScalars.filter { $0.value != 0 }
        if scalars.allSatisfy({ $0.value <= 0xFF }) { return (scalars.map { UInt8($0.value) }, false) }
        return (Array(String(String.UnicodeScalarView(scalars)).utf8), true)
    }
}

/// Why a PNG's metadata could not be read (or written).
public enum ImageMetadataError: Error, Equatable, CustomStringConvertible {
    case fileNotFound(String)
    /// Not a PNG, or a damaged one: `reason` is libpng's.
    case notPNG(path: String, reason: String)
    /// The file cannot be opened or is not a regular file.
    case unreadable(path: String, reason: String)
    /// The PNG carries no `parameters` text (no generation parameters were written into it).
    case noParameters(String)
    /// A text chunk keyword PNG cannot hold: 1-79 Latin-1 characters, no leading, trailing or double spaces.
    case invalidKeyword(String)

    public var description: String {
        switch self {
        case .fileNotFound(let p): return "file not found: \(p)"
        case .notPNG(let p, let r): return "\(p) is not a readable PNG: \(r)"
        case .unreadable(let p, let r): return "cannot read \(p): \(r)"
        case .noParameters(let p): return "\(p) has no generation parameters (no 'parameters' text chunk)"
        case .invalidKeyword(let k): return "'\(k)' cannot be a PNG text keyword (1-79 Latin-1 characters)"
        }
    }
}

/// PNG text chunks through libpng (`CPNGText`, which keeps libpng's longjmp errors out of Swift).
public enum PNGText {
    /// Every text chunk of the PNG at `path` (tEXt and zTXt decoded as Latin-1, iTXt as UTF-8, as PIL does), in
    /// file order.
    public static func read(from path: String) throws -> [PNGTextChunk] {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            if e == ENOENT { throw ImageMetadataError.fileNotFound(path) }
            throw ImageMetadataError.unreadable(path: path, reason: String(cString: strerror(e)))
        }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw ImageMetadataError.unreadable(path: path, reason: "not a regular file")
        }
        guard let file = fdopen(fd, "rb") else {
            let e = errno
            close(fd)
            throw ImageMetadataError.unreadable(path: path, reason: String(cString: strerror(e)))
        }
        defer { fclose(file) }
        final class Collector { var chunks: [PNGTextChunk] = [] }
        let collector = Collector()
        var message = [CChar](repeating: 0, count: 256)
        let ok = withExtendedLifetime(collector) {
            lean_png_read_text(file, { context, keyword, text, length, compression in
                guard let context, let keyword else { return }
                let c = Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue()
                let bytes = text.map { UnsafeRawBufferPointer(start: $0, count: length) }.map(Array.init) ?? []
                let utf8 = compression == PNGText.itxtNone || compression == PNGText.itxtZTXT
                let decoded = utf8 ? String(decoding: bytes, as: UTF8.self) : PNGText.latin1(bytes)
                let key = Array(UnsafeRawBufferPointer(start: keyword, count: strlen(keyword)))
                c.chunks.append(PNGTextChunk(keyword: PNGText.latin1(key), text: decoded))
            }, Unmanaged.passUnretained(collector).toOpaque(), &message, message.count)
        }
        guard ok != 0 else {
            throw ImageMetadataError.notPNG(path: path, reason: PNGText.string(message))
        }
        return collector.chunks
    }

    /// The text of the first chunk named `keyword`, or nil.
    public static func text(_ keyword: String, from path: String) throws -> String? {
        try read(from: path).first { $0.keyword == keyword }?.text
    }

    /// A NUL-terminated message buffer as text.
    static func string(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Latin-1 bytes as a string (each byte one scalar).
    static func latin1(_ bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(b)) }
        return String(s)
    }

    /// A keyword libpng accepts: 1-79 printable Latin-1 characters, no leading/trailing/double spaces.
    static func checkKeyword(_ k: String) throws -> [UInt8] {
        let scalars = Array(k.unicodeScalars)
        guard (1...79).contains(scalars.count),
              scalars.allSatisfy({ (32...126).contains($0.value) || (161...255).contains($0.value) }),
              scalars.first != " ", scalars.last != " ", !k.contains("  ") else {
            throw ImageMetadataError.invalidKeyword(k)
        }
        return scalars.map { UInt8($0.value) }
    }

    // libpng's compression codes for iTXt (png.h), as plain values for the callback.
    static let itxtNone: Int32 = 1
    static let itxtZTXT: Int32 = 2
}

extension RGBImage {
    /// Writes a PNG with the given text chunks (before the image data), atomically (temporary file + rename, as
    /// `writePNG(to:)`). Text that is all Latin-1 goes in tEXt chunks, other text in uncompressed iTXt (UTF-8), as
    /// PIL writes AUTOMATIC1111's `parameters`.
    public func writePNG(to path: String, text: [PNGTextChunk]) throws {
        let keywords = try text.map { try PNGText.checkKeyword($0.keyword) }
        try AtomicFile.write(to: path) { file in try encodePNG(to: file, path: path, text: text, keywords: keywords) }
    }

    /// The PNG bytes (and text chunks) onto an open `FILE*` through libpng's full API.
    func encodePNG(to file: UnsafeMutablePointer<FILE>, path: String, text: [PNGTextChunk], keywords: [[UInt8]]) throws {
        guard width > 0, height > 0, width <= Int(UInt32.max / 3), height <= Int(UInt32.max) else {
            throw PipelineError.outputFailed(path: path, reason: "a PNG cannot hold a \(width)x\(height) image")
        }
        // NUL-terminated copies that live until the call returns.
        let encoded = text.map(\.encoded)
        let keyBuffers = keywords.map { k -> UnsafeMutablePointer<CChar> in
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: k.count + 1)
            for (i, b) in k.enumerated() { p[i] = CChar(bitPattern: b) }
            p[k.count] = 0
            return p
        }
        let textBuffers = encoded.map { e -> UnsafeMutablePointer<CChar> in
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: e.bytes.count + 1)
            for (i, b) in e.bytes.enumerated() { p[i] = CChar(bitPattern: b) }
            p[e.bytes.count] = 0
            return p
        }
        defer {
            keyBuffers.forEach { $0.deallocate() }
            textBuffers.forEach { $0.deallocate() }
        }
        let chunks = (0..<text.count).map { i in
            lean_png_text(keyword: keyBuffers[i], text: textBuffers[i], length: encoded[i].bytes.count,
                          utf8: encoded[i].utf8 ? 1 : 0)
        }
        var message = [CChar](repeating: 0, count: 256)
        errno = 0
        let ok = pixels.withUnsafeBufferPointer { px in
            chunks.withUnsafeBufferPointer { c in
                lean_png_write_rgb(file, px.baseAddress, UInt32(width), UInt32(height), c.baseAddress, Int32(c.count),
                                   &message, message.count)
            }
        }
        if ok == 0 {
            let e = errno
            let libpng = PNGText.string(message)
            throw PipelineError.outputFailed(path: path, reason: e != 0 ? "\(String(cString: strerror(e))) (libpng: \(libpng))" : "libpng: \(libpng)")
        }
    }
}
