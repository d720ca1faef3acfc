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
    func callAsFunction(_ x: Tensor, tembActivated: Tensor? = nil) -> Tensor {
        var h = conv1(norm1(x, silu: true))
        if let proj = timeEmbProj, let t = tembActivated { h = Ops.addChannelBias(h, proj(t)) }
        h = conv2(norm2(h, silu: true))
        return Ops.add(convShortcut.map { $0(x) } ?? x, h)
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

    func callAsFunction(_ x: Tensor, size: (height: Int, width: Int)? = nil) -> Tensor {
        let up = size.map { Ops.upsampleNearest(x, height: $0.height, width: $0.width) } ?? Ops.upsampleNearest2x(x)
        return conv(up)
    }
}
