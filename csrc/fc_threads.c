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
#define FC_HAVE_POOL 1
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
static unsigned char *fc_job_note; /* where items note their thread's slot, or NULL */
static int64_t fc_job_next, fc_job_done; /* atomics */
/* The slot of the running thread: 0 for every thread but the pool's helpers,
 * which hold 1, 2, ... (fc_parallel_for_noting) */
static __thread int fc_slot_tls = 0;

static void fc_pool_child(void) { fc_pool_forked = 1; }

static void fc_run_items(fc_item_fn fn, void *ctx, int64_t n, unsigned char *note) {
    int64_t mine = 0;
    const unsigned char slot = (unsigned char)fc_slot_tls;
    for (;;) {
        int64_t i = __atomic_fetch_add(&fc_job_next, 1, __ATOMIC_ACQ_REL);
        if (i >= n) break;
        fn(ctx, i);
        if (note) note[i] = slot;
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
    fc_slot_tls = index + 1;
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
        unsigned char *note = fc_job_note;
        __atomic_add_fetch(&fc_job_inside, 1, __ATOMIC_ACQ_REL);
        pthread_mutex_unlock(&fc_pool_mu);
        fc_run_items(fn, ctx, n, note);
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
/* Items on an OpenMP team instead of the pool's helpers (a team thread's slot
 * is its thread number). */
static void fc_omp_items(int64_t n, fc_item_fn fn, void *ctx, int threads, unsigned char *note) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t i = 0; i < n; i++) {
        fn(ctx, i);
        if (note) note[i] = (unsigned char)omp_get_thread_num();
    }
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

/* The slot of the calling thread: its OpenMP thread number inside a team. */
static int fc_my_slot(void) {
#ifdef _OPENMP
    if (omp_in_parallel()) return omp_get_thread_num();
#endif
    return fc_slot_tls;
}

static void fc_parallel_run(int64_t n, fc_item_fn fn, void *ctx, int parallel,
                            unsigned char *note) {
    int helpers = (n > 1 && parallel && !fc_pool_forked) ? fc_max_threads() - 1 : 0;
    if (helpers > 0 && pthread_mutex_trylock(&fc_pool_busy) != 0) helpers = 0;
    if (helpers <= 0) {
        const unsigned char slot = note ? (unsigned char)fc_my_slot() : 0;
        for (int64_t i = 0; i < n; i++) {
            fn(ctx, i);
            if (note) note[i] = slot;
        }
        return;
    }
#ifdef _OPENMP
    if (fc_openmp_regions() && !omp_in_parallel()) {
        fc_omp_items(n, fn, ctx, helpers + 1, note);
        pthread_mutex_unlock(&fc_pool_busy);
        return;
    }
#endif
    pthread_mutex_lock(&fc_pool_mu);
    helpers = fc_pool_grow(helpers) < helpers ? fc_pool_started : helpers;
    fc_job_fn = fn;
    fc_job_ctx = ctx;
    fc_job_n = n;
    fc_job_note = note;
    fc_job_helpers = helpers;
    __atomic_store_n(&fc_job_next, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&fc_job_done, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&fc_job_gen, fc_job_gen + 1, __ATOMIC_RELEASE);
    fc_job_open = 1;
    pthread_cond_broadcast(&fc_pool_cv_job);
    pthread_mutex_unlock(&fc_pool_mu);

    fc_run_items(fn, ctx, n, note);
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
static int fc_my_slot(void) { return 0; }

static void fc_parallel_run(int64_t n, fc_item_fn fn, void *ctx, int parallel,
                            unsigned char *note) {
    (void)parallel;
    for (int64_t i = 0; i < n; i++) {
        fn(ctx, i);
        if (note) note[i] = 0;
    }
}

void fc_set_openmp_regions(int on) { (void)on; }
int fc_openmp_regions(void) { return 0; }
#endif


void fc_parallel_for(int64_t n, fc_item_fn fn, void *ctx, int parallel) {
    fc_parallel_run(n, fn, ctx, parallel, NULL);
}

void fc_parallel_for_noting(int64_t n, fc_item_fn fn, void *ctx, int parallel,
                            unsigned char *slot_of) {
    fc_parallel_run(n, fn, ctx, parallel, slot_of);
}

#if FC_HAVE_POOL
/* The second pass: the items grouped by slot (in item order within a slot) and,
 * per slot, one word holding the range of positions not yet taken: the next
 * position from the start (taken by other slots) in the high half, one past
 * the next from the end (taken by the slot's own thread) in the low half, so
 * that either end is taken with one compare-and-swap. */
typedef struct {
    fc_item_fn fn;
    void *ctx;
    const int64_t *order;
    uint64_t range[FC_MAX_THREADS];
    int nslots;
} fc_again_job;

/* Takes the position at the end (own) or at the start of a slot's range; -1
 * when it is empty. */
static int64_t fc_take(uint64_t *word, int own) {
    uint64_t v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    for (;;) {
        const uint64_t lo = v >> 32, hi = v & 0xFFFFFFFFu;
        if (lo >= hi) return -1;
        const uint64_t nv = own ? (lo << 32) | (hi - 1) : ((lo + 1) << 32) | hi;
        if (__atomic_compare_exchange_n(word, &v, nv, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return (int64_t)(own ? hi - 1 : lo);
    }
}

/* One thread's share: its own slot's items from the latest, then the other
 * slots' from the earliest, until none is left (the first call on any thread
 * drains everything; later ones return at once). */
static void fc_again_item(void *c, int64_t k) {
    fc_again_job *j = (fc_again_job *)c;
    (void)k;
    const int s = fc_my_slot();
    int64_t pos;
    if (s < j->nslots)
        while ((pos = fc_take(&j->range[s], 1)) >= 0) j->fn(j->ctx, j->order[pos]);
    for (int r = 1; r <= j->nslots; r++) {
        const int o = (s + r) % j->nslots;
        while ((pos = fc_take(&j->range[o], 0)) >= 0) j->fn(j->ctx, j->order[pos]);
    }
}

/* A noted slot as an index below FC_MAX_THREADS. */
static inline int fc_slot_index(unsigned char s) {
    return s < FC_MAX_THREADS ? s : FC_MAX_THREADS - 1;
}

void fc_parallel_for_again(int64_t n, fc_item_fn fn, void *ctx, int parallel,
                           const unsigned char *slot_of) {
    int64_t *order = NULL;
    if (parallel && n > 1 && n <= (int64_t)UINT32_MAX)
        order = (int64_t *)malloc((size_t)n * sizeof(int64_t));
    if (!order) { /* serial (or no memory for the plan): the last item first */
        for (int64_t i = n - 1; i >= 0; i--) fn(ctx, i);
        return;
    }
    fc_again_job j;
    int64_t start[FC_MAX_THREADS + 1] = {0};
    int nslots = 1;
    for (int64_t i = 0; i < n; i++) {
        const int s = fc_slot_index(slot_of[i]);
        start[s + 1]++;
        if (s + 1 > nslots) nslots = s + 1;
    }
    for (int s = 0; s < nslots; s++) start[s + 1] += start[s];
    for (int s = 0; s < nslots; s++) j.range[s] = ((uint64_t)start[s] << 32) | (uint64_t)start[s];
    for (int64_t i = 0; i < n; i++) { /* counting sort: item order kept within a slot */
        const int s = fc_slot_index(slot_of[i]);
        const uint64_t end = j.range[s] & 0xFFFFFFFFu;
        order[end] = i;
        j.range[s] = (j.range[s] & ~(uint64_t)0xFFFFFFFFu) | (end + 1);
    }
    j.fn = fn;
    j.ctx = ctx;
    j.order = order;
    j.nslots = nslots;
    const int threads = fc_max_threads();
    fc_parallel_run(threads > nslots ? threads : nslots, fc_again_item, &j, parallel, NULL);
    free(order);
}
#else
void fc_parallel_for_again(int64_t n, fc_item_fn fn, void *ctx, int parallel,
                           const unsigned char *slot_of) {
    (void)parallel;
    (void)slot_of;
    for (int64_t i = n - 1; i >= 0; i--) fn(ctx, i);
}
#endif

typedef struct {
    int64_t n, calls, *runs, *order;
    int pass;
} fc_trace;

static void fc_trace_item(void *c, int64_t i) {
    fc_trace *t = (fc_trace *)c;
    __atomic_fetch_add(&t->runs[t->pass * t->n + i], 1, __ATOMIC_RELAXED);
    if (t->pass == 1) t->order[i] = __atomic_fetch_add(&t->calls, 1, __ATOMIC_RELAXED);
}

void fc_two_pass_trace(int64_t n, int parallel, const unsigned char *given,
                       unsigned char *slot_of, int64_t *runs, int64_t *order) {
    fc_trace t = {n, 0, runs, order, 0};
    fc_parallel_for_noting(n, fc_trace_item, &t, parallel, slot_of);
    t.pass = 1;
    fc_parallel_for_again(n, fc_trace_item, &t, parallel, given ? given : slot_of);
}

int fc_parallel_worth(int64_t work, int64_t min_work) {
    return work >= min_work && fc_max_threads() > 1 && !fc_forked();
}
