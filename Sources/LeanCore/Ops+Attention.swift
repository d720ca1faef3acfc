/// How attention is computed; the model's attention block is the same whichever is chosen.
public enum AttentionKernel: Sendable, Hashable {
    /// Materialises the (B, H, Nq, Nk) score matrix, as diffusers' `AttnProcessor`.
    case standard
    /// The standard kernel over `headsPerSlice` heads at a time, as `enable_attention_slicing`: 1 is diffusers'
    /// "max", 0 is its "auto" (half of each layer's heads), any other value that many heads.
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
        case .flash:
            if q.shape[0] * heads * q.shape[1] * k.shape[1] >= RuntimeContext.current.settings.flashGEMMThreshold {
                return flashAttentionGEMM(q: q, k: k, v: v, heads: heads, causal: causal)
            }
            return flashAttention(q: q, k: k, v: v, heads: heads, causal: causal)
        case .standard: return standardAttention(q: q, k: k, v: v, heads: heads, causal: causal, headRange: 0..<heads, into: nil)
        case .sliced(let requested):
            let per = requested > 0 ? requested : max(1, heads / 2)
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

    /// Bytes of score tile the GEMM flash kernel keeps (f32 scores plus, for half types, the probabilities).
    public static let flashTileBudget = 8 << 20

    /// Flash attention on oneDNN tiles: for a block of R queries (all batches and heads at once), stream key blocks
    /// of up to 1024 through S = QKᵀ (a batched matmul), an online-softmax pass over S's rows that rescales the
    /// running output, and O += P·V (a batched matmul accumulating into O). The score matrix never exists beyond one
    /// R x 1024 tile per head (8 MB at most), whatever the sequence length; the arithmetic runs at matmul speed.
    static func flashAttentionGEMM(q: Tensor, k: Tensor, v: Tensor, heads: Int, causal: Bool) -> Tensor {
        let (b, nq, c) = (q.shape[0], q.shape[1], q.shape[2])
        let nk = k.shape[1], d = c / heads, bh = b * heads
        let ct = computeType(q.dtype)
        let es = ct.byteSize
        let (qc, kc, vc) = (asType(q, ct, cacheOnStorage: false), asType(k, ct, cacheOnStorage: false),
                            asType(v, ct, cacheOnStorage: false))
        let kbMax = min(nk, 1024)
        let perRow = kbMax * (4 + (ct == .f32 ? 0 : es))
        let rMax = max(16, min(256, (flashTileBudget / max(1, bh * perRow)) / 16 * 16))
        let scores = Tensor(shape: [bh, rMax, kbMax], dtype: .f32)
        let probs = ct == .f32 ? scores : Tensor(shape: [bh, rMax, kbMax], dtype: ct)
        let acc = Tensor(shape: [bh, rMax, d], dtype: .f32)
        let state = Tensor(shape: [2, bh * rMax], dtype: .f32)   // running max and sum per row
        let out = Tensor(shape: q.shape, dtype: q.dtype)
        let scale = 1 / Float(d).squareRoot()
        let (sp, op, mp) = (scores.floatPointer(), acc.floatPointer(), state.floatPointer())
        let lp = mp + bh * rMax
        let pRaw = probs.raw
        var q0 = 0
        while q0 < nq {
            let r = min(rMax, nq - q0)
            acc.raw.initializeMemory(as: Float.self, repeating: 0, count: bh * rMax * d)
            for i in 0..<(bh * rMax) { mp[i] = -.infinity; lp[i] = 0 }
            let kEnd = causal ? min(nk, q0 + r) : nk
            var k0 = 0
            while k0 < kEnd {
                let kb = min(kbMax, kEnd - k0)
                bmm(batch: [b, heads], m: r, n: kb, k: d,
                    a: qc.raw + q0 * c * es, aType: ct, aStrides: [nq * c, d, c, 1],
                    b: kc.raw + k0 * c * es, bType: ct, bStrides: [nk * c, d, 1, c],
                    c: sp, cType: .f32, cStrides: [heads * rMax * kbMax, rMax * kbMax, kbMax, 1], alpha: scale)
                parallelFor(bh * r, minChunk: max(1, 2048 / kb)) { rows in
                    for row in rows {
                        let head = row / r, i = row % r
                        let slot = head * rMax + i
                        let s = sp + slot * kbMax
                        let valid = causal ? min(kb, q0 + i - k0 + 1) : kb
                        if valid < kb {
                            for j in max(0, valid)..<kb { s[j] = -.infinity }
                        }
                        var mv = FloatV(repeating: -.infinity)
                        var j = 0
                        while j + 16 <= valid {
                            mv = vmax(mv, UnsafeRawPointer(s + j).loadUnaligned(as: FloatV.self))
                            j += 16
                        }
                        var mx = mp[slot]
                        for lane in 0..<16 where mv[lane] > mx { mx = mv[lane] }
                        while j < valid { mx = max(mx, s[j]); j += 1 }
                        let corr: Float = mp[slot] == -.infinity ? 0 : sexp(mp[slot] - mx)
                        // p = exp(s - max), in place (f32) or into the half-type P tile.
                        var sum = FloatV()
                        j = 0
                        let base = mx == -.infinity ? 0 : mx
                        while j < kb {
                            let n = min(16, kb - j)
                            var x = FloatV(repeating: -.infinity)
                            if n == 16 { x = UnsafeRawPointer(s + j).loadUnaligned(as: FloatV.self) } else {
                                for t in 0..<n { x[t] = s[j + t] }
                            }
                            let e = vexp(x - base)
                            sum += e
                            if n == 16 { UnsafeMutableRawPointer(s + j).storeBytes(of: e, as: FloatV.self) } else {
                                for t in 0..<n { s[j + t] = e[t] }
                            }
                            j += 16
                        }
                        var total: Float = 0
                        for lane in 0..<16 { total += sum[lane] }
                        if ct != .f32 { Convert.fromFloat(s, pRaw + slot * kbMax * es, ct, kb) }
                        lp[slot] = lp[slot] * corr + total
                        mp[slot] = mx
                        if corr != 1 {
                            let o = op + slot * d
                            for t in 0..<d { o[t] *= corr }
                        }
                    }
                }
                bmm(batch: [b, heads], m: r, n: d, k: kb,
                    a: pRaw, aType: ct, aStrides: [heads * rMax * kbMax, rMax * kbMax, kbMax, 1],
                    b: vc.raw + k0 * c * es, bType: ct, bStrides: [nk * c, d, c, 1],
                    c: op, cType: .f32, cStrides: [heads * rMax * d, rMax * d, d, 1], accumulate: true)
                k0 += kb
            }
            let oes = q.dtype.byteSize
            parallelFor(bh * r, minChunk: 64) { rows in
                let row = UnsafeMutablePointer<Float>.allocate(capacity: d)
                defer { row.deallocate() }
                for rr in rows {
                    let head = rr / r, i = rr % r
                    let slot = head * rMax + i
                    let inv = lp[slot] > 0 ? 1 / lp[slot] : 0
                    for t in 0..<d { row[t] = op[slot * d + t] * inv }
                    let (bi, h) = (head / heads, head % heads)
                    Convert.fromFloat(row, out.raw + ((bi * nq + q0 + i) * c + h * d) * oes, q.dtype, d)
                }
            }
            q0 += r
        }
        withExtendedLifetime((scores, probs, acc, state)) {}
        return out
    }

