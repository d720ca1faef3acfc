#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A planned ("traced") forward pass: the guide's traced UNet, for a CPU runtime.
///
/// A denoising loop calls the UNet with the same shapes every step, so the sequence of activation allocations is
/// the same every step. The plan watches one call (after a warm-up call has created every oneDNN primitive and
/// packed every weight), records each activation's size and lifetime, lays them out in one arena by liveness
/// (greedy best fit, largest first), and on later calls hands out arena slices in the recorded order instead of
/// calling the allocator: no malloc/free or page faults per op, and a peak equal to the planned arena.
///
/// Only allocations made on the calling thread outside parallel regions are planned (their order is fixed);
/// buffers still alive when the call returns (its result) are allocated normally, so the caller may keep them.
/// If a replayed call allocates differently from the recording, the plan gives up and the allocator takes over.
public final class ExecutionPlan: @unchecked Sendable {
    public enum Phase: Sendable { case warmUp, recording, replaying, abandoned }

    public private(set) var phase: Phase = .warmUp
    /// Bytes of the arena, once planned: the peak of planned activations.
    public private(set) var arenaBytes = 0
    /// The largest tracked-bytes rise seen during the recorded call (what the allocator alone needed).
    public private(set) var recordedPeakBytes = 0
    public private(set) var plannedAllocations = 0

    private var sizes: [Int] = []
    private var allocTime: [Int] = []
    private var freeTime: [Int] = []
    private var clock = 0
    private var offsets: [Int] = []
    private var cursor = 0
    private var arena: Storage?
    private var thread: pthread_t?

    public init() {}

    /// Runs `body` (one forward pass) under the plan.
    public func run<T>(_ body: () throws -> T) rethrows -> T {
        switch phase {
        case .warmUp:
            phase = .recording
            return try body()
        case .recording:
            sizes = []; allocTime = []; freeTime = []; clock = 0
            let before = MemoryTracker.shared.current(.cpu)
            MemoryTracker.shared.resetPeak(.cpu)
            let result = try active { try body() }
            recordedPeakBytes = MemoryTracker.shared.peak(.cpu) - before
            makeLayout()
            phase = .replaying
            return result
        case .replaying:
            cursor = 0
            let result = try active { try body() }
            if phase == .replaying && cursor != sizes.count { phase = .abandoned }
            return result
        case .abandoned:
            return try body()
        }
    }

    private func active<T>(_ body: () throws -> T) rethrows -> T {
        thread = pthread_self()
        ExecutionPlan.current = self
        defer { ExecutionPlan.current = nil; thread = nil }
        return try body()
    }

    /// Greedy offset assignment over lifetimes: each buffer, largest first, goes at the lowest offset where it
    /// overlaps no already placed buffer that is alive at the same time.
    private func makeLayout() {
        let n = sizes.count
        offsets = [Int](repeating: -1, count: n)
        let order = (0..<n).filter { freeTime[$0] != Int.max }.sorted { sizes[$0] > sizes[$1] }
        var placed: [Int] = []
        var top = 0
        for i in order {
            let live = placed.filter { allocTime[$0] < freeTime[i] && allocTime[i] < freeTime[$0] }
                .sorted { offsets[$0] < offsets[$1] }
            var offset = 0
            for j in live {
                if offset + sizes[i] <= offsets[j] { break }
                offset = max(offset, offsets[j] + sizes[j])
            }
            offsets[i] = offset
            top = max(top, offset + sizes[i])
            placed.append(i)
        }
        plannedAllocations = order.count
        arenaBytes = top
        arena = top > 0 ? Storage(byteCount: top) : nil
    }

    // MARK: Hooks used by Storage

    nonisolated(unsafe) static var current: ExecutionPlan?
    /// Parallel regions in progress on the planning thread; allocations inside them are not planned.
    nonisolated(unsafe) static var parallelDepth = 0

    /// Whether the caller is the thread this plan is watching.
    var isPlanningThread: Bool {
        guard let thread else { return false }
        return pthread_equal(thread, pthread_self()) != 0
    }

    static func rounded(_ bytes: Int) -> Int { (max(bytes, 1) + 63) & ~63 }

    /// A slot for a new storage on the planning thread, or nil to use the allocator.
    /// Returns the arena pointer when replaying a planned buffer.
    func allocation(_ bytes: Int) -> (slot: Int, pointer: UnsafeMutableRawPointer?)? {
        guard isPlanningThread, ExecutionPlan.parallelDepth == 0 else { return nil }
        let size = Self.rounded(bytes)
        switch phase {
        case .recording:
            sizes.append(size); allocTime.append(clock); freeTime.append(Int.max)
            clock += 1
            return (sizes.count - 1, nil)
        case .replaying:
            guard cursor < sizes.count, sizes[cursor] == size else {
                phase = .abandoned
                return nil
            }
            let slot = cursor
            cursor += 1
            guard offsets[slot] >= 0, let arena else { return (slot, nil) }
            return (slot, arena.raw + offsets[slot])
        default:
            return nil
        }
    }

    func released(slot: Int) {
        guard phase == .recording, slot < freeTime.count else { return }
        freeTime[slot] = clock
        clock += 1
    }
}
