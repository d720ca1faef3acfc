import LeanCore

/// VAE slicing and tiling (diffusers' `AutoencoderKL.use_slicing` / `use_tiling`), as policies around the model:
/// the VAE itself is unchanged, these functions only decide what to feed it.
///
/// - slicing: the batch goes through the VAE one image at a time (the same pixels as unsliced).
/// - tiling: an image larger than the tile is decoded (encoded) in overlapping tiles blended together, exactly as
///   diffusers' `tiled_decode` / `_tiled_encode` (autoencoder_kl.py, diffusers 0.42.1). Each tile has its own
///   GroupNorm statistics, so the result differs from the untiled one; the blend hides the seams.
///   Slicing applies per image, tiling within each.
public struct VAEOptions: Sendable {
    public var slicing = false
    public var tiling = false
    /// Tile side in pixels (diffusers' `tile_sample_min_size`); the latent tile is this / the VAE's scale factor.
    /// nil (the default) takes the VAE config's `sample_size`, as diffusers' `AutoencoderKL` does (512 for SD 1.x,
    /// 768 for SD 2.x 768-v).
    public var tileSampleSize: Int?
    /// diffusers' `tile_overlap_factor`.
    public var tileOverlap: Float = 0.25

    public init(slicing: Bool = false, tiling: Bool = false, tileSampleSize: Int? = nil, tileOverlap: Float = 0.25) {
        self.slicing = slicing
        self.tiling = tiling
        self.tileSampleSize = tileSampleSize
        self.tileOverlap = tileOverlap
    }

    /// The tile side in pixels used with a VAE of this config: `tileSampleSize`, else the config's `sample_size`.
    public func sampleTile(for config: VAEConfig) -> Int { tileSampleSize ?? config.sampleSize }

    /// The latent tile side: diffusers' `int(sample_size / 2 ** (len(block_out_channels) - 1))`.
    public func latentTile(for config: VAEConfig) -> Int { sampleTile(for: config) >> (config.blockOutChannels.count - 1) }
}

extension AutoencoderKL {
    /// The spatial factor between image and latent (8 for SD).
    public var scaleFactor: Int { 1 << (config.blockOutChannels.count - 1) }

    /// Latents (already divided by `scaling_factor`) → image (B, out, H, W) f32 NCHW, with slicing and tiling.
    public func decode(_ latents: Tensor, options: VAEOptions) -> Tensor {
        precondition(latents.rank == 4, "latents must be (B, C, h, w), got \(latents.shape)")
        if options.slicing && latents.shape[0] > 1 {
            return Ops.concat((0..<latents.shape[0]).map { decodeSlice(latents.slice(batch: $0..<($0 + 1)), options) },
                              axis: 0)
        }
        return decodeSlice(latents, options)
    }

    /// Image (B, in, H, W) in [-1, 1] → the posterior's mean and (clamped) log-variance, f32 NCHW, with slicing and
    /// tiling.
    public func encode(_ image: Tensor, options: VAEOptions) -> (mean: Tensor, logvar: Tensor) {
        precondition(image.rank == 4, "image must be (B, C, H, W), got \(image.shape)")
        if options.slicing && image.shape[0] > 1 {
            let parts = (0..<image.shape[0]).map { encodeSlice(image.slice(batch: $0..<($0 + 1)), options) }
            return (Ops.concat(parts.map(\.mean), axis: 0), Ops.concat(parts.map(\.logvar), axis: 0))
        }
        return encodeSlice(image, options)
    }

    /// diffusers' `_decode`: tiled only when the latent exceeds the latent tile in either dimension (strict `>`).
    func decodeSlice(_ z: Tensor, _ options: VAEOptions) -> Tensor {
        guard options.tiling else { return decode(z) }
        let g = TileGeometry(options, config: config)
        guard z.shape[2] > g.latentTile || z.shape[3] > g.latentTile else { return decode(z) }
        // tiled_decode: latent tiles of `latentTile` at stride int(latentTile·(1−overlap)); blend and crop in pixels.
        let overlap = Int(Double(g.latentTile) * (1 - g.overlap))
        let blend = Int(Double(g.sampleTile) * g.overlap)
        return Self.tiled(z.converted(to: .f32).withLayout(.nchw), tile: g.latentTile, stride: overlap,
                          blendExtent: blend, rowLimit: g.sampleTile - blend,
                          outputSize: { $0 * self.scaleFactor }) { tile in
            let t = self.postQuantConv.map { $0(tile) } ?? tile
            return self.decoder(t).converted(to: .f32).withLayout(.nchw)
        }
    }

