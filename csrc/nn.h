/*
 * fastclip: fused elementwise passes of the MLP layers and the losses.
 *
 * The GEMMs of a block (x @ W, x^T dz, dz W^T) are BLAS calls made by the
 * binding (fastclip/_nn.pyx, through scipy.linalg.cython_blas); these kernels
 * are the passes around them:
 *
 *   forward:  z = gemm + b, y = act(z)            (fc_nn_bias_act)
 *   backward: dz = dy * act'(z), db = sum_i dz,   (fc_nn_act_backward)
 *             dslope = sum_{z<=0} dy * z, and the float64 sums of squares of
 *             db and dslope; the sum of squares of dW (fc_nn_sumsq) right
 *             after its GEMM.
 *
 * Matrices are row-major with unit column stride and a row stride `ld`
 * (elements). Column sums and the PReLU slope gradient are accumulated in
 * double over fixed row blocks (a function of the shape only), each block
 * visiting its rows in order, and the block partials are added in block
 * order: results never depend on the number of threads.
 * Activation codes: 0 identity, 1 relu, 2 leaky_relu, 3 prelu, 4 sigmoid,
 * 5 tanh. At 0, relu' = 0 and leaky/prelu' = slope (PyTorch); NaN propagates.
 * sigmoid and tanh take their derivative from the output y (y (1 - y) and
 * 1 - y^2, PyTorch's formulas), so `ref` is the output for them.
 */
#ifndef FASTCLIP_NN_H
#define FASTCLIP_NN_H

#include "fc_common.h"

#ifdef __cplusplus
extern "C" {
#endif
FC_API_BEGIN

enum {
    FC_ACT_IDENTITY = 0,
    FC_ACT_RELU = 1,
    FC_ACT_LEAKY_RELU = 2,
    FC_ACT_PRELU = 3,
    FC_ACT_SIGMOID = 4,
    FC_ACT_TANH = 5
};

/* z[i,j] += b[j]; y[i,j] = act(z[i,j]) for an (n, m) block. z == y (same
 * pointer and ld) runs in place; otherwise z keeps the pre-activation.
 * `slope`: the leaky_relu negative slope or the PReLU parameter. */
int fc_nn_bias_act_f32(float *z, int64_t ldz, float *y, int64_t ldy, int64_t n, int64_t m,
                       const float *b, int act, float slope);
int fc_nn_bias_act_f64(double *z, int64_t ldz, double *y, int64_t ldy, int64_t n, int64_t m,
                       const double *b, int act, double slope);

/* dz = dy * act'(ref) (skipped when dz is NULL: identity only, dy is dz),
 * db[j] = sum_i dz[i,j], *db_sq = sum_j db[j]^2 (float64).
 * `ref` has the sign of the pre-activation (the pre-activation itself, or the
 * output y for relu and leaky_relu with slope >= 0); for prelu it must be the
 * pre-activation, and *dslope = sum over ref <= 0 of dy * ref,
 * *dslope_sq = dslope^2 (dslope/dslope_sq may be NULL otherwise).
 * Allocates a small scratch of per-block column partials (rows/block = max(16,
 * FC_BLOCK/m)). Returns FC_OK, FC_EINVAL or FC_ENOMEM. */
int fc_nn_act_backward_f32(const float *dy, int64_t lddy, const float *ref, int64_t ldr,
                           float *dz, int64_t lddz, int64_t n, int64_t m, int act, float slope,
                           float *db, double *db_sq, float *dslope, double *dslope_sq);
int fc_nn_act_backward_f64(const double *dy, int64_t lddy, const double *ref, int64_t ldr,
                           double *dz, int64_t lddz, int64_t n, int64_t m, int act, double slope,
                           double *db, double *db_sq, double *dslope, double *dslope_sq);

/* Sum of squares (in double) of a dense array of n elements, over fixed
 * blocks of FC_BLOCK elements added in order. */
double fc_nn_sumsq_f32(const float *x, int64_t n);
double fc_nn_sumsq_f64(const double *x, int64_t n);

/* Softmax cross-entropy over (n, c) logits (row stride ldx): with labels
 * (int64, in [0, c), checked by the caller) or, when labels is NULL, with
 * target probabilities t (row stride ldt). Writes the gradient
 * g = (softmax * sum_j t_j - t) / n (row stride c) and the mean loss.
 * With per-row weights w (n doubles, >= 0, summing to w_sum > 0; NULL: none)
 * the loss is the weighted mean sum_i w_i l_i / w_sum and row i of the
 * gradient is (softmax * sum_j t_j - t) * w_i / w_sum. */
int fc_nn_softmax_xent_f32(const float *x, int64_t ldx, int64_t n, int64_t c,
                           const int64_t *labels, const float *t, int64_t ldt, const double *w,
                           double w_sum, float *g, double *loss);
int fc_nn_softmax_xent_f64(const double *x, int64_t ldx, int64_t n, int64_t c,
                           const int64_t *labels, const double *t, int64_t ldt, const double *w,
                           double w_sum, double *g, double *loss);

/* Mean squared error over `size` dense elements and its gradient
 * g = 2 (p - t) / size; the difference is taken in double. With per-row
 * weights w (NULL: none) over `rows` rows of size / rows elements (k) each,
 * w_i >= 0 summing to w_sum > 0: the loss is sum_i w_i sum_j d_ij^2 / (w_sum k)
 * and g_ij = d_ij * (2 w_i / (w_sum k)). */
int fc_nn_mse_f32(const float *p, const float *t, float *g, int64_t size, const double *w,
                  int64_t rows, double w_sum, double *loss);
int fc_nn_mse_f64(const double *p, const double *t, double *g, int64_t size, const double *w,
                  int64_t rows, double w_sum, double *loss);

FC_API_END
#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_NN_H */
