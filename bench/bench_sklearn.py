"""fastclip.sklearn.MLPClassifier vs sklearn.neural_network.MLPClassifier.

Same architecture (one hidden layer of 100 ReLU units), same solver (Adam,
lr 1e-3, batch 200, alpha 1e-4), the same number of epochs for both
(``tol=0`` and ``n_iter_no_change`` larger than ``max_iter``, so neither stops
early), same train/test split:

- ``digits``: scikit-learn's 8x8 digits (1,797 x 64, /16), 75/25 split,
  ``max_iter=100`` epochs;
- ``synthetic``: ``make_classification(20000, 100, n_informative=30,
  n_classes=5, random_state=0)``, standardised, 80/20 split, ``max_iter=20``.

fastclip runs with its defaults (float32 network; scikit-learn computes in
float64). Timed: ``fit`` wall time (data validation included); reported: the
median over rounds and the test accuracy of each.

Each candidate fits in its own fresh process, rounds alternate between the
candidates, BLAS/OpenMP threads are set to ``--threads`` for both::

    python bench/bench_sklearn.py [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

DATASETS = {"digits": 100, "synthetic": 20}
CANDIDATES = ("sklearn", "fastclip")


def load(name: str):
    import numpy as np
    from sklearn.datasets import load_digits, make_classification
    from sklearn.model_selection import train_test_split

    if name == "digits":
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    X, y = make_classification(n_samples=20000, n_features=100, n_informative=30,
                               n_classes=5, random_state=0)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return train_test_split(X.astype(np.float64), y, test_size=0.2, random_state=0,
                            stratify=y)


def worker(candidate: str, dataset: str, seed: int) -> None:
    import warnings

    Xtr, Xte, ytr, yte = load(dataset)
    epochs = DATASETS[dataset]
    kw = dict(hidden_layer_sizes=(100,), activation="relu", solver="adam",
              learning_rate_init=1e-3, batch_size=200, alpha=1e-4, max_iter=epochs, tol=0.0,
              n_iter_no_change=epochs + 1, random_state=seed)
    if candidate == "sklearn":
        from sklearn.neural_network import MLPClassifier
    else:
        from fastclip.sklearn import MLPClassifier
    clf = MLPClassifier(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        clf.fit(Xtr, ytr)
        t = time.perf_counter() - t0
    print(json.dumps({"time": t, "acc": float(clf.score(Xte, yte)), "epochs": clf.n_iter_}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--worker", nargs=3, metavar=("CANDIDATE", "DATASET", "SEED"))
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(args.threads)
    res: dict = {}
    for dataset in DATASETS:
        for r in range(args.rounds):
            order = CANDIDATES if r % 2 == 0 else CANDIDATES[::-1]
            for cand in order:
                out = subprocess.run([sys.executable, __file__, "--worker", cand, dataset,
                                      str(r)], env=env, capture_output=True, text=True,
                                     check=True)
                rec = json.loads(out.stdout.strip().splitlines()[-1])
                res.setdefault((dataset, cand), []).append(rec)
    import numpy as np
    import sklearn

    import fastclip

    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, scikit-learn "
          f"{sklearn.__version__}, fastclip {getattr(fastclip, '__version__', '?')}, "
          f"threads {args.threads}, rounds {args.rounds}, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("| data | epochs | sklearn fit | fastclip fit | speed-up | sklearn test acc | "
          "fastclip test acc |")
    print("|---|---|---|---|---|---|---|")
    for dataset, epochs in DATASETS.items():
        s = res[(dataset, "sklearn")]
        f = res[(dataset, "fastclip")]
        ts = statistics.median(r["time"] for r in s)
        tf = statistics.median(r["time"] for r in f)
        acc_s = statistics.median(r["acc"] for r in s)
        acc_f = statistics.median(r["acc"] for r in f)
        print(f"| {dataset} | {epochs} | {ts:.3f} s | {tf:.3f} s | {ts / tf:.1f}x | "
              f"{acc_s:.4f} | {acc_f:.4f} |")


if __name__ == "__main__":
    main()
