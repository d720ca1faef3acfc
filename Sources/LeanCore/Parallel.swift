import Dispatch
#if os(Linux)
import CDNNL
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Thread count for our own kernels: `LEAN_THREADS`, else `OMP_NUM_THREADS` (which oneDNN also honours), else the
/// number of online CPUs.
public enum Threads {
    public static let count: Int = {
        for name in ["LEAN_THREADS", "OMP_NUM_THREADS"] {
            if let v = getenv(name), let n = Int(String(cString: v)), n > 0 { return n }
        }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }()
}

/// Runs `body` over `0..<count` split into contiguous chunks, one per thread. Small jobs stay on the caller's thread:
/// a fork costs microseconds, which matters for the many small ops of a tiny model.
/// The current `RuntimeContext` sets the thread count and is bound on the worker threads too.
@inline(__always)
public func parallelFor(_ count: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
    let context = RuntimeContext.current
    let threads = min(context.settings.threads, max(1, count / max(1, minChunk)))
    // Allocations inside a parallel region happen in no fixed order; an execution plan must not record them.
    let planning = context.enterParallel()
    defer { if planning { context.leaveParallel() } }
    if threads <= 1 || count <= 1 {
        if count > 0 { body(0..<count) }
        return
    }
    withoutActuallyEscaping(body) { body in
        ParallelJob(count: count, context: context, body: body).run(threads: threads)
    }
}

/// One fork-join: each thread of the team takes its contiguous share of `0..<count`.
final class ParallelJob {
    let count: Int
    let context: RuntimeContext
    let body: (Range<Int>) -> Void

    init(count: Int, context: RuntimeContext, body: @escaping (Range<Int>) -> Void) {
        self.count = count
        self.context = context
        self.body = body
    }

    func share(thread t: Int, of n: Int) {
        let chunk = (count + n - 1) / n
        let lo = t * chunk, hi = min(count, lo + chunk)
        guard lo < hi else { return }
        // Workers allocate (flash attention's workspaces) in the caller's context.
        if t == 0 { body(lo..<hi) } else { context.run { body(lo..<hi) } }
    }

    func run(threads: Int) {
        #if os(Linux)
        // The team may be smaller than asked (a nested call runs on one thread); split by its real size.
        withExtendedLifetime(self) {
            GOMP_parallel({ context in
                let job = Unmanaged<ParallelJob>.fromOpaque(context!).takeUnretainedValue()
                job.share(thread: Int(omp_get_thread_num()), of: Int(omp_get_num_threads()))
            }, Unmanaged.passUnretained(self).toOpaque(), UInt32(threads), 0)
        }
        #else
        DispatchQueue.concurrentPerform(iterations: threads) { t in share(thread: t, of: threads) }
        #endif
    }
}
