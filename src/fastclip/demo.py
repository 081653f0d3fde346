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
and saves a PNG with the loss, the global gradient norm (log scale) and the
learning rate of every run.

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

__all__ = ["add_arguments", "load_data", "main", "run"]

LR = 1.0
CLIP_VALUE = 0.01
CLIP_NORM = 1.0
BATCH_SIZE = 64
HIDDEN = (128, 128, 128, 128, 128)


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


def _configs(steps: int) -> list[tuple[str, str, dict[str, Any], str]]:
    from fastclip import schedules

    return [
        ("plain", f"plain SGD (lr={LR:g})", {}, "raise"),
        ("value", f"value clipping (+-{CLIP_VALUE:g})", {"clip_value": CLIP_VALUE}, "skip"),
        ("norm", f"global norm {CLIP_NORM:g} + warm-up/cosine",
         {"clip_norm": CLIP_NORM,
          "lr": schedules.warmup_cosine(peak_value=LR, warmup_steps=max(1, steps // 10),
                                        decay_steps=steps)},
         "skip"),
    ]


def run(epochs: int = 20, seed: int = 0, out: str | None = "fastclip_demo.png",
        progress: bool = True, stream: Any = None) -> list[RunResult]:
    """Run the three trainings, print the table and (unless ``out`` is None) save the plot.

    Parameters
    ----------
    epochs : int, default 20
    seed : int, default 0
        Seeds the data split, the initial weights and the batch order.
    out : str or None, default "fastclip_demo.png"
        Where to save the PNG; None: no plot.
    progress : bool, default True
        Progress bars (shown only on a terminal).
    stream : file, optional
        Where to print (default ``sys.stdout``).

    Returns
    -------
    list of RunResult
    """
    p = stream if stream is not None else sys.stdout

    def say(msg: str = "") -> None:
        print(msg, file=p, flush=True)

    Xtr, ytr, Xte, yte, source = load_data(seed)
    sizes = [Xtr.shape[1], *HIDDEN, 10]
    steps = epochs * -(-Xtr.shape[0] // BATCH_SIZE)
    say("fastclip demo: a deep ReLU network trained three ways")
    say(f"  data:    {source}; {Xtr.shape[0]} for training, {Xte.shape[0]} for testing")
    say(f"  model:   MLP {'-'.join(map(str, sizes))} (ReLU), float32, He initialisation")
    say(f"  training: SGD lr={LR:g}, batch {BATCH_SIZE}, {epochs} epochs ({steps} steps), "
        f"seed {seed}")
    say()
    results = []
    with _one_blas_thread():
        for name, label, kw, policy in _configs(steps):
            results.append(_train_one(name, label, kw, policy, sizes, epochs, seed, progress,
                                      Xtr, ytr, Xte, yte, say))
    say()
    say(_table(results))
    if out is not None:
        path = plot(results, out)
        if path is None:
            say("\nmatplotlib is not installed: no plot (pip install matplotlib)")
        else:
            say(f"\nplot saved to {path}")
    return results


def _one_blas_thread() -> Any:
    """BLAS on one thread: the demo's matrices (64 x 128) are too small for threads to pay,
    and on a busy machine threaded GEMMs this small are many times slower."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _train_one(name: str, label: str, kw: dict[str, Any], policy: str, sizes: list[int],
               epochs: int, seed: int, progress: bool, Xtr: np.ndarray, ytr: np.ndarray,
               Xte: np.ndarray, yte: np.ndarray, say: Any) -> RunResult:
    from fastclip.nn import MLP
    from fastclip.optim import SGD
    from fastclip.train import GradientExplosionError, fit

    model = MLP(sizes, activation="relu", rng=seed)
    lr = kw.pop("lr", LR)
    opt = SGD(model.parameters(), lr=lr, **kw)
    say(f"[{name}] {label}")
    t0 = time.perf_counter()
    stopped = None
    try:
        hist = fit(model, Xtr, ytr, loss="cross_entropy", optimizer=opt, epochs=epochs,
                   batch_size=BATCH_SIZE, monitor=policy, progress=progress, seed=seed,
                   desc=name)
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
    res = RunResult(name, label, hist, final, acc, seconds, stopped, list(hist.events))
    if stopped is None:
        say(f"    done: test accuracy {acc:.1%}, {len(res.events)} flagged step(s)")
    return res


def _table(results: Sequence[RunResult]) -> str:
    head = ("run", "final loss", "test accuracy", "explosions", "time")
    rows = []
    for r in results:
        if r.stopped is not None:
            ev = r.stopped.event
            expl = f"{len(r.events)}: step {ev.step}, layer {ev.layer or 'loss'}"
        else:
            expl = str(len(r.events))
        rows.append((r.label, f"{r.final_loss:.4g}", f"{r.test_accuracy:.1%}", expl,
                     f"{r.seconds:.2f} s"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    line = "  ".join("-" * w for w in widths)
    fmt = [f"{h:<{w}}" for h, w in zip(head, widths)]
    out = ["  ".join(fmt), line]
    for row in rows:
        out.append("  ".join(f"{c:<{w}}" if i in (0, 3) else f"{c:>{w}}"
                             for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(out)


def plot(results: Sequence[RunResult], out: str) -> str | None:
    """Save loss, global gradient norm (log) and learning rate per run; returns the path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    path = os.path.abspath(out)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    colors = {"plain": "tab:red", "value": "tab:orange", "norm": "tab:blue"}
    # the exploding run last, on top: it only lasts a few steps
    for r in sorted(results, key=lambda r: r.name == "plain"):
        h = r.history
        if h is None or h.n_steps == 0:
            continue
        c = colors.get(r.name)
        lw = 2.0 if r.name == "plain" else 1.0
        steps = h.step
        with np.errstate(invalid="ignore"):
            loss = np.where(np.isfinite(h.loss), h.loss, np.nan)
            norm = np.where(np.isfinite(h.grad_norm) & (h.grad_norm > 0), h.grad_norm, np.nan)
        axes[0].plot(steps, loss, color=c, lw=lw, label=r.label)
        axes[1].plot(steps, norm, color=c, lw=lw, label=r.label)
        axes[2].plot(steps, h.lr, color=c, lw=1.5, label=r.label)
        for ev in r.events:
            y = ev.norm if math.isfinite(ev.norm) and ev.norm > 0 else np.nanmax(norm)
            axes[1].plot([ev.step], [y], marker="x", color=c, ms=10, mew=2)
            if ev.action in ("raise", "gave_up"):
                axes[1].annotate(f"explosion: step {ev.step}\nlayer {ev.layer}",
                                 (ev.step, y), textcoords="offset points", xytext=(8, -4),
                                 fontsize=8, color=c)
    axes[0].set_ylabel("training loss")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("global gradient norm\n(before clipping)")
    axes[1].set_yscale("log")
    axes[2].set_ylabel("learning rate")
    axes[2].set_xlabel("step")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[0].set_title("fastclip demo: deep ReLU MLP on digits, SGD at lr=1")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    if not os.path.splitext(str(path))[1]:
        path = f"{path}.png"  # what matplotlib would write; report the real name
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line options (shared by ``fastclip demo`` and this module)."""
    parser.add_argument("--epochs", type=int, default=20,
                        help="epochs per run (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the data split, initial weights and batches "
                             "(default: %(default)s)")
    parser.add_argument("--out", default="fastclip_demo.png",
                        help="where to save the plot (default: %(default)s)")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


DESCRIPTION = ("Train a deep ReLU MLP on the digits three ways (plain SGD at a learning rate "
               "that explodes, value clipping, global-norm clipping with warm-up + cosine), "
               "print a comparison table and save a plot.")


def run_args(args: argparse.Namespace) -> int:
    if args.epochs < 1:
        print("fastclip demo: --epochs must be >= 1", file=sys.stderr)
        return 2
    run(epochs=args.epochs, seed=args.seed, out=None if args.no_plot else args.out,
        progress=not args.no_progress)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m fastclip.demo``."""
    parser = argparse.ArgumentParser(prog="fastclip demo", description=DESCRIPTION)
    add_arguments(parser)
    return run_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
