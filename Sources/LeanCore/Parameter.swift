import CDNNL
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a derived copy of a weight is: the weight converted to another type, or reordered into a oneDNN layout.
/// Never the shape of an input: a VAE decoded at five sizes keeps one packed copy per weight.
enum DerivedKind: Equatable, Sendable {
    case converted(DType)
    case packed(PackedLayout)
}

/// Which copy of which view: a weight tensor may be a view (byte offset, element count) into its parameter.
struct DerivedKey: Equatable, Sendable {
    let kind: DerivedKind
    let byteOffset: Int
    let count: Int
}

/// A oneDNN memory descriptor compared as oneDNN compares them (`dnnl_memory_desc_equal`).
struct PackedLayout: Equatable, @unchecked Sendable {  // a plain C value, never mutated after init
    let md: dnnl_memory_desc_t
    static func == (a: PackedLayout, b: PackedLayout) -> Bool {
        var (x, y) = (a.md, b.md)
        return dnnl_memory_desc_equal(&x, &y) != 0
    }
}

/// Told when a weight is used, so a policy can evict others and prefetch what comes next.
public protocol ParameterObserver: AnyObject, Sendable {
    func touched(_ parameter: Parameter)
}

/// A model weight: its bytes, where they are (resident, evicted and re-read from their source, or, for derived
/// copies, spilled to a scratch file), the copies derived from it (converted, packed for oneDNN), and pins.
///
/// A kernel pins the weights it reads (`Ops` does it around every matmul and convolution); a pinned parameter is
/// never evicted, so a streaming policy may evict anything else at any time. Loads use the context the parameter
/// was made in (its buffer pool and tracker), whichever thread does them. A source that fails (I/O error) is
/// recorded in that context and the bytes read as zeros for the running kernel; `RuntimeContext.checkFailures()`
/// throws it, and the next use reads the file again.
public final class Parameter: @unchecked Sendable {  // mutable state under `state`; (re)loading under `loadLock`
    /// The checkpoint key, for messages.
    public let name: String
    public let byteCount: Int
    public let device: Device
    let context: RuntimeContext
    private let source: (@Sendable (UnsafeMutableRawPointer) throws -> Void)?
    private let rangeSource: (@Sendable (Int, UnsafeMutableRawBufferPointer) throws -> Void)?

    private struct State {
        var pointer: UnsafeMutableRawPointer?
        var loads = 0
        var pins = 0
        /// The bytes are zeros standing in for a failed read: read again on the next use.
        var poisoned = false
        weak var observer: ParameterObserver?
        var releasesPlainWhenDerived = false
        var derived: [(key: DerivedKey, storage: Storage)] = []
        var adjustment: (@Sendable (UnsafeMutableRawPointer) -> Void)?
        /// Layouts a kernel read the plain bytes in directly (no copy), per view offset.
        var plainLayouts: [(byteOffset: Int, layout: PackedLayout)] = []
        var spillFile: SpillFile?
    }
    private let state = Mutex<State>(State())
    private let loadLock = Mutex<Void>(())

    /// An evictable weight that starts out evicted: `source` fills `byteCount` bytes whenever they are needed
    /// (first access, or access after `evict()`); it must produce the same bytes every time, and runs on whichever
    /// thread needs them. `rangeSource`, when given, reads any byte range of the same bytes, so that
    /// `copyBytes(at:into:)` serves a few rows of an evicted weight without loading all of it.
    /// CPU memory (the only backend today; a device backend will make its own parameters).
    public init(name: String, byteCount: Int,
                source: @escaping @Sendable (UnsafeMutableRawPointer) throws -> Void,
                rangeSource: (@Sendable (Int, UnsafeMutableRawBufferPointer) throws -> Void)? = nil,
                context: RuntimeContext = .current) {
        self.name = name
        self.byteCount = byteCount
        self.device = .cpu
        self.context = context
        self.source = source
        self.rangeSource = rangeSource
    }

    /// A resident weight holding a copy of `bytes` (never evicted).
    public init(name: String, copying bytes: UnsafeRawPointer, byteCount: Int, context: RuntimeContext = .current) {
        self.name = name
        self.byteCount = byteCount
        device = .cpu
        self.context = context
        source = nil
        rangeSource = nil
        let p = Storage.allocate(byteCount)
        p.copyMemory(from: bytes, byteCount: byteCount)
        context.tracker.allocated(byteCount, on: device)
        let address = Address(pointer: p)
        state.withLock { $0.pointer = address.pointer; $0.loads = 1 }
    }

    deinit {
        if let p = state.withLock({ $0.pointer }) { releaseBuffer(p) }
    }

    private func releaseBuffer(_ p: UnsafeMutableRawPointer) {
        if source == nil || !context.bufferPool.give(p, byteCount) {
            free(p)
            context.tracker.freed(byteCount, on: device)
        }
    }

