"""Checks of array arguments: one ndarray or an iterable of them.

Both implementations raise the same exception type with the same message for the
same bad input; the messages live here so that they cannot drift apart.

Arrays must be float32/float64 ``numpy.ndarray`` objects. A subclass is used
through a plain ndarray view of the same memory (``np.matrix`` and
``np.memmap`` work like the ndarray they hold), except ``numpy.ma.MaskedArray``,
which is rejected with a TypeError: the kernels read and write every element,
so honouring a mask would need a different result per function, and silently
dropping it clips and scales the masked-out values too.
"""

from __future__ import annotations

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


def masked_msg(lab: str) -> str:
    return (
        f"{lab} is a numpy.ma.MaskedArray; masks are not supported (every element "
        "would be used, masked or not): pass arr.filled(0.0) or a plain ndarray"
    )


def readonly_msg(lab: str) -> str:
    return f"{lab} is read-only; this function modifies its arguments in place"


def shared_msg(lab_a: str, lab_b: str) -> str:
    return (
        f"{lab_a} and {lab_b} share memory; an in-place call would modify the same "
        "elements twice"
    )


def base_view(obj: np.ndarray, lab: str) -> np.ndarray:
    """A plain ndarray view of an ndarray subclass; TypeError for a masked array."""
    if isinstance(obj, np.ma.MaskedArray):
        raise TypeError(masked_msg(lab))
    return obj.view(np.ndarray)


def check_array(obj: Any, lab: str, inplace: bool) -> np.ndarray:
    """Validate one array; returns it (native byte order for read-only use)."""
    if not isinstance(obj, np.ndarray):
        raise TypeError(not_array_msg(lab, obj))
    if type(obj) is not np.ndarray:
        obj = base_view(obj, lab)
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


extent = _memory.extent


def check_no_shared_memory(arrays: list[np.ndarray], name: str) -> None:
    """Raise ValueError naming the first pair of arrays that share an element
    (O(n log n) plus the pairs that must be decided exactly: _checks.memory)."""
    pair = _memory.first_shared_pair(arrays)
    if pair is not None:
        a, b = sorted(pair)
        raise ValueError(shared_msg(label(name, a, False), label(name, b, False)))


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


def check_sums_of_squares(sqnorms: np.ndarray) -> np.ndarray:
    """``sqnorms`` (float64, one sum of squares per gradient) if none is negative
    (NaN and inf pass: a NaN or inf gradient gives them)."""
    if (sqnorms < 0).any():
        raise ValueError("sqnorms holds a negative value; sums of squares are >= 0")
    return sqnorms
