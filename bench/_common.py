"""The models and data the benchmarks share (not a benchmark).

The 784-512-512-10 ReLU MLP of the MNIST-sized benchmarks (``SIZES``), its
input batches, its parameter-shaped gradient sets and the PyTorch twin with the
same weights. The bench scripts import it as ``_common`` (``python bench/x.py``
and ``pytest bench/x.py`` both put ``bench/`` on ``sys.path``).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

SIZES = (784, 512, 512, 10)
LR = 0.01  # the MLP step's SGD learning rate
MAX_NORM = 1.0  # the MLP step's global-norm clipping threshold


def mlp_shapes(sizes: tuple[int, ...] = SIZES) -> list[tuple[int, ...]]:
    """The parameter shapes of an MLP, in fastclip's order: W0 (in, out), b0, W1, b1, ..."""
    out: list[tuple[int, ...]] = []
    for a, b in itertools.pairwise(sizes):
        out += [(a, b), (b,)]
    return out


def mlp_batch(batch: int, seed: int = 0,
              sizes: tuple[int, ...] = SIZES) -> tuple[np.ndarray, np.ndarray]:
    """A float32 input batch ``(batch, sizes[0])`` and integer class labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=batch)
    return x, y


def fastclip_mlp(seed: int = 0, sizes: tuple[int, ...] = SIZES, dtype: Any = np.float32) -> Any:
    """``fastclip.nn.MLP(sizes, activation="relu")`` with seeded initial weights."""
    from fastclip import nn

    return nn.MLP(sizes, activation="relu", rng=seed, dtype=dtype)


def values(model: Any) -> list[np.ndarray]:
    """The parameter value arrays of a fastclip model (``p.data`` of a Parameter)."""
    return [p if isinstance(p, np.ndarray) else p.data for p in model.parameters()]


def gradient_set(name: str, seed: int = 2024) -> list[np.ndarray]:
    """A float32 gradient set: ``"mlp"`` (the MLP's 6 parameter shapes, 669,706
    elements), ``"500x256"`` (500 arrays of 256) or ``"8x4M"`` (8 arrays of 4 Mi)."""
    rng = np.random.default_rng(seed)
    if name == "mlp":
        return [rng.standard_normal(s, dtype=np.float32) * np.float32(0.05)
                for s in mlp_shapes()]
    if name == "500x256":
        return [rng.standard_normal(256, dtype=np.float32) for _ in range(500)]
    if name == "8x4M":
        return [rng.standard_normal(4 << 20, dtype=np.float32) for _ in range(8)]
    raise ValueError(f"name must be 'mlp', '500x256' or '8x4M', got {name!r}")


def mlp_params_and_grads(seed: int = 0,
                         dtype: Any = np.float32) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The MLP's parameters (He-scaled normal) and small gradients (0.01 normal)."""
    rng = np.random.default_rng(seed)
    params, grads = [], []
    for fan_in, fan_out in itertools.pairwise(SIZES):
        for shape in ((fan_in, fan_out), (fan_out,)):
            params.append((rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype))
            grads.append((rng.standard_normal(shape) * 0.01).astype(dtype))
    return params, grads


def torch_mlp(params: list[np.ndarray], sizes: tuple[int, ...] = SIZES) -> Any:
    """The PyTorch twin of a fastclip MLP: ``nn.Sequential(Linear, ReLU, ..., Linear)``
    holding copies of ``params`` (fastclip's W is (in, out), torch's weight (out, in))."""
    import torch

    layers: list[Any] = []
    for i in range(len(sizes) - 1):
        lin = torch.nn.Linear(sizes[i], sizes[i + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(params[2 * i].T.copy()))
            lin.bias.copy_(torch.from_numpy(params[2 * i + 1]))
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


# ---------------------------------------------------------------------------
# Timing: each candidate in fresh processes, rounds alternating between them
# ---------------------------------------------------------------------------
def warm(fn: Any, setup: Any = None, seconds: float = 0.5) -> None:
    """Run ``fn`` for a while first: a thread that a library (fastclip's helpers,
    OpenMP, OpenBLAS, torch) has just started shares its creator's CPU until the
    scheduler moves it. A training run lives far longer; every candidate gets the
    same warm-up."""
    import time

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if setup is not None:
            setup()
        fn()


def other_work(batch: int = 128) -> Any:
    """About 1 ms of other work, as between two clipping calls in a training loop:
    the forward GEMM of the MLP's first layer (``batch`` x 784 @ 784 x 512, float32,
    through NumPy's BLAS). Returns a callable."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((batch, SIZES[0]), dtype=np.float32)
    b = rng.standard_normal((SIZES[0], SIZES[1]), dtype=np.float32)
    c = np.empty((batch, SIZES[1]), np.float32)
    return lambda: np.matmul(a, b, out=c)


def time_calls(fn: Any, reps: int, setup: Any = None, between: Any = None) -> list[float]:
    """Seconds per call of ``fn``; ``setup`` and ``between`` run before each call,
    untimed (``between`` is the loop pattern's other work)."""
    import time

    out = []
    for _ in range(reps):
        if setup is not None:
            setup()
        if between is not None:
            between()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median_us(fn: Any, warmup: int, reps: int) -> float:
    """Median microseconds of ``fn()`` back to back, after ``warmup`` untimed calls."""
    import statistics

    for _ in range(warmup):
        fn()
    return statistics.median(time_calls(fn, reps)) * 1e6


def alternate_in_processes(script: str, candidates: list[str], args: list[str],
                           rounds: int) -> dict[str, list[float]]:
    """Run ``python script --worker <candidate> *args`` for every candidate, in
    ``rounds`` rounds alternating between the candidates, each in a fresh process
    (no library's idle threads compete with another's call, no shared cache
    state); each worker prints a JSON list of seconds per call as its last line."""
    import json
    import subprocess
    import sys

    times: dict[str, list[float]] = {c: [] for c in candidates}
    for _ in range(rounds):
        for c in candidates:
            out = subprocess.run([sys.executable, script, "--worker", c, *args], check=True,
                                 capture_output=True, text=True).stdout
            times[c] += json.loads(out.strip().splitlines()[-1])
    return times


def median_table(times: dict[str, list[float]], base: str) -> list[str]:
    """Markdown rows: candidate, median (us), ratio of medians to ``base``."""
    med = {k: float(np.median(v)) * 1e6 for k, v in times.items() if v}
    rows = [f"| {k} | {m:.1f} | {m / med[base]:.2f}x |" for k, m in med.items()]
    return ["| candidate | median (us) | / " + base + " |", "|---|---:|---:|", *rows]
