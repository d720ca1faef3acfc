#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LeanCore
import SafeTensors
import Synchronization

/// Errors raised while reading a component's config or weights. Every case names the file and key involved.
public enum ModelLoadError: Error, CustomStringConvertible {
    case missingTensor(key: String, files: [String])
    case shapeMismatch(key: String, file: String, expected: [Int], actual: [Int])
    case unsupportedDType(key: String, file: String, dtype: String)
    case missingFile(path: String, reason: String)
    case invalidConfig(file: String, field: String, reason: String)

    public var description: String {
        switch self {
        case let .missingTensor(key, files):
            return "missing tensor '\(key)' in \(files.joined(separator: ", "))"
        case let .shapeMismatch(key, file, expected, actual):
            return "tensor '\(key)' in \(file) has shape \(actual), expected \(expected)"
        case let .unsupportedDType(key, file, dtype):
            return "tensor '\(key)' in \(file) has unsupported dtype \(dtype) (F32, F16, BF16 are supported)"
        case let .missingFile(path, reason):
            return "cannot open \(path): \(reason)"
        case let .invalidConfig(file, field, reason):
            return "\(file): field '\(field)': \(reason)"
        }
    }
}

/// The weights a loader handed out as evictable storages, in load order: what an offload policy manages.
public final class WeightRegistry: @unchecked Sendable {  // the list lives in a Mutex
    public struct Weight: Sendable {
        public let key: String
        public let shape: [Int]
        public let storage: Storage
    }
    private let list = Mutex<[Weight]>([])
    public init() {}
    public var weights: [Weight] { list.withLock { $0 } }
    public var storages: [Storage] { weights.map(\.storage) }
    /// Bytes of all weights (plain, in the compute type), resident or not.
    public var totalBytes: Int { weights.reduce(0) { $0 + $1.storage.byteCount } }
    /// Bytes in memory now, packed and converted copies included.
    public var residentBytes: Int { weights.reduce(0) { $0 + $1.storage.residentBytes } }
    func add(_ w: Weight) { list.withLock { $0.append(w) } }

    /// Loads every weight (resident mode, or bringing a component back).
    public func loadAll() { for w in weights { w.storage.load() } }
    /// Evicts every weight and its derived copies; returns the bytes freed.
    @discardableResult
    public func evictAll() -> Int { weights.reduce(0) { $0 + $1.storage.evict() } }
}

/// Reads named weights from one or more safetensors files, scoped by a key prefix, so that every block's
/// initializer receives a loader for its own subtree and asks for names exactly as the checkpoint spells them.
///
/// With a `registry`, weights are evictable storages whose source reads the tensor again from its file (`pread`
/// into owned memory, so the file mapping's pages never become resident) and converts it; they start evicted and
/// load on first use, and the registry lists them for an offload policy. Without one, weights are plain storages.
public struct WeightLoader: Sendable {
    public let files: [SafeTensorsFile]
    /// The current scope, "" or ending in ".".
    public let prefix: String
    /// The type weights are converted to (unless a call asks for another).
    public var dtype: DType
    /// Where evictable weights are listed; nil for plain, always-resident weights.
    public var registry: WeightRegistry?
    /// For files in another layout (single-file checkpoints): where each diffusers-named tensor lives. Nil: the
    /// files use the names the models ask for.
    public let keyMap: KeyMap?

    public init(files: [SafeTensorsFile], prefix: String = "", dtype: DType = .f32, registry: WeightRegistry? = nil,
                keyMap: KeyMap? = nil) {
        self.files = files
        self.prefix = prefix
        self.dtype = dtype
        self.registry = registry
        self.keyMap = keyMap
    }

    public init(paths: [String], dtype: DType = .f32) throws {
        var fs: [SafeTensorsFile] = []
        for p in paths {
            do { fs.append(try SafeTensorsFile(path: p)) } catch {
                throw ModelLoadError.missingFile(path: p, reason: "\(error)")
            }
        }
        self.init(files: fs, dtype: dtype)
    }

