"""Shared tables for the hardening tests (threads, leaks, fork, OpenMP determinism).

Not a test module. Each :class:`Case` is one public kernel exercised through a
kernel family's compiled module (``fastclip._<family>``) or its reference
(``fastclip.reference.<family>``):

* ``setup(rng, n)`` builds fresh inputs of about ``n`` elements in mixed
  layouts (dense C, Fortran, strided, negative strides);
* ``call(mod, state)`` runs the kernel once and returns everything it produced
  (return values and, for in-place kernels, the modified arrays);
* ``errors``: calls that must raise (``(exception type, fn(mod, state))``),
  used by the leak test to cover error paths.

A family joins the hardening tests by adding its cases to ``CASES`` (see the
section per family below).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from fastclip._dispatch import family

State = dict[str, Any]

# FC_PARALLEL_MIN of csrc/fc_common.h: calls over fewer elements stay serial
# (the compiled value; the documented default when only the reference is there).
try:
    from fastclip._common import PARALLEL_MIN
except ImportError:
    PARALLEL_MIN = 1 << 20


@dataclass(frozen=True)
class Case:
    id: str
    family: str
    setup: Callable[[np.random.Generator, int], State]
    call: Callable[[ModuleType, State], Any]
    errors: tuple[tuple[type[BaseException], Callable[[ModuleType, State], Any]], ...] = field(
        default=()
    )
    kernel_calls: int = 1  # kernel invocations made by one ``call``


def compiled(fam: str) -> ModuleType:
    mod = family(fam).compiled
    if mod is None:
        raise AssertionError(f"fastclip._{fam} is not built; the hardening tests need it")
    return mod


def reference(fam: str) -> ModuleType:
    return family(fam).reference


def make(case: Case, seed: int, n: int) -> State:
    """Fresh inputs for ``case``; the same seed gives the same inputs and
    layouts (copying would make views dense, so inputs are rebuilt)."""
    return case.setup(np.random.default_rng(seed), n)


def _update(h: Any, obj: Any) -> None:
    if isinstance(obj, np.ndarray):
        h.update(f"nd{obj.dtype.str}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, (list, tuple)):
        h.update(f"seq{len(obj)}".encode())
        for o in obj:
            _update(h, o)
    elif isinstance(obj, dict):
        for k in sorted(obj):
            h.update(str(k).encode())
            _update(h, obj[k])
    elif isinstance(obj, (float, np.floating)):
        h.update(np.float64(obj).tobytes())
    else:
        h.update(repr(obj).encode())


def digest(obj: Any) -> str:
    """Bit-exact fingerprint of a kernel's outputs."""
    h = hashlib.sha256()
    _update(h, obj)
    return h.hexdigest()


def assert_identical(a: Any, b: Any, where: str = "") -> None:
    """Bit-identical outputs (NaN payloads and signed zeros included)."""
    if digest(a) != digest(b):
        raise AssertionError(f"outputs differ {where}: {a!r} != {b!r}"[:2000])


# ---------------------------------------------------------------------------
# Mixed-layout arrays
# ---------------------------------------------------------------------------


