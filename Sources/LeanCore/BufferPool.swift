import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Recycles the buffers of evicted weights (plain or spilled packed copies) for the next load of the same size.
///
/// Streaming offload reloads every UNet weight every step. With freed large blocks going back to the OS (the
/// memory-first allocator policy), each reload was a fresh mapping: ~1.7 GB of page faults per SD1.5 step, which
/// made steps 1.6x the resident time. Without the policy, glibc kept ~800 MB of freed blocks instead. A pool bounded
/// in bytes keeps both costs small: weight shapes repeat (a UNet has a few dozen distinct sizes), so most loads
/// reuse a warm buffer. Pooled bytes stay counted by the context's `MemoryTracker` (they are resident). Each
/// `RuntimeContext` has one; capacity 0 (the default) disables it, and a streaming policy sets it to its budget.
public final class BufferPool: @unchecked Sendable {  // all state under `state`; `tracker` is immutable
    let tracker: MemoryTracker

    init(tracker: MemoryTracker) { self.tracker = tracker }

    private struct State {
        var capacity = 0
        var bytes = 0
        var buffers: [(size: Int, pointer: UnsafeMutableRawPointer)] = []
        var hits = 0
        var misses = 0
    }
    private let state = Mutex<State>(State())

    /// Bytes the pool may hold; lowering it frees the oldest buffers.
    public var capacity: Int {
        get { state.withLock { $0.capacity } }
        set {
            let dropped = state.withLock { s -> [(size: Int, pointer: UnsafeMutableRawPointer)] in
                s.capacity = max(0, newValue)
                return Self.trim(&s)
            }
            release(dropped)
        }
    }

    /// Bytes held now, and how many takes found a buffer.
    public var heldBytes: Int { state.withLock { $0.bytes } }
    public var hits: Int { state.withLock { $0.hits } }

    /// A pooled buffer of exactly `size` bytes (still tracked as allocated), or nil.
    func take(_ size: Int) -> UnsafeMutableRawPointer? {
        state.withLock { s in
            guard s.capacity > 0 else { return nil }
            guard let i = s.buffers.lastIndex(where: { $0.size == size }) else { s.misses += 1; return nil }
            s.hits += 1
            s.bytes -= size
            return s.buffers.remove(at: i).pointer
        }
    }

    /// Keeps `pointer` (a tracked buffer of `size` bytes) for reuse; false if the pool is off or the buffer is
    /// larger than its capacity (the caller frees it). Older buffers are freed to make room.
    func give(_ pointer: UnsafeMutableRawPointer, _ size: Int) -> Bool {
        let address = Address(pointer: pointer)
        let (kept, dropped) = state.withLock { s -> (Bool, [(size: Int, pointer: UnsafeMutableRawPointer)]) in
            guard size <= s.capacity else { return (false, []) }
            s.buffers.append((size, address.pointer))
            s.bytes += size
            return (true, Self.trim(&s))
        }
        release(dropped)
        return kept
    }

    private static func trim(_ s: inout State) -> [(size: Int, pointer: UnsafeMutableRawPointer)] {
        var dropped: [(size: Int, pointer: UnsafeMutableRawPointer)] = []
        while s.bytes > s.capacity, !s.buffers.isEmpty {
            let b = s.buffers.removeFirst()
            s.bytes -= b.size
            dropped.append(b)
        }
        return dropped
    }

    deinit { release(state.withLock { $0.buffers }) }

    private func release(_ buffers: [(size: Int, pointer: UnsafeMutableRawPointer)]) {
        for b in buffers {
            free(b.pointer)
            tracker.freed(b.size, on: .cpu)
        }
    }
}