    /// Whether the bytes can be evicted and read back.
    public var isEvictable: Bool { source != nil }
    public var isResident: Bool { state.withLock { $0.pointer != nil } }
    public var isPinned: Bool { state.withLock { $0.pins > 0 } }
    /// How many times the bytes were (re)loaded from the source.
    public var loadCount: Int { state.withLock { $0.loads } }

    public var observer: ParameterObserver? {
        get { state.withLock { $0.observer } }
        set { state.withLock { $0.observer = newValue } }
    }

    /// When set, the plain bytes are evicted as soon as a derived copy is attached: kernels then read only the
    /// derived copy, and the plain bytes would be dead weight (read back if a kernel needs the plain layout).
    public var releasesPlainWhenDerived: Bool {
        get { state.withLock { $0.releasesPlainWhenDerived } }
        set { state.withLock { $0.releasesPlainWhenDerived = newValue } }
    }

    /// Where derived copies go when the weight is evicted (written once, read back after); nil drops them.
    public var spillFile: SpillFile? {
        get { state.withLock { $0.spillFile } }
        set { state.withLock { $0.spillFile = newValue } }
    }

    /// Applied to the bytes after every load from the source, before any kernel or derived copy sees them: a LoRA
    /// delta lives here, so a weight evicted and read back comes back with it. Setting it drops derived copies and
    /// plain bytes (they were made without it); a resident-only weight is adjusted in place at once. While set,
    /// range reads load the whole weight (the adjustment is per weight, not per byte range).
    public var adjustment: (@Sendable (UnsafeMutableRawPointer) -> Void)? {
        get { state.withLock { $0.adjustment } }
        set {
            if source == nil {
                state.withLock { s in
                    s.adjustment = newValue
                    s.derived.removeAll()
                    if let p = s.pointer, let newValue { newValue(p) }
                }
                return
            }
            _ = evict(keepingDerived: true)
            state.withLock { s in
                s.derived.removeAll()  // made without the adjustment (a spilled copy too)
                s.adjustment = newValue
            }
        }
    }

    // MARK: Pins

    /// Keeps the bytes and derived copies in memory until `unpin()`; pins nest.
    public func pin() { state.withLock { $0.pins += 1 } }
    public func unpin() { state.withLock { $0.pins -= 1 } }

    // MARK: Residency

    /// The bytes, loaded if needed; the observer hears of the use.
    func acquire() -> UnsafeMutableRawPointer {
        let p = load()
        observer?.touched(self)
        return p
    }

    /// Brings the bytes in without counting as a use (prefetch, eager loading).
    @discardableResult
    public func load() -> UnsafeMutableRawPointer {
        if let p = state.withLock({ $0.poisoned ? nil : $0.pointer }) { return p }
        return loadLock.withLock { _ in
            let (existing, poisoned) = state.withLock { ($0.pointer, $0.poisoned) }
            if let existing, !poisoned { return existing }
            guard let source else { return existing! }
            var fresh = false
            let p: UnsafeMutableRawPointer
            if let existing {
                p = existing
            } else if let pooled = context.bufferPool.take(byteCount) {
                p = pooled
            } else {
                p = Storage.allocate(byteCount)
                fresh = true
            }
            var failed = false
            do {
                try source(p)
                state.withLock { $0.adjustment }?(p)
            } catch {
                memset(p, 0, byteCount)
                failed = true
                context.recordFailure(WeightReadFailure(weight: name, reason: "\(error)"))
            }
            if fresh { context.tracker.allocated(byteCount, on: device) }
            let address = Address(pointer: p)
            state.withLock { $0.pointer = address.pointer; $0.loads += 1; $0.poisoned = failed }
            return p
        }
    }

    /// Copies `buffer.count` bytes at `offset`: from memory when resident, else from the range source (the
    /// weight stays evicted and no use is reported: a token lookup needs 77 rows of a 49,408-row table).
    func copyBytes(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) {
        let done = loadLock.withLock { _ -> Bool in
            if let p = state.withLock({ $0.poisoned ? nil : $0.pointer }) {
                buffer.baseAddress!.copyMemory(from: p + offset, byteCount: buffer.count)
                return true
            }
            guard let rangeSource, state.withLock({ $0.adjustment == nil }) else { return false }
            do { try rangeSource(offset, buffer) } catch {
                memset(buffer.baseAddress!, 0, buffer.count)
                context.recordFailure(WeightReadFailure(weight: name, reason: "\(error)"))
            }
            return true
        }
        if !done { buffer.baseAddress!.copyMemory(from: acquire() + offset, byteCount: buffer.count) }
    }

    /// Frees the bytes (read back on the next access) and, unless `keepingDerived`, the derived copies (spilled
    /// once to the spill file when there is one, else dropped). Returns the bytes freed: 0 when pinned or not
    /// evictable.
    @discardableResult
    public func evict(keepingDerived: Bool = false) -> Int { evict(keepingDerived: keepingDerived, ignoringPins: false) }

