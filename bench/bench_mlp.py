"""One full training step of a 784-512-512-10 ReLU MLP: fastclip vs NumPy vs PyTorch.

The step: forward, softmax cross-entropy, backward, global-norm clipping at 1.0
and SGD (lr 0.01), float32, at batch sizes 32, 256 and 2048; same initial
weights, same data and the same number of threads for the three.

- fastclip: ``fastclip.nn.MLP`` + ``softmax_cross_entropy`` +
  ``backward(input_grad=False)`` (its fused passes record the gradients' sums of
  squares) + ``fastclip.optim.SGD(clip_norm=1.0).step(grads, sqnorms=...)``
  (clipping fused into the update pass, no norm pass).
- NumPy: the idiomatic hand-written forward/backward (``@``, ``np.maximum``,
  masks), the global norm as a loop of ``np.linalg.norm``, ``g *= coef`` and
  ``p -= lr * g``.
- PyTorch CPU: ``nn.Sequential(Linear, ReLU, Linear, ReLU, Linear)``,
  ``CrossEntropyLoss``, ``clip_grad_norm_``, ``optim.SGD``.

GEMM share: the 8 GEMMs of a fastclip step (3 forward, 3 dW, 2 dx; no dx for
the input) are timed alone through the scipy-openblas32 library that fastclip's
layers call (``fastclip._blas``, through ctypes) with preallocated outputs;
share = GEMM median / fastclip step median.

Run ``python bench/bench_mlp.py [--threads N] [--reps 30]`` for the table (each
candidate in fresh processes, rounds alternating between the candidates, so that
no library's spinning idle threads slow another's step; ``--same-process``
interleaves the steps in one process instead), or
``pytest bench/bench_mlp.py --benchmark-only`` (threads: ``FASTCLIP_BENCH_THREADS``,
default every CPU; BLAS, OpenMP and torch all get the same number).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pytest
from _common import LR, MAX_NORM, SIZES, fastclip_mlp, mlp_batch, time_calls, torch_mlp, values

from fastclip import nn as fnn

BATCHES = (32, 256, 2048)


def make_problem(batch: int, seed: int = 0):
    return mlp_batch(batch, seed)


# ---------------------------------------------------------------------------
# fastclip
# ---------------------------------------------------------------------------
class FastclipStep:
    def __init__(self, x, y, seed=0, clip=True):
        from fastclip.optim import SGD

        self.model = fastclip_mlp(seed)
        self.opt = SGD(self.model.parameters(), lr=LR, clip_norm=MAX_NORM if clip else None)
        self.grads = self.model.gradients()
        self.x, self.y = x, y

    def initial_params(self):
        return [p.copy() for p in values(self.model)]

    def __call__(self):
        m = self.model
        loss, dlogits = fnn.softmax_cross_entropy(m.forward(self.x), self.y)
        m.backward(dlogits, input_grad=False)
        self.opt.step(self.grads, sqnorms=m.grad_sqnorms())
        return loss


# ---------------------------------------------------------------------------
# idiomatic NumPy
# ---------------------------------------------------------------------------
class NumpyStep:
    def __init__(self, x, y, params):
        self.x, self.y = x, y
        self.params = [p.copy() for p in params]  # W0, b0, W1, b1, W2, b2
        self.rows = np.arange(x.shape[0])

    def __call__(self):
        W0, b0, W1, b1, W2, b2 = self.params
        x, y, rows = self.x, self.y, self.rows
        n = x.shape[0]
        h1 = x @ W0 + b0
        a1 = np.maximum(h1, 0)
        h2 = a1 @ W1 + b1
        a2 = np.maximum(h2, 0)
        z = a2 @ W2 + b2
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        loss = -np.log(p[rows, y]).mean()
        dz = p
        dz[rows, y] -= 1
        dz /= n
        gW2 = a2.T @ dz
        gb2 = dz.sum(axis=0)
        da2 = dz @ W2.T
        da2 *= h2 > 0
        gW1 = a1.T @ da2
        gb1 = da2.sum(axis=0)
        da1 = da2 @ W1.T
        da1 *= h1 > 0
        gW0 = x.T @ da1
        gb0 = da1.sum(axis=0)
        grads = [gW0, gb0, gW1, gb1, gW2, gb2]
        total = np.linalg.norm([np.linalg.norm(g) for g in grads])
        coef = MAX_NORM / (total + 1e-6)
        if coef < 1:
            for g in grads:
                g *= coef
        for prm, g in zip(self.params, grads):
            prm -= LR * g
        return float(loss)


# ---------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------
class TorchStep:
    def __init__(self, x, y, params):
        import torch

        self.torch = torch
        self.model = torch_mlp(params)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(y)

    def __call__(self):
        self.opt.zero_grad()
        loss = self.loss_fn(self.model(self.x), self.y)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), MAX_NORM)
        self.opt.step()
        return loss.item()


# ---------------------------------------------------------------------------
# GEMMs alone (the 8 GEMMs of a fastclip step, same BLAS)
# ---------------------------------------------------------------------------
class GemmOnly:
    """The 8 GEMMs of a fastclip step, through the BLAS fastclip's layers call
    (``fastclip._blas``: scipy-openblas32 or MKL)."""

    def __init__(self, x, params):
        import ctypes

        from fastclip import _blas, _nn  # importing _nn loads the library into _blas

        n = x.shape[0]
        self.x = x
        self.W = [params[0], params[2], params[4]]
        self.acts = [x] + [np.zeros((n, s), np.float32) for s in SIZES[1:]]
        self.dz = [np.ones((n, s), np.float32) * 1e-3 for s in SIZES[1:]]
        self.dW = [np.zeros_like(w) for w in self.W]
        self.dx = [np.zeros((n, s), np.float32) for s in SIZES[1:-1]]
        assert _nn.gemm_library() and _blas._lib is not None
        f = getattr(_blas._lib, _blas._sgemm_name)
        c_int, c_float, ref = ctypes.c_int, ctypes.c_float, ctypes.byref
        one, zero = c_float(1.0), c_float(0.0)

        def sg(ta, tb, m, nn, k, a, lda, b, ldb, c, ldc):
            f(ctypes.c_char_p(ta), ctypes.c_char_p(tb), ref(c_int(m)), ref(c_int(nn)),
              ref(c_int(k)), ref(one), ctypes.c_void_p(a.ctypes.data), ref(c_int(lda)),
              ctypes.c_void_p(b.ctypes.data), ref(c_int(ldb)), ref(zero),
              ctypes.c_void_p(c.ctypes.data), ref(c_int(ldc)))
        self.sg = sg

    def __call__(self):
        sg = self.sg
        # row-major C = A @ B is column-major C^T = B^T A^T (what fastclip.nn calls)
        for i, w in enumerate(self.W):
            a, y = self.acts[i], self.acts[i + 1]
            n_in, n_out = w.shape
            sg(b"N", b"N", n_out, a.shape[0], n_in, w, n_out, a, n_in, y, n_out)
        for i, w in enumerate(self.W):
            a, dz = self.acts[i], self.dz[i]
            n_in, n_out = w.shape
            sg(b"N", b"T", n_out, n_in, a.shape[0], dz, n_out, a, n_in, self.dW[i], n_out)
            if i > 0:
                sg(b"T", b"N", n_in, a.shape[0], n_out, w, n_out, dz, n_out, self.dx[i - 1],
                   n_in)


def default_threads() -> int:
    """FASTCLIP_BENCH_THREADS, else every CPU (the same for the three)."""
    return int(os.environ.get("FASTCLIP_BENCH_THREADS", os.cpu_count() or 1))


def set_threads(n: int) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


# ---------------------------------------------------------------------------
# pytest-benchmark
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _threads():
    set_threads(default_threads())


@pytest.fixture(scope="module", params=BATCHES, ids=lambda b: f"b{b}")
def problem(request, _threads):
    x, y = make_problem(request.param)
    fc = FastclipStep(x, y)
    return request.param, x, y, fc, fc.initial_params()


def test_mlp_step_fastclip(benchmark, problem):
    batch, _, _, fc, _ = problem
    benchmark.group = f"mlp-step-b{batch}"
    benchmark(fc)


def test_mlp_step_numpy(benchmark, problem):
    batch, x, y, _, params = problem
    benchmark.group = f"mlp-step-b{batch}"
    benchmark(NumpyStep(x, y, params))


def test_mlp_step_torch(benchmark, problem):
    pytest.importorskip("torch")
    batch, x, y, _, params = problem
    benchmark.group = f"mlp-step-b{batch}"
    benchmark(TorchStep(x, y, params))


def test_mlp_step_gemms_only(benchmark, problem):
    batch, x, _, _, params = problem
    benchmark.group = f"mlp-step-b{batch}"
    benchmark(GemmOnly(x, params))


# ---------------------------------------------------------------------------
# stand-alone table
# ---------------------------------------------------------------------------
NAMES = ("fastclip", "fastclip-noclip", "numpy", "gemm", "torch")


def _make_impls(batch: int, only: str | None = None) -> dict:
    """The candidates (or only the one named: a worker process builds nothing else,
    so no other library's threads or imports are in it)."""
    x, y = make_problem(batch)
    params = FastclipStep(x, y).initial_params()
    makers = {
        "fastclip": lambda: FastclipStep(x, y),
        "fastclip-noclip": lambda: FastclipStep(x, y, clip=False),
        "numpy": lambda: NumpyStep(x, y, params),
        "gemm": lambda: GemmOnly(x, params),
        "torch": lambda: TorchStep(x, y, params),
    }
    impls = {}
    for name, make in makers.items():
        if only is not None and name != only:
            continue
        try:
            impls[name] = make()
        except ImportError:  # torch is optional
            pass
    return impls


def _time(f, reps: int, warmup: float = 0.0) -> list[float]:
    f()  # warm up (allocations, thread pools)
    f()
    t_end = time.perf_counter() + warmup
    while time.perf_counter() < t_end:  # until new threads have their own CPUs
        f()
    return time_calls(f, reps)


def run(batches, reps: int, threads: int) -> list[dict]:
    """Same process, the candidates interleaved step by step."""
    set_threads(threads)
    rows = []
    for batch in batches:
        impls = _make_impls(batch)
        r = max(5, reps if batch < 2048 else reps // 3)
        times = {k: [] for k in impls}
        for f in impls.values():
            f()
            f()
        for _ in range(r):
            for k, f in impls.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
        rows.append({"batch": batch, **{k: float(np.median(v)) * 1e3 for k, v in times.items()}})
    return rows


def run_isolated(batches, reps: int, threads: int, rounds: int = 3) -> list[dict]:
    """One fresh process per candidate and round, rounds alternating between the
    candidates: no library's idle worker threads (OpenBLAS, OpenMP and torch all
    spin for a while after a call) compete with another library's step."""
    import json
    import subprocess
    import sys

    rows = []
    for batch in batches:
        r = max(5, reps if batch < 2048 else reps // 3)
        per = max(3, -(-r // rounds))
        names = list(NAMES)
        times: dict[str, list[float]] = {k: [] for k in names}
        for _ in range(rounds):
            for k in names:
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", k, "--batches", str(batch),
                     "--reps", str(per), "--threads", str(threads)],
                    check=True, capture_output=True, text=True).stdout
                times[k] += json.loads(out.strip().splitlines()[-1])
        rows.append({"batch": batch, **{k: float(np.median(v)) * 1e3
                                        for k, v in times.items() if v}})
    return rows


def clip_share(batch: int, reps: int, threads: int, rounds: int) -> tuple[float, float, float]:
    """The clip's share of the fastclip step: ``clip_norm=1.0`` against the same
    step without clipping, both models in one fresh process per round (same
    threads, same cache state), steps alternating, 0.3 s warm-up; the median over
    rounds of each round's (clip median, no-clip median). Returns (clip ms,
    no-clip ms, share)."""
    import json
    import subprocess
    import sys

    pairs = []
    for _ in range(rounds):
        out = subprocess.run(
            [sys.executable, __file__, "--worker", "clip-share", "--batches", str(batch),
             "--reps", str(reps), "--threads", str(threads)],
            check=True, capture_output=True, text=True).stdout
        pairs.append(json.loads(out.strip().splitlines()[-1]))
    c = float(np.median([p[0] for p in pairs])) * 1e3
    nc = float(np.median([p[1] for p in pairs])) * 1e3
    share = float(np.median([(p[0] - p[1]) / p[0] for p in pairs]))
    return c, nc, share


def _clip_share_worker(batch: int, reps: int, threads: int) -> None:
    import json

    set_threads(threads)
    x, y = make_problem(batch)
    a, b = FastclipStep(x, y), FastclipStep(x, y, clip=False)
    t_end = time.perf_counter() + 0.3
    while time.perf_counter() < t_end:
        a()
        b()
    ta, tb = [], []
    for _ in range(reps):
        for f, ts in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
    print(json.dumps([float(np.median(ta)), float(np.median(tb))]))


def _worker(name: str, batch: int, reps: int, threads: int) -> None:
    if name == "clip-share":
        _clip_share_worker(batch, reps, threads)
        return
    import json

    set_threads(threads)
    impls = _make_impls(batch, only=name)
    print(json.dumps(_time(impls[name], reps, warmup=0.3) if name in impls else []))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--same-process", action="store_true",
                    help="interleave the candidates step by step in this process "
                         "(default: a fresh process per candidate and round)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="fresh processes per candidate (alternating), default 5")
    ap.add_argument("--clip-share", action="store_true",
                    help="only the clip's share of the fastclip step (clip_norm=1.0 vs no "
                         "clipping, alternating in one process per round)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    if a.worker:
        _worker(a.worker, batches[0], a.reps, a.threads)
        return
    if a.clip_share:
        print(f"threads={a.threads}, {a.rounds} processes x {a.reps} alternating step pairs")
        print("| batch | with clip_norm=1.0 | without | clip share |")
        print("|---:|---:|---:|---:|")
        for b in batches:
            c, nc, share = clip_share(b, a.reps, a.threads, a.rounds)
            print(f"| {b} | {c:.3f} ms | {nc:.3f} ms | {100 * share:.1f}% |")
        return
    how = "same process, interleaved" if a.same_process else "one process per candidate"
    if a.same_process:
        rows = run(batches, a.reps, a.threads)
    else:
        rows = run_isolated(batches, a.reps, a.threads, a.rounds)
    print(f"threads={a.threads}, {how}, medians in ms")
    print("| batch | fastclip | NumPy | PyTorch | GEMMs alone | no clip | vs torch | vs NumPy "
          "| step / GEMMs | clip share |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    nan = float("nan")
    for r in rows:
        t, f, g = r.get("torch", nan), r["fastclip"], r["gemm"]
        nc = r.get("fastclip-noclip", nan)
        print(f"| {r['batch']} | {f:.3f} | {r['numpy']:.3f} | {t:.3f} | {g:.3f} | {nc:.3f} | "
              f"{t / f:.2f}x | {r['numpy'] / f:.2f}x | {f / g:.2f}x | "
              f"{100 * (f - nc) / f:.1f}% |")


if __name__ == "__main__":
    main()
