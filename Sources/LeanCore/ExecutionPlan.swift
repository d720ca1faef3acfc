import Synchronization

/// A planned ("traced") forward pass: the guide's traced UNet, for a CPU runtime.
///
/// A denoising loop calls the UNet with the same shapes every step, so the sequence of activation allocations is
/// the same every step. The plan watches one call (after a warm-up call has created every oneDNN primitive and
/// packed every weight), records each activation's size and lifetime, lays them out in one arena by liveness
/// (greedy best fit, largest first), and on later calls hands out arena slices in the recorded order instead of
/// calling the allocator: no malloc/free or page faults per op, and a peak equal to the planned arena.
///
/// Only activations are planned: allocations on the calling thread outside parallel regions, in the context the
/// call runs in. Weight copies (packed, converted, reloaded) never come from the arena. Buffers still alive when
/// the call returns (its result) are allocated normally, so the caller may keep them.
///
/// Replay is checked: a slot is handed out only if no buffer overlapping it in the arena is still alive, and an
/// allocation that differs from the recording (another size, an extra one) gets its own memory. Such a fallback
/// is per allocation, counted in `fallbacks`, told to `log`, and makes the next call record afresh: a plan is never
/// dropped for good.
public final class ExecutionPlan: @unchecked Sendable {  // all mutable state under `state`
    public enum Phase: Sendable { case warmUp, recording, replaying }

    private struct State {
        var phase: Phase = .warmUp
        var arenaBytes = 0
        var recordedPeakBytes = 0
        var plannedAllocations = 0
        var sizes: [Int] = []
        var allocTime: [Int] = []
        var freeTime: [Int] = []
        var clock = 0
        var offsets: [Int] = []
        /// Arena slots handed out and not yet released (a few dozen at a time), and the same as flags per slot.
        var liveSlots: [Int] = []
        var live: [Bool] = []
        var cursor = 0
        var arena: Storage?
        var fallbacks = 0
        var callFallbacks = 0
        var replays = 0
        var firstReason: String?
        /// Bumped at every recording: releases of older slots say nothing about the current layout.
        var generation = 0
    }

    /// What `allocation` hands out: the slot, and the arena bytes when the slot's recorded place is free.
    struct Slot {
        let index: Int
        let generation: Int
        let pointer: UnsafeMutableRawPointer?
        /// Retained by the storage using the slot, so a re-recording never frees bytes still in use.
        let arena: Storage?
    }
    private let state = Mutex<State>(State())
    private let log: (@Sendable (String) -> Void)?

    /// `log` hears why a replayed allocation fell back (for a debug log).
    public init(log: (@Sendable (String) -> Void)? = nil) { self.log = log }

    public var phase: Phase { state.withLock { $0.phase } }
    /// Bytes of the arena, once planned: the peak of planned activations.
    public var arenaBytes: Int { state.withLock { $0.arenaBytes } }
    /// The largest tracked-bytes rise seen during the recorded call (what the allocator alone needed).
    public var recordedPeakBytes: Int { state.withLock { $0.recordedPeakBytes } }
    public var plannedAllocations: Int { state.withLock { $0.plannedAllocations } }
    /// Replayed allocations that did not take their recorded slot, over all calls.
    public var fallbacks: Int { state.withLock { $0.fallbacks } }
    /// Calls replayed from the arena.
    public var replays: Int { state.withLock { $0.replays } }

    /// Runs `body` (one forward pass) under the plan, in the current context.
    public func run<T>(_ body: () throws -> T) rethrows -> T {
        let context = RuntimeContext.current
        switch phase {
        case .warmUp:
            state.withLock { $0.phase = .recording }
            return try body()
        case .recording:
            state.withLock { s in
                s.sizes = []; s.allocTime = []; s.freeTime = []; s.clock = 0
                s.arena = nil; s.offsets = []; s.liveSlots = []; s.live = []
                s.generation += 1
            }
            let before = context.tracker.current(.cpu)
            context.tracker.resetPeak(.cpu)
            let result = try context.planning(self) { try body() }
            let peak = context.tracker.peak(.cpu) - before
            state.withLock { s in
                s.recordedPeakBytes = peak
                Self.makeLayout(&s)
                s.phase = .replaying
            }
            // The arena is the plan's own memory, not an activation of any call.
            let bytes = arenaBytes
            let arena = bytes > 0 ? Storage(byteCount: bytes, planned: false, context: context) : nil
            state.withLock { $0.arena = arena }
            return result
        case .replaying:
            state.withLock { s in
                s.cursor = 0
                s.callFallbacks = 0
                s.firstReason = nil
            }
            let result = try context.planning(self) { try body() }
            let (count, reason, missing) = state.withLock { s -> (Int, String?, Bool) in
                s.replays += 1
                let missing = s.cursor < s.sizes.count
                if missing || s.callFallbacks > 0 { s.phase = .recording }  // learn the new sequence next call
                return (s.callFallbacks, s.firstReason, missing)
            }
            if count > 0 || missing, let log {
                log("execution plan: \(count) of \(plannedAllocations) allocations fell back"
                    + (missing ? ", fewer allocations than recorded" : "")
                    + (reason.map { " (first: \($0))" } ?? "") + "; recording again")
            }
            return result
        }
    }

