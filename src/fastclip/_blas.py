"""Which BLAS the GEMMs of :mod:`fastclip.nn` call (not public; see ``show_config``).

The compiled layers call ``sgemm``/``dgemm`` through function pointers, without
the GIL, through the Fortran interface (every argument by pointer, 32-bit
integers). fastclip links no BLAS at build time, so SciPy is needed neither to
build nor to run it. Two libraries can serve, both maintained wheels loaded
with :mod:`ctypes`:

- ``scipy-openblas32``: the OpenBLAS of the ``scipy-openblas32`` wheel, a
  dependency of fastclip (the symbols carry a ``scipy_`` prefix);
- ``mkl``: Intel oneMKL's single dynamic library (``libmkl_rt``) from the
  ``mkl`` wheel (``pip install numpy-fastclip[mkl]``). fastclip selects its GNU
  OpenMP threading layer, the OpenMP runtime fastclip's own kernels use, so
  the GEMMs and the element-wise passes share one set of threads, and its LP64
  interface (32-bit integers).

``FASTCLIP_BLAS`` (environment) selects the provider: ``scipy-openblas32``,
``mkl`` (an :class:`ImportError` when the ``mkl`` wheel cannot be loaded), or
``auto`` (the default): MKL on Intel CPUs when the ``mkl`` wheel is installed,
where its GEMMs are faster at every size of ``bench/bench_mlp.py``, unless
another library of the process has already loaded that MKL (its settings are
then that library's); otherwise OpenBLAS. Any other value is a :class:`ValueError` when :mod:`fastclip.nn`'s
kernels are loaded. ``threadpoolctl`` sees either library, so
``threadpool_limits(user_api="blas")`` controls its threads. When no library can
be loaded the compiled layers are unavailable, with an :class:`ImportError` that
says why (``FASTCLIP_IMPLEMENTATION=python`` runs the NumPy reference instead).
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import sysconfig
from collections.abc import Callable

ENV = "FASTCLIP_BLAS"
OPENBLAS32 = "scipy-openblas32"
MKL = "mkl"
CHOICES = ("auto", OPENBLAS32, MKL)

# oneMKL's mkl_service.h and mkl_cbwr.h: MKL_THREADING_GNU, MKL_INTERFACE_LP64,
# MKL_CBWR_AUTO | MKL_CBWR_STRICT and MKL_CBWR_SUCCESS.
_MKL_THREADING_GNU = 3
_MKL_INTERFACE_LP64 = 0
_MKL_CBWR_AUTO_STRICT = 2 | 0x10000
_MKL_CBWR_SUCCESS = 0

_lib: ctypes.CDLL | None = None  # kept loaded for the life of the process
_mkl_lib: ctypes.CDLL | None = None  # MKL, once loaded with the settings below
_sgemm_name = ""  # the symbol the GEMMs call (bench/bench_mlp.py times it alone)
_reason = ""  # why this library, for show_config


def _openblas32() -> tuple[ctypes.CDLL, str, str]:
    """scipy-openblas32: the library, its sgemm symbol's prefix and a description."""
    import scipy_openblas32 as sob

    libdir = sob.get_lib_dir()
    patterns = ("libscipy_openblas*.so*", "libscipy_openblas*.dylib", "libscipy_openblas*.dll",
                "scipy_openblas*.dll")
    found = [p for pat in patterns for d in (libdir, os.path.dirname(libdir))
             for p in sorted(glob.glob(os.path.join(d, pat)))]
    if not found:
        raise OSError(f"no OpenBLAS shared library in {libdir}")
    return (ctypes.CDLL(found[0]), "scipy_",
            f"{OPENBLAS32} {getattr(sob, '__version__', '?')} ({found[0]})")


