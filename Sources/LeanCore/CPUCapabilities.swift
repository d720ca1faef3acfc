import CDNNL

/// What oneDNN can run on this CPU. Its bf16 kernels, reference ones included, need AVX-512 (`avx512_core`; native
/// bf16 arithmetic with `avx512_core_bf16`): oneDNN 2.6 on an AVX2-only CPU has no bf16 inner product, matmul or
/// convolution at all, so a bf16 policy there must be refused before the first op rather than trap in it.
public enum CPUCapabilities {
    /// oneDNN's effective ISA (the CPU's, capped by `ONEDNN_MAX_CPU_ISA`).
    static var isa: UInt32 { dnnl_get_effective_cpu_isa().rawValue }

    static func has(_ level: dnnl_cpu_isa_t) -> Bool { isa & level.rawValue == level.rawValue }

    /// Whether `dtype` tensors can be computed here (f32 and f16 always: f16 weights are computed in f32).
    public static func supports(_ dtype: DType) -> Bool {
        dtype == .bf16 ? has(dnnl_cpu_isa_avx512_core) : true
    }

    /// oneDNN's name for the effective ISA ("avx2", "avx512_core_bf16", ...).
    public static var isaName: String {
        let names: [(dnnl_cpu_isa_t, String)] = [
            (dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"), (dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"),
            (dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"), (dnnl_cpu_isa_avx512_core, "avx512_core"),
            (dnnl_cpu_isa_avx2_vnni, "avx2_vnni"), (dnnl_cpu_isa_avx2, "avx2"), (dnnl_cpu_isa_avx, "avx"),
            (dnnl_cpu_isa_sse41, "sse41"),
        ]
        return names.first { has($0.0) }?.1 ?? "no SIMD"
    }
}