    /// diffusers' `_encode`: tiled only when the image exceeds the sample tile in either dimension (strict `>`).
    func encodeSlice(_ x: Tensor, _ options: VAEOptions) -> (mean: Tensor, logvar: Tensor) {
        guard options.tiling else { return encode(x) }
        let g = TileGeometry(options, config: config)
        guard x.shape[2] > g.sampleTile || x.shape[3] > g.sampleTile else { return encode(x) }
        // _tiled_encode: image tiles of `sampleTile` at stride int(sampleTile·(1−overlap)); blend and crop in latents.
        let overlap = Int(Double(g.sampleTile) * (1 - g.overlap))
        let blend = Int(Double(g.latentTile) * g.overlap)
        let downsamplers = config.blockOutChannels.count - 1
        let moments = Self.tiled(x.converted(to: .f32).withLayout(.nchw), tile: g.sampleTile, stride: overlap,
                                 blendExtent: blend, rowLimit: g.latentTile - blend,
                                 outputSize: { s in (0..<downsamplers).reduce(s) { v, _ in v / 2 } }) { tile in
            var m = self.encoder(tile)
            if let q = self.quantConv { m = q(m) }
            return m.converted(to: .f32).withLayout(.nchw)
        }
        return Self.splitMoments(moments)
    }

    /// The loop shared by `tiled_decode` and `_tiled_encode`. `x` is f32 NCHW; tiles `x[:, :, i:i+tile, j:j+tile]`
    /// for i, j in range(0, H/W, stride) go through `run` (→ f32 NCHW). Tile (i, j) then gets `blend_v` with tile
    /// (i−1, j) and `blend_h` with tile (i, j−1), both already blended themselves (diffusers blends in place, in
    /// raster order), and its top-left `rowLimit`² is written to the output. Only the previous row of tiles is kept:
    /// the blends read nothing older, so this is diffusers' arithmetic without holding every tile.
    static func tiled(_ x: Tensor, tile: Int, stride: Int, blendExtent: Int, rowLimit: Int,
                      outputSize: (Int) -> Int, run: (Tensor) -> Tensor) -> Tensor {
        precondition(stride > 0, "tile overlap leaves no stride (tile \(tile))")
        let (h, w) = (x.shape[2], x.shape[3])
        let rowStarts = Array(Swift.stride(from: 0, to: h, by: stride))
        let colStarts = Array(Swift.stride(from: 0, to: w, by: stride))
        // The output is the concatenation of the crops: min(rowLimit, tile output size) per tile.
        let outH = rowStarts.map { min(rowLimit, outputSize(min(tile, h - $0))) }.reduce(0, +)
        let outW = colStarts.map { min(rowLimit, outputSize(min(tile, w - $0))) }.reduce(0, +)
        var out: Tensor? = nil
        var previous: [Tensor] = []
        var y0 = 0
        for i in rowStarts {
            var row: [Tensor] = []
            var x0 = 0
            for j in colStarts {
                let t = run(crop(x, rows: i..<min(i + tile, h), cols: j..<min(j + tile, w)))
                precondition(t.shape[2] == outputSize(min(tile, h - i)) && t.shape[3] == outputSize(min(tile, w - j)),
                             "tile output \(t.shape) not of the expected size")
                if !previous.isEmpty { blendV(previous[row.count], t, blendExtent) }
                if let left = row.last { blendH(left, t, blendExtent) }
                if out == nil { out = Tensor(shape: [t.shape[0], t.shape[1], outH, outW]) }
                let ch = min(rowLimit, t.shape[2]), cw = min(rowLimit, t.shape[3])
                paste(t, rows: ch, cols: cw, into: out!, y: y0, x: x0)
                x0 += cw
                row.append(t)
            }
            y0 += min(rowLimit, row[0].shape[2])
            previous = row
        }
        return out!
    }

