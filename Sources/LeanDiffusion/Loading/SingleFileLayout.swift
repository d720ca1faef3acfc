/// The original (LDM / AUTOMATIC1111) layout of a Stable Diffusion 1.x / 2.x single-file checkpoint, mapped to the
/// diffusers names our models ask for, as diffusers' `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`,
/// `convert_ldm_clip_checkpoint` and `convert_open_clip_checkpoint` map them (loaders/single_file_utils.py). The maps
/// point into the file (`KeyMap.Source`): nothing is copied, OpenCLIP's fused q/k/v rows and the VAE's 1x1
/// attention convolutions are views. Keys the models do not ask for (EMA copies `model_ema.*`, OpenCLIP layers past
/// the config's count, `text_projection`) are never read.
enum SingleFileLayout {
    static let unetPrefix = "model.diffusion_model."
    static let vaePrefixes = ["first_stage_model.", "vae."]
    static let clipPrefix = "cond_stage_model.transformer."
    static let openClipPrefix = "cond_stage_model.model."

    // MARK: UNet

    /// `layersPerBlock`: the UNet config's `layers_per_block` (input blocks come in groups of that plus a
    /// downsampler; output blocks in groups of that plus one).
    static func unet(_ names: [String], layersPerBlock: Int) -> [String: KeyMap.Source] {
        let per = layersPerBlock + 1
        var out: [String: KeyMap.Source] = [:]
        for name in names where name.hasPrefix(unetPrefix) {
            let key = String(name.dropFirst(unetPrefix.count))
            if let mapped = unetKey(key, per: per) { out[mapped] = KeyMap.Source(key: name) }
        }
        return out
    }

    static func unetKey(_ key: String, per: Int) -> String? {
        let p = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        func rest(_ from: Int) -> String { p[from...].joined(separator: ".") }
        guard p.count >= 3 else { return nil }
        switch p[0] {
        case "time_embed":
            return p[1] == "0" ? "time_embedding.linear_1." + rest(2) : p[1] == "2" ? "time_embedding.linear_2." + rest(2) : nil
        case "out":
            return p[1] == "0" ? "conv_norm_out." + rest(2) : p[1] == "2" ? "conv_out." + rest(2) : nil
        case "input_blocks":
            guard let i = Int(p[1]), p.count >= 4 else { return nil }
            if i == 0 { return p[2] == "0" ? "conv_in." + rest(3) : nil }
            let (b, j) = ((i - 1) / per, (i - 1) % per)
            if p[2] == "0" {
                if p[3] == "op" { return "down_blocks.\(b).downsamplers.0.conv." + rest(4) }
                return "down_blocks.\(b).resnets.\(j)." + resnet(rest(3))
            }
            return p[2] == "1" ? "down_blocks.\(b).attentions.\(j)." + rest(3) : nil
        case "middle_block":
            guard p.count >= 4 else { return nil }
            switch p[1] {
            case "0": return "mid_block.resnets.0." + resnet(rest(2))
            case "1": return "mid_block.attentions.0." + rest(2)
            case "2": return "mid_block.resnets.1." + resnet(rest(2))
            default: return nil
            }
        case "output_blocks":
            guard let i = Int(p[1]), p.count >= 4 else { return nil }
            let (b, j) = (i / per, i % per)
            if p[2] == "0" { return "up_blocks.\(b).resnets.\(j)." + resnet(rest(3)) }
            if p[3] == "conv" && (p[2] == "1" || p[2] == "2") { return "up_blocks.\(b).upsamplers.0.conv." + rest(4) }
            return p[2] == "1" ? "up_blocks.\(b).attentions.\(j)." + rest(3) : nil
        default:
            return nil
        }
    }

