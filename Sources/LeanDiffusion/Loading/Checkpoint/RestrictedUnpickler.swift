/// A pickle reader that only builds what a PyTorch state dict holds, and never runs anything from the file.
///
/// It interprets the opcodes `torch.save` emits (protocols 2-4) on its own stack. `GLOBAL` resolves only the names
/// below to inert markers; any other global (`posix.system`, `builtins.eval`, `__reduce__` tricks) is a named error
/// before anything further is read. `REDUCE` applies only `OrderedDict()` and `_rebuild_tensor_v2(...)`, producing
/// values; persistent ids become storage references to the archive's `data/<key>` entries. Sizes, memo indices and
/// nesting are bounded.
struct RestrictedUnpickler {
    indirect enum Value: Equatable {
        case none
        case bool(Bool)
        case int(Int)
        case float(Double)
        case string(String)
        case bytes([UInt8])
        case tuple([Value])
        case list([Value])
        case dict([(Value, Value)])
        case global(Global)
        case storage(Storage)
        case tensor(TensorRef)
        case mark

        static func == (a: Value, b: Value) -> Bool {
            switch (a, b) {
            case (.none, .none), (.mark, .mark): return true
            case let (.bool(x), .bool(y)): return x == y
            case let (.int(x), .int(y)): return x == y
            case let (.float(x), .float(y)): return x == y
            case let (.string(x), .string(y)): return x == y
            case let (.bytes(x), .bytes(y)): return x == y
            case let (.tuple(x), .tuple(y)), let (.list(x), .list(y)): return x == y
            case let (.global(x), .global(y)): return x == y
            case let (.storage(x), .storage(y)): return x == y
            case let (.tensor(x), .tensor(y)): return x == y
            case let (.dict(x), .dict(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
            default: return false
            }
        }
    }

    /// The globals a state dict needs. Everything else is refused.
    enum Global: Equatable {
        case orderedDict
        case rebuildTensor
        case rebuildParameter
        case storageType(String)
    }

    struct Storage: Equatable {
        let key: String
        let typeName: String
        let elements: Int
    }

    struct TensorRef: Equatable {
        let storage: Storage
        let offset: Int
        let shape: [Int]
        let strides: [Int]
    }

    static let storageTypes: Set<String> = ["FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage",
                                             "LongStorage", "IntStorage", "ShortStorage", "CharStorage",
                                             "ByteStorage", "BoolStorage"]

    let bytes: [UInt8]
    let path: String
    private var pos = 0
    private var stack: [Value] = []
    private var memo: [Int: Value] = [:]

    init(_ bytes: [UInt8], path: String) {
        self.bytes = bytes
        self.path = path
    }

    private func bad(_ reason: String) -> CheckpointError { CheckpointError(path: path, reason: "data.pkl: " + reason) }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, pos <= bytes.count, n <= bytes.count - pos else { throw bad("truncated at byte \(pos)") }
        defer { pos += n }
        return bytes[pos..<(pos + n)]
    }
    private mutating func u8() throws -> Int { Int(try take(1).first!) }
    private mutating func le(_ n: Int) throws -> Int {
        let s = try take(n)
        var v: UInt64 = 0
        for (i, b) in s.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return Int(truncatingIfNeeded: v)
    }
    private mutating func line() throws -> String {
        guard let end = bytes[pos...].firstIndex(of: 0x0A) else { throw bad("unterminated GLOBAL name") }
        defer { pos = end + 1 }
        return String(decoding: bytes[pos..<end], as: UTF8.self)
    }
    private mutating func length(_ n: Int) throws -> Int {
        let v = try le(n)
        guard v >= 0, v <= bytes.count - pos else { throw bad("length \(v) past the end") }
        return v
    }
    private mutating func pop() throws -> Value {
        guard let v = stack.popLast() else { throw bad("stack underflow at byte \(pos)") }
        return v
    }
    private mutating func popMark() throws -> [Value] {
        guard let m = stack.lastIndex(of: .mark) else { throw bad("no MARK at byte \(pos)") }
        defer { stack.removeSubrange(m...) }
        return Array(stack[(m + 1)...])
    }
    private mutating func push(_ v: Value) throws {
        guard stack.count < 100_000 else { throw bad("stack too deep") }
        stack.append(v)
    }

    /// The pickled object.
    mutating func load() throws -> Value {
        while true {
            let op = try u8()
            switch op {
            case 0x80: _ = try u8()                                  // PROTO
            case 0x95: _ = try take(8)                               // FRAME
            case 0x2E: return try pop()                              // STOP
            case 0x28: try push(.mark)                               // MARK
            case 0x7D: try push(.dict([]))                           // EMPTY_DICT
            case 0x5D: try push(.list([]))                           // EMPTY_LIST
            case 0x29: try push(.tuple([]))                          // EMPTY_TUPLE
            case 0x4E: try push(.none)                               // NONE
            case 0x88: try push(.bool(true))                         // NEWTRUE
            case 0x89: try push(.bool(false))                        // NEWFALSE
            case 0x4B: try push(.int(try le(1)))                     // BININT1
            case 0x4D: try push(.int(try le(2)))                     // BININT2
            case 0x4A: try push(.int(Int(Int32(truncatingIfNeeded: try le(4)))))  // BININT
            case 0x8A:                                               // LONG1
                let n = try u8()
                guard n <= 8 else { throw bad("integer of \(n) bytes") }
                let s = try take(n)
                var v: UInt64 = 0
                for (i, b) in s.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
                if n > 0 && n < 8 && s.last! & 0x80 != 0 { v |= ~UInt64(0) << (8 * UInt64(n)) }
                try push(.int(Int(truncatingIfNeeded: v)))
            case 0x47:                                               // BINFLOAT (big-endian)
                let s = try take(8)
                var v: UInt64 = 0
                for b in s { v = v << 8 | UInt64(b) }
                try push(.float(Double(bitPattern: v)))
            case 0x58: try push(.string(String(decoding: try take(try length(4)), as: UTF8.self)))  // BINUNICODE
            case 0x8C: try push(.string(String(decoding: try take(try length(1)), as: UTF8.self)))  // SHORT_BINUNICODE
            case 0x55: try push(.string(String(decoding: try take(try length(1)), as: UTF8.self)))  // SHORT_BINSTRING
            case 0x54: try push(.string(String(decoding: try take(try length(4)), as: UTF8.self)))  // BINSTRING
            case 0x43: try push(.bytes(Array(try take(try length(1)))))                            // SHORT_BINBYTES
            case 0x42: try push(.bytes(Array(try take(try length(4)))))                            // BINBYTES
            case 0x71: memo[try le(1)] = stack.last                  // BINPUT
            case 0x72: memo[try le(4)] = stack.last                  // LONG_BINPUT
            case 0x94: memo[memo.count] = stack.last                 // MEMOIZE
            case 0x68, 0x6A:                                         // BINGET, LONG_BINGET
                let i = try le(op == 0x68 ? 1 : 4)
                guard let v = memo[i] else { throw bad("memo \(i) unset") }
                try push(v)
            case 0x30: _ = try pop()                                 // POP
            case 0x31: _ = try popMark()                             // POP_MARK
            case 0x74: try push(.tuple(try popMark()))               // TUPLE
            case 0x85: try push(.tuple([try pop()]))                 // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); try push(.tuple([a, b]))            // TUPLE2
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); try push(.tuple([a, b, c]))  // TUPLE3
            case 0x61:                                               // APPEND
                let v = try pop()
                guard case .list(var l) = try pop() else { throw bad("APPEND to a non-list") }
                l.append(v); try push(.list(l))
            case 0x65:                                               // APPENDS
                let items = try popMark()
                guard case .list(var l) = try pop() else { throw bad("APPENDS to a non-list") }
                l += items; try push(.list(l))
            case 0x73, 0x75:                                         // SETITEM, SETITEMS
                let items: [Value]
                if op == 0x73 { let v = try pop(), k = try pop(); items = [k, v] } else { items = try popMark() }
                guard items.count % 2 == 0, case .dict(var d) = try pop() else { throw bad("SETITEMS on a non-dict") }
                for i in stride(from: 0, to: items.count, by: 2) { d.append((items[i], items[i + 1])) }
                try push(.dict(d))
            case 0x63:                                               // GLOBAL
                let module = try line(), name = try line()
                try push(.global(try Self.global(module, name, bad: bad)))
            case 0x93:                                               // STACK_GLOBAL
                guard case .string(let name) = try pop(), case .string(let module) = try pop() else {
                    throw bad("STACK_GLOBAL without names")
                }
                try push(.global(try Self.global(module, name, bad: bad)))
            case 0x51:                                               // BINPERSID
                guard case .tuple(let t) = try pop(), t.count == 5, t[0] == .string("storage"),
                      case .global(.storageType(let type)) = t[1], case .string(let key) = t[2],
                      case .int(let n) = t[4], n >= 0 else { throw bad("persistent id is not a tensor storage") }
                try push(.storage(Storage(key: key, typeName: type, elements: n)))
            case 0x52:                                               // REDUCE
                guard case .tuple(let args) = try pop(), case .global(let g) = try pop() else {
                    throw bad("REDUCE of something that is not an allowed global")
                }
                try push(try Self.reduce(g, args, bad: bad))
            case 0x62:                                               // BUILD: state for OrderedDict/tensors (ignored)
                _ = try pop()
            default:
                throw bad("opcode 0x\(String(op, radix: 16)) at byte \(pos - 1) is not allowed in a state dict")
            }
        }
    }

