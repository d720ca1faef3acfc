#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SafeTensors

/// A diffusers folder written as one original-layout (LDM / A1111) `.safetensors` file: the inverse of
/// `SingleFileLayout`, as diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py writes it but for any
/// number of levels and layers. The text encoder goes in SD 1.x's CLIP layout, or, for a GELU text encoder (SD 2.x's
/// OpenCLIP ViT-H), in OpenCLIP's with q/k/v fused into `in_proj`. Tensors keep their stored types.
enum SingleFileWriter {
    static func ldmUNetKey(_ key: String, layersPerBlock L: Int, upHasAttention: [Bool]) -> String? {
        let p = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        func rest(_ i: Int) -> String { p[i...].joined(separator: ".") }
        func resnet(_ r: String) -> String {
            for (new, old) in [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("norm2.", "out_layers.0."),
                               ("conv2.", "out_layers.3."), ("time_emb_proj.", "emb_layers.1."),
                               ("conv_shortcut.", "skip_connection.")] where r.hasPrefix(new) {
                return old + r.dropFirst(new.count)
            }
            return r
        }
        guard p.count >= 2 else { return nil }
        switch p[0] {
        case "time_embedding": return p[1] == "linear_1" ? "time_embed.0." + rest(2) : p[1] == "linear_2" ? "time_embed.2." + rest(2) : nil
        case "conv_in": return "input_blocks.0.0." + rest(1)
        case "conv_norm_out": return "out.0." + rest(1)
        case "conv_out": return "out.2." + rest(1)
        case "down_blocks", "up_blocks":
            guard p.count >= 5, let b = Int(p[1]) else { return nil }
            let down = p[0] == "down_blocks"
            let j = Int(p[3]) ?? 0
            let block = down ? 1 + b * (L + 1) : b * (L + 1)
            switch p[2] {
            case "resnets": return (down ? "input_blocks." : "output_blocks.") + "\(block + j).0." + resnet(rest(4))
            case "attentions": return (down ? "input_blocks." : "output_blocks.") + "\(block + j).1." + rest(4)
            case "downsamplers": return "input_blocks.\(block + L).0.op." + rest(5)
            case "upsamplers":
                guard b < upHasAttention.count else { return nil }
                return "output_blocks.\(block + L).\(upHasAttention[b] ? 2 : 1).conv." + rest(5)
            default: return nil
            }
        case "mid_block":
            guard p.count >= 4 else { return nil }
            if p[1] == "attentions" { return "middle_block.1." + rest(3) }
            return "middle_block.\(p[2] == "0" ? 0 : 2)." + resnet(rest(3))
        default: return nil
        }
    }

    /// The LDM key and whether the tensor is an attention projection to store as a 1x1 convolution.
    static func ldmVAEKey(_ key: String, levels n: Int) -> (String, Bool)? {
        let p = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard p.count >= 2 else { return nil }
        if p[0] == "quant_conv" || p[0] == "post_quant_conv" { return (key, false) }
        let side = p[0]
        func rest(_ i: Int) -> String { p[i...].map { $0 == "conv_shortcut" ? "nin_shortcut" : $0 }.joined(separator: ".") }
        switch p[1] {
        case "conv_in", "conv_out": return (key, false)
        case "conv_norm_out": return ("\(side).norm_out." + rest(2), false)
        case "down_blocks", "up_blocks":
            guard p.count >= 5, let i = Int(p[2]) else { return nil }
            let (word, level) = side == "encoder" ? ("down", i) : ("up", n - 1 - i)
            if p[3] == "resnets" { return ("\(side).\(word).\(level).block." + rest(4), false) }
            return ("\(side).\(word).\(level).\(side == "encoder" ? "downsample" : "upsample")." + rest(5), false)
        case "mid_block":
            guard p.count >= 5 else { return nil }
            if p[2] == "resnets" { return ("\(side).mid.block_\((Int(p[3]) ?? 0) + 1)." + rest(4), false) }
            let names = ["group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"]
            guard let m = names[p[4]] else { return nil }
            let tail = p[4] == "to_out" ? rest(6) : rest(5)
            return ("\(side).mid.attn_1.\(m)." + tail, p[4] != "group_norm")
        default: return nil
        }
    }

