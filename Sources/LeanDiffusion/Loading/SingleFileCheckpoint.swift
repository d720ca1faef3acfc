#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LeanCore
import SafeTensors
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which Stable Diffusion a single-file checkpoint is, told apart as diffusers' `infer_diffusers_model_type` does;
/// each names the folder of shipped configs (`Models/configs/<rawValue>`: model_index.json, component configs,
/// scheduler and tokenizer, no weights) that `from_single_file` would fetch from the hub.
public enum SingleFileArchitecture: String, Sendable, CaseIterable {
    /// SD 1.x (CLIP ViT-L text encoder, 768-wide cross-attention), configs of stable-diffusion-v1-5.
    case sd1 = "sd15"
    /// SD 2.x (OpenCLIP ViT-H, 1024-wide cross-attention): diffusers reads every SD 2 file with
    /// stable-diffusion-2-1's configs (768 px, v-prediction); a 512 px epsilon model (2.x base) needs `config:`.
    case sd2 = "sd21"
    /// 9-channel inpainting UNets.
    case sd1Inpainting = "sd15-inpainting"
    case sd2Inpainting = "sd2-inpainting"
}

/// A Stable Diffusion 1.x / 2.x checkpoint in the original single-file layout (`.safetensors`), read as diffusers'
/// `from_single_file` reads it: architecture from tensor names and shapes, non-EMA weights, keys remapped at load
/// (`SingleFileLayout`) with no second copy of the file.
public struct SingleFileCheckpoint: Sendable {
    public enum TextEncoderLayout: String, Sendable { case clip, openClip }

    public let path: String
    public let file: SafeTensorsFile
    public let architecture: SingleFileArchitecture
    public let textEncoderLayout: TextEncoderLayout
    /// Whether the file also holds EMA weights (`model_ema.*`, more than 100 keys); they are not used.
    public let hasEMAWeights: Bool

    static let inpaintingKey = SingleFileLayout.unetPrefix + "input_blocks.0.0.weight"
    static let sd2Key = SingleFileLayout.unetPrefix + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"

    public init(path: String) throws {
        guard path.hasSuffix(".safetensors") else {
            throw PipelineError.invalidArgument("\(path): single-file checkpoints are read from .safetensors files "
                                                + "(a .ckpt pickle is not read; convert it to .safetensors first)")
        }
        do { file = try SafeTensorsFile(path: path) } catch {
            throw ModelLoadError.missingFile(path: path, reason: "\(error)")
        }
        self.path = path
        let names = file.tensorNames
        if names.contains(where: { $0.hasPrefix("conditioner.embedders.") }) {
            throw PipelineError.invalidArgument("\(path) is an SDXL checkpoint (conditioner.embedders.*); SDXL is not supported yet")
        }
        guard let conv = file.info(Self.inpaintingKey), conv.shape.count == 4 else {
            throw PipelineError.invalidArgument("\(path) is not a Stable Diffusion 1.x/2.x single-file checkpoint "
                                                + "(no \(Self.inpaintingKey))")
        }
        let sd2 = file.info(Self.sd2Key).map { $0.shape.last == 1024 } ?? false
        switch (conv.shape[1], sd2) {
        case (9, false): architecture = .sd1Inpainting
        case (9, true): architecture = .sd2Inpainting
        case (_, false): architecture = .sd1
        case (_, true): architecture = .sd2
        }
        textEncoderLayout = names.contains { $0.hasPrefix(SingleFileLayout.openClipPrefix) } ? .openClip : .clip
        hasEMAWeights = names.lazy.filter { $0.hasPrefix("model_ema.") }.count > 100
    }

    /// A loader for one component's weights under diffusers names.
    func loader(unet config: UNetConfig, dtype: DType) throws -> WeightLoader {
        guard let layers = config.layersPerBlock.first, config.layersPerBlock.allSatisfy({ $0 == layers }) else {
            throw PipelineError.invalidArgument("the original layout numbers UNet blocks for one layers_per_block; "
                                                + "the config has \(config.layersPerBlock)")
        }
        return WeightLoader(files: [file], dtype: dtype,
                            keyMap: KeyMap(SingleFileLayout.unet(file.tensorNames, layersPerBlock: layers)))
    }

    func loader(vae config: VAEConfig, dtype: DType) -> WeightLoader {
        Self.vaeLoader(file, levels: config.blockOutChannels.count, dtype: dtype)
    }

    func textEncoderLoader(dtype: DType) throws -> WeightLoader {
        let names = file.tensorNames
        let map = textEncoderLayout == .openClip
            ? try SingleFileLayout.openClip(names, shapes: { file.info($0)?.shape })
            : SingleFileLayout.clip(names)
        return WeightLoader(files: [file], dtype: dtype, keyMap: KeyMap(map))
    }

    /// The VAE of an original-layout file (`first_stage_model.*`, `vae.*`, or a VAE file of its own with bare
    /// `encoder.*` / `decoder.*` names); nil when it has none.
    static func vaeLoader(_ file: SafeTensorsFile, levels: Int, dtype: DType) -> WeightLoader {
        let map = SingleFileLayout.vae(file.tensorNames, shapes: { file.info($0)?.shape }, levels: levels)
        return WeightLoader(files: [file], dtype: dtype, keyMap: KeyMap(map))
    }
}

