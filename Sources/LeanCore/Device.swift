import Synchronization

/// Where a tensor's bytes live. Model code never branches on it; backends do.
public enum Device: Hashable, Sendable, CustomStringConvertible {
    case cpu
    case cuda(Int)

    public var description: String {
        switch self {
        case .cpu: return "cpu"
        case .cuda(let i): return "cuda:\(i)"
        }
    }
}

/// Byte accounting per device, the analogue of `torch.cuda.memory_allocated` / `max_memory_allocated`: every
/// tensor storage of a `RuntimeContext` reports to the context's tracker, so a report can say what the activations and weights really cost, apart from the
/// allocator's and the OS's slack.
public final class MemoryTracker: Sendable {
    public struct Stats: Sendable, Equatable {
        public var current: Int = 0
        public var peak: Int = 0
        public var allocations: Int = 0
    }

    private let stats = Mutex<[Device: Stats]>([:])

    public init() {}

    public func allocated(_ bytes: Int, on device: Device) {
        stats.withLock { table in
            var s = table[device] ?? Stats()
            s.current += bytes
            s.allocations += 1
            s.peak = max(s.peak, s.current)
            table[device] = s
        }
    }

    public func freed(_ bytes: Int, on device: Device) {
        stats.withLock { table in table[device, default: Stats()].current -= bytes }
    }

    public func stats(for device: Device) -> Stats { stats.withLock { $0[device] ?? Stats() } }
    public func current(_ device: Device = .cpu) -> Int { stats(for: device).current }
    public func peak(_ device: Device = .cpu) -> Int { stats(for: device).peak }

    /// Starts a new peak window at the current level, like `torch.cuda.reset_peak_memory_stats`.
    public func resetPeak(_ device: Device? = nil) {
        stats.withLock { table in
            for key in table.keys where device == nil || key == device! { table[key]!.peak = table[key]!.current }
        }
    }
}
