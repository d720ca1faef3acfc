#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LeanCore

/// `CLIPAttention`: q/k/v/out projections with bias, causal multi-head attention.
struct CLIPAttention {
    let qProj, kProj, vProj, outProj: Linear
    let heads: Int
    let kernel: AttentionKernel

    init(_ w: WeightLoader, config c: CLIPTextConfig, policy: ComputePolicy) throws {
        let d = c.hiddenSize
        qProj = try Linear(w.scoped("q_proj"), in: d, out: d)
        kProj = try Linear(w.scoped("k_proj"), in: d, out: d)
        vProj = try Linear(w.scoped("v_proj"), in: d, out: d)
        outProj = try Linear(w.scoped("out_proj"), in: d, out: d)
        heads = c.numAttentionHeads
        kernel = policy.attention
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let a = Ops.attention(q: qProj(x), k: kProj(x), v: vProj(x), heads: heads, causal: true, kernel: kernel)
        return outProj(a)
    }
}

/// `CLIPMLP`: fc1 → activation → fc2.
struct CLIPMLP {
    let fc1, fc2: Linear
    let act: CLIPTextConfig.Activation

    init(_ w: WeightLoader, config c: CLIPTextConfig) throws {
        fc1 = try Linear(w.scoped("fc1"), in: c.hiddenSize, out: c.intermediateSize)
        fc2 = try Linear(w.scoped("fc2"), in: c.intermediateSize, out: c.hiddenSize)
        act = c.hiddenAct
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = fc1(x)
        switch act {
        case .quickGelu: return fc2(Ops.quickGelu(h))
        case .gelu: return fc2(Ops.gelu(h))
        case .geluTanh: return fc2(Ops.geluTanh(h))
        }
    }
}

/// `CLIPEncoderLayer`, pre-LN.
struct CLIPEncoderLayer {
    let layerNorm1, layerNorm2: LayerNorm
    let selfAttn: CLIPAttention
    let mlp: CLIPMLP

    init(_ w: WeightLoader, config c: CLIPTextConfig, policy: ComputePolicy) throws {
        layerNorm1 = try LayerNorm(w.scoped("layer_norm1"), dim: c.hiddenSize, eps: c.layerNormEps)
        selfAttn = try CLIPAttention(w.scoped("self_attn"), config: c, policy: policy)
        layerNorm2 = try LayerNorm(w.scoped("layer_norm2"), dim: c.hiddenSize, eps: c.layerNormEps)
        mlp = try CLIPMLP(w.scoped("mlp"), config: c)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = Ops.add(x, selfAttn(layerNorm1(x)))
        return Ops.add(h, mlp(layerNorm2(h)))
    }
}

/// `CLIPTextEmbeddings`: token embedding + learned position embedding.
struct CLIPTextEmbeddings {
    let tokenEmbedding, positionEmbedding: Tensor

    init(_ w: WeightLoader, config c: CLIPTextConfig) throws {
        tokenEmbedding = try w.tensor("token_embedding.weight", shape: [c.vocabSize, c.hiddenSize])
        positionEmbedding = try w.tensor("position_embedding.weight", shape: [c.maxPositionEmbeddings, c.hiddenSize])
    }

    func callAsFunction(_ ids: [[Int32]]) -> Tensor {
        let b = ids.count, n = ids[0].count, d = tokenEmbedding.shape[1]
        precondition(ids.allSatisfy { $0.count == n }, "all prompts in a batch must have the same length")
        precondition(n <= positionEmbedding.shape[0], "\(n) tokens exceed \(positionEmbedding.shape[0]) positions")
        let tok = Ops.embedding(ids.flatMap { $0 }, table: tokenEmbedding).reshaped([b, n, d])
        let pos = Ops.embedding((0..<b).flatMap { _ in Array(0..<Int32(n)) }, table: positionEmbedding).reshaped([b, n, d])
        return Ops.add(tok, pos)
    }
}

/// transformers' `CLIPTextModel` (the text tower of SD 1.x/2.x). Checkpoints store its keys under `text_model.`
/// (SD checkpoints, older transformers) or at the root (transformers 5); the model scopes into `text_model` only
/// when the file has such keys.
public final class CLIPTextModel {
    public let config: CLIPTextConfig
    public let policy: ComputePolicy
    let embeddings: CLIPTextEmbeddings
    let layers: [CLIPEncoderLayer]
    let finalLayerNorm: LayerNorm

    public init(config: CLIPTextConfig, weights: WeightLoader, policy: ComputePolicy = ComputePolicy()) throws {
        try policy.checkSupported()
        self.config = config
        self.policy = policy
        var w = weights.converting(to: policy.dtype)
        if w.containsScope("text_model") { w = w.scoped("text_model") }
        embeddings = try CLIPTextEmbeddings(w.scoped("embeddings"), config: config)
        let enc = w.scoped("encoder.layers")
        layers = try (0..<config.numHiddenLayers).map {
            try CLIPEncoderLayer(enc.scoped("\($0)"), config: config, policy: policy)
        }
        finalLayerNorm = try LayerNorm(w.scoped("final_layer_norm"), dim: config.hiddenSize, eps: config.layerNormEps)
    }

    /// Loads `config.json` and the weights of a `text_encoder/` folder.
    public convenience init(directory: String, policy: ComputePolicy = ComputePolicy()) throws {
        try self.init(config: CLIPTextConfig.load(from: directory),
                      weights: WeightLoader(componentDirectory: directory), policy: policy)
    }

    /// `last_hidden_state` (B, N, hidden) in f32. With `clipSkip` k > 0, the hidden state after layer L − k passed
    /// through the final layer norm, as diffusers' `encode_prompt(clip_skip: k)`.
    public func callAsFunction(_ ids: [[Int32]], clipSkip: Int = 0) -> Tensor {
        precondition(clipSkip >= 0 && clipSkip < layers.count, "clipSkip \(clipSkip) out of range for \(layers.count) layers")
        var h = embeddings(ids)
        for layer in layers.prefix(layers.count - clipSkip) { h = layer(h) }
        return finalLayerNorm(h).converted(to: .f32)
    }
}
