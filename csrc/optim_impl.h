/*
 * Per-dtype fused clip+update kernels, included by optim.c twice: FC_T =
 * float (FC_SUF = f32, FC_SQRT = sqrtf) and FC_T = double (f64, sqrt).
 * Arithmetic is in FC_T with the scalars rounded to FC_T, as PyTorch's CPU
 * kernels do; the operations follow torch/optim/{sgd,adam,rmsprop}.py
 * (single-tensor path). The loop bodies are always-inline functions whose
 * flags are compile-time constants at each call site, so every variant is a
 * branch-free, vectorisable loop; FC_TARGET_CLONES adds an AVX2 clone.
 */
#define FC_CAT_(a, b) a##_##b
#define FC_CAT(a, b) FC_CAT_(a, b)
#define FN(name) FC_CAT(name, FC_SUF)

typedef struct {
    FC_T c, lo, hi;        /* g' = clamp(g * c, lo, hi) */
    FC_T nlr;              /* -lr */
    FC_T wd;               /* weight decay */
    FC_T mom, omd;         /* momentum, 1 - dampening */
    FC_T decay;            /* AdamW: 1 - lr * weight_decay */
    FC_T w, omw;           /* lerp weight (1 - beta1 or 1 - alpha) and 1 - w */
    int small;             /* |w| < 0.5: lerp as a + w (b - a), else b - (b - a)(1 - w) */
    FC_T b2, omb2;         /* beta2, 1 - beta2 */
    FC_T bc2s, eps, nss;   /* sqrt(1 - beta2^t), eps, -lr / (1 - beta1^t) */
    FC_T alpha, oma;       /* alpha, 1 - alpha */
} FN(fc_optim_coefs);

static void FN(make_coefs)(const fc_optim_coefs *k, FN(fc_optim_coefs) *o) {
    o->c = (FC_T)k->c;
    o->lo = (FC_T)k->lo;
    o->hi = (FC_T)k->hi;
    o->nlr = (FC_T)k->nlr;
    o->wd = (FC_T)k->wd;
    o->mom = (FC_T)k->mom;
    o->omd = (FC_T)k->omd;
    o->decay = (FC_T)k->decay;
    o->w = (FC_T)k->w;
    o->omw = (FC_T)1 - o->w;
    o->small = (o->w < 0 ? -o->w : o->w) < (FC_T)0.5;
    o->b2 = (FC_T)k->b2;
    o->omb2 = (FC_T)k->omb2;
    o->bc2s = (FC_T)k->bc2s;
    o->eps = (FC_T)k->eps;
    o->nss = (FC_T)k->nss;
    o->alpha = (FC_T)k->alpha;
    o->oma = (FC_T)k->oma;
}

#ifndef FC_INLINE
#if defined(__GNUC__) || defined(__clang__)
#define FC_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define FC_INLINE static __forceinline
#else
#define FC_INLINE static inline
#endif
#endif

FC_INLINE FC_T FN(clipg)(FC_T g, FC_T c, FC_T lo, FC_T hi) {
    FC_T v = g * c;
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return v;
}

FC_INLINE FC_T FN(lerp)(FC_T a, FC_T b, FC_T w, FC_T omw, int small) {
    FC_T diff = b - a;
    return small ? a + w * diff : b - diff * omw;
}

/* ---- SGD: mode 0 no momentum, 1 first step (buf = d), 2 later steps ---- */
FC_INLINE void FN(sgd_loop)(FC_T *restrict p, const FC_T *restrict g, FC_T *restrict buf,
                            int64_t n, const FN(fc_optim_coefs) *k, const int wd_on, const int mode,
                            const int nest) {
    const FC_T c = k->c, lo = k->lo, hi = k->hi, wd = k->wd, mom = k->mom, omd = k->omd;
    const FC_T nlr = k->nlr;
    for (int64_t i = 0; i < n; i++) {
        FC_T d = FN(clipg)(g[i], c, lo, hi);
        if (wd_on) d = d + wd * p[i];
        if (mode == 1) {
            buf[i] = d;
            if (nest) d = d + mom * d;
        } else if (mode == 2) {
            FC_T b = buf[i] * mom + omd * d;
            buf[i] = b;
            d = nest ? d + mom * b : b;
        }
        p[i] = p[i] + nlr * d;
    }
}

