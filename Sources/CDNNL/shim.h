#include <oneapi/dnnl/dnnl.h>

#if defined(__linux__)
// Debian's oneDNN runs on GNU OpenMP. Our own kernels fork through the same thread team (GOMP_parallel) instead of
// a second pool: two pools on two cores made OpenMP's spin-waiting workers steal the cores our kernels needed.
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned int flags);
int omp_get_thread_num(void);
int omp_get_num_threads(void);

// mallopt, for the allocator policy of the CPU backend (Allocator.swift).
#include <malloc.h>
#endif