    static func global(_ module: String, _ name: String, bad: (String) -> CheckpointError) throws -> Global {
        switch (module, name) {
        case ("collections", "OrderedDict"): return .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"): return .rebuildTensor
        case ("torch._utils", "_rebuild_parameter"): return .rebuildParameter
        case ("torch", let n) where storageTypes.contains(n): return .storageType(n)
        default:
            throw bad("refusing to load '\(module).\(name)': only tensors, storages and OrderedDict are allowed "
                      + "(the file may try to run code)")
        }
    }

    static func reduce(_ g: Global, _ args: [Value], bad: (String) -> CheckpointError) throws -> Value {
        switch g {
        case .orderedDict:
            guard args.isEmpty else { throw bad("OrderedDict with arguments") }
            return .dict([])
        case .rebuildTensor:
            guard args.count >= 4, case .storage(let s) = args[0], case .int(let offset) = args[1],
                  case .tuple(let size) = args[2], case .tuple(let stride) = args[3], size.count == stride.count,
                  offset >= 0 else { throw bad("malformed _rebuild_tensor_v2 arguments") }
            var shape: [Int] = [], strides: [Int] = []
            for (a, b) in zip(size, stride) {
                guard case .int(let n) = a, case .int(let st) = b, n >= 0, st >= 0 else { throw bad("bad tensor size") }
                shape.append(n); strides.append(st)
            }
            return .tensor(TensorRef(storage: s, offset: offset, shape: shape, strides: strides))
        case .rebuildParameter:
            guard let t = args.first, case .tensor = t else { throw bad("malformed _rebuild_parameter") }
            return t
        case .storageType:
            throw bad("a storage type cannot be called")
        }
    }
}
