import Dispatch
import Synchronization
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Why a job was not taken.
public enum SubmitError: Error, Equatable {
    /// The queue holds `queueSize` waiting jobs; retry after about this many seconds.
    case full(retryAfterSeconds: Int)
    /// The server is shutting down (SIGTERM): it takes no more work.
    case draining
}

/// The in-memory job queue: a bounded FIFO of waiting jobs, the jobs that run, and the finished ones kept for their
/// results. Workers (threads that own a pipeline) block in `take()`; HTTP handlers submit, watch and cancel. All
/// state sits behind one mutex; subscribers get a snapshot after every change.
public final class JobQueue: Sendable {
    struct Record {
        let id: String
        let spec: JobSpec
        let submitted: Double
        let deadline: Double
        var state: JobState = .queued
        var step = 0
        var total: Int
        var started: Double?
        var finished: Double?
        var error: String?
        /// The HTTP status a synchronous request answers for this failure (400 for a request the model cannot run,
        /// 504 for a timeout, 500 otherwise).
        var failureStatus: Int?
        var result: JobResult?
        var cancelRequested = false
        /// Seconds of the steps this job has run, for its ETA.
        var stepSeconds = 0.0
    }

    struct State {
        var jobs: [String: Record] = [:]
        var waiting: [String] = []
        var finishedOrder: [String] = []
        var running = 0
        var draining = false
        var stopped = false
        var nextNumber = 1
        var subscribers: [String: [Int: AsyncStream<JobSnapshot>.Continuation]] = [:]
        var nextSubscriber = 0
        // Metrics since start.
        var finishedByState: [JobState: Int] = [:]
        var stepsTimed = 0
        var stepSecondsTotal = 0.0
        var submittedTotal = 0
        var rejectedTotal = 0
    }

    let state = Mutex(State())
    /// One signal per waiting job (and one per worker at stop): `take()` waits on it.
    let available = DispatchSemaphore(value: 0)
    public let queueSize: Int
    public let timeoutSeconds: Double
    public let keptJobs: Int

