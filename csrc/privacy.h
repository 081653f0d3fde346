/*
 * fastclip: per-example gradient kernels for differentially private training.
 *
 * Each argument array holds one gradient per example along its first axis: B
 * rows of `cols` elements, row i starting at data + i * row_stride and element j
 * of a row at + j * col_stride (strides in bytes). The kernels never depend on
 * the thread count for their results: a row's sum of squares is accumulated by
 * one thread in a fixed lane order, and a column sum runs over the rows in order.
 */
#ifndef FASTCLIP_PRIVACY_H
#define FASTCLIP_PRIVACY_H

#include "fc_common.h"

#ifdef __cplusplus
extern "C" {
#endif
FC_API_BEGIN

typedef struct {
    char *data;
    int64_t rows;        /* the batch size B, the same for every array */
    int64_t cols;        /* elements per example */
    int64_t row_stride;  /* bytes */
    int64_t col_stride;  /* bytes */
    int32_t dtype;       /* FC_FLOAT32 or FC_FLOAT64 */
} fc_rows;

/* out[k * B + i] = sum of squares of row i of arrays[k], in float64. */
int fc_row_sqnorms(const fc_rows *arrays, int64_t n, double *out);

/* sums[k][j] = sum over i of dtype(g_k[i, j] * dtype(w[k * B + i])), accumulated in
 * float64 in row order and rounded to the array's dtype; sums[k] is a dense
 * vector of `cols` elements of the array's dtype. With inplace != 0 the scaled
 * terms are also stored back into g_k. sums == NULL (with inplace != 0) only scales
 * the rows in place. */
int fc_row_weighted_sum(const fc_rows *arrays, int64_t n, const double *w, int inplace,
                        char *const *sums);

/* Gaussian noise from a counter-based stream, fused with the DP-SGD average:
 * out[i] = (add[i] + std * z[counter + i]) * scale (add may be NULL: 0). z[j] is the
 * j-th standard normal of the stream `seed`; normals 2p and 2p+1 are one Box-Muller
 * pair. float64: the pair's uniforms are SplitMix64 outputs 2p and 2p+1 (52 bits
 * each), float64 arithmetic. float32: one SplitMix64 output p gives both (40 bits
 * for the radius, 24 for the angle), float32 arithmetic, accurate to the float32
 * result. log, sin and cos are fixed polynomials, so the values depend on the seed
 * and the counter only: not on the thread count, the SIMD level or the platform's
 * libm. `counter` must be even. out may alias add. */
int fc_gaussian_f32(float *out, const float *add, int64_t n, uint64_t seed, uint64_t counter,
                    double std, double scale);
int fc_gaussian_f64(double *out, const double *add, int64_t n, uint64_t seed,
                    uint64_t counter, double std, double scale);
/* The same for n arrays of one dtype (float32 when f32, else float64) in one
 * parallel pass: array k's elements continue the stream where array k-1's end,
 * rounded up to a whole pair (counter + the sizes before it, each rounded up to
 * even). adds is NULL or has one entry per array (each may be NULL). sqnorms is
 * NULL, or receives sqnorms[k], the sum of squares of outs[k] (in float64), each
 * item of the pass reading back the part it has just written, while it is in
 * cache: the optimiser that takes the noisy gradients then needs no norm pass. */
int fc_gaussian_arrays(void *const *outs, const void *const *adds, const int64_t *sizes,
                       int64_t n, int f32, uint64_t seed, uint64_t counter, double std,
                       double scale, double *sqnorms);

FC_API_END
#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_PRIVACY_H */
