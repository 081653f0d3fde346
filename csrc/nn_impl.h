/*
 * Per-dtype MLP kernels, included by nn.c twice: FC_T = float (FC_SUF f32)
 * and FC_T = double (FC_SUF f64).
 */
#define FC_CAT_(a, b) a##_##b
#define FC_CAT(a, b) FC_CAT_(a, b)
#define FN(name) FC_CAT(name, FC_SUF)

/* ---- activations ------------------------------------------------------ */
/* sigmoid(v) = 1 / (1 + exp(-v)), as PyTorch computes it: exp(-v) overflows
 * to inf for v < -log(max) and the result is then 0; NaN propagates. */
static inline FC_T FN(sigmoid)(FC_T v) { return (FC_T)1 / ((FC_T)1 + FC_EXP(-v)); }
static inline FC_T FN(tanh)(FC_T v) { return FC_TANH(v); }

/* ---- forward epilogue ------------------------------------------------- */
static FC_TARGET_CLONES void FN(epi_inplace)(FC_T *y, int64_t ldy, int64_t r0, int64_t r1,
                                             int64_t m, const FC_T *restrict b, int act, FC_T s) {
    for (int64_t i = r0; i < r1; i++) {
        FC_T *restrict yr = y + i * ldy;
        if (act == FC_ACT_IDENTITY) {
            for (int64_t j = 0; j < m; j++) yr[j] = yr[j] + b[j];
        } else if (act == FC_ACT_RELU) {
            for (int64_t j = 0; j < m; j++) {
                FC_T v = yr[j] + b[j];
                yr[j] = v <= 0 ? (FC_T)0 : v; /* NaN stays NaN */
            }
        } else if (act == FC_ACT_SIGMOID) {
            for (int64_t j = 0; j < m; j++) yr[j] = FN(sigmoid)(yr[j] + b[j]);
        } else if (act == FC_ACT_TANH) {
            for (int64_t j = 0; j < m; j++) yr[j] = FN(tanh)(yr[j] + b[j]);
        } else {
            for (int64_t j = 0; j < m; j++) {
                FC_T v = yr[j] + b[j];
                yr[j] = v > 0 ? v : v * s;
            }
        }
    }
}

static FC_TARGET_CLONES void FN(epi_split)(FC_T *z, int64_t ldz, FC_T *y, int64_t ldy, int64_t r0,
                                           int64_t r1, int64_t m, const FC_T *restrict b, int act,
                                           FC_T s) {
    for (int64_t i = r0; i < r1; i++) {
        FC_T *restrict zr = z + i * ldz;
        FC_T *restrict yr = y + i * ldy;
        if (act == FC_ACT_IDENTITY) {
            for (int64_t j = 0; j < m; j++) {
                FC_T v = zr[j] + b[j];
                zr[j] = v;
                yr[j] = v;
            }
        } else if (act == FC_ACT_RELU) {
            for (int64_t j = 0; j < m; j++) {
                FC_T v = zr[j] + b[j];
                zr[j] = v;
                yr[j] = v <= 0 ? (FC_T)0 : v;
            }
        } else if (act == FC_ACT_SIGMOID || act == FC_ACT_TANH) {
            const int sig = act == FC_ACT_SIGMOID;
            for (int64_t j = 0; j < m; j++) {
                FC_T v = zr[j] + b[j];
                zr[j] = v;
                yr[j] = sig ? FN(sigmoid)(v) : FN(tanh)(v);
            }
        } else {
            for (int64_t j = 0; j < m; j++) {
                FC_T v = zr[j] + b[j];
                zr[j] = v;
                yr[j] = v > 0 ? v : v * s;
            }
        }
    }
}

typedef struct {
    FC_T *z, *y;
    int64_t ldz, ldy, n, m, rb;
    const FC_T *b;
    int act, inplace;
    FC_T slope;
} FN(bias_act_items);

static void FN(bias_act_item)(void *c, int64_t k) {
    const FN(bias_act_items) *t = (const FN(bias_act_items) *)c;
    int64_t r0 = k * t->rb, r1 = r0 + t->rb < t->n ? r0 + t->rb : t->n;
    if (t->inplace) FN(epi_inplace)(t->y, t->ldy, r0, r1, t->m, t->b, t->act, t->slope);
    else FN(epi_split)(t->z, t->ldz, t->y, t->ldy, r0, r1, t->m, t->b, t->act, t->slope);
}

