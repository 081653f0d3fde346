/*
 * fastclip: optimiser updates fused with gradient clipping (no Python API).
 *
 * fc_optim_step() runs one whole optimiser step over a list of parameters:
 *   1. the global L2 norm of the gradients (fc_array_norms + fc_total_norm of
 *      clip.h, deterministic whatever the thread count), or the norm given
 *      by per-gradient sums of squares;
 *   2. if that norm is not finite, nothing is written and FC_ENONFINITE is
 *      returned;
 *   3. one pass over each parameter, in blocks of FC_BLOCK elements (the
 *      blocks shared out by fc_parallel_for), that clips the gradient on the fly
 *      (g' = clamp(g * coef, lo, hi): coef = PyTorch's clip coefficient for
 *      global-norm clipping, [lo, hi] = [-clip_value, clip_value] for value
 *      clipping, 1 and [-inf, inf] otherwise; the gradient array is read only)
 *      and applies PyTorch's SGD, Adam/AdamW or RMSprop update with the
 *      operations in PyTorch's order, in the parameter dtype.
 */
#ifndef FASTCLIP_OPTIM_H
#define FASTCLIP_OPTIM_H

#include "fc_common.h"

#ifdef __cplusplus
extern "C" {
#endif
FC_API_BEGIN

enum { FC_OPT_SGD = 0, FC_OPT_ADAM = 1, FC_OPT_RMSPROP = 2 };
enum { FC_CLIP_NONE = 0, FC_CLIP_NORM = 1, FC_CLIP_VALUE = 2 };

typedef struct {
    int32_t kind;        /* FC_OPT_* */
    int32_t clip_mode;   /* FC_CLIP_* */
    double clip;         /* clip_norm (>= 0) or clip_value (>= 0) */
    double lr;           /* learning rate of this step */
    int64_t step;        /* 1-based index of this update */
    double weight_decay;
    /* SGD (momentum also RMSprop) */
    double momentum, dampening;
    int32_t nesterov;
    /* Adam / AdamW (eps also RMSprop) */
    double beta1, beta2, eps;
    int32_t amsgrad, decoupled;
    /* RMSprop */
    double alpha;
    int32_t centered;
} fc_optim_config;

/* Number of state arrays per parameter for a configuration:
 * SGD: momentum_buffer if momentum != 0;
 * Adam: exp_avg, exp_avg_sq, max_exp_avg_sq if amsgrad;
 * RMSprop: square_avg, grad_avg if centered, momentum_buffer if momentum > 0. */
int fc_optim_nstate(const fc_optim_config *cfg);

/* One optimiser step. params[i], grads[i] and states[i * nstate + k] must be
 * dense (ndim == 0) with the same size and dtype, elements in the same order
 * (FC_EINVAL otherwise). sqnorms: NULL to compute the norms from grads, else n
 * sums of squares. norms: n doubles of scratch, receives the per-gradient
 * norms. *total receives the global norm; when it is not finite nothing is
 * written, *first_nonfinite is the first i whose norm is not finite (or -1)
 * and FC_ENONFINITE is returned. */
int fc_optim_step(const fc_optim_config *cfg, const fc_array *params, const fc_array *grads,
                  const fc_array *states, int64_t n, const double *sqnorms, double *norms,
                  double *total, int64_t *first_nonfinite);

FC_API_END
#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_OPTIM_H */
