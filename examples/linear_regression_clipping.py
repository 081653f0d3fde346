"""Linear regression by gradient descent: when it explodes, and what clipping does (and does not) do.

The seed's setup: five points X = [1, 2, 3, 4, 5], y = [1, 3, 5, 7, 9]
(y = 2x - 1), the model ``y_hat = w * x`` (no bias), the gradient summed over
the points, ``g = 2 * sum((w x - y) x)``, w = 0 at the start, learning rate
0.01, 1000 steps, and in a second run the gradient clipped to [-0.5, 0.5].

**The seed's own setup does not explode.** The loss is a parabola in w with
curvature 2 * sum(x^2) = 110, so gradient descent converges for any learning
rate below 2 / 110 = 0.0182; at 0.01 both runs (plain and clipped) converge to
the least-squares slope w = 95 / 55 = 1.727 (without a bias, y = 2x - 1 cannot
be fit exactly). Part 1 prints this.

Part 2 keeps the seed's model and raises the learning rate to 0.02, above
the limit: each step overshoots the minimum by 1.2 times the previous error
and w grows geometrically until it overflows. The ablation table shows:

- **value clipping** (``fastclip.clip_grad_value_`` at 0.5, the seed's
  remedy) keeps w bounded, but it does **not** converge: near the minimum the
  gradient is smaller than 0.5, clipping is inactive and plain descent
  amplifies the error again, so w ends in a small oscillation around 1.727;
- a **decaying learning rate** (``schedules.exponential``) alone converges:
  the error grows for the few steps in which the rate is above 0.0182, then
  shrinks;
- **both together** converge too, and clipping bounds the early growth.

Part 3 adds a bias term (the model ``y_hat = w x + b``, mean gradient,
learning rate 0.1, clip 0.5), where y = 2x - 1 can be fit exactly: the same
picture, plain descent diverges, clipping alone settles into a two-step
oscillation around w = 2, b = -1 instead of reaching it, decay reaches it.

Run ``python examples/linear_regression_clipping.py`` (every run is 1000
steps; ``--short`` is accepted and changes nothing, the script takes
milliseconds).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _ablation import table

import fastclip
from fastclip import schedules

X = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
Y = np.array([1.0, 3.0, 5.0, 7.0, 9.0])
CLIP = 0.5


def grad_seed(theta: np.ndarray) -> np.ndarray:
    """The seed's gradient of sum((w x - y)^2) with respect to w (no bias)."""
    return np.array([2.0 * np.sum((theta[0] * X - Y) * X)])


def grad_bias(theta: np.ndarray) -> np.ndarray:
    """d/d(w, b) of mean((w x + b - y)^2)."""
    r = theta[0] * X + theta[1] - Y
    return np.array([2.0 * np.mean(r * X), 2.0 * np.mean(r)])


def loss_of(theta: np.ndarray) -> float:
    b = theta[1] if theta.size > 1 else 0.0
    return float(np.mean((theta[0] * X + b - Y) ** 2))


def descend(grad, n_params: int, steps: int, lr, clip: float | None) -> np.ndarray:
    """The parameter trajectory, one row per step (row 0: the start); stops on overflow."""
    theta = np.zeros(n_params)
    traj = [theta.copy()]
    for t in range(steps):
        with np.errstate(over="ignore", invalid="ignore"):
            g = grad(theta)
            if clip is not None:
                fastclip.clip_grad_value_(g, clip)  # in place, like torch's clip_grad_value_
            theta = theta - (lr(t) if callable(lr) else lr) * g
        traj.append(theta.copy())
        if not np.all(np.isfinite(theta)) or np.max(np.abs(theta)) > 1e150:
            break
    return np.array(traj)


def outcome(traj: np.ndarray) -> str:
    """From the numbers: diverged (overflow or a huge loss), converged (the last 20
    iterates agree to 1e-9), oscillates (bounded, the steps alternate in direction and
    their spread does not shrink) or converging (still moving)."""
    last = traj[-1]
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.all(np.isfinite(last)) or loss_of(last) > 1e6:
            return "diverged"
        now = float(np.max(np.ptp(traj[-20:], axis=0)))
        before = float(np.max(np.ptp(traj[-40:-20], axis=0)))
    if now <= 1e-9:
        return "converged"
    d = np.diff(traj[-21:, 0])
    alternating = np.mean(d[1:] * d[:-1] < 0) > 0.5
    return "oscillates" if alternating and now >= 0.9 * before else "converging"


def ablation(title: str, grad, n_params: int, steps: int, lr: float, decay, best: np.ndarray,
             names: tuple[str, ...]) -> None:
    """Baseline, each remedy alone, both: one table row each."""
    best_loss = loss_of(best)
    runs = [
        (f"baseline: lr {lr:g}", lr, None),
        (f"clip_grad_value_ {CLIP:g}", lr, CLIP),
        ("exponential lr decay", decay, None),
        ("clip + decay", decay, CLIP),
    ]
    rows = []
    for name, rate, clip in runs:
        traj = descend(grad, n_params, steps, rate, clip)
        last = traj[-1]
        with np.errstate(over="ignore", invalid="ignore"):
            spread = float(np.max(np.ptp(traj[-20:], axis=0)))
            rows.append([name, len(traj) - 1, loss_of(last), *map(float, last),
                         float(np.max(np.abs(traj))), spread, outcome(traj)])
    cols = ["run", "steps", "final loss", *(f"final {n}" for n in names), "max |w|",
            "last-20 spread", "outcome"]
    table(title, cols, rows)
    print("least squares: " + ", ".join(f"{n} = {v:.4f}" for n, v in zip(names, best))
          + f", loss {best_loss:.4g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true",
                        help="accepted for the test runner; the runs take milliseconds, so "
                             "all 1000 steps are run either way")
    parser.parse_args(argv)
    steps = 1000
    w_star = np.array([np.sum(X * Y) / np.sum(X * X)])

    # Part 1: the seed exactly (lr 0.01): converges, with or without clipping
    rows = []
    for name, clip in (("seed: lr 0.01", None), ("seed: lr 0.01, clip 0.5", CLIP)):
        traj = descend(grad_seed, 1, steps, 0.01, clip)
        rows.append([name, len(traj) - 1, loss_of(traj[-1]), float(traj[-1][0]),
                     outcome(traj)])
    table("Part 1, the seed's setup (y = w x, summed gradient, lr 0.01): no explosion",
          ["run", "steps", "final loss", "final w", "outcome"], rows)
    print(f"stable for lr < 2 / (2 sum x^2) = {2 / (2 * np.sum(X * X)):.4f}; "
          f"least squares w = {w_star[0]:.4f}")

    # Part 2: the seed's model above the stability limit
    ablation("Part 2, the seed's model at lr 0.02 (above 0.0182): explodes", grad_seed, 1,
             steps, 0.02, schedules.exponential(0.02, 10, 0.5, end_value=0.01),
             w_star, ("w",))

    # Part 3: with a bias, mean gradient, lr 0.1 (limit 2 / 23.6 = 0.085)
    A = np.stack([X, np.ones_like(X)], axis=1)
    best = np.linalg.lstsq(A, Y, rcond=None)[0]
    ablation("Part 3, y = w x + b, mean gradient, lr 0.1 (above 0.085): explodes", grad_bias,
             2, steps, 0.1, schedules.exponential(0.1, 10, 0.5, end_value=0.08),
             best, ("w", "b"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
