# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""C bindings of the learning-rate schedules (csrc/schedules.c).

:class:`Schedule` owns an ``fc_schedule`` struct built once from the lowered
description of fastclip._checks.schedules; calling it with a Python int or float
goes straight to ``fc_schedule_eval`` (no allocation besides the result
float), an array goes through one ``fc_schedule_eval_array`` call with the GIL
released. Each call first checks that the compiled implementation is selected
(``fastclip.set_implementation``); otherwise it evaluates with
fastclip.reference.schedules (reached through fastclip._dispatch). Documentation
lives in fastclip.schedules.
"""
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from libc.stdint cimport int64_t, int32_t
from libc.math cimport INFINITY
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsDouble
cimport numpy as cnp

import sys

import numpy as np

from fastclip._checks import schedules as _s

cnp.import_array()

__all__ = ["PlateauState", "Schedule", "evaluate"]

cdef extern from "schedules.h" nogil:
    ctypedef struct fc_schedule:
        int32_t kind
        int32_t flags
        int32_t mode
        double p[8]
        int64_t n
        const double *bounds
        const double *values
        const fc_schedule *children
    double fc_schedule_eval(const fc_schedule *s, double step)
    int fc_schedule_eval_array(const fc_schedule *s, const void *steps, int32_t dtype,
                               int64_t n, int64_t stride, double *out)
    ctypedef struct fc_plateau:
        int32_t mode_max
        int32_t threshold_abs
        double factor, threshold, min_lr, eps
        int64_t patience, cooldown
        double lr, best
        int64_t num_bad_epochs, cooldown_counter, last_epoch
    double fc_plateau_step(fc_plateau *s, double metric)


cdef object _FAM = None
cdef object _SELF = None


cdef int _init_dispatch() except -1:
    global _FAM, _SELF
    from fastclip._dispatch import family
    _SELF = sys.modules["fastclip._schedules"]
    _FAM = family("schedules")
    return 0


cdef inline bint _compiled_selected() except -1:
    if _FAM is None:
        _init_dispatch()
    return _FAM.impl is _SELF


cdef double _int_step(object step) except? -1.0:
    try:
        return PyLong_AsDouble(step)
    except OverflowError:
        raise _s.huge_step_error(step) from None


cdef object _eval_steps(Schedule sch, object steps):
    """Array (or list) of steps -> float64 ndarray of the same shape."""
    arr = _s.steps_array(steps)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    code = _s.STEP_DTYPES.get(arr.dtype)
    if code is None:
        arr = arr.astype(np.float64)
        code = 0
    cdef int ndim = arr.ndim
    if ndim > 1 and not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        arr = np.ascontiguousarray(arr)
    cdef cnp.ndarray out
    cdef int64_t stride
    if ndim <= 1:
        out = np.empty(arr.shape, dtype=np.float64)
        stride = arr.strides[0] if ndim == 1 else 0
    elif arr.flags.c_contiguous:
        out = np.empty(arr.shape, dtype=np.float64)
        stride = arr.itemsize
    else:
        out = np.empty(arr.shape, dtype=np.float64, order="F")
        stride = arr.itemsize
    cdef int64_t n = arr.size
    cdef int32_t dt = code
    cdef const void *data = cnp.PyArray_DATA(<cnp.ndarray>arr)
    cdef double *o = <double *>cnp.PyArray_DATA(out)
    cdef int rc
    with nogil:
        rc = fc_schedule_eval_array(&sch.s, data, dt, n, stride, o)
    if rc == -1:  # FC_ENOMEM
        raise MemoryError("fastclip: out of memory evaluating a schedule")
    if rc != 0:
        raise _s.steps_error(arr)
    return out


cdef object _eval_c(Schedule sch, object step):
    """Any step (scalar or array) with the C kernels."""
    cdef double x
    if type(step) is float:
        x = PyFloat_AS_DOUBLE(step)
    elif type(step) is int:
        x = _int_step(step)
    elif _s.is_steps(step):
        return _eval_steps(sch, step)
    else:
        x = _s.scalar_step(step)
    if not (x >= 0.0 and x < INFINITY):
        raise _s.bad_step_error(x)
    return fc_schedule_eval(&sch.s, x)


cdef class Schedule:
    """A learning-rate schedule evaluated in C; see fastclip.schedules.Schedule."""

    cdef fc_schedule s
    cdef double *buf
    cdef fc_schedule *kids
    cdef readonly str kind
    cdef dict _params
    cdef readonly object _fc_lowered
    cdef tuple _children
    cdef object __weakref__

    def __cinit__(self, str kind, dict params, lowered):
        cdef Py_ssize_t i, n, nv, nk
        cdef Schedule child
        self.buf = NULL
        self.kids = NULL
        memset(&self.s, 0, sizeof(fc_schedule))
        self.kind = kind
        self._params = dict(params)
        self._fc_lowered = lowered
        self.s.kind = lowered.code
        self.s.flags = lowered.flags
        self.s.mode = lowered.mode
        for i in range(8):
            self.s.p[i] = lowered.p[i]
        n = len(lowered.bounds)
        nv = len(lowered.values)
        if n + nv > 0:
            self.buf = <double *>malloc((n + nv) * sizeof(double))
            if self.buf == NULL:
                raise MemoryError()
            for i in range(n):
                self.buf[i] = lowered.bounds[i]
            for i in range(nv):
                self.buf[n + i] = lowered.values[i]
        self.s.n = n
        self.s.bounds = self.buf
        self.s.values = self.buf + n if nv > 0 else NULL
        kids = []
        for c in lowered.children:
            if not isinstance(c, Schedule):
                c = Schedule(c.kind, c.params, c._fc_lowered)
            kids.append(c)
        self._children = tuple(kids)
        nk = len(kids)
        if nk > 0:
            self.kids = <fc_schedule *>malloc(nk * sizeof(fc_schedule))
            if self.kids == NULL:
                raise MemoryError()
            for i in range(nk):
                child = <Schedule>kids[i]
                memcpy(&self.kids[i], &child.s, sizeof(fc_schedule))
        self.s.children = self.kids

    def __dealloc__(self):
        free(self.buf)
        free(self.kids)

    def __call__(self, step):
        cdef double x
        if _FAM is None:
            _init_dispatch()
        if _FAM.impl is not _SELF:
            return _FAM.reference.evaluate(self._fc_lowered, step)
        if type(step) is float:
            x = PyFloat_AS_DOUBLE(step)
        elif type(step) is int:
            x = _int_step(step)
        else:
            return _eval_c(self, step)
        if not (x >= 0.0 and x < INFINITY):
            raise _s.bad_step_error(x)
        return fc_schedule_eval(&self.s, x)

    @property
    def _fc_schedule(self):
        return True

    @property
    def params(self):
        return dict(self._params)

    def __eq__(self, other):
        if not _s.is_schedule(other):
            return NotImplemented
        return _s.key(self.kind, self._params) == _s.key(other.kind, other.params)

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self):
        return hash(_s.key(self.kind, self._params))

    def __repr__(self):
        return _s.schedule_repr(self.kind, self._params)

    def __reduce__(self):
        from fastclip.schedules import _rebuild
        return (_rebuild, (self.kind, self._params))

    def to_dict(self):
        return _s.to_dict(self.kind, self._params)


def evaluate(lowered, step):
    """The schedule described by ``lowered`` at ``step``, always with the C kernels."""
    return _eval_c(Schedule("", {}, lowered), step)


cdef class PlateauState:
    """The state machine of PyTorch's ReduceLROnPlateau for one learning rate (C)."""

    cdef fc_plateau st

    def __cinit__(self, dict params):
        memset(&self.st, 0, sizeof(fc_plateau))
        self.st.mode_max = params["mode"] == "max"
        self.st.threshold_abs = params["threshold_mode"] == "abs"
        self.st.factor = params["factor"]
        self.st.threshold = params["threshold"]
        self.st.min_lr = params["min_lr"]
        self.st.eps = params["eps"]
        self.st.patience = params["patience"]
        self.st.cooldown = params["cooldown"]
        self.st.lr = params["init_value"]
        self.st.best = -INFINITY if self.st.mode_max else INFINITY

    def step(self, metric):
        cdef double m
        if type(metric) is float:
            m = PyFloat_AS_DOUBLE(metric)
        else:
            m = _s.metric_value(metric)
        return fc_plateau_step(&self.st, m)

    @property
    def lr(self):
        return self.st.lr

    def get_state(self):
        return {"lr": self.st.lr, "best": self.st.best,
                "num_bad_epochs": self.st.num_bad_epochs,
                "cooldown_counter": self.st.cooldown_counter,
                "last_epoch": self.st.last_epoch}

    def set_state(self, dict state):
        self.st.lr = state["lr"]
        self.st.best = state["best"]
        self.st.num_bad_epochs = state["num_bad_epochs"]
        self.st.cooldown_counter = state["cooldown_counter"]
        self.st.last_epoch = state["last_epoch"]
