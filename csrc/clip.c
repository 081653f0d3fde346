/* fastclip: gradient-clipping kernels (see clip.h). */
#include "clip.h"

#include <math.h>
#include <string.h>

#define FC_T float
#define FC_SUF f32
#define FC_TRACK_MAX 0
#define FC_BITS int32_t
#define FC_INF_BITS INT32_C(0x7F800000)
#define FC_ABS_BITS INT32_C(0x7FFFFFFF)
#include "clip_impl.h"
#undef FC_T
#undef FC_SUF
#undef FC_TRACK_MAX
#undef FC_BITS
#undef FC_INF_BITS
#undef FC_ABS_BITS

#define FC_T double
#define FC_SUF f64
#define FC_TRACK_MAX 1
#define FC_BITS int64_t
#define FC_INF_BITS INT64_C(0x7FF0000000000000)
#define FC_ABS_BITS INT64_C(0x7FFFFFFFFFFFFFFF)
#include "clip_impl.h"
#undef FC_T
#undef FC_SUF
#undef FC_TRACK_MAX
#undef FC_BITS
#undef FC_INF_BITS
#undef FC_ABS_BITS

/* float32 sum of squares, AVX2 by hand: the compiler's version of ssq_dense_f32
 * keeps its 32 lanes in a stack array (cleared and reduced through memory on
 * every call), which costs as much as the data for the short arrays of a real
 * model (biases, 256-element layers). Same arithmetic as the generic version,
 * lane for lane and in the same reduction order, so the result is identical. */
#if FC_HAVE_CLONES
#include <immintrin.h>
#define FC_SQ_ADD(acc, p) \
    do { __m256d d_ = _mm256_cvtps_pd(_mm_loadu_ps(p)); acc = _mm256_add_pd(acc, _mm256_mul_pd(d_, d_)); } while (0)
__attribute__((target("avx2"))) static void ssq_f32_avx2(const float *x, int64_t n, double *s_out) {
    int64_t i = 0;
    double st = 0;
    if (n >= 32) {
        __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
                a7 = a0;
        for (; i + 32 <= n; i += 32) {
            FC_SQ_ADD(a0, x + i);
            FC_SQ_ADD(a1, x + i + 4);
            FC_SQ_ADD(a2, x + i + 8);
            FC_SQ_ADD(a3, x + i + 12);
            FC_SQ_ADD(a4, x + i + 16);
            FC_SQ_ADD(a5, x + i + 20);
            FC_SQ_ADD(a6, x + i + 24);
            FC_SQ_ADD(a7, x + i + 28);
        }
        /* the generic tree: s[j] += s[j + w] for w = 16, 8, 4, 2, 1 */
        a0 = _mm256_add_pd(a0, a4);
        a1 = _mm256_add_pd(a1, a5);
        a2 = _mm256_add_pd(a2, a6);
        a3 = _mm256_add_pd(a3, a7);
        a0 = _mm256_add_pd(a0, a2);
        a1 = _mm256_add_pd(a1, a3);
        a0 = _mm256_add_pd(a0, a1);
        __m128d lo = _mm256_castpd256_pd128(a0), hi = _mm256_extractf128_pd(a0, 1);
        __m128d h = _mm_add_pd(lo, hi);              /* s[0] + s[2], s[1] + s[3] */
        st = _mm_cvtsd_f64(h) + _mm_cvtsd_f64(_mm_unpackhi_pd(h, h));
    }
    for (; i < n; i++) {
        double v = (double)x[i];
        st += v * v;
    }
    *s_out = st;
}
#undef FC_SQ_ADD

/* x *= c, AVX2 by hand (no alignment peeling: short arrays are common). */
__attribute__((target("avx2"))) static void scale_f32_avx2(float *x, int64_t n, float c) {
    const __m256 vc = _mm256_set1_ps(c);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        __m256 v2 = _mm256_loadu_ps(x + i + 16), v3 = _mm256_loadu_ps(x + i + 24);
        _mm256_storeu_ps(x + i, _mm256_mul_ps(v0, vc));
        _mm256_storeu_ps(x + i + 8, _mm256_mul_ps(v1, vc));
        _mm256_storeu_ps(x + i + 16, _mm256_mul_ps(v2, vc));
        _mm256_storeu_ps(x + i + 24, _mm256_mul_ps(v3, vc));
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vc));
    for (; i < n; i++) x[i] = x[i] * c;
}