    /// `x[:, :, rows, cols]` of an f32 NCHW tensor, copied.
    static func crop(_ x: Tensor, rows: Range<Int>, cols: Range<Int>) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        if rows == 0..<h && cols == 0..<w { return x }
        let out = Tensor(shape: [n, c, rows.count, cols.count])
        let src = x.floatPointer(), dst = out.floatPointer()
        for p in 0..<(n * c) {
            for (k, r) in rows.enumerated() {
                (dst + (p * rows.count + k) * cols.count).update(from: src + (p * h + r) * w + cols.lowerBound,
                                                                 count: cols.count)
            }
        }
        return out
    }

    /// `out[:, :, y:y+rows, x:x+cols] = t[:, :, :rows, :cols]` (f32 NCHW).
    static func paste(_ t: Tensor, rows: Int, cols: Int, into out: Tensor, y: Int, x: Int) {
        let (th, tw) = (t.shape[2], t.shape[3])
        let (oh, ow) = (out.shape[2], out.shape[3])
        let src = t.floatPointer(), dst = out.floatPointer()
        for p in 0..<(t.shape[0] * t.shape[1]) {
            for r in 0..<rows {
                (dst + (p * oh + y + r) * ow + x).update(from: src + (p * th + r) * tw, count: cols)
            }
        }
    }

    /// diffusers' `blend_v`, in place on `b`: rows y < E become a[-E+y]·(1 − y/E) + b[y]·(y/E).
    /// The weights are computed in double and used in f32, as torch does for an f32 tensor times a Python float.
    static func blendV(_ a: Tensor, _ b: Tensor, _ extent: Int) {
        let e = min(a.shape[2], b.shape[2], extent)
        let (ah, bh, w) = (a.shape[2], b.shape[2], b.shape[3])
        precondition(a.shape[3] == w && a.shape[0] * a.shape[1] == b.shape[0] * b.shape[1], "blend_v of \(a) and \(b)")
        let ap = a.floatPointer(), bp = b.floatPointer()
        for y in 0..<e {
            let wb = Float(Double(y) / Double(e)), wa = Float(1 - Double(y) / Double(e))
            for p in 0..<(b.shape[0] * b.shape[1]) {
                let arow = ap + (p * ah + ah - e + y) * w, brow = bp + (p * bh + y) * w
                for k in 0..<w { brow[k] = arow[k] * wa + brow[k] * wb }
            }
        }
    }

    /// diffusers' `blend_h`, in place on `b`: columns x < E become a[..., -E+x]·(1 − x/E) + b[..., x]·(x/E).
    static func blendH(_ a: Tensor, _ b: Tensor, _ extent: Int) {
        let e = min(a.shape[3], b.shape[3], extent)
        let (aw, bw, h) = (a.shape[3], b.shape[3], b.shape[2])
        precondition(a.shape[2] == h && a.shape[0] * a.shape[1] == b.shape[0] * b.shape[1], "blend_h of \(a) and \(b)")
        let ap = a.floatPointer(), bp = b.floatPointer()
        for x in 0..<e {
            let wb = Float(Double(x) / Double(e)), wa = Float(1 - Double(x) / Double(e))
            for r in 0..<(b.shape[0] * b.shape[1] * h) {
                bp[r * bw + x] = ap[r * aw + aw - e + x] * wa + bp[r * bw + x] * wb
            }
        }
    }
}

/// diffusers' tile sizes: `tile_sample_min_size` in pixels (the option, else the config's `sample_size`),
/// `tile_latent_min_size` = int(that / the scale factor). A size from the config need not be a multiple of the
/// factor (diffusers takes it as it is); the request validation refuses explicit sizes that are not.
struct TileGeometry {
    let sampleTile: Int
    let latentTile: Int
    let overlap: Double

    init(_ o: VAEOptions, config: VAEConfig) {
        sampleTile = o.sampleTile(for: config)
        latentTile = o.latentTile(for: config)
        precondition(sampleTile > 0 && latentTile > 0, "tile size \(sampleTile) gives no latent tile")
        precondition(o.tileOverlap >= 0 && o.tileOverlap < 1, "tile overlap \(o.tileOverlap) must be in [0, 1)")
        overlap = Double(o.tileOverlap)
    }
}
