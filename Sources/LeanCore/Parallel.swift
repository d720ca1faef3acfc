import Dispatch
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
/// a dispatch costs microseconds, which matters for the many small ops of a tiny model.
@inline(__always)
public func parallelFor(_ count: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
    let threads = min(Threads.count, max(1, count / max(1, minChunk)))
    // Allocations inside a parallel region happen in no fixed order; an execution plan must not record them.
    let planning = ExecutionPlan.current?.isPlanningThread ?? false
    if planning { ExecutionPlan.parallelDepth += 1 }
    defer { if planning { ExecutionPlan.parallelDepth -= 1 } }
    if threads <= 1 || count <= 1 {
        if count > 0 { body(0..<count) }
        return
    }
    let chunk = (count + threads - 1) / threads
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            let lo = t * chunk
            let hi = min(count, lo + chunk)
            if lo < hi { body(lo..<hi) }
        }
    }
}