    /// The weights of a diffusers component folder (`unet/`, `vae/`, `text_encoder/`): the plain files, sharded or
    /// not, as `DiffusersFolder.weightFiles` picks them (a variant only when the folder has nothing else).
    public init(componentDirectory dir: String, dtype: DType = .f32, variant: String? = nil) throws {
        try self.init(paths: try DiffusersFolder.weightFiles(in: dir, variant: variant), dtype: dtype)
    }

    private func with(prefix: String? = nil, dtype: DType? = nil, registry: WeightRegistry?? = nil) -> WeightLoader {
        WeightLoader(files: files, prefix: prefix ?? self.prefix, dtype: dtype ?? self.dtype,
                     registry: registry ?? self.registry, keyMap: keyMap)
    }

    /// A loader for the subtree `prefix.`.
    public func scoped(_ prefix: String) -> WeightLoader { with(prefix: self.prefix + prefix + ".") }

    /// The same scope, converting weights to `dtype`.
    public func converting(to dtype: DType) -> WeightLoader { with(dtype: dtype) }

    /// The same scope, handing out evictable weights listed in `registry`.
    public func registering(in registry: WeightRegistry?) -> WeightLoader { with(registry: .some(registry)) }

    /// A tensor found for a requested name: the file, the file's key, and for a view (one of OpenCLIP's fused
    /// q/k/v rows, a 1x1 convolution read as a matrix) its byte offset into that tensor and its own shape.
    struct Located {
        let file: SafeTensorsFile
        let fileKey: String
        let dtype: SafeTensorsDType
        let shape: [Int]
        let byteOffset: Int
        let isView: Bool
    }

    private func locate(_ key: String) -> Located? {
        if let keyMap {
            guard let source = keyMap.sources[key], source.file < files.count else { return nil }
            let file = files[source.file]
            guard let info = file.info(source.key) else { return nil }
            let shape = source.shape ?? info.shape
            return Located(file: file, fileKey: source.key, dtype: info.dtype, shape: shape,
                           byteOffset: source.elementOffset * info.dtype.byteSize,
                           isView: source.elementOffset != 0 || shape.reduce(1, *) != info.shape.reduce(1, *))
        }
        for f in files {
            if let i = f.info(key) {
                return Located(file: f, fileKey: key, dtype: i.dtype, shape: i.shape, byteOffset: 0, isView: false)
            }
        }
        return nil
    }

    public func contains(_ name: String) -> Bool { locate(prefix + name) != nil }

    /// Whether any key lies under `scope.` (relative to this loader's scope).
    public func containsScope(_ scope: String) -> Bool {
        let p = prefix + scope + "."
        if let keyMap { return keyMap.sources.keys.contains { $0.hasPrefix(p) } }
        return files.contains { $0.tensorNames.contains { $0.hasPrefix(p) } }
    }

    /// The tensor `name` in this scope, checked against `shape` exactly, converted to `dtype` (default: the loader's).
    public func tensor(_ name: String, shape: [Int], dtype: DType? = nil) throws -> Tensor {
        let key = prefix + name
        guard let found = locate(key) else {
            throw ModelLoadError.missingTensor(key: key, files: files.map(\.path))
        }
        return try load(key: key, found, shape: shape, dtype: dtype ?? self.dtype)
    }

    /// The tensor if present (still shape-checked), nil if absent.
    public func optionalTensor(_ name: String, shape: [Int], dtype: DType? = nil) throws -> Tensor? {
        let key = prefix + name
        guard let found = locate(key) else { return nil }
        return try load(key: key, found, shape: shape, dtype: dtype ?? self.dtype)
    }

    /// The shape stored for `name`, if present.
    public func shape(_ name: String) -> [Int]? { locate(prefix + name)?.shape }

