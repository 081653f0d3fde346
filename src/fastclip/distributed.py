"""Sharded gradient clipping and data-parallel training over MPI (mpi4py).

fastclip runs on several processes through `mpi4py <https://mpi4py.readthedocs.io>`_,
the standard MPI binding for NumPy codes (``pip install "fastclip[mpi]"`` brings
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
"""

from __future__ import annotations

import hashlib
import inspect
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from fastclip import _interop as _io
from fastclip import _validation as _v
from fastclip._dispatch import family

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

_clip = family("clip")
_dist = family("distributed")

_POLICIES = ("raise", "skip", "rollback")
_EXC_TYPES = {
    "TypeError": TypeError,
    "ValueError": ValueError,
    "FloatingPointError": FloatingPointError,
    "MemoryError": MemoryError,
}


# ---------------------------------------------------------------------------
# Communicators
# ---------------------------------------------------------------------------


def _mpi() -> Any:
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


def _raise_everywhere(comm: Any, exc: BaseException | None) -> None:
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


def _agree_or_raise(comm: Any, exc: BaseException | None) -> None:
    """Collective: raise on every rank if any rank has ``exc`` (one small Allreduce)."""
    mpi = _mpi()
    flag = np.array([0 if exc is None else 1], dtype=np.int64)
    comm.Allreduce(mpi.IN_PLACE, flag, op=mpi.SUM)
    if flag[0]:
        _raise_everywhere(comm, exc)


# ---------------------------------------------------------------------------
# Sharded norms
# ---------------------------------------------------------------------------


def _as_norms(local_norms: Any) -> np.ndarray:
    try:
        a = np.asarray(local_norms, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            "local_norms must be a 1-D array of per-array norms (float), got "
            f"{type(local_norms).__name__}"
        ) from None
    if a.ndim > 1:
        raise ValueError(f"local_norms must be 1-D, got shape {a.shape}")
    a = np.ascontiguousarray(a.reshape(-1))
    if (a < 0).any():
        raise ValueError("local_norms must be >= 0 (norms), NaN and inf allowed")
    return a


