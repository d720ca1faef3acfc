import CDNNL
import Synchronization

/// oneDNN, the CPU backend's engine for matmul and convolution (90-96% of peak here in fp32 and bf16).
///
/// Each `RuntimeContext` has its own engine, stream and primitive cache (`PrimitiveCache`). Primitives are created
/// once per shape and kept while used: creating one costs far more than running a small one, and a denoising loop
/// repeats the same shapes every step. Weights are reordered once into the layout a primitive prefers ("packed");
/// the packed copy is a derived copy of the weight's `Parameter`, keyed by that layout, so it lives exactly as long
/// as the weight's residency does (offload depends on that) and a new input shape reuses it.
enum DNNL {
    static let argSrc: Int32 = 1, argDst: Int32 = 17, argWeights: Int32 = 33, argBias: Int32 = 41
    static let argFrom: Int32 = 1, argTo: Int32 = 17

    /// An engine and its stream. oneDNN CPU streams are not for concurrent use: executions are serialised.
    final class Backend: @unchecked Sendable {  // the handles are used under `lock` only (or are immutable)
        let engine: dnnl_engine_t
        let stream: dnnl_stream_t
        let lock = Mutex<Void>(())
        init() {
            var e: dnnl_engine_t?
            check(dnnl_engine_create(&e, dnnl_cpu, 0), "engine")
            var s: dnnl_stream_t?
            check(dnnl_stream_create(&s, e, dnnl_stream_default_flags.rawValue), "stream")
            engine = e!
            stream = s!
        }
        deinit {
            dnnl_stream_destroy(stream)
            dnnl_engine_destroy(engine)
        }
    }

    /// A created primitive with reusable memory objects whose data handles are swapped per call. Destroyed (with
    /// its descriptor and memories) when the cache lets it go and no call holds it.
    final class Primitive: @unchecked Sendable {  // `memories` is touched only under the backend's lock
        let primitive: dnnl_primitive_t
        let pd: dnnl_primitive_desc_t
        let backend: Backend
        private var memories: [Int32: dnnl_memory_t] = [:]

        init(pd: dnnl_primitive_desc_t, backend: Backend) {
            var p: dnnl_primitive_t?
            check(dnnl_primitive_create(&p, pd), "primitive create")
            primitive = p!
            self.pd = pd
            self.backend = backend
        }

        deinit {
            for m in memories.values { dnnl_memory_destroy(m) }
            dnnl_primitive_destroy(primitive)
            dnnl_primitive_desc_destroy(pd)
        }

        private func memory(_ arg: Int32, _ md: dnnl_memory_desc_t) -> dnnl_memory_t {
            if let m = memories[arg] { return m }
            var m: dnnl_memory_t?
            var md = md
            check(dnnl_memory_create(&m, &md, backend.engine, nil), "memory create")
            memories[arg] = m!
            return m!
        }

