"""Sharded gradient clipping and data-parallel training over MPI (mpi4py).

fastclip runs on several processes through `mpi4py <https://mpi4py.readthedocs.io>`_,
the standard MPI binding for NumPy codes (``pip install "numpy-fastclip[mpi]"`` brings
mpi4py and the MPICH wheel; launch with ``mpiexec -n 2 python script.py``).
mpi4py is imported lazily: fastclip works without it, and ``comm=None`` (the
default everywhere) never touches MPI.

Two ways to use several ranks:

* **Sharded gradients** (each rank holds different arrays, as with PyTorch's
  FSDP): pass ``comm=`` to :func:`fastclip.get_total_norm`,
  :func:`fastclip.clip_grad_norm_` or :func:`fastclip.clip_by_global_norm`. The
  total norm is the norm of the concatenation of every rank's list, i.e. the
  all-reduced sum of the local p-th powers (the maximum for ``inf``). The
  per-array norms are all-gathered and combined in rank order on every rank,
  with the overflow-safe kernel of the single-process functions, so every rank
  gets the same total norm, bit for bit, and the same clip coefficient, equal
  to the single-process result on the concatenated list. :func:`allreduce_norm`
  does the same from per-array norms (for clippers that compute their own).
* **Data-parallel training** (every rank holds a replica of the model and a
  shard of each batch): :class:`DataParallel` broadcasts the parameters from
  the root rank, then each step runs forward/backward on the local shard and
  averages the gradients with ONE ``Allreduce`` over a single preallocated
  contiguous buffer (:class:`GradientAllreducer`); clipping runs after the
  reduction, on the averaged gradients, so it is the clipping of the full batch.
  ``fastclip.train.fit(..., comm=comm)`` uses it and shards every batch.

Collective safety: every collective call of this module is entered by every
rank even when a rank's arguments are invalid; the error then travels with the
collective and every rank raises (the faulty rank its own exception, the others
the same exception type naming the faulty rank), instead of leaving the others
waiting forever. A non-finite gradient on any rank is counted by the same
all-reduce, so every rank takes the same decision (raise, skip or roll back).

Modules: ``comm`` (communicators, errors raised on every rank), ``norms``
(sharded norms and clipping), ``broadcast`` (same shapes everywhere, one
buffer, broadcasting the parameters), ``shards`` (rows and cores per rank),
``reduce`` (:class:`GradientAllreducer`) and ``data_parallel``
(:class:`DataParallel`, :func:`fit_setup`).
"""

from __future__ import annotations

# the private names are used by fastclip.clip, fastclip.adaptive and fastclip.train
from fastclip.distributed.broadcast import broadcast_parameters, check_same_shapes
from fastclip.distributed.comm import agree_or_raise as _agree_or_raise  # noqa: F401
from fastclip.distributed.comm import on_every_rank as _on_every_rank  # noqa: F401
from fastclip.distributed.comm import check_comm
from fastclip.distributed.comm import mpi as _mpi  # noqa: F401
from fastclip.distributed.comm import raise_everywhere as _raise_everywhere  # noqa: F401
from fastclip.distributed.data_parallel import DataParallel, StepResult, fit_setup
from fastclip.distributed.data_parallel import training_settings as _training_settings  # noqa: F401
from fastclip.distributed.norms import (  # noqa: F401  (the comm= paths of fastclip.clip)
    allgather_norms,
    allreduce_norm,
    clip_by_global_norm,
    clip_grad_norm_,
    get_total_norm,
)
from fastclip.distributed.norms import allgather_agreed as _allgather_agreed  # noqa: F401
from fastclip.distributed.norms import gather_failed as _gather_failed  # noqa: F401
from fastclip.distributed.reduce import GradientAllreducer, ReduceResult
from fastclip.distributed.shards import _block, limit_threads, shard_slice  # noqa: F401

__all__ = [
    "DataParallel",
    "GradientAllreducer",
    "ReduceResult",
    "StepResult",
    "allgather_norms",
    "allreduce_norm",
    "broadcast_parameters",
    "check_comm",
    "check_same_shapes",
    "fit_setup",
    "limit_threads",
    "shard_slice",
]
