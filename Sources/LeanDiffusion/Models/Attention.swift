#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LeanCore

/// diffusers' `Attention` on token sequences (B, N, C): to_q/to_k/to_v (bias only in the VAE) and `to_out.0`.
/// Keys and values come from `context` (cross-attention) or the input itself.
struct Attention {
    let toQ, toK, toV, toOut: Linear
    let heads: Int
    let kernel: AttentionKernel

    init(_ w: WeightLoader, queryDim: Int, contextDim: Int? = nil, heads: Int, qkvBias: Bool,
         kernel: AttentionKernel) throws {
        let kv = contextDim ?? queryDim
        toQ = try Linear(w.scoped("to_q"), in: queryDim, out: queryDim, bias: qkvBias)
        toK = try Linear(w.scoped("to_k"), in: kv, out: queryDim, bias: qkvBias)
        toV = try Linear(w.scoped("to_v"), in: kv, out: queryDim, bias: qkvBias)
        toOut = try Linear(w.scoped("to_out.0"), in: queryDim, out: queryDim)
        self.heads = heads
        self.kernel = kernel
    }

    func callAsFunction(_ x: Tensor, context: Tensor? = nil) -> Tensor {
        let c = context ?? x
        return toOut(Ops.attention(q: toQ(x), k: toK(c), v: toV(c), heads: heads, kernel: kernel))
    }
}

/// `FeedForward(activation_fn="geglu")`: `net.0.proj` (C → 2·inner), GEGLU, `net.2` (inner → C).
struct FeedForward {
    let proj, out: Linear

    init(_ w: WeightLoader, dim: Int, mult: Int = 4) throws {
        proj = try Linear(w.scoped("net.0.proj"), in: dim, out: 2 * dim * mult)
        out = try Linear(w.scoped("net.2"), in: dim * mult, out: dim)
    }

    func callAsFunction(_ x: Tensor) -> Tensor { out(Ops.geglu(proj(x))) }
}

/// `BasicTransformerBlock` (layer norm, eps 1e-5): self-attention, cross-attention, GEGLU feed-forward,
/// each pre-normed and residual.
struct BasicTransformerBlock {
    let norm1, norm2, norm3: LayerNorm
    let attn1, attn2: Attention
    let ff: FeedForward

    init(_ w: WeightLoader, dim: Int, heads: Int, crossAttentionDim: Int, kernel: AttentionKernel) throws {
        norm1 = try LayerNorm(w.scoped("norm1"), dim: dim, eps: 1e-5)
        attn1 = try Attention(w.scoped("attn1"), queryDim: dim, heads: heads, qkvBias: false, kernel: kernel)
        norm2 = try LayerNorm(w.scoped("norm2"), dim: dim, eps: 1e-5)
        attn2 = try Attention(w.scoped("attn2"), queryDim: dim, contextDim: crossAttentionDim, heads: heads,
                              qkvBias: false, kernel: kernel)
        norm3 = try LayerNorm(w.scoped("norm3"), dim: dim, eps: 1e-5)
        ff = try FeedForward(w.scoped("ff"), dim: dim)
    }

    func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        var h = Ops.add(x, attn1(norm1(x)))
        h = Ops.add(h, attn2(norm2(h), context: context))
        return Ops.add(h, ff(norm3(h)))
    }
}

/// `Transformer2DModel` with continuous input and one transformer block: GroupNorm (eps 1e-6) → proj_in (1x1 conv,
/// or linear on tokens with `use_linear_projection`) → block → proj_out → + input.
struct Transformer2DModel {
    enum Projection { case conv(Conv2d), linear(Linear) }
    let norm: GroupNorm
    let projIn, projOut: Projection
    let blocks: [BasicTransformerBlock]
    let layout: Layout

    init(_ w: WeightLoader, channels c: Int, heads: Int, crossAttentionDim: Int, groups: Int,
         useLinearProjection: Bool, policy: ComputePolicy) throws {
        norm = try GroupNorm(w.scoped("norm"), channels: c, groups: groups, eps: 1e-6)
        if useLinearProjection {
            projIn = .linear(try Linear(w.scoped("proj_in"), in: c, out: c))
            projOut = .linear(try Linear(w.scoped("proj_out"), in: c, out: c))
        } else {
            projIn = .conv(try Conv2d(w.scoped("proj_in"), in: c, out: c, kernel: 1))
            projOut = .conv(try Conv2d(w.scoped("proj_out"), in: c, out: c, kernel: 1))
        }
        blocks = [try BasicTransformerBlock(w.scoped("transformer_blocks.0"), dim: c, heads: heads,
                                            crossAttentionDim: crossAttentionDim, kernel: policy.attention)]
        layout = policy.layout
    }

    func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        let (hgt, wid) = (x.shape[2], x.shape[3])
        var h: Tensor
        switch projIn {
        case .conv(let p): h = p(norm(x)).asTokens()
        case .linear(let p): h = p(norm(x).asTokens())
        }
        for b in blocks { h = b(h, context: context) }
        let out: Tensor
        switch projOut {
        case .conv(let p): out = p(h.fromTokens(height: hgt, width: wid, layout: layout))
        case .linear(let p): out = p(h).fromTokens(height: hgt, width: wid, layout: layout)
        }
        return Ops.add(out, x)
    }
}
