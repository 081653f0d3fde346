/* fastclip: optimiser updates fused with gradient clipping (see optim.h). */
#include "optim.h"

#include <math.h>
#include <string.h>

#include "clip.h"

/* The scalars of one step, in double; each dtype rounds them once. */
typedef struct {
    double c, lo, hi, nlr, wd, mom, omd, decay, w, b2, omb2, bc2s, eps, nss, alpha, oma;
} fc_optim_coefs;

#define FC_T float
#define FC_SUF f32
#define FC_SQRT sqrtf
#include "optim_impl.h"
#undef FC_T
#undef FC_SUF
#undef FC_SQRT

#define FC_T double
#define FC_SUF f64
#define FC_SQRT sqrt
#include "optim_impl.h"
#undef FC_T
#undef FC_SUF
#undef FC_SQRT

int fc_optim_nstate(const fc_optim_config *cfg) {
    switch (cfg->kind) {
        case FC_OPT_SGD: return cfg->momentum != 0 ? 1 : 0;
        case FC_OPT_ADAM: return cfg->amsgrad ? 3 : 2;
        case FC_OPT_RMSPROP: return 1 + (cfg->centered ? 1 : 0) + (cfg->momentum > 0 ? 1 : 0);
        default: return -1;
    }
}

typedef struct {
    const fc_optim_config *cfg;
    const fc_optim_coefs_f32 *k32;
    const fc_optim_coefs_f64 *k64;
    const fc_array *params, *grads, *states;
    int nstate;
    const fc_block *blocks;
} upd_ctx;

static void upd_item(void *c, int64_t q) {
    const upd_ctx *u = (const upd_ctx *)c;
    const fc_block *bl = u->blocks + q;
    const int64_t i = bl->arr;
    const fc_array *st = u->states + i * u->nstate;
    if (u->params[i].dtype == FC_FLOAT32)
        update_block_f32(u->cfg, u->k32, u->params + i, u->grads + i, st, u->nstate, bl->start, bl->count);
    else
        update_block_f64(u->cfg, u->k64, u->params + i, u->grads + i, st, u->nstate, bl->start, bl->count);
}

int fc_optim_step(const fc_optim_config *cfg, const fc_array *params, const fc_array *grads,
                  const fc_array *states, int64_t n, const double *sqnorms, double *norms,
                  double *total, int64_t *first_nonfinite) {
    *total = 0.0;
    *first_nonfinite = -1;
    const int nstate = fc_optim_nstate(cfg);
    if (nstate < 0 || cfg->step < 1) return FC_EINVAL;
    for (int64_t i = 0; i < n; i++) {
        const fc_array *p = params + i, *g = grads + i;
        if (p->ndim != 0 || g->ndim != 0 || p->size != g->size || p->dtype != g->dtype)
            return FC_EINVAL;
        for (int j = 0; j < nstate; j++) {
            const fc_array *s = states + i * nstate + j;
            if (s->ndim != 0 || s->size != p->size || s->dtype != p->dtype) return FC_EINVAL;
        }
    }
    if (n <= 0) return FC_OK;

    /* 1. the global norm */
    if (sqnorms) {
        for (int64_t i = 0; i < n; i++) norms[i] = sqrt(sqnorms[i]);
    } else {
        int rc = fc_array_norms(grads, n, 2.0, norms);
        if (rc != FC_OK) return rc;
    }
    const double tot = fc_total_norm(norms, n, 2.0);
    *total = tot;
    if (!isfinite(tot)) {
        for (int64_t i = 0; i < n; i++) {
            if (!isfinite(norms[i])) {
                *first_nonfinite = i;
                break;
            }
        }
        return FC_ENONFINITE;
    }

    /* 2. the scalars of this step */
    fc_optim_coefs k;
    memset(&k, 0, sizeof k);
    k.c = cfg->clip_mode == FC_CLIP_NORM ? fc_clip_coef(cfg->clip, tot) : 1.0;
    k.lo = cfg->clip_mode == FC_CLIP_VALUE ? -cfg->clip : -INFINITY;
    k.hi = cfg->clip_mode == FC_CLIP_VALUE ? cfg->clip : INFINITY;
    k.nlr = -cfg->lr;
    k.wd = cfg->weight_decay;
    k.mom = cfg->momentum;
    k.omd = 1.0 - cfg->dampening;
    if (cfg->kind == FC_OPT_ADAM) {
        double bc1 = 1.0 - pow(cfg->beta1, (double)cfg->step);
        double bc2 = 1.0 - pow(cfg->beta2, (double)cfg->step);
        k.decay = 1.0 - cfg->lr * cfg->weight_decay;
        k.w = 1.0 - cfg->beta1;
        k.b2 = cfg->beta2;
        k.omb2 = 1.0 - cfg->beta2;
        k.bc2s = pow(bc2, 0.5);
        k.nss = -(cfg->lr / bc1);
        k.eps = cfg->eps;
    } else if (cfg->kind == FC_OPT_RMSPROP) {
        k.alpha = cfg->alpha;
        k.oma = 1.0 - cfg->alpha;
        k.w = 1.0 - cfg->alpha;
        k.eps = cfg->eps;
    }
    fc_optim_coefs_f32 k32;
    fc_optim_coefs_f64 k64;
    make_coefs_f32(&k, &k32);
    make_coefs_f64(&k, &k64);

    /* 3. one fused pass, blocks of FC_BLOCK elements across all parameters */
    int64_t nb, work;
    fc_block *blocks = fc_make_blocks(params, n, NULL, &nb, &work);
    if (nb == 0) return FC_OK;
    if (!blocks) return FC_ENOMEM;
    upd_ctx u = {cfg, &k32, &k64, params, grads, states, nstate, blocks};
    /* Adam/RMSprop touch 4-6 arrays per element: helpers pay off earlier. */
    fc_parallel_for(nb, upd_item, &u, fc_use_parallel(work * (nstate + 2) / 2));
    free(blocks);
    return FC_OK;
}
