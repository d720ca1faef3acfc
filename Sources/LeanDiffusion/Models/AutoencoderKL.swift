#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LeanCore

/// The VAE mid-block attention: single head over the H·W tokens, group norm first, biased projections, residual.
/// Older diffusers files name the projections `query`/`key`/`value`/`proj_attn`; diffusers renames those on load,
/// and so do we (the only renaming in the loader).
struct VAEAttention {
    let groupNorm: GroupNorm
    let toQ, toK, toV, toOut: Linear
    let kernel: AttentionKernel
    let layout: Layout

    init(_ w: WeightLoader, channels c: Int, groups: Int, policy: ComputePolicy) throws {
        groupNorm = try GroupNorm(w.scoped("group_norm"), channels: c, groups: groups, eps: 1e-6)
        let legacy = !w.containsScope("to_q") && w.containsScope("query")
        toQ = try Linear(w.scoped(legacy ? "query" : "to_q"), in: c, out: c)
        toK = try Linear(w.scoped(legacy ? "key" : "to_k"), in: c, out: c)
        toV = try Linear(w.scoped(legacy ? "value" : "to_v"), in: c, out: c)
        toOut = try Linear(w.scoped(legacy ? "proj_attn" : "to_out.0"), in: c, out: c)
        kernel = policy.attention
        layout = policy.layout
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let (hgt, wid) = (x.shape[2], x.shape[3])
        let t = groupNorm(x).asTokens()
        let a = toOut(Ops.attention(q: toQ(t), k: toK(t), v: toV(t), heads: 1, kernel: kernel))
        return Ops.add(a.fromTokens(height: hgt, width: wid, layout: layout), x)
    }
}

/// `UNetMidBlock2D` of the VAE: resnet, [attention], resnet (eps 1e-6, no time embedding).
struct VAEMidBlock {
    let resnets: [ResnetBlock2D]
    let attention: VAEAttention?

    init(_ w: WeightLoader, channels c: Int, groups: Int, addAttention: Bool, policy: ComputePolicy) throws {
        resnets = try (0..<2).map {
            try ResnetBlock2D(w.scoped("resnets.\($0)"), in: c, out: c, tembChannels: nil, groups: groups, eps: 1e-6)
        }
        attention = addAttention ? try VAEAttention(w.scoped("attentions.0"), channels: c, groups: groups, policy: policy) : nil
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = resnets[0](x)
        if let a = attention { h = a(h) }
        return resnets[1](h)
    }
}

/// `DownEncoderBlock2D`: resnets, then (except the last block) a stride-2 downsampler padded (0, 1, 0, 1).
struct DownEncoderBlock2D {
    let resnets: [ResnetBlock2D]
    let downsampler: Downsample2D?

    init(_ w: WeightLoader, in inC: Int, out outC: Int, layers: Int, groups: Int, addDownsample: Bool) throws {
        resnets = try (0..<layers).map {
            try ResnetBlock2D(w.scoped("resnets.\($0)"), in: $0 == 0 ? inC : outC, out: outC, tembChannels: nil,
                              groups: groups, eps: 1e-6)
        }
        downsampler = addDownsample ? try Downsample2D(w.scoped("downsamplers.0"), channels: outC, padding: 0) : nil
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = x
        for r in resnets { h = r(h) }
        return downsampler.map { $0(h) } ?? h
    }
}

/// `UpDecoderBlock2D`: resnets, then (except the last block) nearest 2x + conv.
struct UpDecoderBlock2D {
    let resnets: [ResnetBlock2D]
    let upsampler: Upsample2D?

    init(_ w: WeightLoader, in inC: Int, out outC: Int, layers: Int, groups: Int, addUpsample: Bool) throws {
        resnets = try (0..<layers).map {
            try ResnetBlock2D(w.scoped("resnets.\($0)"), in: $0 == 0 ? inC : outC, out: outC, tembChannels: nil,
                              groups: groups, eps: 1e-6)
        }
        upsampler = addUpsample ? try Upsample2D(w.scoped("upsamplers.0"), channels: outC) : nil
    }

    /// Ownership of the activation moves down the chain (`consume`), so each block can release or overwrite its
    /// input: this is what keeps the 512x512 decode peak at about 2.5 full-size activations.
    func callAsFunction(_ x: consuming Tensor) -> Tensor {
        var h = consume x
        for r in resnets { h = r(consume h) }
        if let upsampler { return upsampler(consume h) }
        return h
    }
}

/// The VAE encoder: image (B, in, H, W) → moments (B, 2·latent, H/f, W/f) before `quant_conv`.
public struct VAEEncoder {
    let convIn: Conv2d
    let downBlocks: [DownEncoderBlock2D]
    let midBlock: VAEMidBlock
    let convNormOut: GroupNorm
    let convOut: Conv2d
    let policy: ComputePolicy

    init(_ w: WeightLoader, config c: VAEConfig, policy: ComputePolicy) throws {
        let ch = c.blockOutChannels, g = c.normNumGroups
        convIn = try Conv2d(w.scoped("conv_in"), in: c.inChannels, out: ch[0], kernel: 3, padding: Padding2D(1))
        var outC = ch[0]
        downBlocks = try ch.indices.map { i in
            let inC = outC
            outC = ch[i]
            return try DownEncoderBlock2D(w.scoped("down_blocks.\(i)"), in: inC, out: outC, layers: c.layersPerBlock,
                                          groups: g, addDownsample: i < ch.count - 1)
        }
        midBlock = try VAEMidBlock(w.scoped("mid_block"), channels: ch.last!, groups: g,
                                   addAttention: c.midBlockAddAttention, policy: policy)
        convNormOut = try GroupNorm(w.scoped("conv_norm_out"), channels: ch.last!, groups: g, eps: 1e-6)
        convOut = try Conv2d(w.scoped("conv_out"), in: ch.last!, out: 2 * c.latentChannels, kernel: 3, padding: Padding2D(1))
        self.policy = policy
    }

