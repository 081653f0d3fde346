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


cdef object _as_rows(object a):
    """``(view, strided)``: a (B, cols) view of ``a`` walkable with two strides,
    or a contiguous copy (``strided`` False) when its trailing axes do not merge."""
    cdef Py_ssize_t b = a.shape[0]
    cdef Py_ssize_t cols = 1
    cdef list dims = []
    for n, s in zip(a.shape[1:], a.strides[1:]):
        cols *= n
        if n != 1:
            dims.append((n, s))
    if cols == 0 or len(dims) <= 1:
        es = dims[0][1] if dims else a.itemsize
        return np.lib.stride_tricks.as_strided(a, (b, cols), (a.strides[0], es)), True
    for d in range(len(dims) - 1):
        if dims[d][1] != dims[d + 1][1] * dims[d + 1][0]:
            return np.ascontiguousarray(a).reshape(b, cols), False
    return np.lib.stride_tricks.as_strided(a, (b, cols), (a.strides[0], dims[len(dims) - 1][1])), True


cdef void _describe(fc_rows *dst, object r):
    cdef cnp.ndarray arr = <cnp.ndarray>r
    dst.data = <char *>cnp.PyArray_DATA(arr)
    dst.rows = cnp.PyArray_DIM(arr, 0)
    dst.cols = cnp.PyArray_DIM(arr, 1)
    dst.row_stride = cnp.PyArray_STRIDE(arr, 0)
    dst.col_stride = cnp.PyArray_STRIDE(arr, 1)
    dst.dtype = FC_FLOAT32 if cnp.PyArray_TYPE(arr) == cnp.NPY_FLOAT else FC_FLOAT64


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
        for k in range(self.n):
            a = arrays[k]
            r, strided = _as_rows(a)
            if not strided:
                self.copied.append((a, r))
            self.views.append(r)
            _describe(&self.desc[k], r)

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


def row_weighted_sum(list arrays, weights, bint inplace):
    cdef _Rows rows = _Rows(arrays)
    cdef cnp.ndarray w = np.ascontiguousarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != rows.n or (rows.n and w.shape[1] != arrays[0].shape[0]):
        raise ValueError("weights must have shape (len(arrays), batch)")
    outs = [np.empty(a.shape[1:], dtype=a.dtype) for a in arrays]
    cdef char **ps = <char **>malloc((rows.n if rows.n > 0 else 1) * sizeof(char *))
    if ps == NULL:
        raise MemoryError()
    cdef Py_ssize_t k
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
