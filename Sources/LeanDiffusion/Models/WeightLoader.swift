#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LeanCore
import SafeTensors

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

/// Reads named weights from one or more safetensors files, scoped by a key prefix, so that every block's
/// initializer receives a loader for its own subtree and asks for names exactly as the checkpoint spells them.
public struct WeightLoader: @unchecked Sendable {
    public let files: [SafeTensorsFile]
    /// The current scope, "" or ending in ".".
    public let prefix: String
    /// The type weights are converted to (unless a call asks for another).
    public var dtype: DType

    public init(files: [SafeTensorsFile], prefix: String = "", dtype: DType = .f32) {
        self.files = files
        self.prefix = prefix
        self.dtype = dtype
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

    /// The weights of a diffusers component folder (`unet/`, `vae/`, `text_encoder/`): its `*.safetensors` files,
    /// preferring the plain `diffusion_pytorch_model` / `model` names over variants such as `.fp16`.
    public init(componentDirectory dir: String, dtype: DType = .f32) throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        let st = names.filter { $0.hasSuffix(".safetensors") }.sorted()
        let plain = st.filter { $0 == "diffusion_pytorch_model.safetensors" || $0 == "model.safetensors" }
        let shards = st.filter { $0.contains("-of-") && !$0.contains(".fp16") }
        let chosen = !plain.isEmpty ? plain : (!shards.isEmpty ? shards : st)
        guard !chosen.isEmpty else {
            throw ModelLoadError.missingFile(path: dir, reason: "no .safetensors weights in the directory")
        }
        try self.init(paths: chosen.map { dir + "/" + $0 }, dtype: dtype)
    }

    /// A loader for the subtree `prefix.`.
    public func scoped(_ prefix: String) -> WeightLoader {
        WeightLoader(files: files, prefix: self.prefix + prefix + ".", dtype: dtype)
    }

    /// The same scope, converting weights to `dtype`.
    public func converting(to dtype: DType) -> WeightLoader {
        WeightLoader(files: files, prefix: prefix, dtype: dtype)
    }

    private func locate(_ key: String) -> (SafeTensorsFile, TensorInfo)? {
        for f in files { if let i = f.info(key) { return (f, i) } }
        return nil
    }

    public func contains(_ name: String) -> Bool { locate(prefix + name) != nil }

    /// Whether any key lies under `scope.` (relative to this loader's scope).
    public func containsScope(_ scope: String) -> Bool {
        let p = prefix + scope + "."
        return files.contains { $0.tensorNames.contains { $0.hasPrefix(p) } }
    }

    /// The tensor `name` in this scope, checked against `shape` exactly, converted to `dtype` (default: the loader's).
    public func tensor(_ name: String, shape: [Int], dtype: DType? = nil) throws -> Tensor {
        let key = prefix + name
        guard let (file, info) = locate(key) else {
            throw ModelLoadError.missingTensor(key: key, files: files.map(\.path))
        }
        return try load(key: key, file: file, info: info, shape: shape, dtype: dtype ?? self.dtype)
    }

    /// The tensor if present (still shape-checked), nil if absent.
    public func optionalTensor(_ name: String, shape: [Int], dtype: DType? = nil) throws -> Tensor? {
        let key = prefix + name
        guard let (file, info) = locate(key) else { return nil }
        return try load(key: key, file: file, info: info, shape: shape, dtype: dtype ?? self.dtype)
    }

    /// The shape stored for `name`, if present.
    public func shape(_ name: String) -> [Int]? { locate(prefix + name)?.1.shape }

    private func load(key: String, file: SafeTensorsFile, info: TensorInfo, shape: [Int], dtype: DType) throws -> Tensor {
        guard info.shape == shape else {
            throw ModelLoadError.shapeMismatch(key: key, file: file.path, expected: shape, actual: info.shape)
        }
        let src: DType
        switch info.dtype {
        case .F32: src = .f32
        case .F16: src = .f16
        case .BF16: src = .bf16
        default:
            guard info.dtype.isFloatingPoint else {
                throw ModelLoadError.unsupportedDType(key: key, file: file.path, dtype: info.dtype.rawValue)
            }
            return Tensor(try file.floats(key), shape: shape).converted(to: dtype)
        }
        let bytes = try file.bytes(key)
        let t = Tensor(shape: shape, dtype: src)
        if bytes.count > 0 { t.raw.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        return t.converted(to: dtype)
    }
}
