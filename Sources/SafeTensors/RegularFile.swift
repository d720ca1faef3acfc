#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading small input files (configs, tokenizer files) without the ways a path can hang or exhaust memory:
/// the file is opened with `O_NONBLOCK` (opening a FIFO for reading would otherwise wait for a writer forever),
/// then `fstat` must say it is a regular file before a byte is read, and its size must be under a limit.
public enum RegularFile {
    /// The largest config or tokenizer file read (CLIP's vocab.json is 1.6 MB).
    public static let defaultByteLimit = 256 << 20

    /// The file's bytes. Throws `FileReadError` naming the path: missing, not a regular file (FIFO, directory,
    /// device, socket), larger than `byteLimit`, or unreadable (with the system's reason).
    public static func read(_ path: String, byteLimit: Int = defaultByteLimit) throws(FileReadError) -> [UInt8] {
        let fd = try openRegular(path)
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileReadError(path: path, reason: .readFailed(errno: errno)) }
        let size = Int(st.st_size)
        guard size <= byteLimit else { throw FileReadError(path: path, reason: .tooLarge(size: size, limit: byteLimit)) }
        // Read to end of file: /proc and /sys files report size 0 and have content.
        var out = [UInt8](repeating: 0, count: max(size + 1, 4096))
        var done = 0
        while true {
            if done == out.count {
                guard out.count <= byteLimit else {
                    throw FileReadError(path: path, reason: .tooLarge(size: out.count, limit: byteLimit))
                }
                out.append(contentsOf: [UInt8](repeating: 0, count: out.count))
            }
            let n = out.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw FileReadError(path: path, reason: .readFailed(errno: errno))
            }
            if n == 0 { break }
            done += n
        }
        out.removeSubrange(done...)
        return out
    }

    /// Whether `path` names an existing regular file (following symlinks); false for FIFOs, directories, devices.
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// Opens `path` read-only without blocking and checks that it is a regular file; the caller closes the
    /// descriptor. Blocking mode is restored, so reads behave as usual.
    public static func openRegular(_ path: String) throws(FileReadError) -> Int32 {
        var fd: Int32
        repeat { fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) } while fd < 0 && errno == EINTR
        guard fd >= 0 else {
            let e = errno
            throw FileReadError(path: path, reason: e == ENOENT ? .notFound : .openFailed(errno: e))
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw FileReadError(path: path, reason: .readFailed(errno: e))
        }
        if let kind = fileKindName(st.st_mode) {
            close(fd)
            throw FileReadError(path: path, reason: .notRegular(kind: kind))
        }
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return fd
    }

    /// "a FIFO (named pipe)", "a directory", ... for a mode that is not a regular file; nil for a regular file.
    public static func fileKindName(_ mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO (named pipe)"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        default: return "not a regular file"
        }
    }
}

/// `read(2)` (the name is shadowed inside `RegularFile`).
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(fd, buffer, count)
}

/// A config or tokenizer file that could not be read; the description names the file and what to do.
public struct FileReadError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Reason: Equatable, Sendable {
        case notFound
        /// A FIFO, directory, device or socket where a regular file should be (`kind` says which).
        case notRegular(kind: String)
        case tooLarge(size: Int, limit: Int)
        case openFailed(errno: Int32)
        case readFailed(errno: Int32)
    }

    public let path: String
    public let reason: Reason

    public init(path: String, reason: Reason) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "\(path): \(message)" }

    /// What went wrong, without the path.
    public var message: String {
        switch reason {
        case .notFound: return "file not found"
        case .notRegular(let kind): return "is \(kind), not a regular file; replace it with the file itself"
        case .tooLarge(let size, let limit):
            return "is \(size) bytes, more than the \(limit)-byte limit for a config file; is it the right file?"
        case .openFailed(let e): return "cannot open (\(String(cString: strerror(e))))"
        case .readFailed(let e): return "cannot read (\(String(cString: strerror(e))))"
        }
    }
}
