/*
 * fastclip: shared definitions for the C99 kernels (no Python API here).
 *
 * An fc_array describes one NumPy array view: data pointer, element count,
 * dtype, and either "contiguous" (ndim == 0: C or Fortran order, the
 * elements form one dense block) or an explicit shape/strides (bytes).
 * Elementwise kernels and reductions visit elements in an order fixed by
 * the layout alone, never by the number of threads, so every result is
 * bit-identical whatever OMP_NUM_THREADS is.
 */
#ifndef FASTCLIP_COMMON_H
#define FASTCLIP_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

/* MSVC's C compiler knows `restrict` only in /std:c11 mode; `__restrict` always. */
#if defined(_MSC_VER) && !defined(__clang__) && !defined(restrict) && \
    (!defined(__STDC_VERSION__) || __STDC_VERSION__ < 199901L)
#define restrict __restrict
#endif

#define FC_MAXDIMS 64

enum { FC_FLOAT32 = 0, FC_FLOAT64 = 1 };

/* Error codes returned by kernels (0 is success). */
enum { FC_OK = 0, FC_ENOMEM = -1, FC_ENONFINITE = -2, FC_EINVAL = -3 };

typedef struct {
    char *data;
    int64_t size;            /* number of elements */
    int32_t ndim;            /* 0: dense block of `size` elements */
    int32_t dtype;           /* FC_FLOAT32 or FC_FLOAT64 */
    const int64_t *shape;    /* ndim entries (unused when ndim == 0) */
    const int64_t *strides;  /* ndim entries, in bytes */
} fc_array;

static inline int64_t fc_itemsize(int32_t dtype) { return dtype == FC_FLOAT32 ? 4 : 8; }

/* Elements per work block: reductions sum blocks in a fixed order. */
#define FC_BLOCK ((int64_t)1 << 15)
/* Below this many elements a call runs on the calling thread only: 2^20
 * elements (4 MiB of float32, ~100 us on one core). Measured on the shared
 * 2-core VM (load 5): the 670k-element MLP gradient set took 134 us with a
 * helper thread and 105 us without (waking a helper that rarely gets a core
 * costs more than it saves); the 8 x 4M set gains from one. */
#define FC_PARALLEL_MIN ((int64_t)1 << 20)
/* The same for fc_parallel_for (the clipping kernels), whose helpers poll for
 * the next job for a while before they sleep, so that a norm pass and the
 * scaling pass after it share one wake-up: 2^19 elements. Quiet 2-core VM,
 * clip_grad_norm_ of the 669,706-element gradient set of a 784-512-512-10 MLP
 * (float32, median, after a warm-up): 58 us with a helper vs 104 us alone; the
 * NumPy loop takes ~119 us. Below 2^19 a wake-up costs as much as it saves. */
#define FC_POOL_MIN ((int64_t)1 << 19)

/* Iterates a linear range of an fc_array as runs of equally strided
 * elements (one run for a dense block). */
typedef struct {
    int ndim;
    char *base;
    char *ptr;
    int64_t shape[FC_MAXDIMS];
    int64_t strides[FC_MAXDIMS];
    int64_t idx[FC_MAXDIMS];
} fc_iter;

/* Positions `it` at linear element `start` of `a` (in its canonical order:
 * unit dimensions dropped, strides made positive and sorted, mergeable
 * dimensions merged). */
void fc_iter_init(fc_iter *it, const fc_array *a, int64_t start);
/* Length of the current run and its stride in bytes. */
static inline int64_t fc_iter_run(const fc_iter *it) {
    return it->shape[it->ndim - 1] - it->idx[it->ndim - 1];
}
static inline int64_t fc_iter_stride(const fc_iter *it) { return it->strides[it->ndim - 1]; }
void fc_iter_advance(fc_iter *it, int64_t n);

/* 1 when the memory extents of two of the arrays overlap (necessary for
 * them to share an element), 0 when none do, -1 when out of memory.
 * O(n) when the arrays come in address order, O(n log n) otherwise. */
int fc_extents_overlap(const fc_array *arrs, int64_t n);

/* Threads: the number an OpenMP region may use (1 without OpenMP). */
int fc_max_threads(void);
int fc_openmp_enabled(void);
/* Set by the Python layer in a forked child: the kernels then stay on the
 * calling thread, because GNU libgomp's pool does not survive fork(). */
void fc_set_serial_only(int on);
int fc_serial_only(void);
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

/* Name of the SIMD clone the dispatcher picked ("avx2", "baseline"). */
const char *fc_simd_level(void);

/* Runtime SIMD dispatch: GCC/Clang function multi-versioning on
 * x86-64 glibc (ifunc). Elsewhere the attribute expands to nothing. */
#if defined(FASTCLIP_SIMD_DISPATCH) && defined(__x86_64__) && defined(__linux__) && \
    defined(__GLIBC__) && (defined(__GNUC__) || defined(__clang__))
#define FC_TARGET_CLONES __attribute__((target_clones("avx2", "default")))
#define FC_HAVE_CLONES 1
#else
#define FC_TARGET_CLONES
#define FC_HAVE_CLONES 0
#endif

#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_COMMON_H */
