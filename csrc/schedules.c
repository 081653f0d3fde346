/*
 * fastclip: learning-rate schedules as closed forms of the step (see
 * schedules.h). The NumPy reference (src/fastclip/reference/schedules.py)
 * evaluates the same expressions in the same order; keep the two in step.
 */
#include "schedules.h"

#include <math.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* Number of bounds b with b <= x (or b < x when strict). */
static int64_t count_le(const double *b, int64_t n, double x, int strict) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int before = strict ? (b[mid] < x) : (b[mid] <= x);
        if (before)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* optax's linear interpolation: (a - b) * (1 - f) + b, exact at f == 1. */
static inline double lerp_end(double a, double b, double f) { return (a - b) * (1.0 - f) + b; }

/* x ** e with the common exponents exact and fast (the reference does the same). */
static inline double powe(double x, double e) {
    if (e == 1.0) return x;
    if (e == 2.0) return x * x;
    if (e == 0.5) return sqrt(x);
    return pow(x, e);
}

static inline double lin_kernel(const double *p, double x) {
    double d = x - p[3];
    d = d < 0.0 ? 0.0 : d;
    d = d > p[2] ? p[2] : d;
    return lerp_end(p[0], p[1], d / p[2]);
}

static inline double poly_kernel(const double *p, double x, double e) {
    double d = x - p[4];
    d = d < 0.0 ? 0.0 : d;
    d = d > p[2] ? p[2] : d;
    return (p[0] - p[1]) * powe(1.0 - d / p[2], e) + p[1];
}

/* cos(pi * a / b), rounded as PyTorch and optax write it (pi * a, then / b),
 * unless pi * a overflows (a near DBL_MAX): then pi * (a / b), the same angle. */
static inline double cos_pi_ratio(double a, double b) {
    const double t = M_PI * a;
    return cos(isinf(t) ? M_PI * (a / b) : t / b);
}

static inline double cos_kernel(const double *p, double x) {
    const double c = x < p[1] ? x : p[1];
    const double cd = 0.5 * (1.0 + cos_pi_ratio(c, p[1]));
    return p[0] * ((1.0 - p[2]) * powe(cd, p[3]) + p[2]);
}

static inline double exp_kernel(const double *p, int32_t flags, double x) {
    const double d = x - p[3];
    double v;
    if (d <= 0.0) {
        v = p[0];
    } else {
        double e = d / p[1];
        if (flags & FC_SCHED_F_STAIRCASE) e = floor(e);
        v = p[0] * pow(p[2], e);
    }
    if (flags & FC_SCHED_F_HAS_END) v = p[2] < 1.0 ? fmax(v, p[4]) : fmin(v, p[4]);
    return v;
}

/* Start of restart period i of cosine_restarts: t0 * ((tm^i - 1) / (tm - 1)), the
 * ratio first so that period 1 starts at t0 exactly (t0 * (tm - 1) / (tm - 1) can
 * round above t0, and step t0 would then fall in period 0 at its floor). When
 * tm^i overflows, the same start in the log domain (inf only if it truly exceeds
 * DBL_MAX, i.e. lies beyond every finite step). */
static double restart_start(double t0, double tm, double i) {
    double s = t0 * ((pow(tm, i) - 1.0) / (tm - 1.0));
    if (isinf(s)) s = exp(log(t0) + i * log(tm) - log(tm - 1.0));
    return s;
}

/* Length t0 * tm^i of restart period i (log domain when tm^i overflows). */
static double restart_len(double t0, double tm, double i) {
    double t = t0 * pow(tm, i);
    if (isinf(t)) t = exp(log(t0) + i * log(tm));
    return t;
}

/* floor(log(x / t0 * (tm - 1) + 1) / log(tm)): the period that holds step x; the
 * argument of the logarithm is taken in the log domain when it overflows. */
static double restart_index(double x, double t0, double tm) {
    const double q = x / t0 * (tm - 1.0);
    const double lg = isinf(q) ? log(x) - log(t0) + log(tm - 1.0) : log(q + 1.0);
    return floor(lg / log(tm));
}

