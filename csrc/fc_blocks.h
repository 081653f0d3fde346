/*
 * fastclip: fixed blocks. A list of arrays is split into blocks of FC_BLOCK
 * elements (the last block of each array may be shorter). Reductions compute
 * one partial per block and combine the partials in block order, and the
 * blocks are the work items handed to threads, so results never depend on the
 * number of threads.
 */
#ifndef FASTCLIP_BLOCKS_H
#define FASTCLIP_BLOCKS_H

#include "fc_array.h"
#include "fc_threads.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Elements per block. */
#define FC_BLOCK ((int64_t)1 << 15)

typedef struct {
    int64_t arr, start, count; /* elements [start, start + count) of array arr */
} fc_block;

/* Splits every array into blocks. When `first` is not NULL (n + 1 entries),
 * first[i] .. first[i+1] are the blocks of array i. *nb_out receives the
 * number of blocks and *work_out the number of elements. Returns the blocks
 * (free() them), or NULL when there are none (*nb_out == 0) or on allocation
 * failure (*nb_out > 0). */
fc_block *fc_make_blocks(const fc_array *arrs, int64_t n, int64_t *first, int64_t *nb_out,
                         int64_t *work_out);

/* A reduction over nb blocks: sets *part to an array of nb partials (on the stack for
 * up to 256 blocks), runs item(ctx, b) for every block (on threads when `parallel`),
 * each item writing (*part)[b], then adds the partials in block order into *sum, so the
 * result never depends on the number of threads. FC_ENOMEM when the partials cannot be
 * allocated (nothing run), else FC_OK. */
int fc_sum_blocks(int64_t nb, fc_item_fn item, void *ctx, double **part, int parallel,
                  double *sum);

#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_BLOCKS_H */
