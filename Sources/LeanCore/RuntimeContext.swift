import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Settings the kernels of one context read. Values, not process globals: two pipelines may differ.
public struct RuntimeSettings: Sendable, Equatable {
    /// Threads for our own kernels (`parallelFor`); oneDNN runs on its OpenMP team (`OMP_NUM_THREADS`).
    public var threads: Int = Threads.count
    /// Score elements (batch x heads x queries x keys) from which flash attention runs its tiles through oneDNN
    /// matmuls instead of the register kernel. Tests set it to 0 or `Int.max` to reach either path.
    public var flashGEMMThreshold: Int = 1 << 20
    /// oneDNN primitives kept (least recently used go first, with their descriptors and memory objects). A
    /// resident SD1.5 UNet at one size uses about 120; the VAE about 30 per latent size.
    public var primitiveCacheCapacity: Int = 512

    public init() {}
}

/// A weight that could not be read back while a kernel needed it (the file vanished, an I/O error): recorded by
/// the context instead of trapping inside the kernel, and thrown by `RuntimeContext.checkFailures()` once the
/// running call returns.
public struct WeightReadFailure: Error, CustomStringConvertible, Sendable {
    public let weight: String
    public let reason: String
    public var description: String { "cannot read weight '\(weight)' back from its file: \(reason)" }
}

/// Everything the memory system and the kernels keep between calls, owned by one pipeline (or one test): the
/// memory tracker, the planned-arena hook, oneDNN's engine, stream and a bounded primitive cache, the buffer pool
/// that streaming offload recycles reloads through, recorded weight read failures, and settings.
///
/// Code runs "in" a context: `context.run { ... }` binds it (a task-local value, so it follows async tasks and is
/// handed to the worker threads of `parallelFor`) and every storage, primitive and plan hook inside uses it. Two
/// pipelines in one process each own one and share nothing mutable. Code that binds none (op tests, small tools)
/// uses `RuntimeContext.standalone`.
public final class RuntimeContext: Sendable {
    /// Bytes of every storage made in this context (activations, weights, derived copies, workspaces).
    public let tracker: MemoryTracker
    /// Recycles evicted weight buffers of the same size (see `BufferPool`); capacity 0 unless streaming.
    public let bufferPool: BufferPool
    let primitives: PrimitiveCache
    private let settingsState: Mutex<RuntimeSettings>
    private let planBinding = Mutex<PlanBinding>(PlanBinding())
    private let failures = Mutex<[WeightReadFailure]>([])

    struct PlanBinding {
        var plan: ExecutionPlan?
        var thread: pthread_t?
        /// Parallel regions in progress on the planning thread; allocations inside them are not planned.
        var parallelDepth = 0
    }

    public init(settings: RuntimeSettings = RuntimeSettings()) {
        settingsState = Mutex(settings)
        let tracker = MemoryTracker()
        self.tracker = tracker
        bufferPool = BufferPool(tracker: tracker)
        primitives = PrimitiveCache(capacity: settings.primitiveCacheCapacity)
    }

    /// The context code outside any `run` uses.
    public static let standalone = RuntimeContext()

    @TaskLocal static var bound: RuntimeContext?

    /// The context bound to the running code, or `standalone`.
    public static var current: RuntimeContext { bound ?? standalone }

    /// Runs `body` with this context bound.
    public func run<T>(_ body: () throws -> T) rethrows -> T {
        if RuntimeContext.bound === self { return try body() }
        return try RuntimeContext.$bound.withValue(self, operation: body)
    }

    public var settings: RuntimeSettings {
        get { settingsState.withLock { $0 } }
        set {
            settingsState.withLock { $0 = newValue }
            primitives.capacity = newValue.primitiveCacheCapacity
        }
    }

    /// oneDNN primitives cached now.
    public var cachedPrimitiveCount: Int { primitives.count }
    /// Primitives destroyed to keep the cache within its capacity.
    public var evictedPrimitiveCount: Int { primitives.evictions }

    // MARK: Weight read failures

    func recordFailure(_ failure: WeightReadFailure) { failures.withLock { $0.append(failure) } }

    /// Throws the first weight read failure recorded since the last check (and forgets them all).
    public func checkFailures() throws {
        let pending = failures.withLock { f -> [WeightReadFailure] in defer { f.removeAll() }; return f }
        if let first = pending.first { throw first }
    }

    // MARK: Planned arena hooks

    /// Binds `plan` to the calling thread for `body`.
    func planning<T>(_ plan: ExecutionPlan, _ body: () throws -> T) rethrows -> T {
        planBinding.withLock { $0 = PlanBinding(plan: plan, thread: pthread_self(), parallelDepth: 0) }
        defer { planBinding.withLock { $0 = PlanBinding() } }
        return try body()
    }

    /// The plan watching this thread outside parallel regions, if any.
    func activePlan() -> ExecutionPlan? {
        planBinding.withLock { b in
            guard let plan = b.plan, let t = b.thread, b.parallelDepth == 0, pthread_equal(t, pthread_self()) != 0
            else { return nil }
            return plan
        }
    }

    /// Marks a parallel region on the planning thread (its allocations happen in no fixed order); returns whether
    /// it did, so the caller leaves it.
    func enterParallel() -> Bool {
        planBinding.withLock { b in
            guard b.plan != nil, let t = b.thread, pthread_equal(t, pthread_self()) != 0 else { return false }
            b.parallelDepth += 1
            return true
        }
    }

    func leaveParallel() { planBinding.withLock { $0.parallelDepth -= 1 } }
}
