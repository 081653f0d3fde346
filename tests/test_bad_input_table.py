"""Bad input across the public API: the exact exception type, a message naming the
argument, the same exception from both implementations, and nothing modified.

Each row builds fresh arguments (``setup``) and returns ``(callable, args,
kwargs)``; the callable is a public function (or a bound method of a public
object built in the same implementation). Every ndarray reachable from the
arguments, and the base of every view, must hold the same bytes after the call
raised, including valid arrays that come before the bad one in a list.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import fastclip

IMPLS = ("c", "python")


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
    row("clip_grad_norm_/grads-dict", fc.clip_grad_norm_, lambda: ({"w": _f32(3)}, 1.0),
        TypeError, r"^grads must be .* got dict"),
    row("clip_grad_norm_/grads-None", fc.clip_grad_norm_, lambda: (None, 1.0), TypeError,
        r"^grads must be .* got NoneType"),
    row("clip_grad_norm_/element-list", fc.clip_grad_norm_,
        lambda: ([_f32(4), [1.0, 2.0]], 1.0), TypeError,
        r"^grads\[1\] must be a numpy\.ndarray, got list"),
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
        ValueError, r"^clip_norm must be > 0, got -inf"),
    row("clip_by_norm/x-str", fc.clip_by_norm, lambda: ("x", 1.0), TypeError,
        r"^x must be .* got str"),
    row("clip_by_global_norm/xs-element", fc.clip_by_global_norm,
        lambda: ([_f64(2), np.ones(2, np.int32)], 1.0), TypeError, r"^xs\[1\] " + DTYPE),
    row("clip_by_global_norm/clip_norm-str", fc.clip_by_global_norm, lambda: ([_f64(2)], "1"),
        TypeError, r"^clip_norm must be a real number, got str"),
    row("clip_by_global_norm/use_norm-negative", fc.clip_by_global_norm,
        lambda: ([_f64(2)], 1.0, -3.0), ValueError, r"^use_norm must be >= 0"),
]

ROWS: list[Bad] = [*CLIP_ROWS]

# Rows that expose a bug in a family's code (reported to its owner). Strict:
# once the bug is fixed the row passes, XPASS fails, and the entry must go.
KNOWN_BUGS = {
    "clip_by_global_norm/use_norm-negative": "clip: a bad use_norm is reported as 'total_norm' "
    "(_validation.check_total_norm has the name built in)",
}


def _params() -> list:
    out = []
    for r in ROWS:
        marks = []
        if r.id in KNOWN_BUGS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[r.id]))
        out.append(pytest.param(r, id=r.id, marks=marks))
    return out


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
    assert len(ROWS) >= 30
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert set(KNOWN_BUGS) <= {r.id for r in ROWS}


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
    assert messages["c"] == messages["python"]
