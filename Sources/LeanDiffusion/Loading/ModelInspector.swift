#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SafeTensors
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Summarises what is inside a checkpoint before anything is loaded, so a user
/// can see which components, variants and dtypes a download contains and how
/// much memory each will need.
///
/// Accepts a single `.safetensors` file, a diffusers pipeline folder (with
/// `model_index.json`), or a single component folder (`config.json` plus weights).
public struct ModelInspector: Sendable {
    public struct TensorEntry: Codable, Sendable, Equatable {
        public let name: String
        public let dtype: String
        public let shape: [Int]
    }

    public struct WeightFile: Codable, Sendable {
        /// Path relative to the inspected root.
        public let path: String
        /// e.g. "fp16" for `model.fp16.safetensors`; nil for the default weights.
        public let variant: String?
        public let tensorCount: Int
        public let parameterCount: Int
        /// Bytes of tensor data (excluding the header).
        public let bytes: Int
        public let fileSize: Int
        /// dtype -> number of tensors.
        public let dtypes: [String: Int]
        public let metadata: [String: String]
        /// Present only when listing was requested.
        public var tensors: [TensorEntry]?
    }

    public struct Component: Codable, Sendable {
        public let name: String
        public let className: String?
        public let library: String?
        public let weightFiles: [WeightFile]
    }

    public struct Report: Codable, Sendable {
        public let path: String
        /// "file", "pipeline" or "component".
        public let kind: String
        public let pipelineClass: String?
        public let components: [Component]
        public let warnings: [String]
    }

    public let report: Report

    public init(path: String) throws {
        let fm = FileManager.default
        guard let kind = Self.fileKind(path) else { throw SafeTensorsError(path: path, .pathNotFound) }
        var warnings: [String] = []

        if kind != .directory {
            let name = Self.lastComponent(path)
            let wf = try Self.inspectFile(full: path, relative: name)
            report = Report(path: path, kind: "file", pipelineClass: nil,
                            components: [Component(name: name, className: nil, library: nil, weightFiles: [wf])], warnings: [])
            return
        }

        let indexPath = path + "/model_index.json"
        if fm.fileExists(atPath: indexPath) {
            let folder = try DiffusersFolder(path: path)
            var components: [Component] = []
            for c in folder.components {
                let (library, cls, dir) = (c.library, c.className, c.directory)
                var files: [WeightFile] = []
                if Self.fileKind(dir) == .directory {
                    files = try Self.inspectFolder(dir, relativePrefix: c.name + "/", warnings: &warnings)
                } else {
                    warnings.append("component \(c.name): folder missing")
                }
                components.append(Component(name: c.name, className: cls, library: library, weightFiles: files))
            }
            guard components.contains(where: { !$0.weightFiles.isEmpty }) else { throw SafeTensorsError(path: path, .noWeights) }
            report = Report(path: path, kind: "pipeline", pipelineClass: folder.pipelineClass,
                            components: components, warnings: warnings)
            return
        }

        let files = try Self.inspectFolder(path, relativePrefix: "", warnings: &warnings)
        guard !files.isEmpty else { throw SafeTensorsError(path: path, .noWeights) }
        let name = Self.lastComponent(path)
        report = Report(path: path, kind: "component", pipelineClass: nil,
                        components: [Component(name: name, className: Self.className(folder: path, warnings: &warnings), library: nil, weightFiles: files)],
                        warnings: warnings)
    }

    // MARK: Collection

    enum FileKind { case directory, other }

