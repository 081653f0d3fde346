"""Argument checks and error messages shared by the C bindings and the reference.

Both implementations raise the same exception type with the same message for the
same bad input; the messages live here so that they cannot drift apart.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from fastclip._checks import memory as _memory

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def label(name: str, index: int, single: bool) -> str:
    """How an array is named in messages: ``grads`` or ``grads[3]``."""
    return name if single else f"{name}[{index}]"


def as_sequence(obj: Any, name: str) -> tuple[list[Any], bool]:
    """``(items, single)`` for one ndarray or an iterable of them."""
    if isinstance(obj, np.ndarray):
        return [obj], True
    if isinstance(obj, (list, tuple)):
        return list(obj), False
    if isinstance(obj, (str, bytes, dict)) or not isinstance(obj, Iterable):
        raise TypeError(not_iterable_msg(name, obj))
    return list(obj), False


def not_iterable_msg(name: str, obj: Any) -> str:
    return f"{name} must be a numpy.ndarray or an iterable of them, got {type(obj).__name__}"


def not_array_msg(lab: str, obj: Any) -> str:
    return f"{lab} must be a numpy.ndarray, got {type(obj).__name__}"


def bad_dtype_msg(lab: str, dtype: Any) -> str:
    return f"{lab} must have dtype float32 or float64, got {dtype}"


def swapped_msg(lab: str, dtype: Any) -> str:
    return (
        f"{lab} has non-native byte order (dtype {np.dtype(dtype).str!r}); in-place "
        "functions need native float32 or float64 arrays"
    )


def readonly_msg(lab: str) -> str:
    return f"{lab} is read-only; this function modifies its arguments in place"


def shared_msg(lab_a: str, lab_b: str) -> str:
    return (
        f"{lab_a} and {lab_b} share memory; an in-place call would modify the same "
        "elements twice"
    )


def check_array(obj: Any, lab: str, inplace: bool) -> np.ndarray:
    """Validate one array; returns it (native byte order for read-only use)."""
    if not isinstance(obj, np.ndarray):
        raise TypeError(not_array_msg(lab, obj))
    dt = obj.dtype
    if dt.kind != "f" or dt.itemsize not in (4, 8):
        raise TypeError(bad_dtype_msg(lab, dt))
    if not dt.isnative:
        if inplace:
            raise TypeError(swapped_msg(lab, dt))
        obj = obj.astype(dt.newbyteorder("="))
    if inplace and not obj.flags.writeable:
        raise ValueError(readonly_msg(lab))
    if inplace and _memory.has_internal_overlap(obj):
        raise ValueError(_memory.self_overlap_msg(lab))
    return obj


def check_arrays(obj: Any, name: str, inplace: bool) -> tuple[list[np.ndarray], bool]:
    """Validate every array before anything is written; ``(arrays, single)``."""
    items, single = as_sequence(obj, name)
    arrays = [check_array(a, label(name, i, single), inplace) for i, a in enumerate(items)]
    if inplace and len(arrays) > 1:
        check_no_shared_memory(arrays, name)
    return arrays, single


_extent = _memory.extent


def check_no_shared_memory(arrays: list[np.ndarray], name: str) -> None:
    """Raise ValueError naming the first pair of arrays that share an element
    (O(n log n) plus the pairs that must be decided exactly: _checks.memory)."""
    pair = _memory.first_shared_pair(arrays)
    if pair is not None:
        a, b = sorted(pair)
        raise ValueError(shared_msg(label(name, a, False), label(name, b, False)))


def _real(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
            return float(value)
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def check_real(value: Any, name: str) -> float:
    """A real number, not NaN (inf allowed)."""
    v = _real(value, name)
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    return v


def check_nonnegative(value: Any, name: str) -> float:
    """A real number >= 0, not NaN (inf allowed)."""
    v = check_real(value, name)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v!r}")
    return v


def check_positive(value: Any, name: str) -> float:
    """A real number > 0, not NaN (inf allowed)."""
    v = check_real(value, name)
    if not v > 0:
        raise ValueError(f"{name} must be > 0, got {v!r}")
    return v


def check_norm_type(value: Any) -> float:
    """A p > 0 or inf; the string 'inf' is accepted as PyTorch does."""
    if isinstance(value, str) and value.lower() in ("inf", "infinity"):
        return math.inf
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"norm_type must be a positive real number or inf, got {type(value).__name__}"
        )
    p = float(value)
    if not p > 0:  # rejects NaN, 0, negatives and -inf
        raise ValueError(f"norm_type must be a positive real number or inf, got {p!r}")
    return p


def check_total_norm(value: Any, name: str = "total_norm") -> float:
    """A total norm as returned by get_total_norm: >= 0, inf or NaN."""
    v = _real(value, name)
    if v < 0:
        raise ValueError(f"{name} must be >= 0 (a norm), got {v!r}")
    return v


def check_range(lo: Any, hi: Any) -> tuple[float, float]:
    lo_f = check_real(lo, "lo")
    hi_f = check_real(hi, "hi")
    if lo_f > hi_f:
        raise ValueError(f"lo must be <= hi, got lo={lo_f!r} > hi={hi_f!r}")
    return lo_f, hi_f


def nonfinite_msg(index: int, single: bool, name: str, total: float, norm_type: float) -> str:
    where = (
        f"{label(name, index, single)} holds a non-finite value"
        if index >= 0
        else "the total norm overflowed"
    )
    return (
        f"the total norm of order {norm_type!r} of {name} is {total!r}: {where}; nothing "
        "was modified (pass error_if_nonfinite=False to clip anyway, as PyTorch does)"
    )
