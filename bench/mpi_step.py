"""One data-parallel training step of the MLP benchmark over MPI (run under mpiexec).

    mpiexec -n 2 python bench/mpi_step.py [--steps 200] [--batch 256]

The MLP benchmark's step (bench/bench_mlp.py: 784-512-512-10 ReLU MLP, float32,
softmax cross-entropy, SGD lr 0.01 with global-norm clipping at 1.0), on a
global batch of ``--batch`` rows split across the ranks. With one rank it is the
plain single-process step (no MPI call); with several, each rank runs forward
and backward on its shard, the gradients are averaged with one Allreduce
(``fastclip.distributed.GradientAllreducer``: pack, Allreduce, unpack) and the
optimiser clips and updates. The ranks on a node share its cores
(``fastclip.distributed.limit_threads``: 1 rank gets every core's thread, 2 ranks
on 2 cores one thread each).

Prints one JSON line (rank 0): per-step wall time (the timed loop divided by the
number of steps), and per phase (rank average): compute (forward + loss +
backward), all-reduce (pack + Allreduce + unpack), update (clip + SGD), plus a
bare ``Allreduce`` of the same buffer timed on its own.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from mpi4py import MPI

from _common import fastclip_mlp, mlp_batch

from fastclip import nn
from fastclip.distributed import GradientAllreducer, limit_threads, shard_slice
from fastclip.optim import SGD


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0,
                    help="threads per rank (default: the node's cores shared by its ranks)")
    args = ap.parse_args()

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if args.threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads)
    else:
        limit_threads(comm)
    x, y = mlp_batch(args.batch, 0)
    sl = shard_slice(args.batch, comm)
    xs, ys = np.ascontiguousarray(x[sl]), y[sl]
    model = fastclip_mlp(0)
    opt = SGD(model.parameters(), lr=0.01, clip_norm=1.0)
    grads = model.gradients()
    reducer = GradientAllreducer(grads, comm) if size > 1 else None

    t_comp = t_red = t_upd = 0.0
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            t_comp = t_red = t_upd = 0.0
            comm.Barrier()
            start = time.perf_counter()
        t0 = time.perf_counter()
        loss, d = nn.softmax_cross_entropy(model.forward(xs), ys)
        model.backward(d, input_grad=False)
        t1 = time.perf_counter()
        if reducer is not None:
            reducer.reduce_(weight=len(xs), value=loss, sqnorms=model.grad_sqnorms())
            sq = None
        else:
            sq = model.grad_sqnorms()
        t2 = time.perf_counter()
        opt.step(grads, sqnorms=sq)
        t3 = time.perf_counter()
        t_comp += t1 - t0
        t_red += t2 - t1
        t_upd += t3 - t2
    comm.Barrier()
    wall = time.perf_counter() - start

    # The bare collective on the same buffer, for comparison with pack + Allreduce + unpack.
    bare = 0.0
    if reducer is not None:
        buf = reducer.buffer.copy()
        for i in range(args.warmup + args.steps):
            if i == args.warmup:
                comm.Barrier()
                t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        bare = (time.perf_counter() - t0) / args.steps
    phases = comm.gather((t_comp, t_red, t_upd, bare), root=0)
    if rank == 0:
        n = args.steps
        comp, red, upd, bare_ = (float(np.mean([p[k] for p in phases])) for k in range(4))
        step_ms = 1e3 * wall / n
        print(json.dumps({
            "ranks": size,
            "batch": args.batch,
            "rows_per_rank": len(xs),
            "threads_per_rank": threads_per_rank(),
            "params": int(sum(g.size for g in grads)),
            "step_ms": step_ms,
            "compute_ms": 1e3 * comp / n,
            "allreduce_ms": 1e3 * red / n,
            "update_ms": 1e3 * upd / n,
            "bare_allreduce_ms": 1e3 * bare_,
            "allreduce_share": (1e3 * red / n) / step_ms,
        }), flush=True)


def threads_per_rank() -> int:
    from threadpoolctl import threadpool_info

    nums = [d["num_threads"] for d in threadpool_info()]
    return int(max(nums)) if nums else 1


if __name__ == "__main__":
    main()
