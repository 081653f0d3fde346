/* fastclip: per-example gradient kernels (see privacy.h). */
#include "privacy.h"

#include <stdlib.h>

#define FC_T float
#define FC_SUF f32
#include "privacy_impl.h"
#undef FC_T
#undef FC_SUF

#define FC_T double
#define FC_SUF f64
#include "privacy_impl.h"
#undef FC_T
#undef FC_SUF

/* Rows per work item of the norm pass, columns per item of the sum pass. */
#define ROWS_PER_ITEM 16
#define COLS_PER_ITEM 2048

typedef struct {
    const fc_rows *arrays;
    int64_t n, items_per_array;
    double *out;
} ssq_task;

static void item_ssq(void *ctx, int64_t it) {
    const ssq_task *t = (const ssq_task *)ctx;
    const int64_t k = it / t->items_per_array;
    const fc_rows *a = &t->arrays[k];
    const int64_t r0 = (it % t->items_per_array) * ROWS_PER_ITEM;
    const int64_t r1 = r0 + ROWS_PER_ITEM < a->rows ? r0 + ROWS_PER_ITEM : a->rows;
    for (int64_t i = r0; i < r1; i++) {
        const char *row = a->data + i * a->row_stride;
        t->out[k * a->rows + i] = a->dtype == FC_FLOAT32
                                      ? row_ssq_f32(row, a->cols, a->col_stride)
                                      : row_ssq_f64(row, a->cols, a->col_stride);
    }
}

static int64_t total_work(const fc_rows *arrays, int64_t n) {
    int64_t work = 0;
    for (int64_t k = 0; k < n; k++) work += arrays[k].rows * arrays[k].cols;
    return work;
}

int fc_row_sqnorms(const fc_rows *arrays, int64_t n, double *out) {
    if (n <= 0) return FC_OK;
    const int64_t batch = arrays[0].rows;
    ssq_task t = {arrays, n, (batch + ROWS_PER_ITEM - 1) / ROWS_PER_ITEM, out};
    if (t.items_per_array == 0) return FC_OK;
    fc_parallel_for(n * t.items_per_array, item_ssq, &t, total_work(arrays, n));
    return FC_OK;
}

typedef struct {
    const fc_rows *arrays;
    const double *w;
    int inplace;
    char *const *sums;
    const int64_t *first_item; /* n + 1 prefix offsets of the items of each array */
    int64_t n;
} wsum_task;

static void item_wsum(void *ctx, int64_t it) {
    const wsum_task *t = (const wsum_task *)ctx;
    int64_t k = 0;
    while (t->first_item[k + 1] <= it) k++;
    const fc_rows *a = &t->arrays[k];
    const int64_t c0 = (it - t->first_item[k]) * COLS_PER_ITEM;
    const int64_t c1 = c0 + COLS_PER_ITEM < a->cols ? c0 + COLS_PER_ITEM : a->cols;
    double acc[COLS_PER_ITEM];
    if (a->dtype == FC_FLOAT32)
        cols_wsum_f32(a, t->w + k * a->rows, t->inplace, (float *)t->sums[k], c0, c1, acc);
    else
        cols_wsum_f64(a, t->w + k * a->rows, t->inplace, (double *)t->sums[k], c0, c1, acc);
}

int fc_row_weighted_sum(const fc_rows *arrays, int64_t n, const double *w, int inplace,
                        char *const *sums) {
    if (n <= 0) return FC_OK;
    int64_t *first = (int64_t *)malloc((size_t)(n + 1) * sizeof(int64_t));
    if (first == NULL) return FC_ENOMEM;
    first[0] = 0;
    for (int64_t k = 0; k < n; k++)
        first[k + 1] = first[k] + (arrays[k].cols + COLS_PER_ITEM - 1) / COLS_PER_ITEM;
    wsum_task t = {arrays, w, inplace, sums, first, n};
    if (first[n] > 0) fc_parallel_for(first[n], item_wsum, &t, total_work(arrays, n));
    free(first);
    return FC_OK;
}
