#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// AUTOMATIC1111's "Model hash" and "Model" for a model path.
///
/// A1111 writes the first 10 hex digits of the SHA-256 of the whole checkpoint file (`CheckpointInfo.shorthash`,
/// modules/sd_models.py) and the file's name without its extension (`name_for_extra`). For a single file we do the
/// same. A diffusers folder has no one checkpoint file: we hash the UNet's weight files, the ones the pipeline loads
/// for the variant (`DiffusersFolder.weightFiles`), their bytes one after the other in shard order, and name the
/// model by the folder's name. The UNet is what tells one fine-tune from another; the text encoder and VAE are often
/// shared. The hash streams the files (4 MiB reads), so it costs a read of the UNet and no memory; the CLI computes
/// it only when it writes metadata.
public enum ModelHash {
    /// The files hashed for `path` (a weights file, or a diffusers folder with `unet/`).
    public static func files(forModel path: String, variant: String? = nil) throws -> [String] {
        guard let isDirectory = isDirectory(path) else { throw PipelineError.missingFile(path) }
        guard isDirectory else { return [path] }
        var folder = Substring(path)
        while folder.count > 1 && folder.hasSuffix("/") { folder = folder.dropLast() }
        return try DiffusersFolder.weightFiles(in: folder + "/unet", variant: variant)
    }

    /// The full SHA-256 (64 lowercase hex digits) of the model's hashed files.
    public static func sha256(forModel path: String, variant: String? = nil) throws -> String {
        SHA256.hex(try SHA256.ofFiles(try files(forModel: path, variant: variant)))
    }

    /// A1111's short hash: the first 10 hex digits of `sha256(forModel:)`.
    public static func shortHash(forModel path: String, variant: String? = nil) throws -> String {
        String(try sha256(forModel: path, variant: variant).prefix(10))
    }

    /// A1111's model name: the file name without extension, or the folder's name.
    public static func name(forModel path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        let last = p.split(separator: "/").last.map(String.init) ?? String(p)
        if isDirectory(path) == false, let dot = last.lastIndex(of: "."), dot != last.startIndex {
            return String(last[..<dot])
        }
        return last
    }

    /// Whether `path` is a directory (following links); nil when nothing is there.
    static func isDirectory(_ path: String) -> Bool? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// A1111's LoRA short hash (`shorthash` of extensions-builtin/Lora): the first 12 hex digits of the SHA-256
    /// of a .safetensors file's bytes after its header (sd-scripts' `addnet_hash_safetensors`: skip the 8-byte
    /// length and the JSON header it gives), of the whole file for other formats.
    public static func loraShortHash(path: String) throws -> String {
        var offset = 0
        if path.lowercased().hasSuffix(".safetensors") {
            let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else {
                let e = errno
                throw e == ENOENT ? PipelineError.missingFile(path)
                    : PipelineError.unreadableFile(path: path, reason: String(cString: strerror(e)))
            }
            defer { close(fd) }
            var header: UInt64 = 0
            var st = stat()
            guard fstat(fd, &st) == 0, pread(fd, &header, 8, 0) == 8 else {
                throw PipelineError.unreadableFile(path: path, reason: "shorter than a safetensors header")
            }
            let n = UInt64(littleEndian: header)
            guard n <= UInt64(st.st_size) - 8 else {
                throw PipelineError.unreadableFile(path: path, reason: "its header length \(n) is past the end of the file")
            }
            offset = 8 + Int(n)
        }
        return String(SHA256.hex(try SHA256.ofFiles([(path, offset)])).prefix(12))
    }

    /// The name A1111 gives a LoRA in `Lora hashes`: the one it was called by (here the file name without its
    /// extension), with ':' and ',' removed.
    public static func loraName(path: String) -> String {
        let last = path.split(separator: "/").last.map(String.init) ?? path
        let stem = last.lastIndex(of: ".").map { $0 == last.startIndex ? last : String(last[..<$0]) } ?? last
        return stem.filter { $0 != ":" && $0 != "," }
    }

    /// A1111's "VAE hash" and "VAE" for a replacement VAE: the first 10 hex digits of the file's SHA-256 and its file
    /// name (`sd_vae.get_loaded_vae_hash` / `_name`); for a diffusers VAE folder, of its weight files and the
    /// folder's name.
    public static func vae(path: String) throws -> (hash: String, name: String) {
        guard let isDirectory = isDirectory(path) else { throw PipelineError.missingFile(path) }
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        let files = isDirectory ? try DiffusersFolder.weightFiles(in: String(p), variant: nil) : [path]
        let name = p.split(separator: "/").last.map(String.init) ?? String(p)
        return (String(SHA256.hex(try SHA256.ofFiles(files)).prefix(10)), name)
    }
}
