#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SafeTensors

/// A JSON value, so config files can be read field by field with errors that name the field.
enum ConfigJSON: Decodable {
    case null, bool(Bool), number(Double), string(String), array([ConfigJSON]), object([String: ConfigJSON])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([ConfigJSON].self) { self = .array(a) }
        else { self = .object(try c.decode([String: ConfigJSON].self)) }
    }
}

/// Typed access to a config.json's fields; every failure is a `ModelLoadError.invalidConfig` naming file and field.
struct ConfigReader {
    let file: String
    let fields: [String: ConfigJSON]

    init(file: String, data: Data) throws {
        self.file = file
        let v: ConfigJSON
        do { v = try JSONDecoder().decode(ConfigJSON.self, from: data) } catch {
            throw ModelLoadError.invalidConfig(file: file, field: "(root)", reason: "not valid JSON: \(error)")
        }
        guard case .object(let o) = v else {
            throw ModelLoadError.invalidConfig(file: file, field: "(root)", reason: "expected a JSON object")
        }
        fields = o
    }

    init(from decoder: Decoder) throws {
        file = "config.json"
        guard case .object(let o) = try ConfigJSON(from: decoder) else {
            throw ModelLoadError.invalidConfig(file: file, field: "(root)", reason: "expected a JSON object")
        }
        fields = o
    }

    static func read(_ path: String) throws -> ConfigReader {
        let bytes: [UInt8]
        do { bytes = try RegularFile.read(path) } catch {
            throw ModelLoadError.missingFile(path: path, reason: error.message)
        }
        return try ConfigReader(file: path, data: Data(bytes))
    }

    func fail(_ field: String, _ reason: String) -> ModelLoadError {
        .invalidConfig(file: file, field: field, reason: reason)
    }

    private func value(_ key: String) -> ConfigJSON? {
        if let v = fields[key], case .null = v { return nil }
        return fields[key]
    }

    func isNull(_ key: String) -> Bool { value(key) == nil }

    func int(_ key: String, _ def: Int? = nil) throws -> Int {
        guard let v = value(key) else {
            if let def { return def }
            throw fail(key, "required integer is missing")
        }
        return try integer(key, v)
    }

    /// A JSON number that is an integer within ±2^53 (exact in a double, so `Int(d)` cannot trap).
    private func integer(_ key: String, _ v: ConfigJSON) throws -> Int {
        guard case .number(let d) = v, d.isFinite, d == d.rounded() else { throw fail(key, "expected an integer, got \(v)") }
        guard abs(d) <= 9_007_199_254_740_992 else { throw fail(key, "\(v) is out of range") }
        return Int(d)
    }

