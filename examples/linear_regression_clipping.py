"""Linear regression by gradient descent, with and without gradient value clipping.

The data are five points on a line: X = [1, 2, 3, 4, 5], y = [1, 3, 5, 7, 9]
(y = 2x - 1). We fit ``y_hat = w * x + b`` by full-batch gradient descent on
the mean squared error, starting from w = b = 0.

The loss is a quadratic bowl whose curvature along its steepest direction is
about 23.6 (twice the largest eigenvalue of [[mean x^2, mean x], [mean x, 1]]),
so plain gradient descent diverges for any learning rate above 2 / 23.6 = 0.085.
At lr = 0.1 each step overshoots the minimum by more than it corrects and the
parameters grow geometrically (the "exploding" run).

Clipping each gradient component to [-0.5, 0.5] with
``fastclip.clip_grad_value_`` bounds every step by lr * 0.5 = 0.05: far from the
minimum the updates are clipped and the parameters walk steadily towards it,
and the oscillation that plain descent amplifies is capped, so the clipped run
stays bounded and approaches w = 2, b = -1 instead of blowing up.

Run ``python examples/linear_regression_clipping.py`` (``--short`` for fewer
steps).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import fastclip

X = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
Y = np.array([1.0, 3.0, 5.0, 7.0, 9.0])
LR = 0.1
CLIP = 0.5


def gradient(w: float, b: float) -> np.ndarray:
    """d/d(w, b) of mean((w x + b - y)^2)."""
    r = w * X + b - Y
    return np.array([2 * np.mean(r * X), 2 * np.mean(r)])


def train(steps: int, clip: float | None) -> np.ndarray:
    """The (w, b) trajectory, one row per step (row 0: the start)."""
    theta = np.zeros(2)
    traj = [theta.copy()]
    for _ in range(steps):
        g = gradient(*theta)
        if clip is not None:
            fastclip.clip_grad_value_(g, clip)  # in place, like torch.nn.utils.clip_grad_value_
        theta -= LR * g
        traj.append(theta.copy())
        if not np.all(np.isfinite(theta)):
            break
    return np.array(traj)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="fewer steps (for tests)")
    args = parser.parse_args(argv)
    steps = 30 if args.short else 150
    plain = train(steps, None)
    clipped = train(steps, CLIP)
    print(f"gradient descent on y = 2x - 1 from 5 points, lr = {LR}")
    print(f"{'step':>4}  {'w (plain)':>12} {'b (plain)':>12}   {'w (clip 0.5)':>12} "
          f"{'b (clip 0.5)':>12}")
    for t in range(0, steps + 1, max(1, steps // 15)):
        w, b = plain[min(t, len(plain) - 1)]
        wc, bc = clipped[t]
        print(f"{t:>4}  {w:>12.4g} {b:>12.4g}   {wc:>12.4g} {bc:>12.4g}")
    loss = lambda th: float(np.mean((th[0] * X + th[1] - Y) ** 2))
    print(f"\nfinal loss: plain {loss(plain[-1]):.4g} (diverging), "
          f"clipped {loss(clipped[-1]):.4g} (bounded)")
    print(f"max |w| over the run: plain {np.max(np.abs(plain[:, 0])):.4g}, "
          f"clipped {np.max(np.abs(clipped[:, 0])):.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
