"""Benchmarks: fastclip.schedules vs PyTorch's lr_scheduler and vs NumPy expressions.

* scalar: one ``sched(step)`` call against one ``scheduler.step()`` of the
  corresponding PyTorch class (target: >= 10x faster, < 0.5 us median);
* array: 1e6 steps in one call against the NumPy expression of the same
  closed form (target: no slower).

Run with ``pytest bench/bench_schedules.py --benchmark-only`` (pytest-benchmark),
or ``python bench/bench_schedules.py`` for a summary table with the ratios.
"""

from __future__ import annotations

import math
import timeit
import warnings

import numpy as np
import pytest

import fastclip
from fastclip import schedules as S

try:
    import torch
    from torch.optim import lr_scheduler as L
except ImportError:  # torch is optional: the scalar comparison is skipped
    torch = None
    L = None

LR = 0.1
N_ARRAY = 1_000_000

# name -> (fastclip schedule, PyTorch scheduler factory(opt) or None)
SCALAR = {
    "step": (S.step(LR, 30, 0.5), lambda o: L.StepLR(o, 30, 0.5)),
    "multistep": (S.multistep(LR, [50, 120, 300], 0.3),
                  lambda o: L.MultiStepLR(o, [50, 120, 300], 0.3)),
    "exponential": (S.exponential(LR, 1, 0.99), lambda o: L.ExponentialLR(o, 0.99)),
    "polynomial": (S.polynomial(LR, decay_steps=10**9, end_value=0.0, power=2.0),
                   lambda o: L.PolynomialLR(o, total_iters=10**9, power=2.0)),
    "cosine": (S.cosine(LR, 10**9), lambda o: L.CosineAnnealingLR(o, T_max=10**9)),
    "linear": (S.linear(LR * 0.25, LR, 10**9),
               lambda o: L.LinearLR(o, start_factor=0.25, total_iters=10**9)),
    "cosine_restarts": (S.cosine_restarts(LR, 10, t_mul=2, eta_min=1e-4),
                        lambda o: L.CosineAnnealingWarmRestarts(o, 10, T_mult=2, eta_min=1e-4)),
    "one_cycle": (S.one_cycle(LR, 10**9), lambda o: L.OneCycleLR(o, LR, total_steps=10**9)),
    "cyclic": (S.cyclic(0.001, LR, 20, mode="triangular2"),
               lambda o: L.CyclicLR(o, 0.001, LR, step_size_up=20, mode="triangular2")),
    # stateful: fastclip's .step(metric) against PyTorch's .step(metric)
    "reduce_on_plateau": (S.reduce_on_plateau(LR), lambda o: L.ReduceLROnPlateau(o)),
    # no PyTorch class with the same closed form: compared with the fastest scheduler step
    "constant": (S.constant(LR), lambda o: L.StepLR(o, 30, 0.5)),
    "piecewise_constant": (S.piecewise_constant([10, 100], [1.0, 0.5, 0.1]),
                           lambda o: L.MultiStepLR(o, [10, 100], 0.5)),
    "inverse_time": (S.inverse_time(LR, 10, 0.5), lambda o: L.ExponentialLR(o, 0.99)),
    "inverse_sqrt": (S.inverse_sqrt(LR), lambda o: L.ExponentialLR(o, 0.99)),
    "warmup": (S.warmup(S.cosine(LR, 10**9), 10**6),
               lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.01, total_iters=10**6),
                                            L.CosineAnnealingLR(o, 10**9)], [10**6])),
    "warmup_cosine": (S.warmup_cosine(peak_value=LR, warmup_steps=10**6, decay_steps=10**9),
                      lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.01, total_iters=10**6),
                                                   L.CosineAnnealingLR(o, 10**9)], [10**6])),
    "join": (S.join([S.linear(0.0, LR, 1000), S.cosine(LR, 10**9)], [1000]),
             lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.01, total_iters=1000),
                                          L.CosineAnnealingLR(o, 10**9)], [1000])),
}

STEP = 123_457  # a step inside every schedule's interesting range