static double eval_cosine_restarts(const fc_schedule *s, double x) {
    const double init = s->p[0], t0 = s->p[1], tm = s->p[2], eta = s->p[3], m = s->p[4];
    double i, tcur, ti;
    if (tm == 1.0) {
        i = floor(x / t0);
        /* x / t0 overflows for a tiny t0: the position in the period is fmod */
        tcur = isinf(i) ? fmod(x, t0) : x - i * t0;
        ti = t0;
    } else {
        i = restart_index(x, t0, tm);
        if (i < 0.0) i = 0.0;
        /* the logarithm can land one restart off at a boundary */
        if (i > 0.0 && x < restart_start(t0, tm, i)) i -= 1.0;
        if (x >= restart_start(t0, tm, i + 1.0)) i += 1.0;
        tcur = x - restart_start(t0, tm, i);
        ti = restart_len(t0, tm, i);
    }
    const double peak = m == 1.0 ? init : init * pow(m, i); /* pow(1, i) == 1 */
    return eta + (peak - eta) * (1.0 + cos_pi_ratio(tcur, ti)) / 2.0;
}

static inline double anneal(double start, double end, double pct, int linear) {
    if (linear) return (end - start) * pct + start;
    const double cos_out = cos(M_PI * pct) + 1.0;
    return end + (start - end) / 2.0 * cos_out;
}

static double eval_one_cycle(const fc_schedule *s, double x) {
    const int three = (s->flags & FC_SCHED_F_THREE_PHASE) != 0;
    const int linear = (s->flags & FC_SCHED_F_LINEAR_ANNEAL) != 0;
    const double initial = s->p[0], maxlr = s->p[1], minlr = s->p[2];
    double start_lr[3], end_lr[3], end_step[3];
    int nph;
    if (three) {
        nph = 3;
        start_lr[0] = initial; end_lr[0] = maxlr; end_step[0] = s->p[3];
        start_lr[1] = maxlr; end_lr[1] = initial; end_step[1] = s->p[4];
        start_lr[2] = initial; end_lr[2] = minlr; end_step[2] = s->p[5];
    } else {
        nph = 2;
        start_lr[0] = initial; end_lr[0] = maxlr; end_step[0] = s->p[3];
        start_lr[1] = maxlr; end_lr[1] = minlr; end_step[1] = s->p[4];
    }
    double start_step = 0.0;
    for (int i = 0; i < nph; i++) {
        if (x <= end_step[i] || i == nph - 1) {
            double pct = (x - start_step) / (end_step[i] - start_step);
            if (pct > 1.0) pct = 1.0;
            return anneal(start_lr[i], end_lr[i], pct, linear);
        }
        start_step = end_step[i];
    }
    return minlr; /* not reached */
}

static double eval_cyclic(const fc_schedule *s, double x) {
    const double base = s->p[0], maxlr = s->p[1], total = s->p[2], ratio = s->p[3];
    const double q = x / total;
    const double cycle = floor(1.0 + q);
    /* q overflows for a tiny cycle: the position in the cycle is fmod */
    const double xx = isinf(q) ? fmod(x, total) / total : 1.0 + q - cycle;
    double scale;
    if (xx <= ratio)
        scale = xx / ratio;
    else
        scale = (xx - 1.0) / (ratio - 1.0);
    const double height = (maxlr - base) * scale;
    switch (s->mode) {
    case 1: return base + height * (1.0 / pow(2.0, cycle - 1.0));
    case 2: return base + height * pow(s->p[4], x);
    default: return base + height * 1.0;
    }
}