/* x = clamp(x, lo, hi), AVX2 by hand. max_ps(lo, v) is `v < lo ? lo : v` and
 * min_ps(hi, v) is `v > hi ? hi : v` exactly (NaN and signed zeros included:
 * both return their second operand when the comparison is false). */
__attribute__((target("avx2"))) static void clamp_f32_avx2(float *x, int64_t n, float lo,
                                                           float hi) {
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    int64_t i = 0;
#define FC_CLAMP8(p) _mm256_min_ps(vhi, _mm256_max_ps(vlo, _mm256_loadu_ps(p)))
    for (; i + 32 <= n; i += 32) {
        __m256 v0 = FC_CLAMP8(x + i), v1 = FC_CLAMP8(x + i + 8);
        __m256 v2 = FC_CLAMP8(x + i + 16), v3 = FC_CLAMP8(x + i + 24);
        _mm256_storeu_ps(x + i, v0);
        _mm256_storeu_ps(x + i + 8, v1);
        _mm256_storeu_ps(x + i + 16, v2);
        _mm256_storeu_ps(x + i + 24, v3);
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, FC_CLAMP8(x + i));
#undef FC_CLAMP8
    for (; i < n; i++) {
        float v = x[i];
        v = v < lo ? lo : v;
        x[i] = v > hi ? hi : v;
    }
}

#if FC_HAVE_AVX512
/* The same three kernels with AVX-512 vectors. The sum of squares keeps the
 * generic version's 32 float64 lanes (four 8-lane registers) and its reduction
 * tree, so the result is the same bits as the AVX2 and generic versions. */
#define FC_SQ_ADD16(lo, hi, p)                                                  \
    do {                                                                        \
        __m512 v_ = _mm512_loadu_ps(p);                                         \
        __m512d l_ = _mm512_cvtps_pd(_mm512_castps512_ps256(v_));               \
        __m512d h_ = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(   \
            _mm512_castps_pd(v_), 1)));                                         \
        lo = _mm512_add_pd(lo, _mm512_mul_pd(l_, l_));                          \
        hi = _mm512_add_pd(hi, _mm512_mul_pd(h_, h_));                          \
    } while (0)
__attribute__((target("arch=x86-64-v4"))) static void ssq_f32_avx512(const float *x, int64_t n,
                                                                      double *s_out) {
    int64_t i = 0;
    double st = 0;
    if (n >= 32) {
        __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
        for (; i + 32 <= n; i += 32) {
            FC_SQ_ADD16(a0, a1, x + i);      /* lanes 0-7, 8-15 */
            FC_SQ_ADD16(a2, a3, x + i + 16); /* lanes 16-23, 24-31 */
        }
        /* s[j] += s[j + w] for w = 16, 8, then the 8 lanes as in the AVX2 version */
        a0 = _mm512_add_pd(a0, a2);
        a1 = _mm512_add_pd(a1, a3);
        a0 = _mm512_add_pd(a0, a1);
        __m256d q = _mm256_add_pd(_mm512_castpd512_pd256(a0), _mm512_extractf64x4_pd(a0, 1));
        __m128d lo = _mm256_castpd256_pd128(q), hi = _mm256_extractf128_pd(q, 1);
        __m128d h = _mm_add_pd(lo, hi);
        st = _mm_cvtsd_f64(h) + _mm_cvtsd_f64(_mm_unpackhi_pd(h, h));
    }
    for (; i < n; i++) {
        double v = (double)x[i];
        st += v * v;
    }
    *s_out = st;
}
#undef FC_SQ_ADD16

