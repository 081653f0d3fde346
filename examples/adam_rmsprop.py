"""Adam and RMSprop as a remedy for exploding gradients: what they fix, compared with clipping.

The seed articles suggest switching the optimiser to Adam or RMSprop. Both
divide each parameter's step by a running root-mean-square of its own
gradients, so the step is about ``lr`` per parameter **whatever the scale of
the gradient**: a gradient 100 times too large gives about the same step.
That is exactly the failure of plain gradient descent above its stability
limit, where a larger gradient means a larger step, which means a larger
gradient.

Part 1 is the seed's linear regression (five points on y = 2x - 1, the model
``y_hat = w x``, gradient summed over the points) at a learning rate of 0.02,
above plain descent's limit of 0.0182 (see
``linear_regression_clipping.py``): plain descent diverges, Adam and RMSprop
(:class:`fastclip.optim.Adam`, :class:`fastclip.optim.RMSprop`) at the same
rate converge to the least-squares w = 1.727; value clipping alone only
keeps w bounded (it oscillates around the minimum).

Part 2 is a deep network: the 6-layer ReLU MLP of ``fastclip demo`` on the
digits, with the loss **summed** over each batch of 64 instead of averaged
(the way the seed articles write their gradients), so the gradients are 64
times larger; every run uses a learning rate of 0.01. Plain SGD explodes
(the monitor stops it); Adam and RMSprop alone train; global-norm clipping
(at 1.0, fused into the update) alone keeps SGD stable but trains less well;
Adam + clipping and RMSprop + clipping train too.

"outcome" is computed from the numbers: ``exploded``/``diverged``,
``oscillates``, ``converged`` (Part 1), ``failed`` (below 20% test
accuracy) or ``trained`` (Part 2); the test suite checks the statements
above on the printed tables.

Run ``python examples/adam_rmsprop.py`` (``--short``: 3 epochs in Part 2
instead of 10).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
from _ablation import table

from fastclip.demo import load_data
from fastclip.nn import MLP, softmax_cross_entropy
from fastclip.optim import SGD, Adam, RMSprop
from fastclip.train import GradientExplosionError, fit

X = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
Y = np.array([1.0, 3.0, 5.0, 7.0, 9.0])
SIZES = [64, 128, 128, 128, 128, 128, 10]


def part1(lr: float, steps: int = 1000) -> None:
    w_star = float(np.sum(X * Y) / np.sum(X * X))
    runs = [
        ("baseline: gradient descent", SGD, {}),
        ("Adam", Adam, {}),
        ("RMSprop", RMSprop, {}),
        ("descent + clip value 0.5", SGD, {"clip_value": 0.5}),
        ("Adam + clip value 0.5", Adam, {"clip_value": 0.5}),
    ]
    rows = []
    for name, cls, kw in runs:
        w = np.zeros(1)
        g = np.zeros(1)
        opt = cls([w], lr=lr, **kw)  # the optimiser updates w in place
        traj = []
        for _ in range(steps):
            g[0] = 2.0 * np.sum((w[0] * X - Y) * X)
            if not np.isfinite(g[0]) or abs(w[0]) > 1e100:
                break
            opt.step([g])
            traj.append(w[0])
        t = np.array(traj)
        spread = float(np.ptp(t[-20:]))
        if len(t) < steps or not np.isfinite(t[-1]) or abs(t[-1] - w_star) > 1e6:
            outcome = "diverged"
        elif spread <= 1e-9:
            outcome = "converged"
        else:
            outcome = "oscillates"
        rows.append([name, len(t), float(t[-1]), abs(float(t[-1]) - w_star), spread, outcome])
    table(f"Part 1, the seed's linear regression at lr {lr:g} (descent's limit 0.0182)",
          ["run", "steps run", "final w", "|w - w*|", "last-20 spread", "outcome"], rows)
    print(f"least squares w* = {w_star:.4f}")


def summed_cross_entropy(out: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy summed over the batch (fastclip's is the mean)."""
    loss, d = softmax_cross_entropy(out, target)
    n = out.shape[0]
    return loss * n, d * n


def part2(epochs: int, lr: float = 0.01) -> None:
    Xtr, ytr, Xte, yte, source = load_data(0)
    onehot = np.eye(10, dtype=np.float32)[ytr]  # a callable loss gets targets shaped like the output
    runs = [
        ("baseline: SGD", SGD, {}),
        ("Adam", Adam, {}),
        ("RMSprop", RMSprop, {}),
        ("SGD + clip norm 1", SGD, {"clip_norm": 1.0}),
        ("Adam + clip norm 1", Adam, {"clip_norm": 1.0}),
        ("RMSprop + clip norm 1", RMSprop, {"clip_norm": 1.0}),
    ]
    rows = []
    for name, cls, kw in runs:
        model = MLP(SIZES, rng=0)
        opt = cls(model.parameters(), lr=lr, **kw)
        stopped: Any = "-"
        try:
            h = fit(model, Xtr, onehot, loss=summed_cross_entropy, optimizer=opt, epochs=epochs,
                    batch_size=64, monitor="raise", progress=False, seed=0)
        except GradientExplosionError as exc:
            h, stopped = exc.history, exc.event.step
        with np.errstate(invalid="ignore", over="ignore"):
            acc = float(np.mean(np.argmax(model.forward(Xte), axis=1) == yte))
            loss = float(h.epoch_loss[-1]) / 64 if stopped == "-" else float("nan")
            max_norm = float(np.nanmax(h.grad_norm))
        outcome = "exploded" if stopped != "-" else ("failed" if acc < 0.2 else "trained")
        rows.append([name, stopped, loss, acc, max_norm, outcome])
    print(f"\ndata: {source}")
    table(f"Part 2, 6-layer ReLU MLP, loss summed over the batch, lr {lr:g}, {epochs} epochs",
          ["run", "exploded at step", "final loss (per sample)", "test accuracy",
           "max grad norm", "outcome"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="3 epochs in Part 2 (tests)")
    args = parser.parse_args(argv)
    part1(0.02)
    part2(3 if args.short else 10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
