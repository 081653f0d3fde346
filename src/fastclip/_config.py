"""Build and run-time configuration: :func:`show_config`."""

from __future__ import annotations

import json
import platform
import sys
from typing import Any

import numpy as np

from fastclip import _dispatch


def _build_info() -> dict[str, Any]:
    try:
        from fastclip import _build_info as b
    except ImportError:
        return {"built": False}
    return {
        "built": True,
        "openmp": b.openmp,
        "openmp_version": b.openmp_version or None,
        "simd_dispatch": b.simd_dispatch,
        "sanitize": b.sanitize,
        "compiler": b.compiler,
        "build_type": b.build_type,
        "c_flags": b.c_flags,
        "system": b.system,
    }


def get_config() -> dict[str, Any]:
    """The configuration as a dictionary (what :func:`show_config` prints)."""
    from fastclip import __version__

    info: dict[str, Any] = {
        "fastclip": __version__,
        "implementation": _dispatch.get_implementation(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "build": _build_info(),
    }
    try:
        from fastclip import _common

        info["kernels"] = {
            "compiled": True,
            "openmp": _common.openmp_enabled(),
            "threads": _common.max_threads(),
            "serial_only": _common.serial_only(),
            "simd": _common.simd_level(),
            "cpu_vendor": _common.cpu_vendor(),
        }
        try:
            from fastclip import _blas, _nn

            info["kernels"]["gemm"] = _nn.gemm_library()
            info["kernels"]["gemm_reason"] = _blas.reason()
            info["kernels"]["parallel"] = ("OpenMP threads (shared with the GEMMs)"
                                           if _common.openmp_regions() else "the kernels' pool")
        except (ImportError, ValueError) as exc:  # ValueError: a bad FASTCLIP_BLAS
            info["kernels"]["gemm"] = f"unavailable: {exc}"
            info["kernels"]["gemm_reason"] = ""
    except ImportError as exc:
        info["kernels"] = {"compiled": False, "error": str(exc)}
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "version",
                                   "filepath")}
            for p in threadpool_info()
        ]
    except ImportError:
        info["threadpools"] = "threadpoolctl is not installed"
    return info


def show_config(as_json: bool = False) -> None:
    """Print the version, the implementation in use, OpenMP, threads and BLAS.

    Parameters
    ----------
    as_json : bool, default False
        Print JSON instead of the readable layout.
    """
    info = get_config()
    if as_json:
        print(json.dumps(info, indent=2, default=str))
        return
    k = info["kernels"]
    b = info["build"]
    lines = [
        f"fastclip {info['fastclip']}  (Python {info['python']}, NumPy {info['numpy']})",
        f"  platform:        {info['platform']}",
        f"  implementation:  {info['implementation']}"
        + ("" if k.get("compiled") else "  (compiled kernels unavailable: "
           f"{k.get('error')})"),
    ]
    if k.get("compiled"):
        lines += [
            f"  C kernels:       built with {b.get('compiler')} ({b.get('build_type')}), "
            f"SIMD dispatch: {b.get('simd_dispatch')} (running: {k['simd']}, "
            f"CPU vendor: {k['cpu_vendor']})",
            f"  OpenMP:          {k['openmp']}"
            + (f" (version {b.get('openmp_version')})" if k["openmp"] else "")
            + f", threads: {k['threads']}"
            + (" (serial after fork)" if k["serial_only"] else "")
            + (f"; parallel passes on {k['parallel']}" if k.get("parallel") else ""),
        ]
    if info["implementation"] == "c":
        lines.append(f"  GEMMs (nn):      {k['gemm']}")
        if k.get("gemm_reason"):
            lines.append(f"                   ({k['gemm_reason']})")
    else:
        lines.append("  GEMMs (nn):      numpy.matmul (NumPy's own BLAS: the python "
                     "implementation is in use)")
    pools = info["threadpools"]
    if isinstance(pools, str):
        lines.append(f"  thread pools:    {pools}")
    else:
        lines.append("  thread pools:")
        for p in pools:
            lines.append(
                f"    - {p['user_api']}/{p['internal_api']} {p.get('version') or ''} "
                f"threads={p['num_threads']}  {p['filepath']}"
            )
    print("\n".join(lines))