    public init(queueSize: Int, timeoutSeconds: Double, keptJobs: Int) {
        self.queueSize = queueSize
        self.timeoutSeconds = timeoutSeconds
        self.keptJobs = keptJobs
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    // MARK: Submitting and watching

    /// Queues a job and returns its id, or refuses it when the queue is full or the server drains.
    public func submit(_ spec: JobSpec) throws(SubmitError) -> String {
        let result: Result<String, SubmitError> = state.withLock { s in
            guard !s.draining, !s.stopped else { s.rejectedTotal += 1; return .failure(.draining) }
            guard s.waiting.count < queueSize else {
                s.rejectedTotal += 1
                return .failure(.full(retryAfterSeconds: Self.retryAfter(s)))
            }
            let id = "job-\(s.nextNumber)-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
            s.nextNumber += 1
            let t = Self.now()
            let total = spec.iterations * spec.stepsPerIteration
            s.jobs[id] = Record(id: id, spec: spec, submitted: t, deadline: t + timeoutSeconds, total: total)
            s.waiting.append(id)
            s.submittedTotal += 1
            return .success(id)
        }
        let id = try result.get()
        available.signal()
        return id
    }

    /// About when a place frees up: the mean step time times the steps still to run ahead, at least 1 s.
    static func retryAfter(_ s: State) -> Int {
        let perStep = s.stepsTimed > 0 ? s.stepSecondsTotal / Double(s.stepsTimed) : 1
        let running = s.jobs.values.filter { $0.state == .running }.map { max(0, $0.total - $0.step) }.min() ?? 0
        let seconds = perStep * Double(running)
        return seconds.isFinite ? max(1, min(3600, Int(seconds.rounded(.up)))) : 1
    }

    public func snapshot(_ id: String) -> JobSnapshot? {
        state.withLock { s in s.jobs[id].map { Self.snapshot($0, s) } }
    }

    /// Recent jobs, newest first.
    public func list(limit: Int = 100) -> [JobSnapshot] {
        state.withLock { s in
            s.jobs.values.sorted { $0.submitted > $1.submitted }.prefix(limit).map { Self.snapshot($0, s) }
        }
    }

    public func result(_ id: String) -> (snapshot: JobSnapshot, result: JobResult?, failureStatus: Int?)? {
        state.withLock { s in s.jobs[id].map { (Self.snapshot($0, s), $0.result, $0.failureStatus) } }
    }

    public func spec(_ id: String) -> JobSpec? { state.withLock { $0.jobs[id]?.spec } }

    /// The job's snapshot now and after every change, ending after its final state; nil for an unknown id.
    public func events(_ id: String) -> AsyncStream<JobSnapshot>? {
        let (stream, continuation) = AsyncStream.makeStream(of: JobSnapshot.self, bufferingPolicy: .bufferingNewest(64))
        let known: Bool = state.withLock { s in
            guard let record = s.jobs[id] else { return false }
            let snap = Self.snapshot(record, s)
            continuation.yield(snap)
            if snap.state.isFinal {
                continuation.finish()
            } else {
                let key = s.nextSubscriber
                s.nextSubscriber += 1
                // No onTermination clean-up: it would run inside this lock when `publish` finishes the stream.
                // A subscriber that went away stays until the job ends; yielding to it does nothing.
                s.subscribers[id, default: [:]][key] = continuation
            }
            return true
        }
        if !known { continuation.finish(); return nil }
        return stream
    }

    /// Waits for the job's final state.
    public func wait(_ id: String) async -> JobSnapshot? {
        guard let events = events(id) else { return nil }
        var last: JobSnapshot?
        for await snap in events { last = snap }
        return last
    }

    /// Cancels a job: a waiting one at once, a running one at its next step. Nil for an unknown id.
    @discardableResult
    public func cancel(_ id: String, reason: String? = nil) -> JobSnapshot? {
        state.withLock { s in
            guard var record = s.jobs[id] else { return nil }
            switch record.state {
            case .queued:
                s.waiting.removeAll { $0 == id }
                record.state = .cancelled
                record.error = reason
                record.finished = Self.now()
                s.jobs[id] = record
                Self.finished(id, .cancelled, &s, keep: keptJobs)
            case .running:
                record.cancelRequested = true
                if record.error == nil { record.error = reason }
                s.jobs[id] = record
            case .done, .failed, .cancelled:
                break
            }
            Self.publish(id, &s)
            return s.jobs[id].map { Self.snapshot($0, s) }
        }
    }

    // MARK: Workers

    /// Blocks until a job is waiting (then marks it running) or the queue stops (nil). A job whose deadline
    /// passed while it waited fails here as timed out.
    public func take() -> (id: String, spec: JobSpec)? {
        while true {
            available.wait()
            let next: (String, JobSpec)?? = state.withLock { s in
                if s.stopped { return .some(nil) }
                guard !s.waiting.isEmpty else { return nil }
                let id = s.waiting.removeFirst()
                guard var record = s.jobs[id] else { return nil }
                let t = Self.now()
                if t > record.deadline {
                    record.state = .failed
                    record.error = "timed out: waited \(Int(t - record.submitted)) s in the queue (--timeout \(Int(timeoutSeconds)))"
                    record.failureStatus = 504
                    record.finished = t
                    s.jobs[id] = record
                    Self.finished(id, .failed, &s, keep: keptJobs)
                    Self.publish(id, &s)
                    return nil
                }
                record.state = .running
                record.started = t
                s.jobs[id] = record
                s.running += 1
                Self.publish(id, &s)
                return .some((id, record.spec))
            }
            switch next {
            case .some(.some(let job)): return job
            case .some(.none): return nil
            case .none: continue
            }
        }
    }

    /// Records progress of a running job (`step` of `total` over all its iterations); false when the job should
    /// stop: cancelled, or past its deadline.
    public func progress(_ id: String, step: Int, total: Int, stepSeconds: Double) -> Bool {
        state.withLock { s in
            guard var record = s.jobs[id], record.state == .running else { return false }
            record.step = step
            record.total = max(total, step)
            if stepSeconds.isFinite, stepSeconds >= 0 {
                record.stepSeconds += stepSeconds
                s.stepsTimed += 1
                s.stepSecondsTotal += stepSeconds
            }
            if Self.now() > record.deadline, !record.cancelRequested {
                record.cancelRequested = true
                record.error = "timed out after \(Int(timeoutSeconds)) s (--timeout)"
            }
            s.jobs[id] = record
            Self.publish(id, &s)
            return !record.cancelRequested
        }
    }

    /// Ends a running job: with its result, or with the error that stopped it (a cancelled or timed-out job's
    /// own error says which).
    public func finish(_ id: String, _ outcome: Result<JobResult, any Error>, failureStatus: Int = 500) {
        state.withLock { s in
            guard var record = s.jobs[id], record.state == .running else { return }
            s.running -= 1
            record.finished = Self.now()
            switch outcome {
            case .success(let result):
                record.state = .done
                record.result = result
                record.step = record.total
            case .failure(let error):
                if record.cancelRequested, record.error?.hasPrefix("timed out") == true {
                    record.state = .failed
                    record.failureStatus = 504
                } else if record.cancelRequested {
                    record.state = .cancelled
                } else {
                    record.state = .failed
                    record.error = "\(error)"
                    record.failureStatus = failureStatus
                }
            }
            s.jobs[id] = record
            Self.finished(id, record.state, &s, keep: keptJobs)
            Self.publish(id, &s)
        }
    }

    // MARK: Draining

    /// Takes no more jobs; waiting and running ones go on.
    public func beginDrain() { state.withLock { $0.draining = true } }

    public var isDraining: Bool { state.withLock { $0.draining } }

    /// Jobs waiting plus running.
    public var outstanding: Int { state.withLock { $0.waiting.count + $0.running } }

    /// Cancels everything not finished (waiting jobs at once, running ones at their next step).
    public func cancelAll(reason: String) {
        let ids = state.withLock { s in s.jobs.values.filter { !$0.state.isFinal }.map(\.id) }
        for id in ids { cancel(id, reason: reason) }
    }

    /// Wakes every worker with nil from `take()`.
    public func stop(workers: Int) {
        state.withLock { $0.stopped = true }
        for _ in 0..<workers { available.signal() }
    }

    // MARK: Metrics

    public struct Counts: Sendable {
        public var waiting: Int
        public var running: Int
        public var finishedByState: [JobState: Int]
        public var submitted: Int
        public var rejected: Int
        public var stepsTimed: Int
        public var stepSeconds: Double
        public var oldestWaitingSeconds: Double
    }

    public var counts: Counts {
        state.withLock { s in
            let t = Self.now()
            let oldest = s.waiting.first.flatMap { s.jobs[$0] }.map { t - $0.submitted } ?? 0
            return Counts(waiting: s.waiting.count, running: s.running, finishedByState: s.finishedByState,
                          submitted: s.submittedTotal, rejected: s.rejectedTotal, stepsTimed: s.stepsTimed,
                          stepSeconds: s.stepSecondsTotal, oldestWaitingSeconds: oldest)
        }
    }

    // MARK: Helpers (called with the lock held)

    static func snapshot(_ r: Record, _ s: State) -> JobSnapshot {
        let perStep: Double? = r.step > 0 ? r.stepSeconds / Double(r.step)
            : (s.stepsTimed > 0 ? s.stepSecondsTotal / Double(s.stepsTimed) : nil)
        var eta: Double? = nil
        var position: Int? = nil
        switch r.state {
        case .running:
            eta = perStep.map { $0 * Double(max(0, r.total - r.step)) }
        case .queued:
            let index = s.waiting.firstIndex(of: r.id) ?? 0
            position = index
            let ahead = s.waiting.prefix(index).compactMap { s.jobs[$0]?.total }.reduce(0, +)
                + s.jobs.values.filter { $0.state == .running }.map { max(0, $0.total - $0.step) }.reduce(0, +)
            eta = perStep.map { $0 * Double(ahead + r.total) }
        default:
            eta = r.state == .done ? 0 : nil
        }
        return JobSnapshot(id: r.id, state: r.state, step: r.step, total: r.total, etaSeconds: eta, position: position,
                           createdAt: r.submitted, startedAt: r.started, finishedAt: r.finished, error: r.error,
                           images: r.result?.pngs.count ?? 0, prompt: r.spec.parameters.prompt)
    }

    static func publish(_ id: String, _ s: inout State) {
        guard let record = s.jobs[id], let subs = s.subscribers[id] else { return }
        let snap = snapshot(record, s)
        for c in subs.values {
            c.yield(snap)
            if snap.state.isFinal { c.finish() }
        }
        if snap.state.isFinal { s.subscribers[id] = nil }
    }

    static func finished(_ id: String, _ final: JobState, _ s: inout State, keep: Int) {
        s.finishedByState[final, default: 0] += 1
        s.finishedOrder.append(id)
        while s.finishedOrder.count > keep {
            let old = s.finishedOrder.removeFirst()
            s.jobs[old] = nil
            s.subscribers[old] = nil
        }
    }
}
