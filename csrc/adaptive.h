/*
 * fastclip: kernels of the adaptive clippers (unit-wise norms and scaling for
 * AGC, Brock et al. 2021, with optax's adaptive_grad_clip semantics).
 *
 * A unit view describes one array as a matrix of `rows` x `cols` elements:
 * element (r, c) lives at data + r * rs + c * cs (strides in bytes, either
 * sign). A unit is one column: its norm is taken over the rows. fastclip's
 * (in, out) weights are (rows = in, cols = out); a whole-array norm is
 * (rows = size, cols = 1).
 *
 * float32 accumulates in double. float64 columns whose sum of squares
 * overflows or underflows are recomputed with scaling by their max |x|.
 * Every column is reduced in fixed row blocks added in order, so results do
 * not depend on the number of threads.
 */
#ifndef FASTCLIP_ADAPTIVE_H
#define FASTCLIP_ADAPTIVE_H

#include "fc_common.h"

#ifdef __cplusplus
extern "C" {
#endif
FC_API_BEGIN

typedef struct {
    char *data;
    int64_t rows, cols;
    int64_t rs, cs; /* bytes */
    int32_t dtype;  /* FC_FLOAT32 or FC_FLOAT64 */
} fc_units;

/* norms[c] = L2 norm of column c of `a` (a->cols entries). */
int fc_unit_norms(const fc_units *a, double *norms);

/* Adaptive gradient clipping of n (gradient, parameter) pairs, in place on
 * the gradients. For every unit c of pair i:
 *   max_norm = clipping * max(||p_c||, eps)
 *   g_c     *= max_norm / max(||g_c||, 1e-6)   unless ||g_c|| < max_norm
 * (NaN norms make the unit NaN, as optax's jnp.where/jnp.maximum do).
 * g[i] and p[i] have the same rows and cols. All norms are computed before
 * any gradient is written, so g[i] may alias p[i].
 * sq_before[i] / sq_after[i]: the sum of squares of gradient i before and
 * after clipping (after = sum_c (||g_c|| * coef_c)^2, computed in double).
 * *n_clipped: how many units were scaled. */
int fc_agc_(const fc_units *g, const fc_units *p, int64_t n, double clipping, double eps,
            double *sq_before, double *sq_after, int64_t *n_clipped);

FC_API_END
#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_ADAPTIVE_H */
