# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""C bindings of the MLP kernels (csrc/nn.c) and BLAS GEMMs.

The GEMMs are called without the GIL through function pointers to the
Fortran ``sgemm``/``dgemm`` of the ``scipy-openblas32`` library, which
fastclip._blas loads when this module is imported (nothing is linked at build
time; the module does not import without them). BLAS is
column-major: a row-major ``C = A @ B`` is computed as the column-major
``C^T = B^T A^T``, so no array is ever transposed or copied. The elementwise
passes around the GEMMs (bias + activation, activation derivative + bias
gradient + sums of squares) are the C kernels of csrc/nn.c.

Same functions, signatures and exceptions as fastclip.reference.nn (see its
docstring for the kernel contract); the public API is fastclip.nn.
"""
from libc.stdint cimport int64_t
from libc.string cimport memset
cimport numpy as cnp

import numpy as np

from fastclip._common cimport fc_serial_only, raise_rc, FC_OK, check_buf as _check_buf, require_array, row_stride
from fastclip._checks.nn import (ACTIVATIONS, check_loss_pred_target, check_sample_weight,
                                 check_xent_args)

cnp.import_array()

__all__ = [
    "ACTIVATIONS",
    "check_loss_pred_target",
    "check_xent_args",
    "dense_backward",
    "dense_forward",
    "mse",
    "softmax_cross_entropy",
]

cdef extern from "nn.h" nogil:
    int fc_nn_bias_act_f32(float *z, int64_t ldz, float *y, int64_t ldy, int64_t n, int64_t m,
                           const float *b, int act, float slope)
    int fc_nn_bias_act_f64(double *z, int64_t ldz, double *y, int64_t ldy, int64_t n, int64_t m,
                           const double *b, int act, double slope)
    int fc_nn_act_backward_f32(const float *dy, int64_t lddy, const float *ref, int64_t ldr,
                               float *dz, int64_t lddz, int64_t n, int64_t m, int act, float slope,
                               float *db, double *db_sq, float *dslope, double *dslope_sq)
    int fc_nn_act_backward_f64(const double *dy, int64_t lddy, const double *ref, int64_t ldr,
                               double *dz, int64_t lddz, int64_t n, int64_t m, int act,
                               double slope, double *db, double *db_sq, double *dslope,
                               double *dslope_sq)
    double fc_nn_sumsq_f32(const float *x, int64_t n)
    double fc_nn_sumsq_f64(const double *x, int64_t n)
    int fc_nn_softmax_xent_f32(const float *x, int64_t ldx, int64_t n, int64_t c,
                               const int64_t *labels, const float *t, int64_t ldt,
                               const double *w, double w_sum, float *g, double *loss)
    int fc_nn_softmax_xent_f64(const double *x, int64_t ldx, int64_t n, int64_t c,
                               const int64_t *labels, const double *t, int64_t ldt,
                               const double *w, double w_sum, double *g, double *loss)
    int fc_nn_mse_f32(const float *p, const float *t, float *g, int64_t size, const double *w,
                      int64_t rows, double w_sum, double *loss)
    int fc_nn_mse_f64(const double *p, const double *t, double *g, int64_t size,
                      const double *w, int64_t rows, double w_sum, double *loss)

DEF INT_MAX = 2147483647


# ---------------------------------------------------------------------------
# Row-major GEMMs on column-major BLAS
# ---------------------------------------------------------------------------
# The Fortran BLAS interface (every argument by pointer). The pointers are set
# once, by fastclip._blas at the end of this module's import, before any GEMM
# can run; a failure there fails the import.
ctypedef void (*sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k, float *alpha,
                          float *a, int *lda, float *b, int *ldb, float *beta, float *c,
                          int *ldc) noexcept nogil
ctypedef void (*dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k, double *alpha,
                          double *a, int *lda, double *b, int *ldb, double *beta, double *c,
                          int *ldc) noexcept nogil
ctypedef int (*threads_local_fn)(int nt) noexcept nogil
cdef sgemm_fn _sgemm = NULL
cdef dgemm_fn _dgemm = NULL
# MKL's MKL_Set_Num_Threads_Local when the GEMMs run in MKL (else NULL): called
# with 1 before each GEMM in a forked child, whose OpenMP threads are gone.
cdef threads_local_fn _fork_guard = NULL
_gemm_library = ""


def _set_gemm(size_t sgemm_address, size_t dgemm_address, str description):
    """Use the sgemm/dgemm at these addresses. Not public: fastclip._blas calls
    it once, at import, before any GEMM runs."""
    global _sgemm, _dgemm, _gemm_library
    if sgemm_address == 0 or dgemm_address == 0:
        raise ValueError("sgemm_address and dgemm_address must be non-zero")
    _sgemm = <sgemm_fn><void *>sgemm_address
    _dgemm = <dgemm_fn><void *>dgemm_address
    _gemm_library = description


def _set_fork_guard(size_t address):
    """The function that keeps the BLAS on one thread in a forked child (0: none
    needed). Not public: set once, at import, from fastclip._blas.fork_guard()."""
    global _fork_guard
    _fork_guard = <threads_local_fn><void *>address


def gemm_library():
    """The BLAS library the GEMMs call (for show_config)."""
    return _gemm_library


cdef inline void _gemm(bint f32, char ta, char tb, int m, int n, int k, const void *a, int lda,
                       const void *b, int ldb, void *c, int ldc) noexcept nogil:
    """Column-major C(m, n) = op(A) op(B) (alpha 1, beta 0)."""
    cdef float one_f = 1.0, zero_f = 0.0
    cdef double one_d = 1.0, zero_d = 0.0
    if _fork_guard != NULL and fc_serial_only():
        _fork_guard(1)
    if f32:
        _sgemm(&ta, &tb, &m, &n, &k, &one_f, <float *>a, &lda, <float *>b, &ldb, &zero_f,
               <float *>c, &ldc)
    else:
        _dgemm(&ta, &tb, &m, &n, &k, &one_d, <double *>a, &lda, <double *>b, &ldb, &zero_d,
               <double *>c, &ldc)


# ---------------------------------------------------------------------------
# Argument checks (cheap: C-level attribute reads)
# ---------------------------------------------------------------------------
cdef int64_t _rows_ld(object obj, int typenum, int64_t n, int64_t width, str name) except -1:
    """Row stride (elements, a BLAS int) of a 2-D (n, width) array with unit-stride rows."""
    require_array(obj, name)
    if cnp.PyArray_TYPE(<cnp.ndarray>obj) != typenum:
        raise TypeError(f"{name} must have dtype {np.dtype(np.float32 if typenum == cnp.NPY_FLOAT else np.float64)}, got {obj.dtype}")
    return row_stride(obj, n, width, INT_MAX, name)


cdef int _check_weight(object weight, object bias, int *typenum, int64_t *n_in,
                       int64_t *n_out) except -1:
    require_array(weight, "weight")
    cdef cnp.ndarray w = <cnp.ndarray>weight
    cdef int t = cnp.PyArray_TYPE(w)
    if t != cnp.NPY_FLOAT and t != cnp.NPY_DOUBLE:
        raise TypeError(f"weight must have dtype float32 or float64, got {weight.dtype}")
    if cnp.PyArray_NDIM(w) != 2:
        raise ValueError(f"weight must be 2-D (in, out), got shape {weight.shape}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(w) or not cnp.PyArray_ISALIGNED(w) \
            or not cnp.PyArray_ISNOTSWAPPED(w):
        raise ValueError("weight must be an aligned, C-contiguous native array")
    if w.shape[0] < 1 or w.shape[1] < 1 or w.shape[0] > INT_MAX or w.shape[1] > INT_MAX:
        raise ValueError(f"weight has shape {weight.shape}: sizes must be in [1, 2**31)")
    typenum[0] = t
    n_in[0] = w.shape[0]
    n_out[0] = w.shape[1]
    require_array(bias, "bias")
    cdef cnp.ndarray b = <cnp.ndarray>bias
    if cnp.PyArray_TYPE(b) != t:
        raise TypeError(f"bias has dtype {bias.dtype}, expected {weight.dtype}")
    if cnp.PyArray_NDIM(b) != 1 or b.shape[0] != w.shape[1] or not cnp.PyArray_IS_C_CONTIGUOUS(b):
        raise ValueError(f"bias has shape {bias.shape}, expected ({weight.shape[1]},) and contiguous")
    return 0


cdef double _slope(int act, object slope, double negative_slope, int typenum) except? -1.0:
    if act < 0 or act > 5:
        raise ValueError(f"act must be one of 0..5, got {act!r}")
    if act != 3:
        return negative_slope
    if slope is None:
        raise ValueError("slope must be given for prelu")
    _check_buf(slope, typenum, 1, -1, "slope")
    return float(slope[0])


# ---------------------------------------------------------------------------
# Layer kernels
# ---------------------------------------------------------------------------
def dense_forward(x, weight, bias, slope, int act, double negative_slope, pre, out):
    cdef int t
    cdef int64_t n_in, n_out, n, ldx
    _check_weight(weight, bias, &t, &n_in, &n_out)
    cdef double s = _slope(act, slope, negative_slope, t)
    ldx = _rows_ld(x, t, -1, n_in, "x")
    n = (<cnp.ndarray>x).shape[0]
    if n > INT_MAX:
        raise ValueError(f"x has {n} rows; at most 2**31 - 1 are supported")
    _check_buf(out, t, n, n_out, "out")
    if pre is not None:
        _check_buf(pre, t, n, n_out, "pre")
    cdef bint f32 = t == cnp.NPY_FLOAT
    cdef void *px = cnp.PyArray_DATA(<cnp.ndarray>x)
    cdef void *pw = cnp.PyArray_DATA(<cnp.ndarray>weight)
    cdef void *pb = cnp.PyArray_DATA(<cnp.ndarray>bias)
    cdef void *py = cnp.PyArray_DATA(<cnp.ndarray>out)
    cdef void *pz = py if pre is None else cnp.PyArray_DATA(<cnp.ndarray>pre)
    cdef int rc = FC_OK
    if n == 0:
        return None
    with nogil:
        # z^T (out, n) = W^T (out, in) x^T (in, n), all column-major views
        _gemm(f32, b'N', b'N', <int>n_out, <int>n, <int>n_in, pw, <int>n_out, px, <int>ldx,
              pz, <int>n_out)
        if f32:
            rc = fc_nn_bias_act_f32(<float *>pz, n_out, <float *>py, n_out, n, n_out,
                                    <const float *>pb, act, <float>s)
        else:
            rc = fc_nn_bias_act_f64(<double *>pz, n_out, <double *>py, n_out, n, n_out,
                                    <const double *>pb, act, s)
    raise_rc(rc)
    return None


def dense_backward(dy, x, weight, slope, int act, double negative_slope, pre, out, dz, dx,
                   dweight, dbias, dslope, sqnorms):
    cdef int t
    cdef int64_t n_in, n_out, n, ldx, lddy, lddz
    _check_weight(weight, dbias, &t, &n_in, &n_out)
    cdef double s = _slope(act, slope, negative_slope, t)
    lddy = _rows_ld(dy, t, -1, n_out, "dy")
    n = (<cnp.ndarray>dy).shape[0]
    if n > INT_MAX:
        raise ValueError(f"dy has {n} rows; at most 2**31 - 1 are supported")
    ldx = _rows_ld(x, t, n, n_in, "x")
    ref = out if pre is None else pre
    _rows_ld(ref, t, n, n_out, "pre" if pre is not None else "out")
    if dweight is not None:
        _check_buf(dweight, t, n_in, n_out, "dweight")
    _check_buf(dbias, t, n_out, -1, "dbias")
    if dz is not None:
        _check_buf(dz, t, n, n_out, "dz")
        lddz = n_out
    elif act != 0:
        raise ValueError("dz may be None only for the identity activation")
    else:
        lddz = lddy
    if dx is not None:
        _check_buf(dx, t, n, n_in, "dx")
    cdef int nsq = 3 if act == 3 else 2
    if act == 3:
        _check_buf(dslope, t, 1, -1, "dslope")
    _check_buf(sqnorms, cnp.NPY_DOUBLE, nsq, -1, "sqnorms")

    cdef bint f32 = t == cnp.NPY_FLOAT
    cdef const void *pdy = cnp.PyArray_DATA(<cnp.ndarray>dy)
    cdef const void *px = cnp.PyArray_DATA(<cnp.ndarray>x)
    cdef const void *pw = cnp.PyArray_DATA(<cnp.ndarray>weight)
    cdef const void *pref = cnp.PyArray_DATA(<cnp.ndarray>ref)
    cdef int64_t ldr = n_out if n <= 1 else (<cnp.ndarray>ref).strides[0] // (<cnp.ndarray>ref).itemsize
    cdef void *pdz = NULL if dz is None else cnp.PyArray_DATA(<cnp.ndarray>dz)
    cdef void *pdx = NULL if dx is None else cnp.PyArray_DATA(<cnp.ndarray>dx)
    cdef void *pdw = NULL if dweight is None else cnp.PyArray_DATA(<cnp.ndarray>dweight)
    cdef void *pdb = cnp.PyArray_DATA(<cnp.ndarray>dbias)
    cdef void *pds = NULL if act != 3 else cnp.PyArray_DATA(<cnp.ndarray>dslope)
    cdef double *sq = <double *>cnp.PyArray_DATA(<cnp.ndarray>sqnorms)
    cdef const void *g
    cdef int rc = FC_OK
    cdef double sq_b = 0.0, sq_s = 0.0, sq_w = 0.0
    with nogil:
        if f32:
            rc = fc_nn_act_backward_f32(<const float *>pdy, lddy, <const float *>pref, ldr,
                                        <float *>pdz, lddz, n, n_out, act, <float>s,
                                        <float *>pdb, &sq_b, <float *>pds, &sq_s)
        else:
            rc = fc_nn_act_backward_f64(<const double *>pdy, lddy, <const double *>pref, ldr,
                                        <double *>pdz, lddz, n, n_out, act, s,
                                        <double *>pdb, &sq_b, <double *>pds, &sq_s)
        if rc == FC_OK:
            g = pdy if pdz == NULL else pdz
            if pdw == NULL:
                sq_w = 0.0  # no weight gradient asked for (per-example clipping's first pass)
                if pdx != NULL and n > 0:
                    _gemm(f32, b'T', b'N', <int>n_in, <int>n, <int>n_out, pw, <int>n_out, g,
                          <int>lddz, pdx, <int>n_in)
            elif n == 0:
                memset(pdw, 0, <size_t>(n_in * n_out * (4 if f32 else 8)))
                sq_w = 0.0
            else:
                # dW^T (out, in) = dz^T (out, n) x (n, in)
                _gemm(f32, b'N', b'T', <int>n_out, <int>n_in, <int>n, g, <int>lddz, px,
                      <int>ldx, pdw, <int>n_out)
                if f32:
                    sq_w = fc_nn_sumsq_f32(<const float *>pdw, n_in * n_out)
                else:
                    sq_w = fc_nn_sumsq_f64(<const double *>pdw, n_in * n_out)
                if pdx != NULL:
                    # dx^T (in, n) = W (in, out) dz^T (out, n)
                    _gemm(f32, b'T', b'N', <int>n_in, <int>n, <int>n_out, pw, <int>n_out, g,
                          <int>lddz, pdx, <int>n_in)
    raise_rc(rc)
    sq[0] = sq_w
    sq[1] = sq_b
    if act == 3:
        sq[2] = sq_s
    return None


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------
def softmax_cross_entropy(logits, labels, sample_weight=None):
    x, lab, is_int = check_xent_args(logits, labels)
    cdef cnp.ndarray xa = <cnp.ndarray>x
    cdef int64_t n = xa.shape[0], c = xa.shape[1]
    cdef const double *pw = NULL
    cdef double w_sum = 0.0
    cdef cnp.ndarray wa
    if sample_weight is not None:
        wa, w_sum = check_sample_weight(sample_weight, n, "logits")
        pw = <const double *>cnp.PyArray_DATA(wa)
    cdef cnp.ndarray g = np.empty((n, c), dtype=xa.dtype)
    if n == 0:
        return float("nan"), g
    if c == 0:
        return float("nan"), g
    if pw != NULL and w_sum == 0.0:
        g.fill(0)  # weights of 0: no contribution, and no mean to take
        return float("nan"), g
    cdef int64_t ldx = c if n <= 1 else xa.strides[0] // xa.itemsize
    cdef cnp.ndarray la = <cnp.ndarray>lab
    cdef const int64_t *plab = <const int64_t *>cnp.PyArray_DATA(la) if is_int else NULL
    cdef const void *pt = NULL if is_int else cnp.PyArray_DATA(la)
    cdef const void *px = cnp.PyArray_DATA(xa)
    cdef void *pg = cnp.PyArray_DATA(g)
    cdef bint f32 = cnp.PyArray_TYPE(xa) == cnp.NPY_FLOAT
    cdef double loss = 0.0
    cdef int rc
    with nogil:
        if f32:
            rc = fc_nn_softmax_xent_f32(<const float *>px, ldx, n, c, plab, <const float *>pt,
                                        c, pw, w_sum, <float *>pg, &loss)
        else:
            rc = fc_nn_softmax_xent_f64(<const double *>px, ldx, n, c, plab, <const double *>pt,
                                        c, pw, w_sum, <double *>pg, &loss)
    raise_rc(rc)
    return loss, g


def mse(pred, target, sample_weight=None):
    p, t = check_loss_pred_target(pred, target, sample_weight is not None)
    cdef cnp.ndarray pa = <cnp.ndarray>p, ta = <cnp.ndarray>t
    cdef const double *pw = NULL
    cdef double w_sum = 0.0
    cdef int64_t rows = 0
    cdef cnp.ndarray wa
    if sample_weight is not None:
        wa, w_sum = check_sample_weight(sample_weight, pa.shape[0], "pred")
        pw = <const double *>cnp.PyArray_DATA(wa)
        rows = pa.shape[0]
    cdef cnp.ndarray g = np.empty(p.shape, dtype=p.dtype)
    cdef int64_t size = cnp.PyArray_SIZE(pa)
    if size == 0:
        return float("nan"), g
    if pw != NULL and w_sum == 0.0:
        g.fill(0)  # weights of 0: no contribution, and no mean to take
        return float("nan"), g
    cdef const void *pp = cnp.PyArray_DATA(pa)
    cdef const void *pt = cnp.PyArray_DATA(ta)
    cdef void *pg = cnp.PyArray_DATA(g)
    cdef bint f32 = cnp.PyArray_TYPE(pa) == cnp.NPY_FLOAT
    cdef double loss = 0.0
    cdef int rc
    with nogil:
        if f32:
            rc = fc_nn_mse_f32(<const float *>pp, <const float *>pt, <float *>pg, size, pw,
                               rows, w_sum, &loss)
        else:
            rc = fc_nn_mse_f64(<const double *>pp, <const double *>pt, <double *>pg, size, pw,
                               rows, w_sum, &loss)
    raise_rc(rc)
    return loss, g


from fastclip import _blas  # noqa: E402  (after _set_gemm exists)

_blas.install(_set_gemm)
_set_fork_guard(_blas.fork_guard())
from fastclip import _common  # noqa: E402

_common.set_openmp_regions(_blas.shares_openmp())