__attribute__((target("arch=x86-64-v4"))) static void scale_f32_avx512(float *x, int64_t n,
                                                                        float c) {
    const __m512 vc = _mm512_set1_ps(c);
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        __m512 v2 = _mm512_loadu_ps(x + i + 32), v3 = _mm512_loadu_ps(x + i + 48);
        _mm512_storeu_ps(x + i, _mm512_mul_ps(v0, vc));
        _mm512_storeu_ps(x + i + 16, _mm512_mul_ps(v1, vc));
        _mm512_storeu_ps(x + i + 32, _mm512_mul_ps(v2, vc));
        _mm512_storeu_ps(x + i + 48, _mm512_mul_ps(v3, vc));
    }
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), vc));
    for (; i < n; i++) x[i] = x[i] * c;
}

__attribute__((target("arch=x86-64-v4"))) static void clamp_f32_avx512(float *x, int64_t n,
                                                                        float lo, float hi) {
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    int64_t i = 0;
#define FC_CLAMP16(v) _mm512_min_ps(vhi, _mm512_max_ps(vlo, v))
    for (; i + 64 <= n; i += 64) {
        __m512 v0 = FC_CLAMP16(_mm512_loadu_ps(x + i));
        __m512 v1 = FC_CLAMP16(_mm512_loadu_ps(x + i + 16));
        __m512 v2 = FC_CLAMP16(_mm512_loadu_ps(x + i + 32));
        __m512 v3 = FC_CLAMP16(_mm512_loadu_ps(x + i + 48));
        _mm512_storeu_ps(x + i, v0);
        _mm512_storeu_ps(x + i + 16, v1);
        _mm512_storeu_ps(x + i + 32, v2);
        _mm512_storeu_ps(x + i + 48, v3);
    }
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, FC_CLAMP16(_mm512_loadu_ps(x + i)));
#undef FC_CLAMP16
    for (; i < n; i++) {
        float v = x[i];
        v = v < lo ? lo : v;
        x[i] = v > hi ? hi : v;
    }
}
#define FC_IF_AVX512(call) \
    if (fc_cpu_avx512_streams()) { call; return; }
#else
#define FC_IF_AVX512(call)
#endif

static void ssq_f32(const float *x, int64_t n, double *s_out, double *m_out) {
    FC_IF_AVX512((ssq_f32_avx512(x, n, s_out), *m_out = 0))
    if (fc_cpu_has_avx2()) {
        ssq_f32_avx2(x, n, s_out);
        *m_out = 0;
    } else {
        ssq_dense_f32(x, n, s_out, m_out);
    }
}
static void scale_f32(float *x, int64_t n, float c) {
    FC_IF_AVX512(scale_f32_avx512(x, n, c))
    if (fc_cpu_has_avx2()) scale_f32_avx2(x, n, c);
    else scale_dense_f32(x, n, c);
}
static void clamp_f32(float *x, int64_t n, float lo, float hi) {
    FC_IF_AVX512(clamp_f32_avx512(x, n, lo, hi))
    if (fc_cpu_has_avx2()) clamp_f32_avx2(x, n, lo, hi);
    else clamp_dense_f32(x, n, lo, hi);
}
#else
#define ssq_f32 ssq_dense_f32
#define scale_f32 scale_dense_f32
#define clamp_f32 clamp_dense_f32
#endif

/* Sums of squares below this may have lost digits to underflow. */
#define FC_SSQ_TINY 0x1p-968

/* One reduction over the runs of a block: DENSE32/DENSE64 for unit-stride runs,
 * <KERNEL>_strided_<dtype> otherwise; per-run results (R1 a double, R2 of type T2)
 * are combined in run order: R1 with ACC1, R2 with ACC2. */
#define FC_BLOCK_REDUCE(NAME, KERNEL, DENSE32, DENSE64, T2, ACC1, ACC2)                     \
    static void NAME(const fc_array *a, int64_t start, int64_t count, double *o1, T2 *o2) { \
        double v1 = 0;                                                                      \
        T2 v2 = 0;                                                                          \
        FC_RUNS(a, start, count, p, len, st, {                                              \
            double r1;                                                                      \
            T2 r2;                                                                          \
            if (a->dtype == FC_FLOAT32) {                                                   \
                if (st == 4) DENSE32((const float *)p, len, &r1, &r2);                      \
                else KERNEL##_strided_f32(p, len, st, &r1, &r2);                            \
            } else {                                                                        \
                if (st == 8) DENSE64((const double *)p, len, &r1, &r2);                     \
                else KERNEL##_strided_f64(p, len, st, &r1, &r2);                            \
            }                                                                               \
            ACC1;                                                                           \
            ACC2;                                                                           \
        });                                                                                 \
        *o1 = v1;                                                                           \
        *o2 = v2;                                                                           \
    }
