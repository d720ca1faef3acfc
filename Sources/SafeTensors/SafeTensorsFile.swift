#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only, memory-mapped safetensors file.
///
/// The whole file is mapped once and nothing is read until a tensor is touched,
/// so opening a multi-gigabyte checkpoint is cheap and only the tensors actually
/// used become resident. The file descriptor stays open for `copy(_:into:)`,
/// which uses `pread` so callers can fill their own buffers without the mapping's
/// pages becoming resident (sequential offload).
///
/// All state is immutable after `init`; `pread` and `madvise` are thread-safe,
/// so instances can be shared across tasks. Pointers returned by `bytes(_:)` are
/// valid only while the instance is alive. If the file is truncated by another
/// process while mapped, touching the lost pages raises SIGBUS; that cannot be
/// guarded against from user space.
public final class SafeTensorsFile: @unchecked Sendable {  // no lock needed: immutable after init (see above)
    public let path: String
    public let header: SafeTensorsHeader
    public let fileSize: Int

    private let fd: Int32
    private let base: UnsafeRawPointer
    private let mappedLength: Int
    private let pageSize: Int
    private let index: [String: Int]

    public init(path: String) throws {
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. The type is checked
        // on the descriptor (no race with a rename), then blocking mode is restored for pread.
        var fd: Int32
        repeat { fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) } while fd < 0 && errno == EINTR
        guard fd >= 0 else { throw SafeTensorsError(path: path, .openFailed(errno: errno)) }
        var ok = false
        defer { if !ok { close(fd) } }

        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SafeTensorsError(path: path, .statFailed(errno: errno)) }
        switch st.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw SafeTensorsError(path: path, .notRegularFile)
        default: throw SafeTensorsError(path: path, .specialFile(kind: RegularFile.fileKindName(st.st_mode) ?? "special"))
        }
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        let size = Int(st.st_size)
        // Checked before mmap: mapping zero bytes fails with EINVAL, and the
        // user deserves the format error rather than an errno.
        guard size >= 8 else { throw SafeTensorsError(path: path, .fileTooSmall(size: size)) }

        guard let mapping = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapping != MAP_FAILED else {
            throw SafeTensorsError(path: path, .mmapFailed(errno: errno))
        }
        defer { if !ok { munmap(mapping, size) } }

        let header = try SafeTensorsHeader(bytes: UnsafeRawBufferPointer(start: mapping, count: size), fileSize: size, path: path)
        var index: [String: Int] = [:]
        index.reserveCapacity(header.tensors.count)
        for (i, t) in header.tensors.enumerated() { index[t.name] = i }

        self.path = path
        self.header = header
        self.fileSize = size
        self.fd = fd
        self.base = UnsafeRawPointer(mapping)
        self.mappedLength = size
        self.pageSize = max(Int(sysconf(Int32(_SC_PAGESIZE))), 1)
        self.index = index
        ok = true
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), mappedLength)
        close(fd)
    }

    /// Names ordered by data offset, i.e. the order a sequential reader touches them.
    public var tensorNames: [String] { header.tensors.map(\.name) }
    public var tensors: [TensorInfo] { header.tensors }
    public var metadata: [String: String] { header.metadata }
    public var count: Int { header.tensors.count }

    public func info(_ name: String) -> TensorInfo? {
        index[name].map { header.tensors[$0] }
    }

    private func require(_ name: String) throws -> TensorInfo {
        guard let i = index[name] else { throw SafeTensorsError(path: path, .tensorNotFound(name)) }
        return header.tensors[i]
    }

    /// A view into the mapping; pages are faulted in only when read.
    public func bytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let t = try require(name)
        return UnsafeRawBufferPointer(start: base + t.byteRange.lowerBound, count: t.byteCount)
    }

    /// Drops the tensor's pages from this process's resident set.
    ///
    /// The range is widened to whole pages, which may also drop pages shared with
    /// neighbouring tensors. That is harmless: the mapping is read-only and
    /// private, so nothing was ever copied-on-write and any later access simply
    /// faults the page back in from the file. Returns false for unknown names.
    @discardableResult
    public func release(_ name: String) -> Bool {
        guard let t = info(name) else { return false }
        releaseRange(t.byteRange)
        return true
    }

    /// Drops every page of the mapping from the resident set.
    public func releaseAll() {
        releaseRange(0..<mappedLength)
    }

    private func releaseRange(_ r: Range<Int>) {
        guard !r.isEmpty else { return }
        let start = r.lowerBound / pageSize * pageSize
        // The mapping itself extends to the end of its last page, so rounding the
        // end up stays inside it.
        let end = (r.upperBound + pageSize - 1) / pageSize * pageSize
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, Int32(MADV_DONTNEED))
    }

    /// Reads the tensor's bytes with `pread` into `buffer`, which must be exactly
    /// the tensor's size. Does not touch the mapping.
    public func copy(_ name: String, into buffer: UnsafeMutableRawBufferPointer) throws {
        let t = try require(name)
        guard buffer.count == t.byteCount else {
            throw SafeTensorsError(path: path, .bufferSizeMismatch(tensor: name, expected: t.byteCount, actual: buffer.count))
        }
        try copy(name, byteOffset: 0, into: buffer)
    }

    /// Reads `buffer.count` bytes of the tensor, starting `byteOffset` bytes into it, with `pread` (rows of an
    /// embedding table without reading the table). The range must lie inside the tensor.
    public func copy(_ name: String, byteOffset: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        let t = try require(name)
        guard byteOffset >= 0, buffer.count <= t.byteCount - byteOffset else {
            throw SafeTensorsError(path: path, .bufferSizeMismatch(tensor: name, expected: t.byteCount - byteOffset,
                                                                    actual: buffer.count))
        }
        var done = 0
        let start = t.byteRange.lowerBound + byteOffset
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(start + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SafeTensorsError(path: path, .readFailed(errno: errno))
            }
            if n == 0 { throw SafeTensorsError(path: path, .unexpectedEndOfFile) }
            done += n
        }
    }

    /// Reads the tensor into a new byte array via `pread`.
    public func copyBytes(_ name: String) throws -> [UInt8] {
        let t = try require(name)
        var out = [UInt8](repeating: 0, count: t.byteCount)
        try out.withUnsafeMutableBytes { try copy(name, into: $0) }
        return out
    }

    /// The tensor converted to Float (any numeric dtype; F16/BF16/F8 exactly).
    public func floats(_ name: String) throws -> [Float] {
        let t = try require(name)
        return SafeTensorsConversion.floats(from: try bytes(name), dtype: t.dtype)
    }
}
