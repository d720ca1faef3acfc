#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Ops {
    /// Nearest-neighbour 2x upsampling of a 4-D tensor, in its own layout. Elements are moved, never converted.
    public static func upsampleNearest2x(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4, "upsample needs a 4-D tensor, got \(x.shape)")
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let out = Tensor(shape: [n, c, 2 * h, 2 * w], dtype: x.dtype, layout: x.layout)
        let es = x.dtype.byteSize
        if x.layout == .nhwc {
            // Each source pixel's channel row is copied to four destination pixels.
            parallelFor(n * h, minChunk: 4) { r in
                for nh in r {
                    let b = nh / h, y = nh % h
                    for xx in 0..<w {
                        let src = x.raw + ((b * h + y) * w + xx) * c * es
                        for dy in 0..<2 {
                            for dx in 0..<2 {
                                let dst = out.raw + ((b * 2 * h + 2 * y + dy) * 2 * w + 2 * xx + dx) * c * es
                                dst.copyMemory(from: src, byteCount: c * es)
                            }
                        }
                    }
                }
            }
        } else {
            parallelFor(n * c * h, minChunk: 16) { r in
                for row in r {
                    let plane = row / h, y = row % h
                    let src = x.raw + (plane * h * w + y * w) * es
                    let d0 = out.raw + (plane * 4 * h * w + 2 * y * 2 * w) * es
                    if es == 4 {
                        let s = src.assumingMemoryBound(to: UInt32.self), d = d0.assumingMemoryBound(to: UInt32.self)
                        for i in 0..<w { d[2 * i] = s[i]; d[2 * i + 1] = s[i] }
                    } else {
                        let s = src.assumingMemoryBound(to: UInt16.self), d = d0.assumingMemoryBound(to: UInt16.self)
                        for i in 0..<w { d[2 * i] = s[i]; d[2 * i + 1] = s[i] }
                    }
                    (d0 + 2 * w * es).copyMemory(from: d0, byteCount: 2 * w * es)
                }
            }
        }
        return out
    }

    /// Concatenation along a logical axis. All inputs share dtype; 4-D inputs are brought to the first's layout.
    public static func concat(_ tensors: [Tensor], axis: Int) -> Tensor {
        let first = tensors[0]
        let ts = tensors.map { t -> Tensor in
            precondition(t.dtype == first.dtype && t.rank == first.rank, "concat of \(t) with \(first)")
            return t.rank == 4 ? t.withLayout(first.layout) : t
        }
        var shape = first.shape
        shape[axis] = ts.map { $0.shape[axis] }.reduce(0, +)
        let out = Tensor(shape: shape, dtype: first.dtype, layout: first.layout)
        // Physical axis: channels-last moves the logical channel axis innermost.
        let physical: [Int]
        var physAxis = axis
        if first.rank == 4 && first.layout == .nhwc {
            physical = [shape[0], shape[2], shape[3], shape[1]]
            physAxis = [0, 3, 1, 2][axis]
        } else {
            physical = shape
        }
        let outer = physical[..<physAxis].reduce(1, *)
        let inner = physical[(physAxis + 1)...].reduce(1, *)
        let es = first.dtype.byteSize
        let outRow = physical[physAxis] * inner * es
        var offset = 0
        for t in ts {
            let len = t.shape[axis] * inner * es
            let dstBase = out.raw + offset
            parallelFor(outer, minChunk: max(1, 65536 / max(len, 1))) { r in
                for o in r { (dstBase + o * outRow).copyMemory(from: t.raw + o * len, byteCount: len) }
            }
            offset += len
        }
        return out
    }

    /// Rows of `table` (V, D) for each id: the token and position embeddings.
    public static func embedding(_ ids: [Int32], table: Tensor) -> Tensor {
        let d = table.shape[1], es = table.dtype.byteSize
        let out = Tensor(shape: [ids.count, d], dtype: table.dtype)
        // Row by row through the storage: an evicted (offloaded) table is read a row at a time from its file.
        table.storage.parameter?.pin()
        defer { table.storage.parameter?.unpin() }
        for (i, id) in ids.enumerated() {
            precondition(id >= 0 && Int(id) < table.shape[0], "token id \(id) outside vocabulary of \(table.shape[0])")
            table.storage.copyBytes(at: table.byteOffset + Int(id) * d * es,
                                    into: UnsafeMutableRawBufferPointer(start: out.raw + i * d * es, count: d * es))
        }
        return out
    }

    /// diffusers' `get_timestep_embedding`, in f32 with torch's operation order.
    public static func timestepEmbedding(_ timesteps: [Float], dim: Int, flipSinToCos: Bool,
                                         downscaleFreqShift: Float, scale: Float = 1, maxPeriod: Float = 10000) -> Tensor {
        let half = dim / 2
        let logPeriod = Float(-log(Double(maxPeriod)))
        var freqs = [Float](repeating: 0, count: half)
        // The exponent in f32 as torch forms it; exp itself in double, rounded once, which agrees with torch's
        // vectorised exp on all but a few ulp-boundary cases.
        for i in 0..<half { freqs[i] = Float(exp(Double(logPeriod * Float(i) / (Float(half) - downscaleFreqShift)))) }
        var out = [Float](repeating: 0, count: timesteps.count * dim)
        for (b, t) in timesteps.enumerated() {
            for i in 0..<half {
                let arg = scale * (t * freqs[i])
                let (s, c) = (sinf(arg), cosf(arg))
                out[b * dim + i] = flipSinToCos ? c : s
                out[b * dim + half + i] = flipSinToCos ? s : c
            }
        }
        return Tensor(out, shape: [timesteps.count, dim])
    }
}