/* sum of squares and max |x| */
FC_BLOCK_REDUCE(block_ssq, ssq, ssq_f32, ssq_dense_f64, double, v1 += r1, v2 = r2 > v2 ? r2 : v2)
/* sum of |x| and max |x| */
FC_BLOCK_REDUCE(block_sabs, sabs, sabs_dense_f32, sabs_dense_f64, double, v1 += r1,
                v2 = r2 > v2 ? r2 : v2)
/* max |x| and whether a NaN was seen */
FC_BLOCK_REDUCE(block_amax, amax, amax_dense_f32, amax_dense_f64, int, v1 = r1 > v1 ? r1 : v1,
                v2 |= r2)
#undef FC_BLOCK_REDUCE

static double block_powsum(const fc_array *a, int64_t start, int64_t count, double m, double pw) {
    double ss = 0;
    FC_RUNS(a, start, count, p, len, st, {
        double rs;
        if (a->dtype == FC_FLOAT32) powsum_strided_f32(p, len, st, m, pw, &rs);
        else powsum_strided_f64(p, len, st, m, pw, &rs);
        ss += rs;
    });
    return ss;
}

/* sum over the blocks of one array of (|x|/m)^p, in block order */
static double array_powsum(const fc_array *a, const fc_block *blocks, int64_t g0, int64_t g1,
                           double m, double pw) {
    double s = 0;
    for (int64_t g = g0; g < g1; g++) s += block_powsum(a, blocks[g].start, blocks[g].count, m, pw);
    return s;
}

/* Per-block work items for fc_parallel_for. */
typedef struct {
    const fc_array *arrs;
    const fc_block *blocks;
    int64_t nb;
    double p, coef, lo, hi;
    float c32, lo32, hi32;
    double *ps, *pm;
    int *pn;
    const double *norms;
} fc_items;

static void item_ssq(void *c, int64_t g) {
    const fc_items *t = (const fc_items *)c;
    const fc_block *b = t->blocks + g;
    block_ssq(t->arrs + b->arr, b->start, b->count, t->ps + g, t->pm + g);
}

static void item_sabs(void *c, int64_t g) {
    const fc_items *t = (const fc_items *)c;
    const fc_block *b = t->blocks + g;
    block_sabs(t->arrs + b->arr, b->start, b->count, t->ps + g, t->pm + g);
}

static void item_amax(void *c, int64_t g) {
    const fc_items *t = (const fc_items *)c;
    const fc_block *b = t->blocks + g;
    block_amax(t->arrs + b->arr, b->start, b->count, t->pm + g, t->pn + g);
}

static void item_powsum(void *c, int64_t g) {
    const fc_items *t = (const fc_items *)c;
    const fc_block *b = t->blocks + g;
    double m = t->norms[b->arr];
    t->ps[g] = (m > 0 && isfinite(m)) ? block_powsum(t->arrs + b->arr, b->start, b->count, m, t->p)
                                      : 0.0;
}

static void scale_block(const fc_array *a, int64_t start, int64_t count, double coef, float c32);

/* block k */
static void item_scale(void *c, int64_t k) {
    const fc_items *t = (const fc_items *)c;
    const fc_block *b = t->blocks + k;
    scale_block(t->arrs + b->arr, b->start, b->count, t->coef, t->c32);
}

/* last blocks first: on one thread the tail of a norm pass is still in cache */
static void item_scale_rev(void *c, int64_t k) {
    const fc_items *t = (const fc_items *)c;
    const fc_block *b = t->blocks + (t->nb - 1 - k);
    scale_block(t->arrs + b->arr, b->start, b->count, t->coef, t->c32);
}

