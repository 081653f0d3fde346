"""Gradient clipping: fastclip vs its reference vs the idiomatic NumPy loop vs PyTorch.

Run with::

    python -m pytest bench/bench_clip.py --benchmark-only --benchmark-group-by=group \
        --benchmark-columns=min,median,mean,rounds --benchmark-sort=name

Every group times the candidates on the same float32 data. Each round starts from
a fresh copy of the original gradients (``benchmark.pedantic`` with a ``setup``
that restores them; the copy is not timed), so the "clip" regime really scales
every round and the "under" regime never does, whichever candidate ran before.

Gradient sets (float32):
- ``mlp``: the parameters of a 784-512-512-10 MLP (6 arrays, 669,706 elements);
- ``500x256``: 500 arrays of 256 elements;
- ``8x4M``: 8 arrays of 4 Mi elements.

Regimes: ``clip`` (max_norm = total norm / 2: every array is scaled) and
``under`` (max_norm = 2 * total norm: the coefficient is 1).

``python bench/bench_clip.py [--sets mlp] [--pattern tight|loop] [--rounds 5]``
prints a table instead: each candidate in fresh processes, rounds alternating
between the candidates, each after the same warm-up; medians and the ratio of
medians. Pattern ``tight`` calls ``clip_grad_norm_`` back to back (only the
untimed restore between calls); ``loop`` runs about 1 ms of other work (a GEMM
of the MLP's first layer) before each call, as in a training loop, where the
helper threads have gone to sleep and BLAS threads are alive.
"""

from __future__ import annotations

import numpy as np
import pytest
from _common import gradient_set, warm

from fastclip import _dispatch
from fastclip.reference import clip as ref

try:
    import torch
except ImportError:  # torch is optional
    torch = None

_fam = _dispatch.family("clip")
if _fam.compiled is None:
    pytest.skip("fastclip's compiled kernels are not built", allow_module_level=True)
C = _fam.compiled


def _make(name):
    return gradient_set(name)


ROUNDS = {"mlp": 200, "500x256": 200, "8x4M": 12}
_DATA: dict = {}


def _data(name):
    """(working arrays, pristine copies, torch parameters with .grad viewing the
    working arrays, total norm)."""
    if name not in _DATA:
        work = _make(name)
        orig = [g.copy() for g in work]
        params = None
        if torch is not None:
            params = []
            for g in work:
                p = torch.nn.Parameter(torch.empty(0))
                p.data = torch.from_numpy(g)  # no copy of the parameter values needed
                p.grad = torch.from_numpy(g)
                params.append(p)
        total = float(np.sqrt(sum(np.vdot(g.astype(np.float64), g) for g in work)))
        _DATA[name] = (work, orig, params, total)
    return _DATA[name]


WARMUP_S = 0.5


def _warm(fn, args, setup, seconds=WARMUP_S):
    """Every candidate gets the same warm-up (``_common.warm`` says why)."""
    warm(lambda: fn(*args), setup, seconds)


def _restorer(work, orig):
    def setup():
        for w, o in zip(work, orig):
            np.copyto(w, o)

    return setup


def numpy_loop(grads, max_norm):
    """What a NumPy user writes today."""
    total = np.sqrt(sum(np.vdot(g, g) for g in grads))
    coef = min(1.0, max_norm / (total + 1e-6))
    for g in grads:
        g *= coef
    return total


CANDIDATES = ["fastclip", "reference", "numpy", "torch"]


