"""Cost of explosion monitoring on the MLP training step (784-512-512-10, batch 256).

The step is the one of ``bench/bench_mlp.py``: forward, softmax cross-entropy,
backward (its fused passes record each gradient's sum of squares), and
``SGD(clip_norm=1.0).step(grads, sqnorms=...)``, float32. The monitored step
adds exactly what :func:`fastclip.train.fit` adds per step:
``GradientMonitor.observe`` (running median of the global norm, per-layer norms
into a ring buffer), reading the learning rate, and ``History.record_step``.
No extra pass over the gradients: the monitor only sees the per-layer sums of
squares. Target: at most 5% overhead.

Run ``python bench/bench_monitor.py [--reps 200]`` for the table (the two
variants interleaved so that machine load hits both alike), or
``pytest bench/bench_monitor.py --benchmark-only``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pytest

from _common import SIZES, fastclip_mlp, mlp_batch

from fastclip import nn as fnn
from fastclip.optim import SGD
from fastclip.train import GradientMonitor, History

BATCH = 256


class Step:
    def __init__(self, monitored: bool, seed: int = 0) -> None:
        self.x, self.y = mlp_batch(BATCH, seed)
        self.model = fastclip_mlp(seed)
        self.opt = SGD(self.model.parameters(), lr=0.01, clip_norm=1.0)
        self.grads = self.model.gradients()
        self.monitored = monitored
        self.names = self.model.parameter_names()
        self.monitor = GradientMonitor("skip")
        self.history = History(self.names)
        self.t = 0

    def __call__(self) -> float:
        m = self.model
        loss, dlogits = fnn.softmax_cross_entropy(m.forward(self.x), self.y)
        m.backward(dlogits, input_grad=False)
        sq = m.grad_sqnorms()
        if self.monitored:
            lr = self.opt.lr
            ev = self.monitor.observe(self.t, sq, loss=loss, names=self.names, clipped=True)
            self.opt.step(self.grads, sqnorms=sq)
            self.history.record_step(self.t, 0, loss, float(np.sqrt(sq.sum())), lr, ev is None,
                                     sq)
        else:
            self.opt.step(self.grads, sqnorms=sq)
        self.t += 1
        return loss


@pytest.mark.parametrize("monitored", [False, True], ids=["bare", "monitored"])
def test_mlp_step(benchmark, monitored):
    step = Step(monitored)
    benchmark(step)


def test_monitor_observe_alone(benchmark):
    """Just the per-step bookkeeping (observe + record_step) on 6 layers."""
    mon = GradientMonitor("skip")
    hist = History([f"p{i}" for i in range(6)])
    sq = np.linspace(0.5, 2.0, 6)
    state = {"t": 0}

    def bookkeeping():
        t = state["t"]
        mon.observe(t, sq, loss=1.0)
        hist.record_step(t, 0, 1.0, 1.0, 0.01, True, sq)
        state["t"] = t + 1

    benchmark(bookkeeping)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    bare, mon = Step(False), Step(True)
    for _ in range(10):
        bare()
        mon()
    tb, tm = [], []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        bare()
        t1 = time.perf_counter()
        mon()
        t2 = time.perf_counter()
        tb.append(t1 - t0)
        tm.append(t2 - t1)
    mb, mm = float(np.median(tb)), float(np.median(tm))
    # the bookkeeping alone, timed directly (robust to the noise of the whole step)
    m2 = GradientMonitor("skip")
    h2 = History(bare.names)
    sq = bare.model.grad_sqnorms()
    n = 20000
    t0 = time.perf_counter()
    for t in range(n):
        m2.observe(t, sq, loss=1.0, names=bare.names, clipped=True)
        h2.record_step(t, 0, 1.0, 1.0, 0.01, True, sq)
    book = (time.perf_counter() - t0) / n
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, float32, {args.reps} reps "
          "(medians)")
    print(f"  bare step:       {mb * 1e3:8.3f} ms")
    print(f"  monitored step:  {mm * 1e3:8.3f} ms   ({(mm / mb - 1) * 100:+.1f}%)")
    print(f"  bookkeeping alone (observe + record_step): {book * 1e6:.1f} us "
          f"= {book / mb * 100:.2f}% of the bare step")


if __name__ == "__main__":
    main()