static void clamp_block(const fc_array *a, int64_t start, int64_t count, double lo, double hi,
                        float lo32, float hi32) {
    FC_RUNS(a, start, count, p, len, st, {
        if (a->dtype == FC_FLOAT32) {
            if (st == 4) clamp_f32((float *)p, len, lo32, hi32);
            else clamp_strided_f32(p, len, st, lo32, hi32);
        } else {
            if (st == 8) clamp_dense_f64((double *)p, len, lo, hi);
            else clamp_strided_f64(p, len, st, lo, hi);
        }
    });
}

static void item_clamp(void *c, int64_t g) {
    const fc_items *t = (const fc_items *)c;
    const fc_block *b = t->blocks + g;
    clamp_block(t->arrs + b->arr, b->start, b->count, t->lo, t->hi, t->lo32, t->hi32);
}

int fc_array_norms(const fc_array *arrs, int64_t n, double p, double *norms) {
    if (n <= 0) return FC_OK;
    int64_t *first = (int64_t *)malloc((size_t)(n + 1) * sizeof(int64_t));
    if (!first) return FC_ENOMEM;
    int64_t nb, work;
    fc_block *blocks = fc_make_blocks(arrs, n, first, &nb, &work);
    if (nb > 0 && !blocks) {
        free(first);
        return FC_ENOMEM;
    }
    double *ps = NULL, *pm = NULL;
    int *pn = NULL;
    if (nb > 0) {
        ps = (double *)malloc((size_t)nb * sizeof(double));
        pm = (double *)malloc((size_t)nb * sizeof(double));
        pn = (int *)malloc((size_t)nb * sizeof(int));
        if (!ps || !pm || !pn) {
            free(first); free(blocks); free(ps); free(pm); free(pn);
            return FC_ENOMEM;
        }
    }
    fc_items t = {0};
    t.arrs = arrs;
    t.blocks = blocks;
    t.nb = nb;
    t.p = p;
    t.ps = ps;
    t.pm = pm;
    t.pn = pn;
    t.norms = norms;

    if (p == 2.0 || p == 1.0) {
        const int sq = (p == 2.0);
        fc_parallel_for(nb, sq ? item_ssq : item_sabs, &t, fc_pool_parallel(work));
        for (int64_t i = 0; i < n; i++) {
            double s = 0, m = 0;
            for (int64_t g = first[i]; g < first[i + 1]; g++) {
                s += ps[g];
                m = pm[g] > m ? pm[g] : m;
            }
            int rescue = arrs[i].dtype == FC_FLOAT64 &&
                         ((isinf(s) && isfinite(m)) || (sq && s < FC_SSQ_TINY && m > 0));
            if (rescue) {
                double r = array_powsum(arrs + i, blocks, first[i], first[i + 1], m, p);
                norms[i] = m * (sq ? sqrt(r) : r);
            } else {
                norms[i] = sq ? sqrt(s) : s;
            }
        }
    } else {
        fc_parallel_for(nb, item_amax, &t, fc_pool_parallel(work));
        for (int64_t i = 0; i < n; i++) {
            double m = 0;
            int nan = 0;
            for (int64_t g = first[i]; g < first[i + 1]; g++) {
                m = pm[g] > m ? pm[g] : m;
                nan |= pn[g];
            }
            norms[i] = nan ? NAN : m;
        }
        if (!isinf(p)) {
            /* second pass: sum of (|x|/max)^p, which cannot overflow */
            fc_parallel_for(nb, item_powsum, &t, fc_pool_parallel(work));
            for (int64_t i = 0; i < n; i++) {
                double m = norms[i];
                if (!(m > 0) || !isfinite(m)) continue; /* 0, inf or NaN stay */
                double s = 0;
                for (int64_t g = first[i]; g < first[i + 1]; g++) s += ps[g];
                norms[i] = m * pow(s, 1.0 / p);
            }
        }
    }
    free(first); free(blocks); free(ps); free(pm); free(pn);
    return FC_OK;
}

double fc_total_norm(const double *norms, int64_t n, double p) {
    if (n <= 0) return 0.0;
    double m = 0;
    int nan = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = fabs(norms[i]);
        m = v > m ? v : m;
        nan |= (v != v);
    }
    if (nan) return NAN;
    if (isinf(p) || m == 0 || isinf(m)) return m;
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = fabs(norms[i]) / m;
        s += p == 2.0 ? r * r : (p == 1.0 ? r : pow(r, p));
    }
    return m * (p == 2.0 ? sqrt(s) : (p == 1.0 ? s : pow(s, 1.0 / p)));
}

