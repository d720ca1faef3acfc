import Dispatch
import Synchronization

/// Sequential offload: evictable weights streamed through a byte budget.
///
/// Every managed weight starts evicted. A use (`Storage.raw`, or a lookup of its packed copy) loads it if needed;
/// the first pass over each group (a model) records the order weights are touched in. After every use the weights
/// used furthest back are evicted (their packed copies with them) until the resident bytes fit the budget, and a
/// background thread loads the next weights in recorded order (cyclically within the group, since a UNet repeats
/// its pass every step) while the current op computes, as far as the budget allows.
///
/// The weights of the last two uses are never evicted (a kernel may hold their pointers), nor are loads in flight,
/// so the budget is soft by at most those (and by the packed copy an op makes after its weight was counted); it
/// should be a few of the largest weights (plus their packed copies) for prefetch to overlap anything. Prefetched
/// weights not used yet are evicted last.
public final class WeightStreamer: StorageObserver, @unchecked Sendable {
    public struct Stats: Sendable, Equatable {
        /// Bytes of managed weights in memory (plain plus packed/converted copies), now and at the highest point.
        public var residentBytes = 0
        public var peakResidentBytes = 0
        /// Loads from the source on the compute thread (misses) and on the prefetch thread.
        public var demandLoads = 0
        public var prefetchLoads = 0
        public var evictions = 0
    }

    public let budgetBytes: Int
    /// How many weights ahead the prefetcher may load.
    public let lookahead: Int
    /// The last this-many distinct weights used are protected from eviction: the op running holds their pointers
    /// (an op reads at most two streamed weights, e.g. CLIP's token and position embeddings; biases stay resident).
    let protectedRecent = 2

    struct Entry {
        let storage: Storage
        let group: Int
        var lastUse: UInt64 = 0
        var prefetchedUnused = false
        var inFlight = false
        var resident = false
    }

    struct State {
        var entries: [ObjectIdentifier: Entry] = [:]
        var order: [[ObjectIdentifier]] = []
        /// A group's order is complete once its first weight is used again (the next UNet step, the second
        /// text encoding); until then "what comes next" is unknown and nothing is prefetched.
        var recorded: [Bool] = []
        var position: [ObjectIdentifier: Int] = [:]
        var recent: [ObjectIdentifier] = []
        var tick: UInt64 = 0
        var stats = Stats()
    }

    private let state = Mutex<State>(State())
    private let queue = DispatchQueue(label: "lean-diffusion.prefetch", qos: .userInitiated)
    private let pending = DispatchGroup()

    /// Where evicted packed copies go (see `SpillFile`); nil rebuilds them from the weights on every load.
    public let spill: SpillFile?

    /// Sets the process's `BufferPool` to `budgetBytes` (see there: reloads reuse evicted buffers instead of
    /// faulting in new pages every step); it goes back to 0 when the streamer goes away. The pool is process-wide:
    /// with several streaming pipelines alive, the last one set it (only speed depends on it, never results).
    public init(budgetBytes: Int, lookahead: Int = 8, spill: SpillFile? = nil) {
        self.budgetBytes = budgetBytes
        self.lookahead = lookahead
        self.spill = spill
        BufferPool.shared.capacity = budgetBytes
    }

    deinit { BufferPool.shared.capacity = 0 }

    /// Takes `storages` (evictable) under management as group `group`: evicts them and observes their uses.
    public func manage(_ storages: [Storage], group: Int) {
        state.withLock { s in
            while s.order.count <= group { s.order.append([]); s.recorded.append(false) }
            for st in storages where st.isEvictable {
                s.entries[ObjectIdentifier(st)] = Entry(storage: st, group: group)
            }
        }
        for st in storages where st.isEvictable {
            st.evict()
            st.observer = self
            if let spill {
                // Only the packed copy is read once it exists: its plain bytes are dropped right away.
                st.spillFile = spill
                st.releasesPlainWhenDerived = true
            }
        }
    }

    public var stats: Stats { state.withLock { $0.stats } }

    /// Starts a new peak window at the current resident level.
    public func resetPeak() { state.withLock { $0.stats.peakResidentBytes = $0.stats.residentBytes } }

