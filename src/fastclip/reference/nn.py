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
``softmax_cross_entropy(logits, labels, sample_weight)`` and ``mse(pred, target,
sample_weight)``
    ``(loss, gradient)`` with the loss a Python float (mean over rows /
    elements; with ``sample_weight``, the mean over rows weighted by it, each
    gradient row scaled by ``w_i / sum(w)``; weights summing to 0 give a NaN
    loss and a zero gradient).

Activation codes: 0 identity, 1 relu, 2 leaky_relu, 3 prelu, 4 sigmoid,
5 tanh. The derivative is read from ``pre`` when given, otherwise from ``out``
(whose sign is the sign of ``z`` for relu and for leaky relu with a slope
>= 0). sigmoid and tanh always read ``out``: their derivatives are
``y * (1 - y)`` and ``1 - y**2`` (PyTorch's formulas).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastclip._checks import nn as _cn

__all__ = [
    "ACTIVATIONS",
    "check_loss_pred_target",
    "check_xent_args",
    "dense_backward",
    "dense_forward",
    "mse",
    "softmax_cross_entropy",
]

ACTIVATIONS = _cn.ACTIVATIONS

check_xent_args = _cn.check_xent_args
check_loss_pred_target = _cn.check_loss_pred_target


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
def softmax_cross_entropy(logits: Any, labels: Any,
                          sample_weight: Any = None) -> tuple[float, np.ndarray]:
    x, lab, is_int = check_xent_args(logits, labels)
    n, c = x.shape
    w, w_sum = (None, 0.0) if sample_weight is None else _cn.check_sample_weight(
        sample_weight, n, "logits")
    dt = x.dtype
    if n == 0:
        return math.nan, np.empty((0, c), dtype=dt)
    if w is not None and w_sum == 0.0:
        return math.nan, np.zeros((n, c), dtype=dt)
    xd = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        # nanmax without its "All-NaN slice" warning: fmax skips NaN unless all are
        m = np.fmax.reduce(xd, axis=1, keepdims=True) if c else np.zeros((n, 1))
        m = np.where(np.isnan(m), 0.0, m)
        e = np.exp(xd - m)
        se = e.sum(axis=1, keepdims=True)
        # log(se) + (max - x_y), not (max + log(se)) - x_y: the latter rounds
        # log(se) away for logits near 1e16
        lse = np.log(se)
        p = e / se
        if is_int:
            rows = np.arange(n)
            loss_rows = lse[:, 0] + (m[:, 0] - xd[rows, lab])
            g = p
            g[rows, lab] -= 1.0
        else:
            t = lab.astype(np.float64)
            ts = t.sum(axis=1, keepdims=True)
            loss_rows = (ts * lse)[:, 0] - (t * (xd - m)).sum(axis=1)
            g = p * ts - t
    if w is None:
        loss = float(loss_rows.sum()) / n
        return loss, (g / n).astype(dt)
    # as the kernel: the weighted row losses over the weights' sum, rows times w_i / sum
    with np.errstate(invalid="ignore", over="ignore"):
        loss = float((w * loss_rows).sum()) / w_sum
        return loss, (g * w[:, None] / w_sum).astype(dt)


def mse(pred: Any, target: Any, sample_weight: Any = None) -> tuple[float, np.ndarray]:
    p, t = check_loss_pred_target(pred, target, sample_weight is not None)
    w, w_sum = (None, 0.0) if sample_weight is None else _cn.check_sample_weight(
        sample_weight, p.shape[0], "pred")
    if p.size == 0:
        return math.nan, np.empty(p.shape, dtype=p.dtype)
    if w is not None and w_sum == 0.0:
        return math.nan, np.zeros(p.shape, dtype=p.dtype)
    d = p.astype(np.float64) - t.astype(np.float64)
    if w is not None:
        # as the kernel: rows of k elements, g = d * (2 w_i / (sum(w) k))
        n = p.shape[0]
        d = d.reshape(n, -1)
        den = w_sum * d.shape[1]
        loss = float(np.dot(w, np.einsum("ij,ij->i", d, d))) / den
        return loss, (d * (2.0 * w / den)[:, None]).astype(p.dtype).reshape(p.shape)
    loss = float(np.dot(d.ravel(), d.ravel())) / p.size
    return loss, np.asarray((d * (2.0 / p.size)).astype(p.dtype))  # 0-d stays an array
