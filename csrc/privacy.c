/* fastclip: per-example gradient kernels (see privacy.h). */
#include "privacy.h"

#include "fc_blocks.h"
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FC_T float
#define FC_SUF f32
#include "privacy_impl.h"
#undef FC_T
#undef FC_SUF

#define FC_T double
#define FC_SUF f64
#include "privacy_impl.h"
#undef FC_T
#undef FC_SUF

/* Rows per work item of the norm pass, columns per item of the sum pass. */
#define ROWS_PER_ITEM 16
#define COLS_PER_ITEM 2048

typedef struct {
    const fc_rows *arrays;
    int64_t n, items_per_array;
    double *out;
} ssq_task;

static void item_ssq(void *ctx, int64_t it) {
    const ssq_task *t = (const ssq_task *)ctx;
    const int64_t k = it / t->items_per_array;
    const fc_rows *a = &t->arrays[k];
    const int64_t r0 = (it % t->items_per_array) * ROWS_PER_ITEM;
    const int64_t r1 = r0 + ROWS_PER_ITEM < a->rows ? r0 + ROWS_PER_ITEM : a->rows;
    for (int64_t i = r0; i < r1; i++) {
        const char *row = a->data + i * a->row_stride;
        t->out[k * a->rows + i] = a->dtype == FC_FLOAT32
                                      ? row_ssq_f32(row, a->cols, a->col_stride)
                                      : row_ssq_f64(row, a->cols, a->col_stride);
    }
}

static int64_t total_work(const fc_rows *arrays, int64_t n) {
    int64_t work = 0;
    for (int64_t k = 0; k < n; k++) work += arrays[k].rows * arrays[k].cols;
    return work;
}

int fc_row_sqnorms(const fc_rows *arrays, int64_t n, double *out) {
    if (n <= 0) return FC_OK;
    const int64_t batch = arrays[0].rows;
    ssq_task t = {arrays, n, (batch + ROWS_PER_ITEM - 1) / ROWS_PER_ITEM, out};
    if (t.items_per_array == 0) return FC_OK;
    const int par = fc_pool_parallel(total_work(arrays, n));
    fc_parallel_for(n * t.items_per_array, item_ssq, &t, par);
    return FC_OK;
}

typedef struct {
    const fc_rows *arrays;
    const double *w;
    int inplace;
    char *const *sums;
    const int64_t *first_item; /* n + 1 prefix offsets of the items of each array */
    int64_t n;
} wsum_task;

static void item_wsum(void *ctx, int64_t it) {
    const wsum_task *t = (const wsum_task *)ctx;
    int64_t k = 0;
    while (t->first_item[k + 1] <= it) k++;
    const fc_rows *a = &t->arrays[k];
    const int64_t c0 = (it - t->first_item[k]) * COLS_PER_ITEM;
    const int64_t c1 = c0 + COLS_PER_ITEM < a->cols ? c0 + COLS_PER_ITEM : a->cols;
    if (t->sums == NULL) {
        if (a->dtype == FC_FLOAT32) cols_scale_f32(a, t->w + k * a->rows, c0, c1);
        else cols_scale_f64(a, t->w + k * a->rows, c0, c1);
        return;
    }
    double acc[COLS_PER_ITEM];
    if (a->dtype == FC_FLOAT32)
        cols_wsum_f32(a, t->w + k * a->rows, t->inplace, (float *)t->sums[k], c0, c1, acc);
    else
        cols_wsum_f64(a, t->w + k * a->rows, t->inplace, (double *)t->sums[k], c0, c1, acc);
}

int fc_row_weighted_sum(const fc_rows *arrays, int64_t n, const double *w, int inplace,
                        char *const *sums) {
    if (n <= 0) return FC_OK;
    if (sums == NULL && !inplace) return FC_EINVAL;
    int64_t *first = (int64_t *)malloc((size_t)(n + 1) * sizeof(int64_t));
    if (first == NULL) return FC_ENOMEM;
    first[0] = 0;
    for (int64_t k = 0; k < n; k++)
        first[k + 1] = first[k] + (arrays[k].cols + COLS_PER_ITEM - 1) / COLS_PER_ITEM;
    wsum_task t = {arrays, w, inplace, sums, first, n};
    if (first[n] > 0)
        fc_parallel_for(first[n], item_wsum, &t, fc_pool_parallel(total_work(arrays, n)));
    free(first);
    return FC_OK;
}

