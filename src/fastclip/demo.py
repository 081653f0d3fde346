"""``fastclip demo``: a deep ReLU network trained three ways, one of which explodes.

The demo trains the same 6-layer ReLU MLP (64-128-128-128-128-128-10) on
scikit-learn's bundled handwritten digits (1797 8x8 images, no download; a
generated 10-class data set when scikit-learn is absent) with plain SGD at a
learning rate of 1.0:

1. **plain SGD**: the gradients explode within a few steps; fastclip's
   :class:`~fastclip.train.GradientMonitor` stops the run and names the step
   and the layer;
2. **value clipping**: every gradient element clamped to ``[-0.01, 0.01]``
   inside the fused optimiser step;
3. **global-norm clipping with warm-up + cosine**: gradients rescaled to a
   global norm of at most 1, learning rate warmed up linearly over the first
   10% of the steps, then cosine-decayed.

It prints a comparison table (final loss, test accuracy, explosions, time)
and saves a figure (PNG, SVG or PDF, chosen by the extension of ``--out``)
with, for every run: the training loss per step (smoothed, the raw values
faint), the test accuracy per epoch, the global gradient norm before clipping
(log scale, with the clip threshold and the explosion step marked with the
layer the monitor blamed), a zoom on the first steps where the plain run
explodes, and the learning rate.

Run it with ``fastclip demo`` or ``python -m fastclip demo`` (``--help`` for
the options).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["add_arguments", "load_data", "main", "plot", "resolve_out", "run"]

LR = 1.0
CLIP_VALUE = 0.01
CLIP_NORM = 1.0
BATCH_SIZE = 64
PRIVATE_EPSILON = 8.0  # the budget of the --private run, with delta = PRIVATE_DELTA
PRIVATE_DELTA = 1e-5
HIDDEN = (128, 128, 128, 128, 128)
DEFAULT_NAME = "fastclip_demo.png"
FORMATS = (".png", ".svg", ".pdf")


def load_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Train/test split of the digits (or a generated stand-in).

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray
        float32 features in ``[0, 1]``-ish ranges and int64 labels; 25% of each
        class held out for testing.
    source : str
        A description of the data set used.
    """
    rng = np.random.default_rng(seed)
    try:
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    except ImportError:
        X, y = _generated(rng)
        source = ("a generated data set (scikit-learn is not installed, so its bundled digits "
                  "are not available): 1797 samples, 64 features, 10 Gaussian classes")
    else:
        d = load_digits()
        X, y = d.data / 16.0, d.target.astype(np.int64)
        source = "scikit-learn's handwritten digits: 1797 8x8 images, 10 classes"
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = round(0.25 * idx.size)
        test.append(idx[:k])
        train.append(idx[k:])
    tr, te = rng.permutation(np.concatenate(train)), np.concatenate(test)
    X = X.astype(np.float32)
    return X[tr], y[tr], X[te], y[te], source


