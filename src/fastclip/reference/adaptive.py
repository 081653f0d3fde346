"""Reference (pure NumPy) adaptive-clipping kernels: the twin of ``fastclip._adaptive``.

Unit-wise norms follow optax's ``unitwise_norm``: an array with at most one
dimension longer than 1 (scalars, vectors, ``(1, n)`` weights) has a single
unit, its whole norm; a 2-d ``(in, out)`` weight or a 3-d ``(in, heads, out)``
one has a unit per trailing index (the norm is over axis 0); a 4-d HWIO
kernel has a unit per output channel (norm over axes 0, 1, 2). Larger ranks
are rejected. The arithmetic is that of the C kernels: float32 accumulates in
float64, float64 columns whose sum of squares overflows or underflows are
recomputed with scaling by their max ``|x|``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastclip._checks import adaptive as _cad
from fastclip._checks import arrays as _ca

_SSQ_TINY = 2.0**-968
_DIV_EPS = 1e-6


def _colnorms(a: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(norms, sums of squares) of the columns of ``a`` seen as (rows, cols)."""
    if cols == 0:
        return np.zeros(0), np.zeros(0)
    if rows == 0:
        return np.zeros(cols), np.zeros(cols)
    x = np.asarray(a, dtype=np.float64).reshape(rows, cols)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        sq = np.sum(x * x, axis=0)
    norms = np.sqrt(sq)
    if a.dtype == np.float64:
        with np.errstate(invalid="ignore"):
            m = np.max(np.abs(x), axis=0, initial=0.0)
        # a NaN anywhere makes the column's sum NaN: no rescue, as in C
        rescue = (np.isinf(sq) & np.isfinite(m)) | ((sq < _SSQ_TINY) & (m > 0))
        for c in np.flatnonzero(rescue):
            r = x[:, c] / m[c]
            s2 = float(np.dot(r, r))
            norms[c] = m[c] * math.sqrt(s2)
            with np.errstate(over="ignore", under="ignore"):
                sq[c] = (m[c] * m[c]) * s2
    return norms, sq


def unitwise_norms(x: Any) -> Any:
    arrays, single = _ca.check_arrays(x, "x", inplace=False)
    out = []
    for i, a in enumerate(arrays):
        rows, cols = _cad.unit_split(a.shape, _ca.label("x", i, single))
        out.append(_colnorms(a, rows, cols)[0])
    return out[0] if single else out


def adaptive_grad_clip_(
    grads: Any, params: Any, clipping: Any = 0.01, eps: Any = 1e-3
) -> tuple[np.ndarray, np.ndarray, int]:
    c, e = _cad.check_agc_args(clipping, eps)
    garr, parr, _ = _cad.check_pairs(grads, params)
    n = len(garr)
    before = np.zeros(n)
    after = np.zeros(n)
    coefs = []
    clipped = 0
    for i, (g, p) in enumerate(zip(garr, parr)):
        rows, cols = _cad.unit_split(g.shape, "grads")
        gn, gs = _colnorms(g, rows, cols)
        pn, _ = _colnorms(p, rows, cols)
        with np.errstate(invalid="ignore"):
            max_norm = c * np.where((pn > e) | np.isnan(pn), pn, e)
            gm = np.where((gn > _DIV_EPS) | np.isnan(gn), gn, _DIV_EPS)
            k = np.where(gn < max_norm, 1.0, max_norm / gm)
        scaled = k != 1.0
        clipped += int(np.count_nonzero(scaled))
        before[i] = float(np.sum(gs)) if cols else 0.0
        with np.errstate(invalid="ignore", over="ignore"):
            after[i] = float(np.sum(np.where(scaled, (gn * k) ** 2, gs))) if cols else 0.0
        coefs.append((rows, cols, k, bool(scaled.any())))
    for g, (rows, cols, k, any_scaled) in zip(garr, coefs):
        if not any_scaled:
            continue
        kt = k.astype(g.dtype)
        if cols == 1:
            np.multiply(g, kt[0], out=g)
        else:
            lead = 3 if g.ndim == 4 else 1  # reduced axes: 0 (in), or 0-2 (HWI)
            np.multiply(g, kt.reshape((1,) * lead + g.shape[lead:]), out=g)
    return before, after, clipped
