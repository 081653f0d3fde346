"""Reference (pure NumPy) batch-norm, dropout and activation kernels: the twin
of ``fastclip._layers``.

The layer classes of :mod:`fastclip.nn` call these kernels through
``fastclip._dispatch`` (family ``"layers"``). Arrays are 2-D ``(N, M)``: the
inputs ``x``/``dy`` need unit-stride rows, every output is a writeable
C-contiguous buffer of the input's dtype.

``bn_forward(x, weight, bias, running_mean, running_var, batch_stats, eps,
factor, invstd, xhat, out)``
    With ``batch_stats``: per column the mean and the biased variance of the
    ``N >= 2`` rows; ``running_mean``/``running_var`` (when not None) become
    ``(1 - factor) * running + factor * batch`` with the *unbiased* batch
    variance (PyTorch's convention). Otherwise the running statistics are
    used. ``invstd = 1 / sqrt(var + eps)``, ``xhat = (x - mean) * invstd``,
    ``out = xhat * weight + bias`` (weight and bias None: no affine).
``bn_backward(dy, xhat, weight, invstd, batch_stats, dx, dweight, dbias,
sqnorms)``
    ``dweight = sum_i dy * xhat``, ``dbias = sum_i dy`` (sums of squares in
    ``sqnorms[0:2]``) when given, and ``dx`` (when not None): with batch
    statistics ``weight * invstd / N * (N dy - sum_i dy - xhat sum_i dy xhat)``,
    otherwise ``dy * weight * invstd``.
``dropout(x, mask, scale, out)``
    ``out = x * mask * scale`` (mask bool or uint8 of shape (N, M)); the same
    call gives the backward.
``act_forward(x, act, slope, out)`` and ``act_backward(dy, x, out, act,
slope, dx, dslope, sqnorms)``
    Elementwise activation (codes of ``fastclip.reference.nn.ACTIVATIONS``)
    and ``dx = dy * act'``: from ``x`` for identity/relu/leaky_relu/prelu,
    from the output for sigmoid (``y (1 - y)``) and tanh (``1 - y**2``); for
    prelu ``dslope[0] = sum over x <= 0 of dy * x`` and ``sqnorms[0]`` its square.

Sums are accumulated in float64, rows in order, as the C kernels do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "act_backward",
    "act_forward",
    "bn_backward",
    "bn_forward",
    "dropout",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _float(obj: Any, name: str) -> np.dtype:
    if not isinstance(obj, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(obj).__name__}")
    if obj.dtype not in _FLOATS:
        raise TypeError(f"{name} must have dtype float32 or float64, got {obj.dtype}")
    return obj.dtype


def _rows(obj: Any, dt: np.dtype, n: int, width: int, name: str) -> None:
    if not isinstance(obj, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(obj).__name__}")
    if obj.dtype != dt:
        raise TypeError(f"{name} has dtype {obj.dtype}, expected {dt}")
    if obj.ndim != 2 or (n >= 0 and obj.shape[0] != n) or (width >= 0 and obj.shape[1] != width):
        raise ValueError(f"{name} has shape {obj.shape}, expected "
                         f"({n if n >= 0 else 'N'}, {width if width >= 0 else 'M'})")


def _buf(obj: Any, dt: np.dtype, shape: tuple[int, ...], name: str) -> None:
    if not isinstance(obj, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(obj).__name__}")
    if obj.dtype != dt:
        raise TypeError(f"{name} has dtype {obj.dtype}, expected {dt}")
    if obj.shape != shape:
        raise ValueError(f"{name} has shape {obj.shape}, expected {shape}")
    if not (obj.flags.c_contiguous and obj.flags.writeable and obj.flags.aligned):
        raise ValueError(f"{name} must be a writeable, aligned, C-contiguous native array")


def _check_act(act: int) -> None:
    if act not in (0, 1, 2, 3, 4, 5):
        raise ValueError(f"act must be one of 0..5, got {act!r}")


def _colsum(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64).sum(axis=0) if a.shape[0] else np.zeros(a.shape[1])


def bn_forward(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
               running_mean: np.ndarray | None, running_var: np.ndarray | None,
               batch_stats: bool, eps: float, factor: float, invstd: np.ndarray,
               xhat: np.ndarray, out: np.ndarray) -> None:
    dt = _float(x, "x")
    _rows(x, dt, -1, -1, "x")
    n, m = x.shape
    if (weight is None) != (bias is None):
        raise ValueError("weight and bias must both be given or both be None")
    if weight is not None:
        _buf(weight, dt, (m,), "weight")
        _buf(bias, dt, (m,), "bias")
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be given or both be None")
    if running_mean is not None:
        _buf(running_mean, dt, (m,), "running_mean")
        _buf(running_var, dt, (m,), "running_var")
    elif not batch_stats:
        raise ValueError("running_mean and running_var are needed without batch statistics")
    if batch_stats and n < 2:
        raise ValueError(f"x has {n} rows; batch statistics need at least 2 (one value per "
                         f"feature has no variance)")
    _buf(invstd, dt, (m,), "invstd")
    _buf(xhat, dt, (n, m), "xhat")
    _buf(out, dt, (n, m), "out")
    xd = x.astype(np.float64)
    if batch_stats:
        mean = _colsum(xd) / n
        ss = ((xd - mean) ** 2).sum(axis=0)
        var = ss / n
        if running_mean is not None and running_var is not None:
            f = float(factor)
            running_mean[...] = (1.0 - f) * running_mean.astype(np.float64) + f * mean
            running_var[...] = ((1.0 - f) * running_var.astype(np.float64)
                                + f * (ss / (n - 1)))
    else:
        assert running_mean is not None and running_var is not None
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
    invstd[...] = 1.0 / np.sqrt(var + eps)
    xhat[...] = (xd - mean) * invstd.astype(np.float64)
    if weight is not None and bias is not None:
        np.multiply(xhat, weight, out=out)
        out += bias
    else:
        out[...] = xhat


def bn_backward(dy: np.ndarray, xhat: np.ndarray, weight: np.ndarray | None,
                invstd: np.ndarray, batch_stats: bool, dx: np.ndarray | None,
                dweight: np.ndarray | None, dbias: np.ndarray | None,
                sqnorms: np.ndarray | None) -> None:
    dt = _float(dy, "dy")
    _rows(dy, dt, -1, -1, "dy")
    n, m = dy.shape
    _buf(xhat, dt, (n, m), "xhat")
    if weight is not None:
        _buf(weight, dt, (m,), "weight")
    _buf(invstd, dt, (m,), "invstd")
    if dx is not None:
        _buf(dx, dt, (n, m), "dx")
    if (dweight is None) != (dbias is None):
        raise ValueError("dweight and dbias must both be given or both be None")
    if dweight is not None:
        _buf(dweight, dt, (m,), "dweight")
        _buf(dbias, dt, (m,), "dbias")
        _buf(sqnorms, np.dtype(np.float64), (2,), "sqnorms")
    dyd = dy.astype(np.float64)
    hd = xhat.astype(np.float64)
    sdy = _colsum(dyd)
    sdyh = _colsum(dyd * hd)
    if dweight is not None and dbias is not None and sqnorms is not None:
        dweight[...] = sdyh
        dbias[...] = sdy
        sqnorms[0] = float(np.dot(dweight.astype(np.float64), dweight.astype(np.float64)))
        sqnorms[1] = float(np.dot(dbias.astype(np.float64), dbias.astype(np.float64)))
    if dx is not None:
        k = invstd.astype(np.float64) * (weight.astype(np.float64) if weight is not None else 1.0)
        g = dyd
        if batch_stats and n:
            g = dyd - sdy / n - hd * (sdyh / n)
        dx[...] = g * k


def dropout(x: np.ndarray, mask: np.ndarray, scale: float, out: np.ndarray) -> None:
    dt = _float(x, "x")
    _rows(x, dt, -1, -1, "x")
    n, m = x.shape
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be a numpy.ndarray, got {type(mask).__name__}")
    if mask.dtype not in (np.dtype(np.bool_), np.dtype(np.uint8)):
        raise TypeError(f"mask must have dtype bool or uint8, got {mask.dtype}")
    if mask.shape != (n, m) or not mask.flags.c_contiguous:
        raise ValueError(f"mask has shape {mask.shape}, expected ({n}, {m}) and C-contiguous")
    _buf(out, dt, (n, m), "out")
    np.multiply(x, mask.astype(dt), out=out)
    out *= dt.type(scale)


def act_forward(x: np.ndarray, act: int, slope: float, out: np.ndarray) -> None:
    _check_act(act)
    dt = _float(x, "x")
    _rows(x, dt, -1, -1, "x")
    _buf(out, dt, x.shape, "out")
    s = dt.type(slope)
    if act == 0:
        out[...] = x
    elif act == 1:
        out[...] = np.where(x <= 0, dt.type(0), x)
    elif act in (2, 3):
        out[...] = np.where(x > 0, x, x * s)
    elif act == 4:
        with np.errstate(over="ignore"):
            out[...] = 1 / (1 + np.exp(-x))
    else:
        np.tanh(x, out=out)


def act_backward(dy: np.ndarray, x: np.ndarray, out: np.ndarray, act: int, slope: float,
                 dx: np.ndarray, dslope: np.ndarray | None, sqnorms: np.ndarray | None) -> None:
    _check_act(act)
    dt = _float(dy, "dy")
    _rows(dy, dt, -1, -1, "dy")
    n, m = dy.shape
    _rows(x, dt, n, m, "x")
    _buf(out, dt, (n, m), "out")
    _buf(dx, dt, (n, m), "dx")
    if act == 3:
        _buf(dslope, dt, (1,), "dslope")
        _buf(sqnorms, np.dtype(np.float64), (1,), "sqnorms")
    s = dt.type(slope)
    if act == 0:
        dx[...] = dy
    elif act == 1:
        dx[...] = np.where(x <= 0, dt.type(0), dy)
    elif act in (2, 3):
        dx[...] = np.where(x > 0, dy, dy * s)
    elif act == 4:
        dx[...] = dy * (1 - out) * out
    else:
        dx[...] = dy * (1 - out * out)
    if act == 3 and dslope is not None and sqnorms is not None:
        zd = x.astype(np.float64) * dy.astype(np.float64)
        dslope[0] = np.sum(np.where(x > 0, 0.0, zd))
        sqnorms[0] = float(dslope[0]) ** 2