double fc_clip_coef(double max_norm, double total_norm) {
    double c = max_norm / (total_norm + 1e-6);
    if (c != c) return c;
    return c < 1.0 ? c : 1.0;
}

/* x *= coef over one block (float32 arrays multiply by c32 = (float)coef). */
static void scale_block(const fc_array *a, int64_t start, int64_t count, double coef, float c32) {
    FC_RUNS(a, start, count, p, len, st, {
        if (a->dtype == FC_FLOAT32) {
            if (st == 4) scale_f32((float *)p, len, c32);
            else scale_strided_f32(p, len, st, c32);
        } else {
            if (st == 8) scale_dense_f64((double *)p, len, coef);
            else scale_strided_f64(p, len, st, coef);
        }
    });
}

/* Splits the arrays into blocks and runs fn(ctx, g) for every block g with
 * fc_parallel_for; *blocks_slot (read by fn through ctx) points at the blocks
 * meanwhile, and *nb_slot (when not NULL) receives their number. */
static int for_each_block(const fc_array *arrs, int64_t n, fc_item_fn fn, void *ctx,
                          const fc_block **blocks_slot, int64_t *nb_slot) {
    if (n <= 0) return FC_OK;
    int64_t *first = (int64_t *)malloc((size_t)(n + 1) * sizeof(int64_t));
    if (!first) return FC_ENOMEM;
    int64_t nb, work;
    fc_block *blocks = fc_make_blocks(arrs, n, first, &nb, &work);
    free(first);
    if (nb == 0) return FC_OK;
    if (!blocks) return FC_ENOMEM;
    *blocks_slot = blocks;
    if (nb_slot) *nb_slot = nb;
    fc_parallel_for(nb, fn, ctx, fc_pool_parallel(work));
    *blocks_slot = NULL;
    free(blocks);
    return FC_OK;
}

int fc_scale_(const fc_array *arrs, int64_t n, double coef) {
    fc_items t = {0};
    t.coef = coef;
    t.c32 = (float)coef;
    t.arrs = arrs;
    return for_each_block(arrs, n, item_scale_rev, &t, &t.blocks, &t.nb);
}

int fc_clip_value_(const fc_array *arrs, int64_t n, double lo, double hi) {
    fc_items t = {0};
    t.lo = lo;
    t.hi = hi;
    t.lo32 = (float)lo;
    t.hi32 = (float)hi;
    t.arrs = arrs;
    return for_each_block(arrs, n, item_clamp, &t, &t.blocks, &t.nb);
}

/* Dense src -> dense dst, elementwise; blocks of FC_BLOCK on fc_parallel_for. */
typedef struct {
    const fc_array *src, *dst;
    const fc_block *blocks;
    const double *coefs;
    double lo, hi;
} fc_into_items;

static void item_scale_into(void *c, int64_t g) {
    const fc_into_items *t = (const fc_into_items *)c;
    const fc_block *b = t->blocks + g;
    const fc_array *s = t->src + b->arr, *d = t->dst + b->arr;
    const double cf = t->coefs[b->arr];
    if (s->dtype == FC_FLOAT32)
        scale_into_dense_f32((const float *)s->data + b->start, (float *)d->data + b->start,
                             b->count, (float)cf);
    else
        scale_into_dense_f64((const double *)s->data + b->start, (double *)d->data + b->start,
                             b->count, cf);
}

static void item_clamp_into(void *c, int64_t g) {
    const fc_into_items *t = (const fc_into_items *)c;
    const fc_block *b = t->blocks + g;
    const fc_array *s = t->src + b->arr, *d = t->dst + b->arr;
    if (s->dtype == FC_FLOAT32)
        clamp_into_dense_f32((const float *)s->data + b->start, (float *)d->data + b->start,
                             b->count, (float)t->lo, (float)t->hi);
    else
        clamp_into_dense_f64((const double *)s->data + b->start, (double *)d->data + b->start,
                             b->count, t->lo, t->hi);
}

