/*
 * fastclip: standalone layers of fastclip.nn that are not a GEMM: batch
 * normalisation over a batch of rows (BatchNorm1d), dropout under a given
 * mask, and elementwise activations.
 *
 * Matrices are row-major (n rows, m columns) with unit column stride and a
 * row stride `ld` (elements). Column statistics (mean, variance, the
 * gradient sums of batch norm) are accumulated in double, rows visited in
 * order: results are a function of the data alone. These passes are short
 * and memory-bound next to the GEMMs around them; they run on the calling
 * thread.
 *
 * Conventions follow PyTorch's:
 *  - batch norm normalises with the biased batch variance and updates the
 *    running variance with the unbiased one (n / (n - 1) times it):
 *      running = (1 - f) running + f batch, f = momentum;
 *  - dropout multiplies by mask * scale (scale = 1 / (1 - p), or 0 for p = 1);
 *  - activation codes as in nn.h (0 identity, 1 relu, 2 leaky_relu, 3 prelu,
 *    4 sigmoid, 5 tanh); at 0, relu' = 0 and leaky/prelu' = slope;
 *    sigmoid' = y (1 - y), tanh' = 1 - y^2 from the output y.
 * Every function returns FC_OK or FC_EINVAL (bad sizes or codes).
 */
#ifndef FASTCLIP_LAYERS_H
#define FASTCLIP_LAYERS_H

#include "fc_common.h"

#ifdef __cplusplus
extern "C" {
#endif
FC_API_BEGIN

/* Batch norm, training mode: per column j, mean_j and the biased variance
 * var_j of the n >= 1 rows of x; invstd[j] = 1 / sqrt(var_j + eps);
 * xhat = (x - mean) * invstd; y = xhat * w + b (w, b may be NULL: 1 and 0).
 * When running_mean/running_var are not NULL they are updated with factor f
 * (running_var with var_j * n / (n - 1); n == 1 then gives NaN, as PyTorch,
 * which refuses n == 1 in training; the binding refuses it too).
 * xhat and y are dense (row stride m). */
int fc_bn_train_forward_f32(const float *x, int64_t ldx, int64_t n, int64_t m, const float *w,
                            const float *b, double eps, double f, float *running_mean,
                            float *running_var, float *invstd, float *xhat, float *y);
int fc_bn_train_forward_f64(const double *x, int64_t ldx, int64_t n, int64_t m,
                            const double *w, const double *b, double eps, double f,
                            double *running_mean, double *running_var, double *invstd,
                            double *xhat, double *y);

/* Batch norm, evaluation mode: invstd[j] = 1 / sqrt(running_var[j] + eps),
 * xhat = (x - running_mean) * invstd, y = xhat * w + b. */
int fc_bn_eval_forward_f32(const float *x, int64_t ldx, int64_t n, int64_t m, const float *w,
                           const float *b, double eps, const float *running_mean,
                           const float *running_var, float *invstd, float *xhat, float *y);
int fc_bn_eval_forward_f64(const double *x, int64_t ldx, int64_t n, int64_t m,
                           const double *w, const double *b, double eps,
                           const double *running_mean, const double *running_var,
                           double *invstd, double *xhat, double *y);

/* Batch norm backward. dw[j] = sum_i dy xhat, db[j] = sum_i dy (when dw/db
 * are not NULL; their float64 sums of squares in *dw_sq and *db_sq), and, when
 * dx is not NULL (dense, row stride m):
 *   batch statistics (train != 0):
 *     dx = w invstd / n * (n dy - sum_i dy - xhat sum_i dy xhat)
 *   fixed statistics (train == 0): dx = dy w invstd.
 * w may be NULL (1). Needs scratch for 2 m doubles (allocated). */
int fc_bn_backward_f32(const float *dy, int64_t lddy, const float *xhat, int64_t n, int64_t m,
                       const float *w, const float *invstd, int train, float *dx, float *dw,
                       float *db, double *dw_sq, double *db_sq);
int fc_bn_backward_f64(const double *dy, int64_t lddy, const double *xhat, int64_t n,
                       int64_t m, const double *w, const double *invstd, int train, double *dx,
                       double *dw, double *db, double *dw_sq, double *db_sq);

/* Dropout: y = x * mask * scale (mask of 0/1 bytes, dense n x m; y dense).
 * The same call is the backward with dy in place of x. */
int fc_dropout_f32(const float *x, int64_t ldx, int64_t n, int64_t m, const uint8_t *mask,
                   float scale, float *y);
int fc_dropout_f64(const double *x, int64_t ldx, int64_t n, int64_t m, const uint8_t *mask,
                   double scale, double *y);

/* Elementwise activation: y = act(x) (y dense, row stride m). */
int fc_act_forward_f32(const float *x, int64_t ldx, int64_t n, int64_t m, int act, float slope,
                       float *y);
int fc_act_forward_f64(const double *x, int64_t ldx, int64_t n, int64_t m, int act,
                       double slope, double *y);

/* Its backward: dx = dy * act'(.) (dx dense, row stride m), the derivative
 * read from x (identity, relu, leaky_relu, prelu) or from y = act(x), dense
 * (sigmoid, tanh). For prelu *dslope = sum over x <= 0 of dy * x (double,
 * rows in order) and *dslope_sq its square; dslope may be NULL otherwise. */
int fc_act_backward_f32(const float *dy, int64_t lddy, const float *x, int64_t ldx,
                        const float *y, int64_t n, int64_t m, int act, float slope, float *dx,
                        float *dslope, double *dslope_sq);
int fc_act_backward_f64(const double *dy, int64_t lddy, const double *x, int64_t ldx,
                        const double *y, int64_t n, int64_t m, int act, double slope,
                        double *dx, double *dslope, double *dslope_sq);

FC_API_END
#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_LAYERS_H */
