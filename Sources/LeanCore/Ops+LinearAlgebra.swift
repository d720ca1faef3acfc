import CDNNL

/// Padding of a 2-D convolution, top/left/bottom/right: the VAE's downsampler pads (0, 1, 0, 1) before a stride-2
/// convolution, which oneDNN expresses as asymmetric padding with no copy.
public struct Padding2D: Hashable, Sendable {
    public var top, left, bottom, right: Int
    public init(top: Int, left: Int, bottom: Int, right: Int) {
        (self.top, self.left, self.bottom, self.right) = (top, left, bottom, right)
    }
    public init(_ p: Int) { self.init(top: p, left: p, bottom: p, right: p) }
}

extension Ops {
    /// The type oneDNN computes in for a storage type: bf16 natively (avx512_bf16 here), f16 through f32.
    static func computeType(_ d: DType) -> DType { d == .f16 ? .f32 : d }

    /// `t` in type `d`. A weight (parameter) keeps the converted copy as a derived copy, so the conversion
    /// happens once per residency; anything else is converted for this call.
    static func asType(_ t: Tensor, _ d: DType, cacheOnStorage: Bool) -> Tensor {
        if t.dtype == d { return t }
        guard cacheOnStorage, let parameter = t.storage.parameter else { return t.converted(to: d) }
        let key = DerivedKey(kind: .converted(d), byteOffset: t.byteOffset, count: t.count)
        if let s = parameter.derived(key) {
            return Tensor(storage: s, shape: t.shape, dtype: d, layout: t.layout)
        }
        let c = t.converted(to: d, planned: false)
        parameter.attach(key, c.storage)
        return c
    }

    /// Runs `body` with the weights' parameters pinned: no offload policy evicts them (or their derived copies)
    /// while a kernel reads them.
    static func withPinned<T>(_ weights: Tensor?..., body: () -> T) -> T {
        let pinned = weights.compactMap { $0?.storage.parameter }
        for p in pinned { p.pin() }
        defer { for p in pinned { p.unpin() } }
        return body()
    }

