"""Where the time of one DP-SGD step goes: forward, per-example backward, noise, optimiser.

The 784-512-512-10 MLP of ``bench_privacy.py`` (float32, per-example clip 1.0, noise
multiplier 1.0, SGD), 2 threads, in one process: each step times the forward (with
the loss), ``backward(per_example_clip=1.0)``, the plain backward (for comparison),
``DPOptimizer.noisy_average`` and the optimiser's step with the noise pass's sums of
squares; medians of 600 steps after 200 of warm-up, in microseconds.

Usage::

    python bench/dp_phases.py BATCH        # e.g. 64
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import fastclip  # noqa: E402
from fastclip import nn, privacy  # noqa: E402


def main() -> None:
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    threadpool_limits(2)
    model = _common.fastclip_mlp()
    x, y = _common.mlp_batch(batch)
    sgd = fastclip.optim.SGD(model.parameters(), lr=0.01)
    dp = privacy.DPOptimizer(sgd, noise_multiplier=1.0, max_grad_norm=1.0,
                             expected_batch_size=batch, rng=0)
    names = ("forward", "per-example backward", "plain backward", "noise", "optimiser")
    times: dict[str, list[float]] = {k: [] for k in names}
    for it in range(800):
        t0 = time.perf_counter()
        _, d = nn.softmax_cross_entropy(model.forward(x), y)
        t1 = time.perf_counter()
        model.backward(d, per_example_clip=1.0, input_grad=False)
        t2 = time.perf_counter()
        model.backward(d, input_grad=False)
        t3 = time.perf_counter()
        noisy = dp.noisy_average(model.gradients())
        t4 = time.perf_counter()
        sgd.step(noisy, sqnorms=dp._sqnorms)
        t5 = time.perf_counter()
        if it >= 200:
            for k, v in zip(names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                times[k].append(v)
    print(f"batch {batch}: " + ", ".join(f"{k} {np.median(v) * 1e6:.0f} us"
                                         for k, v in times.items()))


if __name__ == "__main__":
    main()
