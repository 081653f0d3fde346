/* fastclip: adaptive-clipping kernels (see adaptive.h). */
#include "adaptive.h"

#include <math.h>
#include <string.h>

#define FC_T float
#define FC_SUF f32
#define FC_TRACK_MAX 0
#include "adaptive_impl.h"
#undef FC_T
#undef FC_SUF
#undef FC_TRACK_MAX

#define FC_T double
#define FC_SUF f64
#define FC_TRACK_MAX 1
#include "adaptive_impl.h"
#undef FC_T
#undef FC_SUF
#undef FC_TRACK_MAX

/* Sums of squares below this may have lost digits to underflow. */
#define FC_ASSQ_TINY 0x1p-968
/* Columns per task. */
#define FC_UNIT_W ((int64_t)512)

/* Tasks: row blocks x column chunks. The row-block height depends only on
 * the shape, so the order in which partial sums are added never depends on
 * the number of threads. */
typedef struct {
    int64_t w, rb, nrb, ncc;
} fc_tiling;

static void fc_tile(const fc_units *a, fc_tiling *t) {
    t->w = a->cols < FC_UNIT_W ? a->cols : FC_UNIT_W;
    if (t->w < 1) t->w = 1;
    t->rb = FC_BLOCK / t->w;
    if (t->rb < 1) t->rb = 1;
    t->nrb = (a->rows + t->rb - 1) / t->rb;
    t->ncc = (a->cols + t->w - 1) / t->w;
}

/* One task of a tiled pass over `a`: a row block x a column chunk. */
typedef struct {
    const fc_units *a;
    const fc_tiling *t;
    int adjacent;       /* columns adjacent in memory (cs == itemsize) */
    double *acc, *mx;   /* colsq_task: per row block, per column */
    const void *coef;   /* scale_task: per-column coefficients (the array's dtype) */
} fc_unit_task;

/* The tile of task k: row block *b, rows [*r0, *r1), columns [*c0, *c1). */
static void fc_tile_of(const fc_units *a, const fc_tiling *t, int64_t k, int64_t *b,
                       int64_t *r0, int64_t *r1, int64_t *c0, int64_t *c1) {
    const int64_t cc = k % t->ncc;
    *b = k / t->ncc;
    *r0 = *b * t->rb;
    *r1 = *r0 + t->rb < a->rows ? *r0 + t->rb : a->rows;
    *c0 = cc * t->w;
    *c1 = *c0 + t->w < a->cols ? *c0 + t->w : a->cols;
}

static void colsq_task(void *c, int64_t k) {
    const fc_unit_task *u = (const fc_unit_task *)c;
    const fc_units *a = u->a;
    int64_t b, r0, r1, c0, c1;
    fc_tile_of(a, u->t, k, &b, &r0, &r1, &c0, &c1);
    double *pa = u->acc + b * a->cols, *pm = u->mx + b * a->cols;
    if (a->dtype == FC_FLOAT32) {
        if (u->adjacent) colsq_rows_f32(a->data, a->rs, r0, r1, c0, c1, pa, pm);
        else colsq_cols_f32(a->data, a->rs, a->cs, r0, r1, c0, c1, pa, pm);
    } else {
        if (u->adjacent) colsq_rows_f64(a->data, a->rs, r0, r1, c0, c1, pa, pm);
        else colsq_cols_f64(a->data, a->rs, a->cs, r0, r1, c0, c1, pa, pm);
    }
}

static void scale_task(void *c, int64_t q) {
    const fc_unit_task *u = (const fc_unit_task *)c;
    const fc_units *a = u->a;
    int64_t b, r0, r1, c0, c1;
    fc_tile_of(a, u->t, q, &b, &r0, &r1, &c0, &c1);
    if (a->dtype == FC_FLOAT32) {
        if (u->adjacent) scale_rows_f32(a->data, a->rs, r0, r1, c0, c1, (const float *)u->coef);
        else scale_cols_f32(a->data, a->rs, a->cs, r0, r1, c0, c1, (const float *)u->coef);
    } else {
        if (u->adjacent) scale_rows_f64(a->data, a->rs, r0, r1, c0, c1, (const double *)u->coef);
        else scale_cols_f64(a->data, a->rs, a->cs, r0, r1, c0, c1, (const double *)u->coef);
    }
}

/* Column norms of `a` into norms[cols] and column sums of squares into
 * sq[cols] (sq = norm^2 computed without overflow where possible). */