    /// 2-D convolution. `x` is (N, C, H, W) in either layout, `weight` (O, C, kh, kw) as in the checkpoint.
    /// The output keeps `x`'s layout and type.
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1,
                              padding: Padding2D = Padding2D(0)) -> Tensor {
        withPinned(weight, bias) { conv2dPinned(x, weight: weight, bias: bias, stride: stride, padding: padding) }
    }

    private static func conv2dPinned(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int,
                                     padding: Padding2D) -> Tensor {
        precondition(x.rank == 4 && weight.rank == 4, "conv2d needs 4-D input and weight, got \(x.shape), \(weight.shape)")
        precondition(x.shape[1] == weight.shape[1], "conv2d: input has \(x.shape[1]) channels, weight expects \(weight.shape[1])")
        let ct = computeType(x.dtype)
        let xin = asType(x, ct, cacheOnStorage: false)
        let w = asType(weight, ct, cacheOnStorage: true)
        let b = bias.map { asType($0, .f32, cacheOnStorage: true) }
        let (n, h, wd) = (x.shape[0], x.shape[2], x.shape[3])
        let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        let oh = (h + padding.top + padding.bottom - kh) / stride + 1
        let ow = (wd + padding.left + padding.right - kw) / stride + 1
        let out = Tensor(shape: [n, o, oh, ow], dtype: ct, layout: x.layout)
        let tag = x.layout == .nhwc ? dnnl_nhwc : dnnl_nchw
        let key = "conv:\(x.shape):\(o),\(kh),\(kw):\(stride):\(padding):\(ct):\(x.layout):\(bias != nil)"
        var srcMD = DNNL.md(x.shape, ct, tag: tag)
        var dstMD = DNNL.md(out.shape, ct, tag: tag)
        var biasMD = DNNL.md([o], .f32, tag: dnnl_a)
        let plainW = DNNL.md(weight.shape, ct, tag: dnnl_abcd)
        let prim = DNNL.cached(key) { engine in
            DNNL.descriptor(weights: w, any: DNNL.md(weight.shape, ct, tag: dnnl_format_tag_any)) { wmd in
                var desc = dnnl_convolution_desc_t()
                let strides: [Int64] = [Int64(stride), Int64(stride)]
                let pl: [Int64] = [Int64(padding.top), Int64(padding.left)]
                let pr: [Int64] = [Int64(padding.bottom), Int64(padding.right)]
                let status = withUnsafePointer(to: &biasMD) { bm in
                    dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct,
                                                       &srcMD, &wmd, bias == nil ? nil : bm, &dstMD, strides, pl, pr)
                }
                guard status == dnnl_success else { return nil }
                var pd: dnnl_primitive_desc_t?
                guard dnnl_primitive_desc_create(&pd, &desc, nil, engine, nil) == dnnl_success else { return nil }
                return pd
            }
        }
        let packedMD = DNNL.queryMD(prim.pd, dnnl_query_weights_md)
        let wop = DNNL.packedWeights(w, plainMD: plainW, packedMD: packedMD)
        var args = [(DNNL.argSrc, srcMD, xin.raw), (DNNL.argWeights, packedMD, wop.pointer), (DNNL.argDst, dstMD, out.raw)]
        if let b { args.append((DNNL.argBias, biasMD, b.raw)) }
        withExtendedLifetime(wop.holder) { prim.execute(args) }
        return ct == x.dtype ? out : out.converted(to: x.dtype)
    }

    /// y = x Wᵀ + b over the last axis: `x` (..., K), `weight` (N, K) as stored by torch.
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        withPinned(weight, bias) { linearPinned(x, weight: weight, bias: bias) }
    }

    private static func linearPinned(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let k = x.shape[x.rank - 1], nOut = weight.shape[0]
        precondition(weight.rank == 2 && weight.shape[1] == k, "linear: input \(x.shape) with weight \(weight.shape)")
        let m = x.count / k
        let ct = computeType(x.dtype)
        let xin = asType(x.rank == 4 ? x.withLayout(.nchw) : x, ct, cacheOnStorage: false)
        let w = asType(weight, ct, cacheOnStorage: true)
        let b = bias.map { asType($0, .f32, cacheOnStorage: true) }
        var outShape = x.shape
        outShape[outShape.count - 1] = nOut
        let out = Tensor(shape: outShape, dtype: ct)
        let key = "linear:\(m),\(k),\(nOut):\(ct):\(bias != nil)"
        var srcMD = DNNL.md([m, k], ct, strides: [k, 1])
        let plainW = DNNL.md([k, nOut], ct, strides: [1, k])
        var dstMD = DNNL.md([m, nOut], ct, strides: [nOut, 1])
        var biasMD = DNNL.md([1, nOut], .f32, strides: [nOut, 1])
        let prim = DNNL.cached(key) { engine in
            DNNL.descriptor(weights: w, any: DNNL.md([k, nOut], ct, tag: dnnl_format_tag_any)) { wmd in
                var desc = dnnl_matmul_desc_t()
                let status = withUnsafePointer(to: &biasMD) { bm in
                    dnnl_matmul_desc_init(&desc, &srcMD, &wmd, bias == nil ? nil : bm, &dstMD)
                }
                guard status == dnnl_success else { return nil }
                var pd: dnnl_primitive_desc_t?
                guard dnnl_primitive_desc_create(&pd, &desc, nil, engine, nil) == dnnl_success else { return nil }
                return pd
            }
        }
        let packedMD = DNNL.queryMD(prim.pd, dnnl_query_weights_md)
        let wop = DNNL.packedWeights(w, plainMD: plainW, packedMD: packedMD)
        var args = [(DNNL.argSrc, srcMD, xin.raw), (DNNL.argWeights, packedMD, wop.pointer), (DNNL.argDst, dstMD, out.raw)]
        if let b { args.append((DNNL.argBias, biasMD, b.raw)) }
        withExtendedLifetime(wop.holder) { prim.execute(args) }
        return ct == x.dtype ? out : out.converted(to: x.dtype)
    }

    /// Batched matrix product of raw operands described by strides: C[batch] = alpha * A[batch] · B[batch].
    /// `batch` may have several axes (batch, heads), so the reference attention reads Q, K and V straight out of
    /// (B, N, H·D) activations: Kᵀ and the head split are stride permutations, not copies.
    static func bmm(batch: [Int], m: Int, n: Int, k: Int,
                    a: UnsafeMutableRawPointer, aType: DType, aStrides: [Int],
                    b: UnsafeMutableRawPointer, bType: DType, bStrides: [Int],
                    c: UnsafeMutableRawPointer, cType: DType, cStrides: [Int], alpha: Float = 1,
                    accumulate: Bool = false) {
        let key = "bmm:\(batch),\(m),\(n),\(k):\(aType)\(aStrides):\(bType)\(bStrides):\(cType)\(cStrides):\(alpha):\(accumulate)"
        var aMD = DNNL.md(batch + [m, k], aType, strides: aStrides)
        var bMD = DNNL.md(batch + [k, n], bType, strides: bStrides)
        var cMD = DNNL.md(batch + [m, n], cType, strides: cStrides)
        let prim = DNNL.cached(key) { engine in
            var desc = dnnl_matmul_desc_t()
            DNNL.check(dnnl_matmul_desc_init(&desc, &aMD, &bMD, nil, &cMD), "bmm desc")
            var attr: dnnl_primitive_attr_t?
            DNNL.check(dnnl_primitive_attr_create(&attr), "attr")
            if alpha != 1 {
                var scale = alpha
                DNNL.check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale), "scales")
            }
            if accumulate {
                // C += A·B: the flash kernel's running output.
                var ops: dnnl_post_ops_t?
                DNNL.check(dnnl_post_ops_create(&ops), "post ops")
                DNNL.check(dnnl_post_ops_append_sum(ops, 1), "sum post op")
                DNNL.check(dnnl_primitive_attr_set_post_ops(attr, ops), "set post ops")
                dnnl_post_ops_destroy(ops)
            }
            var pd: dnnl_primitive_desc_t?
            DNNL.check(dnnl_primitive_desc_create(&pd, &desc, attr, engine, nil), "bmm pd")
            dnnl_primitive_attr_destroy(attr)
            return pd!
        }
        prim.execute([(DNNL.argSrc, aMD, a), (DNNL.argWeights, bMD, b), (DNNL.argDst, cMD, c)])
    }
}