def _mkl_candidates() -> list[str]:
    """Where the ``mkl`` wheel puts ``libmkl_rt`` (its data files go to the
    environment's ``lib``, or ``Library/bin`` on Windows)."""
    roots = {sys.prefix, sysconfig.get_paths().get("data", sys.prefix)}
    user = sysconfig.get_config_var("userbase")
    if user:
        roots.add(user)
    patterns = ("lib/libmkl_rt.so*", "lib/libmkl_rt*.dylib", "Library/bin/mkl_rt*.dll")
    return [p for r in sorted(roots) for pat in patterns
            for p in sorted(glob.glob(os.path.join(r, pat)))]


def _loaded_by_another(path: str) -> bool:
    """Whether another library of this process has already loaded this MKL (for
    example a NumPy built with MKL): its threading and reproducibility settings
    are then that library's, which fastclip leaves alone unless asked for MKL."""
    if _mkl_lib is not None or not hasattr(os, "RTLD_NOLOAD"):
        return False
    try:
        ctypes.CDLL(path, mode=os.RTLD_NOLOAD)
    except OSError:
        return False
    return True


def _mkl() -> tuple[ctypes.CDLL, str, str]:
    """oneMKL (``libmkl_rt``) with the GNU OpenMP threading layer and LP64."""
    found = _mkl_candidates()
    if not found:
        raise OSError("no libmkl_rt in this environment (pip install mkl)")
    lib = ctypes.CDLL(found[0])
    # Strict conditional numerical reproducibility: GEMM results that do not depend
    # on the thread count (fastclip's own reductions never do), so a forked child,
    # OMP_NUM_THREADS and threadpoolctl never change a result. It costs nothing
    # measurable at the sizes of bench/bench_mlp.py. A user's own MKL_CBWR is kept.
    if not os.environ.get("MKL_CBWR"):
        lib.MKL_CBWR_Set.argtypes = [ctypes.c_int]
        if lib.MKL_CBWR_Set(_MKL_CBWR_AUTO_STRICT) != _MKL_CBWR_SUCCESS:
            raise OSError("MKL refused strict reproducibility (MKL_CBWR_Set)")
    # The threading and interface layers are fixed by MKL's first call in the
    # process and returned from then on: a process in which something else already
    # chose other layers keeps them, and fastclip then does not use this library.
    lib.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
    lib.MKL_Set_Interface_Layer.argtypes = [ctypes.c_int]
    threading = lib.MKL_Set_Threading_Layer(_MKL_THREADING_GNU)
    interface = lib.MKL_Set_Interface_Layer(_MKL_INTERFACE_LP64)
    if threading != _MKL_THREADING_GNU or interface & 1:
        raise OSError(
            f"MKL in this process already uses threading layer {threading} and interface "
            f"layer {interface}; fastclip needs GNU OpenMP ({_MKL_THREADING_GNU}) and LP64 "
            f"({_MKL_INTERFACE_LP64})")
    buf = ctypes.create_string_buffer(256)
    lib.MKL_Get_Version_String(buf, len(buf))
    version = buf.value.decode(errors="replace").strip() or "?"
    global _mkl_lib
    _mkl_lib = lib
    return lib, "", f"{MKL} ({version}; {found[0]})"


def choice() -> str:
    """The validated value of ``FASTCLIP_BLAS`` (``auto`` when unset or empty)."""
    raw = os.environ.get(ENV, "")
    env = raw.strip().lower() or "auto"
    if env not in CHOICES:
        raise ValueError(f"{ENV} must be one of {CHOICES}, got {raw!r}")
    return env


def _cpu_vendor() -> str:
    from fastclip import _common

    return _common.cpu_vendor()


