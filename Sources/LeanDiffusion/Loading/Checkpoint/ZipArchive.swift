import SafeTensors
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Errors reading a PyTorch `.ckpt` (a zip archive with a pickle inside), each naming the file.
public struct CheckpointError: Error, CustomStringConvertible, Equatable, Sendable {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// The entries of a zip archive as `torch.save` writes it: stored (uncompressed) members, zip64 for large files.
/// Read through `pread`; only the central directory is parsed, every offset and size checked against the file.
struct ZipArchive {
    struct Entry {
        let name: String
        let dataOffset: Int
        let size: Int
    }

    let path: String
    let fd: Int32
    let fileSize: Int
    let entries: [String: Entry]

    init(path: String) throws {
        func bad(_ r: String) -> CheckpointError { CheckpointError(path: path, reason: r) }
        self.path = path
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { throw bad("cannot open (\(String(cString: strerror(errno))))") }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw bad("not a regular file")
        }
        self.fd = fd
        fileSize = Int(st.st_size)
        do { entries = try Self.readDirectory(fd: fd, size: fileSize, bad: bad) } catch {
            close(fd)
            throw error
        }
    }

    func closeFile() { close(fd) }

    func read(_ offset: Int, _ count: Int) throws -> [UInt8] {
        try Self.read(fd: fd, size: fileSize, offset, count) { CheckpointError(path: path, reason: $0) }
    }

    func data(_ entry: Entry) throws -> [UInt8] { try read(entry.dataOffset, entry.size) }

    static func read(fd: Int32, size: Int, _ offset: Int, _ count: Int,
                     bad: (String) -> CheckpointError) throws -> [UInt8] {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw bad("zip structure points outside the file (\(offset) + \(count) > \(size))")
        }
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw bad("read failed at \(offset + done)") }
            done += n
        }
        return out
    }

    static func u16(_ b: [UInt8], _ i: Int) -> Int { Int(b[i]) | Int(b[i + 1]) << 8 }
    static func u32(_ b: [UInt8], _ i: Int) -> Int { u16(b, i) | u16(b, i + 2) << 16 }
    static func u64(_ b: [UInt8], _ i: Int) -> Int? {
        let v = UInt64(u32(b, i)) | UInt64(u32(b, i + 4)) << 32
        return v <= UInt64(Int.max) ? Int(v) : nil
    }

    static func readDirectory(fd: Int32, size: Int, bad: (String) -> CheckpointError) throws -> [String: Entry] {
        guard size >= 22 else { throw bad("too small to be a zip archive (a .ckpt is one)") }
        let tailLength = min(size, 65_557)
        let tail = try read(fd: fd, size: size, size - tailLength, tailLength, bad: bad)
        guard let eocd = stride(from: tail.count - 22, through: 0, by: -1).first(where: {
            tail[$0] == 0x50 && tail[$0 + 1] == 0x4b && tail[$0 + 2] == 0x05 && tail[$0 + 3] == 0x06
        }) else { throw bad("no zip end-of-central-directory record (not a zip-format .ckpt; legacy pickles are not read)") }
        var count = u16(tail, eocd + 10)
        var dirSize = u32(tail, eocd + 12)
        var dirOffset = u32(tail, eocd + 16)
        if count == 0xFFFF || dirSize == 0xFFFF_FFFF || dirOffset == 0xFFFF_FFFF {
            // Zip64: the locator sits right before the end record.
            guard eocd >= 20, u32(tail, eocd - 20) == 0x0706_4b50, let recordAt = u64(tail, eocd - 12) else {
                throw bad("zip64 locator missing")
            }
            let record = try read(fd: fd, size: size, recordAt, 56, bad: bad)
            guard u32(record, 0) == 0x0606_4b50, let c = u64(record, 32), let s = u64(record, 40), let o = u64(record, 48) else {
                throw bad("bad zip64 end record")
            }
            (count, dirSize, dirOffset) = (c, s, o)
        }
        guard count <= 1_000_000 else { throw bad("\(count) zip entries") }
        let dir = try read(fd: fd, size: size, dirOffset, dirSize, bad: bad)
        var entries: [String: Entry] = [:]
        var at = 0
        for _ in 0..<count {
            guard at + 46 <= dir.count, u32(dir, at) == 0x0201_4b50 else { throw bad("bad central directory entry") }
            let method = u16(dir, at + 10)
            var compressed = u32(dir, at + 20), uncompressed = u32(dir, at + 24)
            let (nameLength, extraLength, commentLength) = (u16(dir, at + 28), u16(dir, at + 30), u16(dir, at + 32))
            var local = u32(dir, at + 42)
            guard at + 46 + nameLength + extraLength + commentLength <= dir.count else { throw bad("truncated central directory") }
            let name = String(decoding: dir[(at + 46)..<(at + 46 + nameLength)], as: UTF8.self)
            // Zip64 extra field (id 1): the 0xFFFFFFFF fields, in order.
            var e = at + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let (id, len) = (u16(dir, e), u16(dir, e + 2))
                guard e + 4 + len <= extraEnd else { throw bad("bad extra field in \(name)") }
                if id == 1 {
                    var f = e + 4
                    func next() throws -> Int {
                        guard f + 8 <= e + 4 + len, let v = u64(dir, f) else { throw bad("bad zip64 field in \(name)") }
                        f += 8
                        return v
                    }
                    if uncompressed == 0xFFFF_FFFF { uncompressed = try next() }
                    if compressed == 0xFFFF_FFFF { compressed = try next() }
                    if local == 0xFFFF_FFFF { local = try next() }
                }
                e += 4 + len
            }
            guard method == 0, compressed == uncompressed else {
                throw bad("\(name) is compressed (method \(method)); torch.save stores members uncompressed")
            }
            let header = try read(fd: fd, size: size, local, 30, bad: bad)
            guard u32(header, 0) == 0x0403_4b50 else { throw bad("bad local header for \(name)") }
            let dataOffset = local + 30 + u16(header, 26) + u16(header, 28)
            guard dataOffset <= size, uncompressed <= size - dataOffset else { throw bad("\(name) extends past the file") }
            entries[name] = Entry(name: name, dataOffset: dataOffset, size: uncompressed)
            at += 46 + nameLength + extraLength + commentLength
        }
        return entries
    }
}
