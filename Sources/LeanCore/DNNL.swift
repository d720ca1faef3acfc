import CDNNL
import Synchronization

/// oneDNN, the CPU backend's engine for matmul and convolution (90-96% of peak here in fp32 and bf16).
///
/// Primitives are created once per shape and kept: creating one costs far more than running a small one, and a
/// denoising loop repeats the same shapes every step. Weights are reordered once into the layout the primitive
/// prefers ("pre-packed"); the packed copy hangs off the weight's storage, so it lives exactly as long as the
/// weight does and is released with it (offload depends on that).
enum DNNL {
    static let argSrc: Int32 = 1, argDst: Int32 = 17, argWeights: Int32 = 33, argBias: Int32 = 41
    static let argFrom: Int32 = 1, argTo: Int32 = 17

    final class Context: @unchecked Sendable {
        let engine: dnnl_engine_t
        let stream: dnnl_stream_t
        init() {
            var e: dnnl_engine_t?
            check(dnnl_engine_create(&e, dnnl_cpu, 0), "engine")
            var s: dnnl_stream_t?
            check(dnnl_stream_create(&s, e, dnnl_stream_default_flags.rawValue), "stream")
            engine = e!
            stream = s!
        }
    }

    static let context = Context()

    /// A created primitive with reusable memory objects whose data handles are swapped per call.
    final class Primitive: @unchecked Sendable {
        let primitive: dnnl_primitive_t
        let pd: dnnl_primitive_desc_t
        var memories: [Int32: dnnl_memory_t] = [:]
        /// Set when the primitive wants weights in a layout other than the checkpoint's.
        var packedWeightsMD: dnnl_memory_desc_t?
        let lock = Mutex<Void>(())

        init(pd: dnnl_primitive_desc_t) {
            var p: dnnl_primitive_t?
            check(dnnl_primitive_create(&p, pd), "primitive create")
            primitive = p!
            self.pd = pd
        }

        func memory(_ arg: Int32, _ md: dnnl_memory_desc_t) -> dnnl_memory_t {
            if let m = memories[arg] { return m }
            var m: dnnl_memory_t?
            var md = md
            check(dnnl_memory_create(&m, &md, context.engine, nil), "memory create")
            memories[arg] = m!
            return m!
        }

        func execute(_ args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)]) {
            lock.withLock { _ in
                var execArgs: [dnnl_exec_arg_t] = []
                for (arg, md, ptr) in args {
                    let m = memory(arg, md)
                    check(dnnl_memory_set_data_handle(m, ptr), "set handle")
                    execArgs.append(dnnl_exec_arg_t(arg: arg, memory: m))
                }
                check(dnnl_primitive_execute(primitive, context.stream, Int32(execArgs.count), execArgs), "execute")
                check(dnnl_stream_wait(context.stream), "wait")
            }
        }
    }

    static let cache = Mutex<[String: Primitive]>([:])

    static func cached(_ key: String, _ make: () -> dnnl_primitive_desc_t) -> Primitive {
        if let p = cache.withLock({ $0[key] }) { return p }
        let p = Primitive(pd: make())
        return cache.withLock { table in
            if let existing = table[key] { return existing }
            table[key] = p
            return p
        }
    }

    static var cachedPrimitiveCount: Int { cache.withLock { $0.count } }

    static func check(_ status: dnnl_status_t, _ what: String) {
        precondition(status == dnnl_success, "oneDNN \(what) failed with status \(status.rawValue)")
    }

    static func dataType(_ d: DType) -> dnnl_data_type_t {
        switch d {
        case .f32: return dnnl_f32
        case .bf16: return dnnl_bf16
        case .f16: return dnnl_f16
        }
    }

    static func md(_ dims: [Int], _ dtype: DType, strides: [Int]) -> dnnl_memory_desc_t {
        var d = dnnl_memory_desc_t()
        let dd = dims.map(Int64.init), ss = strides.map(Int64.init)
        check(dnnl_memory_desc_init_by_strides(&d, Int32(dims.count), dd, dataType(dtype), ss), "md strides")
        return d
    }

    static func md(_ dims: [Int], _ dtype: DType, tag: dnnl_format_tag_t) -> dnnl_memory_desc_t {
        var d = dnnl_memory_desc_t()
        check(dnnl_memory_desc_init_by_tag(&d, Int32(dims.count), dims.map(Int64.init), dataType(dtype), tag), "md tag")
        return d
    }

    static func queryMD(_ pd: dnnl_primitive_desc_t, _ what: dnnl_query_t) -> dnnl_memory_desc_t {
        dnnl_primitive_desc_query_md(pd, what, 0)!.pointee
    }

    /// The weights in the primitive's preferred layout, reordered once per (weight storage, layout).
    static func packedWeights(_ weight: Tensor, plainMD: dnnl_memory_desc_t, packedMD: dnnl_memory_desc_t,
                              key: String) -> UnsafeMutableRawPointer {
        var plain = plainMD, packed = packedMD
        // Same layout: use the weight's bytes, unless they stream through a spill file, where a derived copy is
        // what gets spilled (the plain bytes would be re-read and re-converted from the checkpoint every step).
        if dnnl_memory_desc_equal(&plain, &packed) != 0 && weight.storage.spillFile == nil { return weight.raw }
        let attachKey = "dnnl:\(key):\(weight.byteOffset)"
        if let s = weight.storage.attachment(attachKey) as? Storage { return s.raw }
        let size = dnnl_memory_desc_get_size(&packed)
        let dst = Storage(byteCount: Int(size))
        let eng = context.engine
        var rpd: dnnl_primitive_desc_t?
        check(dnnl_reorder_primitive_desc_create(&rpd, &plain, eng, &packed, eng, nil), "reorder pd")
        let reorder = Primitive(pd: rpd!)
        reorder.execute([(argFrom, plain, weight.raw), (argTo, packed, dst.raw)])
        weight.storage.attach(attachKey, dst)
        return dst.raw
    }
}

/// Internal side tables on storage (packed weight copies), released with it.
extension Storage {
    /// A derived copy, if present. On an evictable storage a lookup counts as a use (the kernel is about to read
    /// the derived copy instead of `raw`), so a streaming policy does not evict it mid-op.
    func attachment(_ key: String) -> AnyObject? {
        let found = attachments.withLock { $0[key] }
        if found != nil, let observer { observer.touched(self) }
        return found
    }

    /// Attaches a derived copy; with `releasesPlainWhenDerived` the plain bytes are then evicted (read back on demand).
    func attach(_ key: String, _ value: AnyObject) {
        attachments.withLock { $0[key] = value }
        if releasesPlainWhenDerived { evict(keepingDerived: true) }
    }
}