double fc_schedule_eval(const fc_schedule *s, double x) {
    const double *p = s->p;
    switch (s->kind) {
    case FC_SCHED_CONSTANT:
        return p[0];
    case FC_SCHED_STEP:
        return p[0] * pow(p[2], floor(x / p[1]));
    case FC_SCHED_MULTISTEP:
        return p[0] * pow(p[1], (double)count_le(s->bounds, s->n, x, 0));
    case FC_SCHED_PIECEWISE:
        return s->values[count_le(s->bounds, s->n, x, (s->flags & FC_SCHED_F_AFTER) != 0)];
    case FC_SCHED_EXPONENTIAL:
        return exp_kernel(p, s->flags, x);
    case FC_SCHED_POLYNOMIAL: {
        double d = x - p[4];
        double T = p[2];
        if (d < 0.0) d = 0.0;
        if (s->flags & FC_SCHED_F_CYCLE) {
            if (d > 0.0) {
                /* at least one period: d / T underflows to 0 for a subnormal d */
                const double k = ceil(d / T);
                T = T * (k < 1.0 ? 1.0 : k);
            }
            /* T * ceil(d / T) can round below d at huge steps: the decay is then over */
            const double f = 1.0 - d / T;
            return (p[0] - p[1]) * powe(f < 0.0 ? 0.0 : f, p[3]) + p[1];
        }
        if (d > T) d = T;
        return (p[0] - p[1]) * powe(1.0 - d / T, p[3]) + p[1];
    }
    case FC_SCHED_INVERSE_TIME: {
        double r = x / p[1];
        if (s->flags & FC_SCHED_F_STAIRCASE) r = floor(r);
        return p[0] / powe(1.0 + p[2] * r, p[3]);
    }
    case FC_SCHED_INVERSE_SQRT:
        return p[0] / sqrt(1.0 + x / p[1]);
    case FC_SCHED_COSINE:
        return cos_kernel(p, x);
    case FC_SCHED_LINEAR:
        return lin_kernel(p, x);
    case FC_SCHED_WARMUP: {
        const double w = p[0];
        const int shift = (s->flags & FC_SCHED_F_SHIFT) != 0;
        if (x < w) {
            const double target = fc_schedule_eval(&s->children[0], shift ? 0.0 : w);
            return lerp_end(p[1], target, x / w);
        }
        return fc_schedule_eval(&s->children[0], shift ? x - w : x);
    }
    case FC_SCHED_WARMUP_COSINE: {
        const double w = p[2];
        if (x < w) return lerp_end(p[0], p[1], x / w);
        double c = x - w;
        if (c > p[3]) c = p[3];
        const double cd = 0.5 * (1.0 + cos_pi_ratio(c, p[3]));
        return p[1] * ((1.0 - p[4]) * powe(cd, p[5]) + p[4]);
    }
    case FC_SCHED_COSINE_RESTARTS:
        return eval_cosine_restarts(s, x);
    case FC_SCHED_ONE_CYCLE:
        return eval_one_cycle(s, x);
    case FC_SCHED_CYCLIC:
        return eval_cyclic(s, x);
    case FC_SCHED_JOIN: {
        const int64_t k = count_le(s->bounds, s->n, x, 0);
        return fc_schedule_eval(&s->children[k], k > 0 ? x - s->bounds[k - 1] : x);
    }
    default:
        return NAN;
    }
}

static inline double load_step(const char *base, int32_t dtype, int64_t i, int64_t stride) {
    const char *ptr = base + i * stride;
    switch (dtype) {
    case FC_STEPS_F32: return (double)*(const float *)ptr;
    case FC_STEPS_I64: return (double)*(const int64_t *)ptr;
    case FC_STEPS_I32: return (double)*(const int32_t *)ptr;
    default: return *(const double *)ptr;
    }
}

/* One loop over elements [lo, hi) computing EXPR from x, for each step dtype
 * and with a separate unit-stride loop (vectorisable for the simple kinds).
 * Bad steps set `bad`; their outputs are unspecified (the caller raises). */
#define SCHED_LOOP_T(T, EXPR)                                             \
    do {                                                                  \
        if (stride == (int64_t)sizeof(T)) {                               \
            const T *src = (const T *)base;                               \
            for (int64_t i = lo; i < hi; i++) {                           \
                const double x = (double)src[i];                          \
                bad |= !((x >= 0.0) & (x < INFINITY));                    \
                out[i] = (EXPR);                                          \
            }                                                             \
        } else {                                                          \
            for (int64_t i = lo; i < hi; i++) {                           \
                const double x = (double)*(const T *)(base + i * stride); \
                bad |= !((x >= 0.0) & (x < INFINITY));                    \
                out[i] = (EXPR);                                          \
            }                                                             \
        }                                                                 \
    } while (0)

#define SCHED_LOOP(EXPR)                                                  \
    do {                                                                  \
        switch (dtype) {                                                  \
        case FC_STEPS_F32: SCHED_LOOP_T(float, EXPR); break;              \
        case FC_STEPS_I64: SCHED_LOOP_T(int64_t, EXPR); break;            \
        case FC_STEPS_I32: SCHED_LOOP_T(int32_t, EXPR); break;            \
        default: SCHED_LOOP_T(double, EXPR); break;                       \
        }                                                                 \
    } while (0)

/* Elements [lo, hi) of the steps; returns 1 if one of them is bad. The
 * specialised loops compute exactly the expressions of fc_schedule_eval.
 * STEP and MULTISTEP reuse the last power while the exponent does not change. */
