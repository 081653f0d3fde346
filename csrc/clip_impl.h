/*
 * Per-dtype clipping kernels, included by clip.c twice: once with
 * FC_T = float (FC_SUF = f32), once with FC_T = double (FC_SUF = f64).
 * Every function takes a dense pointer or a (pointer, count, byte stride)
 * run; clip.c walks blocks of arrays as runs with fc_iter.
 */
#define FC_CAT_(a, b) a##_##b
#define FC_CAT(a, b) FC_CAT_(a, b)
#define FN(name) FC_CAT(name, FC_SUF)
#define FC_AT(p, i, st) (*(const FC_T *)((const char *)(p) + (i) * (st)))
#define FC_ATW(p, i, st) (*(FC_T *)((char *)(p) + (i) * (st)))

/* Lanes of the dense reductions: FC_ACC independent double accumulators
 * (8 AVX2 registers for float32, 4 + 4 for float64 with the max), enough to
 * hide the latency of the additions. They are combined in a fixed tree, so
 * the result depends on the data and its layout only. */
#undef FC_ACC
#if FC_TRACK_MAX
#define FC_ACC 16
#else
#define FC_ACC 32
#endif

/* Sum of squares (in double) and max |x| of a run (max tracked for float64
 * only: float32 squares accumulated in double cannot overflow). */
static FC_TARGET_CLONES void FN(ssq_dense)(const FC_T *x, int64_t n, double *s_out, double *m_out) {
    double st = 0, mt = 0;
    int64_t i = 0;
    if (n >= FC_ACC) { /* a short run goes straight to the sequential loop: no lanes */
        double s[FC_ACC];
#if FC_TRACK_MAX
        double m[FC_ACC];
#endif
        for (int j = 0; j < FC_ACC; j++) {
            s[j] = 0;
#if FC_TRACK_MAX
            m[j] = 0;
#endif
        }
        for (; i + FC_ACC <= n; i += FC_ACC) {
            for (int j = 0; j < FC_ACC; j++) {
                double v = (double)x[i + j];
                s[j] += v * v;
#if FC_TRACK_MAX
                double a = fabs(v);
                m[j] = a > m[j] ? a : m[j];
#endif
            }
        }
        for (int w = FC_ACC / 2; w >= 1; w /= 2)
            for (int j = 0; j < w; j++) s[j] += s[j + w];
        st = s[0];
#if FC_TRACK_MAX
        for (int j = 0; j < FC_ACC; j++) mt = m[j] > mt ? m[j] : mt;
#endif
    }
    for (; i < n; i++) {
        double v = (double)x[i];
        st += v * v;
#if FC_TRACK_MAX
        double a = fabs(v);
        mt = a > mt ? a : mt;
#endif
    }
    *s_out = st;
    *m_out = mt;
}

static void FN(ssq_strided)(const char *p, int64_t n, int64_t stride, double *s_out, double *m_out) {
    double s0 = 0, s1 = 0, mt = 0;
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) {
        double v0 = (double)FC_AT(p, i, stride), v1 = (double)FC_AT(p, i + 1, stride);
        s0 += v0 * v0;
        s1 += v1 * v1;
        double a0 = fabs(v0), a1 = fabs(v1);
        mt = a0 > mt ? a0 : mt;
        mt = a1 > mt ? a1 : mt;
    }
    for (; i < n; i++) {
        double v = (double)FC_AT(p, i, stride);
        s0 += v * v;
        double a = fabs(v);
        mt = a > mt ? a : mt;
    }
    *s_out = s0 + s1;
    *m_out = mt;
}

/* Sum of |x| (in double) and max |x|. */
static FC_TARGET_CLONES void FN(sabs_dense)(const FC_T *x, int64_t n, double *s_out, double *m_out) {
    double s[16], m[16];
    for (int j = 0; j < 16; j++) s[j] = m[j] = 0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int j = 0; j < 16; j++) {
            double a = fabs((double)x[i + j]);
            s[j] += a;
            m[j] = a > m[j] ? a : m[j];
        }
    }
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) s[j] += s[j + w];
    double st = s[0];
    double mt = 0;
    for (int j = 0; j < 16; j++) mt = m[j] > mt ? m[j] : mt;
    for (; i < n; i++) {
        double a = fabs((double)x[i]);
        st += a;
        mt = a > mt ? a : mt;
    }
    *s_out = st;
    *m_out = mt;
}

static void FN(sabs_strided)(const char *p, int64_t n, int64_t stride, double *s_out, double *m_out) {
    double s0 = 0, mt = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = fabs((double)FC_AT(p, i, stride));
        s0 += a;
        mt = a > mt ? a : mt;
    }
    *s_out = s0;
    *m_out = mt;
}

