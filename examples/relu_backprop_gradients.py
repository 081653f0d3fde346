"""A 10-5-1 ReLU network trained by hand-written backpropagation: which remedy stops the explosion?

The network of the seed article: 10 inputs, 5 ReLU units, 1 output, mean
squared error, backpropagation written out by hand in NumPy (the seed's
backward pass has two bugs, fixed here: the hidden-layer error uses the
output error, not the weight gradient, and it is multiplied by the ReLU's
derivative). The per-layer gradient norms are measured with
``fastclip.array_norms`` (one C call for all four arrays).

Part 1 runs the seed's own setup (weights N(0, 1), learning rate 0.1,
gradient summed over the 100 samples rather than averaged, 1000 steps) and
shows that it explodes.

Part 2 uses a deliberately bad but more common setup (weights N(0, 3^2),
learning rate 0.05, mean gradient) on a smooth regression target, and an
ablation of the four remedies the seeds teach, each alone and all together:

- **Leaky ReLU** (slope 0.01) instead of ReLU;
- **He initialisation**, N(0, 2 / fan_in);
- **gradient clipping** by global norm (``fastclip.clip_grad_norm_``) at 1.0;
- **learning-rate decay** (``fastclip.schedules.exponential``, halving every
  quarter of the run).

What the table shows (the test suite checks each of these statements on the
printed numbers): the baseline overflows; **He initialisation alone is the
best single remedy** and reaches a lower loss than all four together (the
decay and the clipping then only slow it down); clipping alone keeps the run
finite but trains far less well, because it limits the step while the badly
scaled weights stay badly scaled; Leaky ReLU alone and decay alone do not
stop the explosion: the slope changes what happens to negative inputs, not
the scale of the weights, and the overflow comes within the first ten steps,
before the rate has decayed.

Run ``python examples/relu_backprop_gradients.py`` (``--short``: fewer steps).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
from _ablation import table

import fastclip
from fastclip import schedules


class TinyNet:
    """10 -> 5 -> 1 with a (leaky) ReLU hidden layer; weights (in, out)."""

    def __init__(self, rng: np.random.Generator, std1: float, std2: float, slope: float) -> None:
        self.W1 = rng.normal(0.0, std1, (10, 5))
        self.W2 = rng.normal(0.0, std2, (5, 1))
        self.b1 = np.zeros(5)
        self.b2 = np.zeros(1)
        self.slope = slope

    def params(self) -> list[np.ndarray]:
        return [self.W1, self.b1, self.W2, self.b2]

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray, reduce: str
                       ) -> tuple[float, list[np.ndarray]]:
        # forward
        z1 = X @ self.W1 + self.b1
        h1 = np.where(z1 > 0, z1, self.slope * z1)
        out = h1 @ self.W2 + self.b2
        err = out - y
        loss = float(np.mean(err**2))
        # backward, by hand: d(loss)/d(out) for the mean, or the seed's summed 0.5 * err^2
        dout = 2 * err / err.shape[0] if reduce == "mean" else err
        dW2 = h1.T @ dout
        db2 = dout.sum(axis=0)
        dh1 = dout @ self.W2.T
        dz1 = dh1 * np.where(z1 > 0, 1.0, self.slope)
        dW1 = X.T @ dz1
        db1 = dz1.sum(axis=0)
        return loss, [dW1, db1, dW2, db2]


def train(net: TinyNet, X: np.ndarray, y: np.ndarray, steps: int, lr: Any, clip: float | None,
          reduce: str = "mean", trace: bool = False) -> dict[str, Any]:
    """Full-batch gradient descent; stops at the first non-finite loss or gradient."""
    max_norm = 0.0
    loss = float("nan")
    for t in range(steps):
        with np.errstate(over="ignore", invalid="ignore"):
            loss, grads = net.loss_and_grads(X, y, reduce)
            norms = fastclip.array_norms(grads)  # per-layer L2 norms, one C call
            total = float(np.sqrt(np.sum(np.square(norms))))
        if trace and (t < 8 or not np.isfinite(total)):
            print(f"  step {t:>4}: loss {loss:.4g}, |dW1| {norms[0]:.3g}, |dW2| {norms[2]:.3g}")
        if not (np.isfinite(loss) and np.isfinite(total)):
            return {"steps": t, "loss": float("nan"), "max_norm": float("inf"),
                    "overflow": True}
        max_norm = max(max_norm, total)
        if clip is not None:
            fastclip.clip_grad_norm_(grads, clip)
        rate = lr(t) if callable(lr) else lr
        with np.errstate(over="ignore", invalid="ignore"):
            for p, g in zip(net.params(), grads):
                p -= rate * g
    return {"steps": steps, "loss": loss, "max_norm": max_norm, "overflow": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="fewer steps (for tests)")
    args = parser.parse_args(argv)

    # Part 1: the seed's setup, bugs fixed
    rng = np.random.default_rng(0)
    Xs, ys = rng.standard_normal((100, 10)), rng.standard_normal((100, 1))
    seed_steps = 200 if args.short else 1000
    print("Part 1: the seed's setup (N(0, 1) weights, lr 0.1, gradient summed over 100 "
          "samples)")
    r = train(TinyNet(np.random.default_rng(1), 1.0, 1.0, 0.0), Xs, ys, seed_steps, 0.1, None,
              reduce="sum", trace=True)
    table("Part 1, the seed's setup", ["run", "steps run", "final loss", "max grad norm",
                                        "overflow"],
          [["seed: ReLU, N(0, 1), lr 0.1, summed", r["steps"], r["loss"], r["max_norm"],
            r["overflow"]]])

    # Part 2: bad init + lr 0.05, mean gradient; each remedy alone and all together
    steps = 60 if args.short else 200
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 10))
    y = np.tanh(X @ rng.standard_normal(10) / 3.0)[:, None] + 0.05 * rng.standard_normal((200, 1))
    decay = schedules.exponential(0.05, transition_steps=steps / 4, decay_rate=0.5)
    he = (np.sqrt(2 / 10), np.sqrt(2 / 5))
    bad = (3.0, 3.0)
    runs = [
        ("baseline: ReLU, N(0, 3^2), lr 0.05", bad, 0.0, 0.05, None),
        ("Leaky ReLU alone", bad, 0.01, 0.05, None),
        ("He init alone", he, 0.0, 0.05, None),
        ("clip_grad_norm_ 1.0 alone", bad, 0.0, 0.05, 1.0),
        ("lr decay alone", bad, 0.0, decay, None),
        ("all four together", he, 0.01, decay, 1.0),
    ]
    rows = []
    for name, (s1, s2), slope, lr, clip in runs:
        r = train(TinyNet(np.random.default_rng(1), s1, s2, slope), X, y, steps, lr, clip)
        rows.append([name, r["steps"], r["loss"], r["max_norm"], r["overflow"]])
    table(f"Part 2, bad init, {steps} full-batch steps",
          ["run", "steps run", "final loss", "max grad norm", "overflow"], rows)
    print(f"(the target's variance is {float(np.var(y)):.3g}: a loss near it means nothing "
          "was learned)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