@pytest.mark.parametrize("regime", ["clip", "under"])
@pytest.mark.parametrize("gset", ["mlp", "500x256", "8x4M"])
@pytest.mark.parametrize("who", CANDIDATES)
def test_clip_grad_norm(benchmark, who, gset, regime):
    work, orig, params, total = _data(gset)
    max_norm = total / 2 if regime == "clip" else total * 2
    benchmark.group = f"clip_grad_norm_ {gset} {regime}"
    if who == "fastclip":
        fn, args = C.clip_grad_norm_, (work, max_norm)
    elif who == "reference":
        fn, args = ref.clip_grad_norm_, (work, max_norm)
    elif who == "numpy":
        fn, args = numpy_loop, (work, max_norm)
    else:
        if torch is None:
            pytest.skip("torch is not installed")
        fn, args = torch.nn.utils.clip_grad_norm_, (params, max_norm)
    rounds = ROUNDS[gset] if who != "reference" else max(3, ROUNDS[gset] // 4)
    setup = _restorer(work, orig)
    _warm(fn, args, setup)
    setup()
    result = benchmark.pedantic(fn, args=args, setup=setup, rounds=rounds, iterations=1)
    assert float(result) == pytest.approx(total, rel=1e-4)
    if regime == "clip":
        got = float(np.sqrt(sum(np.vdot(g.astype(np.float64), g) for g in work)))
        assert got == pytest.approx(max_norm, rel=1e-4)
    else:
        for w, o in zip(work, orig):
            assert np.array_equal(w, o)


VALUE_CANDIDATES = ["fastclip", "reference", "numpy", "torch"]


@pytest.mark.parametrize("who", VALUE_CANDIDATES)
def test_clip_grad_value(benchmark, who):
    work, orig, _params, _ = _data("8x4M")
    g, g0 = work[0], orig[0]  # one array of 4 Mi float32
    benchmark.group = "clip_grad_value_ 4M f32"
    if who == "fastclip":
        fn, args = C.clip_grad_value_, (g, 0.5)
    elif who == "reference":
        fn, args = ref.clip_grad_value_, (g, 0.5)
    elif who == "numpy":
        fn, args = np.clip, (g, np.float32(-0.5), np.float32(0.5))
        fn = lambda a, lo, hi: np.clip(a, lo, hi, out=a)
    else:
        if torch is None:
            pytest.skip("torch is not installed")
        t = torch.from_numpy(g)
        fn, args = (lambda: t.clamp_(-0.5, 0.5)), ()

    def setup():
        np.copyto(g, g0)

    _warm(fn, args, setup)
    setup()
    benchmark.pedantic(fn, args=args, setup=setup, rounds=60, iterations=1)
    assert np.array_equal(g, np.clip(g0, np.float32(-0.5), np.float32(0.5)))
    np.copyto(g, g0)


# ---------------------------------------------------------------------------
# stand-alone table: fresh processes, alternating rounds
# ---------------------------------------------------------------------------
def _candidate(who: str, work, params, max_norm):
    if who == "fastclip":
        return lambda: C.clip_grad_norm_(work, max_norm)
    if who == "reference":
        return lambda: ref.clip_grad_norm_(work, max_norm)
    if who == "numpy":
        return lambda: numpy_loop(work, max_norm)
    if who == "torch":
        return None if torch is None else (lambda: torch.nn.utils.clip_grad_norm_(params,
                                                                                    max_norm))
    raise ValueError(who)


def _value_candidate(who: str, g: np.ndarray):
    """``clip_grad_value_(g, 0.5)`` on one 4 Mi float32 array, each library's way."""
    if who == "fastclip":
        return lambda: C.clip_grad_value_(g, 0.5)
    if who == "reference":
        return lambda: ref.clip_grad_value_(g, 0.5)
    if who == "numpy":
        lo, hi = np.float32(-0.5), np.float32(0.5)
        return lambda: np.clip(g, lo, hi, out=g)
    if who == "torch":
        if torch is None:
            return None
        t = torch.from_numpy(g)
        return lambda: t.clamp_(-0.5, 0.5)
    raise ValueError(who)


def _worker(who: str, gset: str, regime: str, pattern: str, reps: int) -> None:
    import json

    from _common import other_work, time_calls, warm

    if regime == "value":  # clip_grad_value_ on the first 4 Mi array of 8x4M
        work, orig, _params, _total = _data("8x4M")
        work, orig = work[:1], orig[:1]
        fn = _value_candidate(who, work[0])
    else:
        work, orig, params, total = _data(gset)
        max_norm = total / 2 if regime == "clip" else total * 2
        fn = _candidate(who, work, params, max_norm)
    if fn is None:  # torch is not installed
        print(json.dumps([]))
        return
    setup = _restorer(work, orig)
    between = other_work() if pattern == "loop" else None
    warm(fn, setup)
    print(json.dumps(time_calls(fn, reps, setup, between)))


def main() -> None:
    import argparse

    from _common import alternate_in_processes, median_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="mlp", help="comma-separated: mlp,500x256,8x4M")
    ap.add_argument("--regimes", default="clip,under",
                    help="comma-separated: clip,under (clip_grad_norm_), value "
                         "(clip_grad_value_ on one 4 Mi float32 array; --sets is ignored)")
    ap.add_argument("--pattern", choices=["tight", "loop"], default="tight")
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=100, help="timed calls per process")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        _worker(a.worker, a.sets, a.regimes, a.pattern, a.reps)
        return
    for gset in a.sets.split(","):
        for regime in a.regimes.split(","):
            times = alternate_in_processes(
                __file__, a.candidates.split(","),
                ["--sets", gset, "--regimes", regime, "--pattern", a.pattern,
                 "--reps", str(a.reps)], a.rounds)
            what = ("clip_grad_value_ 4M" if regime == "value"
                    else f"clip_grad_norm_ {gset} {regime}")
            print(f"\n{what}, pattern {a.pattern}, {a.rounds} rounds "
                  f"x {a.reps} calls per candidate")
            print("\n".join(median_table(times, "fastclip")))


if __name__ == "__main__":
    main()
