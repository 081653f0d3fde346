"""Norms of gradients sharded across ranks (each rank holds different arrays).

The per-array norms are all-gathered and combined in rank order on every
rank, with the overflow-safe kernel of the single-process functions, so every
rank gets the same total norm, bit for bit, equal to the single-process
result on the concatenated list.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastclip._checks import arrays as _ca
from fastclip._checks import scalars as _cs
from fastclip._dispatch import family
from fastclip.distributed.comm import check_comm, mpi, raise_everywhere

__all__ = [
    "allgather_norms",
    "allreduce_norm",
    "clip_by_global_norm",
    "clip_grad_norm_",
    "gather_failed",
    "get_total_norm",
    "sequence",
]


_clip = family("clip")
_dist = family("distributed")


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
    flag_name: str = "error_if_nonfinite",
    extra_name: str = "max_norm/clip_norm",
) -> tuple[np.ndarray, np.ndarray]:
    """Collective: every rank's per-array norms, concatenated in rank order.

    A header (count, p, extra, flag) is all-gathered first: a count of -1
    carries an error; ``p``, ``extra`` (max_norm / clip_norm) and ``flag``
    (``flag_name``: error_if_nonfinite, or whether use_norm was given) must agree
    across ranks, or every rank raises.
    """
    m = mpi()
    size = comm.Get_size()
    hdr = np.array(
        [-1.0 if exc is not None else float(norms.size), p, extra, flag], dtype=np.float64
    )
    allh = np.empty((size, 4), dtype=np.float64)
    comm.Allgather(hdr, allh)
    if (allh[:, 0] < 0).any():
        raise_everywhere(comm, exc)
    for col, what in ((1, "norm_type"), (2, extra_name), (3, flag_name)):
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
    comm.Allgatherv(norms, [out, (counts, displs), m.DOUBLE])
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
        p = _cs.check_norm_type(norm_type)
        return float(_dist.impl.total_norm(_as_norms(local_norms), p))
    check_comm(comm)
    exc: BaseException | None = None
    p, norms = math.nan, np.empty(0)
    try:
        p = _cs.check_norm_type(norm_type)
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
    return allgather_agreed(local_norms, comm, math.nan, "")


def allgather_agreed(local_norms: Any, comm: Any, digest: float, what: str) -> np.ndarray:
    """:func:`allgather_norms` that also checks that ``digest`` (a number summing up
    the caller's settings and state, exact in float64; NaN: nothing to check) is the
    same on every rank; every rank raises ValueError naming ``what`` when it is not."""
    check_comm(comm)
    exc: BaseException | None = None
    norms = np.empty(0)
    try:
        norms = _as_norms(local_norms)
    except Exception as e:
        exc = e
    return _gather_norms(comm, norms, math.nan, exc, extra=digest, extra_name=what)[0]


def gather_failed(comm: Any, exc: BaseException) -> None:
    """Take part in the collective of :func:`allgather_norms` with a local error.

    For a caller whose own part failed while the other ranks call
    :func:`allgather_norms`: raises ``exc`` here and an exception naming this
    rank on every other rank, so that none of them waits forever.
    """
    _gather_norms(comm, np.empty(0), math.nan, exc)
    raise exc


class ArgumentFailure:
    """An argument whose conversion failed on this rank before a collective call:
    the call raises ``exc`` inside its checks, so every rank learns of it (the others
    would otherwise wait in the collective forever)."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def sequence(obj: Any, name: str) -> tuple[Any, bool]:
    """One ndarray (kept, for messages) or the items of an iterable (consumed once)."""
    if isinstance(obj, ArgumentFailure):
        raise obj.exc
    items, single = _ca.as_sequence(obj, name)
    return (obj if single else items), single


def _sharded_total(
    grads: Any, norm_type: Any, error_if_nonfinite: bool, comm: Any, *, clipping: bool,
    max_norm: Any = None,
) -> tuple[float, list[np.ndarray], float]:
    """Collective: the total norm of every rank's ``grads``.

    Checks this rank's arguments once (``max_norm`` too when ``clipping``, and
    then ``grads`` for in-place use), all-gathers the per-array norms (every
    rank raises when one rank's arguments are bad) and combines them. Returns
    ``(total, this rank's checked arrays, max_norm)``; FloatingPointError for a
    non-finite total when ``error_if_nonfinite``, nothing modified.
    """
    check_comm(comm)
    exc: BaseException | None = None
    arrays: list[np.ndarray] = []
    p, mx, norms, check = math.nan, math.nan, np.empty(0), False
    try:
        if clipping:
            mx = _cs.check_nonnegative(max_norm, "max_norm")
        p = _cs.check_norm_type(norm_type)
        check = _cs.check_bool(error_if_nonfinite, "error_if_nonfinite")
        arg, _ = sequence(grads, "grads")
        arrays, _ = _ca.check_arrays(arg, "grads", inplace=clipping)
        norms = _clip.impl.array_norms_checked(arrays, p)
    except Exception as e:
        exc = e
    allnorms, counts = _gather_norms(comm, norms, p, exc, extra=mx, flag=float(check))
    total = float(_dist.impl.total_norm(allnorms, p))
    if check and not math.isfinite(total):
        raise FloatingPointError(_nonfinite_msg("grads", allnorms, counts, total, p))
    return total, arrays, mx


def get_total_norm(grads: Any, norm_type: Any, error_if_nonfinite: bool, comm: Any) -> float:
    """``fastclip.get_total_norm(..., comm=comm)``: see its docstring."""
    return _sharded_total(grads, norm_type, error_if_nonfinite, comm, clipping=False)[0]


def clip_grad_norm_(
    grads: Any, max_norm: Any, norm_type: Any, error_if_nonfinite: bool, comm: Any
) -> float:
    """``fastclip.clip_grad_norm_(..., comm=comm)``: see its docstring."""
    total, arrays, mx = _sharded_total(grads, norm_type, error_if_nonfinite, comm,
                                       clipping=True, max_norm=max_norm)
    _clip.impl.clip_grads_with_norm_checked_(arrays, mx, total)
    return total


def clip_by_global_norm(
    xs: Any, clip_norm: Any, use_norm: Any, comm: Any
) -> tuple[list[np.ndarray], float]:
    """``fastclip.clip_by_global_norm(..., comm=comm)``: see its docstring."""
    check_comm(comm)
    exc: BaseException | None = None
    arrays: list[np.ndarray] = []
    c, g, norms = math.nan, math.nan, np.empty(0)
    given = use_norm is not None
    try:
        c = _cs.check_finite_positive(clip_norm, "clip_norm")
        arg, _ = sequence(xs, "xs")
        arrays, _ = _ca.check_arrays(arg, "xs", inplace=False)
        if given:
            g = _cs.check_total_norm(use_norm, "use_norm")
        else:
            norms = _clip.impl.array_norms_checked(arrays, 2.0)
    except Exception as e:
        exc = e
    # With use_norm the norms are not needed, but the header still goes round: a rank
    # given use_norm while another computes the norm would otherwise wait forever.
    # use_norm (>= 0 or NaN) must be the same everywhere; -1 stands for "not given"
    allnorms, _ = _gather_norms(comm, norms, 2.0, exc, extra=c, flag=g if given else -1.0,
                                flag_name="use_norm (-1: not given)")
    if given:
        return _clip.impl.clip_by_global_norm_checked(arrays, c, g), g
    g = float(_dist.impl.total_norm(allnorms, 2.0))
    return _clip.impl.clip_by_global_norm_checked(arrays, c, g), g


