"""Reference (pure NumPy) per-example clipping kernels: the twin of ``fastclip._privacy``.

Two primitives on arrays that share a leading batch axis ``B`` (the arguments are
validated by :mod:`fastclip.privacy` through :mod:`fastclip._checks.privacy`):

- :func:`row_sqnorms` gives, for each array ``k`` and example ``i``, the sum of
  squares of ``g_k[i]``, accumulated in float64;
- :func:`row_weighted_sum` gives ``sum_i w[k, i] * g_k[i]`` for each array, where
  each term is rounded to the array's dtype (``g * dtype(w)``) and the terms are
  accumulated in float64 in example order; with ``inplace=True`` the scaled
  terms are also written back into ``g_k``.
"""

from __future__ import annotations

import numpy as np

_quiet = np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore")


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1)


@_quiet
def row_sqnorms(arrays: list[np.ndarray]) -> np.ndarray:
    """``(len(arrays), B)`` float64 per-example sums of squares."""
    batch = arrays[0].shape[0]
    out = np.empty((len(arrays), batch), dtype=np.float64)
    for k, a in enumerate(arrays):
        r = _rows(a).astype(np.float64)
        out[k] = np.einsum("ij,ij->i", r, r) if r.shape[1] else 0.0
    return out


@_quiet
def row_weighted_sum(arrays: list[np.ndarray], weights: np.ndarray,
                     inplace: bool) -> list[np.ndarray]:
    """``[sum_i weights[k, i] * g_k[i] for k]``, each of shape ``g_k.shape[1:]``."""
    outs = []
    for k, a in enumerate(arrays):
        w = weights[k].astype(a.dtype).reshape((-1,) + (1,) * (a.ndim - 1))
        scaled = a * w
        acc = np.zeros(a.shape[1:], dtype=np.float64)
        for i in range(a.shape[0]):
            acc += scaled[i]
        if inplace:
            a[...] = scaled
        outs.append(acc.astype(a.dtype))
    return outs
