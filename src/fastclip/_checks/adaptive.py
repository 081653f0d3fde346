"""Checks of the adaptive-clipping arguments (AGC's pairs of arrays, the clippers'
settings and states).

Shared by ``fastclip._adaptive``, ``fastclip.reference.adaptive`` and
:mod:`fastclip.adaptive`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastclip._checks import arrays as _ca
from fastclip._checks import scalars as _cs


def unit_split(shape: tuple[int, ...], lab: str) -> tuple[int, int]:
    """``(rows, cols)``: the array seen as a matrix whose columns are the units."""
    ndim = len(shape)
    size = math.prod(shape)
    if sum(1 for d in shape if d != 1) <= 1:
        return size, 1
    if ndim in (2, 3):
        return shape[0], math.prod(shape[1:])
    if ndim == 4:
        return shape[0] * shape[1] * shape[2], shape[3]
    raise ValueError(
        f"{lab} has shape {shape}: unit-wise norms need a scalar, a vector, an (in, out) "
        "weight, an (in, heads, out) weight or an HWIO kernel (at most 4 dimensions)"
    )


def check_pairs(grads: Any, params: Any) -> tuple[list[np.ndarray], list[np.ndarray], bool]:
    garr, single = _ca.check_arrays(grads, "grads", inplace=True)
    parr, psingle = _ca.check_arrays(params, "params", inplace=False)
    if len(parr) != len(garr):
        raise ValueError(
            f"params must hold one array per gradient: got {len(parr)} params for "
            f"{len(garr)} grads"
        )
    for i, (g, p) in enumerate(zip(garr, parr)):
        if g.shape != p.shape:
            raise ValueError(
                f"{_ca.label('params', i, psingle)} has shape {p.shape} but "
                f"{_ca.label('grads', i, single)} has shape {g.shape}; they must match"
            )
        unit_split(g.shape, _ca.label("grads", i, single))
    return garr, parr, single


def check_agc_args(clipping: Any, eps: Any) -> tuple[float, float]:
    return _cs.check_positive(clipping, "clipping"), _cs.check_nonnegative(eps, "eps")


def sqnorms_arg(sqnorms: Any, n: int) -> np.ndarray:
    """Per-gradient sums of squares given to a clipper: ``n`` finite-or-NaN
    floats >= 0 (a NaN or inf gradient gives a NaN or inf sum)."""
    if isinstance(sqnorms, np.ma.MaskedArray):
        raise TypeError(_ca.masked_msg("sqnorms"))
    try:
        raw = np.asarray(sqnorms)
        # numbers only: an object array would turn None into NaN without a word
        if raw.dtype.kind not in "fiu":
            raise TypeError
        arr = raw.astype(np.float64, copy=False)
    except (TypeError, ValueError):
        raise TypeError(
            f"sqnorms must be an array of {n} floats, got {type(sqnorms).__name__}"
        ) from None
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(
            f"sqnorms must be a 1-d array with one sum of squares per gradient ({n}), "
            f"got shape {arr.shape}"
        )
    return _ca.check_sums_of_squares(arr)


def require_keys(state: Any, keys: tuple[str, ...], cls: str) -> None:
    """``state`` is a dict holding ``keys`` (a clipper's ``state_dict``)."""
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict from {cls}.state_dict(), got {type(state).__name__}")
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"state is missing {missing} (expected a {cls}.state_dict())")


def last_threshold_arg(state: Any) -> float:
    """A state dict's ``last_threshold``: a real number (NaN: none yet; absent or None
    read as NaN)."""
    v = state.get("last_threshold", math.nan)
    if v is None:
        return math.nan
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                             np.floating)):
        raise TypeError(f"last_threshold must be a real number, got {type(v).__name__}")
    if v < 0:
        raise ValueError(f"last_threshold must be >= 0 (a norm), inf or NaN, got {float(v)!r}")
    return float(v)


def norms_arg(value: Any, name: str) -> np.ndarray:
    """A state dict's list of recorded norms as a float64 array (TypeError naming it
    when it holds something else than numbers)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a sequence of numbers ({exc})") from None
    return arr


def choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    """One of ``options``, case-insensitive (returned in lower case)."""
    if not isinstance(value, str) or value.lower() not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value.lower()
