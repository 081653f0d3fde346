# Shared declarations for the Cython bindings: the C array descriptor, the
# collector that turns one ndarray or an iterable of them into fc_array[], and
# the checks of the row-major matrices and output buffers of the layer kernels.
from libc.stdint cimport int64_t, int32_t

cdef extern from "fc_common.h" nogil:
    ctypedef struct fc_array:
        char *data
        int64_t size
        int32_t ndim
        int32_t dtype
        const int64_t *shape
        const int64_t *strides
    enum:
        FC_FLOAT32
        FC_FLOAT64
        FC_OK
        FC_ENOMEM
        FC_ENONFINITE
        FC_EINVAL
    int64_t FC_PARALLEL_MIN
    int FC_MAX_THREADS
    int fc_max_threads()
    int fc_num_procs()
    int fc_openmp_enabled()
    void fc_set_serial_only(int on)
    int fc_serial_only()
    void fc_set_openmp_regions(int on)
    int fc_openmp_regions()
    void fc_two_pass_trace(int64_t n, int parallel, const unsigned char *given,
                           unsigned char *slot_of, int64_t *runs, int64_t *order)
    const char *fc_simd_level()
    const char *fc_cpu_vendor()
    int fc_extents_overlap(const fc_array *arrs, int64_t n)


cdef class ArrayList:
    cdef fc_array *arrs
    cdef Py_ssize_t n
    cdef bint single
    cdef list arrays      # the validated arrays (kept alive while arrs is used)


cdef ArrayList collect(object obj, str name, bint inplace)
cdef ArrayList describe_checked(list arrays)
cdef int require_array(object obj, str name) except -1
cdef int64_t row_stride(object obj, int64_t n, int64_t width, int64_t max_ld,
                        str name) except -1
cdef int check_buf(object obj, int typenum, int64_t n0, int64_t n1, str name) except -1
cdef int fill(fc_array *dst, object arr) except -1
cdef int raise_rc(int rc) except -1
