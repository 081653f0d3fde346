"""Which BLAS the GEMMs of :mod:`fastclip.nn` call (not public; see ``show_config``).

The compiled layers call ``sgemm``/``dgemm`` through function pointers, without
the GIL. Two providers, both the OpenBLAS builds of the SciPy project:

- ``scipy-openblas32``: the ``scipy-openblas32`` wheel (a dependency of
  fastclip), loaded with :mod:`ctypes` and called through its Fortran
  interface (``scipy_sgemm_``/``scipy_dgemm_``). Preferred: it is the current
  OpenBLAS release, while the copy bundled inside SciPy follows SciPy's release
  cycle; on the 2-core development VM the recent one is 1.4x faster for the
  small-batch GEMMs of an MLP step (32 x 784 @ 784 x 512: 0.35 ms vs 0.50 ms,
  one thread; see bench/README.md).
- ``scipy``: ``scipy.linalg.cython_blas`` (the OpenBLAS inside SciPy), always
  there; the fallback.

``FASTCLIP_BLAS`` (environment) picks one: ``auto`` (default: scipy-openblas32
when it loads, else scipy), ``scipy`` or ``scipy-openblas32`` (an error at
import when it cannot be loaded). ``threadpoolctl`` sees both libraries, so
``threadpool_limits`` controls their threads.
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Callable

ENV = "FASTCLIP_BLAS"
CHOICES = ("auto", "scipy", "scipy-openblas32")
SCIPY = "scipy"
OPENBLAS32 = "scipy-openblas32"

_lib: ctypes.CDLL | None = None  # kept loaded for the life of the process


def _openblas32() -> tuple[int, int, str]:
    """Addresses of sgemm and dgemm in scipy-openblas32, and a description."""
    global _lib
    import scipy_openblas32 as sob

    libdir = sob.get_lib_dir()
    patterns = ("libscipy_openblas*.so*", "libscipy_openblas*.dylib", "libscipy_openblas*.dll",
                "scipy_openblas*.dll")
    found = [p for pat in patterns for d in (libdir, os.path.dirname(libdir))
             for p in sorted(glob.glob(os.path.join(d, pat)))]
    if not found:
        raise OSError(f"no OpenBLAS shared library in {libdir}")
    lib = ctypes.CDLL(found[0])
    s = ctypes.cast(lib.scipy_sgemm_, ctypes.c_void_p).value
    d = ctypes.cast(lib.scipy_dgemm_, ctypes.c_void_p).value
    if not s or not d:
        raise OSError(f"{found[0]} has no scipy_sgemm_/scipy_dgemm_")
    _lib = lib
    return s, d, f"{OPENBLAS32} {getattr(sob, '__version__', '?')} ({found[0]})"


def choice() -> str:
    """The validated value of ``FASTCLIP_BLAS`` (``auto`` when unset)."""
    env = os.environ.get(ENV, "").strip().lower() or "auto"
    if env not in CHOICES:
        raise ValueError(f"{ENV} must be one of {CHOICES}, got {env!r}")
    return env


def install(set_gemm: Callable[[int, int, str], None]) -> None:
    """Point the compiled layers' GEMMs at the BLAS that ``FASTCLIP_BLAS`` picks.

    ``set_gemm(sgemm_address, dgemm_address, description)``; addresses 0 keep
    scipy's ``cython_blas``.
    """
    want = choice()
    if want == SCIPY:
        set_gemm(0, 0, "")
        return
    try:
        s, d, desc = _openblas32()
    except (ImportError, OSError, AttributeError) as exc:
        if want == OPENBLAS32:
            raise ImportError(f"{ENV}={OPENBLAS32} but it cannot be loaded: {exc}") from exc
        set_gemm(0, 0, "")
        return
    set_gemm(s, d, desc)
