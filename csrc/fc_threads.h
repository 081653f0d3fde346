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
/* Below this many elements an OpenMP region stays on the calling thread:
 * waking a helper costs more than it saves (figures in bench/README.md). */
#define FC_PARALLEL_MIN ((int64_t)1 << 20)
/* The same for fc_parallel_for, whose helpers poll for the next job for a
 * while before they sleep, so that a norm pass and the scaling pass after it
 * share one wake-up. */
#define FC_POOL_MIN ((int64_t)1 << 19)

FC_API_BEGIN
/* The number of threads a kernel may use: OpenMP's nthreads ICV (so
 * OMP_NUM_THREADS and threadpoolctl control it), capped at the processors
 * available and FC_MAX_THREADS; 1 without OpenMP or in a forked child. */
int fc_max_threads(void);
/* The processors this process may run on (at least 1). */
int fc_num_procs(void);
int fc_openmp_enabled(void);
/* Set by the Python layer in a forked child: the kernels then stay on the
 * calling thread, because GNU libgomp's pool does not survive fork(). */
void fc_set_serial_only(int on);
int fc_serial_only(void);
FC_API_END

/* Whether a call over `work` elements should open a parallel region. */
int fc_use_parallel(int64_t work);
/* Runs fn(ctx, i) once for every i in [0, n), on the calling thread and up to
 * fc_max_threads() - 1 helper threads, when work >= FC_POOL_MIN; serially
 * otherwise. Returns when every call has completed and no helper uses ctx.
 * Unlike an OpenMP parallel region, the caller never waits for a helper that
 * has not started: the threads take items from a shared counter, so on a
 * loaded machine a helper that does not get a core in time simply takes no
 * item (the caller waits only for items a helper has already taken). Results
 * must not depend on which thread ran which item (store per-item results and
 * combine them in item order). Calls from several threads at once are safe
 * (all but one run serially). */
typedef void (*fc_item_fn)(void *ctx, int64_t i);
/* Whether fc_parallel_for(n, fn, ctx, work) may use helper threads. */
int fc_pool_parallel(int64_t work);
void fc_parallel_for(int64_t n, fc_item_fn fn, void *ctx, int64_t work);

#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_THREADS_H */
