import XCTest
@testable import SafeTensors
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class ReadWriteTests: XCTestCase {
    var dir: TempDir!
    override func setUp() { dir = TempDir() }
    override func tearDown() { dir = nil }

    func testRoundTripAllDTypesWithMetadata() throws {
        var tensors: [SafeTensorsWriter.Tensor] = []
        for (i, dtype) in SafeTensorsDType.allCases.enumerated() {
            let shape = [i % 3 + 1, 2]
            let count = shape.reduce(1, *) * dtype.byteSize
            tensors.append(("t.\(dtype.rawValue)", dtype, shape, (0..<count).map { UInt8(truncatingIfNeeded: $0 * 7 + i) }))
        }
        tensors.append(("empty", .F32, [0], []))
        tensors.append(("näme \"quoted\"\n\u{1}", .F16, [1], u16Bytes([0x3C00])))
        let metadata = ["format": "pt", "ünïcode": "😀 \"q\" \\ \n\t\u{0}"]
        let path = dir.file("all.safetensors")
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: path)

        let f = try SafeTensorsFile(path: path)
        XCTAssertEqual(f.metadata, metadata)
        XCTAssertEqual(f.tensorNames, tensors.map(\.name))  // written in order, zero-length sorted by offset
        XCTAssertEqual(f.header.headerLength % 8, 0)
        XCTAssertEqual(f.fileSize, 8 + f.header.headerLength + tensors.map(\.data.count).reduce(0, +))
        for t in tensors {
            let info = try XCTUnwrap(f.info(t.name))
            XCTAssertEqual(info.dtype, t.dtype)
            XCTAssertEqual(info.shape, t.shape)
            XCTAssertEqual(Array(try f.bytes(t.name)), t.data)
            XCTAssertEqual(try f.copyBytes(t.name), t.data)
        }
        // The reference writer pads with spaces.
        let raw = try XCTUnwrap(try? f.bytes(tensors[0].name))
        let headerEnd = (raw.baseAddress! - f.header.dataOffset).assumingMemoryBound(to: UInt8.self)
        XCTAssertEqual(headerEnd[f.header.dataOffset - 1], UInt8(ascii: " "))
    }

    func testFloatWriterAndConversion() throws {
        let path = dir.file("f.safetensors")
        let values: [Float] = [0, -0.0, 1, -2.5, .pi, .greatestFiniteMagnitude, .leastNonzeroMagnitude, .infinity]
        try SafeTensorsWriter.write(floats: [("x", [2, 4], values), ("y", [1], [42])], metadata: nil, to: path)
        let f = try SafeTensorsFile(path: path)
        XCTAssertEqual(try f.floats("x").map(\.bitPattern), values.map(\.bitPattern))
        XCTAssertEqual(try f.floats("y"), [42])
        XCTAssertEqual(f.metadata, [:])
        XCTAssertThrowsError(try f.floats("nope")) { XCTAssertEqual(($0 as? SafeTensorsError)?.kind, .tensorNotFound("nope")) }
    }

    func testWriterRejectsInvalidTensors() {
        let path = dir.file("bad.safetensors")
        func kind(_ t: [SafeTensorsWriter.Tensor]) -> SafeTensorsError.Kind? {
            do { try SafeTensorsWriter.write(t, metadata: nil, to: path); return nil } catch { return (error as? SafeTensorsError)?.kind }
        }
        for bad: [SafeTensorsWriter.Tensor] in [
            [("a", .F32, [2], [0, 0, 0, 0])],
            [("a", .F32, [1], [0, 0, 0, 0]), ("a", .F32, [1], [0, 0, 0, 0])],
            [("__metadata__", .U8, [1], [0])],
            [("a", .U8, [-1], [])],
            [("a", .U8, [Int.max, 2], [])],
        ] {
            guard case .invalidTensorForWrite = kind(bad) else { return XCTFail("accepted \(bad.map(\.name))") }
        }
        XCTAssertEqual(access(path, F_OK), -1, "no partial file may be left behind")
    }

    func testReleaseAndPreadCopyReturnSameBytes() throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        // Odd sizes so tensor boundaries fall mid-page.
        let a = (0..<13).map { UInt8($0) }
        let big = (0..<(3 * page + 77)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 5) }
        let c = (0..<(page + 3)).map { UInt8(truncatingIfNeeded: $0 ^ 0x5A) }
        let path = dir.file("r.safetensors")
        try SafeTensorsWriter.write([("a", .U8, [13], a), ("big", .U8, [big.count], big), ("c", .I8, [c.count], c)], metadata: nil, to: path)
        let f = try SafeTensorsFile(path: path)
        for (name, expected) in [("a", a), ("big", big), ("c", c)] {
            XCTAssertEqual(Array(try f.bytes(name)), expected)
            XCTAssertTrue(f.release(name))
            XCTAssertEqual(Array(try f.bytes(name)), expected, "after release")
            var buf = [UInt8](repeating: 0, count: expected.count)
            try buf.withUnsafeMutableBytes { try f.copy(name, into: $0) }
            XCTAssertEqual(buf, expected)
        }
        f.releaseAll()
        XCTAssertEqual(Array(try f.bytes("big")), big)
        XCTAssertFalse(f.release("nope"))
        var small = [UInt8](repeating: 0, count: 3)
        XCTAssertThrowsError(try small.withUnsafeMutableBytes { try f.copy("a", into: $0) }) {
            XCTAssertEqual(($0 as? SafeTensorsError)?.kind, .bufferSizeMismatch(tensor: "a", expected: 13, actual: 3))
        }
        // Ranged reads (embedding rows): any in-range slice, across page boundaries; out of range throws.
        for (offset, count) in [(0, 5), (page - 2, 9), (2 * page + 1, page + 76), (big.count - 1, 1)] {
            var part = [UInt8](repeating: 0, count: count)
            try part.withUnsafeMutableBytes { try f.copy("big", byteOffset: offset, into: $0) }
            XCTAssertEqual(part, Array(big[offset..<(offset + count)]), "big[\(offset)..<\(offset + count)]")
        }
        XCTAssertThrowsError(try small.withUnsafeMutableBytes { try f.copy("a", byteOffset: 11, into: $0) })
        XCTAssertThrowsError(try small.withUnsafeMutableBytes { try f.copy("a", byteOffset: -1, into: $0) })
    }

    #if os(Linux)
    /// Resident size of the mapping of `path`, from /proc/self/smaps.
    func residentKB(of path: String) -> Int? {
        guard let fp = fopen("/proc/self/smaps", "r") else { return nil }
        defer { fclose(fp) }
        var inMapping = false
        var total: Int? = nil
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), fp) != nil {
            let s = String(decoding: line.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if let first = s.split(separator: " ").first, first.contains("-"), first.allSatisfy({ $0.isHexDigit || $0 == "-" }) {
                inMapping = s.hasSuffix(path + "\n")
            } else if inMapping, s.hasPrefix("Rss:") {
                let kb = Int(s.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
                total = (total ?? 0) + kb
            }
        }
        return total
    }

    func testReleaseDropsResidentPages() throws {
        let path = dir.file("rss.safetensors")
        let n = 4 << 20
        try SafeTensorsWriter.write([("x", .U8, [n], [UInt8](repeating: 7, count: n))], metadata: nil, to: path)
        let f = try SafeTensorsFile(path: path)
        let b = try f.bytes("x")
        var sum = 0
        for i in stride(from: 0, to: n, by: 1024) { sum &+= Int(b[i]) }
        XCTAssertEqual(sum, 7 * (n / 1024))
        let before = try XCTUnwrap(residentKB(of: path))
        XCTAssertGreaterThanOrEqual(before, 4000)
        f.release("x")
        let after = try XCTUnwrap(residentKB(of: path))
        XCTAssertLessThan(after, 64, "released pages still resident")
        // pread must not make the mapping resident again.
        _ = try f.copyBytes("x")
        XCTAssertLessThan(try XCTUnwrap(residentKB(of: path)), 64)
    }
    #endif
}
