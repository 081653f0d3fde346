"""The progress bar of :func:`fastclip.train.fit` (tqdm, only on a terminal)."""

from __future__ import annotations

import math
import sys
from typing import Any

__all__ = ["make_bar", "postfix"]


def make_bar(progress: Any, total: int, desc: str | None) -> Any:
    """A tqdm bar, or None when ``progress`` is off, stderr is not a terminal or tqdm is absent."""
    if not progress:
        return None
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="step", leave=True, dynamic_ncols=True)


def postfix(bar: Any, loss: float, norm: float, lr: float, vanishing: list[str],
            refresh: bool, epsilon: float = float("nan")) -> None:
    """Show the step's loss, gradient norm and learning rate, the privacy spent
    (epsilon, when training is private) and the vanishing layers."""
    fields = {"loss": f"{loss:.4g}", "norm": f"{norm:.3g}", "lr": f"{lr:.3g}"}
    if not math.isnan(epsilon):
        fields["eps"] = f"{epsilon:.3g}"
    if vanishing:
        fields["vanishing"] = ",".join(vanishing)
    bar.set_postfix(refresh=refresh, **fields)