    static let flashBlock = 64

    /// Query blocks one flash task handles; the head's K and V are converted once per task.
    static let flashBlocksPerTask = 16

    /// Bytes of workspace one thread of the flash kernel holds: the head's Kᵀ and V in f32 (linear in the key
    /// count, converted once per task rather than once per tile), Q, O and S tiles, and per-row softmax state.
    public static func flashWorkspaceBytes(headDim d: Int, keys nk: Int) -> Int {
        let dp = (d + 15) / 16 * 16
        let nkp = (nk + flashBlock - 1) / flashBlock * flashBlock
        return (2 * nkp * dp + 2 * flashBlock * dp + flashBlock * flashBlock + 3 * flashBlock + dp) * 4
    }

    /// Memory-efficient attention: per (batch, head, 64-query block), stream 64-key tiles of K and V through an
    /// online softmax. The score matrix never exists beyond one 64 x 64 tile; workspace per thread is linear in the
    /// key count (the head's K and V in f32, 1.5 MB at 4096 keys and head dim 40).
    ///
    /// The inner products run on 4-row x 32-key register tiles (eight accumulators), so each K load feeds four
    /// FMAs; P·V runs on 4-row x 16-channel tiles, so each V load feeds four FMAs.
    static func flashAttention(q: Tensor, k: Tensor, v: Tensor, heads: Int, causal: Bool) -> Tensor {
        let (b, nq, c) = (q.shape[0], q.shape[1], q.shape[2])
        let nk = k.shape[1], d = c / heads
        let dp = (d + 15) / 16 * 16
        let blk = flashBlock
        let qBlocks = (nq + blk - 1) / blk
        let chunks = (qBlocks + flashBlocksPerTask - 1) / flashBlocksPerTask
        let nkp = (nk + blk - 1) / blk * blk
        let out = Tensor(shape: q.shape, dtype: q.dtype)
        let scale = 1 / Float(d).squareRoot()
        let (qdt, kdt, vdt) = (q.dtype, k.dtype, v.dtype)
        let (qraw, kraw, vraw, oraw) = (q.raw, k.raw, v.raw, out.raw)
        parallelFor(b * heads * chunks) { range in
            let workspace = Storage(byteCount: flashWorkspaceBytes(headDim: d, keys: nk))
            let base = workspace.raw.assumingMemoryBound(to: Float.self)
            let ktAll = base, vtAll = base + nkp * dp          // Kᵀ: (dp, nkp); V: (nkp, dp)
            let qt = vtAll + nkp * dp, ot = qt + blk * dp, st = ot + blk * dp
            let mrow = st + blk * blk, lrow = mrow + blk, corr = lrow + blk, row = corr + blk
            var loadedHead = -1
            for task in range {
                let chunk = task % chunks, bh = task / chunks
                let bi = bh / heads, h = bh % heads
                if loadedHead != bh {
                    // This head's keys (transposed) and values in f32, zero-padded to whole tiles.
                    ktAll.initialize(repeating: 0, count: nkp * dp)
                    vtAll.initialize(repeating: 0, count: nkp * dp)
                    for j in 0..<nk {
                        Convert.toFloat(kraw + ((bi * nk + j) * c + h * d) * kdt.byteSize, kdt, row, d)
                        for t in 0..<d { ktAll[t * nkp + j] = row[t] }
                        Convert.toFloat(vraw + ((bi * nk + j) * c + h * d) * vdt.byteSize, vdt, vtAll + j * dp, d)
                    }
                    loadedHead = bh
                }
              for qb in (chunk * flashBlocksPerTask)..<min(qBlocks, (chunk + 1) * flashBlocksPerTask) {
                let q0 = qb * blk, qn = min(blk, nq - q0)
                let rows = (qn + 3) & ~3
                // The scaled query tile, zero-padded to (rows, dp).
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
                    let kt = ktAll + k0, vt = vtAll + k0 * dp
                    // S = Q Kᵀ on 4 x 32 register tiles.
                    let kVecs = (kn + 15) / 16
                    var i0 = 0
                    while i0 < rows {
                        var j0 = 0
                        while j0 < kVecs * 16 {
                            var a00 = FloatV(), a01 = FloatV(), a10 = FloatV(), a11 = FloatV()
                            var a20 = FloatV(), a21 = FloatV(), a30 = FloatV(), a31 = FloatV()
                            let q0p = qt + i0 * dp, q1p = q0p + dp, q2p = q1p + dp, q3p = q2p + dp
                            for t in 0..<d {
                                let kr = UnsafeRawPointer(kt + t * nkp + j0)
                                let k0v = kr.load(as: FloatV.self), k1v = kr.load(fromByteOffset: 64, as: FloatV.self)
                                let x0 = FloatV(repeating: q0p[t]), x1 = FloatV(repeating: q1p[t])
                                let x2 = FloatV(repeating: q2p[t]), x3 = FloatV(repeating: q3p[t])
                                a00 = a00.addingProduct(x0, k0v); a01 = a01.addingProduct(x0, k1v)
                                a10 = a10.addingProduct(x1, k0v); a11 = a11.addingProduct(x1, k1v)
                                a20 = a20.addingProduct(x2, k0v); a21 = a21.addingProduct(x2, k1v)
                                a30 = a30.addingProduct(x3, k0v); a31 = a31.addingProduct(x3, k1v)
                            }
                            let sp = UnsafeMutableRawPointer(st + i0 * blk + j0)
                            sp.storeBytes(of: a00, as: FloatV.self); sp.storeBytes(of: a01, toByteOffset: 64, as: FloatV.self)
                            sp.storeBytes(of: a10, toByteOffset: blk * 4, as: FloatV.self)
                            sp.storeBytes(of: a11, toByteOffset: blk * 4 + 64, as: FloatV.self)
                            sp.storeBytes(of: a20, toByteOffset: blk * 8, as: FloatV.self)
                            sp.storeBytes(of: a21, toByteOffset: blk * 8 + 64, as: FloatV.self)
                            sp.storeBytes(of: a30, toByteOffset: blk * 12, as: FloatV.self)
                            sp.storeBytes(of: a31, toByteOffset: blk * 12 + 64, as: FloatV.self)
                            j0 += 32
                        }
                        i0 += 4
                    }
                    // Online softmax per row: mask, running max, exponentials, running sum, O rescale factor.
                    for i in 0..<rows {
                        let validEnd = causal ? min(kn, q0 + i - k0 + 1) : kn
                        let s = UnsafeMutableRawPointer(st + i * blk)
                        if validEnd <= 0 {
                            for g in 0..<4 { s.storeBytes(of: FloatV(), toByteOffset: g * 64, as: FloatV.self) }
                            corr[i] = 1
                            continue
                        }
                        if validEnd < blk {
                            for j in validEnd..<blk { st[i * blk + j] = -.infinity }
                        }
                        var mv = FloatV(repeating: -.infinity)
                        for g in 0..<4 { mv = vmax(mv, s.load(fromByteOffset: g * 64, as: FloatV.self)) }
                        var mx = mrow[i]
                        for lane in 0..<16 where mv[lane] > mx { mx = mv[lane] }
                        let c = mrow[i] == -.infinity ? 0 : vexp(FloatV(repeating: mrow[i] - mx))[0]
                        var sum = FloatV()
                        for g in 0..<4 {
                            // Masked scores are -inf, and vexp(-inf) is exactly 0.
                            let e = vexp(s.load(fromByteOffset: g * 64, as: FloatV.self) - mx)
                            s.storeBytes(of: e, toByteOffset: g * 64, as: FloatV.self)
                            sum += e
                        }
                        var total: Float = 0
                        for lane in 0..<16 { total += sum[lane] }
                        lrow[i] = lrow[i] * c + total
                        mrow[i] = mx
                        corr[i] = c
                    }
                    // O = O * corr + P V on 4 x 16 register tiles.
                    i0 = 0
                    while i0 < rows {
                        let c0 = corr[i0], c1 = corr[i0 + 1], c2 = corr[i0 + 2], c3 = corr[i0 + 3]
                        let p0 = st + i0 * blk, p1 = p0 + blk, p2 = p1 + blk, p3 = p2 + blk
                        for g in 0..<(dp / 16) {
                            let o = UnsafeMutableRawPointer(ot + i0 * dp + g * 16)
                            var o0 = o.load(as: FloatV.self) * c0
                            var o1 = o.load(fromByteOffset: dp * 4, as: FloatV.self) * c1
                            var o2 = o.load(fromByteOffset: dp * 8, as: FloatV.self) * c2
                            var o3 = o.load(fromByteOffset: dp * 12, as: FloatV.self) * c3
                            for j in 0..<kn {
                                let vv = UnsafeRawPointer(vt + j * dp + g * 16).load(as: FloatV.self)
                                o0 = o0.addingProduct(FloatV(repeating: p0[j]), vv)
                                o1 = o1.addingProduct(FloatV(repeating: p1[j]), vv)
                                o2 = o2.addingProduct(FloatV(repeating: p2[j]), vv)
                                o3 = o3.addingProduct(FloatV(repeating: p3[j]), vv)
                            }
                            o.storeBytes(of: o0, as: FloatV.self)
                            o.storeBytes(of: o1, toByteOffset: dp * 4, as: FloatV.self)
                            o.storeBytes(of: o2, toByteOffset: dp * 8, as: FloatV.self)
                            o.storeBytes(of: o3, toByteOffset: dp * 12, as: FloatV.self)
                        }
                        i0 += 4
                    }
                    k0 += blk
                }
                for i in 0..<qn {
                    let inv = lrow[i] > 0 ? 1 / lrow[i] : 0
                    for t in 0..<d { row[t] = ot[i * dp + t] * inv }
                    Convert.fromFloat(row, oraw + ((bi * nq + q0 + i) * c + h * d) * qdt.byteSize, qdt, d)
                }
              }
            }
            withExtendedLifetime(workspace) {}
        }
        return out
    }
}
