"""Sharing work between ranks: the rows of a batch and the cores of a node."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastclip.distributed.comm import check_comm, mpi

__all__ = ["limit_threads", "shard_slice"]


def limit_threads(comm: Any) -> Any:
    """Share the node's cores between the ranks running on it (OpenMP and BLAS threads).

    Several ranks per node, each with as many OpenMP/BLAS threads as cores,
    oversubscribe the CPU and make every parallel kernel wait for descheduled
    threads (``torchrun`` sets ``OMP_NUM_THREADS=1`` for the same reason). This
    counts the ranks sharing this node (``MPI.COMM_TYPE_SHARED``) and limits
    the thread pools of this process to ``max(1, cores // ranks_on_node)``
    through threadpoolctl. Collective. Setting ``OMP_NUM_THREADS`` before the
    launch (``mpiexec -n 2 env OMP_NUM_THREADS=1 python ...``) does the same.

    Returns
    -------
    threadpoolctl.threadpool_limits
        Active at once; use it as a context manager, or call ``.restore_original_limits()``.
    """
    import os

    from threadpoolctl import threadpool_limits

    check_comm(comm)
    node = comm.Split_type(mpi().COMM_TYPE_SHARED)
    try:
        local = node.Get_size()
    finally:
        node.Free()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return threadpool_limits(limits=max(1, (cores or 1) // local))


def shard_slice(n: int, comm: Any = None, rank: int | None = None) -> slice:
    """The contiguous block of ``range(n)`` that a rank handles.

    Rank ``r`` of ``size`` gets ``[r * n // size, (r + 1) * n // size)``: the
    blocks cover ``range(n)`` in rank order, their sizes differ by at most one.

    Parameters
    ----------
    n : int
        Number of items (rows of a batch), ``>= 0``.
    comm : mpi4py.MPI.Intracomm or None
        ``None``: one rank (the whole range).
    rank : int, optional
        Another rank than the caller's.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if comm is None:
        size, r = 1, 0
    else:
        check_comm(comm)
        size, r = comm.Get_size(), comm.Get_rank()
    if rank is not None:
        r = int(rank)
        if not 0 <= r < size:
            raise ValueError(f"rank must be in [0, {size}), got {rank}")
    return _block(int(n), size, r)


def _block(n: int, size: int, rank: int) -> slice:
    return slice(rank * n // size, (rank + 1) * n // size)