        func execute(_ args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)]) {
            backend.lock.withLock { _ in
                var execArgs: [dnnl_exec_arg_t] = []
                for (arg, md, ptr) in args {
                    let m = memory(arg, md)
                    check(dnnl_memory_set_data_handle(m, ptr), "set handle")
                    execArgs.append(dnnl_exec_arg_t(arg: arg, memory: m))
                }
                check(dnnl_primitive_execute(primitive, backend.stream, Int32(execArgs.count), execArgs), "execute")
                check(dnnl_stream_wait(backend.stream), "wait")
            }
        }
    }

    /// The current context's primitive for `key`, created by `make` (a descriptor on the context's engine).
    static func cached(_ key: String, _ make: (dnnl_engine_t) -> dnnl_primitive_desc_t) -> Primitive {
        RuntimeContext.current.primitives.primitive(key, make)
    }

    static var engine: dnnl_engine_t { RuntimeContext.current.primitives.backend.engine }

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

    /// Weight bytes a primitive reads, kept alive for the call.
    struct WeightOperand {
        let pointer: UnsafeMutableRawPointer
        let holder: Storage?
    }

    /// The weights in the primitive's preferred layout: the weight's own bytes when that is their layout, else its
    /// packed copy for that layout, made once per (view, layout). A weight that is not a parameter (an activation
    /// passed as weights) is reordered into a temporary for this call only.
    static func packedWeights(_ weight: Tensor, plainMD: dnnl_memory_desc_t, packedMD: dnnl_memory_desc_t) -> WeightOperand {
        var plain = plainMD, packed = packedMD
        let parameter = weight.storage.parameter
        // Same layout: use the weight's bytes, unless they stream through a spill file, where a derived copy is
        // what gets spilled (the plain bytes would be re-read and re-converted from the checkpoint every step).
        if dnnl_memory_desc_equal(&plain, &packed) != 0 && parameter?.spillFile == nil {
            parameter?.notePlainLayout(PackedLayout(md: plainMD), byteOffset: weight.byteOffset)
            return WeightOperand(pointer: weight.raw, holder: nil)
        }
        let key = DerivedKey(kind: .packed(PackedLayout(md: packedMD)), byteOffset: weight.byteOffset, count: weight.count)
        if let parameter, let s = parameter.derived(key) { return WeightOperand(pointer: s.raw, holder: s) }
        let size = dnnl_memory_desc_get_size(&packed)
        let dst = Storage(byteCount: Int(size), planned: false)
        let backend = RuntimeContext.current.primitives.backend
        var rpd: dnnl_primitive_desc_t?
        check(dnnl_reorder_primitive_desc_create(&rpd, &plain, backend.engine, &packed, backend.engine, nil), "reorder pd")
        let reorder = Primitive(pd: rpd!, backend: backend)
        reorder.execute([(argFrom, plain, weight.raw), (argTo, packed, dst.raw)])
        parameter?.attach(key, dst)
        return WeightOperand(pointer: dst.raw, holder: dst)
    }

    /// A primitive descriptor for a weighted op (`make` builds it for a weights descriptor, nil if oneDNN refuses
    /// it). The layouts `weights` already has (packed copies, or its plain layout when a kernel read that) are
    /// tried first, so a new input shape (a VAE tile at the edge, another image size) reuses a copy instead of
    /// adding one. A candidate served only by a reference (unoptimised) implementation is passed over for oneDNN's
    /// own choice (`any`): measured on the tiny VAE, brgconv packs 64-channel 3x3 weights in 64-wide output blocks
    /// at an 8x8 latent but only serves 32-wide blocks at 6x14 (the 64-wide layout there is "ref:any"), so those 8
    /// weights hold two copies, one per kernel family, whatever the number of sizes.
    static func descriptor(weights: Tensor, any: dnnl_memory_desc_t,
                           _ make: (inout dnnl_memory_desc_t) -> dnnl_primitive_desc_t?) -> dnnl_primitive_desc_t {
        let existing = weights.storage.parameter?.packedLayouts(byteOffset: weights.byteOffset).map(\.md) ?? []
        for var md in existing {
            guard let pd = make(&md) else { continue }
            if !isReference(pd) { return pd }
            dnnl_primitive_desc_destroy(pd)
        }
        var md = any
        guard let pd = make(&md) else {
            preconditionFailure("oneDNN has no implementation for a weighted op with \(weights.shape) weights")
        }
        return pd
    }

    /// Whether oneDNN serves a descriptor with a reference implementation ("ref:...").
    static func isReference(_ pd: dnnl_primitive_desc_t) -> Bool {
        var name: UnsafePointer<CChar>?
        guard dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) == dnnl_success, let name else {
            return false
        }
        return String(cString: name).hasPrefix("ref")
    }
}

/// A bounded cache of oneDNN primitives, least recently used evicted first; one per `RuntimeContext`.
final class PrimitiveCache: @unchecked Sendable {  // all state under `state`
    let backend = DNNL.Backend()

    private struct State {
        var table: [String: (primitive: DNNL.Primitive, lastUse: UInt64)] = [:]
        var tick: UInt64 = 0
        var capacity: Int
        var evictions = 0
    }
    private let state: Mutex<State>

    init(capacity: Int) { state = Mutex(State(capacity: max(1, capacity))) }

    var count: Int { state.withLock { $0.table.count } }
    var evictions: Int { state.withLock { $0.evictions } }
    var capacity: Int {
        get { state.withLock { $0.capacity } }
        set {
            let dropped = state.withLock { s -> [DNNL.Primitive] in
                s.capacity = max(1, newValue)
                return Self.trim(&s)
            }
            _ = dropped  // destroyed here, outside the lock
        }
    }

    func primitive(_ key: String, _ make: (dnnl_engine_t) -> dnnl_primitive_desc_t) -> DNNL.Primitive {
        let hit = state.withLock { s -> DNNL.Primitive? in
            guard let entry = s.table[key] else { return nil }
            s.tick += 1
            s.table[key]!.lastUse = s.tick
            return entry.primitive
        }
        if let hit { return hit }
        let p = DNNL.Primitive(pd: make(backend.engine), backend: backend)
        var dropped: [DNNL.Primitive] = []
        let result = state.withLock { s -> DNNL.Primitive in
            s.tick += 1
            if let existing = s.table[key] {
                s.table[key]!.lastUse = s.tick
                return existing.primitive
            }
            s.table[key] = (p, s.tick)
            dropped = Self.trim(&s)
            return p
        }
        dropped.removeAll()
        return result
    }

    private static func trim(_ s: inout State) -> [DNNL.Primitive] {
        var out: [DNNL.Primitive] = []
        while s.table.count > s.capacity {
            guard let oldest = s.table.min(by: { $0.value.lastUse < $1.value.lastUse }) else { break }
            out.append(oldest.value.primitive)
            s.table[oldest.key] = nil
            s.evictions += 1
        }
        return out
    }
}
