"""Checks of the arguments of :mod:`fastclip.train` and of the data given to ``fit``."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from fastclip._checks import arrays as _ca
from fastclip._checks import nn as _cn

__all__ = [
    "cast_to_dtype",
    "check_X",
    "check_callbacks",
    "check_model",
    "check_no_single_row_batch",
    "check_sample_weight",
    "check_step_loss",
    "check_step_sqnorms",
    "check_y",
    "int_arg",
    "opt_real_arg",
    "real_arg",
    "rng_arg",
]


def int_arg(value: Any, name: str, low: int) -> int:
    """``value`` as an int ``>= low`` (bools rejected)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if int(value) < low:
        raise ValueError(f"{name} must be >= {low}, got {int(value)}")
    return int(value)


def real_arg(value: Any, name: str, low: float, *, inclusive: bool = False,
             high: float | None = None) -> float:
    """``value`` as a finite float ``> low`` (``>= low`` with ``inclusive``) and ``< high``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    ok = math.isfinite(v) and (v >= low if inclusive else v > low)
    if ok and high is not None:
        ok = v < high
    if not ok:
        rng = f"{'>=' if inclusive else '>'} {low:g}" + ("" if high is None else f" and < {high:g}")
        raise ValueError(f"{name} must be finite and {rng}, got {value!r}")
    return v


def opt_real_arg(value: Any, name: str, low: float, *, inclusive: bool = False) -> float | None:
    """None, or ``value`` checked as by :func:`real_arg`."""
    return None if value is None else real_arg(value, name, low, inclusive=inclusive)


def rng_arg(seed: Any, name: str = "seed") -> np.random.Generator:
    """A Generator from None, an int seed or a Generator (kept as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, (bool, np.bool_))
                             or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"{name} must be None, an int or a numpy.random.Generator, "
                        f"got {type(seed).__name__}")
    if seed is not None and int(seed) < 0:
        raise ValueError(f"{name} must be >= 0, got {int(seed)}")
    return np.random.default_rng(None if seed is None else int(seed))


def check_callbacks(callbacks: Any, name: str = "callbacks") -> list[Any]:
    """The callbacks as a list, each callable (None: no callbacks)."""
    if callbacks is None:
        return []
    if callable(callbacks):
        raise TypeError(f"{name} must be a sequence of callables; wrap a single callback "
                        f"in a list: {name}=[f]")
    if isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"{name} must be a sequence of callables, got "
                        f"{type(callbacks).__name__}")
    cbs = list(callbacks)
    for i, cb in enumerate(cbs):
        if not callable(cb):
            raise TypeError(f"{name}[{i}] must be callable, got {type(cb).__name__}")
    return cbs


def check_model(model: Any) -> None:
    """``model`` has the methods :func:`fastclip.train.fit` calls."""
    needed = ("forward", "backward", "parameters", "gradients", "grad_sqnorms")
    missing = [m for m in needed if not callable(getattr(model, m, None))]
    if missing:
        raise TypeError(
            f"model must provide {', '.join(needed)} (like fastclip.nn.MLP); "
            f"{type(model).__name__} lacks {', '.join(missing)}"
        )


def check_step_sqnorms(sqnorms: Any) -> np.ndarray:
    """One step's per-parameter sums of squares for a monitor: a non-empty 1-d real
    array, none negative (NaN and inf pass: they flag the step); float64."""
    if isinstance(sqnorms, np.ma.MaskedArray):
        raise TypeError(_ca.masked_msg("sqnorms"))
    try:
        sq = np.asarray(sqnorms)
    except Exception as exc:
        raise TypeError(f"sqnorms must be an array of floats, got {type(sqnorms).__name__}"
                        ) from exc
    if sq.dtype.kind not in "fiu":
        raise TypeError(f"sqnorms must be an array of floats, got dtype {sq.dtype}")
    if sq.ndim != 1 or sq.size == 0:
        raise ValueError(f"sqnorms must be a 1-d array with one sum of squares per parameter "
                         f"array, got shape {sq.shape}")
    return _ca.check_sums_of_squares(np.ascontiguousarray(sq, dtype=np.float64))


def check_step_loss(loss: Any) -> float:
    """A step's loss: a real number (NaN and inf pass: they flag the step)."""
    if isinstance(loss, (bool, np.bool_)) or not isinstance(loss, numbers.Real):
        raise TypeError(f"loss must be a real number, got {type(loss).__name__}")
    return float(loss)