    static func fileKind(_ path: String) -> FileKind? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return (st.st_mode & S_IFMT) == S_IFDIR ? .directory : .other
    }

    static func lastComponent(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        return p.split(separator: "/").last.map(String.init) ?? String(p)
    }

    static func readJSON(_ path: String) throws -> StrictJSON.Value {
        let data: Data
        do { data = Data(try RegularFile.read(path)) } catch {
            throw SafeTensorsError(path: path, .invalidConfig(reason: error.message))
        }
        do {
            // Config files are written by Python's json module, which tolerates duplicates.
            return try StrictJSON.parse(Array(data), allowDuplicateKeys: true)
        } catch {
            throw SafeTensorsError(path: path, .invalidConfig(reason: error.description))
        }
    }

    static func className(folder: String, warnings: inout [String]) -> String? {
        let cfg = folder + "/config.json"
        guard FileManager.default.fileExists(atPath: cfg) else { return nil }
        do {
            let v = try readJSON(cfg)
            if let c = v["_class_name"]?.stringValue { return c }
            if let a = v["architectures"]?.arrayValue?.first?.stringValue { return a }
        } catch {
            warnings.append("\(error)")
        }
        return nil
    }

    /// `diffusion_pytorch_model.fp16.safetensors` -> "fp16";
    /// `model.fp16-00001-of-00002.safetensors` -> "fp16"; plain names -> nil (see `DiffusersFolder.WeightFileName`).
    static func variant(of file: String) -> String? { DiffusersFolder.WeightFileName(file)?.variant }

    static func inspectFolder(_ dir: String, relativePrefix: String, warnings: inout [String]) throws -> [WeightFile] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted() } catch {
            throw SafeTensorsError(path: dir, .pathNotFound)
        }
        var files: [WeightFile] = []
        for n in names where n.hasSuffix(".safetensors") {
            files.append(try inspectFile(full: dir + "/" + n, relative: relativePrefix + n))
        }
        let ignored = names.filter { $0.hasSuffix(".bin") || $0.hasSuffix(".ckpt") || $0.hasSuffix(".pt") || $0.hasSuffix(".pth") }
        if !ignored.isEmpty {
            warnings.append("\(relativePrefix.isEmpty ? dir : relativePrefix): ignored non-safetensors weights: \(ignored.joined(separator: ", "))")
        }
        return files
    }

    static func inspectFile(full: String, relative: String) throws -> WeightFile {
        let f = try SafeTensorsFile(path: full)
        var dtypes: [String: Int] = [:]
        var params = 0
        for t in f.tensors {
            dtypes[t.dtype.rawValue, default: 0] += 1
            params += t.elementCount
        }
        let tensors = f.tensors.map { TensorEntry(name: $0.name, dtype: $0.dtype.rawValue, shape: $0.shape) }
        return WeightFile(path: relative, variant: relative.hasSuffix(".safetensors") ? variant(of: lastComponent(relative)) : nil,
                          tensorCount: f.count, parameterCount: params, bytes: f.header.dataLength,
                          fileSize: f.fileSize, dtypes: dtypes, metadata: f.metadata, tensors: tensors)
    }

    // MARK: Rendering

    /// A plain-text table; with `listTensors`, every tensor of every file follows.
    public func render(listTensors: Bool = false) -> String {
        var out = "\(report.path) (\(report.kind)\(report.pipelineClass.map { ": " + $0 } ?? ""))\n"
        var rows: [[String]] = [["component", "class", "file", "tensors", "params", "size", "dtypes"]]
        var totals: [String: (tensors: Int, params: Int, bytes: Int)] = [:]
        for c in report.components {
            if c.weightFiles.isEmpty {
                rows.append([c.name, c.className ?? "-", "(no weights)", "", "", "", ""])
                continue
            }
            for (i, f) in c.weightFiles.enumerated() {
                rows.append([i == 0 ? c.name : "", i == 0 ? (c.className ?? "-") : "", f.path,
                             String(f.tensorCount), Self.formatCount(f.parameterCount), Self.formatBytes(f.bytes),
                             Self.formatDTypes(f.dtypes)])
                let key = f.variant ?? "default"
                let t = totals[key] ?? (0, 0, 0)
                totals[key] = (t.tensors + f.tensorCount, t.params + f.parameterCount, t.bytes + f.bytes)
            }
        }
        for key in totals.keys.sorted() {
            let t = totals[key]!
            rows.append(["total", key == "default" ? "" : "variant \(key)", "", String(t.tensors), Self.formatCount(t.params), Self.formatBytes(t.bytes), ""])
        }
        out += Self.table(rows, rightAligned: [3, 4, 5])
        for w in report.warnings { out += "warning: \(w)\n" }
        if listTensors {
            for c in report.components {
                for f in c.weightFiles {
                    out += "\n\(f.path)\n"
                    let trows = (f.tensors ?? []).map { ["  " + $0.name, $0.dtype, "[" + $0.shape.map(String.init).joined(separator: ", ") + "]"] }
                    out += Self.table(trows, rightAligned: [])
                }
            }
        }
        return out
    }

    /// Pretty-printed JSON of `report`; tensor lists are dropped unless requested.
    public func renderJSON(listTensors: Bool = false) throws -> String {
        var r = report
        if !listTensors {
            r = Report(path: r.path, kind: r.kind, pipelineClass: r.pipelineClass,
                       components: r.components.map { c in
                           Component(name: c.name, className: c.className, library: c.library,
                                     weightFiles: c.weightFiles.map { var f = $0; f.tensors = nil; return f })
                       }, warnings: r.warnings)
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try enc.encode(r), as: UTF8.self)
    }

    static func table(_ rows: [[String]], rightAligned: Set<Int>) -> String {
        guard let cols = rows.map(\.count).max() else { return "" }
        var widths = [Int](repeating: 0, count: cols)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        var out = ""
        for r in rows {
            var line = ""
            for (i, c) in r.enumerated() {
                let pad = String(repeating: " ", count: widths[i] - c.count)
                line += rightAligned.contains(i) ? pad + c : c + pad
                if i < r.count - 1 { line += "  " }
            }
            while line.hasSuffix(" ") { line.removeLast() }
            out += line + "\n"
        }
        return out
    }

    static func formatDTypes(_ d: [String: Int]) -> String {
        d.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: " ")
    }

    /// Two decimals without `String(format:)`, which FoundationEssentials lacks.
    static func fixed2(_ v: Double) -> String {
        let cents = Int((v * 100).rounded())
        let frac = cents % 100
        return "\(cents / 100).\(frac < 10 ? "0" : "")\(frac)"
    }

    static func formatCount(_ n: Int) -> String {
        let d = Double(n)
        if n >= 1_000_000_000 { return fixed2(d / 1e9) + "B" }
        if n >= 1_000_000 { return fixed2(d / 1e6) + "M" }
        if n >= 1_000 { return fixed2(d / 1e3) + "K" }
        return String(n)
    }

    static func formatBytes(_ n: Int) -> String {
        let d = Double(n)
        if n >= 1 << 30 { return fixed2(d / Double(1 << 30)) + " GiB" }
        if n >= 1 << 20 { return fixed2(d / Double(1 << 20)) + " MiB" }
        if n >= 1 << 10 { return fixed2(d / Double(1 << 10)) + " KiB" }
        return "\(n) B"
    }
}
