/* fastclip: fixed blocks across a list of arrays (see fc_blocks.h). */
#include "fc_blocks.h"

fc_block *fc_make_blocks(const fc_array *arrs, int64_t n, int64_t *first, int64_t *nb_out,
                         int64_t *work_out) {
    int64_t nb = 0, work = 0;
    for (int64_t i = 0; i < n; i++) {
        if (first) first[i] = nb;
        nb += (arrs[i].size + FC_BLOCK - 1) / FC_BLOCK;
        work += arrs[i].size;
    }
    if (first) first[n] = nb;
    *nb_out = nb;
    *work_out = work;
    if (nb == 0) return NULL;
    fc_block *b = (fc_block *)malloc((size_t)nb * sizeof(fc_block));
    if (!b) return NULL;
    int64_t g = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t s = 0; s < arrs[i].size; s += FC_BLOCK) {
            b[g].arr = i;
            b[g].start = s;
            b[g].count = arrs[i].size - s < FC_BLOCK ? arrs[i].size - s : FC_BLOCK;
            g++;
        }
    }
    return b;
}

int fc_sum_blocks(int64_t nb, fc_item_fn item, void *ctx, double **part, int parallel,
                  double *sum) {
    double stack[256];
    double *p = nb <= 256 ? stack : (double *)malloc((size_t)nb * sizeof(double));
    if (!p) return FC_ENOMEM;
    *part = p;
    fc_parallel_for(nb, item, ctx, parallel);
    double total = 0.0;
    for (int64_t b = 0; b < nb; b++) total += p[b];
    *part = NULL;
    if (p != stack) free(p);
    *sum = total;
    return FC_OK;
}