static int run_into(const fc_array *src, const fc_array *dst, int64_t n, fc_into_items *t,
                    fc_item_fn fn) {
    for (int64_t i = 0; i < n; i++) {
        if (src[i].ndim != 0 || dst[i].ndim != 0 || src[i].size != dst[i].size ||
            src[i].dtype != dst[i].dtype)
            return FC_EINVAL;
    }
    t->src = src;
    t->dst = dst;
    return for_each_block(src, n, fn, t, &t->blocks, NULL);
}

int fc_scale_into(const fc_array *src, const fc_array *dst, int64_t n, const double *coefs) {
    fc_into_items t = {0};
    t.coefs = coefs;
    return run_into(src, dst, n, &t, item_scale_into);
}

int fc_clip_value_into(const fc_array *src, const fc_array *dst, int64_t n, double lo, double hi) {
    fc_into_items t = {0};
    t.lo = lo;
    t.hi = hi;
    return run_into(src, dst, n, &t, item_clamp_into);
}

/* Per-array norm (p = 1 or 2) from the block partials of that array, with the
 * float64 overflow/underflow rescue. */
static double reduce_norm_12(const fc_array *a, const fc_block *blocks, int64_t g0, int64_t g1,
                             const double *ps, const double *pm, double p) {
    const int sq = (p == 2.0);
    double s = 0, m = 0;
    for (int64_t g = g0; g < g1; g++) {
        s += ps[g];
        m = pm[g] > m ? pm[g] : m;
    }
    int rescue = a->dtype == FC_FLOAT64 &&
                 ((isinf(s) && isfinite(m)) || (sq && s < FC_SSQ_TINY && m > 0));
    if (rescue) {
        double r = array_powsum(a, blocks, g0, g1, m, p);
        return m * (sq ? sqrt(r) : r);
    }
    return sq ? sqrt(s) : s;
}

/* clip_grad_norm_ for p = 1 or 2: the threads compute the partials of the blocks
 * (fc_parallel_for); the calling thread reduces them in block order (the result
 * does not depend on the number of threads) and decides the coefficient; when it
 * is not 1, the threads scale the blocks, last block first. */
static int clip_grad_norm_12(const fc_array *arrs, int64_t n, double max_norm, double p,
                             int error_if_nonfinite, double *norms, double *total,
                             int64_t *first_nonfinite, int *scaled) {
    int64_t *first = (int64_t *)malloc((size_t)(n + 1) * sizeof(int64_t));
    if (!first) return FC_ENOMEM;
    int64_t nb, work;
    fc_block *blocks = fc_make_blocks(arrs, n, first, &nb, &work);
    if (nb > 0 && !blocks) {
        free(first);
        return FC_ENOMEM;
    }
    double *ps = NULL;
    if (nb > 0) {
        /* partial sums and maxima, then the slot of the thread that read each block */
        ps = (double *)malloc((size_t)nb * (2 * sizeof(double) + 1));
        if (!ps) {
            free(first);
            free(blocks);
            return FC_ENOMEM;
        }
    }
    double *pm = ps ? ps + nb : NULL;
    unsigned char *slot_of = ps ? (unsigned char *)(ps + 2 * nb) : NULL;
    const int sq = (p == 2.0);
    int rc = FC_OK, do_scale = 0;
    double coef = 1.0;
/* The reduction and the decision, run by one thread after every partial is in. */
#define FC_DECIDE                                                                              \
    do {                                                                                       \
        for (int64_t i = 0; i < n; i++)                                                        \
            norms[i] = first[i] == first[i + 1]                                                \
                           ? 0.0                                                               \
                           : reduce_norm_12(arrs + i, blocks, first[i], first[i + 1], ps, pm, p); \
        *total = fc_total_norm(norms, n, p);                                                   \
        if (error_if_nonfinite && !isfinite(*total)) {                                         \
            for (int64_t i = 0; i < n; i++) {                                                  \
                if (!isfinite(norms[i])) {                                                     \
                    *first_nonfinite = i;                                                      \
                    break;                                                                     \
                }                                                                              \
            }                                                                                  \
            rc = FC_ENONFINITE;                                                                \
        } else {                                                                               \
            coef = fc_clip_coef(max_norm, *total);                                             \
            do_scale = (coef != 1.0); /* 1: already within max_norm, write nothing */          \
        }                                                                                      \
    } while (0)
    fc_items t = {0};
    t.arrs = arrs;
    t.blocks = blocks;
    t.nb = nb;
    t.ps = ps;
    t.pm = pm;
    /* the scaling pass gives each thread back the blocks it has just read */
    const int par = fc_pool_parallel(work);
    fc_parallel_for_noting(nb, sq ? item_ssq : item_sabs, &t, par, slot_of);
    FC_DECIDE;
    if (do_scale) {
        t.coef = coef;
        t.c32 = (float)coef;
        fc_parallel_for_again(nb, item_scale, &t, par, slot_of);
    }
#undef FC_DECIDE
    *scaled = do_scale;
    free(first);
    free(blocks);
    free(ps);
    return rc;
}

