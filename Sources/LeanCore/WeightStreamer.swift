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
/// Pinned weights (those a kernel is reading) are never evicted, nor are loads in flight or the weight being used,
/// so the budget is soft by at most those (and by the packed copy an op makes after its weight was counted); it
/// should be a few of the largest weights (plus their packed copies) for prefetch to overlap anything. Prefetched
/// weights not used yet are evicted last.
public final class WeightStreamer: ParameterObserver, @unchecked Sendable {  // mutable state under `state`
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

    struct Entry {
        let storage: Parameter
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
        var tick: UInt64 = 0
        var stats = Stats()
    }

    private let state = Mutex<State>(State())
    private let queue = DispatchQueue(label: "lean-diffusion.prefetch", qos: .userInitiated)
    private let pending = DispatchGroup()

    /// Where evicted packed copies go (see `SpillFile`); nil rebuilds them from the weights on every load.
    public let spill: SpillFile?

    private let pool: BufferPool

    /// Sets `context`'s `BufferPool` to `budgetBytes` (see there: reloads reuse evicted buffers instead of
    /// faulting in new pages every step); it goes back to 0 when the streamer goes away.
    public init(budgetBytes: Int, lookahead: Int = 8, spill: SpillFile? = nil, context: RuntimeContext = .current) {
        self.budgetBytes = budgetBytes
        self.lookahead = lookahead
        self.spill = spill
        pool = context.bufferPool
        pool.capacity = budgetBytes
    }

    deinit { pool.capacity = 0 }

    /// Takes `storages` (evictable weights) under management as group `group`: evicts them and observes their uses.
    public func manage(_ storages: [Storage], group: Int) {
        let parameters = storages.compactMap(\.parameter).filter(\.isEvictable)
        state.withLock { s in
            while s.order.count <= group { s.order.append([]); s.recorded.append(false) }
            for st in parameters {
                s.entries[ObjectIdentifier(st)] = Entry(storage: st, group: group)
            }
        }
        for st in parameters {
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
        let victims = state.withLock { s -> [Parameter] in
            var out: [Parameter] = []
            for (id, e) in s.entries where e.resident {
                out.append(e.storage)
                s.entries[id]!.resident = false
                s.entries[id]!.prefetchedUnused = false
            }
            return out
        }
        let kept = evict(victims)
        state.withLock { s in
            s.stats.evictions += victims.count - kept
            s.stats.residentBytes = residentBytes(s)
        }
    }

    /// Evicts `victims`; one that a kernel pinned meanwhile stays and is marked resident again. Returns how many stayed.
    private func evict(_ victims: [Parameter]) -> Int {
        var kept = 0
        for v in victims where v.evict() == 0 && v.isResident {
            kept += 1
            state.withLock { s in s.entries[ObjectIdentifier(v)]?.resident = true }
        }
        return kept
    }

    /// Waits until the prefetch thread is idle.
    public func waitForPrefetch() { pending.wait() }

    private func residentBytes(_ s: State) -> Int {
        s.entries.values.reduce(0) { $0 + ($1.resident || $1.inFlight ? $1.storage.residentBytes : 0) }
    }

    public func touched(_ storage: Parameter) {
        let id = ObjectIdentifier(storage)
        var victims: [Parameter] = []
        var toPrefetch: [Parameter] = []
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
            var bytes = residentBytes(s)
            s.stats.peakResidentBytes = max(s.stats.peakResidentBytes, bytes)
            // Evict the weights used furthest back until the budget holds; prefetched weights not used yet go
            // last (they will be needed soonest).
            if bytes > budgetBytes {
                let candidates = s.entries.filter { key, v in
                    v.resident && !v.inFlight && key != id && !v.storage.isPinned
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
        let kept = evict(victims)
        if kept > 0 { state.withLock { $0.stats.evictions -= kept } }
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
