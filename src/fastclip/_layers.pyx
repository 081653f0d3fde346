# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""C bindings of the batch-norm, dropout and activation kernels (csrc/layers.c).

Same functions, signatures and exceptions as fastclip.reference.layers (see
its docstring for the kernel contract); the public API is the layer classes
of fastclip.nn.
"""
from libc.stdint cimport int64_t, uint8_t, INT64_MAX
cimport numpy as cnp

import numpy as np

from fastclip._common cimport raise_rc, FC_OK, check_buf as _check_buf, require_array, row_stride

cnp.import_array()

__all__ = [
    "act_backward",
    "act_forward",
    "bn_backward",
    "bn_forward",
    "dropout",
]

cdef extern from "layers.h" nogil:
    int fc_bn_train_forward_f32(const float *x, int64_t ldx, int64_t n, int64_t m,
                                const float *w, const float *b, double eps, double f,
                                float *running_mean, float *running_var, float *invstd,
                                float *xhat, float *y)
    int fc_bn_train_forward_f64(const double *x, int64_t ldx, int64_t n, int64_t m,
                                const double *w, const double *b, double eps, double f,
                                double *running_mean, double *running_var, double *invstd,
                                double *xhat, double *y)
    int fc_bn_eval_forward_f32(const float *x, int64_t ldx, int64_t n, int64_t m,
                               const float *w, const float *b, double eps,
                               const float *running_mean, const float *running_var,
                               float *invstd, float *xhat, float *y)
    int fc_bn_eval_forward_f64(const double *x, int64_t ldx, int64_t n, int64_t m,
                               const double *w, const double *b, double eps,
                               const double *running_mean, const double *running_var,
                               double *invstd, double *xhat, double *y)
    int fc_bn_backward_f32(const float *dy, int64_t lddy, const float *xhat, int64_t n,
                           int64_t m, const float *w, const float *invstd, int train, float *dx,
                           float *dw, float *db, double *dw_sq, double *db_sq)
    int fc_bn_backward_f64(const double *dy, int64_t lddy, const double *xhat, int64_t n,
                           int64_t m, const double *w, const double *invstd, int train,
                           double *dx, double *dw, double *db, double *dw_sq, double *db_sq)
    int fc_dropout_f32(const float *x, int64_t ldx, int64_t n, int64_t m, const uint8_t *mask,
                       float scale, float *y)
    int fc_dropout_f64(const double *x, int64_t ldx, int64_t n, int64_t m, const uint8_t *mask,
                       double scale, double *y)
    int fc_act_forward_f32(const float *x, int64_t ldx, int64_t n, int64_t m, int act,
                           float slope, float *y)
    int fc_act_forward_f64(const double *x, int64_t ldx, int64_t n, int64_t m, int act,
                           double slope, double *y)
    int fc_act_backward_f32(const float *dy, int64_t lddy, const float *x, int64_t ldx,
                            const float *y, int64_t n, int64_t m, int act, float slope,
                            float *dx, float *dslope, double *dslope_sq)
    int fc_act_backward_f64(const double *dy, int64_t lddy, const double *x, int64_t ldx,
                            const double *y, int64_t n, int64_t m, int act, double slope,
                            double *dx, double *dslope, double *dslope_sq)


# ---------------------------------------------------------------------------
# Argument checks (the messages of fastclip.reference.layers)
# ---------------------------------------------------------------------------
cdef int _float_typenum(object obj, str name) except -1:
    require_array(obj, name)
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>obj)
    if t != cnp.NPY_FLOAT and t != cnp.NPY_DOUBLE:
        raise TypeError(f"{name} must have dtype float32 or float64, got {obj.dtype}")
    return t


cdef int64_t _rows_ld(object obj, int typenum, int64_t n, int64_t width, str name) except -1:
    """Row stride (elements) of a 2-D (n, width) array with unit-stride rows
    (n < 0: any number of rows; width < 0: any width)."""
    require_array(obj, name)
    if cnp.PyArray_TYPE(<cnp.ndarray>obj) != typenum:
        raise TypeError(f"{name} has dtype {obj.dtype}, expected "
                        f"{np.dtype(np.float32 if typenum == cnp.NPY_FLOAT else np.float64)}")
    return row_stride(obj, n, width, INT64_MAX, name)


cdef void *_ptr(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef int _check_act(int act) except -1:
    if act < 0 or act > 5:
        raise ValueError(f"act must be one of 0..5, got {act!r}")
    return 0


# ---------------------------------------------------------------------------
# Batch norm
# ---------------------------------------------------------------------------
def bn_forward(x, weight, bias, running_mean, running_var, bint batch_stats, double eps,
               double factor, invstd, xhat, out):
    cdef int t = _float_typenum(x, "x")
    cdef int64_t ldx = _rows_ld(x, t, -1, -1, "x")
    cdef int64_t n = (<cnp.ndarray>x).shape[0], m = (<cnp.ndarray>x).shape[1]
    if (weight is None) != (bias is None):
        raise ValueError("weight and bias must both be given or both be None")
    if weight is not None:
        _check_buf(weight, t, m, -1, "weight")
        _check_buf(bias, t, m, -1, "bias")
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be given or both be None")
    if running_mean is not None:
        _check_buf(running_mean, t, m, -1, "running_mean")
        _check_buf(running_var, t, m, -1, "running_var")
    elif not batch_stats:
        raise ValueError("running_mean and running_var are needed without batch statistics")
    if batch_stats and n < 2:
        raise ValueError(f"x has {n} rows; batch statistics need at least 2 (one value per "
                         f"feature has no variance)")
    _check_buf(invstd, t, m, -1, "invstd")
    _check_buf(xhat, t, n, m, "xhat")
    _check_buf(out, t, n, m, "out")
    cdef const void *px = cnp.PyArray_DATA(<cnp.ndarray>x)
    cdef const void *pw = _ptr(weight)
    cdef const void *pb = _ptr(bias)
    cdef void *prm = _ptr(running_mean)
    cdef void *prv = _ptr(running_var)
    cdef void *pis = _ptr(invstd)
    cdef void *ph = _ptr(xhat)
    cdef void *py = _ptr(out)
    cdef int rc = FC_OK
    with nogil:
        if t == cnp.NPY_FLOAT:
            if batch_stats:
                rc = fc_bn_train_forward_f32(<const float *>px, ldx, n, m, <const float *>pw,
                                             <const float *>pb, eps, factor, <float *>prm,
                                             <float *>prv, <float *>pis, <float *>ph,
                                             <float *>py)
            else:
                rc = fc_bn_eval_forward_f32(<const float *>px, ldx, n, m, <const float *>pw,
                                            <const float *>pb, eps, <const float *>prm,
                                            <const float *>prv, <float *>pis, <float *>ph,
                                            <float *>py)
        else:
            if batch_stats:
                rc = fc_bn_train_forward_f64(<const double *>px, ldx, n, m, <const double *>pw,
                                             <const double *>pb, eps, factor, <double *>prm,
                                             <double *>prv, <double *>pis, <double *>ph,
                                             <double *>py)
            else:
                rc = fc_bn_eval_forward_f64(<const double *>px, ldx, n, m, <const double *>pw,
                                            <const double *>pb, eps, <const double *>prm,
                                            <const double *>prv, <double *>pis, <double *>ph,
                                            <double *>py)
    raise_rc(rc)
    return None


def bn_backward(dy, xhat, weight, invstd, bint batch_stats, dx, dweight, dbias, sqnorms):
    cdef int t = _float_typenum(dy, "dy")
    cdef int64_t lddy = _rows_ld(dy, t, -1, -1, "dy")
    cdef int64_t n = (<cnp.ndarray>dy).shape[0], m = (<cnp.ndarray>dy).shape[1]
    _check_buf(xhat, t, n, m, "xhat")
    if weight is not None:
        _check_buf(weight, t, m, -1, "weight")
    _check_buf(invstd, t, m, -1, "invstd")
    if dx is not None:
        _check_buf(dx, t, n, m, "dx")
    if (dweight is None) != (dbias is None):
        raise ValueError("dweight and dbias must both be given or both be None")
    if dweight is not None:
        _check_buf(dweight, t, m, -1, "dweight")
        _check_buf(dbias, t, m, -1, "dbias")
        _check_buf(sqnorms, cnp.NPY_DOUBLE, 2, -1, "sqnorms")
    cdef const void *pdy = cnp.PyArray_DATA(<cnp.ndarray>dy)
    cdef const void *ph = cnp.PyArray_DATA(<cnp.ndarray>xhat)
    cdef const void *pw = _ptr(weight)
    cdef const void *pis = cnp.PyArray_DATA(<cnp.ndarray>invstd)
    cdef void *pdx = _ptr(dx)
    cdef void *pdw = _ptr(dweight)
    cdef void *pdb = _ptr(dbias)
    cdef double qw = 0.0, qb = 0.0
    cdef int rc = FC_OK
    with nogil:
        if t == cnp.NPY_FLOAT:
            rc = fc_bn_backward_f32(<const float *>pdy, lddy, <const float *>ph, n, m,
                                    <const float *>pw, <const float *>pis, batch_stats,
                                    <float *>pdx, <float *>pdw, <float *>pdb, &qw, &qb)
        else:
            rc = fc_bn_backward_f64(<const double *>pdy, lddy, <const double *>ph, n, m,
                                    <const double *>pw, <const double *>pis, batch_stats,
                                    <double *>pdx, <double *>pdw, <double *>pdb, &qw, &qb)
    raise_rc(rc)
    if dweight is not None:
        sqnorms[0] = qw
        sqnorms[1] = qb
    return None


# ---------------------------------------------------------------------------
# Dropout and activations
# ---------------------------------------------------------------------------
def dropout(x, mask, double scale, out):
    cdef int t = _float_typenum(x, "x")
    cdef int64_t ldx = _rows_ld(x, t, -1, -1, "x")
    cdef int64_t n = (<cnp.ndarray>x).shape[0], m = (<cnp.ndarray>x).shape[1]
    if not cnp.PyArray_Check(mask):
        raise TypeError(f"mask must be a numpy.ndarray, got {type(mask).__name__}")
    cdef cnp.ndarray mk = <cnp.ndarray>mask
    if cnp.PyArray_TYPE(mk) != cnp.NPY_BOOL and cnp.PyArray_TYPE(mk) != cnp.NPY_UINT8:
        raise TypeError(f"mask must have dtype bool or uint8, got {mask.dtype}")
    if cnp.PyArray_NDIM(mk) != 2 or mk.shape[0] != n or mk.shape[1] != m \
            or not cnp.PyArray_IS_C_CONTIGUOUS(mk):
        raise ValueError(f"mask has shape {mask.shape}, expected ({n}, {m}) and C-contiguous")
    _check_buf(out, t, n, m, "out")
    cdef const void *px = cnp.PyArray_DATA(<cnp.ndarray>x)
    cdef const uint8_t *pm = <const uint8_t *>cnp.PyArray_DATA(mk)
    cdef void *py = cnp.PyArray_DATA(<cnp.ndarray>out)
    cdef int rc = FC_OK
    with nogil:
        if t == cnp.NPY_FLOAT:
            rc = fc_dropout_f32(<const float *>px, ldx, n, m, pm, <float>scale, <float *>py)
        else:
            rc = fc_dropout_f64(<const double *>px, ldx, n, m, pm, scale, <double *>py)
    raise_rc(rc)
    return None


def act_forward(x, int act, double slope, out):
    _check_act(act)
    cdef int t = _float_typenum(x, "x")
    cdef int64_t ldx = _rows_ld(x, t, -1, -1, "x")
    cdef int64_t n = (<cnp.ndarray>x).shape[0], m = (<cnp.ndarray>x).shape[1]
    _check_buf(out, t, n, m, "out")
    cdef const void *px = cnp.PyArray_DATA(<cnp.ndarray>x)
    cdef void *py = cnp.PyArray_DATA(<cnp.ndarray>out)
    cdef int rc = FC_OK
    with nogil:
        if t == cnp.NPY_FLOAT:
            rc = fc_act_forward_f32(<const float *>px, ldx, n, m, act, <float>slope, <float *>py)
        else:
            rc = fc_act_forward_f64(<const double *>px, ldx, n, m, act, slope, <double *>py)
    raise_rc(rc)
    return None


def act_backward(dy, x, out, int act, double slope, dx, dslope, sqnorms):
    _check_act(act)
    cdef int t = _float_typenum(dy, "dy")
    cdef int64_t lddy = _rows_ld(dy, t, -1, -1, "dy")
    cdef int64_t n = (<cnp.ndarray>dy).shape[0], m = (<cnp.ndarray>dy).shape[1]
    cdef int64_t ldx = _rows_ld(x, t, n, m, "x")
    _check_buf(out, t, n, m, "out")
    _check_buf(dx, t, n, m, "dx")
    if act == 3:
        _check_buf(dslope, t, 1, -1, "dslope")
        _check_buf(sqnorms, cnp.NPY_DOUBLE, 1, -1, "sqnorms")
    cdef const void *pdy = cnp.PyArray_DATA(<cnp.ndarray>dy)
    cdef const void *px = cnp.PyArray_DATA(<cnp.ndarray>x)
    cdef const void *py = cnp.PyArray_DATA(<cnp.ndarray>out)
    cdef void *pdx = cnp.PyArray_DATA(<cnp.ndarray>dx)
    cdef void *pds = _ptr(dslope) if act == 3 else NULL
    cdef double q = 0.0
    cdef int rc = FC_OK
    with nogil:
        if t == cnp.NPY_FLOAT:
            rc = fc_act_backward_f32(<const float *>pdy, lddy, <const float *>px, ldx,
                                     <const float *>py, n, m, act, <float>slope, <float *>pdx,
                                     <float *>pds, &q)
        else:
            rc = fc_act_backward_f64(<const double *>pdy, lddy, <const double *>px, ldx,
                                     <const double *>py, n, m, act, slope, <double *>pdx,
                                     <double *>pds, &q)
    raise_rc(rc)
    if act == 3:
        sqnorms[0] = q
    return None
