"""Bad input across the public API: the exact exception type, a message naming the
argument, the same exception from both implementations, and nothing modified.

Each row builds fresh arguments (``setup``) and returns ``(callable, args,
kwargs)``; the callable is a public function (or a bound method of a public
object built in the same implementation). Every ndarray reachable from the
arguments, and the base of every view, must hold the same bytes after the call
raised, including valid arrays that come before the bad one in a list.

The clipping kernels get a systematic table (``KERNEL_ROWS``): every function
against every kind of bad array argument and bad scalar, called on the module
the implementation switch selects (``fastclip._clip`` or
``fastclip.reference.clip``). Where the extension is not built, the reference
alone is checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import fastclip
from fastclip import _dispatch

# Both implementations, and the same message from both; the reference alone
# where the extension is not built.
IMPLS = ("c", "python") if _dispatch._compiled_available() else ("python",)


@dataclass(frozen=True)
class Bad:
    id: str
    setup: Callable[[], tuple[Callable[..., Any], tuple, dict]]
    exc: type[BaseException]
    match: str  # regex searched in the message; names the bad argument


def _f32(*shape: int) -> np.ndarray:
    return np.arange(1, 1 + int(np.prod(shape)), dtype=np.float32).reshape(shape) / 7


def _f64(*shape: int) -> np.ndarray:
    return np.linspace(-3, 5, int(np.prod(shape))).reshape(shape)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _big_endian(a: np.ndarray) -> np.ndarray:
    return a.astype(a.dtype.newbyteorder(">"))


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any):
    return lambda: (fn, args, kwargs)


def row(id: str, fn: Callable[..., Any], args: Callable[[], tuple], exc, match: str,
        **kwargs: Any) -> Bad:
    return Bad(id, lambda: (fn, args(), kwargs), exc, match)


# ---------------------------------------------------------------------------
# clip
# ---------------------------------------------------------------------------
fc = fastclip
NOT_ARRAY = r"grads(\[\d+\])? must be a numpy\.ndarray"
DTYPE = r"must have dtype float32 or float64"

CLIP_ROWS = [
    # grads containers and elements
    row("clip_grad_norm_/grads-str", fc.clip_grad_norm_, lambda: ("abc", 1.0), TypeError,
        r"^grads must be a numpy\.ndarray or an iterable of them, got str"),
    row("clip_grad_norm_/grads-int", fc.clip_grad_norm_, lambda: (5, 1.0), TypeError,
        r"^grads must be a numpy\.ndarray or an iterable of them, got int"),
    row("clip_grad_norm_/grads-dict-leaf", fc.clip_grad_norm_,
        lambda: ({"w": _f32(3), "b": "x"}, 1.0),
        TypeError, r"^grads\['b'\] must be a numpy\.ndarray, got str"),
    row("clip_grad_norm_/grads-None", fc.clip_grad_norm_, lambda: (None, 1.0), TypeError,
        r"^grads must be .* got NoneType"),
    row("clip_grad_norm_/element-list", fc.clip_grad_norm_,
        lambda: ([_f32(4), [1.0, 2.0]], 1.0), TypeError,
        r"^grads\[1\]\[0\] must be a numpy\.ndarray, got float"),
    row("clip_grad_norm_/element-int-dtype", fc.clip_grad_norm_,
        lambda: ([_f32(4), np.arange(3)], 1.0), TypeError, r"^grads\[1\] " + DTYPE),
    row("clip_grad_norm_/single-float16", fc.clip_grad_norm_,
        lambda: (np.ones(3, np.float16), 1.0), TypeError, r"^grads " + DTYPE + ", got float16"),
    row("clip_grad_norm_/complex", fc.clip_grad_norm_,
        lambda: ([_f64(2), np.ones(2, np.complex128)], 1.0), TypeError,
        r"^grads\[1\] " + DTYPE + ", got complex128"),
    row("clip_grad_norm_/object-dtype", fc.clip_grad_norm_,
        lambda: ([_f64(2), np.array([1.0, None])], 1.0), TypeError, r"^grads\[1\] " + DTYPE),
    row("clip_grad_norm_/bool-dtype", fc.clip_grad_norm_,
        lambda: (np.ones(2, bool), 1.0), TypeError, r"^grads " + DTYPE + ", got bool"),
    row("clip_grad_norm_/read-only", fc.clip_grad_norm_,
        lambda: ([_f32(8) * 100, _readonly(_f32(3) * 100)], 1.0), ValueError,
        r"^grads\[1\] is read-only"),
    row("clip_grad_norm_/broadcast-view", fc.clip_grad_norm_,
        lambda: ([_f64(5) * 9, np.broadcast_to(_f64(1) + 4, (3, 4))], 1.0), ValueError,
        r"^grads\[1\] is read-only"),
    row("clip_grad_norm_/same-array-twice", fc.clip_grad_norm_,
        lambda: (lambda a: ([a, _f32(2), a], 1.0))(_f32(6) * 50), ValueError,
        r"^grads\[0\] and grads\[2\] share memory"),
    row("clip_grad_norm_/overlapping-views", fc.clip_grad_norm_,
        lambda: (lambda a: ([a[:5], a[3:]], 1.0))(_f64(10) * 50), ValueError,
        r"^grads\[0\] and grads\[1\] share memory"),
    row("clip_grad_norm_/big-endian", fc.clip_grad_norm_,
        lambda: ([_f32(4) * 9, _big_endian(_f32(4))], 1.0), TypeError,
        r"^grads\[1\] has non-native byte order"),
    row("clip_grad_norm_/generator-bad-element", fc.clip_grad_norm_,
        lambda: ((x for x in [_f32(3) * 9, "w"]), 1.0), TypeError,
        r"^grads\[1\] must be a numpy\.ndarray, got str"),
    # scalars
    row("clip_grad_norm_/max_norm-negative", fc.clip_grad_norm_, lambda: ([_f32(3) * 9], -1.0),
        ValueError, r"^max_norm must be >= 0, got -1\.0"),
    row("clip_grad_norm_/max_norm-nan", fc.clip_grad_norm_, lambda: ([_f32(3) * 9], np.nan),
        ValueError, r"^max_norm must not be NaN"),
    row("clip_grad_norm_/max_norm-str", fc.clip_grad_norm_, lambda: ([_f32(3) * 9], "1"),
        TypeError, r"^max_norm must be a real number, got str"),
    row("clip_grad_norm_/max_norm-bool", fc.clip_grad_norm_, lambda: ([_f32(3) * 9], True),
        TypeError, r"^max_norm must be a real number, got bool"),
    row("clip_grad_norm_/max_norm-None", fc.clip_grad_norm_, lambda: ([_f32(3) * 9], None),
        TypeError, r"^max_norm must be a real number, got NoneType"),
    row("clip_grad_norm_/max_norm-complex", fc.clip_grad_norm_, lambda: ([_f32(3) * 9], 1j),
        TypeError, r"^max_norm must be a real number, got complex"),
    row("clip_grad_norm_/norm_type-zero", fc.clip_grad_norm_, lambda: ([_f32(3) * 9], 1.0, 0),
        ValueError, r"^norm_type must be a positive real number or inf, got 0\.0"),
    row("clip_grad_norm_/norm_type-negative", fc.clip_grad_norm_,
        lambda: ([_f32(3) * 9], 1.0, -2.0), ValueError, r"^norm_type must be a positive"),
    row("clip_grad_norm_/norm_type-nan", fc.clip_grad_norm_,
        lambda: ([_f32(3) * 9], 1.0, float("nan")), ValueError, r"^norm_type must be a positive"),
    row("clip_grad_norm_/norm_type-minus-inf", fc.clip_grad_norm_,
        lambda: ([_f32(3) * 9], 1.0, -np.inf), ValueError, r"^norm_type must be a positive"),
    row("clip_grad_norm_/norm_type-fro", fc.clip_grad_norm_,
        lambda: ([_f32(3) * 9], 1.0, "fro"), TypeError,
        r"^norm_type must be a positive real number or inf, got str"),
    row("clip_grad_norm_/nonfinite", fc.clip_grad_norm_,
        lambda: ([_f32(4) * 9, np.array([1.0, np.inf])], 1.0, 2.0, True), FloatingPointError,
        r"of grads is inf: grads\[1\] holds a non-finite value; nothing was modified"),
    row("clip_grad_norm_/nonfinite-nan-single", fc.clip_grad_norm_,
        lambda: (np.array([3.0, np.nan]), 1.0), FloatingPointError,
        r"of grads is nan: grads holds a non-finite value", error_if_nonfinite=True),
    row("get_total_norm/grads-None", fc.get_total_norm, lambda: (None,), TypeError,
        r"^grads must be .* got NoneType"),
    row("get_total_norm/nonfinite", fc.get_total_norm,
        lambda: ([_f64(3), np.array([np.nan])],), FloatingPointError, r"grads\[1\] holds",
        error_if_nonfinite=True),
    row("get_total_norm/norm_type-list", fc.get_total_norm, lambda: ([_f64(3)], [2]),
        TypeError, r"^norm_type must be .* got list"),
    row("array_norms/grads-bytes", fc.array_norms, lambda: (b"xyz",), TypeError,
        r"^grads must be .* got bytes"),
    row("array_norms/norm_type-str", fc.array_norms, lambda: ([_f64(3)], "two"), TypeError,
        r"^norm_type must be .* got str"),
    row("clip_grad_value_/clip_value-negative", fc.clip_grad_value_,
        lambda: ([_f32(3) * 9], -0.5), ValueError, r"^clip_value must be >= 0, got -0\.5"),
    row("clip_grad_value_/clip_value-nan", fc.clip_grad_value_,
        lambda: ([_f32(3) * 9], float("nan")), ValueError, r"^clip_value must not be NaN"),
    row("clip_grad_value_/clip_value-array", fc.clip_grad_value_,
        lambda: ([_f32(3) * 9], np.array([1.0, 2.0])), TypeError,
        r"^clip_value must be a real number, got ndarray"),
    row("clip_grad_value_/read-only", fc.clip_grad_value_,
        lambda: ([_f32(3) * 9, _readonly(_f64(2, 2) * 9)], 1.0), ValueError,
        r"^grads\[1\] is read-only"),
    row("clip_grads_with_norm_/total_norm-negative", fc.clip_grads_with_norm_,
        lambda: ([_f32(3) * 9], 1.0, -1.0), ValueError, r"^total_norm must be >= 0"),
    row("clip_grads_with_norm_/total_norm-str", fc.clip_grads_with_norm_,
        lambda: ([_f32(3) * 9], 1.0, "big"), TypeError,
        r"^total_norm must be a real number, got str"),
    row("clip_grads_with_norm_/max_norm-negative", fc.clip_grads_with_norm_,
        lambda: ([_f32(3) * 9], -1.0, 5.0), ValueError, r"^max_norm must be >= 0"),
    row("clip_grads_with_norm_/shared", fc.clip_grads_with_norm_,
        lambda: (lambda a: ([a[::2], a[1::2], a[2:4]], 0.5, 10.0))(_f64(8) * 9), ValueError,
        r"^grads\[0\] and grads\[2\] share memory"),
    row("zero_nans_/read-only", fc.zero_nans_,
        lambda: ([np.array([np.nan, 1.0]), _readonly(np.array([np.nan]))],), ValueError,
        r"^grads\[1\] is read-only"),
    row("zero_nans_/big-endian-single", fc.zero_nans_,
        lambda: (_big_endian(np.array([np.nan, 2.0])),), TypeError,
        r"^grads has non-native byte order \(dtype '>f8'\)"),
    row("zero_nans_/int", fc.zero_nans_, lambda: (np.arange(3),), TypeError,
        r"^grads " + DTYPE + ", got int64"),
    row("clip_by_value/lo-greater-than-hi", fc.clip_by_value, lambda: (_f32(3), 1.0, -1.0),
        ValueError, r"^lo must be <= hi, got lo=1\.0 > hi=-1\.0"),
    row("clip_by_value/lo-nan", fc.clip_by_value, lambda: (_f32(3), np.nan, 1.0), ValueError,
        r"^lo must not be NaN"),
    row("clip_by_value/hi-None", fc.clip_by_value, lambda: (_f32(3), 0.0, None), TypeError,
        r"^hi must be a real number, got NoneType"),
    row("clip_by_value/x-int", fc.clip_by_value, lambda: (np.arange(4), 0.0, 1.0), TypeError,
        r"^x " + DTYPE),
    row("clip_by_value/x-element", fc.clip_by_value, lambda: ([_f32(2), 3.0], 0.0, 1.0),
        TypeError, r"^x\[1\] must be a numpy\.ndarray, got float"),
    row("clip_by_norm/clip_norm-zero", fc.clip_by_norm, lambda: (_f32(3), 0.0), ValueError,
        r"^clip_norm must be > 0, got 0\.0"),
    row("clip_by_norm/clip_norm-minus-inf", fc.clip_by_norm, lambda: (_f32(3), -np.inf),
        ValueError, r"^clip_norm must be finite, got -inf"),
    row("clip_by_norm/clip_norm-inf", fc.clip_by_norm, lambda: (_f32(3), np.inf),
        ValueError, r"^clip_norm must be finite, got inf"),
    row("clip_by_global_norm/clip_norm-inf", fc.clip_by_global_norm,
        lambda: ([_f64(2)], np.inf), ValueError, r"^clip_norm must be finite, got inf"),
    row("clip_by_norm/x-str", fc.clip_by_norm, lambda: ("x", 1.0), TypeError,
        r"^x must be .* got str"),
    row("clip_by_global_norm/xs-element", fc.clip_by_global_norm,
        lambda: ([_f64(2), np.ones(2, np.int32)], 1.0), TypeError, r"^xs\[1\] " + DTYPE),
    row("clip_by_global_norm/clip_norm-str", fc.clip_by_global_norm, lambda: ([_f64(2)], "1"),
        TypeError, r"^clip_norm must be a real number, got str"),
    row("clip_by_global_norm/use_norm-negative", fc.clip_by_global_norm,
        lambda: ([_f64(2)], 1.0, -3.0), ValueError, r"^use_norm must be >= 0"),
]

# ---------------------------------------------------------------------------
# schedules, nn, optim, adaptive, train
# ---------------------------------------------------------------------------
from fastclip import nn, optim  # noqa: E402
from fastclip import schedules as S  # noqa: E402


def method(make: Callable[[], Any], name: str, *args: Any, **kwargs: Any):
    """A row calling ``make().name(*args)``; the object is built inside the
    implementation being tested, and its arrays are checked too."""
    return lambda: (getattr(make(), name), args, kwargs)


def _sgd() -> optim.SGD:
    return optim.SGD([_f32(3, 4), _f64(5)], 0.1, momentum=0.9)


def _adam() -> optim.Adam:
    opt = optim.Adam([_f32(3, 4), _f32(4)], 1e-2, clip_norm=1.0)
    opt.step([_f32(3, 4), _f32(4)])  # non-trivial state that must survive the error
    return opt


def _mlp() -> nn.MLP:
    return nn.MLP([4, 5, 3], activation="prelu", rng=0)


OTHER_ROWS = [
    row("schedules.cosine/init_value-negative", S.cosine, lambda: (-1.0, 100), ValueError,
        r"^init_value must be >= 0, got -1\.0"),
    row("schedules.cosine/decay_steps-zero", S.cosine, lambda: (1.0, 0), ValueError,
        r"^decay_steps must be > 0"),
    row("schedules.step/gamma-str", S.step, lambda: (1.0, 10), TypeError,
        r"^gamma must be a real number, got str", gamma="a"),
    row("schedules.multistep/milestones-unsorted", S.multistep, lambda: (1.0, [30, 10]),
        ValueError, r"^milestones must be strictly increasing"),
    row("schedules.piecewise_constant/values-length", S.piecewise_constant,
        lambda: ([10, 20], [1.0]), ValueError, r"^values must have len\(boundaries\) \+ 1"),
    row("schedules.warmup_cosine/warmup_steps-negative", S.warmup_cosine,
        lambda: (), ValueError, r"^warmup_steps must be >= 0", peak_value=1.0,
        warmup_steps=-5, decay_steps=100),
    Bad("schedules.Schedule/step-negative",
        method(lambda: S.cosine(1.0, 100), "__call__", -1.0), ValueError,
        r"^step must be a finite number >= 0, got -1\.0"),
    Bad("schedules.Schedule/steps-nan",
        method(lambda: S.cosine(1.0, 100), "__call__", np.array([1.0, np.nan])), ValueError,
        r"^steps\[1\] must be a finite number >= 0, got nan"),
    Bad("schedules.Schedule/steps-str", method(lambda: S.cosine(1.0, 100), "__call__", "x"),
        TypeError, r"^step must be a real number or an array of them, got str"),
    row("nn.Linear/in_features-zero", nn.Linear, lambda: (0, 3), ValueError,
        r"^in_features must be >= 1, got 0"),
    row("nn.Linear/activation-unknown", nn.Linear, lambda: (3, 4, "softplus"), ValueError,
        r"^activation must be one of .* got 'softplus'"),
    row("nn.MLP/sizes-short", nn.MLP, lambda: ([4],), ValueError,
        r"^sizes must have at least 2 entries, got 1"),
    row("nn.MLP/dtype-int", nn.MLP, lambda: ([4, 3],), TypeError,
        r"^dtype must be float32 or float64, got int32", dtype=np.int32),
    row("nn.MLP/rng-str", nn.MLP, lambda: ([4, 3],), TypeError,
        r"^rng must be None, an int or a numpy\.random\.Generator, got str", rng="seed"),
    Bad("nn.MLP.forward/x-shape", method(_mlp, "forward", _f32(3, 7)), ValueError,
        r"^x has shape \(3, 7\) but the model expects an input of shape \(N, 4\)"),
    row("nn.softmax_cross_entropy/labels-range", nn.softmax_cross_entropy,
        lambda: (_f64(2, 3), np.array([0, 3])), ValueError,
        r"^labels must be in \[0, 3\) .* got 3 at row 1"),
    row("nn.softmax_cross_entropy/labels-length", nn.softmax_cross_entropy,
        lambda: (_f32(3, 4), np.array([0, 1])), ValueError, r"labels must have shape \(N,\)"),
    row("optim.SGD/lr-negative", optim.SGD, lambda: ([_f64(3)], -0.1), ValueError,
        r"^lr must be >= 0"),
    row("optim.SGD/params-int", optim.SGD, lambda: ([_f64(2), np.arange(3)], 0.1), TypeError,
        r"^params\[1\] must have dtype float32 or float64, got int64"),
    row("optim.SGD/nesterov-without-momentum", optim.SGD, lambda: ([_f64(3)], 0.1),
        ValueError, r"^nesterov=True requires momentum > 0", nesterov=True),
    row("optim.SGD/clip_norm-negative", optim.SGD, lambda: ([_f64(3)], 0.1), ValueError,
        r"^clip_norm must be >= 0, got -1\.0", clip_norm=-1.0),
    row("optim.Adam/betas-one", optim.Adam, lambda: ([_f64(3)],), ValueError,
        r"^betas\[1\] must be in \[0, 1\), got 1\.0", betas=(0.9, 1.0)),
    row("optim.Adam/eps-negative", optim.Adam, lambda: ([_f64(3)],), ValueError,
        r"^eps must be >= 0, got -1", eps=-1),
    Bad("optim.SGD.step/grads-count", method(_sgd, "step", [_f32(3, 4)]), ValueError,
        r"^grads has 1 arrays but params has 2"),
    Bad("optim.SGD.step/grads-shape", method(_sgd, "step", [_f32(4, 3), _f64(5)]), ValueError,
        r"^grads\[0\] has shape \(4, 3\) but params\[0\] has shape \(3, 4\)"),
    Bad("optim.SGD.step/on_nonfinite", method(_sgd, "step", [_f32(3, 4), _f64(5)],
                                              on_nonfinite="ignore"),
        ValueError, r"^on_nonfinite must be 'raise' or 'skip', got 'ignore'"),
    Bad("optim.Adam.step/nonfinite", method(_adam, "step", [_f32(3, 4), np.full(4, np.inf,
                                                                              np.float32)]),
        FloatingPointError, r"grads\[1\] holds a non-finite value; nothing was modified"),
    row("adaptive_grad_clip_/clipping-negative", fastclip.adaptive_grad_clip_,
        lambda: ([_f64(3) * 9], [_f64(3)]), ValueError, r"^clipping must be > 0, got -1\.0",
        clipping=-1.0),
    row("adaptive_grad_clip_/shape-mismatch", fastclip.adaptive_grad_clip_,
        lambda: ([_f64(3, 4) * 9], [_f64(3, 5)]), ValueError,
        r"^params\[0\] has shape \(3, 5\) but grads\[0\] has shape \(3, 4\)"),
    row("ZClip/alpha", fastclip.ZClip, lambda: (), ValueError,
        r"^alpha must be > 0 and < 1, got 2\.0", alpha=2.0),
]

# ---------------------------------------------------------------------------
# clip kernels, systematically: every function x every kind of bad argument
# ---------------------------------------------------------------------------
INPLACE = ["clip_grad_norm_", "clip_grads_with_norm_", "clip_grad_value_", "zero_nans_"]
READONLY = ["array_norms", "get_total_norm", "clip_by_value", "clip_by_norm",
            "clip_by_global_norm"]
ALL = INPLACE + READONLY
ARG = {f: "grads" for f in ALL}  # the name of each function's array argument
ARG.update(clip_by_value="x", clip_by_norm="x", clip_by_global_norm="xs")
# valid scalar arguments of each function, in order; a row overrides some by name
SCALARS: dict[str, dict[str, Any]] = {
    "clip_grad_norm_": {"max_norm": 1.0, "norm_type": 2.0},
    "clip_grads_with_norm_": {"max_norm": 1.0, "total_norm": 5.0},
    "clip_grad_value_": {"clip_value": 0.5},
    "zero_nans_": {},
    "array_norms": {"norm_type": 2.0},
    "get_total_norm": {"norm_type": 2.0},
    "clip_by_value": {"lo": -0.5, "hi": 0.5},
    "clip_by_norm": {"clip_norm": 1.0},
    "clip_by_global_norm": {"clip_norm": 1.0},
}


def _good() -> list[np.ndarray]:
    """Valid arrays whose values every function would change (big values, a NaN)."""
    rng = np.random.default_rng(0)
    out = [rng.standard_normal(7).astype(np.float32) * np.float32(10) for _ in range(3)]
    out[0][3] = np.nan
    out.append(rng.standard_normal((3, 4)) * 10)  # float64
    return out


N_GOOD = len(_good())


def kernel(id: str, fname: str, arrays: Callable[[], Any], exc: type[BaseException],
           match: str, **scalars: Any) -> Bad:
    """A row calling ``fname`` of the selected clip module with fresh ``arrays()``
    and the valid scalars, some replaced by ``scalars``."""
    def setup() -> tuple[Callable[..., Any], tuple, dict]:
        fn = getattr(_dispatch.family("clip").impl, fname)
        values = {**SCALARS[fname], **scalars}
        return fn, (arrays(), *values.values()), {}
    return Bad(f"kernel.{fname}/{id}", setup, exc, match)


def _readonly_f64(n: int) -> np.ndarray:
    return _readonly(np.ones(n))


def _swapped() -> np.ndarray:
    return np.arange(6, dtype=np.float64).astype(">f8" if np.little_endian else "<f8")


BAD_DTYPES = [np.int32, np.int64, np.uint8, np.bool_, np.complex64, np.complex128, object,
              np.float16] + ([np.longdouble] if np.dtype(np.longdouble).itemsize > 8 else [])


def _typename(v: Any) -> str:
    return re.escape(type(v).__name__)


def _kernel_rows() -> list[Bad]:
    rows: list[Bad] = []
    for f in ALL:
        a = ARG[f]
        # the array argument: not an array nor an iterable of them
        for bad in (3.0, "abc", None, {"a": 1}, b"xy"):
            rows.append(kernel(f"not-an-iterable-{type(bad).__name__}", f, lambda bad=bad: bad,
                               TypeError, rf"^{a} must be a numpy\.ndarray or an iterable.*"
                               rf"got {_typename(bad)}"))
        # a list holding a non-array, last
        for bad in ([1.0, 2.0], 5, "s", None, memoryview(b"abcd")):
            rows.append(kernel(f"element-{type(bad).__name__}", f,
                               lambda bad=bad: [*_good(), bad], TypeError,
                               rf"^{a}\[{N_GOOD}\] must be a numpy\.ndarray, got "
                               rf"{_typename(bad)}"))
        # a bad dtype, named with its index in a list and without one alone
        for dt in BAD_DTYPES:
            name = str(np.dtype(dt))
            rows.append(kernel(f"dtype-{name}-in-list", f,
                               lambda dt=dt: [*_good(), np.zeros(4, dtype=dt)], TypeError,
                               rf"^{a}\[{N_GOOD}\] must have dtype float32 or float64, "
                               rf"got {re.escape(name)}"))
            rows.append(kernel(f"dtype-{name}-alone", f, lambda dt=dt: np.zeros(4, dtype=dt),
                               TypeError, rf"^{a} must have dtype float32 or float64, "
                               rf"got {re.escape(name)}"))
    for f in INPLACE:
        rows += [
            kernel("read-only-last", f, lambda: [*_good(), _readonly_f64(5)], ValueError,
                   rf"^grads\[{N_GOOD}\] is read-only; this function modifies"),
            kernel("broadcast-view-last", f,
                   lambda: [*_good(), np.broadcast_to(np.float32(2), (3, 3))], ValueError,
                   rf"^grads\[{N_GOOD}\] is read-only"),
            kernel("same-array-twice", f, lambda: (lambda g: [*g, g[1]])(_good()), ValueError,
                   rf"^grads\[1\] and grads\[{N_GOOD}\] share memory"),
            kernel("overlapping-views", f,
                   lambda: (lambda b: [*_good(), b[:20], b[10:30]])(np.arange(40.0) * 10),
                   ValueError, rf"^grads\[{N_GOOD}\] and grads\[{N_GOOD + 1}\] share memory"),
            kernel("2d-views-sharing-a-column", f,
                   lambda: (lambda m: [*_good(), m[:, :3], m[:, 2:]])(
                       np.arange(30.0).reshape(5, 6) * 10),
                   ValueError, r"share memory"),
            kernel("array-and-its-transpose", f,
                   lambda: (lambda t: [t, t.T])(np.arange(12.0).reshape(3, 4)), ValueError,
                   r"^grads\[0\] and grads\[1\] share memory"),
            kernel("non-native-byte-order", f, lambda: [*_good(), _swapped()], TypeError,
                   rf"^grads\[{N_GOOD}\] has non-native byte order"),
        ]
    # limits that must be >= 0
    for f, arg in (("clip_grad_norm_", "max_norm"), ("clip_grads_with_norm_", "max_norm"),
                   ("clip_grad_value_", "clip_value")):
        rows += [
            kernel(f"{arg}-negative", f, _good, ValueError, rf"^{arg} must be >= 0, got -1\.0",
                   **{arg: -1.0}),
            kernel(f"{arg}-minus-inf", f, _good, ValueError, rf"^{arg} must be >= 0, got -inf",
                   **{arg: -math.inf}),
            kernel(f"{arg}-nan", f, _good, ValueError, rf"^{arg} must not be NaN",
                   **{arg: math.nan}),
        ]
        for bad in ("1.0", None, [1.0], True, 1 + 2j):
            rows.append(kernel(f"{arg}-{type(bad).__name__}", f, _good, TypeError,
                               rf"^{arg} must be a real number, got {_typename(bad)}",
                               **{arg: bad}))
    # clip_norm must be finite and > 0
    for f in ("clip_by_norm", "clip_by_global_norm"):
        for bad in (0.0, -2.0):
            rows.append(kernel(f"clip_norm-{bad}", f, _good, ValueError,
                               rf"^clip_norm must be > 0, got {re.escape(repr(bad))}",
                               clip_norm=bad))
        for bad in (-math.inf, math.inf):
            rows.append(kernel(f"clip_norm-{bad}", f, _good, ValueError,
                               rf"^clip_norm must be finite, got {re.escape(repr(bad))}",
                               clip_norm=bad))
        rows += [
            kernel("clip_norm-nan", f, _good, ValueError, r"^clip_norm must not be NaN",
                   clip_norm=math.nan),
            kernel("clip_norm-str", f, _good, TypeError, r"^clip_norm must be a real number",
                   clip_norm="3"),
        ]
    rows += [
        kernel("total_norm-negative", "clip_grads_with_norm_", _good, ValueError,
               r"^total_norm must be >= 0", total_norm=-1.0),
        kernel("total_norm-str", "clip_grads_with_norm_", _good, TypeError,
               r"^total_norm must be a real number", total_norm="5"),
        kernel("lo-greater-than-hi", "clip_by_value", _good, ValueError,
               r"^lo must be <= hi, got lo=1\.0 > hi=0\.5", lo=1.0, hi=0.5),
        kernel("lo-nan", "clip_by_value", _good, ValueError, r"^lo must not be NaN", lo=math.nan),
        kernel("hi-nan", "clip_by_value", _good, ValueError, r"^hi must not be NaN", hi=math.nan),
        kernel("hi-None", "clip_by_value", _good, TypeError, r"^hi must be a real number",
               hi=None),
    ]
    # unsupported norm types
    for f in ("clip_grad_norm_", "array_norms", "get_total_norm"):
        for i, (bad, exc) in enumerate([(0.0, ValueError), (-1.0, ValueError),
                                        (-math.inf, ValueError), (math.nan, ValueError),
                                        ("fro", TypeError), ("nuc", TypeError),
                                        (None, TypeError), (True, TypeError),
                                        ([2.0], TypeError), (2 + 0j, TypeError)]):
            rows.append(kernel(f"norm_type-{i}-{bad!r}", f, _good, exc,
                               r"^norm_type must be a positive real number or inf",
                               norm_type=bad))

    # error_if_nonfinite: the first array whose norm is not finite is named
    def nonfinite() -> list[np.ndarray]:
        g = [np.ones(3), np.ones(4, np.float32), np.ones(2)]
        g[1][2] = np.inf
        g[2][0] = np.nan
        return g

    first_bad = r"grads\[1\] holds a non-finite value; nothing was modified"
    rows += [
        kernel("nonfinite-names-first-bad-array", "clip_grad_norm_", nonfinite,
               FloatingPointError, first_bad, error_if_nonfinite=True),
        kernel("nonfinite-names-first-bad-array", "get_total_norm", nonfinite,
               FloatingPointError, first_bad, error_if_nonfinite=True),
        # every array's norm is finite, their total norm of order 1 overflows
        kernel("nonfinite-overflowing-total", "clip_grad_norm_",
               lambda: [np.full(1, 1e308), np.full(1, 1e308)], FloatingPointError,
               r"the total norm overflowed", norm_type=1.0, error_if_nonfinite=True),
    ]
    return rows


KERNEL_ROWS = _kernel_rows()

ROWS: list[Bad] = [*CLIP_ROWS, *OTHER_ROWS, *KERNEL_ROWS]

def _params() -> list:
    return [pytest.param(r, id=r.id) for r in ROWS]


def _arrays(obj: Any, out: list[np.ndarray]) -> None:
    if isinstance(obj, np.ndarray):
        out.append(obj)
        base = obj
        while isinstance(base.base, np.ndarray):
            base = base.base
            out.append(base)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            _arrays(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            _arrays(x, out)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        _arrays(vars(obj), out)


def _snapshot(args: tuple, kwargs: dict, fn: Callable) -> list[tuple[np.ndarray, bytes]]:
    found: list[np.ndarray] = []
    _arrays((args, kwargs, getattr(fn, "__self__", None)), found)
    return [(a, np.array(a, copy=True).tobytes()) for a in found]


def test_table_is_large_enough() -> None:
    assert len(ROWS) >= 30 and len(KERNEL_ROWS) >= 300
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert {r.id.split("/")[0] for r in KERNEL_ROWS} == {f"kernel.{f}" for f in ALL}


@pytest.mark.parametrize("bad", _params())
def test_bad_input(bad: Bad) -> None:
    messages = {}
    for impl in IMPLS:
        with fastclip.use_implementation(impl):
            fn, args, kwargs = bad.setup()
            before = _snapshot(args, kwargs, fn)
            with pytest.raises(bad.exc) as info:
                fn(*args, **kwargs)
            assert type(info.value) is bad.exc, f"{impl}: {type(info.value).__name__}"
            msg = str(info.value)
            assert re.search(bad.match, msg), f"{impl}: {msg!r} does not match {bad.match!r}"
            for a, data in before:
                assert np.array(a, copy=True).tobytes() == data, f"{impl}: an input was modified"
            messages[impl] = msg
    assert len(set(messages.values())) == 1, messages


# ---------------------------------------------------------------------------
# Inputs close to the bad ones that are accepted, with the right result
# ---------------------------------------------------------------------------
def _impl_modules() -> list[Any]:
    fam = _dispatch.family("clip")
    return [fam.reference] + ([fam.compiled] if fam.compiled is not None else [])


def _kernel_call(mod: Any, fname: str, arrays: Any, **scalars: Any) -> Any:
    return getattr(mod, fname)(arrays, *{**SCALARS[fname], **scalars}.values())


def _as_list(result: Any) -> list[np.ndarray]:
    if isinstance(result, tuple):  # clip_by_global_norm: (clipped, norm)
        result = result[0]
    if isinstance(result, list):
        return [np.asarray(r) for r in result]
    return [np.asarray(result)]


@pytest.mark.parametrize("fname", READONLY)
def test_read_only_arrays_are_fine_for_out_of_place_functions(fname: str) -> None:
    for mod in _impl_modules():
        ro = _readonly(np.linspace(-3, 3, 10))
        got = _as_list(_kernel_call(mod, fname, [ro]))
        want = _as_list(_kernel_call(mod, fname, [np.linspace(-3, 3, 10)]))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
        bc = np.broadcast_to(np.float32(2), (3, 3))
        got = _as_list(_kernel_call(mod, fname, [bc]))
        want = _as_list(_kernel_call(mod, fname, [np.full((3, 3), 2, np.float32)]))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("fname", INPLACE)
def test_interleaved_views_share_no_element_and_are_accepted(fname: str) -> None:
    for mod in _impl_modules():
        ok = np.arange(20.0) * 10
        ok[3] = np.nan
        dense = [ok[::2].copy(), ok[1::2].copy()]
        _kernel_call(mod, fname, [ok[::2], ok[1::2]])
        _kernel_call(mod, fname, dense)
        np.testing.assert_array_equal(ok[::2], dense[0])
        np.testing.assert_array_equal(ok[1::2], dense[1])


@pytest.mark.parametrize("fname", READONLY)
def test_non_native_byte_order_is_read_correctly(fname: str) -> None:
    native = np.linspace(-3, 3, 11)
    swapped = native.astype(native.dtype.newbyteorder())
    for mod in _impl_modules():
        got = _as_list(_kernel_call(mod, fname, [swapped]))
        want = _as_list(_kernel_call(mod, fname, [native]))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_norm_type_inf_string_and_numpy_scalars_are_accepted() -> None:
    for mod in _impl_modules():
        g = _good()
        assert mod.get_total_norm(g[1:], "inf") == mod.get_total_norm(g[1:], math.inf)
        assert mod.get_total_norm(g[1:], np.float32(2)) == mod.get_total_norm(g[1:], 2)
        assert mod.get_total_norm(g[1:], np.int64(3)) == mod.get_total_norm(g[1:], 3.0)
        h = _good()
        total = mod.clip_grad_norm_(g[1:], np.float64(1.0))
        assert total == mod.clip_grad_norm_(h[1:], 1.0)
        for a, b in zip(g, h, strict=True):
            np.testing.assert_array_equal(a, b)
        mod.clip_grad_value_(g, np.array(0.5))
        assert all(np.nanmax(np.abs(a)) <= 0.5 for a in g)


def test_overlap_detected_after_a_successful_call() -> None:
    """The C side remembers the last list found free of overlaps; a repeated call is
    cheap, and any change of the list is checked again."""
    for mod in _impl_modules():
        base = np.arange(60.0)
        a, b = base[:20], base[20:40]
        for _ in range(3):
            mod.clip_grad_value_([a, b], 100.0)
        with pytest.raises(ValueError, match=r"^grads\[0\] and grads\[1\] share memory"):
            mod.clip_grad_value_([a, base[10:30]], 100.0)
        with pytest.raises(ValueError, match=r"^grads\[0\] and grads\[2\] share memory"):
            mod.clip_grad_norm_([a, b, a], 1.0)
        before = base.copy()
        with pytest.raises(ValueError, match=r"^grads\[1\] and grads\[2\] share memory"):
            mod.clip_grad_norm_([b, a, base[::7]], 1e-3)
        np.testing.assert_array_equal(base, before)
        mod.clip_grad_value_([b, a], 100.0)
        np.testing.assert_array_equal(base, np.minimum(before, 100.0))
