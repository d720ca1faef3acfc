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
    ///
    /// `rangeSource`, when given, reads any byte range of the same bytes (offset into the storage, destination) so
    /// that `copyBytes(at:into:)` can serve a few rows of an evicted weight without loading all of it.
    public init(byteCount: Int, device: Device = .cpu,
                source: @escaping @Sendable (UnsafeMutableRawPointer) throws -> Void,
                rangeSource: (@Sendable (Int, UnsafeMutableRawBufferPointer) throws -> Void)? = nil) {
        precondition(device == .cpu, "only CPU storage is allocated here; device backends allocate their own")
        self.byteCount = byteCount
        self.device = device
        fixed = nil
        owned = true
        onRelease = nil
        tracked = false  // the residency reports its own allocations
        residency = Residency(source: source, rangeSource: rangeSource)
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
    /// Where derived copies go when this (evictable) storage is evicted; nil drops them.
    private let spillTarget = Mutex<SpillFile?>(nil)

    /// Set by a streaming policy: on eviction, derived copies are written to `file` once and read back from it
    /// afterwards, instead of being rebuilt from the plain bytes.
    public var spillFile: SpillFile? {
        get { spillTarget.withLock { $0 } }
        set { spillTarget.withLock { $0 = newValue } }
    }

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

    /// Copies `buffer.count` bytes starting at `offset`. An evicted storage with a range source reads just those
    /// bytes from it and stays evicted, and no use is reported: a token-embedding lookup needs 77 rows of a
    /// 49,408-row table, and streaming offload should not have to make the whole table resident for them.
    public func copyBytes(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) {
        precondition(offset >= 0 && offset + buffer.count <= byteCount, "byte range outside the storage")
        guard buffer.count > 0 else { return }
        if let fixed {
            buffer.baseAddress!.copyMemory(from: fixed + offset, byteCount: buffer.count)
            return
        }
        residency!.copyBytes(at: offset, into: buffer, storage: self)
    }

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
            if let spill = spillFile {
                let derived = attachments.withLock { Array($0) }
                for (key, value) in derived {
                    guard let d = value as? Storage else { continue }
                    if d.isEvictable { freed += d.evict(); continue }
                    let resident = d.residentBytes
                    let spilled = spill.spill(d)
                    attachments.withLock { a in if let spilled { a[key] = spilled } else { a[key] = nil } }
                    freed += resident
                }
            } else {
                let dropped = attachments.withLock { a -> [AnyObject] in
                    let values = Array(a.values)
                    a.removeAll()
                    return values
                }
                freed += dropped.reduce(0) { $0 + (($1 as? Storage)?.residentBytes ?? 0) }
            }
        }
        return freed
    }

    /// Derived copies that live in a spill file (evictable), read back instead of being rebuilt.
    private var spilledDerived: [Storage] {
        attachments.withLock { a in a.values.compactMap { $0 as? Storage }.filter(\.isEvictable) }
    }

    /// Bytes `prefetch()` will bring in: the spilled derived copies when only those are read, else the plain bytes
    /// plus as much again for the packed copy the op will make from them.
    public var prefetchBytes: Int {
        if releasesPlainWhenDerived {
            let spilled = spilledDerived
            if !spilled.isEmpty { return spilled.reduce(0) { $0 + $1.byteCount } }
        }
        return 2 * byteCount
    }

    /// Brings in what the next use will read: the spilled derived copies when the plain bytes are only kept for
    /// rebuilding them (`releasesPlainWhenDerived`), else the plain bytes. For prefetching.
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
    let rangeSource: (@Sendable (Int, UnsafeMutableRawBufferPointer) throws -> Void)?
    let state = Mutex<State>(State())
    let loadLock = Mutex<Void>(())

    init(source: @escaping @Sendable (UnsafeMutableRawPointer) throws -> Void,
         rangeSource: (@Sendable (Int, UnsafeMutableRawBufferPointer) throws -> Void)?) {
        self.source = source
        self.rangeSource = rangeSource
    }

    /// Resident: copied under `loadLock`, so an eviction cannot free the bytes mid-copy. Evicted: read from the
    /// range source (or, without one, loaded as a normal use).
    func copyBytes(at offset: Int, into buffer: UnsafeMutableRawBufferPointer, storage: Storage) {
        let done = loadLock.withLock { _ -> Bool in
            if let p = state.withLock({ $0.pointer }) {
                buffer.baseAddress!.copyMemory(from: p + offset, byteCount: buffer.count)
                return true
            }
            guard let rangeSource else { return false }
            do { try rangeSource(offset, buffer) } catch {
                preconditionFailure("cannot read evicted weight bytes: \(error)")
            }
            return true
        }
        if !done { buffer.baseAddress!.copyMemory(from: acquire(storage) + offset, byteCount: buffer.count) }
    }

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
            let pooled = device == .cpu ? BufferPool.shared.take(byteCount) : nil
            let p = pooled ?? Storage.allocate(byteCount)
            do { try source(p) } catch {
                preconditionFailure("cannot read back evicted weight bytes: \(error)")
            }
            if pooled == nil { MemoryTracker.shared.allocated(byteCount, on: device) }
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
            if device != .cpu || !BufferPool.shared.give(p, byteCount) {
                free(p)
                MemoryTracker.shared.freed(byteCount, on: device)
            }
            return byteCount
        }
    }

    func dropBytes(_ byteCount: Int, device: Device) { _ = evict(byteCount, device: device) }
}
