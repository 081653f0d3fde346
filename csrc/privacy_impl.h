/* Per-dtype bodies of privacy.c, instantiated for FC_T = float and double. */
#define FC_CAT_(a, b) a##_##b
#define FC_CAT(a, b) FC_CAT_(a, b)
#define FC_FN(name) FC_CAT(name, FC_SUF)

/* Sum of squares of one row, 8 float64 lanes combined in a fixed tree. */
FC_TARGET_CLONES
static double FC_FN(row_ssq)(const char *row, int64_t cols, int64_t cs) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    if (cs == (int64_t)sizeof(FC_T)) {
        const FC_T *x = (const FC_T *)row;
        for (; j + 8 <= cols; j += 8)
            for (int l = 0; l < 8; l++) {
                double v = (double)x[j + l];
                s[l] += v * v;
            }
        for (; j < cols; j++) {
            double v = (double)x[j];
            s[0] += v * v;
        }
    } else {
        for (; j < cols; j++) {
            double v = (double)*(const FC_T *)(row + j * cs);
            s[j & 7] += v * v;
        }
    }
    return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

/* Columns [c0, c1) of one array: acc over rows in order, then round and store. */
FC_TARGET_CLONES
static void FC_FN(cols_wsum)(const fc_rows *a, const double *w, int inplace, FC_T *sum,
                             int64_t c0, int64_t c1, double *acc) {
    const int64_t cs = a->col_stride, n = c1 - c0;
    for (int64_t j = 0; j < n; j++) acc[j] = 0.0;
    for (int64_t i = 0; i < a->rows; i++) {
        char *row = a->data + i * a->row_stride + c0 * cs;
        const FC_T wi = (FC_T)w[i];
        if (cs == (int64_t)sizeof(FC_T)) {
            FC_T *x = (FC_T *)row;
            if (inplace) {
                for (int64_t j = 0; j < n; j++) {
                    FC_T t = x[j] * wi;
                    x[j] = t;
                    acc[j] += (double)t;
                }
            } else {
                for (int64_t j = 0; j < n; j++) {
                    FC_T t = x[j] * wi;
                    acc[j] += (double)t;
                }
            }
        } else {
            for (int64_t j = 0; j < n; j++) {
                FC_T *p = (FC_T *)(row + j * cs);
                FC_T t = *p * wi;
                if (inplace) *p = t;
                acc[j] += (double)t;
            }
        }
    }
    for (int64_t j = 0; j < n; j++) sum[c0 + j] = (FC_T)acc[j];
}

/* Columns [c0, c1) of one array, each row scaled in place by its weight (the terms
 * of cols_wsum, without their sum). */
FC_TARGET_CLONES
static void FC_FN(cols_scale)(const fc_rows *a, const double *w, int64_t c0, int64_t c1) {
    const int64_t cs = a->col_stride, n = c1 - c0;
    for (int64_t i = 0; i < a->rows; i++) {
        char *row = a->data + i * a->row_stride + c0 * cs;
        const FC_T wi = (FC_T)w[i];
        if (cs == (int64_t)sizeof(FC_T)) {
            FC_T *x = (FC_T *)row;
            for (int64_t j = 0; j < n; j++) x[j] = x[j] * wi;
        } else {
            for (int64_t j = 0; j < n; j++) {
                FC_T *p = (FC_T *)(row + j * cs);
                *p = *p * wi;
            }
        }
    }
}

#undef FC_FN
#undef FC_CAT
#undef FC_CAT_
