# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""C binding of the fused optimiser step (csrc/optim.c).

:class:`StepPlan` validates an optimiser's parameters, state and hyper-parameters
once, with the checks and messages of fastclip._checks.optim (shared with
fastclip.reference.optim, so both implementations raise the same exceptions),
and keeps their descriptors; each :meth:`StepPlan.step` checks the gradients and
``sqnorms``, prepares dense descriptors for them (a gradient whose memory order
differs from its parameter's, or a non-contiguous one, is copied; a
non-contiguous parameter is updated through a C-ordered copy written back
afterwards), then makes one C call for the whole parameter list with the GIL
released. ``fused_step`` is a plan used for one step.
Semantics: fastclip.reference.optim.fused_step.
"""
from libc.stdlib cimport malloc, free
from libc.stdint cimport int64_t, int32_t
cimport numpy as cnp

import numpy as np

from fastclip._checks import arrays as _ca
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

__all__ = ["KINDS", "StepPlan", "fused_step", "state_names"]

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


cdef class StepPlan:
    """One optimiser's validated parameters, state and hyper-parameters.

    Built once (when the optimiser is created): the parameters are collected and
    checked (writeable float arrays not sharing memory), the state arrays
    checked against them and their descriptors kept, the hyper-parameters and
    the clipping written into the C config. :meth:`step` then checks only what
    changes from step to step: the gradients (count, dtype, shape, memory shared
    with a parameter), ``sqnorms``, ``lr`` and ``step``, and that every
    parameter is still writeable.
    """
    cdef fc_optim_config cfg
    cdef Py_ssize_t n
    cdef int nstate
    cdef _Scratch sc        # pa[n] (descriptors the kernel writes), ga[n], sa[n * nstate]
    cdef _Scratch chk       # the parameters' own descriptors, then the gradients' (overlap)
    cdef ArrayList pal
    cdef list params        # the validated parameter arrays
    cdef list work          # per parameter: None, or its C-ordered work copy
    cdef list states

    def __cinit__(self, kind, params, states, *, weight_decay=0.0, momentum=0.0,
                  dampening=0.0, nesterov=False, beta1=0.9, beta2=0.999, eps=1e-8,
                  amsgrad=False, decoupled=False, alpha=0.99, centered=False,
                  clip_norm=None, clip_value=None):
        kind = _co.check_kind(kind)
        if cnp.PyArray_Check(params):
            raise TypeError(_co.single_msg("params"))
        self.pal = collect(params, "params", True)
        cdef Py_ssize_t n = self.pal.n, i, j
        self.n = n
        self.params = self.pal.arrays
        self.cfg.kind = _KIND[kind]
        self.cfg.weight_decay = float(weight_decay)
        self.cfg.momentum = float(momentum)
        self.cfg.dampening = float(dampening)
        self.cfg.nesterov = 1 if nesterov else 0
        self.cfg.beta1 = float(beta1)
        self.cfg.beta2 = float(beta2)
        self.cfg.eps = float(eps)
        self.cfg.amsgrad = 1 if amsgrad else 0
        self.cfg.decoupled = 1 if decoupled else 0
        self.cfg.alpha = float(alpha)
        self.cfg.centered = 1 if centered else 0
        self.cfg.lr = 0.0
        self.cfg.step = 1
        cdef int nstate = fc_optim_nstate(&self.cfg)
        self.nstate = nstate

        # the state arrays: checked quickly, reported by _co
        cdef bint bad = not isinstance(states, list) or len(<list>states) != n
        cdef object st, s_obj
        cdef cnp.ndarray p, s
        cdef bint fortran
        if not bad:
            for i in range(n):
                st = (<list>states)[i]
                if not isinstance(st, tuple) or len(<tuple>st) != nstate:
                    bad = True
                    break
                p = <cnp.ndarray>self.params[i]
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
            _co.check_states(states, self.params, nstate)
            raise ValueError(_co.states_msg("must be a list of tuples of arrays"))
        self.states = list(states)

        cn, cv = _co.check_clip(clip_norm, clip_value)
        if cn is not None:
            self.cfg.clip_mode = FC_CLIP_NORM
            self.cfg.clip = cn
        elif cv is not None:
            self.cfg.clip_mode = FC_CLIP_VALUE
            self.cfg.clip = cv
        else:
            self.cfg.clip_mode = FC_CLIP_NONE
            self.cfg.clip = 0.0

        self.sc = _Scratch(n * (2 + nstate), n)
        self.chk = _Scratch(2 * n, 0)
        cdef fc_array *pa = self.sc.arrs
        cdef fc_array *sa = self.sc.arrs + 2 * n
        self.work = []
        for i in range(n):
            self.chk.arrs[i] = self.pal.arrs[i]
            p = <cnp.ndarray>self.params[i]
            if self.pal.arrs[i].ndim != 0:
                # a non-contiguous parameter is updated through a C-ordered copy
                w = np.ascontiguousarray(p)
                self.work.append(w)
                fill(&pa[i], w)
            else:
                self.work.append(None)
                pa[i] = self.pal.arrs[i]
            st = self.states[i]
            for j in range(nstate):
                fill(&sa[i * nstate + j], (<tuple>st)[j])

    def step(self, grads, *, lr, step, sqnorms=None):
        """One update with these gradients; ``(norm, first_nonfinite)`` as
        :func:`fused_step`."""
        if cnp.PyArray_Check(grads):
            raise TypeError(_co.single_msg("grads"))
        cdef ArrayList gal = collect(grads, "grads", False)
        cdef Py_ssize_t n = self.n, i
        if gal.n != n:
            raise ValueError(_co.len_msg(gal.n, n))
        cdef cnp.ndarray p, g
        cdef list parr = self.params, garr = gal.arrays
        for i in range(n):
            p = <cnp.ndarray>parr[i]
            g = <cnp.ndarray>garr[i]
            if cnp.PyArray_TYPE(g) != cnp.PyArray_TYPE(p):
                raise TypeError(_co.dtype_msg(i, (<object>g).dtype, (<object>p).dtype))
            if not _same_shape(g, p):
                raise ValueError(_co.shape_msg(i, (<object>g).shape, (<object>p).shape))
        for i in range(n):
            if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>parr[i]):
                raise ValueError(_ca.readonly_msg(_ca.label("params", i, False)))
        cdef fc_array *pa = self.sc.arrs
        cdef fc_array *ga = self.sc.arrs + n
        cdef fc_array *sa = self.sc.arrs + 2 * n
        # gradients sharing memory with parameters (extents first, exact check if needed)
        if n > 0:
            for i in range(n):
                self.chk.arrs[n + i] = gal.arrs[i]
            if fc_extents_overlap(self.chk.arrs, 2 * n):
                _co.check_grads_disjoint(parr, garr)

        cdef cnp.ndarray sq = None
        cdef double *sqd
        cdef bint fast = False
        if sqnorms is not None:
            # fast path: a float64 vector of the right length with no negative value
            if (cnp.PyArray_CheckExact(sqnorms)
                    and cnp.PyArray_TYPE(<cnp.ndarray>sqnorms) == cnp.NPY_DOUBLE
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
        cdef fc_optim_config cfg = self.cfg
        if type(step) is int and step >= 1:
            cfg.step = step
        else:
            cfg.step = _co.check_step(step)
        cfg.lr = float(lr)

        # gradients in each parameter's memory order
        cdef list keep = None
        cdef bint fortran
        for i in range(n):
            p = <cnp.ndarray>parr[i]
            g = <cnp.ndarray>garr[i]
            fortran = _fortran_order(p)
            if _in_order(g, fortran):
                ga[i] = gal.arrs[i]
            else:
                g2 = np.asfortranarray(g) if fortran else np.ascontiguousarray(g)
                if keep is None:
                    keep = []
                keep.append(g2)
                fill(&ga[i], g2)
        for i in range(n):
            w = self.work[i]
            if w is not None:
                np.copyto(w, parr[i])

        cdef const double *sqp = NULL
        if sq is not None:
            sqp = <const double *>cnp.PyArray_DATA(sq)
        cdef double total = 0.0
        cdef int64_t first = -1
        cdef int rc
        with nogil:
            rc = fc_optim_step(&cfg, pa, ga, sa, n, sqp, self.sc.norms, &total, &first)
        if rc == FC_ENONFINITE:
            return total, <Py_ssize_t>first
        raise_rc(rc)
        for i in range(n):
            w = self.work[i]
            if w is not None:
                np.copyto(parr[i], w)
        return total, -1


def fused_step(kind, params, grads, states, *, lr, step, weight_decay=0.0, momentum=0.0,
               dampening=0.0, nesterov=False, beta1=0.9, beta2=0.999, eps=1e-8,
               amsgrad=False, decoupled=False, alpha=0.99, centered=False, clip_norm=None,
               clip_value=None, sqnorms=None):
    plan = StepPlan(kind, params, states, weight_decay=weight_decay, momentum=momentum,
                    dampening=dampening, nesterov=nesterov, beta1=beta1, beta2=beta2, eps=eps,
                    amsgrad=amsgrad, decoupled=decoupled, alpha=alpha, centered=centered,
                    clip_norm=clip_norm, clip_value=clip_value)
    return plan.step(grads, lr=lr, step=step, sqnorms=sqnorms)
