/*
 * fastclip: learning-rate schedules as closed forms of the step.
 *
 * A schedule is described by an fc_schedule: a kind, integer flags, up to
 * FC_SCHED_NPARAMS doubles, and (for some kinds) pointers to a sorted array
 * of boundaries, an array of values and child schedules. The description is
 * built (and validated) by the Python layer; derived quantities (for
 * example OneCycleLR's phase ends) are computed there once, so that the C
 * kernels and the NumPy reference evaluate exactly the same expressions.
 * Every value depends on the step alone: no state, no replay.
 *
 * Parameter layout per kind (p[i]):
 *   CONSTANT        p0 value
 *   STEP            p0 init, p1 step_size, p2 gamma
 *   MULTISTEP       p0 init, p1 gamma; bounds = milestones (n)
 *   PIECEWISE       bounds (n), values (n + 1); flag AFTER (Keras rule)
 *   EXPONENTIAL     p0 init, p1 transition_steps, p2 decay_rate, p3 transition_begin,
 *                   p4 end_value; flags STAIRCASE, HAS_END
 *   POLYNOMIAL      p0 init, p1 end, p2 decay_steps, p3 power, p4 transition_begin;
 *                   flag CYCLE
 *   INVERSE_TIME    p0 init, p1 decay_steps, p2 decay_rate, p3 power; flag STAIRCASE
 *   INVERSE_SQRT    p0 init, p1 timescale
 *   COSINE          p0 init, p1 decay_steps, p2 alpha, p3 exponent
 *   LINEAR          p0 init, p1 end, p2 transition_steps, p3 transition_begin
 *   WARMUP          p0 warmup_steps, p1 start value; flag SHIFT; children[0] inner
 *   WARMUP_COSINE   p0 start, p1 peak, p2 warmup_steps, p3 cosine length, p4 alpha,
 *                   p5 exponent
 *   COSINE_RESTARTS p0 init, p1 t_0, p2 t_mul, p3 eta_min, p4 m_mul
 *   ONE_CYCLE       p0 initial lr, p1 max lr, p2 min lr, p3..p5 phase end steps;
 *                   flags THREE_PHASE, LINEAR_ANNEAL
 *   CYCLIC          p0 base_lr, p1 max_lr, p2 cycle length, p3 step ratio, p4 gamma;
 *                   mode 0 triangular, 1 triangular2, 2 exp_range
 *   JOIN            bounds (n), children (n + 1)
 */
#ifndef FASTCLIP_SCHEDULES_H
#define FASTCLIP_SCHEDULES_H

#include "fc_common.h"

#ifdef __cplusplus
extern "C" {
#endif
FC_API_BEGIN

enum {
    FC_SCHED_CONSTANT = 0,
    FC_SCHED_STEP,
    FC_SCHED_MULTISTEP,
    FC_SCHED_PIECEWISE,
    FC_SCHED_EXPONENTIAL,
    FC_SCHED_POLYNOMIAL,
    FC_SCHED_INVERSE_TIME,
    FC_SCHED_INVERSE_SQRT,
    FC_SCHED_COSINE,
    FC_SCHED_LINEAR,
    FC_SCHED_WARMUP,
    FC_SCHED_WARMUP_COSINE,
    FC_SCHED_COSINE_RESTARTS,
    FC_SCHED_ONE_CYCLE,
    FC_SCHED_CYCLIC,
    FC_SCHED_JOIN,
    FC_SCHED_NKINDS
};

/* flags */
enum {
    FC_SCHED_F_STAIRCASE = 1,
    FC_SCHED_F_HAS_END = 2,
    FC_SCHED_F_CYCLE = 4,
    FC_SCHED_F_AFTER = 8,
    FC_SCHED_F_SHIFT = 16,
    FC_SCHED_F_THREE_PHASE = 32,
    FC_SCHED_F_LINEAR_ANNEAL = 64
};

/* dtypes of a steps array */
enum { FC_STEPS_F64 = 0, FC_STEPS_F32 = 1, FC_STEPS_I64 = 2, FC_STEPS_I32 = 3 };

#define FC_SCHED_NPARAMS 8

typedef struct fc_schedule {
    int32_t kind;
    int32_t flags;
    int32_t mode;
    int32_t pad_;
    double p[FC_SCHED_NPARAMS];
    int64_t n;                           /* entries of bounds */
    const double *bounds;                /* sorted, strictly increasing */
    const double *values;                /* n + 1 entries (PIECEWISE) */
    const struct fc_schedule *children;  /* WARMUP: 1, JOIN: n + 1 */
} fc_schedule;

/* The value at `step`, which must be finite and >= 0 (not checked). */
double fc_schedule_eval(const fc_schedule *s, double step);

/* out[i] = value at steps[i * stride] (stride in bytes, dtype FC_STEPS_*)
 * for i < n. Steps that are negative, NaN or infinite make the call return
 * FC_EINVAL (their outputs are unspecified); FC_ENOMEM when out of memory;
 * otherwise FC_OK. Runs on several threads when n is large; every element is
 * computed alone, so the result does not depend on the thread count. */
int fc_schedule_eval_array(const fc_schedule *s, const void *steps, int32_t dtype, int64_t n,
                           int64_t stride, double *out);

/* PyTorch ReduceLROnPlateau, one parameter group. */
typedef struct {
    int32_t mode_max;        /* 0: "min", 1: "max" */
    int32_t threshold_abs;   /* 0: "rel", 1: "abs" */
    double factor, threshold, min_lr, eps;
    int64_t patience, cooldown;
    /* state */
    double lr, best;
    int64_t num_bad_epochs, cooldown_counter, last_epoch;
} fc_plateau;

/* One step with a metric (NaN is never an improvement); returns the new lr. */
double fc_plateau_step(fc_plateau *s, double metric);

FC_API_END
#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_SCHEDULES_H */
