# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""C bindings of the clipping kernels (csrc/clip.c).

Each function validates its arguments (with the messages of
fastclip._checks, shared with fastclip.reference.clip), releases the GIL
and makes one C call for the whole list of arrays. Signatures and semantics are
those of fastclip.reference.clip; the docstrings live in fastclip.clip.

The ``*_checked`` functions are the entry points of the MPI collectives
(fastclip.distributed.norms): their arrays come from
fastclip._checks.arrays.check_arrays and their scalars from fastclip._checks,
validated once at the collective, so nothing is checked again here.
"""
from libc.stdlib cimport malloc, free
from libc.stdint cimport int64_t
cimport numpy as cnp

import numpy as np

from fastclip._checks import arrays as _ca, scalars as _cs
from fastclip._common cimport (fc_array, ArrayList, collect, describe_checked, fill, raise_rc,
                               FC_OK, FC_ENONFINITE)

cnp.import_array()

cdef extern from "clip.h" nogil:
    int fc_array_norms(const fc_array *arrs, int64_t n, double p, double *norms)
    double fc_total_norm(const double *norms, int64_t n, double p)
    double fc_clip_coef(double max_norm, double total_norm)
    int fc_scale_(const fc_array *arrs, int64_t n, double coef)
    int fc_scale_into(const fc_array *src, const fc_array *dst, int64_t n, const double *coefs)
    int fc_clip_value_(const fc_array *arrs, int64_t n, double lo, double hi)
    int fc_clip_value_into(const fc_array *src, const fc_array *dst, int64_t n, double lo, double hi)
    int fc_clip_grad_norm_(const fc_array *arrs, int64_t n, double max_norm, double p,
                           int error_if_nonfinite, double *norms, double *total,
                           int64_t *first_nonfinite, int *scaled)
    int fc_nan_to_num_(const fc_array *arrs, int64_t n, double nan, int replace_inf,
                       double posinf, double neginf, int64_t *count)


cdef inline double _nonneg(object v, str name) except? -1.0:
    """check_nonnegative with a fast path for a plain float (the usual call)."""
    cdef double d
    if type(v) is float:
        d = <double>v
        if d >= 0.0:  # false for NaN and negatives: the full check raises for those
            return d
    return _cs.check_nonnegative(v, name)


cdef inline double _ptype(object v) except? -1.0:
    """check_norm_type with a fast path for a plain float."""
    cdef double d
    if type(v) is float:
        d = <double>v
        if d > 0.0:
            return d
    return _cs.check_norm_type(v)


cdef class _Norms:
    """A scratch buffer of n doubles."""
    cdef double *buf
    def __cinit__(self, Py_ssize_t n):
        self.buf = <double *>malloc((n if n > 0 else 1) * sizeof(double))
        if self.buf == NULL:
            raise MemoryError()
    def __dealloc__(self):
        free(self.buf)


cdef object _array_norms(ArrayList al, double p):
    cdef cnp.ndarray out = np.empty(al.n, dtype=np.float64)
    cdef int rc
    with nogil:
        rc = fc_array_norms(al.arrs, al.n, p, <double *>cnp.PyArray_DATA(out))
    raise_rc(rc)
    return out


def array_norms(grads, norm_type=2.0):
    cdef double p = _ptype(norm_type)
    return _array_norms(collect(grads, "grads", False), p)


def array_norms_checked(list arrays, double p):
    """array_norms of checked arrays and a checked norm_type."""
    return _array_norms(describe_checked(arrays), p)


cdef int _first_nonfinite(const double *norms, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        if not (norms[i] - norms[i] == 0.0):
            return <int>i
    return -1


def get_total_norm(grads, norm_type=2.0, error_if_nonfinite=False):
    cdef double p = _ptype(norm_type)
    cdef bint check = _cs.check_bool(error_if_nonfinite, "error_if_nonfinite")
    cdef ArrayList al = collect(grads, "grads", False)
    cdef _Norms norms = _Norms(al.n)
    cdef int rc
    cdef double total
    with nogil:
        rc = fc_array_norms(al.arrs, al.n, p, norms.buf)
        total = fc_total_norm(norms.buf, al.n, p)
    raise_rc(rc)
    if check and not (total - total == 0.0):
        raise FloatingPointError(_ca.nonfinite_msg(
            _first_nonfinite(norms.buf, al.n), al.single, "grads", total, p))
    return total


def clip_grad_norm_(grads, max_norm, norm_type=2.0, error_if_nonfinite=False):
    cdef double mx = _nonneg(max_norm, "max_norm")
    cdef double p = _ptype(norm_type)
    cdef int check = 1 if _cs.check_bool(error_if_nonfinite, "error_if_nonfinite") else 0
    cdef ArrayList al = collect(grads, "grads", True)
    cdef _Norms norms = _Norms(al.n)
    cdef double total = 0.0
    cdef int64_t bad = -1
    cdef int scaled = 0, rc
    with nogil:
        rc = fc_clip_grad_norm_(al.arrs, al.n, mx, p, check, norms.buf, &total, &bad, &scaled)
    if rc == FC_ENONFINITE:
        raise FloatingPointError(_ca.nonfinite_msg(<int>bad, al.single, "grads", total, p))
    raise_rc(rc)
    return total


cdef int _clip_with_norm(ArrayList al, double mx, double total) except -1:
    cdef double coef = fc_clip_coef(mx, total)
    cdef int rc = FC_OK
    if coef != 1.0:
        with nogil:
            rc = fc_scale_(al.arrs, al.n, coef)
    return raise_rc(rc)


def clip_grads_with_norm_(grads, max_norm, total_norm):
    cdef double mx = _nonneg(max_norm, "max_norm")
    cdef double total = _cs.check_total_norm(total_norm)
    _clip_with_norm(collect(grads, "grads", True), mx, total)


def clip_grads_with_norm_checked_(list arrays, double max_norm, double total_norm):
    """clip_grads_with_norm_ of checked arrays (checked for in-place use) and scalars."""
    _clip_with_norm(describe_checked(arrays), max_norm, total_norm)


def clip_grad_value_(grads, clip_value):
    cdef double c = _nonneg(clip_value, "clip_value")
    cdef ArrayList al = collect(grads, "grads", True)
    cdef int rc
    with nogil:
        rc = fc_clip_value_(al.arrs, al.n, -c, c)
    raise_rc(rc)


cdef tuple _outputs(ArrayList src):
    """New arrays like the inputs; dense ones share the input's memory order."""
    cdef list outs = []
    cdef list dense = []
    cdef Py_ssize_t i
    for i in range(src.n):
        a = src.arrays[i]
        if src.arrs[i].ndim == 0:
            o = np.empty_like(a)  # same memory order as the dense input
        else:
            # empty_like(order="K") of a permuted strided view can be dense in a
            # permuted order (neither C nor F): use C order, filled by a copy.
            o = np.empty(a.shape, dtype=a.dtype)
        outs.append(o)
        dense.append(src.arrs[i].ndim == 0)
    return outs, dense


