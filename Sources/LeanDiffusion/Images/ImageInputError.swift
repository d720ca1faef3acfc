/// An input image (for image-to-image or inpainting) or mask that cannot be used. Each description names the file
/// and says what to do.
public enum ImageInputError: Error, CustomStringConvertible, Equatable, Sendable {
    case fileNotFound(path: String)
    /// A directory, FIFO, device or socket where an image file should be; `kind` says which ("a directory").
    case notRegularFile(path: String, kind: String)
    /// The file exists but could not be opened or read; `reason` is the system's.
    case unreadable(path: String, reason: String)
    /// The file is larger than `limit` bytes (checked before reading it).
    case fileTooLarge(path: String, size: Int, limit: Int)
    /// The first bytes are neither PNG nor JPEG nor another image format; `looksLike` says what they resemble
    /// ("an empty file", "text (starts \"hello\")", "a ZIP archive").
    case notAnImage(path: String, looksLike: String)
    /// A real image we do not read: another format (GIF, WebP, ...) or a PNG/JPEG variant (12-bit JPEG).
    case unsupported(path: String, what: String)
    /// Damaged or truncated PNG/JPEG data; `reason` is libpng's or libjpeg's message.
    case corrupt(path: String, format: String, reason: String)
    /// The header's size is over the limits (checked before any pixel buffer is allocated).
    case tooLarge(path: String, width: Int, height: Int, maxSide: Int, maxPixels: Int)
    /// A requested or derived size that the VAE cannot take (not a positive multiple of the scale factor, or over
    /// the limits); `reason` says which.
    case invalidSize(width: Int, height: Int, reason: String)
    /// An inpainting mask whose size differs from its image's. diffusers would resize the mask silently; a mask
    /// drawn for another image is more likely a mistake.
    case maskSize(image: (width: Int, height: Int), mask: (width: Int, height: Int))

    public static func == (a: ImageInputError, b: ImageInputError) -> Bool {
        switch (a, b) {
        case let (.fileNotFound(p), .fileNotFound(q)): return p == q
        case let (.notRegularFile(p, k), .notRegularFile(q, l)): return p == q && k == l
        case let (.unreadable(p, r), .unreadable(q, s)): return p == q && r == s
        case let (.fileTooLarge(p, s, l), .fileTooLarge(q, t, m)): return p == q && s == t && l == m
        case let (.notAnImage(p, k), .notAnImage(q, l)): return p == q && k == l
        case let (.unsupported(p, w), .unsupported(q, v)): return p == q && w == v
        case let (.corrupt(p, f, r), .corrupt(q, g, s)): return p == q && f == g && r == s
        case let (.tooLarge(p, w, h, s, n), .tooLarge(q, v, g, t, m)):
            return p == q && w == v && h == g && s == t && n == m
        case let (.invalidSize(w, h, r), .invalidSize(v, g, s)): return w == v && h == g && r == s
        case let (.maskSize(i, m), .maskSize(j, n)):
            return i.width == j.width && i.height == j.height && m.width == n.width && m.height == n.height
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "\(path): image file not found; check the path"
        case .notRegularFile(let path, let kind):
            return "\(path): is \(kind), not an image file; give the path of a PNG or JPEG file"
        case .unreadable(let path, let reason):
            return "\(path): cannot read the image file (\(reason)); check its permissions"
        case .fileTooLarge(let path, let size, let limit):
            return "\(path): is \(size) bytes, more than the \(limit)-byte limit for an input image; "
                + "is it the right file? Save a smaller PNG or JPEG"
        case .notAnImage(let path, let looksLike):
            return "\(path): not an image: the file is \(looksLike), not PNG or JPEG data; "
                + "give a PNG or JPEG file (the format is read from the bytes, not the file name)"
        case .unsupported(let path, let what):
            return "\(path): \(what) cannot be read; convert it to an 8-bit PNG or a baseline/progressive JPEG"
        case .corrupt(let path, let format, let reason):
            return "\(path): damaged or truncated \(format) file (\(reason)); re-export or download it again"
        case .tooLarge(let path, let width, let height, let maxSide, let maxPixels):
            return "\(path): a \(width)x\(height) image is over the input limits (sides up to \(maxSide), "
                + "\(maxPixels) pixels in all); scale it down first"
        case .invalidSize(let width, let height, let reason):
            return "invalid image size \(width)x\(height): \(reason)"
        case .maskSize(let image, let mask):
            return "the mask is \(mask.width)x\(mask.height) but the image is \(image.width)x\(image.height); "
                + "the mask must have the image's size (resize or redraw it for this image)"
        }
    }
}