int FN(fc_nn_bias_act)(FC_T *z, int64_t ldz, FC_T *y, int64_t ldy, int64_t n, int64_t m,
                       const FC_T *b, int act, FC_T slope) {
    if (act < FC_ACT_IDENTITY || act > FC_ACT_TANH) return FC_EINVAL;
    if (n <= 0 || m <= 0) return FC_OK;
    int64_t rb = FC_BLOCK / m;
    if (rb < 1) rb = 1;
    const int64_t nb = (n + rb - 1) / rb;
    FN(bias_act_items) t = {z, y, ldz, ldy, n, m, rb, b, act, z == y, slope};
    fc_parallel_for(nb, FN(bias_act_item), &t, nb > 1 && FC_NN_PAR(n * m));
    return FC_OK;
}

/* ---- backward activation pass ----------------------------------------- */
/* Rows [0, n) of one row block (pointers at the block's first row):
 * dz = dy * act'(ref), acc[j] = sum_i dz[i,j] and, for prelu,
 * sacc[j] = sum over ref <= 0 of dy * ref; rows visited in order, the
 * accumulators are per column (vectorisable, no cross-lane reduction). */
static FC_TARGET_CLONES void FN(bwd_rows)(const FC_T *dy, int64_t lddy, const FC_T *ref,
                                          int64_t ldr, FC_T *dz, int64_t lddz, int64_t n,
                                          int64_t m, int act, FC_T s, double *restrict acc,
                                          double *restrict sacc) {
    for (int64_t j = 0; j < m; j++) acc[j] = 0.0;
    if (sacc)
        for (int64_t j = 0; j < m; j++) sacc[j] = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const FC_T *restrict d = dy + i * lddy;
        if (act == FC_ACT_IDENTITY) {
            if (dz) {
                FC_T *restrict o = dz + i * lddz;
                for (int64_t j = 0; j < m; j++) {
                    FC_T v = d[j];
                    o[j] = v;
                    acc[j] += (double)v;
                }
            } else {
                for (int64_t j = 0; j < m; j++) acc[j] += (double)d[j];
            }
            continue;
        }
        const FC_T *restrict r = ref + i * ldr;
        FC_T *restrict o = dz + i * lddz;
        if (act == FC_ACT_RELU) {
            for (int64_t j = 0; j < m; j++) {
                FC_T g = d[j], z = r[j];
                FC_T v = z <= 0 ? (FC_T)0 : g;
                o[j] = v;
                acc[j] += (double)v;
            }
        } else if (act == FC_ACT_SIGMOID) {
            /* r is the output y: sigmoid' = y (1 - y), as PyTorch's
             * sigmoid_backward computes it: dy * (1 - y) * y */
            for (int64_t j = 0; j < m; j++) {
                FC_T y = r[j];
                FC_T v = d[j] * ((FC_T)1 - y) * y;
                o[j] = v;
                acc[j] += (double)v;
            }
        } else if (act == FC_ACT_TANH) {
            /* r is the output y: tanh' = 1 - y^2 (PyTorch: dy * (1 - y * y)) */
            for (int64_t j = 0; j < m; j++) {
                FC_T y = r[j];
                FC_T v = d[j] * ((FC_T)1 - y * y);
                o[j] = v;
                acc[j] += (double)v;
            }
        } else if (act == FC_ACT_LEAKY_RELU) {
            for (int64_t j = 0; j < m; j++) {
                FC_T g = d[j], z = r[j], gs = g * s;
                FC_T v = z > 0 ? g : gs;
                o[j] = v;
                acc[j] += (double)v;
            }
        } else {
            for (int64_t j = 0; j < m; j++) {
                FC_T g = d[j], z = r[j], gs = g * s;
                double gz = (double)g * (double)z;
                FC_T v = z > 0 ? g : gs;
                o[j] = v;
                acc[j] += (double)v;
                sacc[j] += z > 0 ? 0.0 : gz;
            }
        }
    }
}

/* acc[j] += part[j] for each of nb blocks in order (acc = block 0). */
static void FN(sum_blocks)(double *part, int64_t nb, int64_t m) {
    for (int64_t k = 1; k < nb; k++) {
        const double *restrict p = part + k * m;
        double *restrict a = part;
        for (int64_t j = 0; j < m; j++) a[j] += p[j];
    }
}

typedef struct {
    const FC_T *dy, *ref;
    FC_T *dz;
    int64_t lddy, ldr, lddz, n, m, rb;
    int act;
    FC_T slope;
    double *part, *spart;
} FN(bwd_items);

