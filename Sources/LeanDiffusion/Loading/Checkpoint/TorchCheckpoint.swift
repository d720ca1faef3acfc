import LeanCore
import SafeTensors

/// A PyTorch zip checkpoint (`.ckpt`, `.pt`, `.pth` from `torch.save`) read without running code from it: the
/// archive's `data.pkl` goes through `RestrictedUnpickler`, and tensors are cut from the `data/<key>` storages by
/// their offsets and strides (bounds-checked). Lightning checkpoints' `state_dict` is used when present.
public struct TorchCheckpoint {
    public struct Tensor {
        public let name: String
        public let dtype: SafeTensorsDType
        public let shape: [Int]
        /// Contiguous little-endian bytes.
        public let data: [UInt8]
    }

    public let path: String
    public internal(set) var tensors: [Tensor]

    /// Every floating-point tensor re-saved as `dtype` (fp16 / bf16 / fp32 checkpoints from one another).
    public mutating func convert(to dtype: SafeTensorsDType) { tensors = tensors.map { $0.converted(to: dtype) } }

    static let storageDTypes: [String: SafeTensorsDType] = [
        "FloatStorage": .F32, "HalfStorage": .F16, "BFloat16Storage": .BF16, "DoubleStorage": .F64,
        "LongStorage": .I64, "IntStorage": .I32, "ShortStorage": .I16, "CharStorage": .I8, "ByteStorage": .U8,
        "BoolStorage": .BOOL]

    public init(path: String) throws {
        func bad(_ r: String) -> CheckpointError { CheckpointError(path: path, reason: r) }
        self.path = path
        let archive = try ZipArchive(path: path)
        defer { archive.closeFile() }
        guard let pickle = archive.entries.values.filter({ $0.name.hasSuffix("data.pkl") })
            .min(by: { $0.name.count < $1.name.count }) else { throw bad("no data.pkl in the archive") }
        guard pickle.size <= 1 << 30 else { throw bad("data.pkl of \(pickle.size) bytes") }
        let root = String(pickle.name.dropLast("data.pkl".count))
        var unpickler = RestrictedUnpickler(try archive.data(pickle), path: path)
        let top = try unpickler.load()
        guard case .dict(let items) = top else { throw bad("the pickle is not a dict") }
        var stateDict = items
        if let nested = items.first(where: { $0.0 == .string("state_dict") })?.1, case .dict(let d) = nested { stateDict = d }
        var out: [Tensor] = []
        var seen = Set<String>()
        for (k, v) in stateDict {
            guard case .string(let name) = k, case .tensor(let t) = v else { continue }
            guard seen.insert(name).inserted else { throw bad("tensor \(name) twice") }
            guard let dtype = Self.storageDTypes[t.storage.typeName] else { throw bad("\(name): storage \(t.storage.typeName)") }
            guard let entry = archive.entries[root + "data/" + t.storage.key] else {
                throw bad("\(name): storage data/\(t.storage.key) missing from the archive")
            }
            let es = dtype.byteSize
            let (total, o1) = t.storage.elements.multipliedReportingOverflow(by: es)
            guard !o1, entry.size >= total else { throw bad("\(name): storage data/\(t.storage.key) is shorter than its \(t.storage.elements) elements") }
            // The elements the view reaches: offset + Σ (size - 1) · stride, checked without overflow.
            var count = 1, last = t.offset
            for (n, s) in zip(t.shape, t.strides) {
                let (c, oc) = count.multipliedReportingOverflow(by: n)
                guard !oc else { throw bad("\(name): shape \(t.shape) too large") }
                count = c
                if n > 0 {
                    let (span, os) = (n - 1).multipliedReportingOverflow(by: s)
                    let (l, ol) = last.addingReportingOverflow(span)
                    guard !os, !ol else { throw bad("\(name): strides out of range") }
                    last = l
                }
            }
            // A saved tensor never has more elements than its storage (no broadcast views): a stride-0 view of a
            // huge shape would otherwise be an allocation of any size.
            guard count <= t.storage.elements else {
                throw bad("\(name): \(count) elements from a storage of \(t.storage.elements)")
            }
            guard count == 0 || last < t.storage.elements else {
                throw bad("\(name): view reaches element \(last) of a storage of \(t.storage.elements)")
            }
            // Row-major strides: the view is one run of the storage, read as it is (a multi-GB checkpoint's
            // tensors nearly all are); anything else is gathered element by element.
            var rowMajor = [Int](repeating: 1, count: t.shape.count)
            for d in stride(from: t.shape.count - 2, through: 0, by: -1) { rowMajor[d] = rowMajor[d + 1] * t.shape[d + 1] }
            let contiguous = zip(zip(t.shape, t.strides), rowMajor).allSatisfy { $0.0.0 <= 1 || $0.0.1 == $0.1 }
            var data: [UInt8]
            if count == 0 {
                data = []
            } else if contiguous {
                data = try archive.read(entry.dataOffset + t.offset * es, count * es)
            } else {
                let storage = try archive.read(entry.dataOffset + t.offset * es, (last - t.offset + 1) * es)
                data = [UInt8](repeating: 0, count: count * es)
                var index = [Int](repeating: 0, count: t.shape.count)
                for i in 0..<count {
                    var at = 0
                    for d in 0..<index.count { at += index[d] * t.strides[d] }
                    for b in 0..<es { data[i * es + b] = storage[at * es + b] }
                    var d = index.count - 1
                    while d >= 0 {
                        index[d] += 1
                        if index[d] < t.shape[d] { break }
                        index[d] = 0
                        d -= 1
                    }
                }
            }
            out.append(Tensor(name: name, dtype: dtype, shape: t.shape, data: data))
        }
        guard !out.isEmpty else { throw bad("no tensors in the state dict") }
        tensors = out
    }