    /// Any layout/type in; policy type and layout out.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var h = convIn(policy.activation(x))
        for d in downBlocks { h = d(h) }
        h = midBlock(h)
        return convOut(convNormOut(h, silu: true))
    }
}

/// The VAE decoder: latents (B, latent, h, w) after `post_quant_conv` → image (B, out, h·f, w·f).
public struct VAEDecoder {
    let convIn: Conv2d
    let midBlock: VAEMidBlock
    let upBlocks: [UpDecoderBlock2D]
    let convNormOut: GroupNorm
    let convOut: Conv2d
    let policy: ComputePolicy

    init(_ w: WeightLoader, config c: VAEConfig, policy: ComputePolicy) throws {
        let rch = Array(c.blockOutChannels.reversed()), g = c.normNumGroups
        convIn = try Conv2d(w.scoped("conv_in"), in: c.latentChannels, out: rch[0], kernel: 3, padding: Padding2D(1))
        midBlock = try VAEMidBlock(w.scoped("mid_block"), channels: rch[0], groups: g,
                                   addAttention: c.midBlockAddAttention, policy: policy)
        var outC = rch[0]
        upBlocks = try rch.indices.map { i in
            let inC = outC
            outC = rch[i]
            return try UpDecoderBlock2D(w.scoped("up_blocks.\(i)"), in: inC, out: outC, layers: c.layersPerBlock + 1,
                                        groups: g, addUpsample: i < rch.count - 1)
        }
        convNormOut = try GroupNorm(w.scoped("conv_norm_out"), channels: rch.last!, groups: g, eps: 1e-6)
        convOut = try Conv2d(w.scoped("conv_out"), in: rch.last!, out: c.outChannels, kernel: 3, padding: Padding2D(1))
        self.policy = policy
    }

    /// Any layout/type in; policy type and layout out.
    public func callAsFunction(_ z: Tensor) -> Tensor {
        var h = midBlock(convIn(policy.activation(z)))
        for u in upBlocks { h = u(consume h) }
        let owned = h.hasUniqueStorage()
        return convOut(convNormOut(h, silu: true, inPlace: owned))
    }
}

/// A 1x1 convolution exposed for tiling code (`quant_conv`, `post_quant_conv`).
public struct PointwiseConv {
    let conv: Conv2d
    let policy: ComputePolicy

    init(_ w: WeightLoader, channels c: Int, policy: ComputePolicy) throws {
        conv = try Conv2d(w, in: c, out: c, kernel: 1)
        self.policy = policy
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { conv(policy.activation(x)) }
}

/// diffusers' `AutoencoderKL`.
public final class AutoencoderKL {
    public let config: VAEConfig
    public let policy: ComputePolicy
    public let encoder: VAEEncoder
    public let decoder: VAEDecoder
    /// nil when `use_quant_conv` / `use_post_quant_conv` is false.
    public let quantConv: PointwiseConv?
    public let postQuantConv: PointwiseConv?

    public init(config c: VAEConfig, weights: WeightLoader, policy: ComputePolicy = ComputePolicy()) throws {
        try policy.checkSupported()
        config = c
        self.policy = policy
        let w = weights.converting(to: policy.dtype)
        encoder = try VAEEncoder(w.scoped("encoder"), config: c, policy: policy)
        decoder = try VAEDecoder(w.scoped("decoder"), config: c, policy: policy)
        quantConv = c.useQuantConv ? try PointwiseConv(w.scoped("quant_conv"), channels: 2 * c.latentChannels, policy: policy) : nil
        postQuantConv = c.usePostQuantConv ? try PointwiseConv(w.scoped("post_quant_conv"), channels: c.latentChannels, policy: policy) : nil
    }

    /// Loads `config.json` and the weights of a `vae/` folder.
    public convenience init(directory: String, policy: ComputePolicy = ComputePolicy()) throws {
        try self.init(config: VAEConfig.load(from: directory),
                      weights: WeightLoader(componentDirectory: directory), policy: policy)
    }

    /// Latents (already divided by `scaling_factor`) → image (B, out, H, W) f32 NCHW, about [-1, 1].
    public func decode(_ latents: Tensor) -> Tensor {
        let z = postQuantConv.map { $0(latents) } ?? latents
        return decoder(z).converted(to: .f32).withLayout(.nchw)
    }

    /// Image (B, in, H, W) in [-1, 1] → the posterior's mean and log-variance, each (B, latent, h, w) f32 NCHW.
    public func encode(_ image: Tensor) -> (mean: Tensor, logvar: Tensor) {
        var m = encoder(image)
        if let q = quantConv { m = q(m) }
        return Self.splitMoments(m.converted(to: .f32).withLayout(.nchw))
    }

    /// `DiagonalGaussianDistribution`: mean, logvar = chunk(moments, 2, dim=1); logvar clamped to [-30, 20].
    static func splitMoments(_ moments: Tensor) -> (mean: Tensor, logvar: Tensor) {
        let (b, c2, h, w) = (moments.shape[0], moments.shape[1], moments.shape[2], moments.shape[3])
        let c = c2 / 2, plane = c * h * w
        let mean = Tensor(shape: [b, c, h, w]), logvar = Tensor(shape: [b, c, h, w])
        let src = moments.floatPointer(), mp = mean.floatPointer(), lp = logvar.floatPointer()
        for i in 0..<b {
            (mp + i * plane).update(from: src + i * 2 * plane, count: plane)
            for j in 0..<plane { lp[i * plane + j] = min(max(src[i * 2 * plane + plane + j], -30), 20) }
        }
        return (mean, logvar)
    }
}
