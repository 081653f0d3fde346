"""Same shapes on every rank, one contiguous buffer, and broadcasting the parameters."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fastclip._checks import arrays as _ca
from fastclip.distributed.comm import _EXC_TYPES, agree_or_raise, check_comm
from fastclip.distributed.norms import sequence

__all__ = ["Packer", "broadcast_parameters", "check_same_shapes", "describe_diff", "signature"]


def signature(arrays: Sequence[np.ndarray]) -> tuple[tuple[tuple[int, ...], str], ...]:
    return tuple((tuple(int(n) for n in a.shape), a.dtype.name) for a in arrays)


def describe_diff(name: str, sig: Any, ref: Any, where: str, ref_where: str) -> str:
    if len(sig) != len(ref):
        return f"{len(sig)} arrays {where} but {len(ref)} {ref_where}"
    for i, (a, b) in enumerate(zip(sig, ref)):
        if a != b:
            return f"{name}[{i}] has shape {a[0]} {a[1]} {where} but {b[0]} {b[1]} {ref_where}"
    return "no difference"


def _signature_mismatch(name: str, sigs: list[Any]) -> str | None:
    for r, sig in enumerate(sigs[1:], start=1):
        if sig != sigs[0]:
            diff = describe_diff(name, sig, sigs[0], f"on rank {r}", "on rank 0")
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
        arg, _ = sequence(arrays, name)
        checked, _ = _ca.check_arrays(arg, name, inplace=False)
        sig = signature(checked)
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


class Packer:
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
    exc: BaseException | None = None
    arrays: list[np.ndarray] = []
    # checked inside the agreement below, so that a bad root on one rank makes every
    # rank raise instead of leaving the others in the collective
    try:
        if isinstance(root, bool) or not isinstance(root, (int, np.integer)):
            raise TypeError(f"root must be an int, got {type(root).__name__}")
        if not 0 <= int(root) < size:
            raise ValueError(f"root must be a rank in [0, {size}), got {root}")
        arg, _ = sequence(params, "params")
        arrays, _ = _ca.check_arrays(arg, "params", inplace=True)
    except Exception as e:
        exc = e
    agree_or_raise(comm, exc)
    roots = comm.allgather(int(root))
    if len(set(roots)) != 1:
        raise ValueError(f"root must be the same on every rank, got {roots} on ranks "
                         f"0..{size - 1}")
    check_same_shapes(arrays, comm, "params")
    packer = Packer(signature(arrays), 0)
    if comm.Get_rank() == root:
        packer.pack(arrays)
    comm.Bcast(packer.buf, root=int(root))
    if comm.Get_rank() != root:
        packer.unpack(arrays)

