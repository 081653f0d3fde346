/* fastclip: CPU-feature detection (see fc_cpu.h). */
#include "fc_cpu.h"

#if FC_HAVE_CLONES
static int fc_avx2 = -1;

int fc_cpu_has_avx2(void) {
    int v = __atomic_load_n(&fc_avx2, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") ? 1 : 0;
        __atomic_store_n(&fc_avx2, v, __ATOMIC_RELAXED);
    }
    return v;
}
#else
int fc_cpu_has_avx2(void) { return 0; }
#endif

#if FC_HAVE_AVX512
static int fc_avx512 = -1;

int fc_cpu_has_avx512(void) {
    int v = __atomic_load_n(&fc_avx512, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("x86-64-v4") ? 1 : 0;
        __atomic_store_n(&fc_avx512, v, __ATOMIC_RELAXED);
    }
    return v;
}
#else
int fc_cpu_has_avx512(void) { return 0; }
#endif

const char *fc_simd_level(void) {
    return fc_cpu_has_avx512() ? "avx512" : fc_cpu_has_avx2() ? "avx2" : "baseline";
}
