/*
 * fastclip: the array descriptor the kernels take (no Python API here).
 *
 * An fc_array describes one NumPy array view: data pointer, element count,
 * dtype, and either "contiguous" (ndim == 0: C or Fortran order, the
 * elements form one dense block) or an explicit shape/strides (bytes).
 * Elementwise kernels and reductions visit elements in an order fixed by
 * the layout alone, never by the number of threads, so every result is
 * bit-identical whatever the thread count.
 */
#ifndef FASTCLIP_ARRAY_H
#define FASTCLIP_ARRAY_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fc_api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* MSVC's C compiler knows `restrict` only in /std:c11 mode; `__restrict` always. */
#if defined(_MSC_VER) && !defined(__clang__) && !defined(restrict) && \
    (!defined(__STDC_VERSION__) || __STDC_VERSION__ < 199901L)
#define restrict __restrict
#endif

#define FC_MAXDIMS 64

enum { FC_FLOAT32 = 0, FC_FLOAT64 = 1 };

/* Error codes returned by kernels (0 is success). */
enum { FC_OK = 0, FC_ENOMEM = -1, FC_ENONFINITE = -2, FC_EINVAL = -3 };

typedef struct {
    char *data;
    int64_t size;            /* number of elements */
    int32_t ndim;            /* 0: dense block of `size` elements */
    int32_t dtype;           /* FC_FLOAT32 or FC_FLOAT64 */
    const int64_t *shape;    /* ndim entries (unused when ndim == 0) */
    const int64_t *strides;  /* ndim entries, in bytes */
} fc_array;

static inline int64_t fc_itemsize(int32_t dtype) { return dtype == FC_FLOAT32 ? 4 : 8; }

#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_ARRAY_H */
