"""A 784-512-512-10 ReLU classifier: learning-rate schedules and clipping compared.

The classic MNIST-sized network (784 inputs, two hidden layers of 512 ReLU
units, 10 logits, softmax cross-entropy) trained with fastclip's fused layers
(:class:`fastclip.nn.MLP`) and optimiser (:class:`fastclip.optim.SGD`) through
:func:`fastclip.train.fit`. The data need no download: scikit-learn's 8x8
handwritten digits upscaled to 28x28 = 784 pixels (a generated 10-class data
set of the same shape when scikit-learn is absent).

Five runs start from the same weights with SGD + momentum 0.9 at a peak
learning rate of 0.1:

- **polynomial** decay (``schedules.polynomial``, power 2, to 0 at the end);
- **inverse square root** (``schedules.inverse_sqrt``);
- **inverse time** (``schedules.inverse_time``, Keras' ``InverseTimeDecay``);
- **value clipping** (every gradient element clamped to ``[-0.01, 0.01]``,
  fused into the update), constant learning rate;
- **norm clipping** (global norm at most 1.0, PyTorch's
  ``clip_grad_norm_`` semantics, fused into the update), constant rate.

The table compares the final training loss, the test accuracy, the largest
gradient norm seen and the time per run; every run is watched by the
explosion monitor with the ``"skip"`` policy.

Run ``python examples/classifier_schedules_clipping.py`` (``--short``: fewer
samples and one epoch).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from fastclip import schedules
from fastclip.nn import MLP
from fastclip.optim import SGD
from fastclip.train import fit


def load(short: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    rng = np.random.default_rng(seed)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        n = 1797
        y = rng.integers(0, 10, n)
        X = rng.uniform(0, 1, (10, 784))[y] + 0.3 * rng.standard_normal((n, 784))
        source = "generated 10-class data, 784 features (scikit-learn not installed)"
    else:
        d = load_digits()
        imgs = d.images / 16.0  # (n, 8, 8)
        # 8x8 -> 28x28 by nearest-neighbour upscaling (each pixel covers 3.5 pixels)
        idx = (np.arange(28) * 8) // 28
        X = imgs[:, idx][:, :, idx].reshape(len(imgs), 784)
        y = d.target
        source = "scikit-learn digits upscaled to 28x28 (784 features)"
    perm = rng.permutation(len(y))
    if short:
        perm = perm[:400]
    cut = int(0.75 * len(perm))
    X = X.astype(np.float32)
    return X[perm[:cut]], y[perm[:cut]], X[perm[cut:]], y[perm[cut:]], source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="400 samples, 1 epoch (tests)")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args(argv)
    epochs = args.epochs or (1 if args.short else 8)
    Xtr, ytr, Xte, yte, source = load(args.short)
    batch = 64
    steps = epochs * -(-len(Xtr) // batch)
    peak = 0.1
    runs = {
        "polynomial (power 2)": (schedules.polynomial(peak, decay_steps=steps, end_value=0.0,
                                                      power=2.0), {}),
        "inverse sqrt": (schedules.inverse_sqrt(peak, timescale=max(1, steps / 20)), {}),
        "inverse time": (schedules.inverse_time(peak, decay_steps=max(1, steps / 4),
                                                decay_rate=1.0), {}),
        "value clip 0.01": (peak, {"clip_value": 0.01}),
        "norm clip 1.0": (peak, {"clip_norm": 1.0}),
    }
    print(f"data: {source}; {len(Xtr)} train / {len(Xte)} test; "
          f"MLP 784-512-512-10, SGD momentum 0.9, batch {batch}, {epochs} epoch(s)\n")
    print(f"{'run':<22} {'final loss':>10} {'test acc':>9} {'max |g|':>9} {'lr at end':>10} "
          f"{'time':>7}")
    for name, (lr, clip) in runs.items():
        model = MLP([784, 512, 512, 10], rng=0)
        opt = SGD(model.parameters(), lr=lr, momentum=0.9, **clip)
        t0 = time.perf_counter()
        h = fit(model, Xtr, ytr, optimizer=opt, epochs=epochs, batch_size=batch, seed=0,
                monitor="skip", progress=False)
        dt = time.perf_counter() - t0
        acc = float(np.mean(np.argmax(model.forward(Xte), axis=1) == yte))
        print(f"{name:<22} {h.epoch_loss[-1]:>10.4g} {acc:>9.1%} {np.max(h.grad_norm):>9.3g} "
              f"{h.lr[-1]:>10.3g} {dt:>6.2f}s" + (f"  ({h.n_explosions} skipped)"
                                                 if h.n_explosions else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
