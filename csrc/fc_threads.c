/* fastclip: the thread count and the parallel primitive (see fc_threads.h). */
#include "fc_threads.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int fc_serial_flag = 0;

/* Set in a forked child (fastclip._fork): the pool's helpers exist only in the
 * parent, so the child runs every kernel on its calling thread. */
void fc_set_serial_only(int on) { fc_serial_flag = on ? 1 : 0; }
int fc_serial_only(void) { return fc_serial_flag; }

int fc_openmp_enabled(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fc_num_procs(void) {
#ifdef _OPENMP
    int n = omp_get_num_procs();
#else
    int n = 1;
#endif
    return n > 0 ? n : 1;
}

int fc_max_threads(void) {
#ifdef _OPENMP
    if (fc_serial_flag) return 1;
    int n = omp_get_max_threads();
    const int procs = fc_num_procs();
    if (n > procs) n = procs;
    if (n > FC_MAX_THREADS) n = FC_MAX_THREADS;
    return n > 0 ? n : 1;
#else
    return 1;
#endif
}


/* ------------------------------------------------------------------------- */
/* fc_parallel_for: a small pool of helper threads (POSIX threads).           */
#if (defined(__unix__) || defined(__APPLE__)) && !defined(FASTCLIP_NO_POOL)
#include <pthread.h>
#include <sched.h>
#include <time.h>

#define FC_POOL_MAX (FC_MAX_THREADS - 1)

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

static int fc_forked(void) { return fc_pool_forked; }

#ifdef _OPENMP
static int fc_omp_regions = 0;
/* Items on an OpenMP team instead of the pool's helpers. */
static void fc_omp_items(int64_t n, fc_item_fn fn, void *ctx, int threads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t i = 0; i < n; i++) fn(ctx, i);
}
#endif

void fc_set_openmp_regions(int on) {
#ifdef _OPENMP
    __atomic_store_n(&fc_omp_regions, on ? 1 : 0, __ATOMIC_RELAXED);
#else
    (void)on;
#endif
}

int fc_openmp_regions(void) {
#ifdef _OPENMP
    return __atomic_load_n(&fc_omp_regions, __ATOMIC_RELAXED);
#else
    return 0;
#endif
}

void fc_parallel_for(int64_t n, fc_item_fn fn, void *ctx, int parallel) {
    int helpers = (n > 1 && parallel && !fc_pool_forked) ? fc_max_threads() - 1 : 0;
    if (helpers > 0 && pthread_mutex_trylock(&fc_pool_busy) != 0) helpers = 0;
    if (helpers <= 0) {
        for (int64_t i = 0; i < n; i++) fn(ctx, i);
        return;
    }
#ifdef _OPENMP
    if (fc_openmp_regions() && !omp_in_parallel()) {
        fc_omp_items(n, fn, ctx, helpers + 1);
        pthread_mutex_unlock(&fc_pool_busy);
        return;
    }
#endif
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
static int fc_forked(void) { return 1; /* no helpers: always serial */ }

void fc_parallel_for(int64_t n, fc_item_fn fn, void *ctx, int parallel) {
    (void)parallel;
    for (int64_t i = 0; i < n; i++) fn(ctx, i);
}

void fc_set_openmp_regions(int on) { (void)on; }
int fc_openmp_regions(void) { return 0; }
#endif


int fc_parallel_worth(int64_t work, int64_t min_work) {
    return work >= min_work && fc_max_threads() > 1 && !fc_forked();
}
