/* fastclip: overlap detection of memory extents (see fc_overlap.h). */
#include "fc_overlap.h"

#include <string.h>

typedef struct {
    uintptr_t lo, hi;
} fc_extent;

static void fc_extent_of(const fc_array *a, fc_extent *e) {
    uintptr_t lo = (uintptr_t)a->data, hi = (uintptr_t)a->data;
    int64_t item = fc_itemsize(a->dtype);
    if (a->size == 0) {
        e->lo = e->hi = lo;
        return;
    }
    if (a->ndim == 0) {
        hi += (uintptr_t)(a->size * item);
    } else {
        for (int k = 0; k < a->ndim; k++) {
            int64_t span = (a->shape[k] - 1) * a->strides[k];
            if (span < 0) lo -= (uintptr_t)(-span);
            else hi += (uintptr_t)span;
        }
        hi += (uintptr_t)item;
    }
    e->lo = lo;
    e->hi = hi;
}

/* bottom-up merge sort of extents by lo */
static void fc_sort_extents(fc_extent *e, fc_extent *tmp, int64_t n) {
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t s = 0; s < n; s += 2 * w) {
            int64_t m = s + w < n ? s + w : n, t = s + 2 * w < n ? s + 2 * w : n;
            int64_t i = s, j = m, k = s;
            while (i < m && j < t) tmp[k++] = (e[j].lo < e[i].lo) ? e[j++] : e[i++];
            while (i < m) tmp[k++] = e[i++];
            while (j < t) tmp[k++] = e[j++];
        }
        memcpy(e, tmp, (size_t)n * sizeof(fc_extent));
    }
}

#if defined(_MSC_VER)
#define FC_TLS __declspec(thread)
#else
#define FC_TLS __thread
#endif

/* The extents of the last list found free of overlaps, per thread: a training
 * loop clips the same arrays every step, and then the check is one comparison. */
static FC_TLS fc_extent *fc_ok_extents = NULL;
static FC_TLS int64_t fc_ok_n = 0, fc_ok_cap = 0;

static void fc_remember_ok(const fc_extent *e, int64_t n) {
    if (n > fc_ok_cap) {
        fc_extent *c = (fc_extent *)realloc(fc_ok_extents, (size_t)n * sizeof(fc_extent));
        if (!c) {
            fc_ok_n = 0;
            return;
        }
        fc_ok_extents = c;
        fc_ok_cap = n;
    }
    memcpy(fc_ok_extents, e, (size_t)n * sizeof(fc_extent));
    fc_ok_n = n;
}

int fc_extents_overlap(const fc_array *arrs, int64_t n) {
    if (n < 2) return 0;
    fc_extent *e = (fc_extent *)malloc((size_t)n * 2 * sizeof(fc_extent));
    if (!e) return -1;
    int64_t descents = 0;
    for (int64_t i = 0; i < n; i++) {
        fc_extent_of(arrs + i, e + i);
        if (i > 0 && e[i].lo < e[i - 1].lo) descents++;
    }
    if (n == fc_ok_n && memcmp(e, fc_ok_extents, (size_t)n * sizeof(fc_extent)) == 0) {
        free(e); /* the same extents as a list already found disjoint */
        return 0;
    }
    memcpy(e + n, e, (size_t)n * sizeof(fc_extent)); /* unsorted copy, remembered if ok */
    if (descents > 0) {
        /* Usually nearly in address order (arrays allocated one after the other,
         * a few reused holes): insertion sort with a budget of 8 n moves, then the
         * merge sort for whatever order is left. */
        int64_t budget = 8 * n;
        for (int64_t i = 1; i < n && budget >= 0; i++) {
            fc_extent x = e[i];
            int64_t j = i - 1;
            while (j >= 0 && e[j].lo > x.lo) {
                e[j + 1] = e[j];
                j--;
                budget--;
            }
            e[j + 1] = x;
        }
        if (budget < 0) {
            fc_extent *tmp = (fc_extent *)malloc((size_t)n * sizeof(fc_extent));
            if (!tmp) {
                free(e);
                return -1;
            }
            fc_sort_extents(e, tmp, n);
            free(tmp);
        }
    }
    int overlap = 0;
    uintptr_t maxhi = 0;
    int seen = 0;
    for (int64_t i = 0; i < n; i++) {
        if (e[i].hi == e[i].lo) continue; /* empty arrays share nothing */
        if (seen && e[i].lo < maxhi) {
            overlap = 1;
            break;
        }
        if (!seen || e[i].hi > maxhi) maxhi = e[i].hi;
        seen = 1;
    }
    if (!overlap) fc_remember_ok(e + n, n);
    free(e);
    return overlap;
}