def _generated(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n, d, k = 1797, 64, 10
    centers = rng.uniform(0.0, 1.0, (k, d))
    y = rng.integers(0, k, n)
    X = centers[y] + 0.35 * rng.standard_normal((n, d))
    return X, y.astype(np.int64)


@dataclass
class RunResult:
    """One training run of the demo."""

    name: str
    label: str
    history: Any
    final_loss: float
    test_accuracy: float
    seconds: float
    stopped: Any = None  # the GradientExplosionError, when the monitor stopped the run
    events: list = field(default_factory=list)
    steps_per_epoch: int = 0
    epsilon: float = math.nan  # the privacy spent (the --private run), NaN otherwise


def _configs(steps: int, private: bool = False) -> list[tuple[str, str, dict[str, Any], str]]:
    from fastclip import schedules

    runs: list[tuple[str, str, dict[str, Any], str]] = [
        ("plain", f"plain SGD (lr={LR:g})", {}, "raise"),
        ("value", f"value clipping (+-{CLIP_VALUE:g})", {"clip_value": CLIP_VALUE}, "skip"),
        ("norm", f"global norm {CLIP_NORM:g} + warm-up/cosine",
         {"clip_norm": CLIP_NORM,
          "lr": schedules.warmup_cosine(peak_value=LR, warmup_steps=max(1, steps // 10),
                                        decay_steps=steps)},
         "skip"),
    ]
    if private:
        from fastclip.privacy import DPConfig

        runs.append((
            "private",
            f"DP-SGD (C={CLIP_NORM:g})",
            {"privacy": DPConfig(max_grad_norm=CLIP_NORM, target_epsilon=PRIVATE_EPSILON,
                                 delta=PRIVATE_DELTA),
             "lr": schedules.warmup_cosine(peak_value=LR, warmup_steps=max(1, steps // 10),
                                           decay_steps=steps)},
            "skip"))
    return runs


def _check_count(value: Any, name: str, low: int) -> int:
    """An int (not a bool) >= low."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {int(value)}")
    return int(value)


def resolve_out(out: str | os.PathLike[str]) -> str:
    """The file the demo writes for ``out``, checked before any training.

    An existing directory, or a path ending in a path separator, means
    ``fastclip_demo.png`` inside that directory. A name without an extension
    gets ``.png``. The extension (``.png``, ``.svg`` or ``.pdf``, any case)
    chooses the format.

    Parameters
    ----------
    out : str or os.PathLike

    Returns
    -------
    str
        The absolute path of the file to write.

    Raises
    ------
    TypeError
        If ``out`` is not a path.
    ValueError
        If ``out`` is empty or its extension is not one of the formats.
    """
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a path (str or os.PathLike), got {type(out).__name__}")
    text = os.fspath(out)
    if not isinstance(text, str):
        raise TypeError(f"out must be a text path, got {type(text).__name__}")
    if not text:
        raise ValueError("out must not be empty")
    seps = tuple(c for c in (os.sep, os.altsep) if c)
    if text.endswith(seps) or os.path.isdir(text):
        text = os.path.join(text, DEFAULT_NAME)
    ext = os.path.splitext(text)[1]
    if not ext:
        text += ".png"
    elif ext.lower() not in FORMATS:
        raise ValueError(f"out has an unknown extension {ext!r}: the figure can be written "
                         f"as {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
    return os.path.abspath(text)


def _check_writable(path: str) -> None:
    """Raise OSError now if ``path`` cannot be written, leaving no file behind."""
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise NotADirectoryError(f"{folder} is not a directory")
        raise FileNotFoundError(f"the directory {folder} does not exist")
    existed = os.path.exists(path)
    with open(path, "ab"):  # appends nothing: an existing file keeps its contents
        pass
    if not existed:
        os.remove(path)


def _os_message(exc: OSError) -> str:
    return exc.strerror if exc.strerror else str(exc)


def run(epochs: int = 20, seed: int = 0, out: str | os.PathLike[str] | None = DEFAULT_NAME,
        progress: bool = True, stream: Any = None, private: bool = False) -> list[RunResult]:
    """Run the three trainings, print the table and (unless ``out`` is None) save the plot.

    Parameters
    ----------
    epochs : int, default 20
        ``>= 1``.
    seed : int, default 0
        ``>= 0``; seeds the data split, the initial weights and the batch order.
    out : str, os.PathLike or None, default "fastclip_demo.png"
        Where to save the figure (see :func:`resolve_out`: a directory means
        ``fastclip_demo.png`` inside it; ``.png``, ``.svg`` or ``.pdf``); None:
        no figure. The path is checked before training starts.
    progress : bool, default True
        Progress bars (shown only on a terminal).
    stream : file, optional
        Where to print (default ``sys.stdout``).
    private : bool, default False
        A fourth run with differential privacy (DP-SGD, :mod:`fastclip.privacy`:
        per-example clipping, noise, Poisson sampling) at epsilon <= 8, delta 1e-5;
        the epsilon spent is shown in the table and the figure. Needs dp-accounting.

    Returns
    -------
    list of RunResult

    Raises
    ------
    TypeError, ValueError
        For a bad ``epochs``, ``seed`` or ``out``, before any training.
    OSError
        If the figure's file cannot be written, before any training.
    """
    epochs = _check_count(epochs, "epochs", 1)
    seed = _check_count(seed, "seed", 0)
    path = None
    if out is not None:
        path = resolve_out(out)
        _check_writable(path)
    p = stream if stream is not None else sys.stdout

    def say(msg: str = "") -> None:
        print(msg, file=p, flush=True)

    Xtr, ytr, Xte, yte, source = load_data(seed)
    sizes = [Xtr.shape[1], *HIDDEN, 10]
    steps = epochs * -(-Xtr.shape[0] // BATCH_SIZE)
    say(f"fastclip demo: a deep ReLU network trained {'four' if private else 'three'} ways")
    say(f"  data:    {source}; {Xtr.shape[0]} for training, {Xte.shape[0]} for testing")
    say(f"  model:   MLP {'-'.join(map(str, sizes))} (ReLU), float32, He initialisation")
    say(f"  training: SGD lr={LR:g}, batch {BATCH_SIZE}, {epochs} epochs ({steps} steps), "
        f"seed {seed}")
    say()
    results = []
    with _one_blas_thread():
        _warm_up(sizes, seed, Xtr, ytr, Xte, yte)
        for name, label, kw, policy in _configs(steps, bool(private)):
            results.append(_train_one(name, label, kw, policy, sizes, epochs, seed, progress,
                                      Xtr, ytr, Xte, yte, say))
    say()
    say(_table(results))
    if path is not None:
        saved = plot(results, path)
        if saved is None:
            say("\nmatplotlib is not installed: no plot (pip install matplotlib)")
        else:
            say(f"\nplot saved to {saved}")
    return results


def _one_blas_thread() -> Any:
    """BLAS on one thread: the demo's matrices (64 x 128) are too small for threads to pay,
    and on a busy machine threaded GEMMs this small are many times slower."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    # threadpoolctl limits the libraries loaded when the limit starts: load the layers'
    # BLAS first (fastclip loads it with fastclip.nn, not with fastclip)
    import fastclip.nn  # noqa: F401

    return threadpool_limits(limits=1, user_api="blas")


def _warm_up(sizes: list[int], seed: int, Xtr: np.ndarray, ytr: np.ndarray,
             Xte: np.ndarray, yte: np.ndarray) -> None:
    """One untimed step of a throwaway model, so that the first timed run does not also
    pay the one-time costs (loading the training modules and the kernels, the BLAS and
    thread start-up) that the others do not."""
    from fastclip.nn import MLP
    from fastclip.train import fit

    model = MLP(sizes, activation="relu", rng=seed)
    fit(model, Xtr[:BATCH_SIZE], ytr[:BATCH_SIZE], loss="cross_entropy", epochs=1,
        batch_size=BATCH_SIZE, validation=(Xte[:BATCH_SIZE], yte[:BATCH_SIZE]),
        progress=False, seed=seed)


def _train_one(name: str, label: str, kw: dict[str, Any], policy: str, sizes: list[int],
               epochs: int, seed: int, progress: bool, Xtr: np.ndarray, ytr: np.ndarray,
               Xte: np.ndarray, yte: np.ndarray, say: Any) -> RunResult:
    from fastclip.nn import MLP
    from fastclip.optim import SGD
    from fastclip.train import GradientExplosionError, fit

    model = MLP(sizes, activation="relu", rng=seed)
    lr = kw.pop("lr", LR)
    privacy = kw.pop("privacy", None)
    opt = SGD(model.parameters(), lr=lr, **kw)
    say(f"[{name}] {label}")
    t0 = time.perf_counter()
    stopped = None
    try:
        hist = fit(model, Xtr, ytr, loss="cross_entropy", optimizer=opt, epochs=epochs,
                   batch_size=BATCH_SIZE, validation=(Xte, yte), monitor=policy,
                   progress=progress, seed=seed, desc=name, privacy=privacy)
    except GradientExplosionError as exc:
        stopped = exc
        assert exc.history is not None
        hist = exc.history
        say(f"    fastclip stopped the run: {exc.event.message}")
    seconds = time.perf_counter() - t0
    logits = model.forward(Xte)
    acc = float(np.mean(np.argmax(logits, axis=1) == yte))
    if stopped is not None:  # the loss of the step that exploded
        final = float(hist.loss[-1]) if hist.n_steps else math.nan
    else:  # the mean training loss of the last epoch
        final = float(hist.epoch_loss[-1])
    res = RunResult(name, label, hist, final, acc, seconds, stopped, list(hist.events),
                    -(-Xtr.shape[0] // BATCH_SIZE))
    if privacy is not None and hist.n_epochs:
        res.epsilon = float(hist.epsilon[-1])
        res.label = f"{label}, epsilon {res.epsilon:.2f}"
        res.steps_per_epoch = hist.n_steps // hist.n_epochs
    if stopped is None:
        say(f"    done: test accuracy {acc:.1%}, {len(res.events)} flagged step(s)")
    return res


def _table(results: Sequence[RunResult]) -> str:
    private = any(not math.isnan(r.epsilon) for r in results)
    head = ("run", "final loss", "test accuracy", "explosions", "time") + (
        ("epsilon",) if private else ())
    rows = []
    for r in results:
        if r.stopped is not None:
            ev = r.stopped.event
            expl = f"{len(r.events)}: step {ev.step}, layer {ev.layer or 'loss'}"
        else:
            expl = str(len(r.events))
        rows.append((r.label, f"{r.final_loss:.4g}", f"{r.test_accuracy:.1%}", expl,
                     f"{r.seconds:.2f} s") + ((
                         "-" if math.isnan(r.epsilon) else f"{r.epsilon:.2f}",) if private
                                             else ()))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    line = "  ".join("-" * w for w in widths)
    fmt = [f"{h:<{w}}" for h, w in zip(head, widths)]
    out = ["  ".join(fmt), line]
    for row in rows:
        out.append("  ".join(f"{c:<{w}}" if i in (0, 3) else f"{c:>{w}}"
                             for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(out)


_COLORS = {"plain": "#d62728", "value": "#ff7f0e", "norm": "#1f77b4", "private": "#2ca02c"}


def _positive(a: np.ndarray) -> np.ndarray:
    """A float copy with non-finite and non-positive values as NaN (for log axes)."""
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(a) & (a > 0), a, np.nan)


def _smooth(x: np.ndarray, y: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing geometric moving average of the positive values of ``y``."""
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if y.size < window or window < 2:
        return x, y
    c = np.cumsum(np.concatenate([[0.0], np.log(y)]))
    return x[window - 1:], np.exp((c[window:] - c[:-window]) / window)


def _robust_limits(values: Sequence[np.ndarray], must_show: Sequence[float] = (),
                   lo_pct: float = 1.0, hi_pct: float = 99.5) -> tuple[float, float]:
    """Log-axis limits from percentiles of the pooled values, widened to ``must_show``.

    Single per-batch outliers (a loss of 1e-8 on a batch the network gets
    exactly right) would otherwise stretch the axis over decades of nothing.
    """
    finite = [v[np.isfinite(v)] for v in values]
    pooled = np.concatenate(finite) if finite else np.empty(0)
    if pooled.size == 0:
        return 1e-3, 1e3
    lo, hi = np.percentile(pooled, [lo_pct, hi_pct])
    extra = [m for m in must_show if math.isfinite(m) and m > 0]
    lo, hi = min([lo, *extra]), max([hi, *extra])
    return lo / 2.0, hi * 2.0


def plot(results: Sequence[RunResult], out: str | os.PathLike[str]) -> str | None:
    """Draw the demo's figure for ``results`` and save it to ``out``.

    Panels: training loss per step (a moving average, the raw per-batch values
    faint, robust log limits), test accuracy per epoch, the global gradient
    norm before clipping (log scale, robust limits, the clip threshold, the
    explosion step marked and annotated with the layer the monitor blamed), a
    zoom on the first steps, the learning rate, and the results table.

    The figure is drawn on its own :class:`matplotlib.figure.Figure` with the
    Agg canvas: the caller's matplotlib backend and pyplot state are left
    alone.

    Parameters
    ----------
    results : sequence of RunResult
        What :func:`run` returned.
    out : str or os.PathLike
        The file (or directory) to write, see :func:`resolve_out`.

    Returns
    -------
    str or None
        The path written, or None when matplotlib is not installed.
    """
    path = resolve_out(out)
    try:
        fig = _figure(results)
    except ImportError:
        return None
    fmt = os.path.splitext(path)[1].lower().lstrip(".")
    fig.savefig(path, format=fmt)
    return path


def _figure(results: Sequence[RunResult]) -> Any:
    """The demo's figure, a matplotlib Figure on an Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(13, 9.2), dpi=110)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(3, 2, width_ratios=(2.3, 1.0), height_ratios=(1.15, 1.15, 0.75),
                          left=0.065, right=0.985, top=0.885, bottom=0.06, hspace=0.32,
                          wspace=0.16)
    ax_loss = fig.add_subplot(gs[0, 0])
    ax_norm = fig.add_subplot(gs[1, 0], sharex=ax_loss)
    ax_lr = fig.add_subplot(gs[2, 0], sharex=ax_loss)
    ax_acc = fig.add_subplot(gs[0, 1])
    ax_zoom = fig.add_subplot(gs[1, 1])
    ax_tab = fig.add_subplot(gs[2, 1])

    runs = [r for r in results if r.history is not None and r.history.n_steps > 0]
    # the exploding run last, on top: it only lasts a few steps
    runs.sort(key=lambda r: r.name == "plain")
    n_steps = max((int(r.history.step[-1]) + 1 for r in runs), default=1)
    per_epoch = max((r.steps_per_epoch for r in runs), default=1) or 1
    window = max(3, min(per_epoch, n_steps // 20))
    stop = next((r for r in runs if r.stopped is not None), None)
    stop_step = int(stop.stopped.event.step) if stop is not None else None
    zoom_end = max(40, 3 * (stop_step + 1)) if stop_step is not None else 40
    zoom_end = min(zoom_end, n_steps)

    losses = [_positive(r.history.loss) for r in runs]
    norms = [_positive(r.history.grad_norm) for r in runs]
    smooth_losses = [_smooth(r.history.step, v, window)[1] for r, v in zip(runs, losses)]
    events = [ev for r in runs for ev in r.events if ev.action in ("raise", "gave_up")]
    sm = np.concatenate(smooth_losses) if smooth_losses else np.empty(0)
    sm = sm[np.isfinite(sm)]
    ax_loss.set_ylim(*_robust_limits(losses, lo_pct=5.0, hi_pct=99.5,
                                     must_show=[float(sm.min()), float(sm.max())]
                                     if sm.size else []))
    clip_norm = CLIP_NORM if any(r.name == "norm" for r in runs) else math.nan
    ev_norms = [ev.norm for ev in events]
    lo_n, hi_n = _robust_limits(norms, must_show=[clip_norm, *ev_norms])
    top_data = hi_n
    hi_n *= 20.0  # headroom above the data for the explosion's annotation

    for r, loss, norm in zip(runs, losses, norms):
        h = r.history
        c = _COLORS.get(r.name, "0.3")
        steps = h.step
        # a run the monitor stopped is drawn raw and solid: its last steps are the story
        short = r.stopped is not None or steps.size < 2 * window
        lw = 2.2 if r.name == "plain" else 1.6
        for ax, y in ((ax_loss, loss), (ax_norm, norm)):
            if short:
                ax.plot(steps, y, color=c, lw=lw, zorder=4)
            else:
                ax.plot(steps, y, color=c, lw=0.6, alpha=0.25, zorder=2)
                xs, ys = _smooth(steps, y, window)
                ax.plot(xs, ys, color=c, lw=lw, zorder=3)
        zsel = steps < zoom_end
        ax_zoom.plot(steps[zsel], norm[zsel], color=c, lw=lw if short else 1.2,
                     marker="." if short else None, ms=4, zorder=4 if short else 3)
        ax_lr.plot(steps, h.lr, color=c, lw=lw if short else 1.6, zorder=4 if short else 3)
        acc = np.asarray(h.val_accuracy, dtype=np.float64) * 100.0
        if acc.size:
            ep = np.arange(1, acc.size + 1)
            ax_acc.plot(ep, acc, color=c, lw=1.6, marker="o", ms=3.5)
        if r.stopped is not None:
            x_stop = (int(r.stopped.event.step) + 1) / per_epoch
            ax_acc.plot([x_stop], [100.0 * r.test_accuracy], color=c, marker="X", ms=10,
                        mec="white", zorder=5)
            ax_acc.annotate(f"{r.label}:\nstopped at step {r.stopped.event.step},"
                            f" {r.test_accuracy:.0%}", (x_stop, 100.0 * r.test_accuracy),
                            xytext=(12, 6), textcoords="offset points", fontsize=8, color=c,
                            va="bottom")

    # the explosion: a line across the step panels and an annotation naming the layer
    for ev in events:
        # a non-finite norm is drawn at the top of the data range
        y_ev = ev.norm if math.isfinite(ev.norm) and ev.norm > 0 else top_data
        label = (f"explosion at step {ev.step}\n"
                 f"layer {ev.layer or '(the loss)'}: gradient norm {ev.layer_norm:.3g}\n"
                 f"global norm {ev.norm:.3g}: monitor stopped the run")
        for ax in (ax_loss, ax_norm, ax_lr, ax_zoom):
            ax.axvline(ev.step, color=_COLORS["plain"], lw=1.0, ls=":", zorder=1)
        ax_norm.plot([ev.step], [y_ev], marker="X", color=_COLORS["plain"], ms=11, mec="white",
                     zorder=6)
        ax_zoom.plot([ev.step], [y_ev], marker="X", color=_COLORS["plain"], ms=11, mec="white",
                     zorder=6)
        ax_norm.annotate(label, (ev.step, y_ev), xytext=(0.1, 0.97), textcoords="axes fraction",
                         fontsize=8.5, color=_COLORS["plain"], va="top", ha="left",
                         arrowprops={"arrowstyle": "->", "color": _COLORS["plain"]},
                         bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.8",
                               "alpha": 0.95}, zorder=7)
        ax_zoom.annotate(f"explosion: step {ev.step},\nlayer {ev.layer or '(the loss)'}",
                         (ev.step, y_ev), xytext=(0.97, 0.97), textcoords="axes fraction",
                         fontsize=8, color=_COLORS["plain"], va="top", ha="right",
                         arrowprops={"arrowstyle": "->", "color": _COLORS["plain"]},
                         bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.8",
                               "alpha": 0.95}, zorder=7)
    if math.isfinite(clip_norm):
        for ax in (ax_norm, ax_zoom):
            ax.axhline(clip_norm, color="0.15", lw=1.0, ls="--", zorder=1)

    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title(f"training loss per step (solid: moving average over {window} steps)",
                      fontsize=10, loc="left")
    ax_norm.set_yscale("log")
    ax_norm.set_ylim(lo_n, hi_n)
    ax_norm.set_ylabel("global gradient norm")
    ax_norm.set_title("global gradient norm before clipping (log scale; solid: moving "
                      "average)", fontsize=10, loc="left")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.set_title("learning rate", fontsize=10, loc="left")
    ax_lr.set_xlim(0, n_steps)
    ax_zoom.set_yscale("log")
    ax_zoom.set_xlim(0, zoom_end)
    zlo, zhi = _robust_limits([v[r.history.step < zoom_end] for r, v in zip(runs, norms)],
                              must_show=[clip_norm, *ev_norms], lo_pct=0.0, hi_pct=100.0)
    ax_zoom.set_ylim(zlo, zhi * 8.0)
    ax_zoom.set_xlabel("step")
    ax_zoom.set_title(f"zoom: the first {zoom_end} steps", fontsize=10, loc="left")
    ax_acc.set_ylim(0, 100)
    ax_acc.set_xlim(0, max((r.history.n_epochs for r in runs), default=1) + 0.5)
    ax_acc.axhline(10.0, color="0.5", lw=0.8, ls="--")
    ax_acc.annotate("chance (10 classes)", (1.0, 10.0), xycoords=("axes fraction", "data"),
                    xytext=(-4, -3), textcoords="offset points", ha="right", va="top",
                    fontsize=8, color="0.4")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("test accuracy after each epoch", fontsize=10, loc="left")
    for ax in (ax_loss, ax_norm, ax_lr, ax_zoom, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8.5)
    for ax in (ax_loss, ax_norm):
        ax.tick_params(labelbottom=False)

    # the results, in words, where a legend would have gone
    ax_tab.axis("off")
    rows = []
    for r in sorted(runs, key=lambda r: list(_COLORS).index(r.name) if r.name in _COLORS else 9):
        if r.stopped is not None:
            what = f"exploded at step {r.stopped.event.step}"
        else:
            what = f"final loss {r.final_loss:.3g}"
        rows.append((r, f"{r.test_accuracy:.1%} test accuracy, {what}"))
    ax_tab.set_title("result", fontsize=10, loc="left")
    for i, (r, text) in enumerate(rows):
        y_row = 0.86 - i * 0.3
        ax_tab.text(0.0, y_row, r.label, color=_COLORS.get(r.name, "0.3"), fontsize=9.5,
                    fontweight="bold", transform=ax_tab.transAxes, va="top")
        ax_tab.text(0.0, y_row - 0.12, text, fontsize=9, transform=ax_tab.transAxes, va="top",
                    family="monospace")

    handles = [Line2D([], [], color=_COLORS.get(r.name, "0.3"), lw=2.2, label=r.label)
               for r in sorted(runs, key=lambda r: r.name != "plain")]
    handles.append(Line2D([], [], color="0.5", lw=0.6, alpha=0.5, label="per-batch value"))
    if math.isfinite(clip_norm):
        handles.append(Line2D([], [], color="0.15", lw=1.0, ls="--",
                              label=f"clip threshold (global norm {clip_norm:g})"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.95), ncol=5,
               fontsize=9, frameon=False)
    epochs = max((r.history.n_epochs for r in runs), default=0)
    fig.suptitle(f"fastclip demo: a 6-layer ReLU MLP on the digits, SGD at lr={LR:g}, "
                 f"{epochs} epochs: plain SGD explodes, clipping trains", fontsize=12.5,
                 y=0.985)
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line options (shared by ``fastclip demo`` and this module)."""
    parser.add_argument("--epochs", type=int, default=20,
                        help="epochs per run, >= 1 (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the data split, initial weights and batches, >= 0 "
                             "(default: %(default)s)")
    parser.add_argument("--out", default=DEFAULT_NAME,
                        help="where to save the figure: a .png, .svg or .pdf file, or a "
                             f"directory (then DIR/{DEFAULT_NAME}); the directory must exist "
                             "(default: %(default)s)")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the figure")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--private", action="store_true",
                        help="add a fourth run with differential privacy (DP-SGD at "
                             f"epsilon <= {PRIVATE_EPSILON:g}); needs dp-accounting")


DESCRIPTION = ("Train a deep ReLU MLP on the digits three ways (plain SGD at a learning rate "
               "that explodes, value clipping, global-norm clipping with warm-up + cosine), "
               "print a comparison table and save a figure.")


def _fail(msg: str) -> int:
    print(f"fastclip demo: {msg}", file=sys.stderr)
    return 2


def run_args(args: argparse.Namespace) -> int:
    """Run the demo for parsed arguments; a bad argument or an unwritable ``--out`` is one
    line on standard error and exit status 2, before any training."""
    if args.epochs < 1:
        return _fail(f"--epochs must be >= 1, got {args.epochs}")
    if args.seed < 0:
        return _fail(f"--seed must be >= 0, got {args.seed}")
    out = None
    if not args.no_plot:
        try:
            out = resolve_out(args.out)
        except ValueError as exc:
            return _fail(f"--{exc}")
        try:
            _check_writable(out)
        except OSError as exc:
            return _fail(f"--out: cannot write {out}: {_os_message(exc)}")
    if getattr(args, "private", False):
        try:
            import dp_accounting  # noqa: F401
        except ImportError:
            return _fail("--private needs dp-accounting: pip install "
                         '"numpy-fastclip[privacy]"')
    run(epochs=args.epochs, seed=args.seed, out=out, progress=not args.no_progress,
        private=getattr(args, "private", False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m fastclip.demo``."""
    parser = argparse.ArgumentParser(prog="fastclip demo", description=DESCRIPTION)
    add_arguments(parser)
    return run_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
