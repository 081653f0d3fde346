"""Leaky ReLU and PReLU: do they prevent exploding gradients? (No; they keep units alive.)

One of the seed articles recommends Leaky ReLU or Parametric ReLU "to reduce
the chance of gradient explosion, because they have a gradient for negative
inputs too". This example tests that claim on the run of ``fastclip demo``:
a 6-layer ReLU MLP (64-128-128-128-128-128-10, He initialisation) on the
digits (a generated data set when scikit-learn is absent), plain SGD at a
learning rate of 1.0, batch 64, which explodes within the first epoch.

The same network is trained with each activation (``MLP(...,
activation="leaky_relu")`` with slope 0.01; ``activation="prelu"``, one
learned slope per layer, starting at 0.01), alone and with global-norm
clipping at 1.0 (fused into the SGD update). The
table reports whether the run exploded (the monitor, ``"raise"`` policy, stops
it), the test accuracy, and the share of **dead units**: hidden units whose
input is negative for every test sample, so that with ReLU they output 0
and pass no gradient at all.

What the table shows (checked by the test suite on the printed numbers):
**neither Leaky ReLU nor PReLU prevents the failure**: PReLU explodes even
earlier than ReLU, and Leaky ReLU ends at chance accuracy or explodes as
well, depending on the rounding of the BLAS that runs the matrix products
(the weights' scale and the learning rate cause the explosion, not the
negative half of the activation). **Clipping prevents
it** with any of the three activations. After the clipped runs, PReLU
leaves fewer dead units than ReLU; Leaky ReLU leaves about as many units
with negative input everywhere as ReLU, but those still pass a gradient
(0.01 times the incoming one), so they can recover, which a dead ReLU unit
cannot.

Run ``python examples/leaky_prelu_activations.py`` (``--short``: 3 epochs
instead of 10).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _ablation import guarded_fit, judge, table

from fastclip.demo import load_data
from fastclip.nn import MLP
from fastclip.optim import SGD

SIZES = [64, 128, 128, 128, 128, 128, 10]


def dead_share(model: MLP, X: np.ndarray) -> float:
    """Share of hidden units whose pre-activation is <= 0 on every row of X."""
    state = model.state_dict()
    h = X.astype(np.float64)
    dead = total = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(len(SIZES) - 2):
            z = h @ state[f"{i}.weight"] + state[f"{i}.bias"]
            never = ~np.any(z > 0, axis=0)
            dead += int(np.sum(never))
            total += never.size
            slope = float(np.ravel(state[f"{i}.slope"])[0]) if f"{i}.slope" in state else (
                0.01 if model.activation == "leaky_relu" else 0.0)
            h = np.where(z > 0, z, slope * z)
    return dead / total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="3 epochs (tests)")
    args = parser.parse_args(argv)
    epochs = 3 if args.short else 10
    Xtr, ytr, Xte, yte, source = load_data(0)
    runs = [
        ("baseline: ReLU", "relu", None),
        ("Leaky ReLU (0.01)", "leaky_relu", None),
        ("PReLU (learned, from 0.01)", "prelu", None),
        ("ReLU + clip norm 1", "relu", 1.0),
        ("Leaky ReLU + clip norm 1", "leaky_relu", 1.0),
        ("PReLU + clip norm 1", "prelu", 1.0),
    ]
    rows = []
    for name, act, clip in runs:
        model = MLP(SIZES, activation=act, negative_slope=0.01, rng=0)
        opt = SGD(model.parameters(), lr=1.0, clip_norm=clip)
        h, stopped = guarded_fit(model, Xtr, ytr, optimizer=opt, epochs=epochs, batch_size=64,
                                 seed=0)
        loss, acc, outcome = judge(model, h, stopped, Xte, yte)
        rows.append([name, stopped, loss, acc, dead_share(model, Xte), outcome])
    print(f"data: {source}; MLP {'-'.join(map(str, SIZES))}, SGD lr 1.0, batch 64, "
          f"{epochs} epochs")
    table("activation functions on a run that explodes",
          ["run", "exploded at step", "final loss", "test accuracy", "dead units",
           "outcome"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
