# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Array collection and array checks shared by the bindings (not public)."""
from libc.stdlib cimport malloc, free
cimport numpy as cnp

import numpy as np

from fastclip._checks import arrays as _ca
from fastclip._checks import memory as _memory

cnp.import_array()

if sizeof(cnp.npy_intp) != 8:  # the kernels take 64-bit shapes and strides
    raise ImportError("fastclip's C kernels need a 64-bit platform")


cdef class ArrayList:
    def __cinit__(self):
        self.arrs = NULL
        self.n = 0
        self.single = False
        self.arrays = []

    def __dealloc__(self):
        if self.arrs != NULL:
            free(self.arrs)
            self.arrs = NULL

    def __len__(self):
        return self.n


cdef ArrayList _sized(list items):
    """An ArrayList holding items, with room for len(items) descriptors."""
    cdef ArrayList out = ArrayList.__new__(ArrayList)
    cdef Py_ssize_t n = len(items)
    out.n = n
    out.arrays = items
    if n > 0:
        out.arrs = <fc_array *>malloc(n * sizeof(fc_array))
        if out.arrs == NULL:
            raise MemoryError()
    return out


cdef int fill(fc_array *dst, object obj) except -1:
    cdef cnp.ndarray arr = <cnp.ndarray>obj
    dst.data = <char *>cnp.PyArray_DATA(arr)
    dst.size = cnp.PyArray_SIZE(arr)
    dst.dtype = FC_FLOAT32 if cnp.PyArray_TYPE(arr) == cnp.NPY_FLOAT else FC_FLOAT64
    if cnp.PyArray_IS_C_CONTIGUOUS(arr) or cnp.PyArray_IS_F_CONTIGUOUS(arr):
        dst.ndim = 0
        dst.shape = NULL
        dst.strides = NULL
    else:
        dst.ndim = cnp.PyArray_NDIM(arr)
        dst.shape = <const int64_t *>cnp.PyArray_DIMS(arr)
        dst.strides = <const int64_t *>cnp.PyArray_STRIDES(arr)
    return 0


cdef bint _distinct_elements(cnp.ndarray arr):
    """True when the strides prove that no two elements share a byte (every
    slice, transpose or reshape of an array); False when it must be decided
    exactly (_checks.memory.has_internal_overlap)."""
    cdef int nd = cnp.PyArray_NDIM(arr), i, j, k = 0
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(arr)
    cdef cnp.npy_intp *strides = cnp.PyArray_STRIDES(arr)
    cdef int64_t s[64]
    cdef int64_t n[64]
    cdef int64_t st, span
    for i in range(nd):
        if shape[i] > 1:
            st = strides[i] if strides[i] >= 0 else -strides[i]
            j = k
            while j > 0 and s[j - 1] > st:  # insertion sort by stride
                s[j] = s[j - 1]
                n[j] = n[j - 1]
                j -= 1
            s[j] = st
            n[j] = shape[i]
            k += 1
    span = cnp.PyArray_ITEMSIZE(arr)
    for i in range(k):
        if s[i] < span:
            return False
        span += (n[i] - 1) * s[i]
    return True


cdef ArrayList collect(object obj, str name, bint inplace):
    """Validate one ndarray or an iterable of them (every array before any is
    used) and describe them for the C kernels."""
    cdef ArrayList out
    cdef list items
    cdef bint single = False
    cdef Py_ssize_t i, n
    cdef int typenum
    cdef object item
    if cnp.PyArray_Check(obj):
        items = [obj]
        single = True
    elif type(obj) is list:
        items = <list>obj
    elif type(obj) is tuple:
        items = list(obj)
    else:
        items, single = _ca.as_sequence(obj, name)
    out = _sized(items)
    out.single = single
    n = out.n
    if n == 0:
        return out
    cdef bint copied = False, plain
    for i in range(n):
        item = items[i]
        if not cnp.PyArray_Check(item):
            raise TypeError(_ca.not_array_msg(_ca.label(name, i, out.single), item))
        plain = cnp.PyArray_CheckExact(item)
        if plain:
            typenum = cnp.PyArray_TYPE(<cnp.ndarray>item)
            if typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE:
                raise TypeError(_ca.bad_dtype_msg(_ca.label(name, i, out.single), item.dtype))
            plain = cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>item)
        if not plain:
            # A subclass (a plain view of its memory; TypeError for a masked array
            # or another dtype) or a non-native byte order (a native copy for
            # read-only use, TypeError in place): _checks.arrays decides.
            if not copied:
                items = list(items)
                out.arrays = items
                copied = True
            item = _ca.check_array(item, _ca.label(name, i, out.single), inplace)
            items[i] = item
        if inplace and not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>item):
            raise ValueError(_ca.readonly_msg(_ca.label(name, i, out.single)))
        fill(&out.arrs[i], item)
        if (inplace and out.arrs[i].ndim != 0 and not _distinct_elements(<cnp.ndarray>item)
                and _memory.has_internal_overlap(item)):
            raise ValueError(_memory.self_overlap_msg(_ca.label(name, i, out.single)))
    if inplace and n > 1 and fc_extents_overlap(out.arrs, n):
        # Extents overlap: decide exactly (interleaved views do not share).
        _ca.check_no_shared_memory(items, name)
    return out


cdef ArrayList describe_checked(list arrays):
    """Describe for the C kernels arrays that fastclip._checks.arrays.check_arrays
    returned (plain native float32/float64 ndarrays; writeable and not sharing
    memory when checked for in-place use): nothing is checked again."""
    cdef ArrayList out = _sized(arrays)
    cdef Py_ssize_t i
    for i in range(out.n):
        fill(&out.arrs[i], <cnp.ndarray?>arrays[i])
    return out