cdef object _unary_into(ArrayList src, int op, double lo, double hi, const double *coefs):
    """op 0: out = clamp(x, lo, hi); op 1: out = x * coefs[i]."""
    outs, dense = _outputs(src)
    cdef Py_ssize_t i, n = src.n
    cdef fc_array *dst = NULL
    cdef fc_array *s = NULL
    cdef int rc = FC_OK
    cdef double c
    try:
        dst = <fc_array *>malloc((n if n > 0 else 1) * sizeof(fc_array))
        s = <fc_array *>malloc((n if n > 0 else 1) * sizeof(fc_array))
        if dst == NULL or s == NULL:
            raise MemoryError()
        for i in range(n):
            if dense[i]:
                # empty_like keeps a dense input's memory order: elementwise in memory.
                fill(&dst[i], outs[i])
                s[i] = src.arrs[i]
            else:
                # Not one dense block in the same order: copy, then work in place.
                np.copyto(outs[i], src.arrays[i])
                fill(&dst[i], outs[i])
                s[i] = dst[i]
            if dst[i].ndim != 0:
                raise AssertionError("fastclip: output arrays are always dense")
        with nogil:
            if op == 0:
                rc = fc_clip_value_into(s, dst, n, lo, hi)
            else:
                rc = fc_scale_into(s, dst, n, coefs)
        raise_rc(rc)
    finally:
        free(dst)
        free(s)
    return outs


def clip_by_value(x, lo, hi):
    lo_f, hi_f = _cs.check_range(lo, hi)
    cdef ArrayList al = collect(x, "x", False)
    outs = _unary_into(al, 0, lo_f, hi_f, NULL)
    return outs[0] if al.single else outs


def clip_by_norm(x, clip_norm):
    cdef double c = _cs.check_finite_positive(clip_norm, "clip_norm")
    cdef ArrayList al = collect(x, "x", False)
    cdef _Norms norms = _Norms(al.n)
    cdef Py_ssize_t i
    cdef int rc
    with nogil:
        rc = fc_array_norms(al.arrs, al.n, 2.0, norms.buf)
    raise_rc(rc)
    for i in range(al.n):
        # TensorFlow: x * clip_norm / max(norm, clip_norm); NaN norm propagates.
        norms.buf[i] = c / (norms.buf[i] if (norms.buf[i] > c or norms.buf[i] != norms.buf[i]) else c)
    outs = _unary_into(al, 1, 0.0, 0.0, norms.buf)
    return outs[0] if al.single else outs


cdef list _scaled_by_global_norm(ArrayList al, double c, double g):
    """The copies of clip_by_global_norm, given the global norm g."""
    cdef _Norms coefs = _Norms(al.n)
    cdef Py_ssize_t i
    # TensorFlow: clip_norm * min(1/g, 1/clip_norm), NaN when g is inf or NaN.
    cdef double inv = 1.0 / g if g != 0.0 else float("inf")
    cdef double coef = c * (inv if inv < 1.0 / c else 1.0 / c)
    if not (g - g == 0.0):
        coef = float("nan")
    for i in range(al.n):
        coefs.buf[i] = coef
    return _unary_into(al, 1, 0.0, 0.0, coefs.buf)


def clip_by_global_norm(xs, clip_norm, use_norm=None):
    cdef double c = _cs.check_finite_positive(clip_norm, "clip_norm")
    cdef ArrayList al = collect(xs, "xs", False)
    cdef _Norms norms
    cdef double g
    cdef int rc = FC_OK
    if use_norm is None:
        norms = _Norms(al.n)
        with nogil:
            rc = fc_array_norms(al.arrs, al.n, 2.0, norms.buf)
            g = fc_total_norm(norms.buf, al.n, 2.0)
        raise_rc(rc)
    else:
        g = _cs.check_total_norm(use_norm, "use_norm")
    return _scaled_by_global_norm(al, c, g), g


def clip_by_global_norm_checked(list arrays, double clip_norm, double global_norm):
    """The clipped copies of clip_by_global_norm of checked arrays, given the
    checked clip_norm and the global norm."""
    return _scaled_by_global_norm(describe_checked(arrays), clip_norm, global_norm)


def zero_nans_(grads):
    cdef ArrayList al = collect(grads, "grads", True)
    cdef int64_t count = 0
    cdef int rc
    with nogil:
        rc = fc_nan_to_num_(al.arrs, al.n, 0.0, 0, 0.0, 0.0, &count)
    raise_rc(rc)
    return int(count)
