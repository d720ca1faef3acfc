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

/// A diffusers model folder as diffusers lays it out: `model_index.json` naming each component's library and class,
/// one subfolder per component with its config, and weight files that may be plain or a variant
/// (`diffusion_pytorch_model.fp16.safetensors`), single or sharded (`...-00001-of-00002.safetensors`, listed by an
/// index `diffusion_pytorch_model.safetensors.index[.fp16].json`).
///
/// The one place that knows this layout: the pipeline loads through it, `WeightLoader(componentDirectory:)` picks
/// its files with it, and `inspect` lists folders with it. SafeTensors knows only the file format.
public struct DiffusersFolder: Sendable {
    /// A `model_index.json` entry: `"unet": ["diffusers", "UNet2DConditionModel"]`.
    public struct Component: Sendable, Equatable {
        public let name: String
        public let library: String?
        public let className: String?
        /// `<folder>/<name>`.
        public let directory: String
    }

    public let path: String
    /// `_class_name` of model_index.json (e.g. "StableDiffusionPipeline").
    public let pipelineClass: String?
    /// The enabled components in the file's order (`[null, null]` entries, such as a removed safety checker, are
    /// left out).
    public let components: [Component]

    public var indexPath: String { path + "/model_index.json" }

    /// Reads `path/model_index.json`.
    public init(path: String) throws {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { throw PipelineError.missingFolder(path) }
        self.path = path
        let indexPath = path + "/model_index.json"
        guard FileManager.default.fileExists(atPath: indexPath) else { throw PipelineError.missingFile(indexPath) }
        let bytes: [UInt8]
        do { bytes = try RegularFile.read(indexPath) } catch {
            throw PipelineError.invalidConfig(file: indexPath, field: "(file)", reason: "\(error)")
        }
        let value: StrictJSON.Value
        do { value = try StrictJSON.parse(bytes, allowDuplicateKeys: true) } catch {
            throw PipelineError.invalidConfig(file: indexPath, field: "(top level)", reason: "not a model_index.json object (\(error))")
        }
        guard let members = value.objectMembers else {
            throw PipelineError.invalidConfig(file: indexPath, field: "(top level)", reason: "not a model_index.json object")
        }
        pipelineClass = value["_class_name"]?.stringValue
        var components: [Component] = []
        for m in members where !m.key.hasPrefix("_") {
            guard let pair = m.value.arrayValue, pair.count == 2 else { continue }
            let (library, cls) = (pair[0].stringValue, pair[1].stringValue)
            if library == nil && cls == nil { continue }
            components.append(Component(name: m.key, library: library, className: cls, directory: path + "/" + m.key))
        }
        self.components = components
    }

    public func component(_ name: String) -> Component? { components.first { $0.name == name } }

    // MARK: Weight files

    /// What a weight file's name says: `<stem>[.<variant>][-<shard>-of-<count>].safetensors`.
    public struct WeightFileName: Sendable, Equatable {
        public let stem: String
        public let variant: String?
        public let shard: (index: Int, count: Int)?

        public static func == (a: WeightFileName, b: WeightFileName) -> Bool {
            a.stem == b.stem && a.variant == b.variant && a.shard?.index == b.shard?.index && a.shard?.count == b.shard?.count
        }

        /// Nil for names that do not end in `.safetensors`.
        public init?(_ name: String) {
            guard name.hasSuffix(".safetensors"), name.count > ".safetensors".count else { return nil }
            var rest = String(name.dropLast(".safetensors".count))
            let dash = rest.split(separator: "-", omittingEmptySubsequences: false)
            func number(_ s: Substring) -> Int? { s.isEmpty || !s.allSatisfy(\.isASCII) ? nil : Int(s) }
            if dash.count >= 4, dash[dash.count - 2] == "of", let count = number(dash[dash.count - 1]),
               let index = number(dash[dash.count - 3]), index >= 1, index <= count {
                shard = (index, count)
                rest = dash.dropLast(3).joined(separator: "-")
            } else {
                shard = nil
            }
            let dots = rest.split(separator: ".", omittingEmptySubsequences: false)
            if dots.count >= 2, let last = dots.last, !last.isEmpty {
                variant = String(last)
                stem = dots.dropLast().joined(separator: ".")
            } else {
                variant = nil
                stem = rest
            }
        }
    }

