/// How attention is computed; the model's attention block is the same whichever is chosen.
public enum AttentionKernel: Sendable, Hashable {
    /// Materialises the (B, H, Nq, Nk) score matrix, as diffusers' `AttnProcessor`.
    case standard
    /// The standard kernel over `headsPerSlice` heads at a time, as `enable_attention_slicing`.
    case sliced(headsPerSlice: Int)
    /// Tiles keys and values with an online softmax; never holds more than a tile of scores.
    case flash
}

extension Ops {
    /// Multi-head attention on (B, N, H·D) projections: out = softmax(q kᵀ · scale [+ causal mask]) v per head.
    public static func attention(q: Tensor, k: Tensor, v: Tensor, heads: Int, causal: Bool = false,
                                 kernel: AttentionKernel = .flash) -> Tensor {
        precondition(q.rank == 3 && k.rank == 3 && v.rank == 3, "attention takes (B, N, H*D) tensors")
        precondition(q.shape[0] == k.shape[0] && k.shape == v.shape && q.shape[2] == k.shape[2],
                     "attention shapes q \(q.shape), k \(k.shape), v \(v.shape)")
        precondition(q.shape[2] % heads == 0, "\(q.shape[2]) channels do not split into \(heads) heads")
        switch kernel {
        case .flash: return flashAttention(q: q, k: k, v: v, heads: heads, causal: causal)
        case .standard: return standardAttention(q: q, k: k, v: v, heads: heads, causal: causal, headRange: 0..<heads, into: nil)
        case .sliced(let per):
            let out = Tensor(shape: q.shape, dtype: computeType(q.dtype))
            var h = 0
            while h < heads {
                _ = standardAttention(q: q, k: k, v: v, heads: heads, causal: causal, headRange: h..<min(heads, h + max(1, per)), into: out)
                h += max(1, per)
            }
            return out.dtype == q.dtype ? out : out.converted(to: q.dtype)
        }
    }

    /// The reference form: scores through oneDNN matmul into an f32 (B, h, Nq, Nk) tensor, softmax, then P·V.
    static func standardAttention(q: Tensor, k: Tensor, v: Tensor, heads: Int, causal: Bool, headRange: Range<Int>,
                                  into target: Tensor?) -> Tensor {
        let (b, nq, c) = (q.shape[0], q.shape[1], q.shape[2])
        let nk = k.shape[1], d = c / heads, hs = headRange.count
        let ct = computeType(q.dtype)
        let (qc, kc, vc) = (asType(q, ct, cacheOnStorage: false), asType(k, ct, cacheOnStorage: false), asType(v, ct, cacheOnStorage: false))
        let scores = Tensor(shape: [b, hs, nq, nk], dtype: .f32)
        let off = headRange.lowerBound * d * ct.byteSize
        bmm(batch: [b, hs], m: nq, n: nk, k: d,
            a: qc.raw + off, aType: ct, aStrides: [nq * c, d, c, 1],
            b: kc.raw + off, bType: ct, bStrides: [nk * c, d, 1, c],
            c: scores.raw, cType: .f32, cStrides: [hs * nq * nk, nq * nk, nk, 1],
            alpha: 1 / Float(d).squareRoot())
        let sp = scores.floatPointer()
        parallelFor(b * hs * nq, minChunk: max(1, 4096 / nk)) { r in
            for row in r {
                let p = sp + row * nk
                if causal {
                    let i = row % nq
                    for j in (i + 1)..<max(i + 1, nk) { p[j] = -.infinity }
                }
                softmaxRow(p, nk)
            }
        }
        let probs = asType(scores, ct, cacheOnStorage: false)
        let out = target ?? Tensor(shape: q.shape, dtype: ct)
        bmm(batch: [b, hs], m: nq, n: d, k: nk,
            a: probs.raw, aType: ct, aStrides: [hs * nq * nk, nq * nk, nk, 1],
            b: vc.raw + off, bType: ct, bStrides: [nk * c, d, c, 1],
            c: out.raw + off, cType: ct, cStrides: [nq * c, d, c, 1])
        return target != nil || out.dtype == q.dtype ? out : out.converted(to: q.dtype)
    }

    static let flashBlock = 64

    /// Bytes of workspace one thread of the flash kernel holds for head dimension `d`.
    public static func flashWorkspaceBytes(headDim d: Int) -> Int {
        let dp = (d + 15) / 16 * 16
        return (4 * flashBlock * dp + flashBlock * flashBlock + dp) * 4
    }

