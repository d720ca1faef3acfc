#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LeanCore

/// `TimestepEmbedding`: linear_1 → SiLU → linear_2.
struct TimestepEmbedding {
    let linear1, linear2: Linear

    init(_ w: WeightLoader, in inC: Int, out outC: Int) throws {
        linear1 = try Linear(w.scoped("linear_1"), in: inC, out: outC)
        linear2 = try Linear(w.scoped("linear_2"), in: outC, out: outC)
    }

    func callAsFunction(_ x: Tensor) -> Tensor { linear2(Ops.silu(linear1(x))) }
}

/// `CrossAttnDownBlock2D` / `DownBlock2D`: resnets (each followed by a transformer in the cross-attention
/// variant), then an optional downsampler. Every resnet/transformer output and the downsampler's are skips.
struct UNetDownBlock {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let downsampler: Downsample2D?

    init(_ w: WeightLoader, type: UNetConfig.DownBlockType, in inC: Int, out outC: Int, layers: Int, heads: Int,
         addDownsample: Bool, config c: UNetConfig, policy: ComputePolicy) throws {
        resnets = try (0..<layers).map {
            try ResnetBlock2D(w.scoped("resnets.\($0)"), in: $0 == 0 ? inC : outC, out: outC,
                              tembChannels: c.timeEmbeddingDim, groups: c.normNumGroups, eps: c.normEps)
        }
        attentions = type == .plain ? [] : try (0..<layers).map {
            try Transformer2DModel(w.scoped("attentions.\($0)"), channels: outC, heads: heads,
                                   crossAttentionDim: c.crossAttentionDim, groups: c.normNumGroups,
                                   useLinearProjection: c.useLinearProjection, policy: policy)
        }
        downsampler = addDownsample ? try Downsample2D(w.scoped("downsamplers.0"), channels: outC, padding: c.downsamplePadding) : nil
    }

    func callAsFunction(_ x: Tensor, temb: Tensor, context: Tensor, skips: inout [Tensor]) -> Tensor {
        var h = x
        for (i, r) in resnets.enumerated() {
            h = r(h, tembActivated: temb)
            if !attentions.isEmpty { h = attentions[i](h, context: context) }
            skips.append(h)
        }
        if let d = downsampler {
            h = d(h)
            skips.append(h)
        }
        return h
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, transformer, resnet.
struct UNetMidBlock2DCrossAttn {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]

    init(_ w: WeightLoader, channels ch: Int, heads: Int, config c: UNetConfig, policy: ComputePolicy) throws {
        resnets = try (0..<2).map {
            try ResnetBlock2D(w.scoped("resnets.\($0)"), in: ch, out: ch, tembChannels: c.timeEmbeddingDim,
                              groups: c.normNumGroups, eps: c.normEps)
        }
        attentions = [try Transformer2DModel(w.scoped("attentions.0"), channels: ch, heads: heads,
                                             crossAttentionDim: c.crossAttentionDim, groups: c.normNumGroups,
                                             useLinearProjection: c.useLinearProjection, policy: policy)]
    }

    func callAsFunction(_ x: Tensor, temb: Tensor, context: Tensor) -> Tensor {
        var h = resnets[0](x, tembActivated: temb)
        h = attentions[0](h, context: context)
        return resnets[1](h, tembActivated: temb)
    }
}

/// `CrossAttnUpBlock2D` / `UpBlock2D`: each resnet takes the running state concatenated (on channels) with the
/// latest skip; an optional upsampler follows, sized to the next skip when the latent is not a multiple of 2^k.
struct UNetUpBlock {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let upsampler: Upsample2D?

    init(_ w: WeightLoader, type: UNetConfig.UpBlockType, in inC: Int, prevOut: Int, out outC: Int, layers: Int,
         heads: Int, addUpsample: Bool, config c: UNetConfig, policy: ComputePolicy) throws {
        resnets = try (0..<layers).map { j in
            let skipC = j == layers - 1 ? inC : outC
            let resIn = j == 0 ? prevOut : outC
            return try ResnetBlock2D(w.scoped("resnets.\(j)"), in: resIn + skipC, out: outC,
                                     tembChannels: c.timeEmbeddingDim, groups: c.normNumGroups, eps: c.normEps)
        }
        attentions = type == .plain ? [] : try (0..<layers).map {
            try Transformer2DModel(w.scoped("attentions.\($0)"), channels: outC, heads: heads,
                                   crossAttentionDim: c.crossAttentionDim, groups: c.normNumGroups,
                                   useLinearProjection: c.useLinearProjection, policy: policy)
        }
        upsampler = addUpsample ? try Upsample2D(w.scoped("upsamplers.0"), channels: outC) : nil
    }