static void FN(bwd_item)(void *c, int64_t k) {
    const FN(bwd_items) *t = (const FN(bwd_items) *)c;
    const int64_t r0 = k * t->rb, r1 = r0 + t->rb < t->n ? r0 + t->rb : t->n;
    FN(bwd_rows)(t->dy + r0 * t->lddy, t->lddy, t->ref ? t->ref + r0 * t->ldr : NULL, t->ldr,
                 t->dz ? t->dz + r0 * t->lddz : NULL, t->lddz, r1 - r0, t->m, t->act, t->slope,
                 t->part + k * t->m, t->spart ? t->spart + k * t->m : NULL);
}

int FN(fc_nn_act_backward)(const FC_T *dy, int64_t lddy, const FC_T *ref, int64_t ldr, FC_T *dz,
                           int64_t lddz, int64_t n, int64_t m, int act, FC_T slope, FC_T *db,
                           double *db_sq, FC_T *dslope, double *dslope_sq) {
    if (act < FC_ACT_IDENTITY || act > FC_ACT_TANH) return FC_EINVAL;
    if (act != FC_ACT_IDENTITY && (!dz || !ref)) return FC_EINVAL;
    if (act == FC_ACT_PRELU && (!dslope || !dslope_sq)) return FC_EINVAL;
    if (n < 0 || m < 0) return FC_EINVAL;
    const int prelu = act == FC_ACT_PRELU;
    if (n == 0 || m == 0) {
        for (int64_t j = 0; j < m; j++) db[j] = (FC_T)0;
        *db_sq = 0.0;
        if (prelu) *dslope = (FC_T)0, *dslope_sq = 0.0;
        return FC_OK;
    }
    /* Fixed row blocks (a function of n and m only): per-block column
     * partials, added in block order. */
    int64_t rb = FC_BLOCK / m;
    if (rb < 16) rb = 16;
    const int64_t nb = (n + rb - 1) / rb;
    double *part = (double *)malloc((size_t)(nb * m * (prelu ? 2 : 1)) * sizeof(double));
    if (!part) return FC_ENOMEM;
    double *spart = prelu ? part + nb * m : NULL;
    FN(bwd_items) t = {dy, ref, dz, lddy, ldr, lddz, n, m, rb, act, slope, part, spart};
    fc_parallel_for(nb, FN(bwd_item), &t, nb > 1 && FC_NN_PAR(n * m));
    FN(sum_blocks)(part, nb, m);
    double sq = 0.0;
    for (int64_t j = 0; j < m; j++) {
        FC_T v = (FC_T)part[j];
        db[j] = v;
        sq += (double)v * (double)v;
    }
    *db_sq = sq;
    if (prelu) {
        FN(sum_blocks)(spart, nb, m);
        double t = 0.0;
        for (int64_t j = 0; j < m; j++) t += spart[j];
        FC_T ds = (FC_T)t;
        *dslope = ds;
        *dslope_sq = (double)ds * (double)ds;
    }
    free(part);
    return FC_OK;
}

/* ---- sum of squares ---------------------------------------------------- */
static FC_TARGET_CLONES double FN(ssq_block)(const FC_T *restrict x, int64_t n) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; j++) {
            double v = (double)x[i + j];
            s[j] += v * v;
        }
    }
    double t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) t += (double)x[i] * (double)x[i];
    return t;
}

typedef struct {
    const FC_T *x;
    int64_t n;
    double *part;
} FN(ssq_items);

static void FN(ssq_item)(void *c, int64_t k) {
    const FN(ssq_items) *t = (const FN(ssq_items) *)c;
    int64_t s0 = k * FC_BLOCK;
    t->part[k] = FN(ssq_block)(t->x + s0, t->n - s0 < FC_BLOCK ? t->n - s0 : FC_BLOCK);
}

double FN(fc_nn_sumsq)(const FC_T *x, int64_t n) {
    if (n <= 0) return 0.0;
    const int64_t nb = (n + FC_BLOCK - 1) / FC_BLOCK;
    if (nb == 1) return FN(ssq_block)(x, n);
    FN(ssq_items) t = {x, n, NULL};
    double total = 0.0;
    if (fc_sum_blocks(nb, FN(ssq_item), &t, &t.part, FC_NN_PAR(n), &total) == FC_OK)
        return total;
    for (int64_t k = 0; k < nb; k++) { /* no memory: same blocks, same order, one thread */
        int64_t s0 = k * FC_BLOCK;
        total += FN(ssq_block)(x + s0, n - s0 < FC_BLOCK ? n - s0 : FC_BLOCK);
    }
    return total;
}

