"""Data-parallel training of an MLP over MPI ranks, with gradient clipping.

Launch with (``pip install "fastclip[mpi]"`` brings mpi4py and the MPICH wheel)::

    mpiexec -n 2 python examples/mpi_data_parallel.py

Every rank holds the data set and a replica of the model; ``fit(..., comm=comm)``
broadcasts rank 0's initial parameters, shuffles identically on every rank and
gives each rank its shard of every mini-batch. After the backward pass the
gradients are averaged over the global batch with ONE ``Allreduce`` on a single
contiguous buffer; the explosion monitor, the clipper and the optimiser's
global-norm clipping then act on the averaged (full-batch) gradient, so every
rank applies the same update and the replicas stay identical (checked at the
end). Only rank 0 shows a progress bar and prints.

The data are scikit-learn's bundled digits (a generated data set when
scikit-learn is absent). Options: ``--epochs``, ``--batch-size``, ``--seed``,
``--short`` (2 epochs). Started without mpiexec it runs as one rank, and without
mpi4py installed as a plain single-process ``fit``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastclip import nn, optim, schedules
from fastclip.distributed import limit_threads
from fastclip.train import fit


def load(seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((1797, 64)).astype(np.float32)
        y = (X[:, :10] @ rng.standard_normal((10, 10))).argmax(axis=1)
        return X, y, "a generated data set (scikit-learn is not installed)"
    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target, "scikit-learn's digits"


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128, help="global batch size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--short", action="store_true", help="2 epochs (a quick check)")
    args = ap.parse_args(argv)
    if args.short:
        args.epochs = 2

    try:
        from mpi4py import MPI
    except ImportError:  # no MPI: one process, no communicator
        MPI, comm, rank, size = None, None, 0, 1
    else:
        comm = MPI.COMM_WORLD
        rank, size = comm.Get_rank(), comm.Get_size()
        limit_threads(comm)  # the ranks on a node share its cores (no oversubscription)
    X, y, source = load(args.seed)
    perm = np.random.default_rng(args.seed).permutation(len(X))
    X, y = X[perm], y[perm]
    n_test = len(X) // 5
    Xte, yte, Xtr, ytr = X[:n_test], y[:n_test], X[n_test:], y[n_test:]

    model = nn.MLP([64, 128, 128, 10], rng=args.seed + 1)
    steps = args.epochs * -(-len(Xtr) // args.batch_size)
    lr = schedules.warmup_cosine(0.1, steps // 10, steps)
    opt = optim.SGD(model.parameters(), lr, momentum=0.9, clip_norm=1.0)
    if rank == 0:
        print(f"{size} rank(s), {source}: {len(Xtr)} training rows, global batch "
              f"{args.batch_size} (about {args.batch_size // size} rows per rank)")
    t0 = time.perf_counter()
    hist = fit(model, Xtr, ytr, optimizer=opt, epochs=args.epochs, batch_size=args.batch_size,
               validation=(Xte, yte), monitor="skip", seed=args.seed, comm=comm,
               progress=rank == 0)
    elapsed = time.perf_counter() - t0

    # Every rank must hold the same parameters: compare them with rank 0's.
    same = 1
    if comm is not None:
        mine = np.concatenate([p.data.ravel() for p in model.parameters()])
        root = comm.bcast(mine if rank == 0 else None, root=0)
        same = comm.allreduce(int(np.array_equal(mine, root)), op=MPI.MIN)
    acc = float(hist.to_dict()["val_accuracy"][-1])
    if rank == 0:
        print(f"final training loss {hist.loss[-1]:.4f}, test accuracy {acc:.3f}, "
              f"{elapsed:.2f} s; replicas identical on all {size} rank(s): {bool(same)}")
    if not same:
        raise SystemExit("the ranks' parameters differ")
    return acc


if __name__ == "__main__":
    main()
