import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A block of device memory owned by one or more tensors. Allocation and release are reported to the
/// `MemoryTracker`, so the peak figures cover every activation, weight and workspace we create.
///
/// A storage made with a `source` (a weight: its slice of a checkpoint file) is *evictable*: `evict()` frees its
/// bytes and `raw` reads them back on the next access (or waits for a prefetch in flight), so kernels, which read
/// `raw` at op time, need not know whether a weight is resident. Offload policies (`WeightStreamer`, the pipeline's
/// model offload) are built on this.
public final class Storage: @unchecked Sendable {
    public let byteCount: Int
    public let device: Device
    /// Set for plain storages: the bytes never move. Nil for evictable ones, whose pointer lives in `residency`.
    private let fixed: UnsafeMutableRawPointer?
    private let owned: Bool
    private let onRelease: (@Sendable () -> Void)?
    let residency: Residency?

    /// The bytes. For an evictable storage this loads them if they were evicted and tells its observer.
    public var raw: UnsafeMutableRawPointer {
        if let fixed { return fixed }
        return residency!.acquire(self)
    }

    public init(byteCount: Int, device: Device = .cpu, zeroed: Bool = false) {
        precondition(device == .cpu, "only CPU storage is allocated here; device backends allocate their own")
        self.byteCount = byteCount
        self.device = device
        residency = nil
        onRelease = nil
        // Under an execution plan, activations of a replayed call come from the plan's arena (already tracked).
        let planned = ExecutionPlan.current?.allocation(byteCount)
        planSlot = planned.map { (ExecutionPlan.current!, $0.slot) }
        if let arenaPointer = planned?.pointer {
            fixed = arenaPointer
            owned = false
            tracked = false
            if zeroed { memset(arenaPointer, 0, byteCount) }
            return
        }
        let p = Storage.allocate(byteCount)
        if zeroed { memset(p, 0, byteCount) }
        fixed = p
        owned = true
        MemoryTracker.shared.allocated(byteCount, on: device)
    }

    /// The execution plan that recorded or placed this storage, and its slot there.
    private var planSlot: (ExecutionPlan, Int)? = nil

    /// An evictable storage that starts out evicted: `source` fills `byteCount` bytes whenever they are needed
    /// (first access, or access after `evict()`). The source must produce the same bytes every time; it runs on
    /// whichever thread needs the bytes (the caller of `raw`, or a prefetch thread).
    public init(byteCount: Int, device: Device = .cpu,
                source: @escaping @Sendable (UnsafeMutableRawPointer) throws -> Void) {
        precondition(device == .cpu, "only CPU storage is allocated here; device backends allocate their own")
        self.byteCount = byteCount
        self.device = device
        fixed = nil
        owned = true
        onRelease = nil
        tracked = false  // the residency reports its own allocations
        residency = Residency(source: source)
    }

    /// Wraps memory someone else owns (a memory-mapped weight file, a device allocation); `onRelease` runs when the
    /// last tensor referencing it goes away. Not counted by the tracker unless `tracked`.
    public init(borrowing pointer: UnsafeMutableRawPointer, byteCount: Int, device: Device = .cpu, tracked: Bool = false,
                onRelease: (@Sendable () -> Void)? = nil) {
        self.fixed = pointer
        self.byteCount = byteCount
        self.device = device
        self.owned = false
        self.onRelease = onRelease
        self.tracked = tracked
        self.residency = nil
        if tracked { MemoryTracker.shared.allocated(byteCount, on: device) }
    }

    private var tracked = true
    /// Derived data that must die with these bytes, such as oneDNN's pre-packed copy of a weight.
    let attachments = Mutex<[String: AnyObject]>([:])

    deinit {
        if let (plan, slot) = planSlot { plan.released(slot: slot) }
        if owned, let fixed { free(fixed) }
        if tracked { MemoryTracker.shared.freed(byteCount, on: device) }
        residency?.dropBytes(byteCount, device: device)
        onRelease?()
    }

    static func allocate(_ byteCount: Int) -> UnsafeMutableRawPointer {
        var p: UnsafeMutableRawPointer? = nil
        let rc = posix_memalign(&p, 64, max(byteCount, 64))
        precondition(rc == 0 && p != nil, "out of memory allocating \(byteCount) bytes")
        return p!
    }

    // MARK: Residency

    /// Whether the storage can be evicted and read back.
    public var isEvictable: Bool { residency != nil }

    /// Whether the bytes are in memory (always true for plain storages).
    public var isResident: Bool { residency?.isResident ?? true }

