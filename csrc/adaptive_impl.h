/*
 * Per-dtype kernels of the adaptive clippers, included by adaptive.c twice:
 * FC_T = float (FC_SUF = f32, no max tracking: float32 squares cannot
 * overflow a double) and FC_T = double (FC_SUF = f64, tracks max |x| so that
 * overflowing or underflowing sums can be recomputed with scaling).
 */
#define FC_CAT_(a, b) a##_##b
#define FC_CAT(a, b) FC_CAT_(a, b)
#define FN(name) FC_CAT(name, FC_SUF)
#define FC_EL(base, r, c, rs, cs) (*(FC_T *)((base) + (r) * (rs) + (c) * (cs)))

/* Rows r0..r1 of columns c0..c1 where columns are adjacent (cs == sizeof):
 * acc[c] += x[r, c]^2 and mx[c] = max(mx[c], |x[r, c]|), row by row, so the
 * inner loop runs over contiguous memory. */
static FC_TARGET_CLONES void FN(colsq_rows)(const char *base, int64_t rs, int64_t r0, int64_t r1,
                                            int64_t c0, int64_t c1, double *restrict acc,
                                            double *restrict mx) {
    for (int64_t r = r0; r < r1; r++) {
        const FC_T *restrict x = (const FC_T *)(base + r * rs);
        for (int64_t c = c0; c < c1; c++) {
            double v = (double)x[c];
            acc[c] += v * v;
#if FC_TRACK_MAX
            double a = fabs(v);
            mx[c] = a > mx[c] ? a : mx[c];
#endif
        }
    }
}

/* The same for any strides: one column at a time, rows in order. */
static void FN(colsq_cols)(const char *base, int64_t rs, int64_t cs, int64_t r0, int64_t r1,
                           int64_t c0, int64_t c1, double *acc, double *mx) {
    for (int64_t c = c0; c < c1; c++) {
        double s = 0, m = 0;
        for (int64_t r = r0; r < r1; r++) {
            double v = (double)FC_EL((char *)base, r, c, rs, cs);
            s += v * v;
            double a = fabs(v);
            m = a > m ? a : m;
        }
        acc[c] += s;
        mx[c] = m > mx[c] ? m : mx[c];
    }
}

#if FC_TRACK_MAX
/* sum over rows of (|x[r, c]| / m)^2 for one column (m > 0 finite). */
static double FN(col_scaled_ssq)(const char *base, int64_t rs, int64_t cs, int64_t rows, int64_t c,
                                 double m) {
    double s = 0;
    for (int64_t r = 0; r < rows; r++) {
        double v = fabs((double)FC_EL((char *)base, r, c, rs, cs)) / m;
        s += v * v;
    }
    return s;
}
#endif

/* x[r, c] *= k[c] for adjacent columns. */
static FC_TARGET_CLONES void FN(scale_rows)(char *base, int64_t rs, int64_t r0, int64_t r1,
                                            int64_t c0, int64_t c1, const FC_T *restrict k) {
    for (int64_t r = r0; r < r1; r++) {
        FC_T *restrict x = (FC_T *)(base + r * rs);
        for (int64_t c = c0; c < c1; c++) x[c] = x[c] * k[c];
    }
}

/* x[r, c] *= k[c] for the columns with k[c] != 1, any strides. */
static void FN(scale_cols)(char *base, int64_t rs, int64_t cs, int64_t r0, int64_t r1, int64_t c0,
                           int64_t c1, const FC_T *k) {
    for (int64_t c = c0; c < c1; c++) {
        FC_T kc = k[c];
        if (kc == (FC_T)1) continue;
        for (int64_t r = r0; r < r1; r++) FC_EL(base, r, c, rs, cs) = FC_EL(base, r, c, rs, cs) * kc;
    }
}

#undef FN
#undef FC_EL
