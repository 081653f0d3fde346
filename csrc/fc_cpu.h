/*
 * fastclip: CPU-feature detection, done once for the whole library, and the
 * attribute that builds SIMD clones of hot loops: GCC/Clang function
 * multi-versioning on x86-64 glibc (ifunc). Elsewhere the attribute expands to
 * nothing and the baseline code runs.
 */
#ifndef FASTCLIP_CPU_H
#define FASTCLIP_CPU_H

#include "fc_array.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FASTCLIP_SIMD_DISPATCH) && defined(__x86_64__) && defined(__linux__) && \
    defined(__GLIBC__) && (defined(__GNUC__) || defined(__clang__))
#define FC_TARGET_CLONES __attribute__((target_clones("avx2", "default")))
#define FC_HAVE_CLONES 1
#else
#define FC_TARGET_CLONES
#define FC_HAVE_CLONES 0
#endif

/* AVX-512 code: the x86-64-v4 level (AVX-512 F, BW, CD, DQ, VL), which Intel
 * (Skylake-SP and later) and AMD (Zen 4 and later) CPUs share. GCC 12 tests it
 * by feature in target_clones ("arch=x86-64-v4"); elsewhere, and in a build with
 * FASTCLIP_AVX512=OFF (FASTCLIP_NO_AVX512), the AVX-512 paths are not built.
 * FC_TARGET_CLONES_512 adds an AVX-512 clone to the AVX2 one, for arithmetic-bound
 * loops where the wider vectors pay. */
#if FC_HAVE_CLONES && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && \
    !defined(FASTCLIP_NO_AVX512)
#define FC_HAVE_AVX512 1
#define FC_TARGET_CLONES_512 \
    __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define FC_HAVE_AVX512 0
#define FC_TARGET_CLONES_512 FC_TARGET_CLONES
#endif

/* 1 when the CPU runs AVX2 code (always 0 without FC_HAVE_CLONES). */
int fc_cpu_has_avx2(void);
/* 1 when the CPU runs x86-64-v4 (AVX-512) code (always 0 without FC_HAVE_AVX512). */
int fc_cpu_has_avx512(void);
/* 1 when the hand-written memory-bound loops (clip.c's float32 sum of squares,
 * scale and clamp) take their AVX-512 versions: on AVX-512 CPUs other than
 * Intel's. On the Intel Xeon measured their AVX2 versions are 4-10% faster (512-bit
 * loads cost more there, aligned or not); on AMD Zen 5 the AVX-512 ones are
 * (bench/README.md). Arithmetic-bound loops take AVX-512 on every vendor. */
int fc_cpu_avx512_streams(void);

FC_API_BEGIN
/* Name of the SIMD level the kernels use ("avx512", "avx2", "baseline"). */
const char *fc_simd_level(void);
/* The CPU's vendor, for choices that depend on it (the BLAS): "intel", "amd" or
 * "other" (also on every non-x86 CPU). */
const char *fc_cpu_vendor(void);
FC_API_END

#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_CPU_H */
