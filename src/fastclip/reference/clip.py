"""Reference (pure NumPy) gradient clipping: the twin of ``fastclip._clip``.

The arithmetic follows the C kernels: float32 accumulates in float64, float64
norms are rescaled by max|x| when the plain sum of squares overflows or
underflows, p-norms other than 1, 2 and inf are computed as
``max|x| * sum((|x|/max|x|)**p)**(1/p)``, and the total norm is the p-norm of
the per-array norms, computed with the same scaling.

The ``*_checked`` functions are the entry points of the MPI collectives
(:mod:`fastclip.distributed.norms`): their arrays come from
``fastclip._checks.arrays.check_arrays`` and their scalars from
``fastclip._checks``, validated once at the collective, so nothing is checked
again here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastclip._checks import arrays as _ca
from fastclip._checks import scalars as _cs

_SSQ_TINY = 2.0**-968

# NaN/inf in the data are data (they propagate as in PyTorch), and float32 casts of
# huge limits are meant to give inf: like the C kernels, the reference stays quiet
# about them instead of emitting NumPy RuntimeWarnings.
_quiet = np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore")


def _norm(a: np.ndarray, p: float) -> float:
    if a.size == 0:
        return 0.0
    x = np.abs(a.astype(np.float64, copy=False)).ravel()
    if p == 2.0 or p == 1.0:
        s = float(np.dot(x, x)) if p == 2.0 else float(np.sum(x))
        if a.dtype == np.float64:
            m = float(np.max(x)) if not np.isnan(s) else math.nan
            if (math.isinf(s) and math.isfinite(m)) or (p == 2.0 and s < _SSQ_TINY and m > 0):
                r = x / m
                s2 = float(np.dot(r, r)) if p == 2.0 else float(np.sum(r))
                return m * (math.sqrt(s2) if p == 2.0 else s2)
        return math.sqrt(s) if p == 2.0 else s
    if np.isnan(x).any():
        return math.nan
    m = float(np.max(x))
    if math.isinf(p) or m == 0 or math.isinf(m):
        return m
    return _scaled_root(m, float(np.sum((x / m) ** p)), p)


def _scaled_root(m: float, s: float, p: float) -> float:
    """``m * s ** (1/p)``, inf when it overflows (as in C; a Python float power
    would raise OverflowError instead)."""
    with np.errstate(over="ignore"):
        return float(np.float64(m) * np.float64(s) ** (1.0 / p))


def _total(norms: np.ndarray, p: float) -> float:
    if norms.size == 0:
        return 0.0
    a = np.abs(norms)
    if np.isnan(a).any():
        return math.nan
    m = float(np.max(a))
    if math.isinf(p) or m == 0 or math.isinf(m):
        return m
    r = a / m
    if p == 2.0:
        return m * math.sqrt(float(np.sum(r * r)))
    if p == 1.0:
        return m * float(np.sum(r))
    return _scaled_root(m, float(np.sum(r**p)), p)


def _coef(max_norm: float, total: float) -> float:
    c = max_norm / (total + 1e-6)
    return c if (math.isnan(c) or c < 1.0) else 1.0


def _scale_(arrays: list[np.ndarray], coef: float) -> None:
    for a in arrays:
        np.multiply(a, a.dtype.type(coef), out=a)


@_quiet
def array_norms_checked(arrays: list[np.ndarray], p: float) -> np.ndarray:
    """array_norms of checked arrays and a checked norm_type."""
    return np.array([_norm(a, p) for a in arrays], dtype=np.float64)


def array_norms(grads: Any, norm_type: Any = 2.0) -> np.ndarray:
    p = _cs.check_norm_type(norm_type)
    arrays, _ = _ca.check_arrays(grads, "grads", inplace=False)
    return array_norms_checked(arrays, p)


def _checked_total(arrays: list[np.ndarray], single: bool, p: float,
                   error_if_nonfinite: bool) -> float:
    """The total norm of checked arrays; FloatingPointError naming the first
    non-finite array when it is not finite and ``error_if_nonfinite``."""
    norms = array_norms_checked(arrays, p)
    total = _total(norms, p)
    if error_if_nonfinite and not math.isfinite(total):
        bad = np.flatnonzero(~np.isfinite(norms))
        raise FloatingPointError(
            _ca.nonfinite_msg(int(bad[0]) if bad.size else -1, single, "grads", total, p)
        )
    return total


@_quiet
def get_total_norm(grads: Any, norm_type: Any = 2.0, error_if_nonfinite: bool = False) -> float:
    p = _cs.check_norm_type(norm_type)
    check = _cs.check_bool(error_if_nonfinite, "error_if_nonfinite")
    arrays, single = _ca.check_arrays(grads, "grads", inplace=False)
    return _checked_total(arrays, single, p, check)


@_quiet
def clip_grad_norm_(
    grads: Any, max_norm: Any, norm_type: Any = 2.0, error_if_nonfinite: bool = False
) -> float:
    mx = _cs.check_nonnegative(max_norm, "max_norm")
    p = _cs.check_norm_type(norm_type)
    check = _cs.check_bool(error_if_nonfinite, "error_if_nonfinite")
    arrays, single = _ca.check_arrays(grads, "grads", inplace=True)
    total = _checked_total(arrays, single, p, check)
    coef = _coef(mx, total)
    if coef != 1.0:
        _scale_(arrays, coef)
    return total


@_quiet
def clip_grads_with_norm_checked_(arrays: list[np.ndarray], max_norm: float,
                                  total_norm: float) -> None:
    """clip_grads_with_norm_ of checked arrays (checked for in-place use) and scalars."""
    coef = _coef(max_norm, total_norm)
    if coef != 1.0:
        _scale_(arrays, coef)


def clip_grads_with_norm_(grads: Any, max_norm: Any, total_norm: Any) -> None:
    mx = _cs.check_nonnegative(max_norm, "max_norm")
    total = _cs.check_total_norm(total_norm)
    arrays, _ = _ca.check_arrays(grads, "grads", inplace=True)
    clip_grads_with_norm_checked_(arrays, mx, total)


@_quiet
def clip_grad_value_(grads: Any, clip_value: Any) -> None:
    c = _cs.check_nonnegative(clip_value, "clip_value")
    arrays, _ = _ca.check_arrays(grads, "grads", inplace=True)
    for a in arrays:
        np.clip(a, a.dtype.type(-c), a.dtype.type(c), out=a)


@_quiet
def clip_by_value(x: Any, lo: Any, hi: Any) -> Any:
    lo_f, hi_f = _cs.check_range(lo, hi)
    arrays, single = _ca.check_arrays(x, "x", inplace=False)
    outs = [np.asarray(np.clip(a, a.dtype.type(lo_f), a.dtype.type(hi_f))) for a in arrays]
    return outs[0] if single else outs


@_quiet
def clip_by_norm(x: Any, clip_norm: Any) -> Any:
    c = _cs.check_finite_positive(clip_norm, "clip_norm")
    arrays, single = _ca.check_arrays(x, "x", inplace=False)
    outs = []
    for a in arrays:
        n = _norm(a, 2.0)
        coef = c / (n if (n > c or math.isnan(n)) else c)
        outs.append(np.asarray(a * a.dtype.type(coef)))
    return outs[0] if single else outs


@_quiet
def clip_by_global_norm_checked(arrays: list[np.ndarray], clip_norm: float,
                                global_norm: float) -> list[np.ndarray]:
    """The clipped copies of clip_by_global_norm of checked arrays, given the
    checked clip_norm and the global norm."""
    g = global_norm
    inv = 1.0 / g if g != 0.0 else math.inf
    coef = clip_norm * min(inv, 1.0 / clip_norm)
    if not math.isfinite(g):
        coef = math.nan
    return [np.asarray(a * a.dtype.type(coef)) for a in arrays]


@_quiet
def clip_by_global_norm(xs: Any, clip_norm: Any, use_norm: Any = None) -> tuple[list, float]:
    c = _cs.check_finite_positive(clip_norm, "clip_norm")
    arrays, _ = _ca.check_arrays(xs, "xs", inplace=False)
    if use_norm is None:
        g = _total(array_norms_checked(arrays, 2.0), 2.0)
    else:
        g = _cs.check_total_norm(use_norm, "use_norm")
    return clip_by_global_norm_checked(arrays, c, g), g


def zero_nans_(grads: Any) -> int:
    arrays, _ = _ca.check_arrays(grads, "grads", inplace=True)
    count = 0
    for a in arrays:
        mask = np.isnan(a)
        count += int(np.count_nonzero(mask))
        a[mask] = 0
    return count
