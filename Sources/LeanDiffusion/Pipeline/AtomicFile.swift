#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Output that loses nothing: a file is written to a temporary name in the target's own directory, flushed to
/// disk, then renamed over the target. A failed write leaves an existing file untouched; a process killed
/// mid-write leaves at most a hidden `.NAME.tmp-*` file, never a truncated file under the target's name.
/// Every failure is `PipelineError.outputFailed` naming the file and the system's reason.
public enum AtomicFile {
    /// Writes the bytes `body` produces on `file` (a `FILE*` open for writing) to `path`, atomically.
    /// `body` may throw; nothing is left behind then.
    public static func write(to path: String, _ body: (UnsafeMutablePointer<FILE>) throws -> Void) throws {
        let (dir, name) = OutputTarget.split(path)
        var suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        var fd: Int32 = -1
        var tmp = ""
        for _ in 0..<8 {
            tmp = dir + "/." + name + ".tmp-\(getpid())-" + suffix
            fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            if fd >= 0 || errno != EEXIST { break }
            suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        }
        guard fd >= 0 else {
            throw PipelineError.outputFailed(path: path, reason: "cannot create a file in \(dir) (\(systemReason(errno)))")
        }
        guard let file = fdopen(fd, "wb") else {
            let e = errno
            close(fd)
            unlink(tmp)
            throw PipelineError.outputFailed(path: path, reason: systemReason(e))
        }
        var closed = false
        do {
            errno = 0
            try body(file)
            if fflush(file) != 0 || ferror(file) != 0 {
                throw PipelineError.outputFailed(path: path, reason: systemReason(errno == 0 ? EIO : errno))
            }
            if fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP {
                throw PipelineError.outputFailed(path: path, reason: systemReason(errno))
            }
            closed = true
            if fclose(file) != 0 { throw PipelineError.outputFailed(path: path, reason: systemReason(errno)) }
            guard rename(tmp, path) == 0 else {
                throw PipelineError.outputFailed(path: path, reason: "cannot move the finished file into place (\(systemReason(errno)))")
            }
        } catch {
            if !closed { fclose(file) }
            unlink(tmp)
            throw error
        }
    }

    /// Writes `bytes` to `path`, atomically.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        try write(to: path) { file in
            let n = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
            guard n == bytes.count else { throw PipelineError.outputFailed(path: path, reason: systemReason(errno == 0 ? EIO : errno)) }
        }
    }

    static func systemReason(_ e: Int32) -> String { String(cString: strerror(e)) }
}

/// Checks made on an output path before any work is done, so that a typo in a directory fails in a millisecond
/// rather than after the whole generation.
public enum OutputTarget {
    /// Throws `PipelineError.outputFailed` unless `path` can be written: its directory exists, is a directory and
    /// is writable, and `path` itself is absent or a regular file.
    public static func check(_ path: String) throws {
        guard !path.isEmpty else { throw PipelineError.outputFailed(path: path, reason: "the output path is empty") }
        let (dir, name) = split(path)
        guard !name.isEmpty, name != ".", name != ".." else {
            throw PipelineError.outputFailed(path: path, reason: "the path names a directory, not a file")
        }
        var st = stat()
        guard stat(dir, &st) == 0 else {
            throw PipelineError.outputFailed(path: path, reason: "the directory \(dir) does not exist (\(AtomicFile.systemReason(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw PipelineError.outputFailed(path: path, reason: "\(dir) is not a directory")
        }
        guard access(dir, W_OK) == 0 else {
            throw PipelineError.outputFailed(path: path, reason: "the directory \(dir) is not writable (\(AtomicFile.systemReason(errno)))")
        }
        if stat(path, &st) == 0, (st.st_mode & S_IFMT) != S_IFREG {
            let kind: String
            switch st.st_mode & S_IFMT {
            case S_IFDIR: kind = "a directory"
            case S_IFIFO: kind = "a FIFO (named pipe)"
            default: kind = "not a regular file"
            }
            throw PipelineError.outputFailed(path: path, reason: "it is \(kind); choose a file name")
        }
    }

    /// (directory, last component) of a path; "." for a bare name.
    static func split(_ path: String) -> (String, String) {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return (".", String(p)) }
        let dir = p[..<slash]
        return (dir.isEmpty ? "/" : String(dir), String(p[p.index(after: slash)...]))
    }
}
