"""Checks of scalar arguments: real numbers, integers, flags and choices.

Each function returns the normalised value (a Python ``float``, ``int``,
``bool`` or ``str``) or raises :class:`TypeError` (wrong type) or
:class:`ValueError` (out of range) with a message that names the argument.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np


def real(value: Any, name: str) -> float:
    """Any real number (NaN and inf included) as a float; a 0-d numeric array is
    accepted. An int too large for a float raises ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
            value = value.item()
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large for a float, got {value!r}") from None


def check_real(value: Any, name: str) -> float:
    """A real number, not NaN (inf allowed)."""
    v = real(value, name)
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    return v


def check_finite(value: Any, name: str) -> float:
    """A finite real number."""
    v = check_real(value, name)
    if math.isinf(v):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return v


def at_least_zero(v: float, name: str) -> float:
    """``v`` (a float, not NaN) if it is >= 0."""
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v!r}")
    return v


def above_zero(v: float, name: str) -> float:
    """``v`` (a float) if it is > 0."""
    if not v > 0:
        raise ValueError(f"{name} must be > 0, got {v!r}")
    return v


def check_nonnegative(value: Any, name: str) -> float:
    """A real number >= 0, not NaN (inf allowed)."""
    return at_least_zero(check_real(value, name), name)


def check_positive(value: Any, name: str) -> float:
    """A real number > 0, not NaN (inf allowed)."""
    return above_zero(check_real(value, name), name)


def check_rate(value: Any, name: str) -> float:
    """A finite real number >= 0 (a learning rate, a factor, ...)."""
    return at_least_zero(check_finite(value, name), name)


def check_finite_positive(value: Any, name: str) -> float:
    """A finite real number > 0."""
    return above_zero(check_finite(value, name), name)


def check_interval(value: Any, name: str, *, low: float, low_open: bool,
                   high: float | None = None, high_open: bool = True) -> float:
    """A real number in an interval (``low``/``high`` open or closed), not NaN."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = real(value, name)
    ok = not math.isnan(v) and (v > low if low_open else v >= low)
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        lo = f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f" and {'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{name} must be {lo}{hi}, got {value!r}")
    return v


def check_int(value: Any, name: str, minimum: int | None = None) -> int:
    """An integer (not a bool), optionally ``>= minimum``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    return v


def check_bool(value: Any, name: str) -> bool:
    """A bool (``numpy.bool_`` accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def check_choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    """One of ``options`` (exact string)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def check_norm_type(value: Any) -> float:
    """A p > 0 or inf; the string 'inf' is accepted as PyTorch does."""
    if isinstance(value, str) and value.lower() in ("inf", "infinity"):
        return math.inf
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"norm_type must be a positive real number or inf, got {type(value).__name__}"
        )
    p = real(value, "norm_type")
    if not p > 0:  # rejects NaN, 0, negatives and -inf
        raise ValueError(f"norm_type must be a positive real number or inf, got {p!r}")
    return p


def check_total_norm(value: Any, name: str = "total_norm") -> float:
    """A total norm as returned by get_total_norm: >= 0, inf or NaN."""
    v = real(value, name)
    if v < 0:
        raise ValueError(f"{name} must be >= 0 (a norm), got {v!r}")
    return v


def check_range(lo: Any, hi: Any) -> tuple[float, float]:
    """The bounds ``lo <= hi`` of clip_by_value (each not NaN)."""
    lo_f = check_real(lo, "lo")
    hi_f = check_real(hi, "hi")
    if lo_f > hi_f:
        raise ValueError(f"lo must be <= hi, got lo={lo_f!r} > hi={hi_f!r}")
    return lo_f, hi_f