def mixed_arrays(rng: np.random.Generator, n: int, dtype: Any = np.float32) -> list[np.ndarray]:
    """A C-dense array of ``n`` elements, then a Fortran 2-D array, a strided view
    and a negatively strided view of about ``n / 16`` each, a 0-d array and an
    empty one."""
    dt = np.dtype(dtype)
    k = max(n // 16, 1)
    cols = 7
    rows = max(k // cols, 1)
    dense = rng.standard_normal(n, dtype=dt)
    fortran = np.asfortranarray(rng.standard_normal((rows, cols), dtype=dt))
    strided = rng.standard_normal((2 * k + 1,), dtype=dt)[1::2]
    backwards = rng.standard_normal((3, k // 3 + 1), dtype=dt)[::-1, ::-2]
    scalar = np.array(rng.standard_normal(), dtype=dt)
    empty = np.empty((0, 3), dtype=dt)
    return [dense, fortran, strided, backwards, scalar, empty]


def _with_nonfinite(arrays: list[np.ndarray]) -> list[np.ndarray]:
    for a, v in zip(arrays, (np.nan, np.inf, -np.inf, np.nan)):
        if a.size:
            a[(0,) * a.ndim] = v
    return arrays


# ---------------------------------------------------------------------------
# clip
# ---------------------------------------------------------------------------


def _clip_state(rng: np.random.Generator, n: int) -> State:
    return {
        "g32": mixed_arrays(rng, n, np.float32),
        "g64": mixed_arrays(rng, n, np.float64),
        "bad": [np.ones(3), np.arange(3)],  # second array has an integer dtype
    }


def _clip_nan_state(rng: np.random.Generator, n: int) -> State:
    s = _clip_state(rng, n)
    _with_nonfinite(s["g32"])
    _with_nonfinite(s["g64"])
    return s


def _clip_case(
    id: str,
    setup: Callable[[np.random.Generator, int], State],
    fn: Callable[[ModuleType, list[np.ndarray]], Any],
    errors: tuple = (),
) -> Case:
    """A clip kernel run on a float32 list and a float64 list of mixed layouts."""

    def call(mod: ModuleType, s: State) -> Any:
        return [fn(mod, s["g32"]), s["g32"], fn(mod, s["g64"]), s["g64"]]

    return Case(f"clip.{id}", "clip", setup, call, errors, kernel_calls=2)


def _bad_dtype(name: str, *args: Any) -> tuple[type[BaseException], Callable]:
    return (TypeError, lambda mod, s: getattr(mod, name)(s["bad"], *args))


CLIP_CASES = [
    *[
        _clip_case(
            f"array_norms[p={p}]",
            _clip_state,
            lambda mod, g, p=p: mod.array_norms(g, p),
            (_bad_dtype("array_norms", p), (ValueError, lambda m, s: m.array_norms(s["g32"], 0))),
        )
        for p in (2.0, 1.0, math.inf, 3.0)
    ],
    _clip_case(
        "get_total_norm",
        _clip_state,
        lambda mod, g: mod.get_total_norm(g, 2.0),
        (
            _bad_dtype("get_total_norm"),
            (FloatingPointError, lambda m, s: m.get_total_norm([np.array([np.inf])], 2.0, True)),
        ),
    ),
    _clip_case(
        "clip_grad_norm_",
        _clip_state,
        lambda mod, g: mod.clip_grad_norm_(g, 0.5),
        (
            _bad_dtype("clip_grad_norm_", 1.0),
            (ValueError, lambda m, s: m.clip_grad_norm_(s["g32"], -1.0)),
            (ValueError, lambda m, s: m.clip_grad_norm_([s["g64"][0], s["g64"][0]], 1.0)),
            (
                FloatingPointError,
                lambda m, s: m.clip_grad_norm_([np.ones(4), np.array([np.nan])], 1.0, 2.0, True),
            ),
        ),
    ),
    _clip_case(
        "clip_grad_norm_[p=inf,nonfinite]",
        _clip_nan_state,
        lambda mod, g: mod.clip_grad_norm_(g, 0.5, math.inf),
    ),
    _clip_case(
        "clip_grads_with_norm_",
        _clip_state,
        lambda mod, g: mod.clip_grads_with_norm_(g, 0.5, 7.0),
        (
            _bad_dtype("clip_grads_with_norm_", 1.0, 2.0),
            (ValueError, lambda m, s: m.clip_grads_with_norm_(s["g32"], 1.0, -2.0)),
        ),
    ),
    _clip_case(
        "clip_grad_value_",
        _clip_nan_state,
        lambda mod, g: mod.clip_grad_value_(g, 0.25),
        (
            _bad_dtype("clip_grad_value_", 1.0),
            (TypeError, lambda m, s: m.clip_grad_value_(s["g32"], "x")),
        ),
    ),
    _clip_case(
        "clip_by_value",
        _clip_nan_state,
        lambda mod, g: mod.clip_by_value(g, -0.5, 0.25),
        (
            _bad_dtype("clip_by_value", -1.0, 1.0),
            (ValueError, lambda m, s: m.clip_by_value(s["g32"], 1.0, -1.0)),
        ),
    ),
    _clip_case(
        "clip_by_norm",
        _clip_state,
        lambda mod, g: mod.clip_by_norm(g, 0.5),
        (_bad_dtype("clip_by_norm", 1.0), (ValueError, lambda m, s: m.clip_by_norm(s["g32"], 0.0))),
    ),
    _clip_case(
        "clip_by_global_norm",
        _clip_state,
        lambda mod, g: mod.clip_by_global_norm(g, 0.5),
        (
            _bad_dtype("clip_by_global_norm", 1.0),
            (ValueError, lambda m, s: m.clip_by_global_norm(s["g32"], 1.0, -3.0)),
        ),
    ),
    _clip_case(
        "zero_nans_",
        _clip_nan_state,
        lambda mod, g: mod.zero_nans_(g),
        (
            _bad_dtype("zero_nans_"),
            (ValueError, lambda m, s: m.zero_nans_([np.zeros(2), np.broadcast_to(np.ones(1), (2,))])),
        ),
    ),
]

# ---------------------------------------------------------------------------
# schedules, nn, optim, adaptive: through the public API (the implementation
# in use is the compiled one unless FASTCLIP_IMPLEMENTATION says otherwise;
# ``mod`` is not needed because the public objects dispatch themselves).
# ---------------------------------------------------------------------------


def _sched_state(rng: np.random.Generator, n: int) -> State:
    from fastclip import schedules as S

    return {
        "steps": rng.uniform(0.0, 20000.0, n),
        "steps32": rng.uniform(0.0, 500.0, max(n // 16, 1)).astype(np.float32)[::-1],
        "scheds": [
            S.warmup_cosine(peak_value=1.0, warmup_steps=100, decay_steps=10000, init_value=0.01),
            S.cosine_restarts(0.5, 300, 2, eta_min=0.01),
            S.piecewise_constant([10, 100, 1000], [1.0, 0.5, 0.1, 0.01]),
            S.join([S.linear(0.0, 1.0, 50), S.exponential(1.0, 100, 0.5)], [50]),
            S.one_cycle(0.1, 2000),
        ],
    }


def _sched_call(mod: ModuleType, s: State) -> Any:
    out = []
    for sc in s["scheds"]:
        out += [sc(s["steps"]), sc(s["steps32"]), sc(17), sc(123.5)]
    return out


def _nn_state(rng: np.random.Generator, n: int, act: str = "relu",
              dtype: Any = np.float32) -> State:
    from fastclip import nn

    d_in = 16
    rows = max(n // d_in, 2)
    model = nn.MLP([d_in, 32, 10], activation=act, dtype=dtype, rng=int(rng.integers(1 << 30)))
    x = rng.standard_normal((rows, d_in)).astype(dtype)
    return {"model": model, "x": x, "y": rng.integers(0, 10, rows),
            "target": rng.standard_normal((rows, 10)).astype(dtype)}


def _nn_xent(mod: ModuleType, s: State) -> Any:
    from fastclip import nn

    m = s["model"]
    logits = m.forward(s["x"])
    loss, dl = nn.softmax_cross_entropy(logits, s["y"])
    dx = m.backward(dl)
    return [logits, loss, dl, dx, m.gradients(), m.grad_sqnorms()]


def _nn_mse(mod: ModuleType, s: State) -> Any:
    from fastclip import nn

    m = s["model"]
    pred = m.forward(s["x"])
    loss, dp = nn.mse(pred, s["target"])
    dx = m.backward(dp)
    return [pred, loss, dp, dx, m.gradients(), m.grad_sqnorms()]


def _params(rng: np.random.Generator, n: int, dtype: Any = np.float32) -> list[np.ndarray]:
    k = max(n // 2, 1)
    return [rng.standard_normal((max(k // 64, 1), 64)).astype(dtype),
            np.asfortranarray(rng.standard_normal((max(k // 96, 1), 96)).astype(dtype)),
            rng.standard_normal(31).astype(dtype)]


def _optim_state(make: Callable[[list[np.ndarray]], Any]) -> Callable:
    def setup(rng: np.random.Generator, n: int) -> State:
        params = _params(rng, n)
        grads = [rng.standard_normal(p.shape).astype(p.dtype) * 3 for p in params]
        grads = [np.asfortranarray(g) if p.flags.f_contiguous and not p.flags.c_contiguous
                 else g for g, p in zip(grads, params)]
        return {"params": params, "grads": grads, "opt": make(params),
                "bad": [np.full(g.shape, np.nan, g.dtype) for g in grads]}

    return setup


def _optim_call(mod: ModuleType, s: State) -> Any:
    norm = s["opt"].step(s["grads"])
    return [norm, s["params"], s["opt"].lr]


def _optim_errors() -> tuple:
    return (
        (ValueError, lambda m, s: s["opt"].step(s["grads"][:-1])),
        (FloatingPointError, lambda m, s: s["opt"].step(s["bad"])),
    )


def _adaptive_state(rng: np.random.Generator, n: int) -> State:
    params = _params(rng, n, np.float64)
    return {"params": params,
            "grads": [rng.standard_normal(p.shape) * 5 for p in params],
            "bad": [np.ones((3, 4))], "badp": [np.ones((3, 5))]}


def _optim_cases() -> list[Case]:
    from fastclip import optim

    makers = {
        "SGD[momentum,nesterov,clip_value]": lambda p: optim.SGD(
            p, 0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, clip_value=0.5),
        "Adam[clip_norm]": lambda p: optim.Adam(p, 1e-3, clip_norm=1.0),
        "AdamW[amsgrad]": lambda p: optim.AdamW(p, 1e-3, amsgrad=True, clip_norm=10.0),
        "RMSprop[centered,momentum]": lambda p: optim.RMSprop(
            p, 1e-2, centered=True, momentum=0.9, clip_norm=1.0),
    }
    return [Case(f"optim.{name}", "optim", _optim_state(mk), _optim_call, _optim_errors())
            for name, mk in makers.items()]


OTHER_CASES = [
    Case("schedules.evaluate", "schedules", _sched_state, _sched_call,
         ((TypeError, lambda m, s: s["scheds"][0]("x")),
          (TypeError, lambda m, s: s["scheds"][1](np.array([1 + 1j])))),
         kernel_calls=20),
    Case("nn.MLP+softmax_cross_entropy", "nn", _nn_state, _nn_xent,
         ((ValueError, lambda m, s: s["model"].forward(s["x"][:, :-1])),
          (ValueError, lambda m, s: __import__("fastclip").nn.softmax_cross_entropy(
              s["model"].forward(s["x"]), s["y"][:-1]))),
         kernel_calls=3),
    Case("nn.MLP[prelu,float64]+mse", "nn",
         lambda rng, n: _nn_state(rng, n, "prelu", np.float64), _nn_mse,
         ((ValueError, lambda m, s: __import__("fastclip").nn.mse(
             s["target"], s["target"][:-1])),),
         kernel_calls=3),
    *_optim_cases(),
    Case("adaptive.adaptive_grad_clip_", "adaptive", _adaptive_state,
         lambda m, s: [__import__("fastclip").adaptive_grad_clip_(s["grads"], s["params"], 0.01),
                       s["grads"]],
         ((ValueError, lambda m, s: __import__("fastclip").adaptive_grad_clip_(
             s["bad"], s["badp"])),)),
    Case("adaptive.unitwise_norms", "adaptive", _adaptive_state,
         lambda m, s: __import__("fastclip").unitwise_norms(s["grads"]),
         ((TypeError, lambda m, s: __import__("fastclip").unitwise_norms([np.arange(3)])),)),
]

# ---------------------------------------------------------------------------
# All families
# ---------------------------------------------------------------------------

CASES: list[Case] = [*CLIP_CASES, *OTHER_CASES]

CASE_IDS = [c.id for c in CASES]
