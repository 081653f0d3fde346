/* fastclip: strided iteration (see fc_iter.h). */
#include "fc_iter.h"

/* Canonical form of a strided view: drop unit dimensions, make strides
 * positive (moving the base pointer), sort by decreasing stride, merge
 * dimensions that tile each other. Visiting order then follows memory. */
static int fc_canonical(const fc_array *a, char **base, int64_t *shape, int64_t *strides) {
    int nd = 0;
    char *p = a->data;
    for (int k = 0; k < a->ndim; k++) {
        int64_t n = a->shape[k], s = a->strides[k];
        if (n == 1) continue;
        if (s < 0) {
            p += (n - 1) * s;
            s = -s;
        }
        shape[nd] = n;
        strides[nd] = s;
        nd++;
    }
    /* insertion sort by decreasing stride (stable: keeps C order on ties) */
    for (int i = 1; i < nd; i++) {
        int64_t n = shape[i], s = strides[i];
        int j = i - 1;
        while (j >= 0 && strides[j] < s) {
            shape[j + 1] = shape[j];
            strides[j + 1] = strides[j];
            j--;
        }
        shape[j + 1] = n;
        strides[j + 1] = s;
    }
    /* merge from the inside out */
    int out = 0;
    for (int i = 0; i < nd; i++) {
        if (out > 0 && strides[out - 1] == strides[i] * shape[i]) {
            /* previous (outer) tiles this one exactly: fold it in */
            shape[out - 1] *= shape[i];
            strides[out - 1] = strides[i];
        } else {
            shape[out] = shape[i];
            strides[out] = strides[i];
            out++;
        }
    }
    if (out == 0) {
        shape[0] = 1;
        strides[0] = fc_itemsize(a->dtype);
        out = 1;
    }
    *base = p;
    return out;
}

void fc_iter_init(fc_iter *it, const fc_array *a, int64_t start) {
    if (a->ndim == 0) {
        it->ndim = 1;
        it->base = a->data;
        it->shape[0] = a->size;
        it->strides[0] = fc_itemsize(a->dtype);
    } else {
        it->ndim = fc_canonical(a, &it->base, it->shape, it->strides);
    }
    int64_t rem = start;
    char *p = it->base;
    for (int k = it->ndim - 1; k >= 0; k--) {
        int64_t n = it->shape[k];
        it->idx[k] = rem % n;
        rem /= n;
        p += it->idx[k] * it->strides[k];
    }
    it->ptr = p;
}

void fc_iter_advance(fc_iter *it, int64_t n) {
    int k = it->ndim - 1;
    it->idx[k] += n;
    it->ptr += n * it->strides[k];
    while (k > 0 && it->idx[k] >= it->shape[k]) {
        int64_t carry = it->idx[k] / it->shape[k];
        it->ptr -= it->idx[k] * it->strides[k];
        it->idx[k] -= carry * it->shape[k];
        it->ptr += it->idx[k] * it->strides[k];
        k--;
        it->idx[k] += carry;
        it->ptr += carry * it->strides[k];
    }
}
