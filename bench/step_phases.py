"""Where the time of one training step goes, phase by phase, in one process.

The 784-512-512-10 ReLU MLP of ``bench_mlp.py`` and ``bench_privacy.py`` (float32,
SGD, 2 threads), medians over the steps after a warm-up, in microseconds:

- ordinary step (``bench_mlp.FastclipStep``: ``clip_norm=1.0``): forward, loss,
  backward, optimiser (with the backward's sums of squares); 1,200 steps after 300;
- ``--private`` (the DP-SGD step of ``bench_privacy.py``: per-example clip 1.0, noise
  multiplier 1.0): forward with the loss, ``backward(per_example_clip=1.0)``, the
  plain backward (for comparison), ``DPOptimizer.noisy_average`` and the optimiser's
  step with the noise pass's sums of squares; 600 steps after 200.

Usage::

    python bench/step_phases.py BATCH [--private]    # FASTCLIP_BLAS picks the BLAS
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import bench_mlp as bm  # noqa: E402

import fastclip  # noqa: E402
from fastclip import nn, privacy  # noqa: E402


def _ordinary(batch: int):
    x, y = bm.make_problem(batch)
    s = bm.FastclipStep(x, y)
    m, opt = s.model, s.opt
    state = {}

    def forward():
        state["out"] = m.forward(x)

    def loss():
        state["d"] = nn.softmax_cross_entropy(state["out"], y)[1]

    def backward():
        m.backward(state["d"], input_grad=False)

    def optimiser():
        opt.step(s.grads, sqnorms=m.grad_sqnorms())

    return {"forward": forward, "loss": loss, "backward": backward,
            "optimiser": optimiser}, 300, 1200


def _private(batch: int):
    model = _common.fastclip_mlp()
    x, y = _common.mlp_batch(batch)
    sgd = fastclip.optim.SGD(model.parameters(), lr=0.01)
    dp = privacy.DPOptimizer(sgd, noise_multiplier=1.0, max_grad_norm=1.0,
                             expected_batch_size=batch, rng=0)
    state = {}

    def forward():
        state["d"] = nn.softmax_cross_entropy(model.forward(x), y)[1]

    def per_example_backward():
        model.backward(state["d"], per_example_clip=1.0, input_grad=False)

    def plain_backward():
        model.backward(state["d"], input_grad=False)

    def noise():
        state["noisy"] = dp.noisy_average(model.gradients())

    def optimiser():
        sgd.step(state["noisy"], sqnorms=dp._sqnorms)

    return {"forward": forward, "per-example backward": per_example_backward,
            "plain backward": plain_backward, "noise": noise, "optimiser": optimiser}, 200, 600


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("batch", type=int, nargs="?", default=32)
    ap.add_argument("--private", action="store_true")
    a = ap.parse_args()
    bm.set_threads(2)
    phases, warmup, steps = (_private if a.private else _ordinary)(a.batch)
    times: dict[str, list[float]] = {k: [] for k in [*phases, "total"]}
    for it in range(warmup + steps):
        t_step = t0 = time.perf_counter()
        for name, f in phases.items():
            f()
            t1 = time.perf_counter()
            if it >= warmup:
                times[name].append(t1 - t0)
            t0 = t1
        if it >= warmup:
            times["total"].append(t0 - t_step)
    print(f"batch {a.batch}{' (private)' if a.private else ''}: "
          + ", ".join(f"{k} {np.median(v) * 1e6:.0f} us" for k, v in times.items()))


if __name__ == "__main__":
    main()
