/// One tensor's entry in a safetensors header, after validation.
public struct TensorInfo: Equatable, Hashable, Sendable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Byte range relative to the start of the file (not the data section), so it
    /// can be used directly with the mapping, `pread` or `madvise`.
    public let byteRange: Range<Int>

    public init(name: String, dtype: SafeTensorsDType, shape: [Int], byteRange: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteRange = byteRange
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { byteRange.count }
}

/// The parsed and fully validated header of a safetensors file.
///
/// Parsing is separate from file access so the same checks run on an mmap'd
/// file, on a prefix read with `pread`, and inside the fuzzer.
public struct SafeTensorsHeader: Equatable, Sendable {
    /// Same limit as the reference implementation; a bigger header is almost
    /// certainly corrupt and would otherwise make us allocate without bound.
    public static let maxHeaderLength = 100_000_000

    /// Length of the JSON header in bytes (without the 8-byte length prefix).
    public let headerLength: Int
    /// Size of the tensor data section in bytes.
    public let dataLength: Int
    /// Tensors ordered by their position in the file.
    public let tensors: [TensorInfo]
    public let metadata: [String: String]

    /// Offset of the data section from the start of the file.
    public var dataOffset: Int { 8 + headerLength }
    public var fileSize: Int { dataOffset + dataLength }

    /// Reads the header length prefix; `prefix` needs at least 8 bytes.
    public static func headerLength(prefix: UnsafeRawBufferPointer, fileSize: Int, path: String) throws -> Int {
        guard fileSize >= 8, prefix.count >= 8 else {
            throw SafeTensorsError(path: path, .fileTooSmall(size: min(fileSize, prefix.count)))
        }
        let n = UInt64(littleEndian: prefix.loadUnaligned(as: UInt64.self))
        if n == 0 { throw SafeTensorsError(path: path, .headerLengthZero) }
        if n > UInt64(maxHeaderLength) { throw SafeTensorsError(path: path, .headerTooLarge(length: n, limit: maxHeaderLength)) }
        if n > UInt64(fileSize - 8) { throw SafeTensorsError(path: path, .headerBeyondFileEnd(length: n, fileSize: fileSize)) }
        return Int(n)
    }