/* max |x|; *nan_out set when a NaN was seen (the max then is NaN). With the sign
 * bit cleared, a float's bit pattern read as a (non-negative) integer orders as
 * |x| does, and every NaN's pattern exceeds inf's: one integer max gives both
 * answers, and the loop vectorises (a float compare-and-select whose NaN
 * handling must be kept does not). */
static FC_TARGET_CLONES void FN(amax_dense)(const FC_T *x, int64_t n, double *m_out, int *nan_out) {
    FC_BITS mb = 0;
    for (int64_t i = 0; i < n; i++) {
        FC_BITS u;
        memcpy(&u, x + i, sizeof u);
        u &= FC_ABS_BITS;
        mb = u > mb ? u : mb;
    }
    FC_T m;
    memcpy(&m, &mb, sizeof m);
    *m_out = (double)m;
    *nan_out = mb > FC_INF_BITS;
}

static void FN(amax_strided)(const char *p, int64_t n, int64_t stride, double *m_out, int *nan_out) {
    double mt = 0;
    int nt = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = (double)FC_AT(p, i, stride);
        double a = fabs(v);
        mt = a > mt ? a : mt;
        nt |= (v != v);
    }
    *m_out = mt;
    *nan_out = nt;
}

/* sum (|x| / m)^p in double; m > 0 finite. */
static void FN(powsum_strided)(const char *p, int64_t n, int64_t stride, double m, double pw,
                               double *s_out) {
    double s = 0;
    if (pw == 2.0) {
        for (int64_t i = 0; i < n; i++) {
            double r = fabs((double)FC_AT(p, i, stride)) / m;
            s += r * r;
        }
    } else if (pw == 1.0) {
        for (int64_t i = 0; i < n; i++) s += fabs((double)FC_AT(p, i, stride)) / m;
    } else {
        for (int64_t i = 0; i < n; i++) s += pow(fabs((double)FC_AT(p, i, stride)) / m, pw);
    }
    *s_out = s;
}

/* x *= c */
static FC_TARGET_CLONES void FN(scale_dense)(FC_T *x, int64_t n, FC_T c) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * c;
}

static void FN(scale_strided)(char *p, int64_t n, int64_t stride, FC_T c) {
    for (int64_t i = 0; i < n; i++) FC_ATW(p, i, stride) = FC_AT(p, i, stride) * c;
}

/* dst = src * c */
static FC_TARGET_CLONES void FN(scale_into_dense)(const FC_T *restrict src, FC_T *restrict dst,
                                                  int64_t n, FC_T c) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i] * c;
}

/* x = clamp(x, lo, hi); comparisons with NaN are false, so NaN stays. */
static FC_TARGET_CLONES void FN(clamp_dense)(FC_T *x, int64_t n, FC_T lo, FC_T hi) {
    for (int64_t i = 0; i < n; i++) {
        FC_T v = x[i];
        v = v < lo ? lo : v;
        v = v > hi ? hi : v;
        x[i] = v;
    }
}

static void FN(clamp_strided)(char *p, int64_t n, int64_t stride, FC_T lo, FC_T hi) {
    for (int64_t i = 0; i < n; i++) {
        FC_T v = FC_AT(p, i, stride);
        v = v < lo ? lo : v;
        v = v > hi ? hi : v;
        FC_ATW(p, i, stride) = v;
    }
}

static FC_TARGET_CLONES void FN(clamp_into_dense)(const FC_T *restrict src, FC_T *restrict dst,
                                                  int64_t n, FC_T lo, FC_T hi) {
    for (int64_t i = 0; i < n; i++) {
        FC_T v = src[i];
        v = v < lo ? lo : v;
        v = v > hi ? hi : v;
        dst[i] = v;
    }
}

/* NaN -> nan_val; with replace_inf, +inf -> posinf and -inf -> neginf. */
static int64_t FN(nan_to_num_strided)(char *p, int64_t n, int64_t stride, FC_T nan_val,
                                      int replace_inf, FC_T posinf, FC_T neginf) {
    int64_t changed = 0;
    for (int64_t i = 0; i < n; i++) {
        FC_T v = FC_AT(p, i, stride);
        if (v != v) {
            FC_ATW(p, i, stride) = nan_val;
            changed++;
        } else if (replace_inf && (v - v) != (v - v)) {
            FC_ATW(p, i, stride) = v > 0 ? posinf : neginf;
            changed++;
        }
    }
    return changed;
}

#undef FC_ACC
#undef FN
#undef FC_AT
#undef FC_ATW