/* ---- Gaussian noise ----------------------------------------------------------- */

/* The noise loops are arithmetic-bound (64-bit multiplies of the hash, two
 * polynomials, a division and a square root per pair): an AVX-512 clone (with
 * AVX-512DQ's 64-bit multiply) besides the AVX2 one (fc_cpu.h). The same operations in the
 * same order in every clone, so every clone gives the same bits. The loop bodies have
 * no branches (selects are bit masks) so that GCC vectorises the AVX2 clone as well. */
#define FC_NOISE_CLONES FC_TARGET_CLONES_512

/* SplitMix64's output for counter value c of stream `seed` (Steele et al., 2014). */
static inline uint64_t mix64(uint64_t seed, uint64_t c) {
    uint64_t z = seed + (c + 1) * UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static inline double bits_to_double(uint64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

/* x as a double, exactly, for x < 2^52 (integer operations only: vectorises
 * without 64-bit integer conversions, which AVX2 lacks). */
static inline double small_to_double(uint64_t x) {
    return bits_to_double(x | UINT64_C(0x4330000000000000)) - 4503599627370496.0;
}

static inline uint64_t double_to_bits(double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

#define LN2 0.693147180559945309417232121458
#define SQRT2 1.41421356237309504880168872421
#define PI_2 1.57079632679489661923132169164

/* log(u) for u in (0, 1], a normal double: u = m 2^e with m in [sqrt(1/2), sqrt(2)),
 * log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.1716, by its series to s^21.
 * The exponent is read as a double (2^52 + biased exponent, minus 2^52 + 1023) so
 * that the whole function is branch-free and vectorises. */
static inline double log_unit(double u) {
    uint64_t b = double_to_bits(u);
    uint64_t mant = b & UINT64_C(0x000FFFFFFFFFFFFF);
    double e = small_to_double(b >> 52) - 1023.0;
    double m = bits_to_double(mant | UINT64_C(0x3FF0000000000000));
    /* 1.0 when m >= sqrt(2) (compared on the mantissa bits), else 0.0: no branch */
    double big = small_to_double((uint64_t)(mant >= UINT64_C(0x6A09E667F3BCD)));
    m = m * (1.0 - 0.5 * big);
    e = e + big;
    double s = (m - 1.0) / (m + 1.0), s2 = s * s;
    double p = 1.0 / 21.0;
    p = p * s2 + 1.0 / 19.0;
    p = p * s2 + 1.0 / 17.0;
    p = p * s2 + 1.0 / 15.0;
    p = p * s2 + 1.0 / 13.0;
    p = p * s2 + 1.0 / 11.0;
    p = p * s2 + 1.0 / 9.0;
    p = p * s2 + 1.0 / 7.0;
    p = p * s2 + 1.0 / 5.0;
    p = p * s2 + 1.0 / 3.0;
    p = p * s2 + 1.0;
    return e * LN2 + 2.0 * s * p;
}

/* sin(r), cos(r) for |r| <= pi/4 by their Taylor series (to r^19 and r^20). */
static inline void sincos_small(double r, double *sn, double *cs) {
    double r2 = r * r;
    double sp = -1.0 / 121645100408832000.0;    /* -1/19! */
    sp = sp * r2 + 1.0 / 355687428096000.0;     /* 1/17! */
    sp = sp * r2 - 1.0 / 1307674368000.0;       /* 1/15! */
    sp = sp * r2 + 1.0 / 6227020800.0;          /* 1/13! */
    sp = sp * r2 - 1.0 / 39916800.0;            /* 1/11! */
    sp = sp * r2 + 1.0 / 362880.0;              /* 1/9! */
    sp = sp * r2 - 1.0 / 5040.0;
    sp = sp * r2 + 1.0 / 120.0;
    sp = sp * r2 - 1.0 / 6.0;
    sp = sp * r2 + 1.0;
    double cp = 1.0 / 2432902008176640000.0;    /* 1/20! */
    cp = cp * r2 - 1.0 / 6402373705728000.0;    /* 1/18! */
    cp = cp * r2 + 1.0 / 20922789888000.0;      /* 1/16! */
    cp = cp * r2 - 1.0 / 87178291200.0;         /* 1/14! */
    cp = cp * r2 + 1.0 / 479001600.0;           /* 1/12! */
    cp = cp * r2 - 1.0 / 3628800.0;             /* 1/10! */
    cp = cp * r2 + 1.0 / 40320.0;
    cp = cp * r2 - 1.0 / 720.0;
    cp = cp * r2 + 1.0 / 24.0;
    cp = cp * r2 - 0.5;
    cp = cp * r2 + 1.0;
    *sn = r * sp;
    *cs = cp;
}

/* Normals 2p and 2p+1 of the stream: Box-Muller on two 52-bit uniforms. */
static inline void normal_pair(uint64_t seed, uint64_t p, double *z0, double *z1) {
    uint64_t h1 = mix64(seed, 2 * p), h2 = mix64(seed, 2 * p + 1);
    /* u1 in (0, 1], u2 in [0, 1) */
    double u1 = 2.0 - bits_to_double((h1 >> 12) | UINT64_C(0x3FF0000000000000));
    uint64_t a = h2 >> 12; /* u2 = a 2^-52 in [0, 1) */
    double rad = sqrt(-2.0 * log_unit(u1));
    /* theta = 2 pi u2 = (k + f) pi/2 with k = round(4 u2) in 0..4 and |f| <= 1/2:
     * k = round(a 2^-50), f 2^50 = a - k 2^50, in integers */
    uint64_t k = (a + (UINT64_C(1) << 49)) >> 50;
    double f = small_to_double(a - (k << 50) + (UINT64_C(1) << 51)) - 2251799813685248.0;
    double r = (f * 0x1p-50) * PI_2;
    double sn, cs;
    sincos_small(r, &sn, &cs);
    /* quadrant weights (0.0 or 1.0; k == 0 and k == 4 are the same quadrant) */
    double q1 = small_to_double((uint64_t)(k == 1)), q2 = small_to_double((uint64_t)(k == 2));
    double q3 = small_to_double((uint64_t)(k == 3));
    double q0 = 1.0 - q1 - q2 - q3;
    double s_t = q0 * sn + q1 * cs - q2 * sn - q3 * cs;
    double c_t = q0 * cs - q1 * sn - q2 * cs + q3 * sn;
    *z0 = rad * c_t;
    *z1 = rad * s_t;
}

/* ---- float32 outputs: one hash per pair, float32 arithmetic ------------------- */

static inline float bits_to_float(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static inline uint32_t float_to_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* x as a float, exactly, for x < 2^23 (integer operations only). */
static inline float small_to_float(uint32_t x) {
    return bits_to_float(x | UINT32_C(0x4B000000)) - 8388608.0f;
}

#define LN2F 0x1.62e430p-1f   /* log(2) rounded to float */
#define PI_2F 0x1.921fb6p+0f  /* pi/2 rounded to float */

/* log(u) for a normal float u in (0, 1], as log_unit with float32 arithmetic; the
 * atanh series to s^9 (|s| < 0.1716: the next term is below 2e-9 relative). */
static inline float log_unit_f32(float u) {
    uint32_t b = float_to_bits(u);
    uint32_t mant = b & UINT32_C(0x007FFFFF);
    float e = small_to_float(b >> 23) - 127.0f;
    /* m >= sqrt(2): halve m (one less in its exponent field) and add 1 to e; integer
     * selects rather than branches, so that the AVX2 clone vectorises too */
    uint32_t big = (uint32_t)(mant >= UINT32_C(0x3504F3));
    float m = bits_to_float((mant | UINT32_C(0x3F800000)) - (big << 23));
    e = e + small_to_float(big);
    float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    float p = 0x1.c71c72p-4f;   /* 1/9 */
    p = p * s2 + 0x1.24924ap-3f; /* 1/7 */
    p = p * s2 + 0x1.99999ap-3f; /* 1/5 */
    p = p * s2 + 0x1.555556p-2f; /* 1/3 */
    p = p * s2 + 1.0f;
    return e * LN2F + 2.0f * s * p;
}

/* Normals 2p and 2p+1 for float32 outputs: Box-Muller on one SplitMix64 output
 * (output p of the stream): its low 40 bits give u1 = 1 - x 2^-40 in (0, 1] (so
 * |z| reaches 7.4), its high 24 bits the angle. log, sin and cos by fixed
 * polynomials in float32 arithmetic, accurate to the float32 result. */
static inline void normal_pair_f32(uint64_t seed, uint64_t p, float *z0, float *z1) {
    uint64_t h = mix64(seed, p);
    uint64_t x = h & ((UINT64_C(1) << 40) - 1);
    float u1 = (float)(small_to_double((UINT64_C(1) << 40) - x) * 0x1p-40);
    float rad = sqrtf(-2.0f * log_unit_f32(u1));
    /* theta = 2 pi a 2^-24 = (k + f) pi/2, k = round(a 2^-22) in 0..4, |f| <= 1/2 */
    uint32_t a = (uint32_t)(h >> 40);
    uint32_t k = (a + (UINT32_C(1) << 21)) >> 22;
    float r = ((float)((int32_t)a - (int32_t)(k << 22)) * 0x1p-22f) * PI_2F;
    float r2 = r * r;
    float sp = 0x1.71de3ap-19f;     /* 1/9! */
    sp = sp * r2 - 0x1.a01a02p-13f; /* 1/7! */
    sp = sp * r2 + 0x1.111112p-7f;  /* 1/5! */
    sp = sp * r2 - 0x1.555556p-3f;  /* 1/3! */
    sp = sp * r2 + 1.0f;
    float cp = -0x1.27e4fcp-22f;    /* 1/10! */
    cp = cp * r2 + 0x1.a01a02p-16f; /* 1/8! */
    cp = cp * r2 - 0x1.6c16c2p-10f; /* 1/6! */
    cp = cp * r2 + 0x1.555556p-5f;  /* 1/4! */
    cp = cp * r2 - 0.5f;
    cp = cp * r2 + 1.0f;
    float sn = r * sp, cs = cp;
    /* quadrant k (k == 4 is quadrant 0): cos and sin of theta are +-cs or +-sn; cs and
     * sn swap for odd k, cos is negated for k in {1, 2} ((k ^ k >> 1) & 1) and sin for
     * k in {2, 3} ((k >> 1) & 1). Bit masks rather than branches, so that the AVX2
     * clone vectorises too; the same bits as the selects of the NumPy twin. */
    uint32_t odd = UINT32_C(0) - (k & 1);
    uint32_t cm = (float_to_bits(sn) & odd) | (float_to_bits(cs) & ~odd);
    uint32_t sm = (float_to_bits(cs) & odd) | (float_to_bits(sn) & ~odd);
    float c_t = bits_to_float(cm ^ (((k ^ (k >> 1)) & 1) << 31));
    float s_t = bits_to_float(sm ^ (((k >> 1) & 1) << 31));
    *z0 = rad * c_t;
    *z1 = rad * s_t;
}

FC_NOISE_CLONES
static void gauss_pairs_f32(float *restrict out, const float *restrict add, int64_t np,
                            uint64_t seed, uint64_t p0, float std, float scale) {
    if (add) {
        for (int64_t i = 0; i < np; i++) {
            float z0, z1;
            normal_pair_f32(seed, p0 + (uint64_t)i, &z0, &z1);
            out[2 * i] = (add[2 * i] + std * z0) * scale;
            out[2 * i + 1] = (add[2 * i + 1] + std * z1) * scale;
        }
    } else {
        for (int64_t i = 0; i < np; i++) {
            float z0, z1;
            normal_pair_f32(seed, p0 + (uint64_t)i, &z0, &z1);
            out[2 * i] = (0.0f + std * z0) * scale;
            out[2 * i + 1] = (0.0f + std * z1) * scale;
        }
    }
}

/* ---- float64 outputs ---------------------------------------------------------- */

/* Pairs [p0, p0 + np) into out[2 (p - p0) ...] (np pairs, 2 np elements); `add` is
 * read when given (two loops, so that each is free of branches and vectorises). */
#define GAUSS_BODY(T)                                                                       \
    if (add) {                                                                              \
        for (int64_t i = 0; i < np; i++) {                                                  \
            double z0, z1;                                                                  \
            normal_pair(seed, p0 + (uint64_t)i, &z0, &z1);                                  \
            out[2 * i] = (T)(((double)add[2 * i] + std * z0) * scale);                      \
            out[2 * i + 1] = (T)(((double)add[2 * i + 1] + std * z1) * scale);              \
        }                                                                                   \
    } else {                                                                                \
        for (int64_t i = 0; i < np; i++) {                                                  \
            double z0, z1;                                                                  \
            normal_pair(seed, p0 + (uint64_t)i, &z0, &z1);                                  \
            out[2 * i] = (T)((0.0 + std * z0) * scale);                                     \
            out[2 * i + 1] = (T)((0.0 + std * z1) * scale);                                 \
        }                                                                                   \
    }

FC_NOISE_CLONES
static void gauss_pairs_f64(double *restrict out, const double *restrict add, int64_t np,
                            uint64_t seed, uint64_t p0, double std, double scale) {
    GAUSS_BODY(double)
}
#undef GAUSS_BODY

/* Elements [j0, j1) (j0 even) of the output: whole pairs, then an odd last element. */
static void gauss_range(void *out, const void *add, int64_t j0, int64_t j1, uint64_t seed,
                        uint64_t counter, double std, double scale, int f32) {
    int64_t np = (j1 - j0) / 2;
    uint64_t p0 = (counter + (uint64_t)j0) >> 1;
    if (f32) {
        float *o = (float *)out + j0;
        const float *a = add ? (const float *)add + j0 : NULL;
        gauss_pairs_f32(o, a, np, seed, p0, (float)std, (float)scale);
        if ((j1 - j0) & 1) {
            float z0, z1;
            int64_t j = j1 - 1;
            normal_pair_f32(seed, (counter + (uint64_t)j) >> 1, &z0, &z1);
            float av = add ? ((const float *)add)[j] : 0.0f;
            ((float *)out)[j] = (av + (float)std * z0) * (float)scale;
        }
    } else {
        double *o = (double *)out + j0;
        const double *a = add ? (const double *)add + j0 : NULL;
        gauss_pairs_f64(o, a, np, seed, p0, std, scale);
        if ((j1 - j0) & 1) {
            double z0, z1;
            int64_t j = j1 - 1;
            normal_pair(seed, (counter + (uint64_t)j) >> 1, &z0, &z1);
            double av = add ? ((const double *)add)[j] : 0.0;
            ((double *)out)[j] = (av + std * z0) * scale;
        }
    }
}

#define GAUSS_ITEM ((int64_t)1 << 14) /* even */
/* an item's sum of squares is one fc_nn_sumsq block (no nested parallel region) */
typedef char fc_gauss_item_fits_a_block[(GAUSS_ITEM <= FC_BLOCK) ? 1 : -1];

typedef struct {
    void *const *outs;
    const void *const *adds; /* NULL: no array has an addend */
    const int64_t *sizes;
    const int64_t *first_item; /* n + 1 prefix offsets of the items of each array */
    const uint64_t *counters;  /* the stream position of each array's first element */
    uint64_t seed;
    double std, scale;
    int f32;
    double *part; /* NULL, or one sum of squares per item */
} gauss_task;

static void item_gauss(void *ctx, int64_t it) {
    const gauss_task *t = (const gauss_task *)ctx;
    int64_t k = 0;
    while (t->first_item[k + 1] <= it) k++;
    const int64_t n = t->sizes[k];
    const int64_t j0 = (it - t->first_item[k]) * GAUSS_ITEM;
    const int64_t j1 = j0 + GAUSS_ITEM < n ? j0 + GAUSS_ITEM : n;
    gauss_range(t->outs[k], t->adds ? t->adds[k] : NULL, j0, j1, t->seed, t->counters[k],
                t->std, t->scale, t->f32);
    if (t->part)
        t->part[it] = t->f32 ? fc_nn_sumsq_f32((const float *)t->outs[k] + j0, j1 - j0)
                             : fc_nn_sumsq_f64((const double *)t->outs[k] + j0, j1 - j0);
}

/* Arrays k = 0..n-1 take consecutive stretches of the stream: array k starts at
 * counter + sum over j < k of sizes[j] rounded up to even (whole pairs). */
static int gaussian(void *const *outs, const void *const *adds, const int64_t *sizes,
                    int64_t n, uint64_t seed, uint64_t counter, double std, double scale,
                    int f32, double *sqnorms) {
    if (counter & 1) return FC_EINVAL;
    if (n <= 0) return FC_OK;
    int64_t *first = (int64_t *)malloc((size_t)(n + 1) * sizeof(int64_t));
    uint64_t *counters = (uint64_t *)malloc((size_t)n * sizeof(uint64_t));
    if (first == NULL || counters == NULL) {
        free(first);
        free(counters);
        return FC_ENOMEM;
    }
    int64_t total = 0;
    first[0] = 0;
    for (int64_t k = 0; k < n; k++) {
        if (sizes[k] < 0) {
            free(first);
            free(counters);
            return FC_EINVAL;
        }
        counters[k] = counter;
        counter += (uint64_t)sizes[k] + ((uint64_t)sizes[k] & 1);
        first[k + 1] = first[k] + (sizes[k] + GAUSS_ITEM - 1) / GAUSS_ITEM;
        total += sizes[k];
    }
    double *part = NULL;
    if (sqnorms && first[n] > 0) {
        part = (double *)malloc((size_t)first[n] * sizeof(double));
        if (part == NULL) {
            free(first);
            free(counters);
            return FC_ENOMEM;
        }
    }
    gauss_task t = {outs, adds, sizes, first, counters, seed, std, scale, f32, part};
    if (first[n] > 0) fc_parallel_for(first[n], item_gauss, &t, fc_pool_parallel(8 * total));
    if (sqnorms) { /* items in order: the same sums whatever the thread count */
        for (int64_t k = 0; k < n; k++) {
            double s = 0.0;
            for (int64_t it = first[k]; it < first[k + 1]; it++) s += part[it];
            sqnorms[k] = s;
        }
    }
    free(part);
    free(first);
    free(counters);
    return FC_OK;
}

int fc_gaussian_f32(float *out, const float *add, int64_t n, uint64_t seed, uint64_t counter,
                    double std, double scale) {
    void *o = out;
    const void *a = add;
    return gaussian(&o, add ? &a : NULL, &n, 1, seed, counter, std, scale, 1, NULL);
}

int fc_gaussian_f64(double *out, const double *add, int64_t n, uint64_t seed,
                    uint64_t counter, double std, double scale) {
    void *o = out;
    const void *a = add;
    return gaussian(&o, add ? &a : NULL, &n, 1, seed, counter, std, scale, 0, NULL);
}

int fc_gaussian_arrays(void *const *outs, const void *const *adds, const int64_t *sizes,
                       int64_t n, int f32, uint64_t seed, uint64_t counter, double std,
                       double scale, double *sqnorms) {
    return gaussian(outs, adds, sizes, n, seed, counter, std, scale, f32 ? 1 : 0, sqnorms);
}
