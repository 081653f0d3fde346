"""Checks of the arguments of the MLP kernels, losses and initialisers.

Shared by ``fastclip._nn``, ``fastclip.reference.nn`` and :mod:`fastclip.nn`
(same exceptions, same messages).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from fastclip._checks import arrays as _ca

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

#: Activation codes of the kernels (csrc/nn.h).
ACTIVATIONS = {"identity": 0, "relu": 1, "leaky_relu": 2, "prelu": 3, "sigmoid": 4, "tanh": 5}


def plain_array(obj: Any, name: str) -> np.ndarray:
    """``obj`` as a plain ndarray: a subclass (``np.matrix``, ...) is used through a
    base-class view, a masked array is refused (its mask would be ignored)."""
    if not isinstance(obj, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(obj).__name__}")
    if type(obj) is not np.ndarray:
        obj = _ca.base_view(obj, name)
    return obj


def float_array(obj: Any, name: str) -> np.ndarray:
    obj = plain_array(obj, name)
    if obj.dtype not in FLOATS:
        raise TypeError(f"{name} must have dtype float32 or float64, got {obj.dtype}")
    return obj


def check_rows(a: Any, name: str, width: int | None, what: str,
               want: np.dtype | None) -> np.ndarray:
    """A model's input or output gradient: a 2-d ``(N, width)`` array of dtype ``want``
    (float32 or float64 when ``want`` is None), returned with unit-stride, aligned,
    native rows (a copy only when it has none)."""
    a = plain_array(a, name)  # a masked array is refused, np.matrix viewed
    if want is None:
        if a.dtype not in FLOATS:
            raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    elif a.dtype != want:
        raise TypeError(
            f"{name} must have dtype {want} (the model's dtype), got {a.dtype}"
        )
    if a.ndim != 2 or (width is not None and a.shape[1] != width):
        raise ValueError(
            f"{name} has shape {a.shape} but the model expects {what} of shape "
            f"(N, {width if width is not None else 'M'})"
        )
    width = a.shape[1]
    if a.flags.c_contiguous and a.flags.aligned and a.dtype.isnative:
        return a
    it = a.itemsize
    if (a.strides[1] == it and a.strides[0] >= width * it and a.strides[0] % it == 0
            and a.flags.aligned and a.dtype.isnative):
        return a
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))


def unit_rows(a: np.ndarray) -> np.ndarray:
    """``a`` (2-D) if its rows are unit-stride with a positive row stride (what
    BLAS accepts), else a C-contiguous native copy."""
    if not a.dtype.isnative:
        return np.ascontiguousarray(a.astype(a.dtype.newbyteorder("=")))
    if a.flags.c_contiguous:
        return a
    it = a.itemsize
    m = a.shape[1]
    if a.strides[1] == it and a.strides[0] >= m * it and a.strides[0] % it == 0:
        return a
    return np.ascontiguousarray(a)


def check_xent_args(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate softmax cross-entropy arguments.

    Returns ``(logits, labels, is_int)``: logits 2-D with unit-stride rows,
    labels int64 ``(N,)`` or probabilities ``(N, C)`` in the logits' dtype
    (C-contiguous)."""
    logits = float_array(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {logits.shape}")
    n, c = logits.shape
    labels = plain_array(labels, "labels")
    kind = labels.dtype.kind
    if kind in "iu":
        if labels.shape != (n,):
            raise ValueError(
                f"integer labels must have shape (N,) = ({n},) for logits of shape "
                f"{logits.shape}, got labels of shape {labels.shape}"
            )
        if n:
            # range checked on the labels as given (a uint64 above 2**63 would wrap to a
            # negative int64 and be reported as one)
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= c:
                bad = lo if lo < 0 else hi
                row = int(np.flatnonzero(labels == labels.dtype.type(bad))[0])
                raise ValueError(
                    f"labels must be in [0, {c}) for logits of shape {logits.shape}, got "
                    f"{bad} at row {row}"
                )
        lab = np.ascontiguousarray(labels, dtype=np.int64)
        return unit_rows(logits), lab, True
    if kind == "f":
        if labels.shape != logits.shape:
            raise ValueError(
                f"probability labels must have the shape of logits {logits.shape}, got "
                f"labels of shape {labels.shape}"
            )
        return unit_rows(logits), np.ascontiguousarray(labels, dtype=logits.dtype), False
    raise TypeError(
        f"labels must be integers (N,) or floating-point probabilities (N, C), got dtype "
        f"{labels.dtype}"
    )


def check_loss_pred_target(pred: Any, target: Any, weighted: bool = False
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Validate mse arguments: C-contiguous pred, and target cast to pred's dtype
    (``weighted``: sample weights come too, which need rows: pred at least 1-d)."""
    pred = float_array(pred, "pred")
    if weighted and pred.ndim == 0:
        raise ValueError("sample_weight weighs the rows of pred, but pred is 0-d (a single "
                         "value has no rows)")
    target = plain_array(target, "target")
    if target.dtype.kind not in "iuf":
        raise TypeError(f"target must have a real numeric dtype, got {target.dtype}")
    if target.shape != pred.shape:
        raise ValueError(
            f"target must have the shape of pred: pred has shape {pred.shape}, target has "
            f"shape {target.shape}"
        )
    # C order, 0-d kept 0-d (ascontiguousarray would make it 1-d, and the gradient with it)
    pred = np.require(pred, requirements="C")
    if not pred.dtype.isnative:
        pred = pred.astype(pred.dtype.newbyteorder("="))
    return pred, np.require(np.asarray(target, dtype=pred.dtype), requirements="C")


def check_sample_weight(sample_weight: Any, n: int, rows_of: str) -> tuple[np.ndarray, float]:
    """Per-row weights of a loss: a 1-D ndarray of ``n`` real numbers (``rows_of``: the
    array whose rows they weigh, for messages), finite and ``>= 0``.

    Returns ``(weights, total)``: the weights as a C-contiguous float64 array and their
    float64 sum (finite; 0 when every weight is 0)."""
    w = plain_array(sample_weight, "sample_weight")
    if w.dtype.kind not in "iuf":
        raise TypeError(f"sample_weight must hold real numbers, got dtype {w.dtype}")
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), one weight per row of "
                         f"{rows_of}, got shape {w.shape}")
    w = np.ascontiguousarray(w, dtype=np.float64)
    bad = ~np.isfinite(w) | (w < 0)  # NaN compares False: caught by isfinite
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"sample_weight must be finite and >= 0, got {float(w[i])!r} at row {i}")
    total = float(w.sum())
    if not math.isfinite(total):
        raise ValueError(f"sample_weight sums to {total!r}, beyond the range of float64: "
                         "rescale the weights")
    return w, total


def init_args(shape: Any, rng: Any, gain: Any, dtype: Any) -> tuple[tuple[int, ...], int, int,
                                                                     np.random.Generator, float,
                                                                     np.dtype]:
    if isinstance(shape, numbers.Integral) and not isinstance(shape, (bool, np.bool_)):
        shape = (int(shape),)
    try:
        items = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of ints, got {type(shape).__name__}") from None
    for s in items:  # 2.7 or "3" would be truncated or parsed without a word
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError(f"shape must be a tuple of ints, got {shape!r}")
    shp = tuple(int(s) for s in items)
    if len(shp) < 2:
        raise ValueError(f"shape must have at least 2 dimensions (fan_in, fan_out), got {shp}")
    if any(s < 0 for s in shp):
        raise ValueError(f"shape must not have negative entries, got {shp}")
    rf = int(np.prod(shp[2:])) if len(shp) > 2 else 1
    fan_in, fan_out = shp[0] * rf, shp[1] * rf
    if rng is None or isinstance(rng, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(rng, (bool, np.bool_)):
            raise TypeError("rng must be None, an int seed or a numpy.random.Generator, got bool")
        if isinstance(rng, numbers.Integral) and int(rng) < 0:
            raise ValueError(f"rng must be >= 0, got {int(rng)}")
        rng = np.random.default_rng(rng if not isinstance(rng, numbers.Integral) else int(rng))
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be None, an int seed or a numpy.random.Generator, got "
            f"{type(rng).__name__}"
        )
    if isinstance(gain, (bool, np.bool_)) or not isinstance(gain, numbers.Real):
        raise TypeError(f"gain must be a real number, got {type(gain).__name__}")
    g = float(gain)
    if not (math.isfinite(g) and g >= 0):
        raise ValueError(f"gain must be finite and >= 0, got {g!r}")
    return shp, fan_in, fan_out, rng, g, check_dtype(dtype)


def init_values(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """An initialiser's float64 draw in ``dtype``; ValueError naming ``gain`` when the
    values overflow it (a gain so large that the weights would be inf)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = values.astype(dtype)
    if not np.isfinite(out).all():
        raise ValueError(f"gain is so large that the initial values overflow {np.dtype(dtype)}")
    return out


def check_dtype(dtype: Any) -> np.dtype:
    """The dtype of a layer's parameters: float32 or float64 (None: float32, the
    default, as torch takes None for its default dtype)."""
    if dtype is None:
        return np.dtype(np.float32)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in FLOATS:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def fan(n: int) -> int:
    return n if n > 0 else 1