/* ---- losses -------------------------------------------------------------- */
#ifndef FC_XENT_KEEP
/* rows of up to this many classes keep exp(x_j - max) on the stack: computed once for
   the sum and reused for the gradient (wider rows compute it again, same value) */
#define FC_XENT_KEEP 256
#endif

/* The rows' summed losses, each times its weight (w NULL: weight 1, and 1.0 * l == l), and
   their gradient rows, over den (the row count) or times w_i / den (den: the weights'
   sum); the test of w is loop-invariant (the compiler unswitches it), so the unweighted
   loops are those of the unweighted kernel. */
static double FN(xent_rows)(const FC_T *x, int64_t ldx, int64_t r0, int64_t r1, int64_t c,
                            const int64_t *labels, const FC_T *t, int64_t ldt, FC_T *g,
                            const double *w, double den) {
    double L = 0.0;
    double ex[FC_XENT_KEEP];
    const int keep = c <= FC_XENT_KEEP;
    for (int64_t i = r0; i < r1; i++) {
        const FC_T *xr = x + i * ldx;
        FC_T *gr = g + i * c;
        const double wi = w ? w[i] : 1.0;
        double mx = -INFINITY;
        for (int64_t j = 0; j < c; j++) {
            double v = (double)xr[j];
            mx = v > mx ? v : mx; /* NaN ignored here; it reaches the sum */
        }
        if (!(mx > -INFINITY)) mx = 0.0;
        double se = 0.0;
        for (int64_t j = 0; j < c; j++) {
            double e = exp((double)xr[j] - mx);
            if (keep) ex[j] = e;
            se += e;
        }
        /* log-sum-exp minus the label's logit, as log(se) + (max - x_y): forming
           max + log(se) first would round log(se) away for logits near 1e16 */
        const double lse = log(se);
        if (labels) {
            const int64_t y = labels[i];
            L += wi * (lse + (mx - (double)xr[y]));
            for (int64_t j = 0; j < c; j++) {
                double p = (keep ? ex[j] : exp((double)xr[j] - mx)) / se;
                double v = j == y ? p - 1.0 : p;
                gr[j] = (FC_T)(w ? v * wi / den : v / den);
            }
        } else {
            const FC_T *tr = t + i * ldt;
            double ts = 0.0, sxt = 0.0;
            for (int64_t j = 0; j < c; j++) {
                ts += (double)tr[j];
                sxt += (double)tr[j] * ((double)xr[j] - mx);
            }
            L += wi * (ts * lse - sxt);
            for (int64_t j = 0; j < c; j++) {
                double p = (keep ? ex[j] : exp((double)xr[j] - mx)) / se;
                double v = p * ts - (double)tr[j];
                gr[j] = (FC_T)(w ? v * wi / den : v / den);
            }
        }
    }
    return L;
}

typedef struct {
    const FC_T *x, *t;
    int64_t ldx, n, c, ldt, rb;
    const int64_t *labels;
    FC_T *g;
    const double *w;
    double den;
    double *part;
} FN(xent_items);

static void FN(xent_item)(void *ctx, int64_t k) {
    const FN(xent_items) *u = (const FN(xent_items) *)ctx;
    int64_t r0 = k * u->rb, r1 = r0 + u->rb < u->n ? r0 + u->rb : u->n;
    u->part[k] = FN(xent_rows)(u->x, u->ldx, r0, r1, u->c, u->labels, u->t, u->ldt, u->g,
                               u->w, u->den);
}

int FN(fc_nn_softmax_xent)(const FC_T *x, int64_t ldx, int64_t n, int64_t c,
                           const int64_t *labels, const FC_T *t, int64_t ldt, const double *w,
                           double w_sum, FC_T *g, double *loss) {
    if (n <= 0) {
        *loss = NAN;
        return FC_OK;
    }
    if (c <= 0 || (!labels && !t) || (w && !(w_sum > 0))) return FC_EINVAL;
    const double den = w ? w_sum : (double)n;
    int64_t rb = FC_BLOCK / c;
    if (rb < 1) rb = 1;
    const int64_t nb = (n + rb - 1) / rb;
    FN(xent_items) u = {x, t, ldx, n, c, ldt, rb, labels, g, w, den, NULL};
    double L = 0.0;
    int rc = fc_sum_blocks(nb, FN(xent_item), &u, &u.part, nb > 1 && fc_use_parallel(n * c * 8),
                           &L);
    if (rc != FC_OK) return rc;
    *loss = L / den;
    return FC_OK;
}