FC_TARGET_CLONES
static int eval_block(const fc_schedule *s, const char *base, int32_t dtype, int64_t lo,
                      int64_t hi, int64_t stride, double *out) {
    int bad = 0;
    double q[FC_SCHED_NPARAMS]; /* a local copy: cannot alias `out` */
    memcpy(q, s->p, sizeof q);
    const double *p = q;
    const int32_t flags = s->flags;
    switch (s->kind) {
    case FC_SCHED_CONSTANT:
        SCHED_LOOP(p[0]);
        return bad;
    case FC_SCHED_LINEAR:
        SCHED_LOOP(lin_kernel(p, x));
        return bad;
    case FC_SCHED_POLYNOMIAL:
        if (s->flags & FC_SCHED_F_CYCLE) break;
        if (p[3] == 1.0)
            SCHED_LOOP(poly_kernel(p, x, 1.0));
        else if (p[3] == 2.0)
            SCHED_LOOP(poly_kernel(p, x, 2.0));
        else if (p[3] == 0.5)
            SCHED_LOOP(poly_kernel(p, x, 0.5));
        else
            SCHED_LOOP(poly_kernel(p, x, p[3]));
        return bad;
    case FC_SCHED_INVERSE_SQRT:
        SCHED_LOOP(p[0] / sqrt(1.0 + x / p[1]));
        return bad;
    case FC_SCHED_EXPONENTIAL:
        SCHED_LOOP(exp_kernel(p, flags, x));
        return bad;
    case FC_SCHED_COSINE:
        SCHED_LOOP(cos_kernel(p, x));
        return bad;
    case FC_SCHED_STEP:
    case FC_SCHED_MULTISTEP: {
        const int is_step = s->kind == FC_SCHED_STEP;
        const double init = p[0], gamma = is_step ? p[2] : p[1];
        double last_k = -1.0, last_v = 0.0;
        for (int64_t i = lo; i < hi; i++) {
            const double x = load_step(base, dtype, i, stride);
            if (x >= 0.0 && x < INFINITY) {
                const double k = is_step ? floor(x / p[1])
                                         : (double)count_le(s->bounds, s->n, x, 0);
                if (k != last_k) {
                    last_k = k;
                    last_v = init * pow(gamma, k);
                }
                out[i] = last_v;
            } else {
                out[i] = NAN;
                bad = 1;
            }
        }
        return bad;
    }
    default:
        break;
    }
    for (int64_t i = lo; i < hi; i++) {
        const double x = load_step(base, dtype, i, stride);
        if (x >= 0.0 && x < INFINITY) {
            out[i] = fc_schedule_eval(s, x);
        } else {
            out[i] = NAN;
            bad = 1;
        }
    }
    return bad;
}

#define FC_SCHED_BLOCK ((int64_t)1 << 13)

typedef struct {
    const fc_schedule *s;
    const char *base;
    int32_t dtype;
    int64_t n, stride;
    double *out;
    unsigned char *bad; /* per block */
} fc_sched_items;

static void sched_item(void *c, int64_t b) {
    const fc_sched_items *t = (const fc_sched_items *)c;
    const int64_t lo = b * FC_SCHED_BLOCK;
    const int64_t hi = lo + FC_SCHED_BLOCK < t->n ? lo + FC_SCHED_BLOCK : t->n;
    t->bad[b] = (unsigned char)eval_block(t->s, t->base, t->dtype, lo, hi, t->stride, t->out);
}

int fc_schedule_eval_array(const fc_schedule *s, const void *steps, int32_t dtype, int64_t n,
                           int64_t stride, double *out) {
    if (n <= 0) return FC_OK;
    const int64_t nblocks = (n + FC_SCHED_BLOCK - 1) / FC_SCHED_BLOCK;
    unsigned char *bad = (unsigned char *)malloc((size_t)nblocks);
    if (!bad) return FC_ENOMEM;
    fc_sched_items t = {s, (const char *)steps, dtype, n, stride, out, bad};
    fc_parallel_for(nblocks, sched_item, &t, fc_use_parallel(n * 8));
    int any = 0;
    for (int64_t b = 0; b < nblocks; b++) any |= bad[b];
    free(bad);
    return any ? FC_EINVAL : FC_OK;
}

double fc_plateau_step(fc_plateau *s, double current) {
    int better;
    s->last_epoch += 1;
    if (s->mode_max) {
        better = s->threshold_abs ? current > s->best + s->threshold
                                  : current > s->best * (s->threshold + 1.0);
    } else {
        better = s->threshold_abs ? current < s->best - s->threshold
                                  : current < s->best * (1.0 - s->threshold);
    }
    if (better) {
        s->best = current;
        s->num_bad_epochs = 0;
    } else {
        s->num_bad_epochs += 1;
    }
    if (s->cooldown_counter > 0) {
        s->cooldown_counter -= 1;
        s->num_bad_epochs = 0;
    }
    if (s->num_bad_epochs > s->patience) {
        const double old_lr = s->lr;
        const double new_lr = fmax(old_lr * s->factor, s->min_lr);
        if (old_lr - new_lr > s->eps) s->lr = new_lr;
        s->cooldown_counter = s->cooldown;
        s->num_bad_epochs = 0;
    }
    return s->lr;
}
