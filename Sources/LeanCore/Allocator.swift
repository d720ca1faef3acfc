#if os(Linux)
import CDNNL
#endif

/// Process-wide allocator policy for inference runs.
public enum AllocatorPolicy {
    /// Activations are large and short-lived. glibc's default raises its mmap threshold after the first large free
    /// and then keeps freed blocks in per-thread heaps; on SD1.5 bf16 that held ~650 MB of RSS above what was live.
    /// Blocks over 1 MiB now go back to the OS when freed, and at most two heaps exist. The threshold trades page
    /// faults for RSS; measured on SD1.5 bf16 sequential offload (40 MiB budget, 2 cores), step time / peak RSS:
    /// 256 KiB 8.3 s / 384 MB, 1 MiB 7.3 s / 387 MB, 4 MiB 6.6 s / 489 MB, 8 MiB 6.3 s / 665 MB, glibc default
    /// 6.0 s / 820 MB. Resident runs keep glibc's default (their plan arena already avoids the churn). Call once,
    /// early; a no-op off glibc.
    public static func returnLargeBlocksToSystem() {
        #if os(Linux)
        mallopt(M_MMAP_THRESHOLD, 1024 * 1024)
        mallopt(M_ARENA_MAX, 2)
        #endif
    }

    /// Gives the pages of freed heap memory back to the OS (glibc `malloc_trim`): between phases, the denoising
    /// loop's freed buffers (and oneDNN's) would otherwise stay in RSS under the VAE decode's peak. Costs a heap
    /// walk (milliseconds), nothing per op. Returns whether anything was released; a no-op off glibc.
    @discardableResult
    public static func releaseFreeMemory() -> Bool {
        #if os(Linux)
        return malloc_trim(0) != 0
        #else
        return false
        #endif
    }
}
