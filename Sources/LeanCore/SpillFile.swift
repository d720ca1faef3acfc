import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A scratch file that holds derived weight copies (oneDNN's packed layout, converted types) while they are
/// evicted, so that streaming offload re-reads exactly the bytes the kernels use instead of re-reading the
/// checkpoint, converting it (an fp32 file to bf16) and reordering it into the packed layout on every step.
///
/// The file is unlinked as soon as it is created (nothing is left behind, even after a crash). Reads go through
/// `pread` into owned buffers, so its pages live in the page cache, not in this process's RSS. Written once per
/// copy: a spilled copy stays spilled, and later evictions only free its memory.
public final class SpillFile: @unchecked Sendable {  // `end` (a Mutex) hands out disjoint ranges; fd is immutable
    private let fd: Int32
    private let end = Mutex<Int>(0)
    public let directory: String

    /// Opens a new unlinked scratch file in `directory`; nil if that fails (the caller falls back to dropping
    /// derived copies, which is correct, only slower).
    public init?(directory: String) {
        var template = Array((directory + "/lean-diffusion-spill-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { return nil }
        _ = template.withUnsafeBufferPointer { unlink($0.baseAddress!) }
        self.fd = fd
        self.directory = directory
    }

    deinit { close(fd) }

    /// Bytes written so far.
    public var byteCount: Int { end.withLock { $0 } }

    /// Writes `storage`'s bytes and returns an evictable storage (starting evicted) that reads them back; nil if
    /// the write failed (disk full).
    func spill(_ storage: Storage, name: String, context: RuntimeContext) -> Storage? {
        let n = storage.byteCount
        let offset = end.withLock { e -> Int in defer { e += n }; return e }
        let src = storage.raw
        var done = 0
        while done < n {
            let w = pwrite(fd, src + done, n - done, off_t(offset + done))
            if w < 0 && errno == EINTR { continue }
            guard w > 0 else { return nil }
            done += w
        }
        let fd = self.fd
        // The closure keeps the file open for as long as a spilled copy exists.
        return Storage(parameter: Parameter(name: name, byteCount: n, source: { [self] out in
            _ = self
            var got = 0
            while got < n {
                let r = pread(fd, out + got, n - got, off_t(offset + got))
                if r < 0 && errno == EINTR { continue }
                guard r > 0 else { throw SpillError.readFailed(errno: r < 0 ? errno : 0) }
                got += r
            }
        }, context: context))
    }
}

enum SpillError: Error, CustomStringConvertible {
    case readFailed(errno: Int32)
    var description: String {
        switch self {
        case .readFailed(let e): return "spill file read failed: " + (e == 0 ? "unexpected end of file" : String(cString: strerror(e)))
        }
    }
}