    /// How many times the bytes were (re)loaded from the source.
    public var loadCount: Int { residency?.loads ?? 0 }

    /// Brings the bytes in without counting as a use (prefetch, eager loading).
    public func load() {
        residency?.load(byteCount, device: device)
    }

    /// Frees the bytes of an evictable storage; they are read back on the next access. Unless `keepingDerived`,
    /// derived copies (packed or converted weights) are dropped too. Returns the bytes freed, derived included.
    /// The caller guarantees no kernel is using the bytes. A no-op for plain storages.
    @discardableResult
    public func evict(keepingDerived: Bool = false) -> Int {
        guard let residency else { return 0 }
        var freed = residency.evict(byteCount, device: device)
        if !keepingDerived {
            let dropped = attachments.withLock { a -> [AnyObject] in
                let values = Array(a.values)
                a.removeAll()
                return values
            }
            freed += dropped.reduce(0) { $0 + (($1 as? Storage)?.residentBytes ?? 0) }
        }
        return freed
    }

    /// Bytes this storage holds in memory now: its own (if resident) plus derived copies attached to it.
    public var residentBytes: Int {
        let own = isResident ? byteCount : 0
        let derived = attachments.withLock { a in a.values.reduce(0) { $0 + (($1 as? Storage)?.residentBytes ?? 0) } }
        return own + derived
    }

    /// Who hears about uses of an evictable storage (a streaming policy); nil for none.
    public var observer: StorageObserver? {
        get { residency?.observer }
        set { residency?.observer = newValue }
    }

    /// When set, the plain bytes are evicted as soon as a derived copy (oneDNN's packed layout, a converted type)
    /// is attached: the kernels then read only the derived copy, and the plain bytes would be dead weight.
    /// They are read back from the source if some other kernel needs the plain layout.
    public var releasesPlainWhenDerived: Bool {
        get { residency?.releasesPlainWhenDerived ?? false }
        set { residency?.releasesPlainWhenDerived = newValue }
    }
}

/// Told when an evictable storage is used, so a policy can evict others and prefetch what comes next.
public protocol StorageObserver: AnyObject, Sendable {
    func touched(_ storage: Storage)
}

/// The residency state of an evictable storage. `loadLock` serialises (re)loading, so a use that finds a prefetch
/// in flight waits for it; `state` is held only briefly.
final class Residency: @unchecked Sendable {
    struct State {
        var pointer: UnsafeMutableRawPointer?
        var loads = 0
        weak var observer: StorageObserver?
        var releasesPlainWhenDerived = false
    }
    let source: @Sendable (UnsafeMutableRawPointer) throws -> Void
    let state = Mutex<State>(State())
    let loadLock = Mutex<Void>(())

    init(source: @escaping @Sendable (UnsafeMutableRawPointer) throws -> Void) { self.source = source }

    var isResident: Bool { state.withLock { $0.pointer != nil } }
    var loads: Int { state.withLock { $0.loads } }
    var observer: StorageObserver? {
        get { state.withLock { $0.observer } }
        set { state.withLock { $0.observer = newValue } }
    }
    var releasesPlainWhenDerived: Bool {
        get { state.withLock { $0.releasesPlainWhenDerived } }
        set { state.withLock { $0.releasesPlainWhenDerived = newValue } }
    }

    @discardableResult
    func load(_ byteCount: Int, device: Device) -> UnsafeMutableRawPointer {
        if let p = state.withLock({ $0.pointer }) { return p }
        return loadLock.withLock { _ in
            if let p = state.withLock({ $0.pointer }) { return p }
            let p = Storage.allocate(byteCount)
            do { try source(p) } catch {
                preconditionFailure("cannot read back evicted weight bytes: \(error)")
            }
            MemoryTracker.shared.allocated(byteCount, on: device)
            state.withLock { $0.pointer = p; $0.loads += 1 }
            return p
        }
    }

    func acquire(_ storage: Storage) -> UnsafeMutableRawPointer {
        let p = load(storage.byteCount, device: storage.device)
        observer?.touched(storage)
        return p
    }

    func evict(_ byteCount: Int, device: Device) -> Int {
        loadLock.withLock { _ in
            guard let p = state.withLock({ s -> UnsafeMutableRawPointer? in
                defer { s.pointer = nil }
                return s.pointer
            }) else { return 0 }
            free(p)
            MemoryTracker.shared.freed(byteCount, on: device)
            return byteCount
        }
    }

    func dropBytes(_ byteCount: Int, device: Device) { _ = evict(byteCount, device: device) }
}
