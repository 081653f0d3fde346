# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""C binding of the fused optimiser step (csrc/optim.c).

``fused_step`` validates its arguments with the checks and messages of
fastclip._checks.optim (shared with fastclip.reference.optim, so both
implementations raise the same exceptions), prepares dense descriptors (a gradient whose memory order differs
from its parameter's, or a non-contiguous one, is copied; a non-contiguous
parameter is updated through a C-ordered copy written back afterwards), then
makes one C call for the whole parameter list with the GIL released.
Semantics: fastclip.reference.optim.fused_step.
"""
from libc.stdlib cimport malloc, free
from libc.stdint cimport int64_t, int32_t
cimport numpy as cnp

import numpy as np

from fastclip._checks import optim as _co
from fastclip._common cimport (fc_array, ArrayList, collect, fill, raise_rc, FC_OK,
                               FC_ENONFINITE, fc_extents_overlap)

cnp.import_array()

cdef extern from "optim.h" nogil:
    enum:
        FC_OPT_SGD
        FC_OPT_ADAM
        FC_OPT_RMSPROP
        FC_CLIP_NONE
        FC_CLIP_NORM
        FC_CLIP_VALUE
    ctypedef struct fc_optim_config:
        int32_t kind
        int32_t clip_mode
        double clip
        double lr
        int64_t step
        double weight_decay
        double momentum
        double dampening
        int32_t nesterov
        double beta1
        double beta2
        double eps
        int32_t amsgrad
        int32_t decoupled
        double alpha
        int32_t centered
    int fc_optim_nstate(const fc_optim_config *cfg)
    int fc_optim_step(const fc_optim_config *cfg, const fc_array *params, const fc_array *grads,
                      const fc_array *states, int64_t n, const double *sqnorms, double *norms,
                      double *total, int64_t *first_nonfinite)

__all__ = ["KINDS", "fused_step", "state_names"]

KINDS = _co.KINDS
state_names = _co.state_names

cdef dict _KIND = {"sgd": FC_OPT_SGD, "adam": FC_OPT_ADAM, "rmsprop": FC_OPT_RMSPROP}


cdef class _Scratch:
    """fc_array descriptors and doubles, freed with the object."""
    cdef fc_array *arrs
    cdef double *norms
    def __cinit__(self, Py_ssize_t narrs, Py_ssize_t nnorms):
        self.arrs = <fc_array *>malloc((narrs if narrs > 0 else 1) * sizeof(fc_array))
        self.norms = <double *>malloc((nnorms if nnorms > 0 else 1) * sizeof(double))
        if self.arrs == NULL or self.norms == NULL:
            raise MemoryError()
    def __dealloc__(self):
        free(self.arrs)
        free(self.norms)


cdef inline bint _same_shape(cnp.ndarray a, cnp.ndarray b):
    cdef int nd = cnp.PyArray_NDIM(a), k
    if nd != cnp.PyArray_NDIM(b):
        return False
    cdef cnp.npy_intp *da = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp *db = cnp.PyArray_DIMS(b)
    for k in range(nd):
        if da[k] != db[k]:
            return False
    return True


cdef inline bint _fortran_order(cnp.ndarray p):
    return cnp.PyArray_IS_F_CONTIGUOUS(p) and not cnp.PyArray_IS_C_CONTIGUOUS(p)


cdef inline bint _in_order(cnp.ndarray a, bint fortran):
    return cnp.PyArray_IS_F_CONTIGUOUS(a) if fortran else cnp.PyArray_IS_C_CONTIGUOUS(a)


def fused_step(kind, params, grads, states, *, lr, step, weight_decay=0.0, momentum=0.0,
               dampening=0.0, nesterov=False, beta1=0.9, beta2=0.999, eps=1e-8,
               amsgrad=False, decoupled=False, alpha=0.99, centered=False, clip_norm=None,
               clip_value=None, sqnorms=None):
    kind = _co.check_kind(kind)
    if cnp.PyArray_Check(params):
        raise TypeError(_co.single_msg("params"))
    cdef ArrayList pal = collect(params, "params", True)
    if cnp.PyArray_Check(grads):
        raise TypeError(_co.single_msg("grads"))
    cdef ArrayList gal = collect(grads, "grads", False)
    cdef Py_ssize_t n = pal.n, i, j
    if gal.n != n:
        raise ValueError(_co.len_msg(gal.n, n))
    cdef cnp.ndarray p, g, s
    cdef list parr = pal.arrays, garr = gal.arrays
    for i in range(n):
        p = <cnp.ndarray>parr[i]
        g = <cnp.ndarray>garr[i]
        if cnp.PyArray_TYPE(g) != cnp.PyArray_TYPE(p):
            raise TypeError(_co.dtype_msg(i, (<object>g).dtype, (<object>p).dtype))
        if not _same_shape(g, p):
            raise ValueError(_co.shape_msg(i, (<object>g).shape, (<object>p).shape))

    cdef fc_optim_config cfg
    cfg.kind = _KIND[kind]
    cfg.weight_decay = float(weight_decay)
    cfg.momentum = float(momentum)
    cfg.dampening = float(dampening)
    cfg.nesterov = 1 if nesterov else 0
    cfg.beta1 = float(beta1)
    cfg.beta2 = float(beta2)
    cfg.eps = float(eps)
    cfg.amsgrad = 1 if amsgrad else 0
    cfg.decoupled = 1 if decoupled else 0
    cfg.alpha = float(alpha)
    cfg.centered = 1 if centered else 0
    cdef int nstate = fc_optim_nstate(&cfg)

    cdef _Scratch sc = _Scratch(n * (2 + nstate), n)
    cdef fc_array *pa = sc.arrs
    cdef fc_array *ga = sc.arrs + n
    cdef fc_array *sa = sc.arrs + 2 * n
    # gradients sharing memory with parameters (extents first, exact check if needed)
    if n > 0:
        for i in range(n):
            pa[i] = pal.arrs[i]
            ga[i] = gal.arrs[i]
        if fc_extents_overlap(pa, 2 * n):
            _co.check_grads_disjoint(parr, garr)

    # the state arrays (owned by the optimiser): checked quickly, reported by _ref
    cdef bint bad = not isinstance(states, list) or len(<list>states) != n
    cdef object st
    cdef bint fortran
    if not bad:
        for i in range(n):
            st = (<list>states)[i]
            if not isinstance(st, tuple) or len(<tuple>st) != nstate:
                bad = True
                break
            p = <cnp.ndarray>parr[i]
            fortran = _fortran_order(p)
            for j in range(nstate):
                s_obj = (<tuple>st)[j]
                if not cnp.PyArray_Check(s_obj):
                    bad = True
                    break
                s = <cnp.ndarray>s_obj
                if (cnp.PyArray_TYPE(s) != cnp.PyArray_TYPE(p) or not _same_shape(s, p)
                        or not cnp.PyArray_ISWRITEABLE(s) or not _in_order(s, fortran)):
                    bad = True
                    break
            if bad:
                break
    if bad:
        _co.check_states(states, parr, nstate)
        raise ValueError(_co.states_msg("must be a list of tuples of arrays"))

    cdef cnp.ndarray sq = None
    cdef double *sqd
    cdef bint fast = False
    if sqnorms is not None:
        # fast path: a float64 vector of the right length with no negative value
        if (cnp.PyArray_Check(sqnorms) and cnp.PyArray_TYPE(<cnp.ndarray>sqnorms) == cnp.NPY_DOUBLE
                and cnp.PyArray_NDIM(<cnp.ndarray>sqnorms) == 1
                and cnp.PyArray_DIMS(<cnp.ndarray>sqnorms)[0] == n
                and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>sqnorms)
                and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>sqnorms)):
            sq = <cnp.ndarray>sqnorms
            sqd = <double *>cnp.PyArray_DATA(sq)
            fast = True
            for i in range(n):
                if sqd[i] < 0:
                    fast = False
                    break
        if not fast:
            sq = _co.check_sqnorms(sqnorms, n)
    if (clip_value is None and (clip_norm is None or (type(clip_norm) is float
                                                      and <double>clip_norm >= 0))):
        cn, cv = clip_norm, None
    else:
        cn, cv = _co.check_clip(clip_norm, clip_value)
    if type(step) is int and step >= 1:
        cfg.step = step
    else:
        cfg.step = _co.check_step(step)
    cfg.lr = float(lr)
    if cn is not None:
        cfg.clip_mode = FC_CLIP_NORM
        cfg.clip = cn
    elif cv is not None:
        cfg.clip_mode = FC_CLIP_VALUE
        cfg.clip = cv
    else:
        cfg.clip_mode = FC_CLIP_NONE
        cfg.clip = 0.0

    # dense descriptors in each parameter's order
    cdef list keep = []
    cdef list writeback = None
    for i in range(n):
        p = <cnp.ndarray>parr[i]
        g = <cnp.ndarray>garr[i]
        fortran = _fortran_order(p)
        if pa[i].ndim != 0:
            work = np.ascontiguousarray(p)
            keep.append(work)
            if writeback is None:
                writeback = []
            writeback.append((p, work))
            fill(&pa[i], work)
        if not _in_order(g, fortran):
            g2 = np.asfortranarray(g) if fortran else np.ascontiguousarray(g)
            keep.append(g2)
            fill(&ga[i], g2)
        st = (<list>states)[i]
        for j in range(nstate):
            fill(&sa[i * nstate + j], (<tuple>st)[j])

    cdef const double *sqp = NULL
    if sq is not None:
        sqp = <const double *>cnp.PyArray_DATA(sq)
    cdef double total = 0.0
    cdef int64_t first = -1
    cdef int rc
    with nogil:
        rc = fc_optim_step(&cfg, pa, ga, sa, n, sqp, sc.norms, &total, &first)
    if rc == FC_ENONFINITE:
        return total, <Py_ssize_t>first
    raise_rc(rc)
    if writeback is not None:
        for p_obj, work in writeback:
            np.copyto(p_obj, work)
    return total, -1
