"""Communicators: checking them, and raising on every rank when one rank fails.

Every collective of :mod:`fastclip.distributed` is entered by every rank even
when a rank's arguments are invalid; the error then travels with the
collective (:func:`agree_or_raise`, :func:`raise_everywhere`) and every rank
raises, instead of leaving the others waiting forever.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["agree_or_raise", "check_comm", "mpi", "raise_everywhere"]


_EXC_TYPES = {
    "TypeError": TypeError,
    "ValueError": ValueError,
    "FloatingPointError": FloatingPointError,
    "MemoryError": MemoryError,
}


def mpi() -> Any:
    """The already-imported ``mpi4py.MPI`` module (a communicator exists, so it is)."""
    return sys.modules["mpi4py.MPI"]


def check_comm(comm: Any, name: str = "comm") -> Any:
    """Validate an mpi4py intra-communicator; returns it.

    Does not import mpi4py: an object can only be an mpi4py communicator if
    ``mpi4py.MPI`` has already been imported.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
        For example ``mpi4py.MPI.COMM_WORLD``.
    name : str, default "comm"
        The argument name used in error messages.

    Raises
    ------
    TypeError
        ``comm`` is not an mpi4py intra-communicator.
    ValueError
        ``comm`` is ``MPI.COMM_NULL``.
    """
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not isinstance(comm, mpi.Comm):
        raise TypeError(
            f"{name} must be an mpi4py communicator such as mpi4py.MPI.COMM_WORLD, "
            f"got {type(comm).__name__}"
        )
    if comm == mpi.COMM_NULL:
        raise ValueError(f"{name} is MPI.COMM_NULL, not a usable communicator")
    if not isinstance(comm, mpi.Intracomm):
        raise TypeError(
            f"{name} must be an mpi4py intra-communicator (mpi4py.MPI.Intracomm), "
            f"got {type(comm).__name__}"
        )
    return comm


def raise_everywhere(comm: Any, exc: BaseException | None) -> None:
    """Collective, called by every rank once some rank reported an error.

    The rank(s) with an error re-raise their own exception; the others raise the
    same exception type (or RuntimeError) naming the first faulty rank.
    """
    info = None if exc is None else (type(exc).__name__, str(exc))
    infos = comm.allgather(info)
    if exc is not None:
        raise exc
    for r, item in enumerate(infos):
        if item is not None:
            kind, msg = item
            cls = _EXC_TYPES.get(kind, RuntimeError)
            raise cls(f"rank {r} of {comm.Get_size()} failed ({kind}): {msg}")
    raise RuntimeError("a rank reported an error but no error message was received")


def agree_or_raise(comm: Any, exc: BaseException | None) -> None:
    """Collective: raise on every rank if any rank has ``exc`` (one small Allreduce)."""
    m = mpi()
    flag = np.array([0 if exc is None else 1], dtype=np.int64)
    comm.Allreduce(m.IN_PLACE, flag, op=m.SUM)
    if flag[0]:
        raise_everywhere(comm, exc)


def on_every_rank(comm: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Collective: ``fn(*args, **kwargs)`` on this rank, then one small all-reduce
    (:func:`agree_or_raise`): when it raised on any rank, every rank raises (a rank
    its own exception, ``KeyboardInterrupt`` and ``SystemExit`` included), so no rank
    goes on alone to a collective that the others never reach."""
    err: BaseException | None = None
    out = None
    try:
        out = fn(*args, **kwargs)
    except BaseException as e:
        err = e
    agree_or_raise(comm, err)
    return out