static int fc_colnorms(const fc_units *a, double *norms, double *sq) {
    const int64_t rows = a->rows, cols = a->cols;
    if (cols <= 0) return FC_OK;
    if (rows <= 0) {
        for (int64_t c = 0; c < cols; c++) norms[c] = sq[c] = 0.0;
        return FC_OK;
    }
    fc_tiling t;
    fc_tile(a, &t);
    const int64_t item = fc_itemsize(a->dtype);
    const int64_t np = t.nrb * cols;
    double *acc = (double *)calloc((size_t)np, sizeof(double));
    double *mx = (double *)calloc((size_t)np, sizeof(double));
    if (!acc || !mx) {
        free(acc);
        free(mx);
        return FC_ENOMEM;
    }
    fc_unit_task task = {a, &t, (a->cs == item), acc, mx, NULL};
    fc_parallel_for(t.nrb * t.ncc, colsq_task, &task, fc_use_parallel(rows * cols));
    for (int64_t c = 0; c < cols; c++) {
        double s = 0, m = 0;
        for (int64_t b = 0; b < t.nrb; b++) {
            s += acc[b * cols + c];
            double v = mx[b * cols + c];
            m = v > m ? v : m;
        }
        int rescue = a->dtype == FC_FLOAT64 &&
                     ((isinf(s) && isfinite(m)) || (s < FC_ASSQ_TINY && m > 0));
        if (rescue) {
            double r = col_scaled_ssq_f64(a->data, a->rs, a->cs, rows, c, m);
            norms[c] = m * sqrt(r);
            sq[c] = (m * m) * r;
        } else {
            norms[c] = sqrt(s);
            sq[c] = s;
        }
    }
    free(acc);
    free(mx);
    return FC_OK;
}

int fc_unit_norms(const fc_units *a, double *norms) {
    if (a->cols <= 0) return FC_OK;
    double *sq = (double *)malloc((size_t)a->cols * sizeof(double));
    if (!sq) return FC_ENOMEM;
    int rc = fc_colnorms(a, norms, sq);
    free(sq);
    return rc;
}

static int fc_scale_units(const fc_units *a, const void *k) {
    const int64_t rows = a->rows, cols = a->cols;
    if (rows <= 0 || cols <= 0) return FC_OK;
    fc_tiling t;
    fc_tile(a, &t);
    const int64_t item = fc_itemsize(a->dtype);
    fc_unit_task task = {a, &t, (a->cs == item), NULL, NULL, k};
    fc_parallel_for(t.nrb * t.ncc, scale_task, &task, fc_use_parallel(rows * cols));
    return FC_OK;
}

int fc_agc_(const fc_units *g, const fc_units *p, int64_t n, double clipping, double eps,
            double *sq_before, double *sq_after, int64_t *n_clipped) {
    *n_clipped = 0;
    if (n <= 0) return FC_OK;
    int64_t total = 0, maxc = 1;
    for (int64_t i = 0; i < n; i++) {
        if (g[i].rows != p[i].rows || g[i].cols != p[i].cols) return FC_EINVAL;
        total += g[i].cols;
        if (g[i].cols > maxc) maxc = g[i].cols;
    }
    /* coefficients of every unit (double), then per array in its dtype */
    double *coef = (double *)malloc((size_t)(total > 0 ? total : 1) * sizeof(double));
    double *gn = (double *)malloc((size_t)maxc * sizeof(double));
    double *gs = (double *)malloc((size_t)maxc * sizeof(double));
    double *pn = (double *)malloc((size_t)maxc * sizeof(double));
    double *ps = (double *)malloc((size_t)maxc * sizeof(double));
    double *kd = (double *)malloc((size_t)maxc * sizeof(double));
    float *kf = (float *)malloc((size_t)maxc * sizeof(float));
    int rc = FC_OK;
    if (!coef || !gn || !gs || !pn || !ps || !kd || !kf) {
        rc = FC_ENOMEM;
        goto done;
    }
    int64_t clipped = 0, off = 0;
    /* pass 1: every norm and coefficient, before any gradient is written */
    for (int64_t i = 0; i < n; i++) {
        const int64_t cols = g[i].cols;
        rc = fc_colnorms(g + i, gn, gs);
        if (rc != FC_OK) goto done;
        rc = fc_colnorms(p + i, pn, ps);
        if (rc != FC_OK) goto done;
        double before = 0, after = 0;
        for (int64_t c = 0; c < cols; c++) {
            /* jnp.maximum propagates NaN; so does this */
            double pm = (pn[c] > eps || pn[c] != pn[c]) ? pn[c] : eps;
            double max_norm = clipping * pm;
            double k = 1.0;
            if (!(gn[c] < max_norm)) {
                double gm = (gn[c] > 1e-6 || gn[c] != gn[c]) ? gn[c] : 1e-6;
                k = max_norm / gm;
            }
            coef[off + c] = k;
            before += gs[c];
            if (k != 1.0) {
                clipped++;
                double gk = gn[c] * k; /* the clipped norm; cannot overflow */
                after += gk * gk;
            } else {
                after += gs[c];
            }
        }
        sq_before[i] = before;
        sq_after[i] = after;
        off += cols;
    }
    /* pass 2: scale the arrays that have a unit to clip */
    off = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t cols = g[i].cols;
        int any = 0;
        for (int64_t c = 0; c < cols; c++) any |= (coef[off + c] != 1.0);
        if (any) {
            const void *k;
            if (g[i].dtype == FC_FLOAT32) {
                for (int64_t c = 0; c < cols; c++) kf[c] = (float)coef[off + c];
                k = kf;
            } else {
                for (int64_t c = 0; c < cols; c++) kd[c] = coef[off + c];
                k = kd;
            }
            rc = fc_scale_units(g + i, k);
            if (rc != FC_OK) goto done;
        }
        off += cols;
    }
    *n_clipped = clipped;
done:
    free(coef);
    free(gn);
    free(gs);
    free(pn);
    free(ps);
    free(kd);
    free(kf);
    return rc;
}
