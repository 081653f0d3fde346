"""Which BLAS the GEMMs of :mod:`fastclip.nn` call (not public; see ``show_config``).

The compiled layers call ``sgemm``/``dgemm`` through function pointers, without
the GIL. They come from one library: the OpenBLAS of the ``scipy-openblas32``
wheel (a dependency of fastclip; 32-bit integers, the symbols carry a
``scipy_`` prefix), loaded with :mod:`ctypes` and called through its Fortran
interface (``scipy_sgemm_``/``scipy_dgemm_``). fastclip links no BLAS at build
time, so SciPy is needed neither to build nor to run it. ``threadpoolctl``
sees the library, so ``threadpool_limits(user_api="blas")`` and
``OPENBLAS_NUM_THREADS`` control its threads.

``FASTCLIP_BLAS`` (environment) selects the provider: ``auto`` (the default)
or ``scipy-openblas32``, which today mean the same library; any other value is
a :class:`ValueError` when :mod:`fastclip.nn`'s kernels are loaded. When the
library cannot be loaded the compiled layers are unavailable, with an
:class:`ImportError` that says why (``FASTCLIP_IMPLEMENTATION=python`` runs the
NumPy reference instead).
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Callable

ENV = "FASTCLIP_BLAS"
OPENBLAS32 = "scipy-openblas32"
CHOICES = ("auto", OPENBLAS32)

_lib: ctypes.CDLL | None = None  # kept loaded for the life of the process
_reason = ""  # why this library, for show_config


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
    """The validated value of ``FASTCLIP_BLAS`` (``auto`` when unset or empty)."""
    raw = os.environ.get(ENV, "")
    env = raw.strip().lower() or "auto"
    if env not in CHOICES:
        raise ValueError(
            f"{ENV} must be one of {CHOICES} (fastclip's GEMMs use the scipy-openblas32 "
            f"wheel), got {raw!r}"
        )
    return env


def install(set_gemm: Callable[[int, int, str], None]) -> None:
    """Point the compiled layers' GEMMs at the BLAS that ``FASTCLIP_BLAS`` selects.

    ``set_gemm(sgemm_address, dgemm_address, description)`` is called once, with
    non-zero addresses; a library that cannot be loaded is an ImportError.
    """
    global _reason
    choice()  # rejects a bad value; both valid ones mean the same library
    try:
        s, d, desc = _openblas32()
    except (ImportError, OSError, AttributeError) as exc:
        raise ImportError(
            f"fastclip.nn's compiled layers need the {OPENBLAS32} wheel for their GEMMs and "
            f"it cannot be loaded: {exc}; reinstall it (pip install {OPENBLAS32}) or set "
            "FASTCLIP_IMPLEMENTATION=python"
        ) from exc
    raw = os.environ.get(ENV, "").strip()
    _reason = (f"{ENV}={raw!r}" if raw else f"{ENV} unset ('auto')") + (
        f": {OPENBLAS32} is the only BLAS fastclip uses (a dependency; no SciPy needed)")
    set_gemm(s, d, desc)


def reason() -> str:
    """Why the GEMMs call the library they do (empty before :func:`install`)."""
    return _reason
