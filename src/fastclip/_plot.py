"""fastclip.plot_schedule: draw a learning-rate schedule with matplotlib (optional)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastclip._checks import schedules as _s

__all__ = ["plot_schedule"]

_INSTALL = ('plotting needs matplotlib: pip install "numpy-fastclip[plot]" '
            '(or pip install matplotlib)')


def plot_schedule(sched: Any, steps: Any, ax: Any = None, **plot_kwargs: Any) -> Any:
    """Plot a schedule's learning rate against the step.

    Parameters
    ----------
    sched : Schedule or callable
        A schedule of :mod:`fastclip.schedules` (evaluated on the whole array of
        steps in one call), or any callable ``step -> float`` (called per step).
    steps : int or array_like
        An int ``n`` plots steps ``0 .. n - 1``; otherwise the steps to plot
        (finite, ``>= 0``).
    ax : matplotlib.axes.Axes, optional
        The axes to draw on; default: a new figure's axes.
    **plot_kwargs
        Passed to ``ax.plot`` (``label``, ``color``, ...).

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install "numpy-fastclip[plot]"``).
    TypeError, ValueError
        For a non-callable ``sched`` or bad ``steps``.
    """
    if not callable(sched):
        raise TypeError(f"sched must be a schedule or a callable, got {type(sched).__name__}")
    if isinstance(steps, (int, np.integer)) and not isinstance(steps, (bool, np.bool_)):
        if steps <= 0:
            raise ValueError(f"steps must be > 0 when an int, got {int(steps)}")
        x = np.arange(int(steps), dtype=np.float64)
    else:
        x = np.asarray(_s.steps_array(steps), dtype=np.float64).ravel()
        _s.check_steps(x)
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    if _s.is_schedule(sched):
        y = np.asarray(sched(x), dtype=np.float64)
    else:
        y = np.array([float(sched(float(t))) for t in x], dtype=np.float64)
    if ax is None:
        _, ax = plt.subplots()
    ax.plot(x, y, **plot_kwargs)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    title = getattr(sched, "kind", None)
    if title and not ax.get_title():
        ax.set_title(str(title))
    return ax
