"""The float32 Gaussian noise kernel of DP-SGD on 669,706 elements (the 784-512-512-10
MLP's parameter count), back to back, on one and on two threads.

Times ``_privacy.gaussian_(out, grad, ...)`` (``out = (grad + std * z) * scale``, the
pass ``DPOptimizer`` makes): medians of 200 calls after 50 untimed ones, in
microseconds and in nanoseconds per element. Run it under two builds to compare
their SIMD versions (``show_config()`` names the SIMD level; a build with
``-Ccmake.define.FASTCLIP_AVX512=OFF`` runs the AVX2 version on an AVX-512
CPU).

Usage::

    python bench/noise_simd.py
"""

from __future__ import annotations

import numpy as np
from _common import median_us
from threadpoolctl import threadpool_limits

from fastclip import _common, _privacy

N = 669_706


def main() -> None:
    grad = np.random.default_rng(0).standard_normal(N).astype(np.float32)
    out = np.empty_like(grad)
    res = [f"SIMD {_common.simd_level()}, CPU vendor {_common.cpu_vendor()}"]
    for threads in (1, 2):
        with threadpool_limits(threads):
            us = median_us(lambda: _privacy.gaussian_(out, grad, 7, 0, 1.0, 1.0 / 64), 50, 200)
        res.append(f"{threads} thread(s) {us:.0f} us = {us * 1e3 / N:.2f} ns/element")
    print("; ".join(res))


if __name__ == "__main__":
    main()
