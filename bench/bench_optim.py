"""Optimiser step fused with global-norm clipping, on the 670k parameters of a
784-512-512-10 MLP (float32): fastclip vs PyTorch CPU vs idiomatic NumPy.

* Adam: ``fastclip.optim.Adam(clip_norm=1.0).step(grads)`` (with and without
  ``sqnorms``) vs ``torch.nn.utils.clip_grad_norm_`` followed by
  ``torch.optim.Adam(foreach=True).step()`` vs NumPy.
* SGD with momentum 0.9: the same three.

Same data (parameters and gradients) for everyone, torch on as many threads as
fastclip's OpenMP. Run::

    pytest bench/bench_optim.py --benchmark-only
    python bench/bench_optim.py          # table: each candidate in fresh processes,
                                         # rounds alternating, medians and their ratios
    python bench/bench_optim.py --same-process   # the candidates one after the other
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _common import mlp_params_and_grads

from fastclip._common import max_threads

from fastclip import optim

CLIP = 1.0
LR = 1e-3


def make_data(seed: int = 0, dtype=np.float32):
    return mlp_params_and_grads(seed, dtype)


# ---------------------------------------------------------------------------
# The three implementations
# ---------------------------------------------------------------------------
def fastclip_step(kind: str, use_sqnorms: bool = False):
    params, grads = make_data()
    if kind == "adam":
        opt = optim.Adam(params, lr=LR, clip_norm=CLIP)
    else:
        opt = optim.SGD(params, lr=LR, momentum=0.9, clip_norm=CLIP)
    if use_sqnorms:
        sq = np.array([float(np.dot(g.ravel().astype(np.float64), g.ravel())) for g in grads])
        return lambda: opt.step(grads, sqnorms=sq)
    return lambda: opt.step(grads)


def torch_step(kind: str):
    import torch

    torch.set_num_threads(max_threads())
    params, grads = make_data()
    tp = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    for t, g in zip(tp, grads):
        t.grad = torch.from_numpy(g.copy())
    if kind == "adam":
        opt = torch.optim.Adam(tp, lr=LR, foreach=True)
    else:
        opt = torch.optim.SGD(tp, lr=LR, momentum=0.9, foreach=True)

    def step():
        torch.nn.utils.clip_grad_norm_(tp, CLIP, foreach=True)
        opt.step()

    return step


def numpy_step(kind: str):
    """What one writes with NumPy: a norm pass, a scaling pass, then the update."""
    params, grads = make_data()
    state = {"t": 0}
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8

    def adam():
        total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
        coef = min(1.0, CLIP / (total + 1e-6))
        state["t"] += 1
        t = state["t"]
        step_size = LR / (1 - b1**t)
        bc2 = math.sqrt(1 - b2**t)
        for p, g, mi, vi in zip(params, grads, m, v):
            g = g * np.float32(coef)
            mi *= b1
            mi += (1 - b1) * g
            vi *= b2
            vi += (1 - b2) * g * g
            p -= step_size * mi / (np.sqrt(vi) / bc2 + eps)
        return total

    def sgd():
        total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
        coef = min(1.0, CLIP / (total + 1e-6))
        first = state["t"] == 0
        state["t"] += 1
        for p, g, buf in zip(params, grads, m):
            g = g * np.float32(coef)
            if first:
                buf[...] = g
            else:
                buf *= 0.9
                buf += g
            p -= LR * buf
        return total

    return adam if kind == "adam" else sgd


# ---------------------------------------------------------------------------
# pytest-benchmark
# ---------------------------------------------------------------------------
IMPLS = {
    "fastclip": lambda kind: fastclip_step(kind),
    "fastclip-sqnorms": lambda kind: fastclip_step(kind, use_sqnorms=True),
    "torch": torch_step,
    "numpy": numpy_step,
}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_optim_step(benchmark, kind, impl):
    if impl == "torch":
        pytest.importorskip("torch")
    benchmark.group = f"{kind} step + clip_norm, 670k float32 params"
    fn = IMPLS[impl](kind)
    fn()  # warm up (first step allocates nothing in fastclip, torch creates its state)
    benchmark(fn)


def _median(fn, repeat: int = 7, number: int = 20) -> float:
    """Median seconds per call over ``repeat`` batches of ``number`` calls."""
    import timeit

    fn()
    times = timeit.repeat(fn, repeat=repeat, number=number)
    return float(np.median(times)) / number


def _worker(who: str, kind: str, reps: int) -> None:
    import json

    from _common import time_calls, warm

    if who == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            print(json.dumps([]))
            return
    fn = IMPLS[who](kind)
    warm(fn)
    print(json.dumps(time_calls(fn, reps)))


def main() -> None:
    import argparse

    from _common import alternate_in_processes, median_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="adam,sgd")
    ap.add_argument("--rounds", type=int, default=5,
                    help="fresh processes per candidate (alternating), default 5")
    ap.add_argument("--reps", type=int, default=100, help="timed steps per process")
    ap.add_argument("--same-process", action="store_true",
                    help="time the candidates one after the other in this process")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        _worker(a.worker, a.kinds, a.reps)
        return
    print(f"threads: {max_threads()}")
    for kind in a.kinds.split(","):
        if a.same_process:
            res = {name: _median(make(kind)) for name, make in IMPLS.items()}
            for name, t in res.items():
                print(f"{kind:5s} {name:17s} {t * 1e3:8.3f} ms   torch/this "
                      f"{res['torch'] / t:5.2f}x   numpy/this {res['numpy'] / t:5.2f}x")
            continue
        times = alternate_in_processes(__file__, list(IMPLS), ["--kinds", kind, "--reps",
                                                                str(a.reps)], a.rounds)
        print(f"\n{kind} step + clip_norm, {a.rounds} rounds x {a.reps} steps per candidate, "
              "fresh processes")
        print("\n".join(median_table(times, "fastclip")))


if __name__ == "__main__":
    main()
