"""Reference (pure NumPy) MLP kernels: the twin of ``fastclip._nn``.

Both modules expose the same low-level kernels, used by the layers of
:mod:`fastclip.nn` (which pick one of the two through ``fastclip._dispatch``):

``dense_forward(x, weight, bias, slope, act, negative_slope, pre, out)``
    ``z = x @ weight + bias`` and ``out = act(z)``; ``z`` is stored in ``pre``
    when ``pre`` is not None (PReLU, and leaky ReLU with a negative slope < 0,
    need it in the backward), otherwise the GEMM writes into ``out`` and the
    activation is applied in place.
``dense_backward(dy, x, weight, slope, act, negative_slope, pre, out, dz, dx,
dweight, dbias, dslope, sqnorms)``
    ``dz = dy * act'(z)`` (written to ``dz`` unless ``dz`` is None, which is
    allowed for the identity only: ``dy`` is then used as it is),
    ``dbias = dz.sum(0)``, ``dslope = sum(dy * z, z <= 0)`` (PReLU),
    ``dweight = x.T @ dz`` (skipped, with sqnorms[0] = 0, when ``dweight`` is None),
    ``dx = dz @ weight.T`` (skipped when ``dx`` is None),
    and ``sqnorms[k]`` = the float64 sum of squares of dweight, dbias (and dslope).
``softmax_cross_entropy(logits, labels)`` and ``mse(pred, target)``
    ``(loss, gradient)`` with the loss a Python float (mean over rows /
    elements).
``xavier_uniform``, ``xavier_normal``, ``he_uniform``, ``he_normal``
    Initialisers (NumPy random generators; shared by both modules).

Activation codes: 0 identity, 1 relu, 2 leaky_relu, 3 prelu, 4 sigmoid,
5 tanh. The derivative is read from ``pre`` when given, otherwise from ``out``
(whose sign is the sign of ``z`` for relu and for leaky relu with a slope
>= 0). sigmoid and tanh always read ``out``: their derivatives are
``y * (1 - y)`` and ``1 - y**2`` (PyTorch's formulas).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "check_loss_pred_target",
    "check_xent_args",
    "dense_backward",
    "dense_forward",
    "he_normal",
    "he_uniform",
    "mse",
    "softmax_cross_entropy",
    "xavier_normal",
    "xavier_uniform",
]

ACTIVATIONS = {"identity": 0, "relu": 1, "leaky_relu": 2, "prelu": 3, "sigmoid": 4, "tanh": 5}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------------
# Argument checks shared with fastclip._nn (same exceptions, same messages)
# ---------------------------------------------------------------------------
def _float_array(obj: Any, name: str) -> np.ndarray:
    if not isinstance(obj, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(obj).__name__}")
    if obj.dtype not in _FLOATS:
        raise TypeError(f"{name} must have dtype float32 or float64, got {obj.dtype}")
    return obj


def _unit_rows(a: np.ndarray) -> np.ndarray:
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
    logits = _float_array(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {logits.shape}")
    n, c = logits.shape
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"labels must be a numpy.ndarray, got {type(labels).__name__}")
    kind = labels.dtype.kind
    if kind in "iu":
        if labels.shape != (n,):
            raise ValueError(
                f"integer labels must have shape (N,) = ({n},) for logits of shape "
                f"{logits.shape}, got labels of shape {labels.shape}"
            )
        lab = np.ascontiguousarray(labels, dtype=np.int64)
        if n:
            lo, hi = int(lab.min()), int(lab.max())
            if lo < 0 or hi >= c:
                bad = lo if lo < 0 else hi
                row = int(np.flatnonzero(lab == bad)[0])
                raise ValueError(
                    f"labels must be in [0, {c}) for logits of shape {logits.shape}, got "
                    f"{bad} at row {row}"
                )
        return _unit_rows(logits), lab, True
    if kind == "f":
        if labels.shape != logits.shape:
            raise ValueError(
                f"probability labels must have the shape of logits {logits.shape}, got "
                f"labels of shape {labels.shape}"
            )
        return _unit_rows(logits), np.ascontiguousarray(labels, dtype=logits.dtype), False
    raise TypeError(
        f"labels must be integers (N,) or floating-point probabilities (N, C), got dtype "
        f"{labels.dtype}"
    )


def check_loss_pred_target(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate mse arguments: C-contiguous pred, and target cast to pred's dtype."""
    pred = _float_array(pred, "pred")
    if not isinstance(target, np.ndarray):
        raise TypeError(f"target must be a numpy.ndarray, got {type(target).__name__}")
    if target.dtype.kind not in "iuf":
        raise TypeError(f"target must have a real numeric dtype, got {target.dtype}")
    if target.shape != pred.shape:
        raise ValueError(
            f"target must have the shape of pred: pred has shape {pred.shape}, target has "
            f"shape {target.shape}"
        )
    pred = np.ascontiguousarray(pred)
    if not pred.dtype.isnative:
        pred = pred.astype(pred.dtype.newbyteorder("="))
    return pred, np.ascontiguousarray(target, dtype=pred.dtype)