int fc_clip_grad_norm_(const fc_array *arrs, int64_t n, double max_norm, double p,
                       int error_if_nonfinite, double *norms, double *total,
                       int64_t *first_nonfinite, int *scaled) {
    *scaled = 0;
    *first_nonfinite = -1;
    *total = 0.0;
    if (n <= 0) return FC_OK;
    if (p == 2.0 || p == 1.0)
        return clip_grad_norm_12(arrs, n, max_norm, p, error_if_nonfinite, norms, total,
                                 first_nonfinite, scaled);
    int rc = fc_array_norms(arrs, n, p, norms);
    if (rc != FC_OK) return rc;
    *total = fc_total_norm(norms, n, p);
    if (error_if_nonfinite && !isfinite(*total)) {
        for (int64_t i = 0; i < n; i++) {
            if (!isfinite(norms[i])) {
                *first_nonfinite = i;
                break;
            }
        }
        return FC_ENONFINITE;
    }
    double coef = fc_clip_coef(max_norm, *total);
    if (coef == 1.0) return FC_OK; /* already within max_norm: nothing to write */
    *scaled = 1;
    return fc_scale_(arrs, n, coef);
}

typedef struct {
    const fc_array *arrs;
    const fc_block *blocks;
    int64_t *counts;
    double nan;
    int replace_inf;
    double posinf, neginf;
} fc_nan_items;

/* replacements made in one block */
static void item_nan_to_num(void *c, int64_t g) {
    const fc_nan_items *t = (const fc_nan_items *)c;
    const fc_block *b = t->blocks + g;
    const fc_array *a = t->arrs + b->arr;
    int64_t k = 0;
    FC_RUNS(a, b->start, b->count, p, len, st, {
        if (a->dtype == FC_FLOAT32)
            k += nan_to_num_strided_f32(p, len, st, (float)t->nan, t->replace_inf,
                                        (float)t->posinf, (float)t->neginf);
        else
            k += nan_to_num_strided_f64(p, len, st, t->nan, t->replace_inf, t->posinf,
                                        t->neginf);
    });
    t->counts[g] = k;
}

int fc_nan_to_num_(const fc_array *arrs, int64_t n, double nan, int replace_inf, double posinf,
                   double neginf, int64_t *count) {
    *count = 0;
    if (n <= 0) return FC_OK;
    int64_t *first = (int64_t *)malloc((size_t)(n + 1) * sizeof(int64_t));
    if (!first) return FC_ENOMEM;
    int64_t nb, work;
    fc_block *blocks = fc_make_blocks(arrs, n, first, &nb, &work);
    free(first);
    if (nb == 0) return FC_OK;
    if (!blocks) return FC_ENOMEM;
    int64_t *counts = (int64_t *)malloc((size_t)nb * sizeof(int64_t));
    if (!counts) {
        free(blocks);
        return FC_ENOMEM;
    }
    fc_nan_items t = {arrs, blocks, counts, nan, replace_inf, posinf, neginf};
    fc_parallel_for(nb, item_nan_to_num, &t, fc_use_parallel(work));
    int64_t total = 0;
    for (int64_t g = 0; g < nb; g++) total += counts[g];
    free(counts);
    free(blocks);
    *count = total;
    return FC_OK;
}
