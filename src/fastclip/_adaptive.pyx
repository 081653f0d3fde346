# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""C bindings of the adaptive-clipping kernels (csrc/adaptive.c).

Signatures and semantics are those of fastclip.reference.adaptive (same
validation and messages); the docstrings live in fastclip.adaptive.
"""
from libc.stdlib cimport malloc, free
from libc.stdint cimport int64_t, int32_t
cimport numpy as cnp

import numpy as np

from fastclip._checks import arrays as _ca
from fastclip._checks.adaptive import unit_split, check_agc_args
from fastclip._common cimport ArrayList, collect, raise_rc, FC_FLOAT32, FC_FLOAT64

cnp.import_array()

cdef extern from "adaptive.h" nogil:
    ctypedef struct fc_units:
        char *data
        int64_t rows, cols
        int64_t rs, cs
        int32_t dtype
    int fc_unit_norms(const fc_units *a, double *norms)
    int fc_agc_(const fc_units *g, const fc_units *p, int64_t n, double clipping, double eps,
                double *sq_before, double *sq_after, int64_t *n_clipped)


cdef object _matrix(object a, int64_t rows, int64_t cols):
    """A (rows, cols) view of `a`, or None when no view exists (copy needed)."""
    m = a.reshape(rows, cols)
    if m.size and not np.may_share_memory(m, a):
        return None
    return m


cdef void _describe(fc_units *u, object m, int64_t rows, int64_t cols):
    cdef cnp.ndarray arr = <cnp.ndarray>m
    u.data = <char *>cnp.PyArray_DATA(arr)
    u.rows = rows
    u.cols = cols
    u.rs = cnp.PyArray_STRIDES(arr)[0]
    u.cs = cnp.PyArray_STRIDES(arr)[1]
    u.dtype = FC_FLOAT32 if cnp.PyArray_TYPE(arr) == cnp.NPY_FLOAT else FC_FLOAT64


def unitwise_norms(x):
    cdef ArrayList al = collect(x, "x", False)
    cdef fc_units u
    cdef int rc
    cdef Py_ssize_t i
    cdef cnp.ndarray out
    results = []
    for i in range(al.n):
        a = al.arrays[i]
        rows, cols = unit_split(a.shape, _ca.label("x", i, al.single))
        m = _matrix(a, rows, cols)
        if m is None:
            m = np.ascontiguousarray(a).reshape(rows, cols)
        _describe(&u, m, rows, cols)
        out = np.empty(cols, dtype=np.float64)
        with nogil:
            rc = fc_unit_norms(&u, <double *>cnp.PyArray_DATA(out))
        raise_rc(rc)
        results.append(out)
    return results[0] if al.single else results


def adaptive_grad_clip_(grads, params, clipping=0.01, eps=1e-3):
    cdef double c, e
    c, e = check_agc_args(clipping, eps)
    cdef ArrayList ga = collect(grads, "grads", True)
    cdef ArrayList pa = collect(params, "params", False)
    cdef Py_ssize_t i, n = ga.n
    if pa.n != n:
        raise ValueError(
            f"params must hold one array per gradient: got {pa.n} params for {n} grads")
    shapes = []
    for i in range(n):
        g = ga.arrays[i]
        p = pa.arrays[i]
        if g.shape != p.shape:
            raise ValueError(
                f"{_ca.label('params', i, pa.single)} has shape {p.shape} but "
                f"{_ca.label('grads', i, ga.single)} has shape {g.shape}; they must match")
        shapes.append(unit_split(g.shape, _ca.label("grads", i, ga.single)))
    # Everything is valid: describe the arrays as (rows, cols) matrices.
    cdef fc_units *gu = <fc_units *>malloc((n if n > 0 else 1) * sizeof(fc_units))
    cdef fc_units *pu = <fc_units *>malloc((n if n > 0 else 1) * sizeof(fc_units))
    cdef cnp.ndarray before = np.zeros(n, dtype=np.float64)
    cdef cnp.ndarray after = np.zeros(n, dtype=np.float64)
    cdef int64_t clipped = 0
    cdef int rc
    keep = []       # the views and copies used by the kernel
    writeback = []  # (gradient, contiguous copy) for gradients with no matrix view
    try:
        if gu == NULL or pu == NULL:
            raise MemoryError()
        for i in range(n):
            rows, cols = shapes[i]
            g = ga.arrays[i]
            p = pa.arrays[i]
            gm = _matrix(g, rows, cols)
            if gm is None:
                tmp = np.ascontiguousarray(g)
                writeback.append((g, tmp))
                gm = tmp.reshape(rows, cols)
            pm = _matrix(p, rows, cols)
            if pm is None:
                pm = np.ascontiguousarray(p).reshape(rows, cols)
            keep.append((gm, pm))
            _describe(&gu[i], gm, rows, cols)
            _describe(&pu[i], pm, rows, cols)
        with nogil:
            rc = fc_agc_(gu, pu, n, c, e, <double *>cnp.PyArray_DATA(before),
                         <double *>cnp.PyArray_DATA(after), &clipped)
        raise_rc(rc)
        for g, tmp in writeback:
            np.copyto(g, tmp)
    finally:
        free(gu)
        free(pu)
    return before, after, int(clipped)