static FC_TARGET_CLONES double FN(mse_block)(const FC_T *restrict p, const FC_T *restrict t,
                                             FC_T *restrict g, int64_t n, double scale) {
    double s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        for (int j = 0; j < 4; j++) {
            double d = (double)p[i + j] - (double)t[i + j];
            s[j] += d * d;
            g[i + j] = (FC_T)(d * scale);
        }
    }
    double tot = (s[0] + s[1]) + (s[2] + s[3]);
    for (; i < n; i++) {
        double d = (double)p[i] - (double)t[i];
        tot += d * d;
        g[i] = (FC_T)(d * scale);
    }
    return tot;
}

typedef struct {
    const FC_T *p, *t;
    FC_T *g;
    int64_t size;
    double scale;
    double *part;
} FN(mse_items);

static void FN(mse_item)(void *c, int64_t k) {
    const FN(mse_items) *u = (const FN(mse_items) *)c;
    int64_t s0 = k * FC_BLOCK;
    int64_t len = u->size - s0 < FC_BLOCK ? u->size - s0 : FC_BLOCK;
    u->part[k] = FN(mse_block)(u->p + s0, u->t + s0, u->g + s0, len, u->scale);
}

/* Weighted rows [r0, r1) of k elements: g = d * (2 w_i / den) and the sum over rows of
 * w_i * sum_j d_ij^2 (each row's squares summed in order). */
static FC_TARGET_CLONES double FN(mse_wrows)(const FC_T *restrict p, const FC_T *restrict t,
                                             FC_T *restrict g, int64_t r0, int64_t r1, int64_t k,
                                             const double *restrict w, double den) {
    double L = 0.0;
    for (int64_t i = r0; i < r1; i++) {
        const double sc = 2.0 * w[i] / den;
        const FC_T *restrict pr = p + i * k, *restrict tr = t + i * k;
        FC_T *restrict gr = g + i * k;
        double s = 0.0;
        for (int64_t j = 0; j < k; j++) {
            double d = (double)pr[j] - (double)tr[j];
            s += d * d;
            gr[j] = (FC_T)(d * sc);
        }
        L += w[i] * s;
    }
    return L;
}

typedef struct {
    const FC_T *p, *t;
    FC_T *g;
    int64_t rows, k, rb;
    const double *w;
    double den;
    double *part;
} FN(mse_witems);

static void FN(mse_witem)(void *c, int64_t b) {
    const FN(mse_witems) *u = (const FN(mse_witems) *)c;
    int64_t r0 = b * u->rb, r1 = r0 + u->rb < u->rows ? r0 + u->rb : u->rows;
    u->part[b] = FN(mse_wrows)(u->p, u->t, u->g, r0, r1, u->k, u->w, u->den);
}

/* The weighted loss: fixed blocks of whole rows (a function of the shape only), added in
 * block order. */
static int FN(mse_weighted)(const FC_T *p, const FC_T *t, FC_T *g, int64_t size,
                            const double *w, int64_t rows, double w_sum, double *loss) {
    if (rows <= 0 || size % rows != 0 || !(w_sum > 0)) return FC_EINVAL;
    const int64_t k = size / rows;
    int64_t rb = FC_BLOCK / k;
    if (rb < 1) rb = 1;
    const int64_t nb = (rows + rb - 1) / rb;
    const double den = w_sum * (double)k;
    FN(mse_witems) u = {p, t, g, rows, k, rb, w, den, NULL};
    double L = 0.0;
    int rc = fc_sum_blocks(nb, FN(mse_witem), &u, &u.part, nb > 1 && fc_use_parallel(size), &L);
    if (rc != FC_OK) return rc;
    *loss = L / den;
    return FC_OK;
}

int FN(fc_nn_mse)(const FC_T *p, const FC_T *t, FC_T *g, int64_t size, const double *w,
                  int64_t rows, double w_sum, double *loss) {
    if (size <= 0) {
        *loss = NAN;
        return FC_OK;
    }
    if (w) return FN(mse_weighted)(p, t, g, size, w, rows, w_sum, loss);
    const int64_t nb = (size + FC_BLOCK - 1) / FC_BLOCK;
    const double scale = 2.0 / (double)size;
    FN(mse_items) u = {p, t, g, size, scale, NULL};
    double L = 0.0;
    int rc = fc_sum_blocks(nb, FN(mse_item), &u, &u.part, nb > 1 && fc_use_parallel(size), &L);
    if (rc != FC_OK) return rc;
    *loss = L / (double)size;
    return FC_OK;
}

#undef FN
#undef FC_CAT
#undef FC_CAT_