    private func load(key: String, _ found: Located, shape: [Int], dtype: DType) throws -> Tensor {
        let file = found.file
        let named = found.fileKey == key ? key : "\(key) (\(found.fileKey) in the file)"
        guard found.shape == shape else {
            throw ModelLoadError.shapeMismatch(key: named, file: file.path, expected: shape, actual: found.shape)
        }
        let count = shape.reduce(1, *)
        let src: DType
        switch found.dtype {
        case .F32: src = .f32
        case .F16: src = .f16
        case .BF16: src = .bf16
        default:
            guard found.dtype.isFloatingPoint else {
                throw ModelLoadError.unsupportedDType(key: named, file: file.path, dtype: found.dtype.rawValue)
            }
            let all = try file.floats(found.fileKey)
            let first = found.byteOffset / found.dtype.byteSize
            let t = Tensor(Array(all[first..<(first + count)]), shape: shape).converted(to: dtype)
            return Tensor(storage: .residentWeight(t, name: key), shape: shape, dtype: dtype)
        }
        if let registry {
            let range = Self.rangeSource(file: file, key: found.fileKey, baseByteOffset: found.byteOffset, from: src, to: dtype)
            let storage = Storage(byteCount: count * dtype.byteSize, name: key,
                                  source: { out in try range(0, UnsafeMutableRawBufferPointer(start: out, count: count * dtype.byteSize)) },
                                  rangeSource: range)
            registry.add(WeightRegistry.Weight(key: key, shape: shape, storage: storage))
            return Tensor(storage: storage, shape: shape, dtype: dtype)
        }
        let bytes = try file.bytes(found.fileKey)
        let t = Tensor(shape: shape, dtype: src)
        if count > 0 { t.raw.copyMemory(from: bytes.baseAddress! + found.byteOffset, byteCount: count * src.byteSize) }
        return Tensor(storage: .residentWeight(t.converted(to: dtype), name: key), shape: shape, dtype: dtype)
    }

    /// Fills bytes `[offset, offset + out.count)` of a weight as stored in memory (type `dst`): `pread` from the
    /// file, converted from the stored type `src` through a small staging buffer when they differ, so that
    /// reloading a 152 MB fp32 embedding as bf16 never holds the fp32 copy. Ranges are whole elements.
    /// `baseByteOffset` is where a view starts inside the file's tensor (its bytes in the stored type).
    static func rangeSource(file: SafeTensorsFile, key: String, baseByteOffset: Int = 0, from src: DType,
                            to dst: DType) -> @Sendable (Int, UnsafeMutableRawBufferPointer) throws -> Void {
        return { offset, out in
            if src == dst {
                try file.copy(key, byteOffset: baseByteOffset + offset, into: out)
                return
            }
            precondition(offset % dst.byteSize == 0 && out.count % dst.byteSize == 0, "partial element")
            let first = offset / dst.byteSize, count = out.count / dst.byteSize
            let chunk = 16384
            let staging = UnsafeMutableRawPointer.allocate(byteCount: chunk * src.byteSize, alignment: 64)
            defer { staging.deallocate() }
            var buf = [Float](repeating: 0, count: chunk)
            var lo = 0
            while lo < count {
                let m = min(chunk, count - lo)
                try file.copy(key, byteOffset: baseByteOffset + (first + lo) * src.byteSize,
                              into: UnsafeMutableRawBufferPointer(start: staging, count: m * src.byteSize))
                buf.withUnsafeMutableBufferPointer { b in
                    Convert.toFloat(staging, src, b.baseAddress!, m)
                    Convert.fromFloat(b.baseAddress!, out.baseAddress! + lo * dst.byteSize, dst, m)
                }
                lo += m
            }
        }
    }
}

/// Where each diffusers-named tensor of a component lives in files of another layout (a single-file checkpoint).
public final class KeyMap: Sendable {
    /// A tensor, or a contiguous view of one: `elementOffset` elements into the file's tensor `key`, with `shape`
    /// (nil: the file's shape).
    public struct Source: Sendable, Equatable {
        public let file: Int
        public let key: String
        public let elementOffset: Int
        public let shape: [Int]?
        public init(file: Int = 0, key: String, elementOffset: Int = 0, shape: [Int]? = nil) {
            self.file = file
            self.key = key
            self.elementOffset = elementOffset
            self.shape = shape
        }
    }
    /// Diffusers key (as the models ask for it) -> source.
    public let sources: [String: Source]
    public init(_ sources: [String: Source]) { self.sources = sources }
}
