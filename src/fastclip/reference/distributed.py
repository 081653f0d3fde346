"""Reference (pure NumPy) twin of ``fastclip._distributed``."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastclip.reference.clip import _total

__all__ = ["total_norm"]


def total_norm(norms: Any, p: float) -> float:
    """The ``p``-norm of per-array norms, as ``fastclip.reference.clip.get_total_norm``."""
    return _total(np.ascontiguousarray(norms, dtype=np.float64).reshape(-1), float(p))
