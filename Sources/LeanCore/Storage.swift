#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A block of memory owned by one or more tensors, reported to its context's `MemoryTracker`.
///
/// Activations are plain storages: bytes from the allocator or, inside a replayed `ExecutionPlan`, a slice of the
/// plan's arena; they never move. Weights are storages backed by a `Parameter`, which owns residency (resident,
/// evicted, spilled), derived copies and pins; `raw` of such a storage reads the weight back when it was evicted.
public final class Storage: @unchecked Sendable {  // immutable after init; the parameter has its own locks
    public let byteCount: Int
    public let device: Device
    /// The weight behind this storage; nil for activations and borrowed memory.
    public let parameter: Parameter?
    private let fixed: UnsafeMutableRawPointer?
    private let release: Release

    /// What the last reference gives back. `arena`'s tracker is set when the plan handed out no arena bytes for
    /// the slot and the storage allocated (and tracked) its own.
    private enum Release {
        case none
        case free(MemoryTracker)
        case arena(ExecutionPlan, ExecutionPlan.Slot, ownBytes: MemoryTracker?)
        case borrowed(MemoryTracker?, (@Sendable () -> Void)?)
    }

    /// The bytes. A weight's are read back if they were evicted (its observer hears of the use).
    public var raw: UnsafeMutableRawPointer {
        if let fixed { return fixed }
        return parameter!.acquire()
    }

    /// An activation of the current context: from its plan's arena when a replayed call hands out a slot, else
    /// from the allocator.
    public convenience init(byteCount: Int, device: Device = .cpu, zeroed: Bool = false) {
        self.init(byteCount: byteCount, device: device, zeroed: zeroed, planned: true)
    }

    /// `planned: false` for bytes that outlive the call that made them (derived weight copies, the arena itself).
    init(byteCount: Int, device: Device = .cpu, zeroed: Bool = false, planned: Bool,
         context: RuntimeContext = .current) {
        precondition(device == .cpu, "only CPU storage is allocated here; device backends allocate their own")
        self.byteCount = byteCount
        self.device = device
        parameter = nil
        if planned, let plan = context.activePlan(), let slot = plan.allocation(byteCount) {
            if let pointer = slot.pointer {
                fixed = pointer
                if zeroed { memset(pointer, 0, byteCount) }
                release = .arena(plan, slot, ownBytes: nil)
            } else {
                fixed = Storage.allocate(byteCount, zeroed: zeroed)
                context.tracker.allocated(byteCount, on: device)
                release = .arena(plan, slot, ownBytes: context.tracker)
            }
            return
        }
        fixed = Storage.allocate(byteCount, zeroed: zeroed)
        context.tracker.allocated(byteCount, on: device)
        release = .free(context.tracker)
    }

    /// A weight's storage (see `Parameter`).
    public init(parameter: Parameter) {
        byteCount = parameter.byteCount
        device = parameter.device
        self.parameter = parameter
        fixed = nil
        release = .none
    }

    /// An evictable weight that starts out evicted: `source` fills `byteCount` bytes whenever they are needed.
    /// See `Parameter.init(name:byteCount:device:source:rangeSource:)`.
    public convenience init(byteCount: Int, name: String = "weight",
                            source: @escaping @Sendable (UnsafeMutableRawPointer) throws -> Void,
                            rangeSource: (@Sendable (Int, UnsafeMutableRawBufferPointer) throws -> Void)? = nil) {
        self.init(parameter: Parameter(name: name, byteCount: byteCount, source: source,
                                       rangeSource: rangeSource))
    }

    /// Wraps memory someone else owns (a memory-mapped weight file, a device allocation); `onRelease` runs when the
    /// last tensor referencing it goes away. Not counted by the tracker unless `tracked`.
    public init(borrowing pointer: UnsafeMutableRawPointer, byteCount: Int, device: Device = .cpu, tracked: Bool = false,
                onRelease: (@Sendable () -> Void)? = nil) {
        self.fixed = pointer
        self.byteCount = byteCount
        self.device = device
        parameter = nil
        let tracker = tracked ? RuntimeContext.current.tracker : nil
        release = .borrowed(tracker, onRelease)
        tracker?.allocated(byteCount, on: device)
    }

    deinit {
        switch release {
        case .none: break
        case .free(let tracker):
            free(fixed)
            tracker.freed(byteCount, on: device)
        case .arena(let plan, let slot, let ownBytes):
            plan.released(slot)
            if let ownBytes {
                free(fixed)
                ownBytes.freed(byteCount, on: device)
            }
        case .borrowed(let tracker, let onRelease):
            tracker?.freed(byteCount, on: device)
            onRelease?()
        }
    }

    static func allocate(_ byteCount: Int, zeroed: Bool = false) -> UnsafeMutableRawPointer {
        var p: UnsafeMutableRawPointer? = nil
        let rc = posix_memalign(&p, 64, max(byteCount, 64))
        precondition(rc == 0 && p != nil, "out of memory allocating \(byteCount) bytes")
        if zeroed { memset(p!, 0, byteCount) }
        return p!
    }

    // MARK: Weights (forwarded to the parameter; activations answer as always-resident memory)

    /// Whether the storage can be evicted and read back.
    public var isEvictable: Bool { parameter?.isEvictable ?? false }
    /// Whether the bytes are in memory (always true for activations).
    public var isResident: Bool { parameter?.isResident ?? true }
    /// How many times the bytes were (re)loaded from the source.
    public var loadCount: Int { parameter?.loadCount ?? 0 }
    /// Bytes held in memory now: its own (if resident) plus a weight's derived copies.
    public var residentBytes: Int { parameter?.residentBytes ?? byteCount }

    /// Copies `buffer.count` bytes starting at `offset`; an evicted weight reads just those bytes from its source.
    public func copyBytes(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) {
        precondition(offset >= 0 && offset + buffer.count <= byteCount, "byte range outside the storage")
        guard buffer.count > 0 else { return }
        if let fixed {
            buffer.baseAddress!.copyMemory(from: fixed + offset, byteCount: buffer.count)
            return
        }
        parameter!.copyBytes(at: offset, into: buffer)
    }

    /// Brings a weight's bytes in without counting as a use.
    public func load() { parameter?.load() }

    /// Frees a weight's bytes (and, unless `keepingDerived`, its derived copies); 0 for activations or a pinned
    /// weight. Returns the bytes freed.
    @discardableResult
    public func evict(keepingDerived: Bool = false) -> Int { parameter?.evict(keepingDerived: keepingDerived) ?? 0 }
}

/// A buffer's address handed into or out of a lock-protected table (a parameter's state, the buffer pool). The
/// bytes are not shared by this: whoever holds the table's lock decides who may use them.
struct Address: @unchecked Sendable {  // an address, not access: the owning table's lock guards the bytes
    let pointer: UnsafeMutableRawPointer
}