    /// Validates a header. `bytes` must start at file offset 0 and contain at
    /// least the length prefix and the JSON; `fileSize` is the size of the whole
    /// file (so the data need not be in memory).
    public init(bytes: UnsafeRawBufferPointer, fileSize: Int, path: String = "<memory>") throws {
        let n = try Self.headerLength(prefix: bytes, fileSize: fileSize, path: path)
        guard bytes.count >= 8 + n else {
            throw SafeTensorsError(path: path, .headerBeyondFileEnd(length: UInt64(n), fileSize: bytes.count))
        }
        let json: StrictJSON.Value
        do {
            json = try StrictJSON.parse(UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + n)]))
        } catch {
            switch error.kind {
            case .invalidUTF8: throw SafeTensorsError(path: path, .headerNotUTF8(offset: error.offset))
            case .duplicateKey(let k): throw SafeTensorsError(path: path, .duplicateKey(k))
            case .tooDeep: throw SafeTensorsError(path: path, .invalidJSON(offset: error.offset, reason: "nesting deeper than \(StrictJSON.maxDepth)"))
            case .syntax(let m): throw SafeTensorsError(path: path, .invalidJSON(offset: error.offset, reason: m))
            }
        }
        try self.init(json: json, headerLength: n, dataLength: fileSize - 8 - n, path: path)
    }

    /// Convenience for a complete file image in memory.
    public init(fileBytes: UnsafeRawBufferPointer, path: String = "<memory>") throws {
        try self.init(bytes: fileBytes, fileSize: fileBytes.count, path: path)
    }

    init(json: StrictJSON.Value, headerLength: Int, dataLength: Int, path: String) throws {
        func err(_ k: SafeTensorsError.Kind) -> SafeTensorsError { SafeTensorsError(path: path, k) }
        guard let members = json.objectMembers else { throw err(.topLevelNotObject) }
        var metadata: [String: String] = [:]
        var tensors: [TensorInfo] = []
        tensors.reserveCapacity(members.count)

        for member in members {
            let name = member.key
            if name == "__metadata__" {
                guard let entries = member.value.objectMembers else { throw err(.invalidMetadata(reason: "is not an object")) }
                for e in entries {
                    guard let s = e.value.stringValue else {
                        throw err(.invalidMetadata(reason: "value for \(quoted(e.key)) is not a string"))
                    }
                    metadata[e.key] = s
                }
                continue
            }
            guard case .object = member.value else { throw err(.entryNotObject(tensor: name)) }
            let entry = member.value
            // Extra fields are ignored, as in the reference implementation.
            guard let dtypeValue = entry["dtype"] else { throw err(.missingField(tensor: name, field: "dtype")) }
            guard let shapeValue = entry["shape"] else { throw err(.missingField(tensor: name, field: "shape")) }
            guard let offsetsValue = entry["data_offsets"] else { throw err(.missingField(tensor: name, field: "data_offsets")) }

            guard let dtypeName = dtypeValue.stringValue else { throw err(.dtypeNotString(tensor: name)) }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else { throw err(.unknownDType(tensor: name, dtype: dtypeName)) }

            guard let dims = shapeValue.arrayValue else { throw err(.shapeNotArray(tensor: name)) }
            var shape: [Int] = []
            shape.reserveCapacity(dims.count)
            var elements = 1
            var overflow = false
            for (index, d) in dims.enumerated() {
                guard d.isIntegerLiteral, case .number(let raw) = d else {
                    throw err(.nonIntegerDimension(tensor: name, index: index, value: Self.describe(d)))
                }
                guard let v = d.intValue else {
                    // Integer literal outside Int range.
                    if raw.hasPrefix("-") {
                        throw err(.negativeDimension(tensor: name, index: index, value: Int.min))
                    }
                    throw err(.shapeOverflow(tensor: name))
                }
                if v < 0 { throw err(.negativeDimension(tensor: name, index: index, value: v)) }
                let (p, o) = elements.multipliedReportingOverflow(by: v)
                overflow = overflow || o
                elements = p
                shape.append(v)
            }
            // A zero dimension legitimately absorbs an earlier overflow of the
            // partial product, but reporting it is safer than guessing.
            if overflow { throw err(.shapeOverflow(tensor: name)) }
            let (expectedBytes, o2) = elements.multipliedReportingOverflow(by: dtype.byteSize)
            if o2 { throw err(.shapeOverflow(tensor: name)) }

            guard let offs = offsetsValue.arrayValue else { throw err(.invalidDataOffsets(tensor: name, reason: "is not an array")) }
            guard offs.count == 2 else { throw err(.invalidDataOffsets(tensor: name, reason: "has \(offs.count) elements")) }
            guard let begin = offs[0].intValue, let end = offs[1].intValue else {
                throw err(.invalidDataOffsets(tensor: name, reason: "contains a non-integer or out-of-range value"))
            }
            guard begin >= 0, end >= 0 else { throw err(.invalidDataOffsets(tensor: name, reason: "contains a negative value")) }
            guard begin <= end else { throw err(.offsetsReversed(tensor: name, begin: begin, end: end)) }
            guard end <= dataLength else { throw err(.dataOutOfBounds(tensor: name, end: end, dataSize: dataLength)) }
            guard end - begin == expectedBytes else {
                throw err(.byteLengthMismatch(tensor: name, expected: expectedBytes, actual: end - begin))
            }
            let fileBase = 8 + headerLength
            tensors.append(TensorInfo(name: name, dtype: dtype, shape: shape, byteRange: (fileBase + begin)..<(fileBase + end)))
        }

        tensors.sort { a, b in
            if a.byteRange.lowerBound != b.byteRange.lowerBound { return a.byteRange.lowerBound < b.byteRange.lowerBound }
            if a.byteRange.upperBound != b.byteRange.upperBound { return a.byteRange.upperBound < b.byteRange.upperBound }
            return a.name < b.name
        }
        // The format forbids holes and overlaps: every data byte belongs to exactly
        // one tensor. This is what prevents polyglot files and aliasing tensors.
        var cursor = 8 + headerLength
        var previous: String? = nil
        for t in tensors {
            if t.byteRange.lowerBound < cursor, let previous {
                throw err(.overlappingTensors(previous, t.name))
            }
            if t.byteRange.lowerBound > cursor {
                throw err(.gapInData(before: t.name, offset: t.byteRange.lowerBound - 8 - headerLength, expected: cursor - 8 - headerLength))
            }
            if t.byteCount > 0 || previous == nil { previous = t.name }
            cursor = t.byteRange.upperBound
        }
        let used = cursor - 8 - headerLength
        if used != dataLength { throw err(.trailingData(used: used, dataSize: dataLength)) }

        self.headerLength = headerLength
        self.dataLength = dataLength
        self.tensors = tensors
        self.metadata = metadata
    }

    private static func describe(_ v: StrictJSON.Value) -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let raw): return raw
        case .string(let s): return quoted(s)
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}
