#include "fc_common.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int fc_serial_flag = 0;

/* Every extension module links its own copy of this file (the kernels
 * library is static), so fc_serial_flag alone would keep only the module
 * whose set_serial_only was called serial: a forked child then hangs in the
 * first parallel region of another module (libgomp waits for the parent's
 * pool workers, which the child does not have). The OpenMP nthreads ICV
 * lives in the one OpenMP runtime all modules share and is per thread: set
 * to 1 on the calling thread (a forked child's only thread), every module's
 * fc_use_parallel() says no and regions run as 1-thread teams, which never
 * touch the old pool. Threads the child starts later get fresh pools. */
#ifdef _OPENMP
static int fc_saved_threads = 0;
#endif
void fc_set_serial_only(int on) {
#ifdef _OPENMP
    if (on && !fc_serial_flag) {
        fc_saved_threads = omp_get_max_threads();
        omp_set_num_threads(1);
    } else if (!on && fc_serial_flag && fc_saved_threads > 0) {
        omp_set_num_threads(fc_saved_threads);
    }
#endif
    fc_serial_flag = on ? 1 : 0;
}
int fc_serial_only(void) { return fc_serial_flag; }

int fc_openmp_enabled(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fc_max_threads(void) {
#ifdef _OPENMP
    if (fc_serial_flag) return 1;
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int fc_use_parallel(int64_t work) {
    return work >= FC_PARALLEL_MIN && fc_max_threads() > 1;
}

/* ------------------------------------------------------------------------- */
/* fc_parallel_for: a small pool of helper threads (POSIX threads).           */
#if (defined(__unix__) || defined(__APPLE__)) && !defined(FASTCLIP_NO_POOL)
#include <pthread.h>
#include <sched.h>
#include <time.h>

#define FC_POOL_MAX 63

static pthread_mutex_t fc_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t fc_pool_busy = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fc_pool_cv_job = PTHREAD_COND_INITIALIZER;
static pthread_cond_t fc_pool_cv_left = PTHREAD_COND_INITIALIZER;
static int fc_pool_started = 0;    /* helpers created (under fc_pool_mu) */
static int fc_pool_forked = 0;     /* set in a forked child: no helpers there */
static int fc_pool_atfork = 0;
/* the current job (fields written under fc_pool_mu) */
static fc_item_fn fc_job_fn;
static void *fc_job_ctx;
static int64_t fc_job_n;
static int fc_job_helpers;         /* helpers allowed to take part */
static uint64_t fc_job_gen = 0;
static int fc_job_open = 0;
static int fc_job_inside = 0;      /* helpers currently inside the job */
static int64_t fc_job_next, fc_job_done; /* atomics */

static void fc_pool_child(void) { fc_pool_forked = 1; }

static void fc_run_items(fc_item_fn fn, void *ctx, int64_t n) {
    int64_t mine = 0;
    for (;;) {
        int64_t i = __atomic_fetch_add(&fc_job_next, 1, __ATOMIC_ACQ_REL);
        if (i >= n) break;
        fn(ctx, i);
        mine++;
    }
    __atomic_fetch_add(&fc_job_done, mine, __ATOMIC_ACQ_REL);
}

#ifndef FC_SPIN_NS
#define FC_SPIN_NS 200000 /* how long an idle helper polls for the next job */
#endif
static inline void fc_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
static int64_t fc_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
/* Polls (without the lock) until a job newer than `seen` is posted or FC_SPIN_NS
 * have passed: kernels come in pairs (a norm pass, then the scaling pass) and
 * waking a sleeping thread costs tens of microseconds. Yields between polls, so
 * that a thread sharing this CPU is never held up by the polling. */
static void fc_poll_for_job(uint64_t seen) {
    const int64_t t0 = fc_now_ns();
    for (;;) {
        for (int k = 0; k < 16; k++) {
            if (__atomic_load_n(&fc_job_gen, __ATOMIC_ACQUIRE) != seen) return;
            fc_cpu_relax();
        }
        sched_yield();
        if (fc_now_ns() - t0 > FC_SPIN_NS) return;
    }
}

static void *fc_helper_main(void *arg) {
    const int index = (int)(intptr_t)arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&fc_pool_mu);
    for (;;) {
        while (!(fc_job_open && fc_job_gen != seen && index < fc_job_helpers)) {
            if (fc_job_open && fc_job_gen != seen) seen = fc_job_gen; /* not for us */
            pthread_cond_wait(&fc_pool_cv_job, &fc_pool_mu);
        }
        seen = fc_job_gen;
        fc_item_fn fn = fc_job_fn;
        void *ctx = fc_job_ctx;
        int64_t n = fc_job_n;
        __atomic_add_fetch(&fc_job_inside, 1, __ATOMIC_ACQ_REL);
        pthread_mutex_unlock(&fc_pool_mu);
        fc_run_items(fn, ctx, n);
        pthread_mutex_lock(&fc_pool_mu);
        if (__atomic_sub_fetch(&fc_job_inside, 1, __ATOMIC_ACQ_REL) == 0)
            pthread_cond_signal(&fc_pool_cv_left);
        pthread_mutex_unlock(&fc_pool_mu);
        fc_poll_for_job(seen);
        pthread_mutex_lock(&fc_pool_mu);
    }
    return NULL;
}

/* Creates helpers up to `want` (under fc_pool_mu); returns how many exist. */
static int fc_pool_grow(int want) {
    if (want > FC_POOL_MAX) want = FC_POOL_MAX;
    if (!fc_pool_atfork) {
        pthread_atfork(NULL, NULL, fc_pool_child);
        fc_pool_atfork = 1;
    }
    while (fc_pool_started < want) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, fc_helper_main, (void *)(intptr_t)fc_pool_started);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        fc_pool_started++;
    }
    return fc_pool_started;
}

