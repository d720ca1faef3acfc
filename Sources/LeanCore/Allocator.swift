#if os(Linux)
import CDNNL
#endif

/// Process-wide allocator policy for inference runs.
public enum AllocatorPolicy {
    /// Activations are large and short-lived. glibc's default raises its mmap threshold after the first large free
    /// and then keeps freed blocks in per-thread heaps; on SD1.5 bf16 that held ~650 MB of RSS above what was live
    /// (peak 3.3 GB vs 2.6 GB with this policy). Blocks over 256 KiB now go back to the OS when freed, and at most
    /// two heaps exist. The planned UNet replays from its arena, so the extra page faults stay off the denoising
    /// loop, but measured steps were ~25% slower (7.3 vs 5.5-6.1 s), so it suits memory-first runs. Call once, early;
    /// a no-op off glibc.
    public static func returnLargeBlocksToSystem() {
        #if os(Linux)
        mallopt(M_MMAP_THRESHOLD, 256 * 1024)
        mallopt(M_ARENA_MAX, 2)
        #endif
    }
}