def check_no_single_row_batch(n: int, batch_size: int, ranks: int = 1) -> None:
    """A model with batch normalisation: no batch of one row (``batch_size == 1`` or
    ``n % batch_size == 1``) and, split over ``ranks`` (each rank normalises its own
    block of ``[r L // ranks, (r + 1) L // ranks)`` rows of a batch of ``L``), no block
    of fewer than two rows."""
    if batch_size == 1 and n > 0:
        raise ValueError(
            "batch_size=1 gives batches of one row, and batch normalisation in training "
            "mode needs more than one row: use a batch_size of at least 2"
        )
    if n % batch_size == 1 or n == 1:
        raise ValueError(
            f"batch_size={batch_size} leaves a last batch of one row out of {n} samples, and "
            "batch normalisation in training mode needs more than one row: choose a "
            "batch_size for which n_samples % batch_size != 1"
        )
    if ranks > 1:
        lengths = {min(batch_size, n)} | ({n % batch_size} if n % batch_size else set())
        for L in sorted(lengths):
            rows = min((r + 1) * L // ranks - r * L // ranks for r in range(ranks))
            if rows < 2:
                raise ValueError(
                    f"batch_size={batch_size} over {ranks} ranks gives a rank a block of "
                    f"{rows} row(s) of a batch of {L}, and batch normalisation in training "
                    f"mode needs more than one row per rank: use a batch_size of at least "
                    f"{2 * ranks} whose last batch (n_samples % batch_size) is 0 or at "
                    f"least {2 * ranks}"
                )


def _position(arr: np.ndarray, where: np.ndarray) -> str:
    if arr.ndim == 1:
        return f"row {int(where[0])}"
    if arr.ndim == 2:
        return f"row {int(where[0])}, column {int(where[1])}"
    return f"index {tuple(int(i) for i in where)}"


def _first_nonfinite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind not in "fc" or bool(np.isfinite(arr).all()):
        return
    where = np.argwhere(~np.isfinite(arr))[0]
    raise ValueError(
        f"{name} contains {arr[tuple(where)].item()!r} at {_position(arr, where)}: training "
        "data must be finite (remove or impute the missing values first)"
    )


def cast_to_dtype(arr: np.ndarray, name: str, dtype: np.dtype) -> np.ndarray:
    """``arr`` (finite) as a C-contiguous ``dtype`` array; rejects values that overflow it."""
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    # integers up to 2**64 and floats that cast safely stay finite in float32/float64
    if arr.dtype.kind == "f" and not np.can_cast(arr.dtype, dtype, casting="safe"):
        bad = np.isinf(out)
        if bad.any():
            where = np.argwhere(bad)[0]
            raise ValueError(
                f"{name} holds {arr[tuple(where)].item()!r} at {_position(arr, where)}, which "
                f"overflows the model's dtype {dtype} (largest finite value "
                f"{float(np.finfo(dtype).max):.4g}): rescale the data or use a float64 model"
            )
    return out


def check_X(X: Any, name: str, dtype: np.dtype) -> np.ndarray:
    """A 2-d, finite array of real numbers, converted once to the model's ``dtype``."""
    if not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
        except Exception as exc:  # noqa: BLE001  (ragged lists and the like)
            raise TypeError(f"{name} must be a 2-d array of numbers: {exc}") from None
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-d (samples, features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    _first_nonfinite(X, name)
    return cast_to_dtype(X, name, dtype)


def check_y(y: Any, name: str, n: int, n_out: int, classification: bool,
            dtype: np.dtype, x_name: str = "X") -> np.ndarray:
    """Labels (int64, in ``[0, n_out)``) or targets of shape ``(n, n_out)`` in ``dtype``
    (``x_name``: the inputs whose ``n`` rows they must match, for messages)."""
    if not isinstance(y, np.ndarray):
        try:
            y = np.asarray(y)
        except Exception as exc:  # noqa: BLE001
            raise TypeError(f"{name} must be an array: {exc}") from None
    if y.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers, got dtype {y.dtype}")
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(
            f"{name} has {y.shape[0] if y.ndim else 0} rows but {x_name} has {n}; they "
            "must match"
        )
    _first_nonfinite(y, name)
    if classification and y.ndim == 1:
        if y.dtype.kind == "f" and not np.all(y == np.round(y)):
            bad = int(np.flatnonzero(y != np.round(y))[0])
            raise ValueError(f"{name} holds class labels; row {bad} is {float(y[bad])!r}, "
                             "not an integer")
        # compared in the labels' own dtype: a uint64 of 2**63 is not cast to a negative int
        out_of_range = (y < 0) | (y >= n_out)
        if out_of_range.any():
            bad = int(np.flatnonzero(out_of_range)[0])
            value = y[bad].item()
            if isinstance(value, float):
                value = int(value) if abs(value) < 2.0 ** 63 else value
            raise ValueError(
                f"{name}[{bad}] is {value}, not a class label in [0, {n_out}) "
                f"(the model has {n_out} outputs)"
            )
        return y.astype(np.int64)
    want = (n, n_out)
    if y.ndim == 1 and n_out == 1 and not classification:
        y = y.reshape(n, 1)
    if y.shape != want:
        raise ValueError(f"{name} must have shape {want} to match the model's output, got "
                         f"{y.shape}")
    return cast_to_dtype(y, name, dtype)


def check_sample_weight(sample_weight: Any, n: int) -> np.ndarray:
    """``fit``'s per-sample weights: array_like of ``n`` real numbers (one per row of X),
    finite, ``>= 0`` and not all 0; returned as a float64 array."""
    if not isinstance(sample_weight, np.ndarray):
        try:
            sample_weight = np.asarray(sample_weight)
        except Exception as exc:  # noqa: BLE001  (ragged lists and the like)
            raise TypeError(f"sample_weight must be a 1-d array of numbers: {exc}") from None
    w, total = _cn.check_sample_weight(sample_weight, n, "X")
    if total == 0.0:
        raise ValueError("sample_weight must contain at least one non-zero weight: with "
                         "every weight 0 no sample contributes to the loss")
    return w


def value_arrays(params: Sequence[Any], name: str = "model.parameters()") -> list[np.ndarray]:
    """The value arrays of ``params`` (ndarrays, or objects holding one in ``.data``)."""
    out = []
    for i, p in enumerate(params):
        a = p if isinstance(p, np.ndarray) else getattr(p, "data", None)
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}[{i}] must be a numpy.ndarray or a parameter holding one in "
                            f".data, got {type(p).__name__}")
        out.append(a)
    return out


def check_optimizer_params(optimizer: Any, params: Sequence[np.ndarray]) -> None:
    """ValueError unless an optimiser that lists its ``params`` lists these arrays (the
    model's parameter values, the same objects in the same order)."""
    opt_params = getattr(optimizer, "params", None)
    if opt_params is None:
        return
    vals = value_arrays(list(opt_params), "optimizer.params")
    if len(vals) != len(params) or any(a is not b for a, b in zip(vals, params)):
        raise ValueError("optimizer must be built on model.parameters() (the same arrays, in "
                         "the same order)")