int fc_pool_parallel(int64_t work) {
    return work >= FC_POOL_MIN && fc_max_threads() > 1 && !fc_pool_forked;
}

void fc_parallel_for(int64_t n, fc_item_fn fn, void *ctx, int64_t work) {
    int helpers = (n > 1 && fc_pool_parallel(work)) ? fc_max_threads() - 1 : 0;
    if (helpers > 0 && pthread_mutex_trylock(&fc_pool_busy) != 0) helpers = 0;
    if (helpers <= 0) {
        for (int64_t i = 0; i < n; i++) fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&fc_pool_mu);
    helpers = fc_pool_grow(helpers) < helpers ? fc_pool_started : helpers;
    fc_job_fn = fn;
    fc_job_ctx = ctx;
    fc_job_n = n;
    fc_job_helpers = helpers;
    __atomic_store_n(&fc_job_next, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&fc_job_done, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&fc_job_gen, fc_job_gen + 1, __ATOMIC_RELEASE);
    fc_job_open = 1;
    pthread_cond_broadcast(&fc_pool_cv_job);
    pthread_mutex_unlock(&fc_pool_mu);

    fc_run_items(fn, ctx, n);
    /* only items a helper has already taken remain: they are being run now */
    for (int spins = 0; __atomic_load_n(&fc_job_done, __ATOMIC_ACQUIRE) < n; spins++) {
        if (spins > 64) sched_yield();
    }
    pthread_mutex_lock(&fc_pool_mu);
    fc_job_open = 0; /* a helper waking up from now on finds nothing to do */
    if (__atomic_load_n(&fc_job_inside, __ATOMIC_ACQUIRE) > 0) {
        /* helpers still inside have no item left and are about to leave: poll
         * for them rather than sleep (a wake-up costs tens of microseconds) */
        pthread_mutex_unlock(&fc_pool_mu);
        for (int spins = 0; __atomic_load_n(&fc_job_inside, __ATOMIC_ACQUIRE) > 0; spins++) {
            if (spins > 64) sched_yield();
            else fc_cpu_relax();
        }
        pthread_mutex_lock(&fc_pool_mu);
        while (__atomic_load_n(&fc_job_inside, __ATOMIC_ACQUIRE) > 0)
            pthread_cond_wait(&fc_pool_cv_left, &fc_pool_mu);
    }
    pthread_mutex_unlock(&fc_pool_mu);
    pthread_mutex_unlock(&fc_pool_busy);
}
#else
int fc_pool_parallel(int64_t work) {
    (void)work;
    return 0;
}