def _gather_norms(
    comm: Any,
    norms: np.ndarray,
    p: float,
    exc: BaseException | None,
    extra: float = math.nan,
    flag: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Collective: every rank's per-array norms, concatenated in rank order.

    A header (count, p, extra, flag) is all-gathered first: a count of -1
    carries an error; ``p``, ``extra`` (max_norm / clip_norm) and ``flag``
    (error_if_nonfinite) must agree across ranks, or every rank raises.
    """
    mpi = _mpi()
    size = comm.Get_size()
    hdr = np.array(
        [-1.0 if exc is not None else float(norms.size), p, extra, flag], dtype=np.float64
    )
    allh = np.empty((size, 4), dtype=np.float64)
    comm.Allgather(hdr, allh)
    if (allh[:, 0] < 0).any():
        _raise_everywhere(comm, exc)
    for col, what in ((1, "norm_type"), (2, "max_norm/clip_norm"), (3, "error_if_nonfinite")):
        values = allh[:, col]
        same = np.isnan(values).all() or (values == values[0]).all()
        if not same:
            raise ValueError(
                f"{what} must be the same on every rank for a sharded norm, got "
                f"{[float(x) for x in values]} on ranks 0..{size - 1}"
            )
    counts = allh[:, 0].astype(np.int64)
    displs = np.zeros(size, dtype=np.int64)
    np.cumsum(counts[:-1], out=displs[1:])
    out = np.empty(int(counts.sum()), dtype=np.float64)
    comm.Allgatherv(norms, [out, (counts, displs), mpi.DOUBLE])
    return out, counts


def _nonfinite_msg(
    name: str, norms: np.ndarray, counts: np.ndarray, total: float, p: float
) -> str:
    bad = np.flatnonzero(~np.isfinite(norms))
    if bad.size:
        i = int(bad[0])
        ends = np.cumsum(counts)
        r = int(np.searchsorted(ends, i, side="right"))
        local = i - (int(ends[r - 1]) if r else 0)
        where = f"{name}[{local}] on rank {r} holds a non-finite value"
    else:
        where = "the total norm overflowed"
    return (
        f"the total norm of order {p!r} of {name} across {counts.size} ranks is {total!r}: "
        f"{where}; nothing was modified (pass error_if_nonfinite=False to clip anyway, as "
        "PyTorch does)"
    )


def allreduce_norm(local_norms: Any, norm_type: Any = 2.0, comm: Any = None) -> float:
    """The total norm across ranks, from each rank's per-array norms.

    Every rank passes the norms of its own arrays (e.g. from
    :func:`fastclip.array_norms` or ``model.grad_sqnorms() ** 0.5``); the result
    is the ``norm_type``-norm of all of them, as PyTorch's FSDP computes a
    sharded total norm (all-reduced sum of the local p-th powers, the maximum
    for ``inf``). It is computed from the all-gathered norms in rank order with
    the overflow-safe kernel of :func:`fastclip.get_total_norm`, so every rank
    gets the same value bit for bit, equal to the single-process total norm of
    the concatenation. Collective: every rank of ``comm`` must call it.

    Parameters
    ----------
    local_norms : array_like of float, 1-D
        This rank's per-array norms (may be empty).
    norm_type : float, default 2.0
        Any ``p > 0`` or ``inf``; the same on every rank.
    comm : mpi4py.MPI.Intracomm or None
        ``None``: the single-process total of ``local_norms``.

    Returns
    -------
    float
        The total norm (NaN if any rank has a NaN norm).

    Raises
    ------
    TypeError, ValueError
        Bad ``local_norms``, ``norm_type`` or ``comm``; when one rank's
        arguments are bad every rank raises (no deadlock).
    """
    if comm is None:
        p = _v.check_norm_type(norm_type)
        return float(_dist.impl.total_norm(_as_norms(local_norms), p))
    check_comm(comm)
    exc: BaseException | None = None
    p, norms = math.nan, np.empty(0)
    try:
        p = _v.check_norm_type(norm_type)
        norms = _as_norms(local_norms)
    except Exception as e:  # reported to every rank by the collective
        exc = e
    allnorms, _ = _gather_norms(comm, norms, p, exc)
    return float(_dist.impl.total_norm(allnorms, p))


def allgather_norms(local_norms: Any, comm: Any) -> np.ndarray:
    """Every rank's per-array norms (or sums of squares), concatenated in rank order.

    Collective. For clippers that combine per-array values their own way (the
    adaptive clippers of :mod:`fastclip.adaptive`): combining the result with a
    deterministic function gives the same value on every rank, equal to the
    single-process value on the concatenated list of arrays.

    Parameters
    ----------
    local_norms : array_like of float, 1-D
        This rank's values, ``>= 0`` (NaN and inf allowed); may be empty.
    comm : mpi4py.MPI.Intracomm

    Returns
    -------
    ndarray of float64
        Identical on every rank.
    """
    check_comm(comm)
    exc: BaseException | None = None
    norms = np.empty(0)
    try:
        norms = _as_norms(local_norms)
    except Exception as e:
        exc = e
    return _gather_norms(comm, norms, math.nan, exc)[0]


def _gather_failed(comm: Any, exc: BaseException) -> None:
    """Take part in the collective of :func:`allgather_norms` with a local error.

    For a caller whose own part failed while the other ranks call
    :func:`allgather_norms`: raises ``exc`` here and an exception naming this
    rank on every other rank, so that none of them waits forever.
    """
    _gather_norms(comm, np.empty(0), math.nan, exc)
    raise exc


def _sequence(obj: Any, name: str) -> tuple[Any, bool]:
    """One ndarray (kept, for messages) or the items of an iterable (consumed once)."""
    items, single = _v.as_sequence(obj, name)
    return (obj if single else items), single


def get_total_norm(grads: Any, norm_type: Any, error_if_nonfinite: bool, comm: Any) -> float:
    """``fastclip.get_total_norm(..., comm=comm)``: see its docstring."""
    check_comm(comm)
    exc: BaseException | None = None
    p, norms = math.nan, np.empty(0)
    try:
        p = _v.check_norm_type(norm_type)
        arg, _ = _sequence(grads, "grads")
        norms = np.ascontiguousarray(_clip.impl.array_norms(arg, p), dtype=np.float64)
    except Exception as e:
        exc = e
    check = bool(error_if_nonfinite)
    allnorms, counts = _gather_norms(comm, norms, p, exc, flag=float(check))
    total = float(_dist.impl.total_norm(allnorms, p))
    if check and not math.isfinite(total):
        raise FloatingPointError(_nonfinite_msg("grads", allnorms, counts, total, p))
    return total


def clip_grad_norm_(
    grads: Any, max_norm: Any, norm_type: Any, error_if_nonfinite: bool, comm: Any
) -> float:
    """``fastclip.clip_grad_norm_(..., comm=comm)``: see its docstring."""
    check_comm(comm)
    exc: BaseException | None = None
    arrays: list[np.ndarray] = []
    p, mx, norms = math.nan, math.nan, np.empty(0)
    try:
        mx = _v.check_nonnegative(max_norm, "max_norm")
        p = _v.check_norm_type(norm_type)
        arg, _ = _sequence(grads, "grads")
        arrays, _ = _v.check_arrays(arg, "grads", inplace=True)
        norms = np.ascontiguousarray(_clip.impl.array_norms(arrays, p), dtype=np.float64)
    except Exception as e:
        exc = e
    check = bool(error_if_nonfinite)
    allnorms, counts = _gather_norms(comm, norms, p, exc, extra=mx, flag=float(check))
    total = float(_dist.impl.total_norm(allnorms, p))
    if check and not math.isfinite(total):
        raise FloatingPointError(_nonfinite_msg("grads", allnorms, counts, total, p))
    _clip.impl.clip_grads_with_norm_(arrays, mx, total)
    return total


def clip_by_global_norm(
    xs: Any, clip_norm: Any, use_norm: Any, comm: Any
) -> tuple[list[np.ndarray], float]:
    """``fastclip.clip_by_global_norm(..., comm=comm)``: see its docstring."""
    check_comm(comm)
    if use_norm is not None:  # the global norm is given: nothing to communicate
        return _clip.impl.clip_by_global_norm(xs, clip_norm, use_norm)
    exc: BaseException | None = None
    arrays: list[np.ndarray] = []
    c, norms = math.nan, np.empty(0)
    try:
        c = _v.check_positive(clip_norm, "clip_norm")
        arg, _ = _sequence(xs, "xs")
        arrays, _ = _v.check_arrays(arg, "xs", inplace=False)
        norms = np.ascontiguousarray(_clip.impl.array_norms(arrays, 2.0), dtype=np.float64)
    except Exception as e:
        exc = e
    allnorms, _ = _gather_norms(comm, norms, 2.0, exc, extra=c)
    g = float(_dist.impl.total_norm(allnorms, 2.0))
    return _clip.impl.clip_by_global_norm(arrays, c, g)


# ---------------------------------------------------------------------------
# Shapes, broadcast, sharding
# ---------------------------------------------------------------------------


def _signature(arrays: Sequence[np.ndarray]) -> tuple[tuple[tuple[int, ...], str], ...]:
    return tuple((tuple(int(n) for n in a.shape), a.dtype.name) for a in arrays)


def _describe_diff(name: str, sig: Any, ref: Any, where: str, ref_where: str) -> str:
    if len(sig) != len(ref):
        return f"{len(sig)} arrays {where} but {len(ref)} {ref_where}"
    for i, (a, b) in enumerate(zip(sig, ref)):
        if a != b:
            return f"{name}[{i}] has shape {a[0]} {a[1]} {where} but {b[0]} {b[1]} {ref_where}"
    return "no difference"


def _signature_mismatch(name: str, sigs: list[Any]) -> str | None:
    for r, sig in enumerate(sigs[1:], start=1):
        if sig != sigs[0]:
            diff = _describe_diff(name, sig, sigs[0], f"on rank {r}", "on rank 0")
            return f"{name} differ across ranks: {diff}"
    return None


def check_same_shapes(arrays: Any, comm: Any, name: str = "grads") -> None:
    """Check that every rank holds the same list of shapes and dtypes.

    Collective (one small ``allgather``). Data-parallel training needs the
    gradient lists of all ranks to match exactly; this raises on every rank
    otherwise, naming the first rank and array that differ.

    Parameters
    ----------
    arrays : ndarray or iterable of ndarray
    comm : mpi4py.MPI.Intracomm
    name : str, default "grads"
        Used in messages.

    Raises
    ------
    ValueError
        The lists differ in length, shapes or dtypes (on every rank).
    TypeError
        ``arrays`` holds something that is not a float32/float64 ndarray on
        some rank, or ``comm`` is not a communicator.
    """
    check_comm(comm)
    exc: BaseException | None = None
    sig: Any = None
    try:
        arg, _ = _sequence(arrays, name)
        checked, _ = _v.check_arrays(arg, name, inplace=False)
        sig = _signature(checked)
    except Exception as e:
        exc = e
    sigs = comm.allgather(("error", type(exc).__name__, str(exc)) if exc is not None else sig)
    bad = [r for r, s in enumerate(sigs) if isinstance(s, tuple) and s[:1] == ("error",)]
    if bad:
        if exc is not None:
            raise exc
        _, kind, msg = sigs[bad[0]]
        cls = _EXC_TYPES.get(kind, RuntimeError)
        raise cls(f"rank {bad[0]} of {comm.Get_size()} failed ({kind}): {msg}")
    msg = _signature_mismatch(name, sigs)
    if msg is not None:
        raise ValueError(msg)


class _Packer:
    """One contiguous buffer holding a fixed list of arrays, plus ``slots`` scalars."""

    def __init__(self, sig: Sequence[tuple[tuple[int, ...], str]], slots: int) -> None:
        dtypes = [np.dtype(d) for _, d in sig]
        self.dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)
        sizes = [math.prod(shape) for shape, _ in sig]
        self.n = int(sum(sizes))
        self.buf = np.zeros(self.n + slots, dtype=self.dtype)
        self.data = self.buf[: self.n]
        self.slots = self.buf[self.n :]
        self.views: list[np.ndarray] = []
        off = 0
        for (shape, _), size in zip(sig, sizes):
            self.views.append(self.buf[off : off + size].reshape(shape))
            off += size

    def pack(self, arrays: Sequence[np.ndarray], scale: float = 1.0) -> None:
        for a, v in zip(arrays, self.views):
            if scale == 1.0:
                np.copyto(v, a, casting="same_kind")
            else:
                np.multiply(a, scale, out=v, casting="same_kind")

    def unpack(self, arrays: Sequence[np.ndarray], scale: float = 1.0) -> None:
        for a, v in zip(arrays, self.views):
            if scale == 1.0:
                np.copyto(a, v, casting="same_kind")
            else:
                np.multiply(v, scale, out=a, casting="same_kind")


def broadcast_parameters(params: Any, comm: Any, root: int = 0) -> None:
    """Overwrite every rank's parameters with the root's, in one ``Bcast``.

    Collective. The lists are first checked to match across ranks
    (:func:`check_same_shapes`); the arrays are packed into one contiguous
    buffer, broadcast once and unpacked in place.

    Parameters
    ----------
    params : ndarray or iterable of ndarray
        Writeable float32/float64 arrays, the same shapes on every rank.
    comm : mpi4py.MPI.Intracomm
    root : int, default 0
        The rank whose values are kept.
    """
    check_comm(comm)
    size = comm.Get_size()
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)):
        raise TypeError(f"root must be an int, got {type(root).__name__}")
    if not 0 <= int(root) < size:
        raise ValueError(f"root must be a rank in [0, {size}), got {root}")
    exc: BaseException | None = None
    arrays: list[np.ndarray] = []
    try:
        arg, _ = _sequence(params, "params")
        arrays, _ = _v.check_arrays(arg, "params", inplace=True)
    except Exception as e:
        exc = e
    _agree_or_raise(comm, exc)
    check_same_shapes(arrays, comm, "params")
    packer = _Packer(_signature(arrays), 0)
    if comm.Get_rank() == root:
        packer.pack(arrays)
    comm.Bcast(packer.buf, root=int(root))
    if comm.Get_rank() != root:
        packer.unpack(arrays)


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
    node = comm.Split_type(_mpi().COMM_TYPE_SHARED)
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


# ---------------------------------------------------------------------------
# Gradient all-reduce
# ---------------------------------------------------------------------------


class ReduceResult(NamedTuple):
    """What :meth:`GradientAllreducer.reduce_` found after the all-reduce."""

    weight: float
    """The sum of the ranks' weights (e.g. the global batch size)."""
    nonfinite_ranks: int
    """How many ranks had a non-finite local gradient (the same on every rank)."""
    value: float
    """The weighted mean of the ranks' ``value`` (e.g. the global mean loss)."""
    local_nonfinite: bool
    """Whether this rank's own gradient was non-finite."""


_W, _BAD, _ERR, _VAL = range(4)


class GradientAllreducer:
    """Average a fixed list of gradient arrays over all ranks with ONE ``Allreduce``.

    At construction the list is checked to have the same shapes and dtypes on
    every rank (one ``allgather``) and a single contiguous buffer is allocated
    (the common dtype of the gradients, plus 4 scalar slots). Each
    :meth:`reduce_` packs the local gradients (times the local weight) into the
    buffer, appends the weight, a non-finite flag, an error flag and a weighted
    value (the loss), makes one in-place ``Allreduce(SUM)`` and unpacks the
    weighted average into the gradient arrays. The scalar slots are small
    integers (exact in floating point), so every rank sees the same counts and
    takes the same decision.

    Parameters
    ----------
    grads : ndarray or iterable of ndarray
        The gradient arrays (writeable float32/float64) reduced by default.
    comm : mpi4py.MPI.Intracomm
    name : str, default "grads"
        Used in messages.
    """

    def __init__(self, grads: Any, comm: Any, *, name: str = "grads") -> None:
        self.comm = check_comm(comm)
        self.name = name
        exc: BaseException | None = None
        arrays: list[np.ndarray] = []
        try:
            arg, _ = _sequence(grads, name)
            arrays, _ = _v.check_arrays(arg, name, inplace=True)
        except Exception as e:
            exc = e
        _agree_or_raise(comm, exc)
        check_same_shapes(arrays, comm, name)
        self.arrays = arrays
        self._sig = _signature(arrays)
        self._packer = _Packer(self._sig, 4)

    @property
    def buffer(self) -> np.ndarray:
        """The contiguous communication buffer (gradients then 4 scalar slots)."""
        return self._packer.buf

    def _check_local(self, grads: Any) -> list[np.ndarray]:
        arg, _ = _sequence(grads, self.name)
        arrays, _ = _v.check_arrays(arg, self.name, inplace=True)
        sig = _signature(arrays)
        if sig != self._sig:
            diff = _describe_diff(self.name, sig, self._sig, "now", "at construction")
            raise ValueError(
                f"{self.name} on rank {self.comm.Get_rank()} do not match the list given at "
                f"construction: {diff}"
            )
        return arrays

    def _local_nonfinite(self, sqnorms: Any) -> bool:
        if sqnorms is not None:
            s = float(np.sum(np.asarray(sqnorms, dtype=np.float64)))
            if math.isfinite(s):
                return False
        d = self._packer.data
        s = float(np.dot(d, d))
        if math.isfinite(s):
            return False
        return not bool(np.isfinite(d).all())  # an overflowing square is not non-finite

    def reduce_(
        self,
        grads: Any = None,
        *,
        weight: float = 1.0,
        value: float = 0.0,
        sqnorms: Any = None,
    ) -> ReduceResult:
        """Replace the gradients by their weighted average over all ranks, in place.

        Collective: every rank calls it once per step. The result is
        ``sum_r weight_r * grads_r / sum_r weight_r``; with ``weight`` the local
        batch size and per-rank mean-loss gradients, that is the gradient of
        the mean loss over the global batch.

        Parameters
        ----------
        grads : ndarray or iterable of ndarray, optional
            The arrays to reduce (default: those given at construction); same
            shapes and dtypes as at construction.
        weight : float, default 1.0
            This rank's weight, ``>= 0`` (0: contributes nothing, e.g. an empty
            shard). When every weight is 0 the gradients become 0.
        value : float, default 0.0
            A scalar averaged with the same weights (e.g. the local mean loss);
            NaN and inf propagate.
        sqnorms : array_like, optional
            The local per-array sums of squares (``model.grad_sqnorms()``):
            detects a non-finite local gradient without a pass over the data.

        Returns
        -------
        ReduceResult
            The total weight, the number of ranks whose gradient was not
            finite, the averaged value and this rank's own flag. The gradients
            are averaged whatever the flags say (a non-finite gradient on one
            rank makes the average non-finite on every rank).

        Raises
        ------
        TypeError, ValueError
            Bad arguments on any rank (every rank raises, no deadlock).
        """
        mpi = _mpi()
        p = self._packer
        exc: BaseException | None = None
        bad = False
        w = 0.0
        arrays = self.arrays
        try:
            if grads is not None:
                arrays = self._check_local(grads)
            w = _v.check_nonnegative(weight, "weight")
            if math.isinf(w):
                raise ValueError("weight must be finite")
            v = _v._real(value, "value")  # NaN/inf allowed: a diverged loss is data
            if w > 0:
                p.pack(arrays, w)
                bad = self._local_nonfinite(sqnorms)
            else:  # an empty shard contributes nothing (not even a NaN mean loss)
                p.data.fill(0)
                v = 0.0
            p.slots[_W] = w
            p.slots[_BAD] = 1.0 if bad else 0.0
            p.slots[_ERR] = 0.0
            p.slots[_VAL] = v * w
        except Exception as e:
            exc = e
            p.buf.fill(0)
            p.slots[_ERR] = 1.0
        self.comm.Allreduce(mpi.IN_PLACE, p.buf, op=mpi.SUM)
        if p.slots[_ERR] != 0:
            _raise_everywhere(self.comm, exc)
        total_w = float(p.slots[_W])
        nbad = round(float(p.slots[_BAD]))
        if total_w > 0:
            p.unpack(arrays, 1.0 / total_w)
            val = float(p.slots[_VAL]) / total_w
        else:
            for a in arrays:
                a.fill(0)
            val = math.nan
        return ReduceResult(total_w, nbad, val, bad)

    def nonfinite_ranks(self, local_bad: bool) -> list[int]:
        """Collective: the ranks whose flag is set (for messages, after a bad step)."""
        flags = self.comm.allgather(bool(local_bad))
        return [r for r, f in enumerate(flags) if f]


# ---------------------------------------------------------------------------
# Data-parallel training
# ---------------------------------------------------------------------------


def fit_setup(
    model: Any, X: np.ndarray, y: np.ndarray, rng: np.random.Generator, comm: Any
) -> tuple[GradientAllreducer, np.random.Generator]:
    """What ``fastclip.train.fit(..., comm=comm)`` does before training.

    Collective. Checks that every rank holds data of the same shapes (each rank
    holds the whole training set and processes its shard of every batch), makes
    every rank shuffle with the root's generator (a copy of its state, so that
    ``seed=None`` works and ``seed=k`` shuffles as one process would),
    broadcasts the root's parameters and builds the gradient all-reducer.

    Returns
    -------
    (GradientAllreducer, numpy.random.Generator)
    """
    check_comm(comm)
    shapes = comm.allgather((tuple(np.shape(X)), tuple(np.shape(y))))
    for r, sh in enumerate(shapes):
        if sh != shapes[0]:
            raise ValueError(
                f"every rank must hold the same training data: X, y have shapes {sh} on "
                f"rank {r} but {shapes[0]} on rank 0"
            )
    state = comm.bcast(rng.bit_generator.state, root=0)
    if comm.Get_rank() != 0:
        rng = np.random.Generator(type(rng.bit_generator)())
        rng.bit_generator.state = state
    broadcast_parameters(_io.values(model.parameters()), comm)
    return GradientAllreducer(list(model.gradients()), comm), rng


class StepResult(NamedTuple):
    """What :meth:`DataParallel.step` did."""

    loss: float
    """The mean loss over the global batch (before the update)."""
    norm: float
    """The pre-clip global norm of the averaged gradient (NaN if non-finite)."""
    applied: bool
    """Whether the update was applied (False: skipped or rolled back)."""


def _state_copy(obj: Any, arrays: Sequence[np.ndarray]) -> Any:
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    return [np.array(a, copy=True) for a in arrays]


def _state_load(obj: Any, state: Any, arrays: Sequence[np.ndarray]) -> None:
    if hasattr(obj, "load_state_dict"):
        obj.load_state_dict(state)
    else:
        for a, s in zip(arrays, state):
            np.copyto(a, s)


class DataParallel:
    """Data-parallel training of a model replica per rank, over MPI.

    At construction the model's parameters are broadcast from ``root`` (one
    ``Bcast``) and its gradient list is checked to match on every rank. Each
    :meth:`step` runs forward and backward on this rank's shard of the batch,
    averages the gradients over the global batch with one ``Allreduce`` on a
    single contiguous buffer (:class:`GradientAllreducer`), then applies the
    optimiser (whose ``clip_norm``/``clip_value`` clipping therefore acts on
    the averaged, full-batch gradient, as in PyTorch's DDP). Every rank ends
    the step with the same parameters.

    A non-finite local gradient on any rank is counted in the same
    all-reduce, so every rank takes the same decision, chosen by
    ``on_nonfinite``: ``"raise"`` (FloatingPointError on every rank, nothing
    updated), ``"skip"`` (no update anywhere) or ``"rollback"`` (every rank
    restores the last snapshot of parameters and optimiser state and halves
    ``optimizer.lr_scale``).

    Parameters
    ----------
    model : object
        ``forward(x)``, ``backward(dy)``, ``parameters()``, ``gradients()``
        (same array objects every step) and optionally ``grad_sqnorms()``,
        ``state_dict()``/``load_state_dict()``: :class:`fastclip.nn.MLP` and
        :class:`fastclip.nn.Linear` qualify.
    optimizer : object
        ``step(grads, *, on_nonfinite=...) -> norm`` (any of
        :mod:`fastclip.optim`).
    comm : mpi4py.MPI.Intracomm
    root : int, default 0
        The rank whose initial parameters every rank starts from.
    on_nonfinite : {"raise", "skip", "rollback"}, default "raise"
    snapshot_every : int, default 1
        With ``"rollback"``: applied steps between snapshots.
    clipper : callable, optional
        ``clipper(grads) -> norm`` run on the averaged gradients before the
        optimiser (e.g. ``lambda g: fastclip.clip_grad_norm_(g, 1.0)`` or an
        adaptive clipper); the same on every rank since the gradients are.

    Examples
    --------
    Run with ``mpiexec -n 2 python script.py``::

        from mpi4py import MPI
        import fastclip.nn as nn, fastclip.optim as optim
        from fastclip.distributed import DataParallel, shard_slice
        comm = MPI.COMM_WORLD
        model = nn.MLP([784, 512, 512, 10], rng=0)
        dp = DataParallel(model, optim.SGD(model.parameters(), 0.1, clip_norm=1.0), comm)
        s = shard_slice(len(xb), comm)          # this rank's rows of the batch
        dp.step(xb[s], yb[s], nn.softmax_cross_entropy)
    """

    def __init__(
        self,
        model: Any,
        optimizer: Any,
        comm: Any,
        *,
        root: int = 0,
        on_nonfinite: str = "raise",
        snapshot_every: int = 1,
        clipper: Callable[[list[np.ndarray]], float] | None = None,
    ) -> None:
        self.comm = check_comm(comm)
        exc: BaseException | None = None
        params: list[np.ndarray] = []
        grads: list[np.ndarray] = []
        try:
            if on_nonfinite not in _POLICIES:
                raise ValueError(f"on_nonfinite must be one of {_POLICIES}, got {on_nonfinite!r}")
            if (
                isinstance(snapshot_every, bool)
                or not isinstance(snapshot_every, (int, np.integer))
                or snapshot_every < 1
            ):
                raise ValueError(f"snapshot_every must be an int >= 1, got {snapshot_every!r}")
            if clipper is not None and not callable(clipper):
                raise TypeError(f"clipper must be callable, got {type(clipper).__name__}")
            for attr in ("forward", "backward", "parameters", "gradients"):
                if not callable(getattr(model, attr, None)):
                    raise TypeError(f"model must have a {attr}() method")
            if not callable(getattr(optimizer, "step", None)):
                raise TypeError("optimizer must have a step(grads, ...) method")
            params = _io.values(model.parameters())
            grads = list(model.gradients())
            if _signature(params) != _signature(grads):
                raise ValueError(
                    "model.parameters() and model.gradients() differ in shapes or dtypes"
                )
        except Exception as e:
            exc = e
        _agree_or_raise(comm, exc)
        self.model = model
        self.optimizer = optimizer
        try:  # fastclip.nn models can skip the input gradient a training step never uses
            self._bw_kwargs = (
                {"input_grad": False}
                if "input_grad" in inspect.signature(model.backward).parameters
                else {}
            )
        except (TypeError, ValueError):
            self._bw_kwargs = {}
        self.on_nonfinite = on_nonfinite
        self.snapshot_every = int(snapshot_every)
        self.clipper = clipper
        self.params = params
        self.grads = grads
        self.reducer = GradientAllreducer(grads, comm)
        broadcast_parameters(params, comm, root)
        self.steps = 0
        self.skipped = 0
        self.rollbacks = 0
        self._snapshot: Any = None
        self._since_snapshot = 0
        if on_nonfinite == "rollback":
            self._take_snapshot()

    @property
    def rank(self) -> int:
        return int(self.comm.Get_rank())

    @property
    def size(self) -> int:
        return int(self.comm.Get_size())

    def _take_snapshot(self) -> None:
        self._snapshot = (
            _state_copy(self.model, self.params),
            self.optimizer.state_dict() if hasattr(self.optimizer, "state_dict") else None,
        )
        self._since_snapshot = 0

    def forward_backward(self, x: np.ndarray, y: np.ndarray, loss: Callable) -> ReduceResult:
        """Forward/backward on the local shard, then the gradient all-reduce.

        Collective. ``loss(out, y) -> (mean_loss, dout)``. An empty shard
        contributes weight 0. Returns the :class:`ReduceResult`; the model's
        gradients then hold the average over the global batch.
        """
        exc: BaseException | None = None
        n = 0
        lval = 0.0
        sq = None
        try:
            n = len(x)
            if len(y) != n:
                raise ValueError(f"x and y must have the same number of rows, got {n} and {len(y)}")
            if n:
                out = self.model.forward(x)
                lval, dout = loss(out, y)
                self.model.backward(dout, **self._bw_kwargs)
                if callable(getattr(self.model, "grad_sqnorms", None)):
                    sq = self.model.grad_sqnorms()
            else:
                for g in self.grads:
                    g.fill(0)
        except Exception as e:
            exc = e
        if exc is not None:
            # Enter the all-reduce with the error flag so that no rank waits forever.
            self.reducer._packer.buf.fill(0)
            self.reducer._packer.slots[_ERR] = 1.0
            self.comm.Allreduce(_mpi().IN_PLACE, self.reducer._packer.buf, op=_mpi().SUM)
            _raise_everywhere(self.comm, exc)
        return self.reducer.reduce_(weight=float(n), value=float(lval), sqnorms=sq)

    def step(self, x: np.ndarray, y: np.ndarray, loss: Callable) -> StepResult:
        """One data-parallel training step on this rank's shard ``(x, y)``.

        Collective: every rank calls it with its own shard of the same global
        batch (see :func:`shard_slice`); shards may differ in size and be empty.

        Returns
        -------
        StepResult
            Global mean loss, pre-clip norm of the averaged gradient, whether
            the update was applied. Identical on every rank.

        Raises
        ------
        FloatingPointError
            With ``on_nonfinite="raise"``, on every rank, naming the ranks whose
            gradient was not finite; nothing is updated.
        """
        res = self.forward_backward(x, y, loss)
        if res.nonfinite_ranks:
            return self._nonfinite(res)
        norm = math.nan
        if self.clipper is not None:
            norm = float(self.clipper(self.grads))
        onf = "raise" if self.on_nonfinite == "raise" else "skip"
        n2 = float(self.optimizer.step(self.grads, on_nonfinite=onf))
        if self.clipper is None:
            norm = n2
        if not math.isfinite(n2):  # the sum overflowed: same data, same decision everywhere
            return self._nonfinite(res, overflow=True)
        self.steps += 1
        if self.on_nonfinite == "rollback":
            self._since_snapshot += 1
            if self._since_snapshot >= self.snapshot_every:
                self._take_snapshot()
        return StepResult(res.value, norm, True)

    def _nonfinite(self, res: ReduceResult, overflow: bool = False) -> StepResult:
        if self.on_nonfinite == "raise":
            if overflow:
                raise FloatingPointError(
                    f"the averaged gradient is not finite (its sum over {self.size} ranks "
                    "overflowed); no update was applied"
                )
            ranks = self.reducer.nonfinite_ranks(res.local_nonfinite)
            raise FloatingPointError(
                f"non-finite gradient on rank(s) {ranks} of {self.size} at step "
                f"{self.steps + self.skipped + self.rollbacks}; no rank applied the update "
                "(use on_nonfinite='skip' or 'rollback' to continue)"
            )
        if self.on_nonfinite == "skip":
            self.skipped += 1
            return StepResult(res.value, math.nan, False)
        snap_model, snap_opt = self._snapshot
        _state_load(self.model, snap_model, self.params)
        if snap_opt is not None:
            self.optimizer.load_state_dict(snap_opt)
        if hasattr(self.optimizer, "lr_scale"):
            self.optimizer.lr_scale = self.optimizer.lr_scale * 0.5
        self.rollbacks += 1
        self._take_snapshot()
        return StepResult(res.value, math.nan, False)

    def parameters_digest(self) -> str:
        """A hash of this rank's parameters (to compare replicas)."""
        h = hashlib.blake2b(digest_size=16)
        for a in self.params:
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def check_replicas(self) -> None:
        """Collective: raise RuntimeError on every rank if the replicas differ.

        Compares a hash of the parameters (one small ``allgather``); useful in
        tests and as a periodic sanity check.
        """
        digests = self.comm.allgather(self.parameters_digest())
        bad = [r for r, d in enumerate(digests) if d != digests[0]]
        if bad:
            raise RuntimeError(f"parameters differ from rank 0's on rank(s) {bad}")
