"""Checks for per-example clipping and differential privacy (``fastclip.privacy``)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from fastclip._checks import arrays as _ca
from fastclip._checks import scalars as _cs


def check_batched_arrays(grads: Any, name: str, inplace: bool) -> tuple[list[np.ndarray], bool]:
    """Arrays with a common leading batch axis of length >= 1: ``(arrays, single)``."""
    arrays, single = _ca.check_arrays(grads, name, inplace)
    if not arrays:
        raise ValueError(f"{name} is empty: there is no gradient to clip")
    for i, a in enumerate(arrays):
        if a.ndim == 0:
            raise ValueError(
                f"{_ca.label(name, i, single)} is 0-d; per-example gradients need a "
                "leading batch axis (shape (batch, ...))"
            )
    batch = arrays[0].shape[0]
    for i, a in enumerate(arrays):
        if a.shape[0] != batch:
            raise ValueError(
                f"{_ca.label(name, i, single)} has batch size {a.shape[0]}, but "
                f"{_ca.label(name, 0, single)} has {batch}: every per-example gradient "
                "needs the same leading batch axis"
            )
    if batch == 0:
        raise ValueError(f"{name} has a batch of size 0: there is no example to clip")
    return arrays, single


def check_clip_norm(value: Any, name: str, *, allow_zero: bool, allow_inf: bool) -> float:
    """A clipping norm: real, not NaN, > 0 (or >= 0), finite unless ``allow_inf``."""
    v = _cs.check_real(value, name)
    if v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {v!r}")
    if math.isinf(v) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {v!r}")
    return v


def check_noise_multiplier(value: Any) -> float:
    v = _cs.check_real(value, "noise_multiplier")
    if v < 0 or math.isinf(v):
        raise ValueError(f"noise_multiplier must be finite and >= 0, got {v!r}")
    return v


def check_delta(value: Any, name: str = "delta") -> float:
    v = _cs.check_real(value, name)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {v!r}")
    return v


def check_sample_rate(value: Any, name: str = "sample_rate") -> float:
    v = _cs.check_real(value, name)
    if not 0.0 < v <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {v!r}")
    return v


def check_epsilon(value: Any, name: str = "target_epsilon") -> float:
    v = _cs.check_real(value, name)
    if not 0.0 < v < math.inf:
        raise ValueError(f"{name} must be finite and > 0, got {v!r}")
    return v


def check_count(value: Any, name: str, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    v = int(value)
    if v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    return v


check_bool = _cs.check_bool


def check_accountant(value: Any) -> str:
    if not isinstance(value, str) or value.lower() not in ("rdp", "pld"):
        raise ValueError(f"accountant must be 'rdp' or 'pld', got {value!r}")
    return value.lower()


def check_per_example_clip(clip: Any, per_layer: Any, n_params: int) -> tuple[Any, Any]:
    """``(clip, per_layer)`` of a per-example backward: a float C > 0 with per_layer
    None/"equal"/"size", or a sequence of ``n_params`` per-parameter norms."""
    if clip is None:
        raise ValueError("per_layer needs per_example_clip (the clipping norm)")
    if isinstance(clip, (list, tuple, np.ndarray)):
        if per_layer is not None:
            raise ValueError("per_layer must be None when per_example_clip gives one "
                             "norm per parameter")
        norms = [check_clip_norm(c, f"per_example_clip[{i}]", allow_zero=False,
                                 allow_inf=False) for i, c in enumerate(clip)]
        if len(norms) != n_params:
            raise ValueError(f"per_example_clip has {len(norms)} norms, the model has "
                             f"{n_params} parameters")
        return np.array(norms, dtype=np.float64), "explicit"
    c = check_clip_norm(clip, "per_example_clip", allow_zero=False, allow_inf=False)
    if per_layer not in (None, "equal", "size"):
        raise ValueError(f"per_layer must be None, 'equal' or 'size', got {per_layer!r}")
    return c, per_layer


def check_sqnorms_out(sqnorms: Any, n: int) -> None:
    """``sqnorms`` of the noise kernels: None, or a writeable C-contiguous float64
    array of ``n`` elements (one per output array)."""
    if sqnorms is not None and not (
            isinstance(sqnorms, np.ndarray) and sqnorms.dtype == np.float64
            and sqnorms.flags.c_contiguous and sqnorms.flags.writeable and sqnorms.size == n):
        raise ValueError("sqnorms must be a writeable C-contiguous float64 array with one "
                         "element per out")
