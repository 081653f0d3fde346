/* fastclip: CPU-feature detection (see fc_cpu.h). Each probe runs once and
 * is cached; the cache is written with relaxed atomics because every thread
 * that races to fill it computes the same value. */
#include "fc_cpu.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FC_X86_PROBES 1

/* Cached probe: 'slot' holds -1 until the first call fills it with probe(). */
static int fc_cached(int *slot, int (*probe)(void)) {
    int v = __atomic_load_n(slot, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = probe();
        __atomic_store_n(slot, v, __ATOMIC_RELAXED);
    }
    return v;
}
#else
#define FC_X86_PROBES 0
#endif

#if FC_HAVE_CLONES
static int fc_probe_avx2(void) { return __builtin_cpu_supports("avx2") ? 1 : 0; }
static int fc_avx2 = -1;
int fc_cpu_has_avx2(void) { return fc_cached(&fc_avx2, fc_probe_avx2); }
#else
int fc_cpu_has_avx2(void) { return 0; }
#endif

#if FC_HAVE_AVX512
static int fc_probe_avx512(void) { return __builtin_cpu_supports("x86-64-v4") ? 1 : 0; }
static int fc_avx512 = -1;
int fc_cpu_has_avx512(void) { return fc_cached(&fc_avx512, fc_probe_avx512); }
#else
int fc_cpu_has_avx512(void) { return 0; }
#endif

const char *fc_simd_level(void) {
    return fc_cpu_has_avx512() ? "avx512" : fc_cpu_has_avx2() ? "avx2" : "baseline";
}

enum { FC_VENDOR_OTHER = 0, FC_VENDOR_INTEL = 1, FC_VENDOR_AMD = 2 };

#if FC_X86_PROBES
static int fc_probe_vendor(void) {
    return __builtin_cpu_is("intel") ? FC_VENDOR_INTEL
           : __builtin_cpu_is("amd") ? FC_VENDOR_AMD
                                     : FC_VENDOR_OTHER;
}
static int fc_vendor = -1;
static int fc_vendor_code(void) { return fc_cached(&fc_vendor, fc_probe_vendor); }
#else
static int fc_vendor_code(void) { return FC_VENDOR_OTHER; }
#endif

const char *fc_cpu_vendor(void) {
    switch (fc_vendor_code()) {
        case FC_VENDOR_INTEL: return "intel";
        case FC_VENDOR_AMD: return "amd";
        default: return "other";
    }
}

int fc_cpu_avx512_streams(void) {
    return fc_cpu_has_avx512() && fc_vendor_code() != FC_VENDOR_INTEL;
}
