/*
 * fastclip: strided iteration. A view is visited in its canonical order (unit
 * dimensions dropped, strides made positive and sorted, mergeable dimensions
 * merged), as runs of equally strided elements (one run for a dense block):
 * the visiting order follows memory and depends on the layout alone.
 */
#ifndef FASTCLIP_ITER_H
#define FASTCLIP_ITER_H

#include "fc_array.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int ndim;
    char *base;
    char *ptr;
    int64_t shape[FC_MAXDIMS];
    int64_t strides[FC_MAXDIMS];
    int64_t idx[FC_MAXDIMS];
} fc_iter;

/* Positions `it` at linear element `start` of `a` in its canonical order. */
void fc_iter_init(fc_iter *it, const fc_array *a, int64_t start);
/* Length of the current run and its stride in bytes. */
static inline int64_t fc_iter_run(const fc_iter *it) {
    return it->shape[it->ndim - 1] - it->idx[it->ndim - 1];
}
static inline int64_t fc_iter_stride(const fc_iter *it) { return it->strides[it->ndim - 1]; }
void fc_iter_advance(fc_iter *it, int64_t n);

/* Walks elements [start, start + count) of array `a` as runs:
 * PTR (char *), LEN and STRIDE (bytes) are bound for the body. */
#define FC_RUNS(a, start, count, PTR, LEN, STRIDE, ...)                                   \
    do {                                                                                  \
        if ((a)->ndim == 0) {                                                             \
            char *PTR = (a)->data + (start) * fc_itemsize((a)->dtype);                    \
            int64_t LEN = (count);                                                        \
            int64_t STRIDE = fc_itemsize((a)->dtype);                                     \
            __VA_ARGS__                                                                   \
        } else {                                                                          \
            fc_iter it_;                                                                  \
            fc_iter_init(&it_, (a), (start));                                             \
            int64_t left_ = (count);                                                      \
            while (left_ > 0) {                                                           \
                int64_t LEN = fc_iter_run(&it_);                                          \
                if (LEN > left_) LEN = left_;                                             \
                char *PTR = it_.ptr;                                                      \
                int64_t STRIDE = fc_iter_stride(&it_);                                    \
                __VA_ARGS__                                                               \
                left_ -= LEN;                                                             \
                fc_iter_advance(&it_, LEN);                                               \
            }                                                                             \
        }                                                                                 \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_ITER_H */