# PyTorch warns once that scheduler.step() runs without optimizer.step(): irrelevant here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _torch_stepper(make):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=LR, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = make(opt)
    if isinstance(sched, L.ReduceLROnPlateau):
        return lambda: sched.step(1.0)
    return sched.step


# closed forms in idiomatic NumPy, same parameters as ARRAY below
def _np_cosine(t, init=LR, T=7e5, alpha=0.01):
    c = 0.5 * (1.0 + np.cos(np.pi * np.minimum(t, T) / T))
    return init * ((1.0 - alpha) * c + alpha)


def _np_warmup_cosine(t, peak=LR, W=5e4, D=9e5, end=1e-4):
    a = end / peak
    lin = peak * t / W
    c = 0.5 * (1.0 + np.cos(np.pi * np.minimum(t - W, D - W) / (D - W)))
    return np.where(t < W, lin, peak * ((1.0 - a) * c + a))


def _np_step(t):
    return LR * 0.5 ** np.floor(t / 3e4)


def _np_multistep(t):
    return LR * 0.3 ** np.searchsorted(np.array([1e5, 4e5, 8e5]), t, side="right")


def _np_exponential(t):
    return LR * 0.5 ** (t / 1e5)


def _np_polynomial(t):
    return (LR - 1e-4) * (1.0 - np.minimum(t, 8e5) / 8e5) ** 2.0 + 1e-4


def _np_inverse_sqrt(t):
    return LR / np.sqrt(1.0 + t / 100.0)


def _np_linear(t):
    return (LR - 0.0) * (1.0 - np.minimum(t, 6e5) / 6e5) + 0.0


def _np_cosine_restarts(t, T0=1000.0):
    tcur = np.mod(t, T0)
    return 1e-4 + (LR - 1e-4) * (1.0 + np.cos(np.pi * tcur / T0)) / 2.0


def _np_cyclic(t, base=1e-3, mx=LR, up=2000.0, down=3000.0):
    total = up + down
    ratio = up / total
    cycle = np.floor(1.0 + t / total)
    x = 1.0 + t / total - cycle
    scale = np.where(x <= ratio, x / ratio, (x - 1.0) / (ratio - 1.0))
    return base + (mx - base) * scale * (1.0 / 2.0 ** (cycle - 1.0))


def _np_one_cycle(t, mx=LR, total=N_ARRAY, pct=0.3):
    init = mx / 25.0
    mn = init / 1e4
    e1 = pct * total - 1
    e2 = total - 1.0
    p1 = t / e1
    p2 = np.minimum((t - e1) / (e2 - e1), 1.0)
    up = mx + (init - mx) / 2.0 * (np.cos(np.pi * p1) + 1.0)
    down = mn + (mx - mn) / 2.0 * (np.cos(np.pi * p2) + 1.0)
    return np.where(t <= e1, up, down)


ARRAY = {
    "step": (S.step(LR, 3e4, 0.5), _np_step),
    "multistep": (S.multistep(LR, [1e5, 4e5, 8e5], 0.3), _np_multistep),
    "exponential": (S.exponential(LR, 1e5, 0.5), _np_exponential),
    "polynomial": (S.polynomial(LR, decay_steps=8e5, end_value=1e-4, power=2.0), _np_polynomial),
    "inverse_sqrt": (S.inverse_sqrt(LR, 100), _np_inverse_sqrt),
    "cosine": (S.cosine(LR, 7e5, alpha=0.01), _np_cosine),
    "linear": (S.linear(LR, 0.0, 6e5), _np_linear),
    "warmup_cosine": (S.warmup_cosine(peak_value=LR, warmup_steps=5e4, decay_steps=9e5,
                                      end_value=1e-4), _np_warmup_cosine),
    "cosine_restarts": (S.cosine_restarts(LR, 1000, eta_min=1e-4), _np_cosine_restarts),
    "cyclic": (S.cyclic(1e-3, LR, 2000, 3000, mode="triangular2"), _np_cyclic),
    "one_cycle": (S.one_cycle(LR, N_ARRAY), _np_one_cycle),
}

