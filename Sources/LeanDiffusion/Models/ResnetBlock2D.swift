#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LeanCore

/// diffusers' `ResnetBlock2D` (`time_embedding_norm="default"`, output scale 1):
/// silu(norm1(x)) → conv1 [+ time_emb_proj(silu(temb))] → silu(norm2) → conv2, plus the (1x1-projected) input.
struct ResnetBlock2D {
    let norm1, norm2: GroupNorm
    let conv1, conv2: Conv2d
    let timeEmbProj: Linear?
    let convShortcut: Conv2d?

    init(_ w: WeightLoader, in inC: Int, out outC: Int, tembChannels: Int?, groups: Int, eps: Float) throws {
        norm1 = try GroupNorm(w.scoped("norm1"), channels: inC, groups: groups, eps: eps)
        conv1 = try Conv2d(w.scoped("conv1"), in: inC, out: outC, kernel: 3, padding: Padding2D(1))
        timeEmbProj = try tembChannels.map { try Linear(w.scoped("time_emb_proj"), in: $0, out: outC) }
        norm2 = try GroupNorm(w.scoped("norm2"), channels: outC, groups: groups, eps: eps)
        conv2 = try Conv2d(w.scoped("conv2"), in: outC, out: outC, kernel: 3, padding: Padding2D(1))
        convShortcut = inC == outC ? nil : try Conv2d(w.scoped("conv_shortcut"), in: inC, out: outC, kernel: 1)
    }

    /// `tembActivated` is silu(temb), shared by every block of a forward pass.
    /// Memory: `h` is this block's own temporary, so norm2 and the residual add overwrite it. With a projected
    /// shortcut, the shortcut is taken first and, when the caller handed over its only reference to `x`
    /// (`block(consume h)`), norm1 overwrites `x` too. At 512x512 the VAE decoder's first full-size block
    /// (256 -> 128 channels) sets the decode peak: 2.5 of its input's size alive instead of 5.
    func callAsFunction(_ x: consuming Tensor, tembActivated: Tensor? = nil) -> Tensor {
        guard let convShortcut else {
            return finish(conv1(norm1(x, silu: true)), residual: x, tembActivated: tembActivated)
        }
        let shortcut = convShortcut(x)
        let owned = x.hasUniqueStorage()
        let normed = norm1(x, silu: true, inPlace: owned)
        _ = consume x
        return finish(conv1(consume normed), residual: shortcut, tembActivated: tembActivated)
    }

    private func finish(_ conv1Out: consuming Tensor, residual: Tensor, tembActivated: Tensor?) -> Tensor {
        var h = consume conv1Out
        if let proj = timeEmbProj, let t = tembActivated { h = Ops.addChannelBias(h, proj(t)) }
        h = conv2(norm2(h, silu: true, inPlace: true))
        return Ops.add(residual, h, into: h)
    }
}

/// `Downsample2D(use_conv=True)`: 3x3 stride-2 conv, key `conv`. With `padding == 0` (the VAE encoder) the input
/// is first padded by (0, 1, 0, 1), expressed here as asymmetric conv padding.
struct Downsample2D {
    let conv: Conv2d

    init(_ w: WeightLoader, channels c: Int, padding: Int) throws {
        let pad = padding == 0 ? Padding2D(top: 0, left: 0, bottom: 1, right: 1) : Padding2D(padding)
        conv = try Conv2d(w.scoped("conv"), in: c, out: c, kernel: 3, stride: 2, padding: pad)
    }

    func callAsFunction(_ x: Tensor) -> Tensor { conv(x) }
}

/// `Upsample2D(use_conv=True)`: nearest 2x (or to an explicit size), then a 3x3 conv, key `conv`.
struct Upsample2D {
    let conv: Conv2d

    init(_ w: WeightLoader, channels c: Int) throws {
        conv = try Conv2d(w.scoped("conv"), in: c, out: c, kernel: 3, padding: Padding2D(1))
    }

    /// Consuming: the input (a quarter of the upsampled size) is released before the conv when the caller hands
    /// it over (`upsampler(consume h)`).
    func callAsFunction(_ x: consuming Tensor, size: (height: Int, width: Int)? = nil) -> Tensor {
        let up: Tensor
        if let size { up = Ops.upsampleNearest(x, height: size.height, width: size.width) } else { up = Ops.upsampleNearest2x(x) }
        _ = consume x
        return conv(up)
    }
}
