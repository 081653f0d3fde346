"""fastclip's fused clip + Adam on a torch CPU model vs torch's own clip + Adam.

One optimiser step (global-norm clipping to 1.0, then Adam, lr 1e-3) on the
gradients already in ``p.grad`` of a float32 torch model:

- fastclip: ``fastclip.optim.Adam(model.parameters(), clip_norm=1.0).step()``,
  which reads each ``p.grad`` and updates each parameter in place through shared
  memory (one C call: the norm pass, then the fused clip + update pass);
- torch fused: ``torch.nn.utils.clip_grad_norm_(params, 1.0)`` then
  ``torch.optim.Adam(params, fused=True).step()``;
- torch foreach: the same with ``Adam(foreach=True)``.

Two models: the 784-512-512-10 MLP (6 tensors, 670k parameters) and a model of
200 small tensors (100 ``Linear(16, 16)``: 54k parameters), where per-tensor
overhead dominates.

Each candidate runs in its own fresh process, one process per candidate and
round, rounds alternating between the candidates; every process warms up for
``--warmup`` seconds before timing ``--reps`` steps one by one. The table shows
the median over all rounds and the ratio of medians against the faster torch
combination. fastclip, OpenMP and torch get the same number of threads.

Run: ``python bench/bench_optim_torch.py [--threads N] [--rounds 5] [--reps 200]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

CANDIDATES = ("fastclip", "torch_fused", "torch_foreach")
MODELS = ("mlp", "small200")


def _model(name: str):
    import torch

    torch.manual_seed(0)
    if name == "mlp":
        m = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 10))
    else:
        m = torch.nn.Sequential(*[torch.nn.Linear(16, 16) for _ in range(100)])
    for p in m.parameters():
        p.grad = torch.randn_like(p) * 0.1  # total norm well above 1: every step clips
    return m


def _step_fn(cand: str, model):
    import torch

    params = list(model.parameters())
    if cand == "fastclip":
        from fastclip.optim import Adam

        opt = Adam(params, lr=1e-3, clip_norm=1.0)
        return opt.step
    kw = {"fused": True} if cand == "torch_fused" else {"foreach": True}
    opt = torch.optim.Adam(params, lr=1e-3, **kw)
    clip = torch.nn.utils.clip_grad_norm_

    def step():
        clip(params, 1.0)
        opt.step()

    return step


def set_threads(n: int) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    import torch

    torch.set_num_threads(n)


def _worker(cand: str, model: str, reps: int, warmup: float, threads: int) -> None:
    set_threads(threads)
    import torch

    with torch.no_grad():
        m = _model(model)
        step = _step_fn(cand, m)
        _common.warm(step, seconds=warmup)
        out = _common.time_calls(step, reps)
    print(json.dumps(out))


def run(models, rounds: int, reps: int, warmup: float, threads: int) -> list[dict]:
    rows = []
    for model in models:
        times: dict[str, list[float]] = {c: [] for c in CANDIDATES}
        for _ in range(rounds):
            for c in CANDIDATES:
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", c, "--models", model,
                     "--reps", str(reps), "--warmup", str(warmup), "--threads", str(threads)],
                    check=True, capture_output=True, text=True).stdout
                times[c] += json.loads(out.strip().splitlines()[-1])
        rows.append({"model": model, **{c: float(np.median(v)) * 1e6 for c, v in times.items()}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int,
                    default=int(os.environ.get("FASTCLIP_BENCH_THREADS", os.cpu_count() or 1)))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--warmup", type=float, default=0.5, help="seconds per process")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    models = a.models.split(",")
    if a.worker:
        _worker(a.worker, models[0], a.reps, a.warmup, a.threads)
        return
    rows = run(models, a.rounds, a.reps, a.warmup, a.threads)
    print(f"threads={a.threads}, {a.rounds} rounds x {a.reps} steps per candidate, "
          "one process per candidate and round; medians in microseconds")
    print("| model | fastclip Adam(clip_norm) | clip_grad_norm_ + Adam(fused) | "
          "clip_grad_norm_ + Adam(foreach) | speed-up vs faster torch |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        best = min(r["torch_fused"], r["torch_foreach"])
        print(f"| {r['model']} | {r['fastclip']:.1f} | {r['torch_fused']:.1f} | "
              f"{r['torch_foreach']:.1f} | {best / r['fastclip']:.2f}x |")


if __name__ == "__main__":
    main()