    /// ResNet block names inside a UNet block (`update_unet_resnet_ldm_to_diffusers`).
    static func resnet(_ rest: String) -> String {
        for (old, new) in [("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("out_layers.0.", "norm2."),
                           ("out_layers.3.", "conv2."), ("emb_layers.1.", "time_emb_proj."),
                           ("skip_connection.", "conv_shortcut.")] where rest.hasPrefix(old) {
            return new + rest.dropFirst(old.count)
        }
        return rest
    }

    // MARK: VAE

    /// `levels`: the VAE config's block count (the decoder's `up.N` run in reverse of diffusers' `up_blocks`).
    /// A VAE file of its own (sd-vae-ft-mse-original) has the same names without a prefix.
    static func vae(_ names: [String], shapes: (String) -> [Int]?, levels: Int) -> [String: KeyMap.Source] {
        guard let prefix = (vaePrefixes + [""]).first(where: { p in names.contains { $0.hasPrefix(p + "encoder.") } })
        else { return [:] }
        var out: [String: KeyMap.Source] = [:]
        for name in names where name.hasPrefix(prefix) {
            let key = String(name.dropFirst(prefix.count))
            guard let (mapped, squeeze) = vaeKey(key, levels: levels) else { continue }
            var shape: [Int]? = nil
            if squeeze, let s = shapes(name), s.count > 2, s.dropFirst(2).allSatisfy({ $0 == 1 }) { shape = Array(s.prefix(2)) }
            out[mapped] = KeyMap.Source(key: name, shape: shape)
        }
        return out
    }

    /// The diffusers key, and whether it is an attention projection stored as a 1x1 convolution.
    static func vaeKey(_ key: String, levels: Int) -> (String, Bool)? {
        let p = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        func rest(_ from: Int) -> String {
            p[from...].map { $0 == "nin_shortcut" ? "conv_shortcut" : $0 }.joined(separator: ".")
        }
        guard p.count >= 2 else { return nil }
        if p[0] == "quant_conv" || p[0] == "post_quant_conv" { return (key, false) }
        guard p[0] == "encoder" || p[0] == "decoder", p.count >= 3 else { return nil }
        let side = p[0]
        switch p[1] {
        case "conv_in", "conv_out": return (key, false)
        case "norm_out": return ("\(side).conv_norm_out." + rest(2), false)
        case "down" where side == "encoder", "up" where side == "decoder":
            guard let l = Int(p[2]), p.count >= 5 else { return nil }
            let i = side == "encoder" ? l : levels - 1 - l
            guard i >= 0 else { return nil }
            let blocks = side == "encoder" ? "down_blocks" : "up_blocks"
            if p[3] == "block" { return ("\(side).\(blocks).\(i).resnets." + rest(4), false) }
            if p[3] == "downsample" || p[3] == "upsample" {
                return ("\(side).\(blocks).\(i).\(p[3] == "downsample" ? "downsamplers" : "upsamplers").0." + rest(4), false)
            }
            return nil
        case "mid":
            guard p.count >= 4 else { return nil }
            if p[2] == "block_1" { return ("\(side).mid_block.resnets.0." + rest(3), false) }
            if p[2] == "block_2" { return ("\(side).mid_block.resnets.1." + rest(3), false) }
            if p[2] == "attn_1" {
                let names = ["norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"]
                guard let n = names[p[3]] else { return nil }
                return ("\(side).mid_block.attentions.0.\(n)." + rest(4), p[3] != "norm")
            }
            return nil
        default:
            return nil
        }
    }

    // MARK: Text encoders

    /// SD 1.x: HF CLIP names under `cond_stage_model.transformer.` (older files lack `text_model.`).
    static func clip(_ names: [String]) -> [String: KeyMap.Source] {
        var out: [String: KeyMap.Source] = [:]
        for name in names where name.hasPrefix(clipPrefix) && !name.hasSuffix("position_ids") {
            let key = String(name.dropFirst(clipPrefix.count))
            out[key.hasPrefix("text_model.") ? key : "text_model." + key] = KeyMap.Source(key: name)
        }
        return out
    }

    /// SD 2.x: OpenCLIP names under `cond_stage_model.model.`; each layer's fused `attn.in_proj_weight` (3D, D)
    /// and `in_proj_bias` (3D) become q/k/v views of D rows each.
    static func openClip(_ names: [String], shapes: (String) -> [Int]?) throws -> [String: KeyMap.Source] {
        let p = openClipPrefix
        var out: [String: KeyMap.Source] = [:]
        let fixed = ["token_embedding.weight": "text_model.embeddings.token_embedding.weight",
                     "positional_embedding": "text_model.embeddings.position_embedding.weight",
                     "ln_final.weight": "text_model.final_layer_norm.weight",
                     "ln_final.bias": "text_model.final_layer_norm.bias"]
        for (old, new) in fixed where names.contains(p + old) { out[new] = KeyMap.Source(key: p + old) }
        let block = p + "transformer.resblocks."
        for name in names where name.hasPrefix(block) {
            let parts = name.dropFirst(block.count).split(separator: ".", maxSplits: 1).map(String.init)
            guard parts.count == 2, let i = Int(parts[0]) else { continue }
            let layer = "text_model.encoder.layers.\(i)."
            switch parts[1] {
            case "attn.in_proj_weight", "attn.in_proj_bias":
                guard let s = shapes(name), s.first.map({ $0 % 3 == 0 }) == true else {
                    throw ModelLoadError.invalidConfig(file: name, field: parts[1], reason: "fused q/k/v rows not divisible by 3")
                }
                let d = s[0] / 3
                let row = s.count == 2 ? s[1] : 1
                let kind = parts[1].hasSuffix("weight") ? "weight" : "bias"
                for (k, x) in ["q", "k", "v"].enumerated() {
                    out[layer + "self_attn.\(x)_proj.\(kind)"] =
                        KeyMap.Source(key: name, elementOffset: k * d * row, shape: s.count == 2 ? [d, s[1]] : [d])
                }
            default:
                let renames = [("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("attn.out_proj.", "self_attn.out_proj."),
                               ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2.")]
                if let (old, new) = renames.first(where: { parts[1].hasPrefix($0.0) }) {
                    out[layer + new + parts[1].dropFirst(old.count)] = KeyMap.Source(key: name)
                }
            }
        }
        return out
    }
}