/// `vae:` for a pipeline: a diffusers VAE folder (config.json + weights), or a single `.safetensors` file in the
/// diffusers layout (`encoder.down_blocks.*`) or the original one (`encoder.down.*`, optionally under
/// `first_stage_model.`), whose config is the pipeline's own VAE config.
struct VAEReplacement {
    let configDirectory: String?
    let loader: (VAEConfig, DType) throws -> WeightLoader

    init(path: String) throws {
        if RegularFile.exists(path) {
            let file: SafeTensorsFile
            do { file = try SafeTensorsFile(path: path) } catch {
                throw ModelLoadError.missingFile(path: path, reason: "\(error)")
            }
            let names = file.tensorNames
            configDirectory = nil
            if names.contains(where: { $0.hasPrefix("encoder.down_blocks.") }) {
                loader = { _, dtype in WeightLoader(files: [file], dtype: dtype) }
            } else if names.contains(where: { $0.contains("encoder.down.") }) {
                loader = { config, dtype in SingleFileCheckpoint.vaeLoader(file, levels: config.blockOutChannels.count, dtype: dtype) }
            } else {
                throw PipelineError.invalidArgument("\(path) holds no VAE weights (neither encoder.down_blocks.* nor encoder.down.*)")
            }
        } else {
            configDirectory = path
            loader = { _, dtype in try WeightLoader(componentDirectory: path, dtype: dtype) }
        }
    }
}

extension SingleFileCheckpoint {
    /// Writes the checkpoint as a diffusers folder at `target` (which must not exist): the configs, scheduler and
    /// tokenizer of `configRoot` (a diffusers folder or `Models/configs/<architecture>`; symlinks are copied as
    /// files) and each component's weights under diffusers names (`unet/diffusion_pytorch_model.safetensors`, ...),
    /// the fused and 1x1 views written as the tensors they stand for. Built in a sibling temporary folder, then
    /// renamed into place. Each component's weights are held in memory while its file is written.
    public func writeDiffusersFolder(to target: String, configRoot: String) throws {
        guard !FileManager.default.fileExists(atPath: target) else {
            throw PipelineError.outputFailed(path: target, reason: "it exists; choose a new folder")
        }
        try OutputTarget.check(target)  // its parent exists and is writable
        let temp = target + ".partial-\(UInt32.random(in: 0...UInt32.max))"
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: temp, withIntermediateDirectories: false)
            func copy(_ relative: String) throws {
                let from = configRoot + "/" + relative, to = temp + "/" + relative
                try fm.createDirectory(atPath: String(to[..<to.lastIndex(of: "/")!]), withIntermediateDirectories: true)
                try AtomicFile.write(try RegularFile.read(from), to: to)
            }
            try copy("model_index.json")
            try copy("scheduler/scheduler_config.json")
            for name in (try? fm.contentsOfDirectory(atPath: configRoot + "/tokenizer")) ?? [] { try copy("tokenizer/" + name) }
            for c in ["unet", "vae", "text_encoder"] { try copy(c + "/config.json") }
            let unet = try UNetConfig.load(from: configRoot + "/unet"), vae = try VAEConfig.load(from: configRoot + "/vae")
            let loaders = [("unet/diffusion_pytorch_model.safetensors", try loader(unet: unet, dtype: .f32)),
                           ("vae/diffusion_pytorch_model.safetensors", loader(vae: vae, dtype: .f32)),
                           ("text_encoder/model.safetensors", try textEncoderLoader(dtype: .f32))]
            for (file, loader) in loaders {
                guard let map = loader.keyMap, !map.sources.isEmpty else {
                    throw PipelineError.invalidArgument("\(path) has no weights for \(file)")
                }
                var tensors: [SafeTensorsWriter.Tensor] = []
                for (name, source) in map.sources.sorted(by: { $0.key < $1.key }) {
                    guard let info = self.file.info(source.key) else { continue }
                    let shape = source.shape ?? info.shape
                    var data = [UInt8](repeating: 0, count: shape.reduce(1, *) * info.dtype.byteSize)
                    try data.withUnsafeMutableBytes {
                        try self.file.copy(source.key, byteOffset: source.elementOffset * info.dtype.byteSize, into: $0)
                    }
                    tensors.append((name: name, dtype: info.dtype, shape: shape, data: data))
                }
                var bytes = try SafeTensorsWriter.header(for: tensors.map { (name: $0.name, dtype: $0.dtype, shape: $0.shape,
                                                                            byteCount: $0.data.count) },
                                                         metadata: ["format": "pt"], path: file)
                for t in tensors { bytes += t.data }
                try AtomicFile.write(bytes, to: temp + "/" + file)
            }
            guard rename(temp, target) == 0 else {
                throw PipelineError.outputFailed(path: target, reason: String(cString: strerror(errno)))
            }
        } catch {
            try? fm.removeItem(atPath: temp)
            throw error
        }
    }
}