    /// Writes `folder` (its plain weight files) as one original-layout file at `target`, atomically.
    static func write(_ folder: DiffusersFolder, to target: String) throws {
        let root = folder.path
        let unet = try UNetConfig.load(from: root + "/unet"), vae = try VAEConfig.load(from: root + "/vae")
        let text = try CLIPTextConfig.load(from: root + "/text_encoder")
        guard let layers = unet.layersPerBlock.first, unet.layersPerBlock.allSatisfy({ $0 == layers }) else {
            throw PipelineError.invalidArgument("the original layout numbers UNet blocks for one layers_per_block")
        }
        var out: [SafeTensorsWriter.Tensor] = []
        func add(_ name: String, _ info: TensorInfo, _ file: SafeTensorsFile, shape: [Int]? = nil) throws {
            out.append((name: name, dtype: info.dtype, shape: shape ?? info.shape, data: try file.copyBytes(info.name)))
        }
        func files(_ c: String) throws -> [SafeTensorsFile] {
            try DiffusersFolder.weightFiles(in: root + "/" + c, variant: nil).map { try SafeTensorsFile(path: $0) }
        }
        let upAttention = unet.upBlockTypes.map { $0 == .crossAttn }
        for f in try files("unet") {
            for t in f.tensors {
                guard let k = ldmUNetKey(t.name, layersPerBlock: layers, upHasAttention: upAttention) else {
                    throw PipelineError.invalidArgument("UNet weight \(t.name) has no place in the original layout")
                }
                try add(SingleFileLayout.unetPrefix + k, t, f)
            }
        }
        for f in try files("vae") {
            for t in f.tensors {
                guard let (k, conv) = ldmVAEKey(t.name, levels: vae.blockOutChannels.count) else {
                    throw PipelineError.invalidArgument("VAE weight \(t.name) has no place in the original layout")
                }
                try add("first_stage_model." + k, t, f, shape: conv && t.shape.count == 2 ? t.shape + [1, 1] : nil)
            }
        }
        let openClip = text.hiddenAct == .gelu
        for f in try files("text_encoder") {
            var fused: [String: [(Int, TensorInfo)]] = [:]
            for t in f.tensors where !t.name.hasSuffix("position_ids") {
                let name = t.name.hasPrefix("text_model.") ? t.name : "text_model." + t.name
                guard openClip else { try add(SingleFileLayout.clipPrefix + name, t, f); continue }
                let p = SingleFileLayout.openClipPrefix
                let fixed = ["text_model.embeddings.token_embedding.weight": "token_embedding.weight",
                             "text_model.embeddings.position_embedding.weight": "positional_embedding",
                             "text_model.final_layer_norm.weight": "ln_final.weight",
                             "text_model.final_layer_norm.bias": "ln_final.bias"]
                if let k = fixed[name] { try add(p + k, t, f); continue }
                let layerPrefix = "text_model.encoder.layers."
                guard name.hasPrefix(layerPrefix) else { continue }
                let parts = name.dropFirst(layerPrefix.count).split(separator: ".", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { continue }
                let block = p + "transformer.resblocks.\(parts[0])."
                if let (i, x) = [("q_proj", 0), ("k_proj", 1), ("v_proj", 2)].first(where: { parts[1].hasPrefix("self_attn.\($0.0).") }).map({ ($0.1, $0.0) }) {
                    _ = x
                    let kind = parts[1].hasSuffix("weight") ? "in_proj_weight" : "in_proj_bias"
                    fused[block + "attn." + kind, default: []].append((i, t))
                    continue
                }
                let renames = [("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("self_attn.out_proj.", "attn.out_proj."),
                               ("mlp.fc1.", "mlp.c_fc."), ("mlp.fc2.", "mlp.c_proj.")]
                if let (old, new) = renames.first(where: { parts[1].hasPrefix($0.0) }) {
                    try add(block + new + parts[1].dropFirst(old.count), t, f)
                }
            }
            for (name, pieces) in fused.sorted(by: { $0.key < $1.key }) {
                let ordered = pieces.sorted { $0.0 < $1.0 }
                guard ordered.map(\.0) == [0, 1, 2], let first = ordered.first?.1 else {
                    throw PipelineError.invalidArgument("\(name): q, k and v projections incomplete")
                }
                var data: [UInt8] = []
                for (_, t) in ordered { data += try f.copyBytes(t.name) }
                var shape = first.shape
                shape[0] *= 3
                out.append((name: name, dtype: first.dtype, shape: shape, data: data))
            }
        }
        var bytes = try SafeTensorsWriter.header(for: out.map { (name: $0.name, dtype: $0.dtype, shape: $0.shape, byteCount: $0.data.count) },
                                                 metadata: ["format": "pt"], path: target)
        for t in out { bytes += t.data }
        try AtomicFile.write(bytes, to: target)
    }
}

extension DiffusersFolder {
    /// Writes this folder's plain weights as one original-layout `.safetensors` checkpoint (see `SingleFileWriter`).
    public func writeSingleFile(to target: String) throws { try SingleFileWriter.write(self, to: target) }
}