void fc_parallel_for(int64_t n, fc_item_fn fn, void *ctx, int64_t work) {
    (void)work;
    for (int64_t i = 0; i < n; i++) fn(ctx, i);
}
#endif

const char *fc_simd_level(void) {
#if FC_HAVE_CLONES
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) return "avx2";
    return "baseline";
#else
    return "baseline";
#endif
}

/* Canonical form of a strided view: drop unit dimensions, make strides
 * positive (moving the base pointer), sort by decreasing stride, merge
 * dimensions that tile each other. Visiting order then follows memory. */
static int fc_canonical(const fc_array *a, char **base, int64_t *shape, int64_t *strides) {
    int nd = 0;
    char *p = a->data;
    for (int k = 0; k < a->ndim; k++) {
        int64_t n = a->shape[k], s = a->strides[k];
        if (n == 1) continue;
        if (s < 0) {
            p += (n - 1) * s;
            s = -s;
        }
        shape[nd] = n;
        strides[nd] = s;
        nd++;
    }
    /* insertion sort by decreasing stride (stable: keeps C order on ties) */
    for (int i = 1; i < nd; i++) {
        int64_t n = shape[i], s = strides[i];
        int j = i - 1;
        while (j >= 0 && strides[j] < s) {
            shape[j + 1] = shape[j];
            strides[j + 1] = strides[j];
            j--;
        }
        shape[j + 1] = n;
        strides[j + 1] = s;
    }
    /* merge from the inside out */
    int out = 0;
    for (int i = 0; i < nd; i++) {
        if (out > 0 && strides[out - 1] == strides[i] * shape[i]) {
            /* previous (outer) tiles this one exactly: fold it in */
            shape[out - 1] *= shape[i];
            strides[out - 1] = strides[i];
        } else {
            shape[out] = shape[i];
            strides[out] = strides[i];
            out++;
        }
    }
    if (out == 0) {
        shape[0] = 1;
        strides[0] = fc_itemsize(a->dtype);
        out = 1;
    }
    *base = p;
    return out;
}

void fc_iter_init(fc_iter *it, const fc_array *a, int64_t start) {
    if (a->ndim == 0) {
        it->ndim = 1;
        it->base = a->data;
        it->shape[0] = a->size;
        it->strides[0] = fc_itemsize(a->dtype);
    } else {
        it->ndim = fc_canonical(a, &it->base, it->shape, it->strides);
    }
    int64_t rem = start;
    char *p = it->base;
    for (int k = it->ndim - 1; k >= 0; k--) {
        int64_t n = it->shape[k];
        it->idx[k] = rem % n;
        rem /= n;
        p += it->idx[k] * it->strides[k];
    }
    it->ptr = p;
}

void fc_iter_advance(fc_iter *it, int64_t n) {
    int k = it->ndim - 1;
    it->idx[k] += n;
    it->ptr += n * it->strides[k];
    while (k > 0 && it->idx[k] >= it->shape[k]) {
        int64_t carry = it->idx[k] / it->shape[k];
        it->ptr -= it->idx[k] * it->strides[k];
        it->idx[k] -= carry * it->shape[k];
        it->ptr += it->idx[k] * it->strides[k];
        k--;
        it->idx[k] += carry;
        it->ptr += carry * it->strides[k];
    }
}

typedef struct {
    uintptr_t lo, hi;
} fc_extent;

static void fc_extent_of(const fc_array *a, fc_extent *e) {
    uintptr_t lo = (uintptr_t)a->data, hi = (uintptr_t)a->data;
    int64_t item = fc_itemsize(a->dtype);
    if (a->size == 0) {
        e->lo = e->hi = lo;
        return;
    }
    if (a->ndim == 0) {
        hi += (uintptr_t)(a->size * item);
    } else {
        for (int k = 0; k < a->ndim; k++) {
            int64_t span = (a->shape[k] - 1) * a->strides[k];
            if (span < 0) lo -= (uintptr_t)(-span);
            else hi += (uintptr_t)span;
        }
        hi += (uintptr_t)item;
    }
    e->lo = lo;
    e->hi = hi;
}