def install(set_gemm: Callable[[int, int, str], None]) -> None:
    """Point the compiled layers' GEMMs at the BLAS that ``FASTCLIP_BLAS`` selects.

    ``set_gemm(sgemm_address, dgemm_address, description)`` is called once, with
    non-zero addresses; a library that cannot be loaded is an ImportError.
    """
    global _lib, _sgemm_name, _reason
    env = choice()
    raw = os.environ.get(ENV, "").strip()
    said = f"{ENV}={raw!r}" if raw else f"{ENV} unset ('auto')"
    if env == "auto":
        vendor = _cpu_vendor()
        found = _mkl_candidates() if vendor == "intel" else []
        if found and _loaded_by_another(found[0]):
            lib, prefix, desc = _load_openblas()
            why = ("an Intel CPU, but another library in this process already uses MKL "
                   f"and fastclip leaves its settings alone (set {ENV}=mkl to share it): "
                   "OpenBLAS")
        elif found:
            try:
                lib, prefix, desc = _mkl()
                why = "an Intel CPU with the mkl wheel installed: MKL, whose GEMMs are faster there"
            except (OSError, AttributeError) as exc:
                lib, prefix, desc = _load_openblas()
                why = f"an Intel CPU, but MKL cannot be used ({exc}): OpenBLAS"
        else:
            lib, prefix, desc = _load_openblas()
            why = ("an Intel CPU without the mkl wheel (pip install numpy-fastclip[mkl] for "
                   "MKL, faster there): OpenBLAS" if vendor == "intel"
                   else f"not an Intel CPU ({vendor}): OpenBLAS")
        _reason = f"{said}: {why}"
    elif env == MKL:
        try:
            lib, prefix, desc = _mkl()
        except (OSError, AttributeError) as exc:
            raise ImportError(
                f"{ENV}=mkl, but MKL cannot be used: {exc}; install it (pip install "
                f"numpy-fastclip[mkl]) or unset {ENV}") from exc
        _reason = f"{said}: chosen"
    else:
        lib, prefix, desc = _load_openblas()
        _reason = f"{said}: chosen"
    s = ctypes.cast(getattr(lib, prefix + "sgemm_"), ctypes.c_void_p).value
    d = ctypes.cast(getattr(lib, prefix + "dgemm_"), ctypes.c_void_p).value
    if not s or not d:
        raise ImportError(f"{desc} has no {prefix}sgemm_/{prefix}dgemm_")
    _lib, _sgemm_name = lib, prefix + "sgemm_"
    set_gemm(s, d, desc)


def _load_openblas() -> tuple[ctypes.CDLL, str, str]:
    try:
        return _openblas32()
    except (ImportError, OSError, AttributeError) as exc:
        raise ImportError(
            f"fastclip.nn's compiled layers need the {OPENBLAS32} wheel for their GEMMs and "
            f"it cannot be loaded: {exc}; reinstall it (pip install {OPENBLAS32}) or set "
            "FASTCLIP_IMPLEMENTATION=python"
        ) from exc


def shares_openmp() -> bool:
    """Whether the GEMMs run on fastclip's OpenMP runtime (MKL's GNU threading
    layer). Two things follow, both set by fastclip._nn after :func:`install`:

    - the kernels' parallel passes use OpenMP threads too, the ones the GEMMs have
      just left spinning, instead of the pool's helpers, which would compete with
      them for the cores (bench/README.md has the figures);
    - GNU OpenMP's threads do not survive ``fork()``, and a parallel region in a
      forked child waits for them forever: in a forked child (where fastclip's
      own kernels run on the calling thread, see ``fastclip._fork``) the layers
      set MKL's thread count of the calling thread to 1 before each GEMM
      (:func:`fork_guard`), whatever the child asked for since.
    """
    return _lib is not None and _lib is _mkl_lib


def fork_guard() -> int:
    """Address of MKL's ``MKL_Set_Num_Threads_Local`` when the GEMMs run in MKL,
    else 0 (see :func:`shares_openmp`)."""
    lib = _mkl_lib
    if lib is None or _lib is not lib:
        return 0
    return ctypes.cast(lib.MKL_Set_Num_Threads_Local, ctypes.c_void_p).value or 0


def reason() -> str:
    """Why the GEMMs call the library they do (empty before :func:`install`)."""
    return _reason
