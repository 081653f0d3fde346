/*
 * fastclip: gradient-clipping kernels over lists of arrays.
 *
 * Norm types: 2 (sum of squares), 1 (sum of absolute values), INFINITY
 * (maximum absolute value) and any other p > 0 (sum of |x|^p, computed as
 * max|x| * (sum (|x|/max|x|)^p)^(1/p) so that it cannot overflow).
 * float32 accumulates in double. float64 sums that overflow or underflow are
 * recomputed with scaling by max|x|, so the norm is right wherever it is
 * representable. Every reduction visits fixed blocks of FC_BLOCK elements
 * and adds the block results in order: results do not depend on threads.
 */
#ifndef FASTCLIP_CLIP_H
#define FASTCLIP_CLIP_H

#include "fc_common.h"

#ifdef __cplusplus
extern "C" {
#endif
FC_API_BEGIN

/* norms[i] = ||arrs[i]||_p. Returns FC_OK or FC_ENOMEM. */
int fc_array_norms(const fc_array *arrs, int64_t n, double p, double *norms);

/* The p-norm of the vector of per-array norms (PyTorch's total norm). */
double fc_total_norm(const double *norms, int64_t n, double p);

/* PyTorch's clip coefficient: max_norm / (total + 1e-6), clamped to at most
 * 1; NaN when total is NaN (so that NaN propagates into the gradients). */
double fc_clip_coef(double max_norm, double total_norm);

/* x *= coef for every array (float32 arrays multiply by (float)coef). */
int fc_scale_(const fc_array *arrs, int64_t n, double coef);

/* dst[i] = src[i] * coefs[i]; src and dst dense (ndim == 0), same size. */
int fc_scale_into(const fc_array *src, const fc_array *dst, int64_t n, const double *coefs);

/* x = min(max(x, lo), hi) in place; NaN stays NaN. */
int fc_clip_value_(const fc_array *arrs, int64_t n, double lo, double hi);

/* dst = min(max(src, lo), hi); src and dst dense, same size. */
int fc_clip_value_into(const fc_array *src, const fc_array *dst, int64_t n, double lo, double hi);

/* The whole of torch.nn.utils.clip_grad_norm_ in one call: per-array norms
 * (written to norms, n entries), total norm (to *total), then scaling when
 * the coefficient is below 1 or NaN. With error_if_nonfinite and a
 * non-finite total, nothing is written, *first_nonfinite receives the index
 * of the first array whose norm is not finite (or -1) and FC_ENONFINITE is
 * returned. *scaled tells whether a second pass ran. */
int fc_clip_grad_norm_(const fc_array *arrs, int64_t n, double max_norm, double p,
                       int error_if_nonfinite, double *norms, double *total,
                       int64_t *first_nonfinite, int *scaled);

/* Sets every NaN to 0 and, with posinf/neginf finite, +-inf to them
 * (numpy.nan_to_num semantics when replace_inf). Returns the number of
 * elements changed in *count. */
int fc_nan_to_num_(const fc_array *arrs, int64_t n, double nan, int replace_inf,
                   double posinf, double neginf, int64_t *count);

FC_API_END
#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_CLIP_H */
