"""The float32 clip kernels on one 670,000-element array, hot, one thread.

Times ``get_total_norm`` (the sum-of-squares pass) on an array that starts on a
64-byte boundary and on one 16 bytes past it, then the scaling pass
(``clip_grads_with_norm_``), ``clip_grad_value_`` (the clamp) and the max-norm pass
(``get_total_norm(norm_type=inf)``, with NumPy's ``np.abs(x).max()`` beside it): medians of 1,000
calls after 300 untimed ones, in microseconds. Run it under two builds to compare
their SIMD versions (``show_config()`` names the SIMD level; a build with
``-Ccmake.define.FASTCLIP_AVX512=OFF`` has no AVX-512 kernels).

Usage::

    python bench/clip_simd.py
"""

from __future__ import annotations

import numpy as np
from _common import median_us
from threadpoolctl import threadpool_limits

from fastclip import _clip, _common

N = 670_000


def _array(offset_floats: int) -> np.ndarray:
    raw = np.empty(N + 64, np.float32)
    base = (-raw.ctypes.data // 4) % 16  # the first element on a 64-byte boundary
    a = raw[base + offset_floats: base + offset_floats + N]
    a[...] = np.random.default_rng(0).standard_normal(N).astype(np.float32)
    return a


def us(fn) -> float:
    """Median of 1,000 calls after 300 untimed ones, in microseconds."""
    return median_us(fn, 300, 1000)


def main() -> None:
    out = [f"SIMD {_common.simd_level()}, CPU vendor {_common.cpu_vendor()}"]
    with threadpool_limits(1):
        for off in (0, 4):
            a = [_array(off)]
            out.append(f"norm (offset {4 * off} B) {us(lambda: _clip.get_total_norm(a)):.1f}")
        a = [_array(4)]
        out.append(f"scale {us(lambda: _clip.clip_grads_with_norm_(a, 1.0, 1.0000001)):.1f}")
        out.append(f"clamp {us(lambda: _clip.clip_grad_value_(a, 0.5)):.1f}")
        inf = float("inf")
        out.append(f"inf-norm {us(lambda: _clip.get_total_norm(a, inf)):.1f}")
        out.append(f"numpy abs max {us(lambda: np.abs(a[0]).max()):.1f}")
    print("; ".join(out) + " (us)")


if __name__ == "__main__":
    main()
