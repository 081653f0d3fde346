"""A 10-5-1 ReLU network trained by hand-written backpropagation: watching gradients explode.

Part 1 builds the network from scratch in NumPy (forward pass, mean squared
error, backward pass written out by hand) on random regression data, with a
deliberately bad setup: weights drawn from N(0, 3^2) and a learning rate of
0.05. The per-layer gradient norms, measured with ``fastclip.array_norms``
(one C call for all four arrays), grow step after step until the loss
overflows: the layers multiply each other's large weights, and every update
makes them larger.

Part 2 trains the same network with the four classic remedies:

- **Leaky ReLU** (slope 0.01) instead of ReLU, so no unit is ever completely
  dead;
- **He initialisation**, N(0, 2 / fan_in), which keeps activations and
  gradients at the same scale from layer to layer;
- **gradient clipping** by global norm (``fastclip.clip_grad_norm_``, PyTorch's
  ``clip_grad_norm_``) at 1.0;
- **learning-rate decay** (``fastclip.schedules.exponential``), large steps
  first and small ones later.

The gradient norms then stay bounded and the loss goes down.

Run ``python examples/relu_backprop_gradients.py`` (``--short`` for fewer steps).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import fastclip
from fastclip import schedules


def make_data(rng: np.random.Generator, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    X = rng.standard_normal((n, 10))
    w = rng.standard_normal(10)
    y = np.tanh(X @ w / 3.0)[:, None] + 0.05 * rng.standard_normal((n, 1))
    return X, y


class TinyNet:
    """10 -> 5 -> 1 with a (leaky) ReLU hidden layer; weights (in, out)."""

    def __init__(self, rng: np.random.Generator, init: str, slope: float) -> None:
        if init == "bad":
            self.W1 = rng.normal(0.0, 3.0, (10, 5))
            self.W2 = rng.normal(0.0, 3.0, (5, 1))
        else:  # He: std sqrt(2 / fan_in)
            self.W1 = rng.normal(0.0, np.sqrt(2 / 10), (10, 5))
            self.W2 = rng.normal(0.0, np.sqrt(2 / 5), (5, 1))
        self.b1 = np.zeros(5)
        self.b2 = np.zeros(1)
        self.slope = slope

    def params(self) -> list[np.ndarray]:
        return [self.W1, self.b1, self.W2, self.b2]

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        # forward
        z1 = X @ self.W1 + self.b1
        h1 = np.where(z1 > 0, z1, self.slope * z1)
        out = h1 @ self.W2 + self.b2
        err = out - y
        loss = float(np.mean(err**2))
        # backward, by hand
        dout = 2 * err / err.shape[0]
        dW2 = h1.T @ dout
        db2 = dout.sum(axis=0)
        dh1 = dout @ self.W2.T
        dz1 = dh1 * np.where(z1 > 0, 1.0, self.slope)
        dW1 = X.T @ dz1
        db1 = dz1.sum(axis=0)
        return loss, [dW1, db1, dW2, db2]


def run(net: TinyNet, X: np.ndarray, y: np.ndarray, steps: int, lr, clip: float | None,
        title: str, every: int = 0) -> list[float]:
    print(f"\n{title}")
    print(f"{'step':>5} {'loss':>11} {'|dW1|':>10} {'|db1|':>10} {'|dW2|':>10} {'|db2|':>10} "
          f"{'lr':>8}")
    losses = []
    every = every or max(1, steps // 10)
    for t in range(steps):
        loss, grads = net.loss_and_grads(X, y)
        norms = fastclip.array_norms(grads)  # per-layer L2 norms, one C call
        rate = lr(t) if callable(lr) else lr
        if t % every == 0 or t == steps - 1 or not np.isfinite(loss):
            print(f"{t:>5} {loss:>11.4g} " + " ".join(f"{v:>10.3g}" for v in norms)
                  + f" {rate:>8.3g}")
        losses.append(loss)
        if not np.isfinite(loss) or not np.all(np.isfinite(norms)):
            print("      the loss overflowed: the gradients exploded")
            break
        if clip is not None:
            fastclip.clip_grad_norm_(grads, clip)
        for p, g in zip(net.params(), grads):
            p -= rate * g
    return losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="fewer steps (for tests)")
    args = parser.parse_args(argv)
    steps = 60 if args.short else 200
    rng = np.random.default_rng(0)
    X, y = make_data(rng)
    with np.errstate(over="ignore", invalid="ignore"):
        bad = run(TinyNet(np.random.default_rng(1), "bad", 0.0), X, y, steps, 0.05, None,
                  "Part 1: ReLU, weights N(0, 3^2), lr 0.05, no clipping", every=1)
    good = run(TinyNet(np.random.default_rng(1), "he", 0.01), X, y, steps,
               schedules.exponential(0.05, transition_steps=steps / 4, decay_rate=0.5), 1.0,
               "Part 2: Leaky ReLU, He init, clip_grad_norm_(1.0), exponential lr decay")
    print(f"\nPart 1 stopped after {len(bad)} steps (last loss {bad[-1]:.3g}); "
          f"Part 2 went from loss {good[0]:.3g} to {good[-1]:.3g} in {len(good)} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