    /// Memory-efficient attention: per (batch, head, 64-query block), stream 64-key tiles of K and V through an
    /// online softmax. Workspace per thread is a few tiles (tens of KB), whatever the sequence length.
    static func flashAttention(q: Tensor, k: Tensor, v: Tensor, heads: Int, causal: Bool) -> Tensor {
        let (b, nq, c) = (q.shape[0], q.shape[1], q.shape[2])
        let nk = k.shape[1], d = c / heads
        let dp = (d + 15) / 16 * 16
        let blk = flashBlock
        let qBlocks = (nq + blk - 1) / blk
        let out = Tensor(shape: q.shape, dtype: q.dtype)
        let scale = 1 / Float(d).squareRoot()
        let (qdt, kdt, vdt) = (q.dtype, k.dtype, v.dtype)
        let (qraw, kraw, vraw, oraw) = (q.raw, k.raw, v.raw, out.raw)
        parallelFor(b * heads * qBlocks) { range in
            // One tracked workspace per thread: Q, Kᵀ, V, S and O tiles plus a row buffer.
            let workspace = Storage(byteCount: flashWorkspaceBytes(headDim: d))
            let base = workspace.raw.assumingMemoryBound(to: Float.self)
            let qt = base, kt = base + blk * dp, vt = base + 2 * blk * dp   // kt holds Kᵀ: (dp, blk)
            let ot = base + 3 * blk * dp, st = base + 4 * blk * dp, row = st + blk * blk
            var mrow = [Float](repeating: 0, count: blk), lrow = mrow
            for task in range {
                let qb = task % qBlocks, bh = task / qBlocks
                let bi = bh / heads, h = bh % heads
                let q0 = qb * blk, qn = min(blk, nq - q0)
                // Load the scaled query tile, zero-padded to dp.
                qt.initialize(repeating: 0, count: blk * dp)
                for i in 0..<qn {
                    Convert.toFloat(qraw + ((bi * nq + q0 + i) * c + h * d) * qdt.byteSize, qdt, qt + i * dp, d)
                    for j in 0..<d { qt[i * dp + j] *= scale }
                }
                ot.initialize(repeating: 0, count: blk * dp)
                for i in 0..<blk { mrow[i] = -.infinity; lrow[i] = 0 }
                let kEnd = causal ? min(nk, q0 + qn) : nk
                var k0 = 0
                while k0 < kEnd {
                    let kn = min(blk, kEnd - k0)
                    // Kᵀ tile and V tile, zero-padded.
                    kt.initialize(repeating: 0, count: dp * blk)
                    vt.initialize(repeating: 0, count: blk * dp)
                    for j in 0..<kn {
                        Convert.toFloat(kraw + ((bi * nk + k0 + j) * c + h * d) * kdt.byteSize, kdt, row, d)
                        for t in 0..<d { kt[t * blk + j] = row[t] }
                        Convert.toFloat(vraw + ((bi * nk + k0 + j) * c + h * d) * vdt.byteSize, vdt, vt + j * dp, d)
                    }
                    for i in 0..<qn {
                        // S row = q_i · Kᵀ over 64 keys in four vectors.
                        var a0 = FloatV(repeating: 0), a1 = a0, a2 = a0, a3 = a0
                        let qi = qt + i * dp
                        for t in 0..<d {
                            let qv = FloatV(repeating: qi[t])
                            let kr = UnsafeRawPointer(kt + t * blk)
                            a0 = a0.addingProduct(qv, kr.load(as: FloatV.self))
                            a1 = a1.addingProduct(qv, kr.load(fromByteOffset: 64, as: FloatV.self))
                            a2 = a2.addingProduct(qv, kr.load(fromByteOffset: 128, as: FloatV.self))
                            a3 = a3.addingProduct(qv, kr.load(fromByteOffset: 192, as: FloatV.self))
                        }
                        let s = st + i * blk
                        UnsafeMutableRawPointer(s).storeBytes(of: a0, as: FloatV.self)
                        UnsafeMutableRawPointer(s).storeBytes(of: a1, toByteOffset: 64, as: FloatV.self)
                        UnsafeMutableRawPointer(s).storeBytes(of: a2, toByteOffset: 128, as: FloatV.self)
                        UnsafeMutableRawPointer(s).storeBytes(of: a3, toByteOffset: 192, as: FloatV.self)
                        let validEnd = causal ? min(kn, q0 + i - k0 + 1) : kn
                        for j in max(0, validEnd)..<blk { s[j] = -.infinity }
                        var mx = mrow[i]
                        for j in 0..<validEnd { mx = max(mx, s[j]) }
                        if mx == -.infinity { continue }
                        let correction = mrow[i] == -.infinity ? 0 : vexp(FloatV(repeating: mrow[i] - mx))[0]
                        var sum: Float = 0
                        for g in 0..<4 {
                            let sv = UnsafeRawPointer(s).load(fromByteOffset: g * 64, as: FloatV.self)
                            let e = vexp(sv - mx).replacing(with: 0, where: sv .== -.infinity)
                            UnsafeMutableRawPointer(s).storeBytes(of: e, toByteOffset: g * 64, as: FloatV.self)
                            sum += e.sum()
                        }
                        lrow[i] = lrow[i] * correction + sum
                        mrow[i] = mx
                        let o = UnsafeMutableRawPointer(ot + i * dp)
                        for g in 0..<(dp / 16) {
                            var acc = o.load(fromByteOffset: g * 64, as: FloatV.self) * correction
                            for j in 0..<validEnd {
                                acc = acc.addingProduct(FloatV(repeating: s[j]),
                                                        UnsafeRawPointer(vt + j * dp).load(fromByteOffset: g * 64, as: FloatV.self))
                            }
                            o.storeBytes(of: acc, toByteOffset: g * 64, as: FloatV.self)
                        }
                    }
                    k0 += blk
                }
                for i in 0..<qn {
                    let inv = lrow[i] > 0 ? 1 / lrow[i] : 0
                    for t in 0..<d { row[t] = ot[i * dp + t] * inv }
                    Convert.fromFloat(row, oraw + ((bi * nq + q0 + i) * c + h * d) * qdt.byteSize, qdt, d)
                }
            }
            withExtendedLifetime(workspace) {}
        }
        return out
    }
}