    /// Runs the restricted unpickler over bare pickle bytes (for fuzzing and tests); throws what it refuses.
    public static func unpickle(_ bytes: [UInt8]) throws {
        var u = RestrictedUnpickler(bytes, path: "<pickle>")
        _ = try u.load()
    }

    /// The tensors of a `.safetensors` file (for re-saving in another type).
    public init(safetensors path: String) throws {
        let file = try SafeTensorsFile(path: path)
        self.path = path
        tensors = try file.tensors.map { Tensor(name: $0.name, dtype: $0.dtype, shape: $0.shape, data: try file.copyBytes($0.name)) }
    }

    /// Writes the tensors as a `.safetensors` file, atomically (temporary file in the same folder, then rename).
    public func writeSafeTensors(to target: String, metadata: [String: String] = ["format": "pt"]) throws {
        var bytes = try SafeTensorsWriter.header(for: tensors.map { (name: $0.name, dtype: $0.dtype, shape: $0.shape,
                                                                      byteCount: $0.data.count) },
                                                 metadata: metadata, path: target)
        for t in tensors { bytes += t.data }
        try AtomicFile.write(bytes, to: target)
    }
}

extension TorchCheckpoint.Tensor {
    /// The tensor re-saved as `target` when both are floating-point types (F64/F32/F16/BF16), else unchanged.
    public func converted(to target: SafeTensorsDType) -> TorchCheckpoint.Tensor {
        let map: [SafeTensorsDType: LeanCore.DType] = [.F32: .f32, .F16: .f16, .BF16: .bf16]
        guard dtype != target, let to = map[target], dtype == .F64 || map[dtype] != nil else { return self }
        let n = shape.reduce(1, *)
        var floats = [Float](repeating: 0, count: n)
        data.withUnsafeBytes { src in
            floats.withUnsafeMutableBufferPointer { dst in
                if dtype == .F64 {
                    for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
                } else if n > 0 {
                    Convert.toFloat(src.baseAddress!, map[dtype]!, dst.baseAddress!, n)
                }
            }
        }
        var out = [UInt8](repeating: 0, count: n * target.byteSize)
        if n > 0 {
            floats.withUnsafeBufferPointer { f in out.withUnsafeMutableBytes { Convert.fromFloat(f.baseAddress!, $0.baseAddress!, to, n) } }
        }
        return TorchCheckpoint.Tensor(name: name, dtype: target, shape: shape, data: out)
    }
}