    /// `ignoringPins` only for the plain bytes a kernel has just derived its copy from (it reads the copy after).
    private func evict(keepingDerived: Bool, ignoringPins: Bool) -> Int {
        guard source != nil else { return 0 }
        return loadLock.withLock { _ -> Int in
            let (pointer, pinned, spill) = state.withLock { s -> (UnsafeMutableRawPointer?, Bool, SpillFile?) in
                guard s.pins == 0 || ignoringPins else { return (nil, true, nil) }
                defer { s.pointer = nil; s.poisoned = false }
                return (s.pointer, false, s.spillFile)
            }
            if pinned { return 0 }
            var freed = 0
            if let pointer {
                releaseBuffer(pointer)
                freed += byteCount
            }
            guard !keepingDerived else { return freed }
            if let spill {
                let copies = state.withLock { $0.derived }
                for (key, copy) in copies {
                    if copy.isEvictable { freed += copy.evict(); continue }
                    let resident = copy.residentBytes
                    let spilled = spill.spill(copy, name: name + " (derived)", context: context)
                    state.withLock { s in
                        if let i = s.derived.firstIndex(where: { $0.key == key }) {
                            if let spilled { s.derived[i].storage = spilled } else { s.derived.remove(at: i) }
                        }
                    }
                    freed += resident
                }
            } else {
                let dropped = state.withLock { s -> [Storage] in defer { s.derived.removeAll() }; return s.derived.map(\.storage) }
                freed += dropped.reduce(0) { $0 + $1.residentBytes }
            }
            return freed
        }
    }

    /// Bytes in memory now: its own (if resident) plus its derived copies.
    public var residentBytes: Int {
        state.withLock { s in (s.pointer != nil ? byteCount : 0) + s.derived.reduce(0) { $0 + $1.storage.residentBytes } }
    }

    /// How many derived copies exist (resident or spilled).
    public var derivedCopyCount: Int { state.withLock { $0.derived.count } }

    // MARK: Derived copies

    /// A derived copy, if present; its lookup counts as a use (the kernel reads it instead of the plain bytes).
    func derived(_ key: DerivedKey) -> Storage? {
        let found = state.withLock { s in s.derived.first { $0.key == key }?.storage }
        if found != nil, let observer { observer.touched(self) }
        return found
    }

    /// Attaches a derived copy (made with `Storage(byteCount:planned: false)`); with `releasesPlainWhenDerived`
    /// the plain bytes go.
    func attach(_ key: DerivedKey, _ copy: Storage) {
        state.withLock { s in
            if let i = s.derived.firstIndex(where: { $0.key == key }) { s.derived[i].storage = copy }
            else { s.derived.append((key, copy)) }
        }
        // The kernel attaching the copy reads the copy from now on, so its pin does not hold the plain bytes.
        if releasesPlainWhenDerived { _ = evict(keepingDerived: true, ignoringPins: true) }
    }

    /// The packed layouts already derived for the view at `byteOffset` (a primitive is asked to use one of them
    /// first, so new input shapes do not make new copies).
    func packedLayouts(byteOffset: Int) -> [PackedLayout] {
        state.withLock { s in
            s.derived.compactMap { d in
                if case .packed(let layout) = d.key.kind, d.key.byteOffset == byteOffset { return layout }
                return nil
            } + s.plainLayouts.filter { $0.byteOffset == byteOffset }.map(\.layout)
        }
    }

    /// Notes that a primitive read the view at `byteOffset` in its plain layout (preferred again, like a packed one).
    func notePlainLayout(_ layout: PackedLayout, byteOffset: Int) {
        state.withLock { s in
            if !s.plainLayouts.contains(where: { $0.byteOffset == byteOffset && $0.layout == layout }) {
                s.plainLayouts.append((byteOffset, layout))
            }
        }
    }

    private var spilledDerived: [Storage] {
        state.withLock { s in s.derived.map(\.storage).filter(\.isEvictable) }
    }

    /// Bytes `prefetch()` will bring in: the spilled derived copies when only those are read, else the plain
    /// bytes plus as much again for the packed copy the op will make from them.
    public var prefetchBytes: Int {
        if releasesPlainWhenDerived {
            let spilled = spilledDerived
            if !spilled.isEmpty { return spilled.reduce(0) { $0 + $1.byteCount } }
        }
        return 2 * byteCount
    }

    /// Brings in what the next use will read (see `prefetchBytes`).
    public func prefetch() {
        if releasesPlainWhenDerived {
            let spilled = spilledDerived
            if !spilled.isEmpty {
                for d in spilled { d.load() }
                return
            }
        }
        load()
    }
}

extension Storage {
    /// A weight's storage holding a resident copy of `tensor`'s bytes (for loaders without an offload policy).
    public static func residentWeight(_ tensor: Tensor, name: String) -> Storage {
        Storage(parameter: Parameter(name: name, copying: tensor.raw, byteCount: tensor.byteCount))
    }
}
