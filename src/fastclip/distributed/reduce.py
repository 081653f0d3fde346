"""Averaging gradients over ranks with one ``Allreduce``: :class:`GradientAllreducer`."""

from __future__ import annotations

import math
from typing import Any, NamedTuple, NoReturn

import numpy as np

from fastclip._checks import arrays as _ca
from fastclip._checks import scalars as _cs
from fastclip._dispatch import family
from fastclip.distributed.broadcast import Packer, check_same_shapes, describe_diff, signature
from fastclip.distributed.comm import agree_or_raise, check_comm, mpi, raise_everywhere
from fastclip.distributed.norms import sequence

__all__ = ["GradientAllreducer", "ReduceResult"]

_clip = family("clip")
_dist = family("distributed")


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


_W, _BAD, _ERR, _VAL, _BOUND = range(5)
_SLOTS = 5


class GradientAllreducer:
    """Average a fixed list of gradient arrays over all ranks with ONE ``Allreduce``.

    At construction the list is checked to have the same shapes and dtypes on
    every rank (one ``allgather``) and a single contiguous buffer is allocated
    (the common dtype of the gradients, plus 5 scalar slots). Each
    :meth:`reduce_` packs the local gradients (times the local weight) into the
    buffer, appends the weight, a non-finite flag, an error flag, a weighted
    value (the loss) and a bound on the packed values (the gradient's L2 norm
    times the weight), makes one in-place ``Allreduce(SUM)`` and unpacks the
    weighted average into the gradient arrays. The flags are small integers
    (exact in floating point), so every rank sees the same counts and takes
    the same decision.

    When the summed bounds come near the dtype's largest value (finite
    gradients so large that a weighted sum might overflow), every rank instead
    packs its gradients times ``weight / total weight`` and makes a second
    ``Allreduce``: those sums are averages and cannot overflow, so finite
    gradients always give a finite average, as on one process.

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
            arg, _ = sequence(grads, name)
            arrays, _ = _ca.check_arrays(arg, name, inplace=True)
        except Exception as e:
            exc = e
        agree_or_raise(comm, exc)
        check_same_shapes(arrays, comm, name)
        self.arrays = arrays
        self._sig = signature(arrays)
        self._packer = Packer(self._sig, _SLOTS)

    @property
    def buffer(self) -> np.ndarray:
        """The contiguous communication buffer (gradients then 5 scalar slots)."""
        return self._packer.buf

    def _check_local(self, grads: Any) -> list[np.ndarray]:
        arg, _ = sequence(grads, self.name)
        arrays, _ = _ca.check_arrays(arg, self.name, inplace=True)
        sig = signature(arrays)
        if sig != self._sig:
            diff = describe_diff(self.name, sig, self._sig, "now", "at construction")
            raise ValueError(
                f"{self.name} on rank {self.comm.Get_rank()} do not match the list given at "
                f"construction: {diff}"
            )
        return arrays

    @staticmethod
    def _local_norm(arrays: list[np.ndarray], sqnorms: Any) -> float:
        """The L2 norm of this rank's gradients (inf or NaN when one is not finite),
        from ``sqnorms`` when they are given and finite, else from one pass."""
        if sqnorms is not None:
            s = float(np.sum(np.asarray(sqnorms, dtype=np.float64)))
            if math.isfinite(s) and s >= 0:
                return math.sqrt(s)
        return float(_dist.impl.total_norm(_clip.impl.array_norms_checked(arrays, 2.0), 2.0))

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
        m = mpi()
        p = self._packer
        exc: BaseException | None = None
        bad = False
        w = 0.0
        arrays = self.arrays
        try:
            if grads is not None:
                arrays = self._check_local(grads)
            w = _cs.check_nonnegative(weight, "weight")
            if math.isinf(w):
                raise ValueError("weight must be finite")
            v = _cs.real(value, "value")  # NaN/inf allowed: a diverged loss is data
            bound = 0.0
            if w > 0:
                norm = self._local_norm(arrays, sqnorms)
                bad = not math.isfinite(norm)
                bound = norm * w
                with np.errstate(over="ignore"):
                    p.pack(arrays, w)
            else:  # an empty shard contributes nothing (not even a NaN mean loss)
                p.data.fill(0)
                v = 0.0
            p.slots[_W] = w
            p.slots[_BAD] = 1.0 if bad else 0.0
            p.slots[_ERR] = 0.0
            p.slots[_VAL] = v * w
            with np.errstate(over="ignore"):
                p.slots[_BOUND] = 0.0 if bad else bound
        except Exception as e:
            exc = e
            p.buf.fill(0)
            p.slots[_ERR] = 1.0
        self.comm.Allreduce(m.IN_PLACE, p.buf, op=m.SUM)
        if p.slots[_ERR] != 0:
            raise_everywhere(self.comm, exc)
        total_w = float(p.slots[_W])
        nbad = round(float(p.slots[_BAD]))
        if total_w > 0:
            val = float(p.slots[_VAL]) / total_w
            if nbad == 0 and not float(p.slots[_BOUND]) < float(np.finfo(p.dtype).max) / 4:
                # the weighted sums may have overflowed: sum the averages instead
                if w > 0:
                    p.pack(arrays, w / total_w)
                else:
                    p.data.fill(0)
                p.slots.fill(0)
                self.comm.Allreduce(m.IN_PLACE, p.buf, op=m.SUM)
                p.unpack(arrays)
            else:
                p.unpack(arrays, 1.0 / total_w)
        else:
            for a in arrays:
                a.fill(0)
            val = math.nan
        return ReduceResult(total_w, nbad, val, bad)

    def abort(self, exc: BaseException) -> NoReturn:
        """Take part in this step's all-reduce with a local error, then raise everywhere.

        Collective: for a rank whose own part of the step failed (its forward
        pass or loss raised) while the other ranks call :meth:`reduce_`. The
        error flag travels with the same ``Allreduce``, so no rank waits
        forever: this rank raises ``exc``, every other rank an exception of
        the same type naming this rank.
        """
        p = self._packer
        p.buf.fill(0)
        p.slots[_ERR] = 1.0
        m = mpi()
        self.comm.Allreduce(m.IN_PLACE, p.buf, op=m.SUM)
        raise_everywhere(self.comm, exc)
        raise exc  # raise_everywhere raised already; this keeps NoReturn true for mypy

    def nonfinite_ranks(self, local_bad: bool) -> list[int]:
        """Collective: the ranks whose flag is set (for messages, after a bad step)."""
        flags = self.comm.allgather(bool(local_bad))
        return [r for r, f in enumerate(flags) if f]

