/*
 * fastclip: the thread count and the parallel primitive.
 *
 * Work is split into items (fixed blocks, fc_blocks.h) whose results are
 * combined in item order, so the thread count changes the speed only, never
 * a result.
 */
#ifndef FASTCLIP_THREADS_H
#define FASTCLIP_THREADS_H

#include "fc_array.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Never more threads than this, whatever OMP_NUM_THREADS asks for. */
#define FC_MAX_THREADS 64
/* Below this many elements a single pass stays on the calling thread: waking
 * a sleeping helper costs more than it saves (figures in bench/README.md). */
#define FC_PARALLEL_MIN ((int64_t)1 << 20)
/* The same for passes that come in pairs (a norm pass, then the scaling pass):
 * the helpers poll for the next job for a while before they sleep, so the two
 * passes share one wake-up and pay off from fewer elements. */
#define FC_POOL_MIN ((int64_t)1 << 19)

FC_API_BEGIN
/* The number of threads a kernel may use: OpenMP's nthreads ICV (so
 * OMP_NUM_THREADS and threadpoolctl control it; the library links the OpenMP
 * runtime for this setting only, it opens no OpenMP region), capped at the
 * processors available and FC_MAX_THREADS; 1 without OpenMP or in a forked
 * child. */
int fc_max_threads(void);
/* The processors this process may run on (at least 1). */
int fc_num_procs(void);
int fc_openmp_enabled(void);
/* Set by the Python layer in a forked child: the kernels then stay on the
 * calling thread (the pool's helpers do not exist there). */
void fc_set_serial_only(int on);
int fc_serial_only(void);
/* Run fc_parallel_for's items on an OpenMP team instead of the pool's helpers
 * (set when the BLAS runs on the same OpenMP runtime, so that the element-wise
 * passes reuse the threads the GEMMs have just left spinning). */
void fc_set_openmp_regions(int on);
int fc_openmp_regions(void);
/* For the tests of fc_parallel_for_noting/_again (below): two passes over n
 * items; runs[i] and runs[n + i] count the calls of item i in each pass,
 * slot_of[i] gets the slot noted in the first, and order[i] the position of
 * item i among the second pass's calls. The second pass follows `given`
 * instead of the noted slots when it is not NULL. */
void fc_two_pass_trace(int64_t n, int parallel, const unsigned char *given,
                       unsigned char *slot_of, int64_t *runs, int64_t *order);
FC_API_END

/* The parallel primitive: runs fn(ctx, i) once for every i in [0, n). When
 * `parallel` is nonzero it uses the calling thread and up to
 * fc_max_threads() - 1 helper threads of one process-wide pool (POSIX
 * threads; elsewhere every call is serial), or, after fc_set_openmp_regions(1),
 * an OpenMP team of as many threads; otherwise the calling thread only.
 * Returns when every call has completed and no helper uses ctx.
 * The caller never waits for a helper that has not started: the threads take
 * items from a shared counter, so on a loaded machine a helper that does not
 * get a core in time simply takes no item (the caller waits only for items a
 * helper has already taken). An OpenMP region, by contrast, waits for every
 * thread of its team at its barrier (bench/README.md has the comparison).
 * Results must not depend on which thread ran which item: store per-item
 * results and combine them in item order. Calls from several threads at once
 * are safe (all but one run serially), and so is a call from inside an item
 * (it runs serially). Helpers exist only in the process that started them: in
 * a forked child every call is serial. */
typedef void (*fc_item_fn)(void *ctx, int64_t i);
void fc_parallel_for(int64_t n, fc_item_fn fn, void *ctx, int parallel);
/* Two passes over the same items, the second reading what the first read:
 * fc_parallel_for_noting is fc_parallel_for that also stores in slot_of[i] (n
 * entries) which thread ran item i (0: the calling thread, k: the pool's k-th
 * helper). fc_parallel_for_again then runs fn(ctx, i) once for every i, each
 * thread first taking the items its slot ran in that pass, the latest first
 * (they are still in its core's cache), then the other slots' earliest ones
 * (so a helper that woke late still shares the work). Without `parallel` it
 * runs the items on the calling thread, the last one first. The same rule as for fc_parallel_for: results must not
 * depend on which thread ran which item. */
void fc_parallel_for_noting(int64_t n, fc_item_fn fn, void *ctx, int parallel,
                            unsigned char *slot_of);
void fc_parallel_for_again(int64_t n, fc_item_fn fn, void *ctx, int parallel,
                           const unsigned char *slot_of);
/* Whether a call over `work` elements should use helpers: work >= min_work,
 * more than one thread allowed, not in a forked child. */
int fc_parallel_worth(int64_t work, int64_t min_work);
#define fc_pool_parallel(work) fc_parallel_worth((work), FC_POOL_MIN)
#define fc_use_parallel(work) fc_parallel_worth((work), FC_PARALLEL_MIN)

#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_THREADS_H */
