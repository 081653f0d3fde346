# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""C bindings used by fastclip.distributed (the twin of fastclip.reference.distributed).

``total_norm`` combines per-array norms gathered from every rank with the very
kernel that the single-process ``get_total_norm`` uses (``fc_total_norm`` in
csrc/clip.c), so a sharded total norm is bit-identical to the single-process
total norm of the concatenated list.
"""
from libc.stdint cimport int64_t
cimport numpy as cnp

import numpy as np

cnp.import_array()

cdef extern from "clip.h" nogil:
    double fc_total_norm(const double *norms, int64_t n, double p)


def total_norm(norms, double p):
    """The ``p``-norm of a 1-D float64 array of per-array norms (overflow-safe)."""
    cdef cnp.ndarray a = np.ascontiguousarray(norms, dtype=np.float64).reshape(-1)
    cdef int64_t n = a.shape[0]
    cdef const double *buf = <const double *>cnp.PyArray_DATA(a)
    cdef double total
    with nogil:
        total = fc_total_norm(buf, n, p)
    return total