STEPS = np.arange(N_ARRAY, dtype=np.float64)


def _check_array_formulas():
    for name, (sched, fn) in ARRAY.items():
        np.testing.assert_allclose(sched(STEPS), fn(STEPS), rtol=1e-9, atol=1e-15,
                                   err_msg=name)


# ---------------------------------------------------------------------------
# pytest-benchmark
# ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _compiled():
    with fastclip.use_implementation("c"):
        yield


def _fastclip_call(name):
    sched = SCALAR[name][0]
    if isinstance(sched, S.ReduceLROnPlateau):
        return lambda: sched.step(1.0)
    return lambda: sched(STEP)


@pytest.mark.parametrize("name", sorted(SCALAR))
def test_scalar_fastclip(benchmark, name):
    benchmark.group = f"scalar-{name}"
    sched = SCALAR[name][0]
    if isinstance(sched, S.ReduceLROnPlateau):
        benchmark(sched.step, 1.0)
    else:
        benchmark(sched, STEP)


@pytest.mark.parametrize("name", sorted(SCALAR))
def test_scalar_torch(benchmark, name):
    if torch is None:
        pytest.skip("torch is not installed")
    benchmark.group = f"scalar-{name}"
    benchmark(_torch_stepper(SCALAR[name][1]))


@pytest.mark.parametrize("name", sorted(ARRAY))
def test_array_fastclip(benchmark, name):
    sched, fn = ARRAY[name]
    benchmark.group = f"array1e6-{name}"
    out = benchmark(sched, STEPS)
    np.testing.assert_allclose(out, fn(STEPS), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("name", sorted(ARRAY))
def test_array_numpy(benchmark, name):
    benchmark.group = f"array1e6-{name}"
    benchmark(ARRAY[name][1], STEPS)


# ---------------------------------------------------------------------------
# summary table: python bench/bench_schedules.py
# ---------------------------------------------------------------------------


def _per_call(fn, number, repeat=15):
    """(median, min) seconds per call over `repeat` timings of `number` calls."""
    times = np.array(timeit.repeat(fn, number=number, repeat=repeat)) / number
    return float(np.median(times)), float(times.min())


def main() -> None:
    fastclip.set_implementation("c")
    _check_array_formulas()
    warnings.simplefilter("ignore")
    k = fastclip.get_config()["kernels"]
    print(f"threads: {k.get('threads')}, openmp: {k.get('openmp')}, simd: {k.get('simd')}")
    print("\nscalar call: median (min) per call")
    print(f"{'schedule':<20}{'fastclip us':>16}{'torch step us':>18}{'speed-up':>10}")
    for name, (sched, make) in SCALAR.items():
        fc, fc_min = _per_call(_fastclip_call(name), 20_000)
        if torch is not None:
            tt, tt_min = _per_call(_torch_stepper(make), 500)
            print(f"{name:<20}{fc * 1e6:>9.3f} ({fc_min * 1e6:.3f}){tt * 1e6:>11.2f} "
                  f"({tt_min * 1e6:.2f}){tt / fc:>9.0f}x")
        else:
            print(f"{name:<20}{fc * 1e6:>9.3f} ({fc_min * 1e6:.3f})")
    print(f"\n{N_ARRAY} steps as one array: median (min) per call")
    print(f"{'schedule':<20}{'fastclip ms':>18}{'numpy ms':>18}{'median ratio':>14}")
    for name, (sched, fn) in ARRAY.items():
        fc, fc_min = _per_call(lambda s=sched: s(STEPS), 1, repeat=21)
        npt, np_min = _per_call(lambda f=fn: f(STEPS), 1, repeat=21)
        print(f"{name:<20}{fc * 1e3:>10.2f} ({fc_min * 1e3:.2f}){npt * 1e3:>10.2f} "
              f"({np_min * 1e3:.2f}){npt / fc:>12.1f}x")
    _ = math.pi


if __name__ == "__main__":
    main()
