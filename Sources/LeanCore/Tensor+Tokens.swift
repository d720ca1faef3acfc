/// Views between 4-D feature maps and token sequences: the transformer blocks of the UNet and the VAE's attention
/// read (B, C, H, W) as (B, H·W, C) tokens in row-major (y, x) order, as `permute(0, 2, 3, 1).reshape(B, HW, C)`.
extension Tensor {
    /// (B, C, H, W) → (B, H·W, C). Zero-copy for channels-last tensors (that is their physical order); an NCHW
    /// tensor is transposed once.
    public func asTokens() -> Tensor {
        precondition(rank == 4, "asTokens needs a 4-D tensor, got \(shape)")
        let t = withLayout(.nhwc)
        return Tensor(storage: t.storage, shape: [shape[0], shape[2] * shape[3], shape[1]], dtype: dtype,
                      layout: .nchw, byteOffset: t.byteOffset)
    }

    /// (B, H·W, C) tokens → (B, C, H, W) in `layout`. Zero-copy for `.nhwc`.
    public func fromTokens(height: Int, width: Int, layout target: Layout) -> Tensor {
        precondition(rank == 3 && shape[1] == height * width, "fromTokens: \(shape) is not (B, \(height)x\(width), C)")
        let t = Tensor(storage: storage, shape: [shape[0], shape[2], height, width], dtype: dtype, layout: .nhwc,
                       byteOffset: byteOffset)
        return t.withLayout(target)
    }
}

extension Ops {
    /// Nearest-neighbour resize of a 4-D tensor to (height, width), as `F.interpolate(mode="nearest", size=...)`:
    /// source index = min(floor(dst · in/out), in − 1) with the scale in f32. Exact 2x goes to `upsampleNearest2x`.
    public static func upsampleNearest(_ x: Tensor, height oh: Int, width ow: Int) -> Tensor {
        precondition(x.rank == 4, "upsample needs a 4-D tensor, got \(x.shape)")
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        if oh == 2 * h && ow == 2 * w { return upsampleNearest2x(x) }
        let out = Tensor(shape: [n, c, oh, ow], dtype: x.dtype, layout: x.layout)
        let es = x.dtype.byteSize
        let sy = Float(h) / Float(oh), sx = Float(w) / Float(ow)
        let ys = (0..<oh).map { min(Int((Float($0) * sy).rounded(.down)), h - 1) }
        let xs = (0..<ow).map { min(Int((Float($0) * sx).rounded(.down)), w - 1) }
        if x.layout == .nhwc {
            parallelFor(n * oh, minChunk: 4) { r in
                for row in r {
                    let b = row / oh, y = row % oh
                    for xx in 0..<ow {
                        let src = x.raw + ((b * h + ys[y]) * w + xs[xx]) * c * es
                        (out.raw + ((b * oh + y) * ow + xx) * c * es).copyMemory(from: src, byteCount: c * es)
                    }
                }
            }
        } else {
            parallelFor(n * c * oh, minChunk: 16) { r in
                for row in r {
                    let plane = row / oh, y = row % oh
                    let src = x.raw + (plane * h * w + ys[y] * w) * es
                    let dst = out.raw + (plane * oh * ow + y * ow) * es
                    for xx in 0..<ow { (dst + xx * es).copyMemory(from: src + xs[xx] * es, byteCount: es) }
                }
            }
        }
        return out
    }
}
