/*
 * Per-dtype layer kernels, included by layers.c twice: FC_T = float
 * (FC_SUF f32) and FC_T = double (FC_SUF f64).
 */
#define FC_LCAT_(a, b) a##_##b
#define FC_LCAT(a, b) FC_LCAT_(a, b)
#define LFN(name) FC_LCAT(name, FC_SUF)

/* ---- batch norm --------------------------------------------------------- */
/* y = xhat * w + b and xhat = (x - mean) * invstd, row by row. */
static FC_TARGET_CLONES void LFN(bn_apply)(const FC_T *x, int64_t ldx, int64_t n, int64_t m,
                                           const double *restrict mean,
                                           const FC_T *restrict invstd, const FC_T *w,
                                           const FC_T *b, FC_T *xhat, FC_T *y) {
    for (int64_t i = 0; i < n; i++) {
        const FC_T *restrict xr = x + i * ldx;
        FC_T *restrict hr = xhat + i * m;
        FC_T *restrict yr = y + i * m;
        for (int64_t j = 0; j < m; j++) {
            FC_T h = (FC_T)(((double)xr[j] - mean[j]) * (double)invstd[j]);
            hr[j] = h;
            FC_T v = w ? h * w[j] : h;
            yr[j] = b ? v + b[j] : v;
        }
    }
}

int LFN(fc_bn_train_forward)(const FC_T *x, int64_t ldx, int64_t n, int64_t m, const FC_T *w,
                             const FC_T *b, double eps, double f, FC_T *running_mean,
                             FC_T *running_var, FC_T *invstd, FC_T *xhat, FC_T *y) {
    if (n < 1 || m < 0) return FC_EINVAL;
    if (m == 0) return FC_OK;
    double *mean = (double *)malloc((size_t)(2 * m) * sizeof(double));
    if (!mean) return FC_ENOMEM;
    double *ss = mean + m;
    for (int64_t j = 0; j < m; j++) mean[j] = 0.0, ss[j] = 0.0;
    /* two passes: the mean, then the sum of squared deviations */
    for (int64_t i = 0; i < n; i++) {
        const FC_T *restrict xr = x + i * ldx;
        for (int64_t j = 0; j < m; j++) mean[j] += (double)xr[j];
    }
    for (int64_t j = 0; j < m; j++) mean[j] /= (double)n;
    for (int64_t i = 0; i < n; i++) {
        const FC_T *restrict xr = x + i * ldx;
        for (int64_t j = 0; j < m; j++) {
            double d = (double)xr[j] - mean[j];
            ss[j] += d * d;
        }
    }
    for (int64_t j = 0; j < m; j++) {
        double var = ss[j] / (double)n;
        invstd[j] = (FC_T)(1.0 / sqrt(var + eps));
        if (running_mean && running_var) {
            double unb = n > 1 ? ss[j] / (double)(n - 1) : NAN;
            running_mean[j] = (FC_T)((1.0 - f) * (double)running_mean[j] + f * mean[j]);
            running_var[j] = (FC_T)((1.0 - f) * (double)running_var[j] + f * unb);
        }
    }
    LFN(bn_apply)(x, ldx, n, m, mean, invstd, w, b, xhat, y);
    free(mean);
    return FC_OK;
}

int LFN(fc_bn_eval_forward)(const FC_T *x, int64_t ldx, int64_t n, int64_t m, const FC_T *w,
                            const FC_T *b, double eps, const FC_T *running_mean,
                            const FC_T *running_var, FC_T *invstd, FC_T *xhat, FC_T *y) {
    if (n < 0 || m < 0 || !running_mean || !running_var) return FC_EINVAL;
    if (m == 0) return FC_OK;
    double *mean = (double *)malloc((size_t)m * sizeof(double));
    if (!mean) return FC_ENOMEM;
    for (int64_t j = 0; j < m; j++) {
        mean[j] = (double)running_mean[j];
        invstd[j] = (FC_T)(1.0 / sqrt((double)running_var[j] + eps));
    }
    LFN(bn_apply)(x, ldx, n, m, mean, invstd, w, b, xhat, y);
    free(mean);
    return FC_OK;
}

int LFN(fc_bn_backward)(const FC_T *dy, int64_t lddy, const FC_T *xhat, int64_t n, int64_t m,
                        const FC_T *w, const FC_T *invstd, int train, FC_T *dx, FC_T *dw,
                        FC_T *db, double *dw_sq, double *db_sq) {
    if (n < 0 || m < 0) return FC_EINVAL;
    if (m == 0) {
        if (dw_sq) *dw_sq = 0.0;
        if (db_sq) *db_sq = 0.0;
        return FC_OK;
    }
    double *sdy = (double *)malloc((size_t)(2 * m) * sizeof(double));
    if (!sdy) return FC_ENOMEM;
    double *sdyh = sdy + m;
    for (int64_t j = 0; j < m; j++) sdy[j] = 0.0, sdyh[j] = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const FC_T *restrict d = dy + i * lddy;
        const FC_T *restrict h = xhat + i * m;
        for (int64_t j = 0; j < m; j++) {
            sdy[j] += (double)d[j];
            sdyh[j] += (double)d[j] * (double)h[j];
        }
    }
    double qw = 0.0, qb = 0.0;
    for (int64_t j = 0; j < m; j++) {
        if (dw) {
            FC_T v = (FC_T)sdyh[j];
            dw[j] = v;
            qw += (double)v * (double)v;
        }
        if (db) {
            FC_T v = (FC_T)sdy[j];
            db[j] = v;
            qb += (double)v * (double)v;
        }
    }
    if (dw_sq) *dw_sq = qw;
    if (db_sq) *db_sq = qb;
    if (dx) {
        const double inv_n = n > 0 ? 1.0 / (double)n : 0.0;
        for (int64_t i = 0; i < n; i++) {
            const FC_T *restrict d = dy + i * lddy;
            const FC_T *restrict h = xhat + i * m;
            FC_T *restrict o = dx + i * m;
            for (int64_t j = 0; j < m; j++) {
                double k = (double)invstd[j] * (w ? (double)w[j] : 1.0);
                double g = (double)d[j];
                if (train) g = g - sdy[j] * inv_n - (double)h[j] * sdyh[j] * inv_n;
                o[j] = (FC_T)(g * k);
            }
        }
    }
    free(sdy);
    return FC_OK;
}