static FC_TARGET_CLONES void FN(sgd_block)(FC_T *p, const FC_T *g, FC_T *buf, int64_t n,
                                           const FN(fc_optim_coefs) *k, int wd_on, int mode, int nest) {
    if (wd_on) {
        if (mode == 0) FN(sgd_loop)(p, g, buf, n, k, 1, 0, 0);
        else if (mode == 1) {
            if (nest) FN(sgd_loop)(p, g, buf, n, k, 1, 1, 1);
            else FN(sgd_loop)(p, g, buf, n, k, 1, 1, 0);
        } else {
            if (nest) FN(sgd_loop)(p, g, buf, n, k, 1, 2, 1);
            else FN(sgd_loop)(p, g, buf, n, k, 1, 2, 0);
        }
    } else {
        if (mode == 0) FN(sgd_loop)(p, g, buf, n, k, 0, 0, 0);
        else if (mode == 1) {
            if (nest) FN(sgd_loop)(p, g, buf, n, k, 0, 1, 1);
            else FN(sgd_loop)(p, g, buf, n, k, 0, 1, 0);
        } else {
            if (nest) FN(sgd_loop)(p, g, buf, n, k, 0, 2, 1);
            else FN(sgd_loop)(p, g, buf, n, k, 0, 2, 0);
        }
    }
}

/* ---- Adam / AdamW: wd_mode 0 none, 1 L2 (Adam), 2 decoupled (AdamW) ---- */
FC_INLINE void FN(adam_loop)(FC_T *restrict p, const FC_T *restrict g, FC_T *restrict m,
                             FC_T *restrict v, FC_T *restrict vmax, int64_t n,
                             const FN(fc_optim_coefs) *k, const int wd_mode, const int ams,
                             const int small) {
    const FC_T c = k->c, lo = k->lo, hi = k->hi, wd = k->wd, decay = k->decay;
    const FC_T w = k->w, omw = k->omw, b2 = k->b2, omb2 = k->omb2;
    const FC_T bc2s = k->bc2s, eps = k->eps, nss = k->nss;
    for (int64_t i = 0; i < n; i++) {
        FC_T d = FN(clipg)(g[i], c, lo, hi);
        FC_T pv = p[i];
        if (wd_mode == 1) d = d + wd * pv;
        if (wd_mode == 2) pv = pv * decay;
        FC_T mv = FN(lerp)(m[i], d, w, omw, small);
        m[i] = mv;
        FC_T vv = v[i] * b2 + (omb2 * d) * d;
        v[i] = vv;
        if (ams) {
            FC_T mx = vmax[i];
            mx = (mx >= vv || mx != mx) ? mx : vv; /* torch.maximum: NaN propagates */
            vmax[i] = mx;
            vv = mx;
        }
        FC_T denom = FC_SQRT(vv) / bc2s + eps;
        p[i] = pv + nss * (mv / denom);
    }
}

#define FC_ADAM_SMALL(wdm, ams)                                                    \
    do {                                                                           \
        if (k->small) FN(adam_loop)(p, g, m, v, vmax, n, k, wdm, ams, 1);          \
        else FN(adam_loop)(p, g, m, v, vmax, n, k, wdm, ams, 0);                   \
    } while (0)

static FC_TARGET_CLONES void FN(adam_block)(FC_T *p, const FC_T *g, FC_T *m, FC_T *v,
                                            FC_T *vmax, int64_t n, const FN(fc_optim_coefs) *k,
                                            int wd_mode, int ams) {
    if (ams) {
        if (wd_mode == 0) FC_ADAM_SMALL(0, 1);
        else if (wd_mode == 1) FC_ADAM_SMALL(1, 1);
        else FC_ADAM_SMALL(2, 1);
    } else {
        if (wd_mode == 0) FC_ADAM_SMALL(0, 0);
        else if (wd_mode == 1) FC_ADAM_SMALL(1, 0);
        else FC_ADAM_SMALL(2, 0);
    }
}
#undef FC_ADAM_SMALL

