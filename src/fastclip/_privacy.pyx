# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""C bindings of the per-example gradient kernels (csrc/privacy.c).

The twin of fastclip.reference.privacy, same signatures and results. The
arguments arrive validated by fastclip.privacy (fastclip._checks.privacy): float32
or float64 arrays with a common leading batch axis. Each array is described as B
rows of equally strided elements; an array whose trailing axes cannot be walked
with one stride is processed through a contiguous copy (written back when
``inplace``). One C call per primitive, with the GIL released.
"""
from libc.stdlib cimport malloc, free
from libc.stdint cimport int64_t, int32_t, uint64_t
cimport numpy as cnp

import math

import numpy as np

from fastclip._checks import privacy as _cp

from fastclip._common cimport raise_rc, FC_FLOAT32, FC_FLOAT64

cnp.import_array()

cdef extern from "privacy.h" nogil:
    ctypedef struct fc_rows:
        char *data
        int64_t rows
        int64_t cols
        int64_t row_stride
        int64_t col_stride
        int32_t dtype
    int fc_row_sqnorms(const fc_rows *arrays, int64_t n, double *out)
    int fc_row_weighted_sum(const fc_rows *arrays, int64_t n, const double *w, int inplace,
                            char *const *sums)
    int fc_gaussian_f32(float *out, const float *add, int64_t n, uint64_t seed, uint64_t counter,
                        double std, double scale)
    int fc_gaussian_f64(double *out, const double *add, int64_t n, uint64_t seed,
                        uint64_t counter, double std, double scale)
    int fc_gaussian_arrays(void *const *outs, const void *const *adds, const int64_t *sizes,
                           int64_t n, int f32, uint64_t seed, uint64_t counter, double std,
                           double scale, double *sqnorms)


cdef bint _describe(fc_rows *dst, cnp.ndarray a):
    """Describe ``a`` as B rows of ``cols`` equally strided elements, in place (no new
    array object). False, with ``dst`` unusable, when its trailing axes do not
    merge into one stride (the caller then describes a contiguous copy)."""
    cdef int nd = cnp.PyArray_NDIM(a)
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp *strides = cnp.PyArray_STRIDES(a)
    cdef int64_t cols = 1
    cdef int64_t col_stride = cnp.PyArray_ITEMSIZE(a)
    cdef int64_t prev_n = 0, prev_s = 0
    cdef bint merged = True
    cdef int d
    # the axes of length 1 do not count; every other axis must step by the next one's
    # whole extent (checked from the last axis back)
    for d in range(nd - 1, 0, -1):
        cols *= shape[d]
        if shape[d] == 1:
            continue
        if prev_n == 0:
            col_stride = strides[d]
        elif strides[d] != prev_s * prev_n:
            merged = False
        prev_n = shape[d]
        prev_s = strides[d]
    if cols == 0:
        merged = True
    if not merged:
        return False
    dst.data = <char *>cnp.PyArray_DATA(a)
    dst.rows = shape[0]
    dst.cols = cols
    dst.row_stride = strides[0]
    dst.col_stride = col_stride
    dst.dtype = FC_FLOAT32 if cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT else FC_FLOAT64
    return True


cdef class _Rows:
    cdef fc_rows *desc
    cdef Py_ssize_t n
    cdef list views
    cdef list copied   # (original, copy) pairs to write back after an in-place call

    def __cinit__(self, list arrays):
        self.n = len(arrays)
        self.desc = <fc_rows *>malloc((self.n if self.n > 0 else 1) * sizeof(fc_rows))
        if self.desc == NULL:
            raise MemoryError()
        self.views = []
        self.copied = []
        cdef cnp.ndarray a, r
        for k in range(self.n):
            if not isinstance(arrays[k], np.ndarray):
                raise TypeError("arrays must hold NumPy arrays")
            a = <cnp.ndarray>arrays[k]
            if a.ndim < 1:
                raise ValueError("arrays must have a leading batch axis")
            if not _describe(&self.desc[k], a):
                shp = (<object>a).shape
                r = np.ascontiguousarray(a).reshape(shp[0], math.prod(shp[1:]))
                self.copied.append((a, r))
                self.views.append(r)
                _describe(&self.desc[k], r)
            else:
                self.views.append(a)

    def __dealloc__(self):
        free(self.desc)

    cdef void write_back(self):
        for a, r in self.copied:
            np.copyto(a, r.reshape(a.shape))


def row_sqnorms(list arrays):
    cdef _Rows rows = _Rows(arrays)
    cdef cnp.ndarray out = np.empty((rows.n, arrays[0].shape[0]), dtype=np.float64)
    cdef double *po = <double *>cnp.PyArray_DATA(out)
    cdef int rc
    with nogil:
        rc = fc_row_sqnorms(rows.desc, rows.n, po)
    raise_rc(rc)
    return out


def row_weighted_sum(list arrays, weights, bint inplace, bint sums=True):
    if not sums and not inplace:
        raise ValueError("sums=False needs inplace=True (there is nothing to return)")
    cdef _Rows rows = _Rows(arrays)
    cdef cnp.ndarray w = np.ascontiguousarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != rows.n or (rows.n and w.shape[1] != arrays[0].shape[0]):
        raise ValueError("weights must have shape (len(arrays), batch)")
    outs = [np.empty(a.shape[1:], dtype=a.dtype) for a in arrays] if sums else None
    cdef char **ps = NULL
    cdef Py_ssize_t k
    if sums:
        ps = <char **>malloc((rows.n if rows.n > 0 else 1) * sizeof(char *))
        if ps == NULL:
            raise MemoryError()
        for k in range(rows.n):
            ps[k] = <char *>cnp.PyArray_DATA(<cnp.ndarray>outs[k])
    cdef const double *pw = <const double *>cnp.PyArray_DATA(w)
    cdef int rc
    try:
        with nogil:
            rc = fc_row_weighted_sum(rows.desc, rows.n, pw, inplace, ps)
    finally:
        free(ps)
    raise_rc(rc)
    if inplace:
        rows.write_back()
    return outs


def gaussian_(out, add, uint64_t seed, uint64_t counter, double std, double scale):
    """``out = (add + std * z) * scale`` with z the stream's normals from ``counter``
    (``out``, ``add``: C-contiguous arrays of one float dtype; ``add`` may be None)."""
    cdef cnp.ndarray o = <cnp.ndarray>out
    if not (cnp.PyArray_IS_C_CONTIGUOUS(o) and cnp.PyArray_ISWRITEABLE(o)):
        raise ValueError("out must be a writeable C-contiguous array")
    cdef int t = cnp.PyArray_TYPE(o)
    if t != cnp.NPY_FLOAT and t != cnp.NPY_DOUBLE:
        raise TypeError("out must have dtype float32 or float64")
    cdef const void *pa = NULL
    if add is not None:
        if (not cnp.PyArray_Check(add) or cnp.PyArray_TYPE(<cnp.ndarray>add) != t
                or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>add)
                or cnp.PyArray_SIZE(<cnp.ndarray>add) != cnp.PyArray_SIZE(o)):
            raise ValueError("add must be a C-contiguous array of out's dtype and size")
        pa = cnp.PyArray_DATA(<cnp.ndarray>add)
    cdef void *po = cnp.PyArray_DATA(o)
    cdef int64_t n = cnp.PyArray_SIZE(o)
    cdef int rc
    with nogil:
        if t == cnp.NPY_FLOAT:
            rc = fc_gaussian_f32(<float *>po, <const float *>pa, n, seed, counter, std, scale)
        else:
            rc = fc_gaussian_f64(<double *>po, <const double *>pa, n, seed, counter, std, scale)
    raise_rc(rc)


def gaussian_arrays_(outs, adds, uint64_t seed, uint64_t counter, double std, double scale,
                     sqnorms=None):
    """:func:`gaussian_` for a list of arrays in one C call: ``outs[k] = (adds[k] + std *
    z) * scale``, array ``k`` continuing the stream where array ``k - 1`` ends (its
    size rounded up to even). ``outs``: C-contiguous writeable arrays of one float
    dtype; ``adds``: None or a list of arrays of the same dtypes and sizes;
    ``sqnorms``: None, or a writeable C-contiguous float64 array of ``len(outs)``
    that receives the sum of squares of each output."""
    cdef Py_ssize_t n = len(outs), k
    if adds is not None and len(adds) != n:
        raise ValueError("adds must have one array per out")
    cdef double *psq = NULL
    _cp.check_sqnorms_out(sqnorms, n)
    if sqnorms is not None:
        psq = <double *>cnp.PyArray_DATA(<cnp.ndarray>sqnorms)
    if n == 0:
        if counter & 1:
            raise_rc(fc_gaussian_f64(NULL, NULL, 0, seed, counter, std, scale))
        return
    cdef int t = -1
    cdef cnp.ndarray o, a
    for k in range(n):
        o = <cnp.ndarray>outs[k]
        if not (cnp.PyArray_Check(o) and cnp.PyArray_IS_C_CONTIGUOUS(o)
                and cnp.PyArray_ISWRITEABLE(o)):
            raise ValueError("outs must be writeable C-contiguous arrays")
        if t < 0:
            t = cnp.PyArray_TYPE(o)
            if t != cnp.NPY_FLOAT and t != cnp.NPY_DOUBLE:
                raise TypeError("outs must have dtype float32 or float64")
        elif cnp.PyArray_TYPE(o) != t:
            raise TypeError("outs must all have one dtype")
        if adds is not None and adds[k] is not None:
            a = <cnp.ndarray>adds[k]
            if (not cnp.PyArray_Check(a) or cnp.PyArray_TYPE(a) != t
                    or not cnp.PyArray_IS_C_CONTIGUOUS(a)
                    or cnp.PyArray_SIZE(a) != cnp.PyArray_SIZE(o)):
                raise ValueError("adds must be C-contiguous arrays of the outs' dtype and sizes")
    cdef void **po = <void **>malloc(n * sizeof(void *))
    cdef const void **pa = <const void **>malloc(n * sizeof(void *))
    cdef int64_t *sizes = <int64_t *>malloc(n * sizeof(int64_t))
    if po == NULL or pa == NULL or sizes == NULL:
        free(po)
        free(pa)
        free(sizes)
        raise MemoryError()
    for k in range(n):
        o = <cnp.ndarray>outs[k]
        po[k] = cnp.PyArray_DATA(o)
        sizes[k] = cnp.PyArray_SIZE(o)
        pa[k] = NULL
        if adds is not None and adds[k] is not None:
            pa[k] = cnp.PyArray_DATA(<cnp.ndarray>adds[k])
    cdef int rc
    cdef int f32 = t == cnp.NPY_FLOAT
    with nogil:
        rc = fc_gaussian_arrays(<void *const *>po, <const void *const *>pa, sizes, n, f32,
                                seed, counter, std, scale, psq)
    free(po)
    free(pa)
    free(sizes)
    raise_rc(rc)
