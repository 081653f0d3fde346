"""Where the time of one fastclip MLP step goes: forward, loss, backward, optimiser.

The step of ``bench_mlp.FastclipStep`` (784-512-512-10 ReLU MLP, float32, SGD with
``clip_norm=1.0``), timed phase by phase in one process, 2 threads: medians of
1,200 steps after 300 of warm-up, in microseconds.

Usage::

    python bench/mlp_phases.py BATCH        # e.g. 32; FASTCLIP_BLAS picks the BLAS
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_mlp as bm  # noqa: E402


def main() -> None:
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    bm.set_threads(2)
    x, y = bm.make_problem(batch)
    s = bm.FastclipStep(x, y)
    m, opt = s.model, s.opt
    names = ("forward", "loss", "backward", "optimiser", "total")
    times: dict[str, list[float]] = {k: [] for k in names}
    for it in range(1500):
        t0 = time.perf_counter()
        out = m.forward(x)
        t1 = time.perf_counter()
        _, d = bm.fnn.softmax_cross_entropy(out, y)
        t2 = time.perf_counter()
        m.backward(d, input_grad=False)
        t3 = time.perf_counter()
        opt.step(s.grads, sqnorms=m.grad_sqnorms())
        t4 = time.perf_counter()
        if it >= 300:
            for k, v in zip(names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                times[k].append(v)
    print(f"batch {batch}: " + ", ".join(f"{k} {np.median(v) * 1e6:.0f} us"
                                         for k, v in times.items()))


if __name__ == "__main__":
    main()