/* ---- dropout -------------------------------------------------------------- */
static FC_TARGET_CLONES void LFN(drop_rows)(const FC_T *x, int64_t ldx, int64_t n, int64_t m,
                                            const uint8_t *mask, FC_T scale, FC_T *y) {
    for (int64_t i = 0; i < n; i++) {
        const FC_T *restrict xr = x + i * ldx;
        const uint8_t *restrict mr = mask + i * m;
        FC_T *restrict yr = y + i * m;
        for (int64_t j = 0; j < m; j++) yr[j] = xr[j] * (FC_T)mr[j] * scale;
    }
}

int LFN(fc_dropout)(const FC_T *x, int64_t ldx, int64_t n, int64_t m, const uint8_t *mask,
                    FC_T scale, FC_T *y) {
    if (n < 0 || m < 0) return FC_EINVAL;
    if (n == 0 || m == 0) return FC_OK;
    LFN(drop_rows)(x, ldx, n, m, mask, scale, y);
    return FC_OK;
}

/* ---- activations ---------------------------------------------------------- */
static FC_TARGET_CLONES void LFN(act_rows)(const FC_T *x, int64_t ldx, int64_t n, int64_t m,
                                           int act, FC_T s, FC_T *y) {
    for (int64_t i = 0; i < n; i++) {
        const FC_T *restrict xr = x + i * ldx;
        FC_T *restrict yr = y + i * m;
        switch (act) {
        case FC_L_IDENTITY:
            for (int64_t j = 0; j < m; j++) yr[j] = xr[j];
            break;
        case FC_L_RELU:
            for (int64_t j = 0; j < m; j++) yr[j] = xr[j] <= 0 ? (FC_T)0 : xr[j];
            break;
        case FC_L_LEAKY:
        case FC_L_PRELU:
            for (int64_t j = 0; j < m; j++) yr[j] = xr[j] > 0 ? xr[j] : xr[j] * s;
            break;
        case FC_L_SIGMOID:
            for (int64_t j = 0; j < m; j++) yr[j] = (FC_T)1 / ((FC_T)1 + FC_EXP(-xr[j]));
            break;
        default:
            for (int64_t j = 0; j < m; j++) yr[j] = FC_TANH(xr[j]);
            break;
        }
    }
}

int LFN(fc_act_forward)(const FC_T *x, int64_t ldx, int64_t n, int64_t m, int act, FC_T slope,
                        FC_T *y) {
    if (n < 0 || m < 0 || act < FC_L_IDENTITY || act > FC_L_TANH) return FC_EINVAL;
    LFN(act_rows)(x, ldx, n, m, act, slope, y);
    return FC_OK;
}

int LFN(fc_act_backward)(const FC_T *dy, int64_t lddy, const FC_T *x, int64_t ldx,
                         const FC_T *y, int64_t n, int64_t m, int act, FC_T slope, FC_T *dx,
                         FC_T *dslope, double *dslope_sq) {
    if (n < 0 || m < 0 || act < FC_L_IDENTITY || act > FC_L_TANH) return FC_EINVAL;
    if (act == FC_L_PRELU && (!dslope || !dslope_sq)) return FC_EINVAL;
    double ds = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const FC_T *restrict d = dy + i * lddy;
        const FC_T *restrict xr = x + i * ldx;
        const FC_T *restrict yr = y + i * m;
        FC_T *restrict o = dx + i * m;
        switch (act) {
        case FC_L_IDENTITY:
            for (int64_t j = 0; j < m; j++) o[j] = d[j];
            break;
        case FC_L_RELU:
            for (int64_t j = 0; j < m; j++) o[j] = xr[j] <= 0 ? (FC_T)0 : d[j];
            break;
        case FC_L_LEAKY:
            for (int64_t j = 0; j < m; j++) o[j] = xr[j] > 0 ? d[j] : d[j] * slope;
            break;
        case FC_L_PRELU:
            for (int64_t j = 0; j < m; j++) {
                o[j] = xr[j] > 0 ? d[j] : d[j] * slope;
                ds += xr[j] > 0 ? 0.0 : (double)d[j] * (double)xr[j];
            }
            break;
        case FC_L_SIGMOID:
            for (int64_t j = 0; j < m; j++) o[j] = d[j] * ((FC_T)1 - yr[j]) * yr[j];
            break;
        default:
            for (int64_t j = 0; j < m; j++) o[j] = d[j] * ((FC_T)1 - yr[j] * yr[j]);
            break;
        }
    }
    if (act == FC_L_PRELU) {
        FC_T v = (FC_T)ds;
        *dslope = v;
        *dslope_sq = (double)v * (double)v;
    }
    return FC_OK;
}

#undef LFN
#undef FC_LCAT
#undef FC_LCAT_