    /// The weight files of a component folder, as full paths, for `variant`. As diffusers does (with a warning), a
    /// variant the folder lacks falls back to the plain files, and the plain files to a variant when that is all
    /// the folder has. In that order of preference:
    /// 1. a shard index (`<stem>.safetensors.index.json`, or `.index.<variant>.json`) lists the shards;
    /// 2. else the single files (`diffusion_pytorch_model`/`model` first when several stems exist);
    /// 3. else a complete set of shards found by name.
    /// Throws naming the folder and what was looked for, or which shards are missing.
    public static func weightFiles(in dir: String, variant: String?) throws -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
        if let files = try weightFiles(dir: dir, names: names, variant: variant) { return files }
        if variant != nil, let files = try weightFiles(dir: dir, names: names, variant: nil) { return files }
        if variant == nil {
            let variants = Set(names.compactMap { WeightFileName($0)?.variant })
            if variants.count == 1, let only = variants.first,
               let files = try weightFiles(dir: dir, names: names, variant: only) { return files }
        }
        throw PipelineError.missingFile(dir + "/" + (variant.map { "*.\($0).safetensors" } ?? "*.safetensors"))
    }

    private static func weightFiles(dir: String, names: [String], variant: String?) throws -> [String]? {
        let parsed = names.compactMap { n in WeightFileName(n).map { (name: n, parsed: $0) } }
            .filter { $0.parsed.variant == variant }
        let stems = ["diffusion_pytorch_model", "model"]
        // 1. An index names the shards.
        let indexNames = names.filter { n in
            n.hasSuffix(variant.map { ".safetensors.index.\($0).json" } ?? ".safetensors.index.json")
        }
        if let index = indexNames.sorted(by: { a, b in stems.contains { a.hasPrefix($0) } && !stems.contains { b.hasPrefix($0) } }).first {
            return try shardsFromIndex(dir + "/" + index, dir: dir)
        }
        // 2. Single files.
        let singles = parsed.filter { $0.parsed.shard == nil }
        if !singles.isEmpty {
            let preferred = singles.filter { stems.contains($0.parsed.stem) }
            return (preferred.isEmpty ? singles : Array(preferred.prefix(1))).map { dir + "/" + $0.name }
        }
        // 3. Shards by name: one complete set.
        let shards = parsed.filter { $0.parsed.shard != nil }
        guard let first = shards.first, let count = first.parsed.shard?.count else { return nil }
        let set = shards.filter { $0.parsed.stem == first.parsed.stem && $0.parsed.shard?.count == count }
        let have = Set(set.compactMap { $0.parsed.shard?.index })
        let missing = (1...count).filter { !have.contains($0) }
        guard missing.isEmpty else {
            throw PipelineError.invalidConfig(file: dir, field: first.parsed.stem,
                                              reason: "sharded weights are incomplete: shard(s) \(missing.map(String.init).joined(separator: ", ")) of \(count) missing")
        }
        return set.sorted { ($0.parsed.shard?.index ?? 0) < ($1.parsed.shard?.index ?? 0) }.map { dir + "/" + $0.name }
    }

    /// The shard files of an index's `weight_map`, each a plain file name in `dir` that exists.
    static func shardsFromIndex(_ indexPath: String, dir: String) throws -> [String] {
        func bad(_ reason: String) -> PipelineError { .invalidConfig(file: indexPath, field: "weight_map", reason: reason) }
        let bytes: [UInt8]
        do { bytes = try RegularFile.read(indexPath) } catch {
            throw PipelineError.invalidConfig(file: indexPath, field: "(file)", reason: "\(error)")
        }
        guard let value = try? StrictJSON.parse(bytes, allowDuplicateKeys: true),
              let map = value["weight_map"]?.objectMembers else { throw bad("missing or not an object") }
        var files: [String] = []
        for m in map {
            guard let file = m.value.stringValue else { throw bad("tensor '\(m.key)' maps to a non-string") }
            guard !file.isEmpty, !file.contains("/"), file != ".", file != ".." else {
                throw bad("tensor '\(m.key)' maps to '\(file)', which is not a file name in the folder")
            }
            if !files.contains(file) { files.append(file) }
        }
        guard !files.isEmpty else { throw bad("lists no files") }
        for f in files.sorted() where !RegularFile.exists(dir + "/" + f) {
            throw bad("lists \(f), which is not a regular file in \(dir)")
        }
        return files.sorted().map { dir + "/" + $0 }
    }
}