    /// Greedy offset assignment over lifetimes: each buffer, largest first, goes at the lowest offset where it
    /// overlaps no already placed buffer that is alive at the same time.
    private static func makeLayout(_ s: inout State) {
        let n = s.sizes.count
        s.offsets = [Int](repeating: -1, count: n)
        let order = (0..<n).filter { s.freeTime[$0] != Int.max }.sorted { s.sizes[$0] > s.sizes[$1] }
        var placed: [Int] = []
        var top = 0
        for i in order {
            let live = placed.filter { s.allocTime[$0] < s.freeTime[i] && s.allocTime[i] < s.freeTime[$0] }
                .sorted { s.offsets[$0] < s.offsets[$1] }
            var offset = 0
            for j in live {
                if offset + s.sizes[i] <= s.offsets[j] { break }
                offset = max(offset, s.offsets[j] + s.sizes[j])
            }
            s.offsets[i] = offset
            top = max(top, offset + s.sizes[i])
            placed.append(i)
        }
        s.live = [Bool](repeating: false, count: n)
        s.plannedAllocations = order.count
        s.arenaBytes = top
    }

    static func rounded(_ bytes: Int) -> Int { (max(bytes, 1) + 63) & ~63 }

    /// A slot for a new activation on the planning thread, with the arena pointer when a replayed call may use
    /// its recorded bytes; nil to use the allocator untracked by the plan.
    func allocation(_ bytes: Int) -> Slot? {
        let size = Self.rounded(bytes)
        return state.withLock { s -> Slot? in
            switch s.phase {
            case .recording:
                s.sizes.append(size); s.allocTime.append(s.clock); s.freeTime.append(Int.max)
                s.clock += 1
                return Slot(index: s.sizes.count - 1, generation: s.generation, pointer: nil, arena: nil)
            case .replaying:
                guard s.cursor < s.sizes.count, s.sizes[s.cursor] == size else {
                    Self.fellBack(&s, s.cursor < s.sizes.count
                        ? "allocation #\(s.cursor) is \(size) B, recorded \(s.sizes[s.cursor]) B"
                        : "allocation #\(s.cursor) of \(size) B beyond the \(s.sizes.count) recorded")
                    return nil
                }
                let slot = s.cursor
                s.cursor += 1
                let unplaced = Slot(index: slot, generation: s.generation, pointer: nil, arena: nil)
                guard s.offsets[slot] >= 0, let arena = s.arena else { return unplaced }
                if s.live[slot] {
                    Self.fellBack(&s, "slot #\(slot) is still in use from an earlier call")
                    return unplaced
                }
                let (lo, hi) = (s.offsets[slot], s.offsets[slot] + s.sizes[slot])
                if let busy = s.liveSlots.first(where: { s.offsets[$0] < hi && lo < s.offsets[$0] + s.sizes[$0] }) {
                    Self.fellBack(&s, "slot #\(slot) overlaps slot #\(busy), still alive")
                    return unplaced
                }
                s.live[slot] = true
                s.liveSlots.append(slot)
                return Slot(index: slot, generation: s.generation, pointer: arena.raw + s.offsets[slot], arena: arena)
            case .warmUp:
                return nil
            }
        }
    }

    private static func fellBack(_ s: inout State, _ reason: String) {
        s.fallbacks += 1
        s.callFallbacks += 1
        if s.firstReason == nil { s.firstReason = reason }
    }

    func released(_ slot: Slot) {
        state.withLock { s in
            guard slot.generation == s.generation else { return }
            let slot = slot.index
            switch s.phase {
            case .recording:
                guard slot < s.freeTime.count else { return }
                s.freeTime[slot] = s.clock
                s.clock += 1
            case .replaying:
                if slot < s.live.count, s.live[slot] {
                    s.live[slot] = false
                    if let i = s.liveSlots.lastIndex(of: slot) { s.liveSlots.remove(at: i) }
                }
            case .warmUp:
                break
            }
        }
    }
}
