import XCTest
@testable import SafeTensors

final class ValidationTests: XCTestCase {
    var dir: TempDir!
    override func setUp() { dir = TempDir() }
    override func tearDown() { dir = nil }

    /// Writes `bytes` to a file, opens it, and returns the error (failing if none).
    func openError(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> SafeTensorsError.Kind? {
        let path = writeFile(dir.file("t.safetensors"), bytes)
        do {
            _ = try SafeTensorsFile(path: path)
            XCTFail("expected an error", file: file, line: line)
            return nil
        } catch let e as SafeTensorsError {
            XCTAssertEqual(e.path, path, file: file, line: line)
            XCTAssertTrue(e.description.hasPrefix(path + ": "), e.description, file: file, line: line)
            return e.kind
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
            return nil
        }
    }

    func assertKind(_ bytes: [UInt8], _ expected: SafeTensorsError.Kind, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(openError(bytes, file: file, line: line), expected, file: file, line: line)
    }

    func assertKind(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line, _ match: (SafeTensorsError.Kind) -> Bool) {
        if let k = openError(bytes, file: file, line: line) {
            XCTAssertTrue(match(k), "unexpected kind \(k)", file: file, line: line)
        }
    }

    let f32x2 = #""dtype":"F32","shape":[2]"#

    func testFraming() {
        assertKind([], .fileTooSmall(size: 0))
        assertKind([1, 0, 0, 0, 0, 0, 0], .fileTooSmall(size: 7))
        assertKind([0, 0, 0, 0, 0, 0, 0, 0, 0x7B, 0x7D], .headerLengthZero)
        assertKind(rawFile("{}", headerLength: 100_000_001), .headerTooLarge(length: 100_000_001, limit: 100_000_000))
        assertKind(rawFile("{}", headerLength: UInt64.max), .headerTooLarge(length: UInt64.max, limit: 100_000_000))
        assertKind(rawFile("{}", headerLength: 3), .headerBeyondFileEnd(length: 3, fileSize: 10))
    }

    func testHeaderEncodingAndSyntax() {
        assertKind(rawFile([0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D])) { if case .headerNotUTF8(2) = $0 { return true }; return false }
        for bad in [#"{"a":"#, #"{"a":1,}"#, "{} x", "{'a':1}", #"{"a":[00]}"#, #"{"a":NaN}"#, #"{"a":"\x"}"#,
                    "{\"a\":\"\u{01}\"}", #"{"a":"\udc00"}"#, #"{"a":"\ud800x"}"#, #"{"a":-}"#, #"{"a":1.}"#, #"{"a":tru}"#] {
            assertKind(rawFile(bad)) { if case .invalidJSON = $0 { return true }; return false }
        }
        let deep = #"{"__metadata__":"# + String(repeating: "[", count: 70) + String(repeating: "]", count: 70) + "}"
        assertKind(rawFile(deep)) { if case .invalidJSON(_, let r) = $0 { return r.contains("nesting") }; return false }
        assertKind(rawFile("[]"), .topLevelNotObject)
        assertKind(rawFile(#""x""#), .topLevelNotObject)
        assertKind(rawFile(#"{"a":{\#(f32x2),"data_offsets":[0,8]},"a":{\#(f32x2),"data_offsets":[8,16]}}"#, data: .init(repeating: 0, count: 16)),
                   .duplicateKey("a"))
        assertKind(rawFile(#"{"__metadata__":{"k":"1","k":"2"}}"#), .duplicateKey("k"))
    }

    func testEntryFields() {
        assertKind(rawFile(#"{"a":5}"#), .entryNotObject(tensor: "a"))
        assertKind(rawFile(#"{"a":{"shape":[2],"data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8)), .missingField(tensor: "a", field: "dtype"))
        assertKind(rawFile(#"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8)), .missingField(tensor: "a", field: "shape"))
        assertKind(rawFile(#"{"a":{\#(f32x2)}}"#, data: .init(repeating: 0, count: 8)), .missingField(tensor: "a", field: "data_offsets"))
        assertKind(rawFile(#"{"a":{"dtype":"F128","shape":[2],"data_offsets":[0,8]}}"#), .unknownDType(tensor: "a", dtype: "F128"))
        assertKind(rawFile(#"{"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}"#), .unknownDType(tensor: "a", dtype: "f32"))
        assertKind(rawFile(#"{"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}"#), .dtypeNotString(tensor: "a"))
    }

    func testShapes() {
        func shaped(_ shape: String) -> [UInt8] { rawFile(#"{"t":{"dtype":"F32","shape":\#(shape),"data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8)) }
        assertKind(shaped("2"), .shapeNotArray(tensor: "t"))
        assertKind(shaped("[1.5]"), .nonIntegerDimension(tensor: "t", index: 0, value: "1.5"))
        assertKind(shaped("[2,1e0]"), .nonIntegerDimension(tensor: "t", index: 1, value: "1e0"))
        assertKind(shaped(#"["2"]"#), .nonIntegerDimension(tensor: "t", index: 0, value: "\"2\""))
        assertKind(shaped("[null]"), .nonIntegerDimension(tensor: "t", index: 0, value: "null"))
        assertKind(shaped("[2,-1]"), .negativeDimension(tensor: "t", index: 1, value: -1))
        assertKind(shaped("[99999999999999999999]"), .shapeOverflow(tensor: "t"))
        assertKind(shaped("[4294967296,4294967296]"), .shapeOverflow(tensor: "t"))
        // Element count fits but the byte count does not.
        assertKind(shaped("[4611686018427387904]"), .shapeOverflow(tensor: "t"))
        // Overflow followed by a zero dimension is still rejected.
        assertKind(shaped("[4294967296,4294967296,0]"), .shapeOverflow(tensor: "t"))
    }

    func testDataOffsets() {
        func off(_ o: String, data: Int = 8) -> [UInt8] { rawFile(#"{"t":{\#(f32x2),"data_offsets":\#(o)}}"#, data: .init(repeating: 0, count: data)) }
        assertKind(off("8")) { if case .invalidDataOffsets(tensor: "t", _) = $0 { return true }; return false }
        assertKind(off("[0,8,8]")) { if case .invalidDataOffsets(tensor: "t", _) = $0 { return true }; return false }
        assertKind(off("[0]")) { if case .invalidDataOffsets(tensor: "t", _) = $0 { return true }; return false }
        assertKind(off("[0,8.0]")) { if case .invalidDataOffsets(tensor: "t", _) = $0 { return true }; return false }
        assertKind(off("[-8,0]")) { if case .invalidDataOffsets(tensor: "t", _) = $0 { return true }; return false }
        assertKind(off("[0,99999999999999999999]")) { if case .invalidDataOffsets(tensor: "t", _) = $0 { return true }; return false }
        assertKind(off("[8,0]"), .offsetsReversed(tensor: "t", begin: 8, end: 0))
        assertKind(off("[0,8]", data: 7), .dataOutOfBounds(tensor: "t", end: 8, dataSize: 7))
        assertKind(off("[0,4]", data: 4), .byteLengthMismatch(tensor: "t", expected: 8, actual: 4))
        assertKind(off("[0,8]", data: 9), .trailingData(used: 8, dataSize: 9))
        assertKind(off("[1,9]", data: 9), .gapInData(before: "t", offset: 1, expected: 0))
        let overlap = rawFile(#"{"a":{\#(f32x2),"data_offsets":[0,8]},"b":{\#(f32x2),"data_offsets":[4,12]}}"#, data: .init(repeating: 0, count: 12))
        assertKind(overlap, .overlappingTensors("a", "b"))
        // A zero-length tensor placed inside another one is also an overlap.
        let inside = rawFile(#"{"a":{\#(f32x2),"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#, data: .init(repeating: 0, count: 8))
        assertKind(inside, .overlappingTensors("a", "z"))
        let same = rawFile(#"{"a":{\#(f32x2),"data_offsets":[0,8]},"b":{\#(f32x2),"data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8))
        assertKind(same, .overlappingTensors("a", "b"))
    }

    func testMetadata() {
        assertKind(rawFile(#"{"__metadata__":[]}"#)) { if case .invalidMetadata = $0 { return true }; return false }
        assertKind(rawFile(#"{"__metadata__":null}"#)) { if case .invalidMetadata = $0 { return true }; return false }
        assertKind(rawFile(#"{"__metadata__":{"a":1}}"#)) { if case .invalidMetadata = $0 { return true }; return false }
        assertKind(rawFile(#"{"__metadata__":{"a":{"b":"c"}}}"#)) { if case .invalidMetadata = $0 { return true }; return false }
    }

    func testAcceptedEdgeCases() throws {
        // Empty data section, whitespace padding, scalars, zero-sized tensors and unknown extra fields.
        let empty = writeFile(dir.file("e.safetensors"), rawFile("{}      "))
        let f = try SafeTensorsFile(path: empty)
        XCTAssertEqual(f.tensorNames, [])
        XCTAssertEqual(f.header.dataLength, 0)

        let json = #"{"z":{"dtype":"I64","shape":[0,3],"data_offsets":[4,4]},"s":{"dtype":"F32","shape":[],"data_offsets":[0,4],"extra":1},"__metadata__":{}}"#
        let path = writeFile(dir.file("s.safetensors"), rawFile(json, data: floatBytes([2.5])))
        let g = try SafeTensorsFile(path: path)
        XCTAssertEqual(g.tensorNames, ["s", "z"])
        XCTAssertEqual(try g.floats("s"), [2.5])
        XCTAssertEqual(try g.floats("z"), [])
        XCTAssertEqual(g.info("z")?.shape, [0, 3])
        XCTAssertEqual(g.info("s")?.shape, [])
        XCTAssertNil(g.info("missing"))
    }

    func testNotARegularFileAndMissing() {
        XCTAssertThrowsError(try SafeTensorsFile(path: dir.path)) { XCTAssertEqual(($0 as? SafeTensorsError)?.kind, .notRegularFile) }
        XCTAssertThrowsError(try SafeTensorsFile(path: dir.file("nope"))) {
            guard case .openFailed = ($0 as? SafeTensorsError)?.kind else { return XCTFail("\($0)") }
        }
    }

    func sampleImage() throws -> [UInt8] {
        try SafeTensorsWriter.serialize([
            ("w", .F32, [2, 2], floatBytes([1, 2, 3, 4])),
            ("h", .F16, [3], u16Bytes([0x3C00, 0xC000, 0x7BFF])),
            ("b", .BF16, [1], u16Bytes([0x3F80])),
        ], metadata: ["format": "pt"])
    }

    func testEveryTruncationThrows() throws {
        let image = try sampleImage()
        for n in 0..<image.count {
            let prefix = Array(image[0..<n])
            XCTAssertThrowsError(try prefix.withUnsafeBytes { try SafeTensorsHeader(fileBytes: $0) }, "prefix \(n)")
            let path = writeFile(dir.file("trunc.safetensors"), prefix)
            XCTAssertThrowsError(try SafeTensorsFile(path: path), "prefix \(n)")
        }
        XCTAssertNoThrow(try image.withUnsafeBytes { try SafeTensorsHeader(fileBytes: $0) })
    }

    func testRandomMutationsNeverCrash() throws {
        let image = try sampleImage()
        var rng = SplitMix64(state: 0x5AFE_7E45)
        let interesting: [UInt8] = Array("{}[]\",:0123456789-.eE \\u".utf8) + [0, 0xFF, 0x80, 0xC3]
        var accepted = 0
        for iteration in 0..<4000 {
            var m = image
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let pos = Int.random(in: 0..<max(m.count, 1), using: &rng)
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: if pos < m.count { m[pos] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng)) }
                case 1: if pos < m.count { m[pos] = interesting.randomElement(using: &rng)! }
                case 2: m.insert(interesting.randomElement(using: &rng)!, at: min(pos, m.count))
                case 3: if pos < m.count { m.remove(at: pos) }
                default: if pos < m.count { m[pos] = UInt8.random(in: 0...255, using: &rng) }
                }
            }
            let header = try? m.withUnsafeBytes { try SafeTensorsHeader(fileBytes: $0) }
            if let header {
                accepted += 1
                var cursor = header.dataOffset
                for t in header.tensors {
                    XCTAssertEqual(t.byteRange.lowerBound, cursor)
                    XCTAssertEqual(t.byteCount, t.elementCount * t.dtype.byteSize)
                    cursor = t.byteRange.upperBound
                }
                XCTAssertEqual(cursor, m.count)
            }
            if iteration % 20 == 0 {
                let path = writeFile(dir.file("mut.safetensors"), m)
                if let f = try? SafeTensorsFile(path: path) {
                    for name in f.tensorNames {
                        XCTAssertEqual(try f.floats(name).count, f.info(name)!.elementCount)
                        XCTAssertEqual(Array(try f.bytes(name)), try f.copyBytes(name))
                    }
                } else {
                    XCTAssertNil(header)
                }
            }
        }
        // Sanity: the mutator sometimes leaves the file valid (e.g. flips data bytes).
        XCTAssertGreaterThan(accepted, 10)
    }
}