    func callAsFunction(_ x: Tensor, temb: Tensor, context: Tensor, skips: inout [Tensor]) -> Tensor {
        var h = x
        for (i, r) in resnets.enumerated() {
            h = r(Ops.concat([h, skips.removeLast()], axis: 1), tembActivated: temb)
            if !attentions.isEmpty { h = attentions[i](h, context: context) }
        }
        if let u = upsampler {
            h = u(h, size: skips.last.map { ($0.shape[2], $0.shape[3]) })
        }
        return h
    }
}

/// diffusers' `UNet2DConditionModel` for SD 1.x/2.x.
public final class UNet2DConditionModel {
    public let config: UNetConfig
    public let policy: ComputePolicy
    let convIn: Conv2d
    let timeEmbedding: TimestepEmbedding
    let downBlocks: [UNetDownBlock]
    let midBlock: UNetMidBlock2DCrossAttn
    let upBlocks: [UNetUpBlock]
    let convNormOut: GroupNorm
    let convOut: Conv2d

    public init(config c: UNetConfig, weights: WeightLoader, policy: ComputePolicy = ComputePolicy()) throws {
        try policy.checkSupported()
        config = c
        self.policy = policy
        let w = weights.converting(to: policy.dtype)
        let ch = c.blockOutChannels, n = ch.count
        convIn = try Conv2d(w.scoped("conv_in"), in: c.inChannels, out: ch[0], kernel: 3, padding: Padding2D(1))
        timeEmbedding = try TimestepEmbedding(w.scoped("time_embedding"), in: ch[0], out: c.timeEmbeddingDim)
        var down: [UNetDownBlock] = []
        var outC = ch[0]
        for i in 0..<n {
            let inC = outC
            outC = ch[i]
            down.append(try UNetDownBlock(w.scoped("down_blocks.\(i)"), type: c.downBlockTypes[i], in: inC, out: outC,
                                          layers: c.layersPerBlock[i], heads: c.numAttentionHeads[i],
                                          addDownsample: i < n - 1, config: c, policy: policy))
        }
        downBlocks = down
        midBlock = try UNetMidBlock2DCrossAttn(w.scoped("mid_block"), channels: ch[n - 1],
                                               heads: c.numAttentionHeads[n - 1], config: c, policy: policy)
        let rch = Array(ch.reversed()), rheads = Array(c.numAttentionHeads.reversed())
        let rlayers = Array(c.layersPerBlock.reversed())
        var up: [UNetUpBlock] = []
        outC = rch[0]
        for i in 0..<n {
            let prevOut = outC
            outC = rch[i]
            let inC = rch[min(i + 1, n - 1)]
            up.append(try UNetUpBlock(w.scoped("up_blocks.\(i)"), type: c.upBlockTypes[i], in: inC, prevOut: prevOut,
                                      out: outC, layers: rlayers[i] + 1, heads: rheads[i], addUpsample: i < n - 1,
                                      config: c, policy: policy))
        }
        upBlocks = up
        convNormOut = try GroupNorm(w.scoped("conv_norm_out"), channels: ch[0], groups: c.normNumGroups, eps: c.normEps)
        convOut = try Conv2d(w.scoped("conv_out"), in: ch[0], out: c.outChannels, kernel: 3, padding: Padding2D(1))
    }

    /// Loads `config.json` and the weights of a `unet/` folder.
    public convenience init(directory: String, policy: ComputePolicy = ComputePolicy()) throws {
        try self.init(config: UNetConfig.load(from: directory),
                      weights: WeightLoader(componentDirectory: directory), policy: policy)
    }

    /// Predicted noise (or v) for `sample` (B, in_channels, h, w) in any layout/type at `timestep` (broadcast to the
    /// batch), conditioned on `encoderHiddenStates` (B, N, cross_attention_dim). Returns (B, out_channels, h, w)
    /// f32 NCHW.
    public func callAsFunction(_ sample: Tensor, timestep: Float, encoderHiddenStates: Tensor) -> Tensor {
        precondition(sample.rank == 4 && sample.shape[1] == config.inChannels, "UNet sample \(sample.shape)")
        precondition(encoderHiddenStates.rank == 3 && encoderHiddenStates.shape[0] == sample.shape[0]
                     && encoderHiddenStates.shape[2] == config.crossAttentionDim,
                     "encoder hidden states \(encoderHiddenStates.shape) for sample \(sample.shape)")
        let b = sample.shape[0]
        var x = policy.activation(sample)
        if config.centerInputSample {
            let ones = Tensor([Float](repeating: 1, count: x.count), shape: x.shape, dtype: x.dtype, layout: x.layout)
            x = Ops.axpby(x, 2, ones, -1)
        }
        let context = encoderHiddenStates.converted(to: policy.dtype)
        let tProj = Ops.timestepEmbedding(Array(repeating: timestep, count: b), dim: config.blockOutChannels[0],
                                          flipSinToCos: config.flipSinToCos, downscaleFreqShift: config.freqShift)
        let temb = Ops.silu(timeEmbedding(tProj.converted(to: policy.dtype)))

        var h = convIn(x)
        var skips = [h]
        for d in downBlocks { h = d(h, temb: temb, context: context, skips: &skips) }
        h = midBlock(h, temb: temb, context: context)
        for u in upBlocks { h = u(h, temb: temb, context: context, skips: &skips) }
        h = convOut(convNormOut(h, silu: true))
        return h.converted(to: .f32).withLayout(.nchw)
    }
}