    /// Waits for prefetches in flight, then evicts every managed weight.
    public func evictAll() {
        pending.wait()
        let victims = state.withLock { s -> [Storage] in
            var out: [Storage] = []
            for (id, e) in s.entries where e.resident {
                out.append(e.storage)
                s.entries[id]!.resident = false
                s.entries[id]!.prefetchedUnused = false
            }
            s.recent.removeAll()
            return out
        }
        for v in victims { v.evict() }
        state.withLock { s in
            s.stats.evictions += victims.count
            s.stats.residentBytes = 0
        }
    }

    /// Waits until the prefetch thread is idle.
    public func waitForPrefetch() { pending.wait() }

    private func residentBytes(_ s: State) -> Int {
        s.entries.values.reduce(0) { $0 + ($1.resident || $1.inFlight ? $1.storage.residentBytes : 0) }
    }

    public func touched(_ storage: Storage) {
        let id = ObjectIdentifier(storage)
        var victims: [Storage] = []
        var toPrefetch: [Storage] = []
        state.withLock { s in
            guard var e = s.entries[id] else { return }
            s.tick += 1
            if !e.resident && !e.inFlight { s.stats.demandLoads += 1 }
            e.lastUse = s.tick
            e.resident = true
            e.prefetchedUnused = false
            s.entries[id] = e
            if s.position[id] == nil {
                s.position[id] = s.order[e.group].count
                s.order[e.group].append(id)
            } else if s.position[id] == 0 {
                s.recorded[e.group] = true
            }
            if s.recent.last != id {
                s.recent.removeAll { $0 == id }
                s.recent.append(id)
                if s.recent.count > protectedRecent { s.recent.removeFirst() }
            }
            var bytes = residentBytes(s)
            s.stats.peakResidentBytes = max(s.stats.peakResidentBytes, bytes)
            // Evict the weights used furthest back until the budget holds; prefetched weights not used yet go
            // last (they will be needed soonest).
            if bytes > budgetBytes {
                let candidates = s.entries.filter { key, v in
                    v.resident && !v.inFlight && !s.recent.contains(key)
                }.sorted { ($0.value.prefetchedUnused ? 1 : 0, $0.value.lastUse) < ($1.value.prefetchedUnused ? 1 : 0, $1.value.lastUse) }
                for (key, v) in candidates {
                    if bytes <= budgetBytes { break }
                    bytes -= v.storage.residentBytes
                    s.entries[key]!.resident = false
                    victims.append(v.storage)
                }
                s.stats.evictions += victims.count
            }
            // Prefetch what the recorded order says comes next, as far as the budget allows.
            let order = s.order[e.group]
            if s.recorded[e.group], let p = s.position[id], order.count > 1 {
                // `bytes` already excludes the victims (subtracting them again let prefetch overshoot the budget
                // up to 3.6x on the tiny pipeline, and made the bound test flaky).
                var planned = bytes
                for k in 1...min(lookahead, order.count - 1) {
                    let nid = order[(p + k) % order.count]
                    guard let n = s.entries[nid] else { continue }
                    if n.resident || n.inFlight || victims.contains(where: { $0 === n.storage }) { continue }
                    let cost = n.storage.prefetchBytes
                    if planned + cost > budgetBytes { break }
                    planned += cost
                    s.entries[nid]!.inFlight = true
                    toPrefetch.append(n.storage)
                }
            }
        }
        for v in victims { v.evict() }
        for st in toPrefetch {
            queue.async(group: pending) { [self] in
                st.prefetch()
                state.withLock { s in
                    let key = ObjectIdentifier(st)
                    guard s.entries[key] != nil else { return }
                    s.entries[key]!.inFlight = false
                    if !s.entries[key]!.resident {
                        s.entries[key]!.resident = true
                        s.entries[key]!.prefetchedUnused = true
                        s.stats.prefetchLoads += 1
                    }
                }
            }
        }
        if !victims.isEmpty || !toPrefetch.isEmpty {
            state.withLock { s in s.stats.residentBytes = residentBytes(s) }
        }
    }
}