cdef int require_array(object obj, str name) except -1:
    if not cnp.PyArray_Check(obj):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(obj).__name__}")
    return 0


cdef int64_t row_stride(object obj, int64_t n, int64_t width, int64_t max_ld,
                        str name) except -1:
    """Row stride (elements, at most max_ld) of an ndarray of the right dtype
    that must be 2-D (n, width) with unit-stride rows (n < 0: any number of
    rows; width < 0: any width)."""
    cdef cnp.ndarray a = <cnp.ndarray>obj
    if cnp.PyArray_NDIM(a) != 2 or (n >= 0 and a.shape[0] != n) \
            or (width >= 0 and a.shape[1] != width):
        raise ValueError(f"{name} has shape {obj.shape}, expected "
                         f"({n if n >= 0 else 'N'}, {width if width >= 0 else 'M'})")
    if not cnp.PyArray_ISALIGNED(a) or not cnp.PyArray_ISNOTSWAPPED(a):
        raise ValueError(f"{name} must be aligned and in native byte order")
    cdef int64_t it = cnp.PyArray_ITEMSIZE(a)
    cdef int64_t rows = a.shape[0], m = a.shape[1]
    cdef int64_t s0 = cnp.PyArray_STRIDES(a)[0], s1 = cnp.PyArray_STRIDES(a)[1]
    if rows <= 1 or m == 0:
        if m > 1 and rows == 1 and s1 != it:
            raise ValueError(f"{name} must have unit-stride rows")
        return m if m > 0 else 1
    if m > 1 and s1 != it:
        raise ValueError(f"{name} must have unit-stride rows")
    if s0 % it != 0 or s0 // it < m or s0 // it > max_ld:
        raise ValueError(f"{name} must have unit-stride rows and a positive row stride")
    return s0 // it


cdef int check_buf(object obj, int typenum, int64_t n0, int64_t n1, str name) except -1:
    """A writeable C-contiguous (n0, n1) array (n1 < 0: 1-D of n0)."""
    require_array(obj, name)
    cdef cnp.ndarray a = <cnp.ndarray>obj
    if cnp.PyArray_TYPE(a) != typenum:
        raise TypeError(f"{name} has dtype {obj.dtype}, expected "
                        f"{np.dtype(np.float32 if typenum == cnp.NPY_FLOAT else np.float64)}")
    cdef bint ok
    if n1 < 0:
        ok = cnp.PyArray_NDIM(a) == 1 and a.shape[0] == n0
    else:
        ok = cnp.PyArray_NDIM(a) == 2 and a.shape[0] == n0 and a.shape[1] == n1
    if not ok:
        want = str((n0,)) if n1 < 0 else str((n0, n1))
        raise ValueError(f"{name} has shape {obj.shape}, expected {want}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_ISWRITEABLE(a) \
            or not cnp.PyArray_ISALIGNED(a) or not cnp.PyArray_ISNOTSWAPPED(a):
        raise ValueError(f"{name} must be a writeable, aligned, C-contiguous native array")
    return 0


cdef int raise_rc(int rc) except -1:
    if rc == FC_ENOMEM:
        raise MemoryError("fastclip: out of memory in a C kernel")
    if rc == FC_EINVAL:
        raise ValueError("fastclip: invalid arguments reached a C kernel")
    if rc != FC_OK:
        raise RuntimeError(f"fastclip: C kernel failed with code {rc}")
    return 0


#: Calls over fewer elements run on the calling thread (FC_PARALLEL_MIN, fc_common.h).
PARALLEL_MIN = FC_PARALLEL_MIN


#: Kernels never use more threads than this (FC_MAX_THREADS, fc_threads.h).
MAX_THREADS = FC_MAX_THREADS


def max_threads():
    """Threads a kernel may use now: OMP_NUM_THREADS / threadpoolctl's limit, at
    most num_procs() and MAX_THREADS."""
    return fc_max_threads()


def num_procs():
    """The processors this process may run on."""
    return fc_num_procs()


def openmp_enabled():
    return bool(fc_openmp_enabled())


def simd_level():
    return fc_simd_level().decode()


def cpu_vendor():
    """The CPU's vendor: "intel", "amd" or "other"."""
    return fc_cpu_vendor().decode()


def set_serial_only(bint on):
    """Keep kernels on the calling thread (used after fork())."""
    fc_set_serial_only(on)


def serial_only():
    return bool(fc_serial_only())


def set_openmp_regions(bint on):
    """Run the kernels' parallel passes on OpenMP threads instead of the pool's."""
    fc_set_openmp_regions(on)


def openmp_regions():
    return bool(fc_openmp_regions())


def _two_pass_trace(Py_ssize_t n, bint parallel, given=None):
    """The thread runtime's two-pass schedule over n counting items (for the
    tests): (calls of each item in the first pass, in the second, the slot noted
    for each item, each item's position among the second pass's calls). The
    second pass follows the slots ``given`` instead of the noted ones when set."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    cdef cnp.ndarray runs = np.zeros(2 * n, np.int64)
    cdef cnp.ndarray order = np.full(n, -1, np.int64)
    cdef cnp.ndarray slots = np.zeros(n, np.uint8)
    cdef cnp.ndarray g = None
    if given is not None:
        g = np.ascontiguousarray(given, dtype=np.uint8)
        if g.shape[0] != n:
            raise ValueError(f"given must hold n={n} slots, got {g.shape[0]}")
    cdef const unsigned char *gp = <const unsigned char *>g.data if g is not None else NULL
    with nogil:
        fc_two_pass_trace(n, parallel, gp, <unsigned char *>slots.data,
                          <int64_t *>runs.data, <int64_t *>order.data)
    return runs[:n], runs[n:], slots, order
