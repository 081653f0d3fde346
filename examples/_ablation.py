"""Shared by the examples: print an ablation table in one fixed, parseable layout,
and run and judge a training run that may explode (:func:`guarded_fit`,
:func:`judge`).

Every example prints at least one table::

    == ablation: <title> ==
    run                  | final loss | ...
    ---------------------+------------+-----
    baseline: ...        |      2.303 | ...

Numbers are printed with ``repr``-like precision (``nan`` and ``inf`` as such),
so ``tests/test_examples.py`` can read them back and check the claims the
example's text makes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fastclip.train import GradientExplosionError, fit


def fmt(v: Any) -> str:
    """A cell: floats with 4 significant digits (``nan``/``inf`` spelled out), the rest str."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.4g}"
    return str(v)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print one ablation table; the first column names the run."""
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print(f"\n== ablation: {title} ==")
    print(" | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(columns, widths))))
    print("-+-".join("-" * w for w in widths))
    for r in cells:
        print(" | ".join(v.ljust(w) if i == 0 else v.rjust(w)
                         for i, (v, w) in enumerate(zip(r, widths))))
    print()


def guarded_fit(model: Any, X: np.ndarray, y: np.ndarray, **kwargs: Any) -> tuple[Any, Any]:
    """``fit(model, X, y, monitor="raise", progress=False, **kwargs)``.

    Returns ``(history, "-")``, or ``(history so far, step)`` when the
    explosion monitor stopped the run at ``step``.
    """
    try:
        return fit(model, X, y, monitor="raise", progress=False, **kwargs), "-"
    except GradientExplosionError as exc:
        return exc.history, exc.event.step


def judge(model: Any, history: Any, stopped: Any, X: np.ndarray,
          y: np.ndarray) -> tuple[float, float, str]:
    """``(final loss, test accuracy, outcome)`` of a :func:`guarded_fit` run.

    The final loss is NaN for a stopped run; the outcome is ``exploded`` (the
    monitor stopped it), ``failed`` (below 20% accuracy on ``(X, y)``) or
    ``trained``.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        acc = float(np.mean(np.argmax(model.forward(X), axis=1) == y))
        loss = float(history.epoch_loss[-1]) if stopped == "-" else float("nan")
    outcome = "exploded" if stopped != "-" else ("failed" if acc < 0.2 else "trained")
    return loss, acc, outcome