/* ---- RMSprop ---- */
FC_INLINE void FN(rms_loop)(FC_T *restrict p, const FC_T *restrict g, FC_T *restrict sq,
                            FC_T *restrict ga, FC_T *restrict buf, int64_t n,
                            const FN(fc_optim_coefs) *k, const int wd_on, const int centered,
                            const int mom_on) {
    const FC_T c = k->c, lo = k->lo, hi = k->hi, wd = k->wd, alpha = k->alpha, oma = k->oma;
    const FC_T w = k->w, omw = k->omw, eps = k->eps, mom = k->mom, nlr = k->nlr;
    const int small = k->small;
    const FC_T mone = (FC_T)-1;
    for (int64_t i = 0; i < n; i++) {
        FC_T d = FN(clipg)(g[i], c, lo, hi);
        if (wd_on) d = d + wd * p[i];
        FC_T s = sq[i] * alpha + (oma * d) * d;
        sq[i] = s;
        FC_T avg;
        if (centered) {
            FC_T a = FN(lerp)(ga[i], d, w, omw, small);
            ga[i] = a;
            avg = FC_SQRT(s + (mone * a) * a);
        } else {
            avg = FC_SQRT(s);
        }
        avg = avg + eps;
        if (mom_on) {
            FC_T b = buf[i] * mom + d / avg;
            buf[i] = b;
            p[i] = p[i] + nlr * b;
        } else {
            p[i] = p[i] + nlr * (d / avg);
        }
    }
}

static FC_TARGET_CLONES void FN(rms_block)(FC_T *p, const FC_T *g, FC_T *sq, FC_T *ga, FC_T *buf,
                                           int64_t n, const FN(fc_optim_coefs) *k, int wd_on,
                                           int centered, int mom_on) {
    int v = (wd_on ? 4 : 0) | (centered ? 2 : 0) | (mom_on ? 1 : 0);
    switch (v) {
        case 0: FN(rms_loop)(p, g, sq, ga, buf, n, k, 0, 0, 0); break;
        case 1: FN(rms_loop)(p, g, sq, ga, buf, n, k, 0, 0, 1); break;
        case 2: FN(rms_loop)(p, g, sq, ga, buf, n, k, 0, 1, 0); break;
        case 3: FN(rms_loop)(p, g, sq, ga, buf, n, k, 0, 1, 1); break;
        case 4: FN(rms_loop)(p, g, sq, ga, buf, n, k, 1, 0, 0); break;
        case 5: FN(rms_loop)(p, g, sq, ga, buf, n, k, 1, 0, 1); break;
        case 6: FN(rms_loop)(p, g, sq, ga, buf, n, k, 1, 1, 0); break;
        default: FN(rms_loop)(p, g, sq, ga, buf, n, k, 1, 1, 1); break;
    }
}

/* One block of one parameter: elements [start, start + n). */
static void FN(update_block)(const fc_optim_config *cfg, const FN(fc_optim_coefs) *k, const fc_array *p,
                             const fc_array *g, const fc_array *st, int nstate, int64_t start,
                             int64_t n) {
    FC_T *pp = (FC_T *)p->data + start;
    const FC_T *gp = (const FC_T *)g->data + start;
    FC_T *s[3] = {NULL, NULL, NULL};
    for (int j = 0; j < nstate && j < 3; j++) s[j] = (FC_T *)st[j].data + start;
    const int wd_on = cfg->weight_decay != 0;
    if (cfg->kind == FC_OPT_SGD) {
        int mode = cfg->momentum != 0 ? (cfg->step == 1 ? 1 : 2) : 0;
        FN(sgd_block)(pp, gp, s[0], n, k, wd_on, mode, cfg->nesterov != 0);
    } else if (cfg->kind == FC_OPT_ADAM) {
        int wd_mode = wd_on ? (cfg->decoupled ? 2 : 1) : 0;
        FN(adam_block)(pp, gp, s[0], s[1], s[2], n, k, wd_mode, cfg->amsgrad != 0);
    } else {
        int centered = cfg->centered != 0, mom_on = cfg->momentum > 0;
        FC_T *ga = centered ? s[1] : NULL;
        FC_T *buf = mom_on ? s[centered ? 2 : 1] : NULL;
        FN(rms_block)(pp, gp, s[0], ga, buf, n, k, wd_on, centered, mom_on);
    }
}

#undef FN
#undef FC_INLINE
