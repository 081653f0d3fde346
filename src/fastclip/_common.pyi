"""Type stubs for fastclip._common: the array collector shared by the compiled
bindings (its C-level API is in _common.pxd) and a few runtime facts."""

import numpy as np

PARALLEL_MIN: int
"""Calls over fewer elements run on the calling thread (FC_PARALLEL_MIN)."""

class ArrayList:
    """Validated arrays described for the C kernels (built by the C-level collect())."""

    def __len__(self) -> int: ...

MAX_THREADS: int
"""Kernels never use more threads than this (FC_MAX_THREADS)."""

def max_threads() -> int:
    """Threads a kernel may use now: OMP_NUM_THREADS / threadpoolctl's limit, at most
    num_procs() and MAX_THREADS."""

def num_procs() -> int:
    """The processors this process may run on."""

def openmp_enabled() -> bool:
    """Whether the kernels were built with OpenMP."""

def cpu_vendor() -> str:
    """The CPU's vendor: "intel", "amd" or "other"."""

def simd_level() -> str:
    """The SIMD clone the dispatcher picked: "avx512", "avx2" or "baseline"."""

def set_serial_only(on: bool) -> None:
    """Keep kernels on the calling thread (used after fork())."""

def set_openmp_regions(on: bool) -> None:
    """Run the kernels' parallel passes on OpenMP threads instead of the pool's."""

def openmp_regions() -> bool:
    """Whether the kernels' parallel passes run on OpenMP threads."""

def serial_only() -> bool:
    """Whether kernels are kept on the calling thread."""

def _two_pass_trace(
    n: int, parallel: bool, given: object = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The thread runtime's two-pass schedule over n counting items (for the tests)."""