    /// An integer in `range` (default when absent); the error names the field and the allowed range.
    func int(_ key: String, _ def: Int? = nil, in range: ClosedRange<Int>) throws -> Int {
        let v = try int(key, def)
        guard range.contains(v) else { throw fail(key, "\(v) is outside \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    /// A finite number (default when absent), optionally within `range`.
    func finite(_ key: String, _ def: Float? = nil, in range: ClosedRange<Float>? = nil) throws -> Float {
        let v = try float(key, def)
        guard v.isFinite else { throw fail(key, "\(v) is not a finite number") }
        if let range, !range.contains(v) { throw fail(key, "\(v) is outside \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    func float(_ key: String, _ def: Float? = nil) throws -> Float {
        guard let v = value(key) else {
            if let def { return def }
            throw fail(key, "required number is missing")
        }
        guard case .number(let d) = v else { throw fail(key, "expected a number, got \(v)") }
        return Float(d)
    }

    func bool(_ key: String, _ def: Bool) throws -> Bool {
        guard let v = value(key) else { return def }
        guard case .bool(let b) = v else { throw fail(key, "expected true/false, got \(v)") }
        return b
    }

    func string(_ key: String, _ def: String? = nil) throws -> String {
        guard let v = value(key) else {
            if let def { return def }
            throw fail(key, "required string is missing")
        }
        guard case .string(let s) = v else { throw fail(key, "expected a string, got \(v)") }
        return s
    }

    func strings(_ key: String, _ def: [String]? = nil) throws -> [String] {
        guard let v = value(key) else {
            if let def { return def }
            throw fail(key, "required list of strings is missing")
        }
        guard case .array(let a) = v else { throw fail(key, "expected a list of strings, got \(v)") }
        return try a.map { e in
            guard case .string(let s) = e else { throw fail(key, "expected a list of strings, got element \(e)") }
            return s
        }
    }

    func ints(_ key: String, _ def: [Int]? = nil) throws -> [Int] {
        guard let v = value(key) else {
            if let def { return def }
            throw fail(key, "required list of integers is missing")
        }
        guard case .array(let a) = v else { throw fail(key, "expected a list of integers, got \(v)") }
        guard a.count <= 1024 else { throw fail(key, "\(a.count) entries is more than any model has") }
        return try a.map { e in
            guard case .number(let d) = e, d.isFinite, d == d.rounded() else { throw fail(key, "expected integers, got element \(e)") }
            return try integer(key, e)
        }
    }

    /// A list of integers each in `range`, non-empty.
    func ints(_ key: String, _ def: [Int]? = nil, each range: ClosedRange<Int>) throws -> [Int] {
        let l = try ints(key, def)
        guard !l.isEmpty else { throw fail(key, "the list is empty") }
        for (i, v) in l.enumerated() where !range.contains(v) {
            throw fail(key, "entry \(i) = \(v) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        return l
    }

    /// An integer or a list of integers (one per block), expanded to `count` entries.
    func intOrList(_ key: String, count: Int, _ def: Int? = nil) throws -> [Int] {
        guard let v = value(key) else {
            if let def { return Array(repeating: def, count: count) }
            throw fail(key, "required integer or list is missing")
        }
        if case .array = v {
            let l = try ints(key)
            guard l.count == count else { throw fail(key, "expected \(count) entries (one per block), got \(l.count)") }
            return l
        }
        return Array(repeating: try int(key), count: count)
    }

    /// `intOrList` with every entry in `range`.
    func intOrList(_ key: String, count: Int, _ def: Int? = nil, each range: ClosedRange<Int>) throws -> [Int] {
        let l = try intOrList(key, count: count, def)
        for (i, v) in l.enumerated() where !range.contains(v) {
            throw fail(key, "entry \(i) = \(v) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        return l
    }

    /// Fails unless the field is absent, null, or one of `allowed`.
    func expect(_ key: String, nullOr allowed: [String] = []) throws {
        guard let v = value(key) else { return }
        if case .string(let s) = v, allowed.contains(s) { return }
        throw fail(key, "unsupported value \(v)" + (allowed.isEmpty ? " (only null is supported)" : " (supported: null, \(allowed.joined(separator: ", ")))"))
    }

    func expectString(_ key: String, in allowed: [String], _ def: String) throws -> String {
        let s = try string(key, def)
        guard allowed.contains(s) else { throw fail(key, "unsupported value \"\(s)\" (supported: \(allowed.joined(separator: ", ")))") }
        return s
    }

    func expectBool(_ key: String, _ required: Bool) throws {
        guard try bool(key, required) == required else { throw fail(key, "only \(required) is supported") }
    }

    func expectInt(_ key: String, _ required: Int) throws {
        guard value(key) != nil else { return }
        if case .array = value(key)! {
            guard try ints(key).allSatisfy({ $0 == required }) else { throw fail(key, "only \(required) is supported") }
            return
        }
        guard try int(key) == required else { throw fail(key, "only \(required) is supported") }
    }
}

extension ConfigJSON: CustomStringConvertible {
    var description: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return "\(b)"
        case .number(let d): return d == d.rounded() && abs(d) < 1e15 ? "\(Int(d))" : "\(d)"
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .object: return "{...}"
        }
    }
}

/// Upper bounds on config values: far above any real model, low enough that sizes computed from them cannot
/// overflow `Int` or ask for absurd allocations before the weights' shapes are compared.
enum ConfigLimits {
    static let channels = 65_536
    static let latentChannels = 64
    static let layers = 256
    static let levels = 8
    static let positions = 65_536
    static let vocabulary = 1 << 22
    /// UNet `sample_size` (latent side) and VAE `sample_size` (image side).
    static let latentSide = 4096
    static let imageSide = 32_768
}

/// transformers' `CLIPTextConfig`, the fields SD 1.x/2.x use.
public struct CLIPTextConfig: Decodable, Sendable {
    public enum Activation: String, Sendable { case quickGelu = "quick_gelu", gelu, geluTanh = "gelu_new" }
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var maxPositionEmbeddings: Int
    public var vocabSize: Int
    public var hiddenAct: Activation
    public var layerNormEps: Float

    public init(from decoder: Decoder) throws { try self.init(ConfigReader(from: decoder)) }

    public static func load(from directory: String) throws -> CLIPTextConfig {
        try CLIPTextConfig(ConfigReader.read(directory + "/config.json"))
    }

    init(_ r: ConfigReader) throws {
        hiddenSize = try r.int("hidden_size", in: 1...ConfigLimits.channels)
        intermediateSize = try r.int("intermediate_size", in: 1...4 * ConfigLimits.channels)
        numHiddenLayers = try r.int("num_hidden_layers", in: 1...ConfigLimits.layers)
        numAttentionHeads = try r.int("num_attention_heads", in: 1...hiddenSize)
        maxPositionEmbeddings = try r.int("max_position_embeddings", 77, in: 1...ConfigLimits.positions)
        vocabSize = try r.int("vocab_size", in: 1...ConfigLimits.vocabulary)
        let act = try r.expectString("hidden_act", in: ["quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh"], "quick_gelu")
        hiddenAct = act == "gelu_pytorch_tanh" ? .geluTanh : Activation(rawValue: act)!
        layerNormEps = try r.finite("layer_norm_eps", 1e-5, in: 0...1)
        guard hiddenSize % numAttentionHeads == 0 else {
            throw r.fail("num_attention_heads", "\(numAttentionHeads) does not divide hidden_size \(hiddenSize)")
        }
    }
}

/// diffusers' `UNet2DConditionModel` config, as far as SD 1.x/2.x use it; other values are rejected.
public struct UNetConfig: Decodable, Sendable {
    public enum DownBlockType: String, Sendable { case crossAttn = "CrossAttnDownBlock2D", plain = "DownBlock2D" }
    public enum UpBlockType: String, Sendable { case crossAttn = "CrossAttnUpBlock2D", plain = "UpBlock2D" }
    /// Latent side the model was trained at (64 for SD 1.5, 96 for SD 2.x 768); 64 when absent.
    public var sampleSize: Int
    public var inChannels: Int
    public var outChannels: Int
    public var blockOutChannels: [Int]
    public var layersPerBlock: [Int]
    public var downBlockTypes: [DownBlockType]
    public var upBlockTypes: [UpBlockType]
    /// Heads per down block (diffusers' quirk resolved: `attention_head_dim` when `num_attention_heads` is null).
    public var numAttentionHeads: [Int]
    public var crossAttentionDim: Int
    public var useLinearProjection: Bool
    /// diffusers' `upcast_attention` (SD 2.x): attention scores and softmax in f32 whatever the compute type, the
    /// probabilities cast back before P·V. `Ops.attention` does exactly that for every kernel and storage type, so
    /// both values are honoured by the same code.
    public var upcastAttention: Bool
    public var normNumGroups: Int
    public var normEps: Float
    public var flipSinToCos: Bool
    public var freqShift: Float
    public var centerInputSample: Bool
    public var downsamplePadding: Int
    public var midBlockScaleFactor: Float
    public var timeEmbeddingDim: Int { blockOutChannels[0] * 4 }

    public init(from decoder: Decoder) throws { try self.init(ConfigReader(from: decoder)) }

    public static func load(from directory: String) throws -> UNetConfig {
        try UNetConfig(ConfigReader.read(directory + "/config.json"))
    }

    init(_ r: ConfigReader) throws {
        sampleSize = try r.int("sample_size", 64, in: 1...ConfigLimits.latentSide)
        inChannels = try r.int("in_channels", 4, in: 1...ConfigLimits.latentChannels)
        outChannels = try r.int("out_channels", 4, in: 1...ConfigLimits.latentChannels)
        blockOutChannels = try r.ints("block_out_channels", [320, 640, 1280, 1280], each: 1...ConfigLimits.channels)
        let n = blockOutChannels.count
        guard n <= ConfigLimits.levels else { throw r.fail("block_out_channels", "\(n) levels; at most \(ConfigLimits.levels) are supported") }
        layersPerBlock = try r.intOrList("layers_per_block", count: n, 2, each: 1...ConfigLimits.layers)
        downBlockTypes = try r.strings("down_block_types", ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]).map {
            guard let t = DownBlockType(rawValue: $0) else { throw r.fail("down_block_types", "unsupported block type \"\($0)\" (supported: CrossAttnDownBlock2D, DownBlock2D)") }
            return t
        }
        upBlockTypes = try r.strings("up_block_types", ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]).map {
            guard let t = UpBlockType(rawValue: $0) else { throw r.fail("up_block_types", "unsupported block type \"\($0)\" (supported: CrossAttnUpBlock2D, UpBlock2D)") }
            return t
        }
        guard downBlockTypes.count == n else { throw r.fail("down_block_types", "\(downBlockTypes.count) entries for \(n) block_out_channels") }
        guard upBlockTypes.count == n else { throw r.fail("up_block_types", "\(upBlockTypes.count) entries for \(n) block_out_channels") }
        _ = try r.expectString("mid_block_type", in: ["UNetMidBlock2DCrossAttn"], "UNetMidBlock2DCrossAttn")
        // diffusers: `num_attention_heads = num_attention_heads or attention_head_dim` (the historical naming bug).
        let headsField = r.isNull("num_attention_heads") ? "attention_head_dim" : "num_attention_heads"
        numAttentionHeads = headsField == "attention_head_dim"
            ? try r.intOrList("attention_head_dim", count: n, 8, each: 1...ConfigLimits.channels)
            : try r.intOrList("num_attention_heads", count: n, each: 1...ConfigLimits.channels)
        crossAttentionDim = try r.int("cross_attention_dim", 1280, in: 1...ConfigLimits.channels)
        useLinearProjection = try r.bool("use_linear_projection", false)
        upcastAttention = try r.bool("upcast_attention", false)
        normNumGroups = try r.int("norm_num_groups", 32, in: 1...ConfigLimits.channels)
        normEps = try r.finite("norm_eps", 1e-5, in: 0...1)
        flipSinToCos = try r.bool("flip_sin_to_cos", true)
        freqShift = try r.finite("freq_shift", 0, in: -1e6...1e6)
        centerInputSample = try r.bool("center_input_sample", false)
        downsamplePadding = try r.int("downsample_padding", 1, in: 0...1)
        midBlockScaleFactor = try r.finite("mid_block_scale_factor", 1)
        guard midBlockScaleFactor == 1 else { throw r.fail("mid_block_scale_factor", "only 1 is supported") }
        _ = try r.expectString("act_fn", in: ["silu"], "silu")
        _ = try r.expectString("time_embedding_type", in: ["positional"], "positional")
        _ = try r.expectString("resnet_time_scale_shift", in: ["default"], "default")
        _ = try r.expectString("attention_type", in: ["default"], "default")
        try r.expectInt("transformer_layers_per_block", 1)
        try r.expectInt("conv_in_kernel", 3)
        try r.expectInt("conv_out_kernel", 3)
        try r.expectBool("dual_cross_attention", false)
        try r.expectBool("resnet_skip_time_act", false)
        try r.expectBool("class_embeddings_concat", false)
        if !r.isNull("only_cross_attention") { try r.expectBool("only_cross_attention", false) }
        if !r.isNull("mid_block_only_cross_attention") { try r.expectBool("mid_block_only_cross_attention", false) }
        if (try? r.float("resnet_out_scale_factor", 1)) != 1 { throw r.fail("resnet_out_scale_factor", "only 1.0 is supported") }
        if (try? r.float("dropout", 0)) == nil { throw r.fail("dropout", "expected a number") }
        for k in ["class_embed_type", "addition_embed_type", "encoder_hid_dim", "encoder_hid_dim_type", "num_class_embeds",
                  "time_cond_proj_dim", "time_embedding_dim", "time_embedding_act_fn", "timestep_post_act",
                  "cross_attention_norm", "projection_class_embeddings_input_dim", "addition_time_embed_dim",
                  "reverse_transformer_layers_per_block"] {
            guard r.isNull(k) else { throw r.fail(k, "unsupported (only null is supported for SD 1.x/2.x)") }
        }
        for (i, c) in blockOutChannels.enumerated() {
            guard c % normNumGroups == 0 else { throw r.fail("norm_num_groups", "\(normNumGroups) does not divide block_out_channels[\(i)] = \(c)") }
            guard c % numAttentionHeads[i] == 0 else {
                throw r.fail(headsField, "\(numAttentionHeads[i]) heads do not divide block_out_channels[\(i)] = \(c) channels")
            }
        }
    }
}

/// diffusers' `AutoencoderKL` config.
public struct VAEConfig: Decodable, Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var latentChannels: Int
    public var blockOutChannels: [Int]
    public var layersPerBlock: Int
    public var normNumGroups: Int
    public var scalingFactor: Float
    public var shiftFactor: Float?
    /// Image side (diffusers' default 32 when absent).
    public var sampleSize: Int
    public var useQuantConv: Bool
    public var usePostQuantConv: Bool
    public var midBlockAddAttention: Bool

    public init(from decoder: Decoder) throws { try self.init(ConfigReader(from: decoder)) }

    public static func load(from directory: String) throws -> VAEConfig {
        try VAEConfig(ConfigReader.read(directory + "/config.json"))
    }

    init(_ r: ConfigReader) throws {
        inChannels = try r.int("in_channels", 3, in: 1...ConfigLimits.latentChannels)
        outChannels = try r.int("out_channels", 3, in: 1...ConfigLimits.latentChannels)
        guard outChannels == 3 else { throw r.fail("out_channels", "\(outChannels): only 3 (RGB images) is supported") }
        latentChannels = try r.int("latent_channels", 4, in: 1...ConfigLimits.latentChannels)
        blockOutChannels = try r.ints("block_out_channels", [64], each: 1...ConfigLimits.channels)
        guard blockOutChannels.count <= ConfigLimits.levels else {
            throw r.fail("block_out_channels", "\(blockOutChannels.count) levels; at most \(ConfigLimits.levels) are supported")
        }
        layersPerBlock = try r.int("layers_per_block", 1, in: 1...ConfigLimits.layers)
        normNumGroups = try r.int("norm_num_groups", 32, in: 1...ConfigLimits.channels)
        scalingFactor = try r.finite("scaling_factor", 0.18215, in: 1e-6...1e6)
        // diffusers: latents / scaling_factor + shift_factor before the decoder. SD 1.x/2.x have none (SD3/Flux do);
        // 0 is the same as none.
        shiftFactor = r.isNull("shift_factor") ? nil : try r.finite("shift_factor")
        if let shift = shiftFactor, shift != 0 {
            throw r.fail("shift_factor", "\(shift) is not supported (SD 1.x/2.x VAEs have null; this looks like an SD3/Flux VAE)")
        }
        sampleSize = try r.int("sample_size", 32, in: 1...ConfigLimits.imageSide)
        useQuantConv = try r.bool("use_quant_conv", true)
        usePostQuantConv = try r.bool("use_post_quant_conv", true)
        midBlockAddAttention = try r.bool("mid_block_add_attention", true)
        _ = try r.expectString("act_fn", in: ["silu"], "silu")
        let n = blockOutChannels.count
        for (k, t) in [("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")] {
            let l = try r.strings(k, Array(repeating: t, count: n))
            guard l.count == n else { throw r.fail(k, "\(l.count) entries for \(n) block_out_channels") }
            for s in l where s != t { throw r.fail(k, "unsupported block type \"\(s)\" (supported: \(t))") }
        }
        if !r.isNull("latents_mean") || !r.isNull("latents_std") {
            throw r.fail(r.isNull("latents_mean") ? "latents_std" : "latents_mean", "unsupported (only null is supported for SD 1.x/2.x)")
        }
        for c in blockOutChannels where c % normNumGroups != 0 {
            throw r.fail("norm_num_groups", "\(normNumGroups) does not divide block channel count \(c)")
        }
    }
}