# ---------------------------------------------------------------------------
# Initialisers
# ---------------------------------------------------------------------------
def _init_args(shape: Any, rng: Any, gain: Any, dtype: Any) -> tuple[tuple[int, ...], int, int,
                                                                     np.random.Generator, float,
                                                                     np.dtype]:
    if isinstance(shape, numbers.Integral):
        shape = (int(shape),)
    try:
        shp = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of ints, got {type(shape).__name__}") from None
    if len(shp) < 2:
        raise ValueError(f"shape must have at least 2 dimensions (fan_in, fan_out), got {shp}")
    if any(s < 0 for s in shp):
        raise ValueError(f"shape must not have negative entries, got {shp}")
    rf = int(np.prod(shp[2:])) if len(shp) > 2 else 1
    fan_in, fan_out = shp[0] * rf, shp[1] * rf
    if rng is None or isinstance(rng, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(rng, (bool, np.bool_)):
            raise TypeError("rng must be None, an int seed or a numpy.random.Generator, got bool")
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
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in _FLOATS:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return shp, fan_in, fan_out, rng, g, dt


def _fan(n: int) -> int:
    return n if n > 0 else 1


def xavier_uniform(shape: Any, rng: Any, gain: float = 1.0, dtype: Any = np.float32) -> np.ndarray:
    shp, fi, fo, r, g, dt = _init_args(shape, rng, gain, dtype)
    bound = g * math.sqrt(6.0 / _fan(fi + fo))
    return r.uniform(-bound, bound, size=shp).astype(dt)


def xavier_normal(shape: Any, rng: Any, gain: float = 1.0, dtype: Any = np.float32) -> np.ndarray:
    shp, fi, fo, r, g, dt = _init_args(shape, rng, gain, dtype)
    std = g * math.sqrt(2.0 / _fan(fi + fo))
    return (r.standard_normal(size=shp) * std).astype(dt)


def he_uniform(shape: Any, rng: Any, gain: float = 1.0, dtype: Any = np.float32) -> np.ndarray:
    shp, fi, _, r, g, dt = _init_args(shape, rng, gain, dtype)
    bound = g * math.sqrt(6.0 / _fan(fi))
    return r.uniform(-bound, bound, size=shp).astype(dt)


def he_normal(shape: Any, rng: Any, gain: float = 1.0, dtype: Any = np.float32) -> np.ndarray:
    shp, fi, _, r, g, dt = _init_args(shape, rng, gain, dtype)
    std = g * math.sqrt(2.0 / _fan(fi))
    return (r.standard_normal(size=shp) * std).astype(dt)


# ---------------------------------------------------------------------------
# Layer kernels
# ---------------------------------------------------------------------------
def _slope_value(act: int, slope: np.ndarray | None, negative_slope: float) -> float:
    if act == 3:
        if slope is None:
            raise ValueError("slope must be given for prelu")
        return float(slope[0])
    return float(negative_slope)


def dense_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, slope: np.ndarray | None,
                  act: int, negative_slope: float, pre: np.ndarray | None,
                  out: np.ndarray) -> None:
    s = _slope_value(act, slope, negative_slope)
    target = out if pre is None else pre
    np.matmul(x, weight, out=target)
    target += bias
    if act == 0:
        if pre is not None:
            out[...] = pre
    elif act == 1:
        np.maximum(target, 0, out=out)
    elif act in (2, 3):
        sc = target.dtype.type(s)
        out[...] = np.where(target > 0, target, target * sc)
    elif act == 4:
        out[...] = _sigmoid(target)
    elif act == 5:
        np.tanh(target, out=out)
    else:
        raise ValueError(f"act must be one of 0..5, got {act!r}")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` in z's dtype (0 where exp(-z) overflows)."""
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-z))


def _ssq(a: np.ndarray) -> float:
    v = a.astype(np.float64, copy=False).ravel()
    return float(np.dot(v, v))


def dense_backward(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, slope: np.ndarray | None,
                   act: int, negative_slope: float, pre: np.ndarray | None, out: np.ndarray,
                   dz: np.ndarray | None, dx: np.ndarray | None, dweight: np.ndarray | None,
                   dbias: np.ndarray, dslope: np.ndarray | None, sqnorms: np.ndarray) -> None:
    s = _slope_value(act, slope, negative_slope)
    ref = out if pre is None else pre
    if act == 0:
        g = dy
    elif act == 1:
        g = np.where(ref <= 0, dy.dtype.type(0), dy)
    elif act in (2, 3):
        g = np.where(ref > 0, dy, dy * dy.dtype.type(s))
    elif act == 4:
        g = dy * (1 - out) * out
    elif act == 5:
        g = dy * (1 - out * out)
    else:
        raise ValueError(f"act must be one of 0..5, got {act!r}")
    if dz is not None:
        dz[...] = g
        g = dz
    elif act != 0:
        raise ValueError("dz may be None only for the identity activation")
    dbias[...] = g.sum(axis=0, dtype=np.float64)
    if dweight is not None:
        np.matmul(x.T, g, out=dweight)
    if dx is not None:
        np.matmul(g, weight.T, out=dx)
    sqnorms[0] = _ssq(dweight) if dweight is not None else 0.0
    sqnorms[1] = _ssq(dbias)
    if act == 3:
        if dslope is None:
            raise ValueError("dslope must be given for prelu")
        zd = ref.astype(np.float64) * dy.astype(np.float64)
        dslope[0] = np.sum(np.where(ref > 0, 0.0, zd))
        sqnorms[2] = _ssq(dslope)


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------
def softmax_cross_entropy(logits: Any, labels: Any) -> tuple[float, np.ndarray]:
    x, lab, is_int = check_xent_args(logits, labels)
    n, c = x.shape
    dt = x.dtype
    if n == 0:
        return math.nan, np.empty((0, c), dtype=dt)
    xd = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        # nanmax without its "All-NaN slice" warning: fmax skips NaN unless all are
        m = np.fmax.reduce(xd, axis=1, keepdims=True) if c else np.zeros((n, 1))
        m = np.where(np.isnan(m), 0.0, m)
        e = np.exp(xd - m)
        se = e.sum(axis=1, keepdims=True)
        lse = m + np.log(se)
        p = e / se
        if is_int:
            rows = np.arange(n)
            loss_rows = lse[:, 0] - xd[rows, lab]
            g = p
            g[rows, lab] -= 1.0
        else:
            t = lab.astype(np.float64)
            ts = t.sum(axis=1, keepdims=True)
            loss_rows = (ts * lse)[:, 0] - (t * xd).sum(axis=1)
            g = p * ts - t
    loss = float(loss_rows.sum()) / n
    return loss, (g / n).astype(dt)


def mse(pred: Any, target: Any) -> tuple[float, np.ndarray]:
    p, t = check_loss_pred_target(pred, target)
    if p.size == 0:
        return math.nan, np.empty(p.shape, dtype=p.dtype)
    d = p.astype(np.float64) - t.astype(np.float64)
    loss = float(np.dot(d.ravel(), d.ravel())) / p.size
    return loss, (d * (2.0 / p.size)).astype(p.dtype)