/* bottom-up merge sort of extents by lo */
static void fc_sort_extents(fc_extent *e, fc_extent *tmp, int64_t n) {
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t s = 0; s < n; s += 2 * w) {
            int64_t m = s + w < n ? s + w : n, t = s + 2 * w < n ? s + 2 * w : n;
            int64_t i = s, j = m, k = s;
            while (i < m && j < t) tmp[k++] = (e[j].lo < e[i].lo) ? e[j++] : e[i++];
            while (i < m) tmp[k++] = e[i++];
            while (j < t) tmp[k++] = e[j++];
        }
        memcpy(e, tmp, (size_t)n * sizeof(fc_extent));
    }
}

#if defined(_MSC_VER)
#define FC_TLS __declspec(thread)
#else
#define FC_TLS __thread
#endif

/* The extents of the last list found free of overlaps, per thread: a training
 * loop clips the same arrays every step, and then the check is one comparison. */
static FC_TLS fc_extent *fc_ok_extents = NULL;
static FC_TLS int64_t fc_ok_n = 0, fc_ok_cap = 0;

static void fc_remember_ok(const fc_extent *e, int64_t n) {
    if (n > fc_ok_cap) {
        fc_extent *c = (fc_extent *)realloc(fc_ok_extents, (size_t)n * sizeof(fc_extent));
        if (!c) {
            fc_ok_n = 0;
            return;
        }
        fc_ok_extents = c;
        fc_ok_cap = n;
    }
    memcpy(fc_ok_extents, e, (size_t)n * sizeof(fc_extent));
    fc_ok_n = n;
}

int fc_extents_overlap(const fc_array *arrs, int64_t n) {
    if (n < 2) return 0;
    fc_extent *e = (fc_extent *)malloc((size_t)n * 2 * sizeof(fc_extent));
    if (!e) return -1;
    int64_t descents = 0;
    for (int64_t i = 0; i < n; i++) {
        fc_extent_of(arrs + i, e + i);
        if (i > 0 && e[i].lo < e[i - 1].lo) descents++;
    }
    if (n == fc_ok_n && memcmp(e, fc_ok_extents, (size_t)n * sizeof(fc_extent)) == 0) {
        free(e); /* the same extents as a list already found disjoint */
        return 0;
    }
    memcpy(e + n, e, (size_t)n * sizeof(fc_extent)); /* unsorted copy, remembered if ok */
    if (descents > 0) {
        /* Usually nearly in address order (arrays allocated one after the other,
         * a few reused holes): insertion sort with a budget of 8 n moves, then the
         * merge sort for whatever order is left. */
        int64_t budget = 8 * n;
        for (int64_t i = 1; i < n && budget >= 0; i++) {
            fc_extent x = e[i];
            int64_t j = i - 1;
            while (j >= 0 && e[j].lo > x.lo) {
                e[j + 1] = e[j];
                j--;
                budget--;
            }
            e[j + 1] = x;
        }
        if (budget < 0) {
            fc_extent *tmp = (fc_extent *)malloc((size_t)n * sizeof(fc_extent));
            if (!tmp) {
                free(e);
                return -1;
            }
            fc_sort_extents(e, tmp, n);
            free(tmp);
        }
    }
    int overlap = 0;
    uintptr_t maxhi = 0;
    int seen = 0;
    for (int64_t i = 0; i < n; i++) {
        if (e[i].hi == e[i].lo) continue; /* empty arrays share nothing */
        if (seen && e[i].lo < maxhi) {
            overlap = 1;
            break;
        }
        if (!seen || e[i].hi > maxhi) maxhi = e[i].hi;
        seen = 1;
    }
    if (!overlap) fc_remember_ok(e + n, n);
    free(e);
    return overlap;
}
