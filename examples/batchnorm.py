"""Batch normalisation as a remedy for exploding gradients, compared with clipping.

One of the seed articles recommends batch normalisation "to make training
more stable". ``MLP(..., batchnorm=True)`` makes every hidden layer
``Linear -> BatchNorm1d -> activation`` (:class:`fastclip.nn.BatchNorm1d`,
as ``torch.nn.BatchNorm1d``): each unit's pre-activation is standardised over
the batch, then scaled and shifted by two learned numbers. The signal that
reaches the next layer then has the same scale whatever the scale of the
weights, which is what goes wrong in the two runs below.

Both use a ReLU MLP on scikit-learn's handwritten digits (a generated data
set when scikit-learn is absent) trained by :func:`fastclip.train.fit` with
SGD, batch 64, the explosion monitor with the ``"raise"`` policy, and the
test accuracy measured in evaluation mode (batch norm then uses its running
statistics). Each is an ablation: baseline, batch norm alone, global-norm
clipping at 1.0 alone (fused into the update), both.

- **A**, the run of ``fastclip demo``: 64-128-128-128-128-128-10, He
  initialisation, learning rate 1.0, which explodes within the first epoch.
- **B**, the seeds' initialisation: 64, 8 hidden layers of 128, 10, weights
  drawn from N(0, 1) (``np.random.randn``), learning rate 0.05: the signal
  grows by about 8 per layer, so the first step already explodes.

"outcome" is computed from the numbers: ``exploded`` (the monitor stopped
the run), ``failed`` (below 20% test accuracy) or ``trained``.

What the tables show (and ``tests/test_examples.py`` checks on them): batch
normalisation alone does **not** prevent either explosion; it only delays it
(the monitor stops the run later than the baseline's). In A, clipping alone
trains, and batch norm together with clipping trains to the best test accuracy
of the four runs. In B every run with clipping finishes without an explosion,
but none gets anywhere near A's accuracy: with N(0, 1) weights the fix is the
initialisation (``xavier_vs_he_init.py``), not normalisation or clipping.

Run ``python examples/batchnorm.py`` (``--short``: 3 epochs instead of 10).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import numpy as np
from _ablation import guarded_fit, judge, table

from fastclip.demo import load_data
from fastclip.nn import MLP
from fastclip.optim import SGD


def build(sizes: list[int], batchnorm: bool, randn: bool) -> MLP:
    model = MLP(sizes, batchnorm=batchnorm, rng=0)
    if randn:  # the seeds' np.random.randn: N(0, 1) weights for the linear layers
        rng = np.random.default_rng(0)
        state = model.state_dict()
        for name, value in state.items():
            if re.fullmatch(r"\d+\.weight", name):
                state[name] = rng.standard_normal(value.shape).astype(np.float32)
        model.load_state_dict(state)
    return model


def train(sizes: list[int], batchnorm: bool, randn: bool, lr: float, clip: float | None,
          data: tuple, epochs: int) -> list[Any]:
    Xtr, ytr, Xte, yte = data
    model = build(sizes, batchnorm, randn)
    opt = SGD(model.parameters(), lr=lr, clip_norm=clip)
    h, stopped = guarded_fit(model, Xtr, ytr, optimizer=opt, epochs=epochs, batch_size=64,
                             seed=0)
    model.eval()  # batch norm: the running statistics, not the test batch's
    loss, acc, outcome = judge(model, h, stopped, Xte, yte)
    return [stopped, loss, acc, float(np.nanmax(h.grad_norm)), outcome]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="3 epochs (tests)")
    args = parser.parse_args(argv)
    epochs = 3 if args.short else 10
    Xtr, ytr, Xte, yte, source = load_data(0)
    data = (Xtr, ytr, Xte, yte)
    print(f"data: {source}; SGD, batch 64, {epochs} epochs")
    cols = ["run", "exploded at step", "final loss", "test accuracy", "max grad norm", "outcome"]
    for title, sizes, randn, lr in (
            ("A, the demo's run: 6-layer ReLU MLP, He init, lr 1",
             [64, 128, 128, 128, 128, 128, 10], False, 1.0),
            ("B, 9-layer ReLU MLP, N(0, 1) init, lr 0.05", [64, *([128] * 8), 10], True, 0.05)):
        rows = [
            ["baseline", *train(sizes, False, randn, lr, None, data, epochs)],
            ["batch norm alone", *train(sizes, True, randn, lr, None, data, epochs)],
            ["clip norm 1 alone", *train(sizes, False, randn, lr, 1.0, data, epochs)],
            ["batch norm + clip norm 1", *train(sizes, True, randn, lr, 1.0, data, epochs)],
        ]
        table(title, cols, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
