"""Adaptive gradient clipping: AGC, AutoClip and ZClip.

Each clipper is a small stateful object. Use it on its own::

    clipper = fastclip.ZClip()
    norm = clipper.clip_(grads)            # in place; returns the pre-clip global norm
    clipped = clipper(grads)               # new arrays, grads untouched

or hand it to :func:`fastclip.train.fit` (``clipper=...``), which calls
:meth:`clip_` between the backward pass and the optimiser step with the
per-layer sums of squares that the backward pass already computed, so the
clipper adds no norm pass of its own.

The hot parts run in C: unit-wise norms and per-unit scaling for
:class:`AGC` (``fastclip._adaptive``), the global norm and the scaling for
:class:`AutoClip` and :class:`ZClip` (``fastclip._clip``). The decision logic
(percentiles, exponential moving averages) is a few scalar operations per step.

A non-finite global norm (NaN or inf) leaves the gradients and the clipper's
statistics untouched: deciding what to do with such a step is the job of the
explosion monitor (:class:`fastclip.train.GradientMonitor`) or of
:func:`fastclip.zero_nans_`.

PyTorch CPU models: the gradients are taken as :func:`fastclip.clip_grad_norm_`
takes them. Given parameters (``net.parameters()`` of a torch or fastclip
model), :meth:`~AutoClip.clip_` clips each ``p.grad`` in place and skips the
parameters whose grad is None; given plain arrays or plain torch tensors, they
are the gradients. float32/float64 CPU tensors are shared, never copied, and
autograd is told which tensors were written (as a torch in-place operation
would); any other tensor is a TypeError naming it, and nothing is modified.
``AGC(...).clip_(net.parameters())`` uses each parameter's value as its
``params``, and reads a torch tensor in torch's layout (see :func:`unitwise_norms`:
a Linear weight has a unit per output row). ``__call__`` returns copies of the
kind it was given: a new ``torch.Tensor`` for a torch tensor, an ndarray for an
ndarray.
"""

from __future__ import annotations

import math
import textwrap
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Union

import numpy as np

from fastclip import _interop as _io
from fastclip._checks import adaptive as _cad
from fastclip._checks import arrays as _ca
from fastclip._checks import scalars as _cs
from fastclip._dispatch import family
from fastclip._docs import GIVEN_PARAMS
from fastclip._docs import fill as _fill
from fastclip._window import SortedWindow
from fastclip.clip import array_norms, clip_grads_with_norm_

__all__ = [
    "AGC",
    "AutoClip",
    "ZClip",
    "adaptive_grad_clip_",
    "unitwise_norms",
]

Arrays = Union[np.ndarray, Iterable[np.ndarray]]  # noqa: UP007 (a runtime alias)

_fam = family("adaptive")
_fam_dist = family("distributed")

_GIVEN_PARAMS = GIVEN_PARAMS  # (fastclip._docs.fill)


def unitwise_norms(x: Arrays) -> np.ndarray | list[np.ndarray]:
    """The L2 norm of every unit of every array, as optax's ``unitwise_norm``.

    With fastclip's ``(in, out)`` weights a unit is an output column: the norm
    is over axis 0. An array with at most one dimension longer than 1
    (scalar, bias vector, ``(1, n)`` weight) is one unit. A 3-d
    ``(in, heads, out)`` array has a unit per ``(head, out)`` pair (norm over
    axis 0), a 4-d HWIO kernel a unit per output channel (norm over axes 0-2).

    A torch tensor is read in torch's layout, the reverse of fastclip's: its
    dimensions reversed (a view), so a Linear weight ``(out, in)`` has a unit
    per output row and a Conv2d weight ``(out, in, kh, kw)`` a unit per output
    channel, the units optax gives the same layer in Flax's layout (and those
    of timm's ``adaptive_clip_grad`` for these two; a 3-d ``(out, in, k)``
    Conv1d weight has, as its Flax ``(k, in, out)`` kernel in optax, a unit
    per ``(in, out)`` pair).

    Parameters
    ----------
    x : ndarray, iterable of ndarray, or pytree
        float32 or float64 arrays with at most 4 dimensions (read only).
        torch CPU tensors are read in place (shared memory, no copy); a
        parameter is refused (TypeError): pass ``p.grad`` or ``p.detach()``.
        A pytree (nested dict/list/tuple; leaves in insertion order) is
        accepted.

    Returns
    -------
    ndarray or list of ndarray
        One 1-d float64 NumPy array of unit norms per input array (a single
        array for a single input, also for a torch tensor; the input's
        structure for a dict or nested containers). optax broadcasts these
        back to ``x.shape``; here they are returned once per unit.

    Raises
    ------
    TypeError
        A non-array element, a dtype other than float32/float64, or a torch
        tensor fastclip cannot share (not on the CPU, sparse).
    ValueError
        An array with more than 4 dimensions (that are not all of length 1).
    """
    sources: list[Any] = []
    arrays, rebuild = _io.arrays_tree(x, "x", sources)
    if any(_io.is_torch(s) for s in sources):  # in torch's layout (_torch_layout)
        if isinstance(arrays, np.ndarray):
            arrays = arrays.T
        else:
            arrays = [a.T if _io.is_torch(s) else a for a, s in zip(arrays, sources)]
    out = _fam.impl.unitwise_norms(arrays)
    return out if rebuild is None or _io.is_sequence(x) else rebuild(out)


@_fill(given_params=_GIVEN_PARAMS)
def adaptive_grad_clip_(
    grads: Arrays, params: Arrays | None, clipping: float = 0.01, eps: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, int]:
    """Unit-wise adaptive gradient clipping in place (Brock et al. 2021).

    Matches ``optax.adaptive_grad_clip(clipping, eps)``: for every unit (see
    :func:`unitwise_norms`) with gradient norm ``||g||`` and parameter norm
    ``||p||``, ``max_norm = clipping * max(||p||, eps)``, and the unit is
    multiplied by ``max_norm / max(||g||, 1e-6)`` unless ``||g|| < max_norm``.
    A NaN norm makes its unit NaN, as in optax. Every norm is computed before
    any gradient is written.

    Parameters
    ----------
    grads : ndarray, iterable of ndarray, or iterable of parameters
        Writeable float32/float64 gradients, modified in place; they must not
        share memory with each other.
        {given_params}
        torch CPU tensors are clipped in place through shared memory.
    params : ndarray, iterable of ndarray, iterable of parameters, or None
        The parameters, same number and shapes as the gradients (read only;
        a parameter gives its value, a torch tensor is read in place). None
        when ``grads`` are parameters: each one's value is then its
        parameter. Given with parameters as ``grads``, it pairs with the
        parameters whose grad is not None. A torch gradient needs a torch
        parameter and the reverse (TypeError otherwise): both are read in
        torch's layout (see :func:`unitwise_norms`).
    clipping : float, default 0.01
        The largest allowed ratio of unit gradient norm to unit parameter
        norm, ``> 0`` (0.01 is the NFNet paper's default for batch size
        up to 4096; optax has no default).
    eps : float, default 1e-3
        Floor of the parameter norm, so zero-initialised units can still
        move, ``>= 0``.

    Returns
    -------
    (ndarray, ndarray, int)
        Per-array sums of squares of the gradients before and after clipping
        (float64), and the number of units that were scaled.

    Raises
    ------
    TypeError
        A non-array element, an unsupported dtype, a torch tensor fastclip
        cannot share (not on the CPU, sparse), parameters mixed with plain
        arrays, or ``params`` None for plain gradients.
    ValueError
        ``clipping <= 0``, ``eps < 0`` (or NaN), read-only or overlapping
        gradients, a different number of params and grads, mismatched
        shapes, or arrays with more than 4 dimensions. Nothing is modified.
    """
    written: list[Any] = []
    garr, parr, labels = _agc_arrays(grads, params, written)
    if parr is None:
        raise TypeError(f"{_ca.not_iterable_msg('params', None)} (None is accepted when "
                        "grads are parameters: their values are then the params)")
    out = _named(labels, _fam.impl.adaptive_grad_clip_, garr, parr, clipping, eps)
    if out[2]:  # units were scaled: the arrays holding them were written
        _io.bump_versions(written)
    return out


# ---------------------------------------------------------------------------
# helpers shared by the clipper classes
# ---------------------------------------------------------------------------


def _agc_arrays(grads: Any, params: Any, written: list[Any]
                ) -> tuple[Any, Any, tuple[tuple[str, list[str]], ...]]:
    """``(gradient arrays, parameter arrays or None, labels)`` of AGC's arguments.

    The gradients as :func:`fastclip.clip_grad_norm_` takes them (``written``
    receives their torch tensors); the parameters from ``params``, or, when it is
    None, the values of the parameters in ``grads`` (None when ``grads`` holds
    none). ``labels`` rename the arrays in the kernels' messages (:func:`_named`).
    ndarrays and lists of ndarrays are returned as they are.
    """
    glabels: list[str] = []
    plabels: list[str] = []
    gtorch: list[bool] = []
    ptorch: list[bool] = []
    grads = _io.materialize(grads, "grads")  # read twice when params is None
    garr = _io.gradients(grads, "grads", True, written, glabels, gtorch)
    if params is None:
        parr = _io.value_arrays(grads, "grads", plabels, True, ptorch)
    else:
        parr = _io.value_arrays(params, "params", plabels, False, ptorch)
    labels = (("grads", glabels), ("params", plabels))
    if parr is not None and (any(gtorch) or any(ptorch)):
        # checked as given, so that a message shows the shapes the caller knows
        _named(labels, _cad.check_pairs, garr, parr)
        garr, parr = _torch_layout(garr, parr, gtorch, ptorch, glabels, plabels)
    return garr, parr, labels


def _torch_layout(garr: Any, parr: Any, gtorch: list[bool], ptorch: list[bool],
                  glabels: list[str], plabels: list[str]) -> tuple[Any, Any]:
    """AGC's arrays with the dimensions of every torch tensor reversed (views).

    torch keeps weights as ``(out, in)`` (Linear) and ``(out, in, kh, kw)``
    (Conv2d), the reverse of the ``(in, out)``/HWIO layout whose last axis
    :func:`unitwise_norms` takes as the units (optax's rule, written for
    Flax's layout): reversed, a torch weight has the units optax gives the same
    layer in Flax, one per output. A gradient and its parameter must then both
    be torch tensors or both not, or their units would not match.
    """
    single = isinstance(garr, np.ndarray)
    g: list[np.ndarray] = [garr] if single else list(garr)
    p: list[np.ndarray] = [parr] if isinstance(parr, np.ndarray) else list(parr)
    gtorch = gtorch or [False] * len(g)
    ptorch = ptorch or [False] * len(p)
    for i, (gt, pt) in enumerate(zip(gtorch, ptorch)):
        if gt != pt:
            glab = glabels[i] if glabels else _ca.label("grads", i, single)
            plab = plabels[i] if plabels else _ca.label("params", i, single)
            torch_lab, other = (glab, plab) if gt else (plab, glab)
            raise TypeError(
                f"{torch_lab} is a torch tensor but {other} is not; AGC reads a torch "
                "tensor in torch's (out, in, ...) layout and an ndarray in fastclip's "
                "(..., in, out) layout, so a gradient and its parameter must both be torch "
                "tensors or both be arrays"
            )
    g = [a.T if t else a for a, t in zip(g, gtorch)]
    p = [a.T if t else a for a, t in zip(p, ptorch)]
    return (g[0] if single else g), (p[0] if isinstance(parr, np.ndarray) else p)


def _named(labels: tuple[tuple[str, list[str]], ...], fn: Callable[..., Any], *args: Any
           ) -> Any:
    """``fn(*args)``, its errors naming each array as the caller's input does
    (``grads[2].grad``), not by its index in the converted lists."""
    try:
        return fn(*args)
    except Exception as exc:
        new = exc
        for name, labs in labels:
            new = _io.relabelled(new, name, labs)
        if new is exc:
            raise
        raise new.with_traceback(exc.__traceback__) from None


def _norms_and_squares(arrays: list[np.ndarray], sqnorms: Any
                       ) -> tuple[np.ndarray | None, np.ndarray]:
    """Per-array norms (computed without overflow; None when the caller gave
    ``sqnorms``) and sums of squares (``norms ** 2``, inf beyond float64)."""
    if sqnorms is not None:
        return None, _cad.sqnorms_arg(sqnorms, len(arrays))
    norms = array_norms(arrays) if arrays else np.zeros(0)
    with np.errstate(over="ignore", under="ignore"):
        return norms, norms * norms


def _global_from(grads: Arrays, sqnorms: Any
                 ) -> tuple[list[np.ndarray], list[Any], np.ndarray, np.ndarray | None]:
    """Validated in-place gradients (as :func:`fastclip.clip_grad_norm_` takes them),
    the torch tensors they share memory with, their per-array sums of squares and
    norms."""
    written: list[Any] = []
    labels: list[str] = []
    converted = _io.gradients(grads, "grads", True, written, labels)
    arrays, _ = _named((("grads", labels),), _ca.check_arrays, converted, "grads", True)
    norms, sq = _norms_and_squares(arrays, sqnorms)
    return arrays, written, sq, norms


def _total(sq: np.ndarray) -> float:
    return math.sqrt(float(np.sum(sq))) if sq.size else 0.0


def _needs_norms(sq: np.ndarray) -> bool:
    """The sum of ``sq`` is inf or 0, as when the squares overflow or underflow
    float64: the global norm must then come from the norms themselves (a NaN sum is
    NaN either way)."""
    if not sq.size:
        return False
    s = float(np.sum(sq))
    return math.isinf(s) or s == 0.0


def _safe_total(norms: np.ndarray) -> float:
    """The L2 norm of per-array norms, with the rescaling of get_total_norm."""
    return float(_fam_dist.impl.total_norm(np.ascontiguousarray(norms, np.float64), 2.0))


def _copies(grads: Arrays) -> tuple[list[Any], Any]:
    """``(copies, result)``: new arrays holding the values of ``grads``, each of the
    kind of its input (an ndarray, or a torch tensor on a new NumPy array), for
    ``clip_``; and the same copies as ``__call__`` returns them: one for one array,
    the input's structure for a dict or nested containers, else a list."""
    sources: list[Any] = []
    arrays, rebuild = _io.arrays_tree(grads, "grads", sources)
    arrays, single = _ca.check_arrays(arrays, "grads", inplace=False)
    copies: list[Any] = [np.array(a, copy=True) for a in arrays]
    if any(_io.is_torch(s) for s in sources):
        import torch

        # a torch tensor again, so that AGC reads it in torch's layout as the input
        copies = [torch.from_numpy(c) if _io.is_torch(s) else c
                  for c, s in zip(copies, sources)]
    if single:
        return copies, copies[0]
    if rebuild is None or _io.is_sequence(grads):
        return copies, copies
    return copies, rebuild(copies)


# The grads/params paragraph of the clip_ methods that ignore params
# (fastclip._docs.fill).
_GRADS_PARAMS = f"""
grads : ndarray, iterable of ndarray, or iterable of parameters
    Writeable float32/float64 gradients, clipped in place.
{textwrap.indent(_GIVEN_PARAMS.strip(), "    ")}
    torch CPU tensors are clipped in place through shared memory, and autograd
    is told of the tensors written (none when nothing is scaled).
params : ignored
    Accepted for interface compatibility.
"""


class _Clipper:
    """Shared interface: ``clip_`` (defined by each clipper) in place,
    ``__call__`` on copies."""

    #: whether :meth:`clip_` needs the parameters (fit passes them when True)
    requires_params = False
    clip_: Callable[..., float]

    def __init__(self, comm: Any = None) -> None:
        self.last_norm: float = math.nan
        self.last_clipped: int = 0
        self.last_sqnorms: np.ndarray = np.zeros(0)
        # mpi: sharded gradients; the global norm covers every rank's arrays.
        if comm is not None:
            from fastclip.distributed import check_comm

            check_comm(comm)
        self.comm = comm

    @property
    def bounds_spikes(self) -> bool:
        """Whether the next :meth:`clip_` bounds a spike of the global norm (then
        :func:`fastclip.fit`'s monitor flags only non-finite steps, as for a fixed
        ``clip_norm``; otherwise it also looks for spikes)."""
        return True

    def _local(self, fn: Callable[..., Any], *args: Any) -> Any:
        """This rank's part of a step, before the collective of :meth:`_global`.

        With ``comm``, an exception here is reported through that collective (the
        other ranks are in it): every rank raises, none waits forever."""
        if self.comm is None:
            return fn(*args)
        try:
            return fn(*args)
        except Exception as exc:
            from fastclip.distributed import _gather_failed

            _gather_failed(self.comm, exc)  # raises exc here, the others theirs
            raise

    def _begin(self, grads: Arrays, sqnorms: Any
               ) -> tuple[list[np.ndarray], list[Any], np.ndarray, float]:
        """Validated gradients, the torch tensors they share, their sums of squares and
        the global norm; records the norm and resets ``last_clipped``/``last_sqnorms``
        (a step that clips updates them)."""
        arrays, written, sq, norms = self._local(_global_from, grads, sqnorms)
        norm = self._global(sq, norms)
        self.last_norm = norm
        self.last_clipped = 0
        self.last_sqnorms = sq
        return arrays, written, sq, norm

    def _clip_to(self, arrays: list[np.ndarray], written: list[Any], sq: np.ndarray,
                 limit: float, norm: float) -> None:
        """Scale the gradients of global norm ``norm`` by ``limit / (norm + 1e-6)``
        (below 1), as ``clip_grad_norm_(arrays, limit)`` does; record the step and
        tell autograd which torch tensors were written."""
        clip_grads_with_norm_(arrays, limit, norm)
        coef = limit / (norm + 1e-6)
        self.last_clipped = 1
        self.last_sqnorms = sq * (coef * coef)
        _io.bump_versions(written)

    def _global(self, sq: np.ndarray, norms: np.ndarray | None) -> float:
        """The global norm from per-array sums of squares; with ``comm``, of every rank's
        arrays (all-gathered in rank order: the same value on every rank, equal to the
        single-process value on the concatenated list). When the sum of squares
        overflows or underflows float64, from the norms (``norms``; ``sqrt(sq)`` where
        the caller gave the sums of squares) with rescaling instead."""
        own = norms if norms is not None else np.sqrt(sq)
        if self.comm is None:
            return _safe_total(own) if _needs_norms(sq) else _total(sq)
        from fastclip.distributed import _allgather_agreed, allgather_norms

        # The ranks must also hold the same settings and state, or they would take
        # different clipping decisions on the same global norm without noticing.
        digest = zlib.crc32(repr(self._agreement()).encode())
        allsq = _allgather_agreed(sq, self.comm, float(digest),
                                  f"the {type(self).__name__} settings and state")
        if _needs_norms(allsq):  # the same gathered values: every rank gathers again
            return _safe_total(allgather_norms(own, self.comm))
        return _total(allsq)

    def _agreement(self) -> tuple[Any, ...]:
        """What must be the same on every rank of ``comm``: the kind of clipper here;
        each clipper adds its settings and a summary of the state that changes with
        each step."""
        return (type(self).__name__,)

    def __call__(self, grads: Arrays, params: Arrays | None = None) -> Any:
        """Clip copies of ``grads`` (the inputs are left unchanged).

        Updates the clipper's state exactly as :meth:`clip_` does.

        Parameters
        ----------
        grads : ndarray, iterable of ndarray, or pytree
            float32/float64 gradients (read only): ndarrays or torch CPU
            tensors (read in place), in a list, tuple or nested dict/list/tuple.
            A parameter is refused (TypeError): pass ``p.grad`` here, or the
            parameters to :meth:`clip_`.
        params : as in :meth:`clip_`
            Used by :class:`AGC` only.

        Returns
        -------
        ndarray, torch.Tensor, list or pytree
            The clipped copies, each of the kind of its input: an ndarray for
            an ndarray, a new ``torch.Tensor`` (same dtype, on the CPU, not
            requiring grad) for a torch tensor. One copy for one array; the
            input's structure for a dict or nested containers; else a list.
        """
        if self.comm is None:
            copies, result = _copies(grads)
        else:
            # a bad argument on this rank is reported through the collective of clip_
            copies, result = self._local(_copies, grads)
        self.clip_(copies, params)
        return result


class AGC(_Clipper):
    """Adaptive gradient clipping, unit-wise (Brock et al. 2021, NFNets).

    Each output unit's gradient is scaled down so that its norm is at most
    ``clipping * max(||p||, eps)``, where ``||p||`` is the norm of the same
    unit of the parameters: optax's ``adaptive_grad_clip(clipping, eps)``
    semantics, see :func:`adaptive_grad_clip_`. With fastclip's ``(in, out)``
    weights a unit is a column (the norm is over axis 0); biases and other
    vectors are single units. Norms and scaling run in C in two passes over
    the gradients (the second only for arrays with a unit to clip).

    torch models: ``agc.clip_(net.parameters())`` clips each ``p.grad`` in
    place relative to ``p`` itself (parameters without a grad are skipped), in
    torch's layout, where a Linear weight ``(out, in)`` has a unit per output
    row (see :func:`unitwise_norms`).

    AGC has no state besides its settings, but keeps the statistics of the
    last call: ``last_norm`` (global gradient norm before clipping),
    ``last_clipped`` (units scaled) and ``last_sqnorms`` (per-array sums of
    squares after clipping).

    Parameters
    ----------
    clipping : float, default 0.01
        ``> 0``.
    eps : float, default 1e-3
        ``>= 0``.
    comm : mpi4py.MPI.Intracomm, optional, keyword-only
        Gradients sharded across the ranks of ``comm`` (see
        :mod:`fastclip.distributed`): the global norm (``last_norm``; the
        unit-wise clipping is local) is that of every rank's arrays together,
        the same on every rank, so every rank takes the same decision;
        :meth:`clip_` is then collective, and raises ValueError on every rank
        when the ranks' settings or state differ. Not part of the state.

    Raises
    ------
    ValueError
        For ``clipping <= 0`` or ``eps < 0`` (the message names them).

    Examples
    --------
    >>> import numpy as np, fastclip
    >>> w = np.ones((4, 2)); g = np.full((4, 2), 10.0)
    >>> agc = fastclip.AGC(clipping=0.1)
    >>> norm = agc.clip_([g], [w])
    >>> round(float(np.linalg.norm(g[:, 0])), 6)   # 0.1 * ||w[:, 0]|| = 0.2
    0.2
    """

    requires_params = True

    def __init__(self, clipping: float = 0.01, eps: float = 1e-3, *, comm: Any = None) -> None:
        super().__init__(comm)
        self.clipping = _cs.check_interval(clipping, "clipping", low=0.0, low_open=True)
        self.eps = _cs.check_interval(eps, "eps", low=0.0, low_open=False)

    def clip_(self, grads: Arrays, params: Arrays | None = None, *,
              sqnorms: Any = None) -> float:
        """Clip ``grads`` in place, unit-wise, relative to ``params``.

        Parameters
        ----------
        grads : ndarray, iterable of ndarray, or iterable of parameters
            Writeable float32/float64 gradients, clipped in place, taken as in
            :func:`adaptive_grad_clip_`: given parameters (``net.parameters()``
            of torch or fastclip), each ``p.grad`` is clipped and parameters
            whose grad is None are skipped; torch CPU tensors are clipped in
            place through shared memory, and autograd is told of the tensors
            written (none when no unit is scaled).
        params : ndarray, iterable of ndarray, iterable of parameters, or None
            The parameters, same shapes as the gradients (a parameter gives its
            value). Required for plain gradients; None when ``grads`` are
            parameters, whose values are then the parameters (so
            ``agc.clip_(net.parameters())`` clips a torch model's gradients
            relative to its weights).
        sqnorms : array-like, optional
            The per-gradient sums of squares, when the caller has them (the
            backward pass does): a step whose global norm is not finite is then
            recognised without a norm pass of AGC's own. The clipping itself uses
            the per-unit norms, computed in the clipping pass. One per gradient
            clipped (parameters whose grad is None have none).

        Returns
        -------
        float
            The global L2 norm of the gradients before clipping. When it is not
            finite (NaN or inf), the gradients are left unchanged.

        Raises
        ------
        TypeError
            A non-array element, an unsupported dtype, a torch tensor fastclip
            cannot share (not on the CPU, sparse), or parameters mixed with
            plain arrays; nothing is modified.
        ValueError
            When ``params`` is None for plain gradients or does not match
            them; nothing is modified.
        """
        # a non-finite step is left to the explosion monitor, untouched (the unit-wise
        # pass would turn the other entries of its units into 0 or NaN); with comm, a
        # bad argument on one rank is reported to all through _local
        grads, params, written, sq, norms = self._local(self._sums_of_squares, grads, params,
                                                        sqnorms)
        norm = self._global(sq, norms)
        if not math.isfinite(norm):
            self.last_norm = norm
            self.last_clipped = 0
            self.last_sqnorms = sq
            return norm
        before, after, clipped = self._local(self._clip_local, grads, params)
        if clipped:  # units were scaled: the arrays holding them were written
            _io.bump_versions(written)
        # from the kernel's sums of squares, which overflow float64 for norms beyond
        # about 1e154: then the norm found before clipping (the same on every rank)
        last = self._global(before, None)
        self.last_norm = last if math.isfinite(last) else norm
        self.last_clipped = clipped
        self.last_sqnorms = after
        return self.last_norm

    def _sums_of_squares(self, grads: Arrays, params: Arrays | None, sqnorms: Any) -> Any:
        """``(grads, params, torch tensors of grads, sums of squares, norms)``: the pair
        checked (iterables read once, as lists) before any rank clips in place."""
        written: list[Any] = []
        garr, parr, labels = _agc_arrays(grads, params, written)
        if parr is None:
            raise ValueError("params is required: AGC clips relative to the parameter norms "
                             "(or pass parameters as grads: their values are then the params)")
        garr, parr, single = _named(labels, _cad.check_pairs, garr, parr)
        norms, sq = _norms_and_squares(garr, sqnorms)
        g: Any = garr[0] if single else garr
        p: Any = parr[0] if single and len(parr) == 1 else parr
        return g, p, written, sq, norms

    def _clip_local(self, grads: Arrays, params: Arrays) -> Any:
        return adaptive_grad_clip_(grads, params, self.clipping, self.eps)

    def state_dict(self) -> dict[str, Any]:
        """The settings (AGC keeps no statistics across steps)."""
        return {"clipping": self.clipping, "eps": self.eps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore settings saved by :meth:`state_dict` (validated)."""
        _cad.require_keys(state, ("clipping", "eps"), "AGC")
        clipping = _cs.check_interval(state["clipping"], "clipping", low=0.0, low_open=True)
        eps = _cs.check_interval(state["eps"], "eps", low=0.0, low_open=False)
        self.clipping, self.eps = clipping, eps

    def _agreement(self) -> tuple[Any, ...]:
        return (self.clipping, self.eps)

    def __repr__(self) -> str:
        return f"AGC(clipping={self.clipping!r}, eps={self.eps!r})"


def _lerp_percentile(sorted_vals: list[float], q: float) -> float:
    """``numpy.percentile(vals, q)`` (method "linear") on a sorted list."""
    n = len(sorted_vals)
    if n == 1:
        return sorted_vals[0]
    idx = q / 100.0 * (n - 1)
    lo = math.floor(idx)
    hi = min(lo + 1, n - 1)
    t = idx - lo
    a, b = sorted_vals[lo], sorted_vals[hi]
    d = b - a
    # NumPy's _lerp: a + d*t, or b - d*(1-t) for t >= 0.5 (monotone, exact ends)
    return b - d * (1.0 - t) if t >= 0.5 else a + d * t


class AutoClip(_Clipper):
    """AutoClip: clip to a percentile of the history of gradient norms.

    Seetharaman et al. 2020, "AutoClip: Adaptive Gradient Clipping for Source
    Separation Networks": at every step the global L2 norm is appended to the
    history, and the gradients are clipped as ``torch.nn.utils.clip_grad_norm_``
    would with ``max_norm`` set to the ``percentile``-th percentile of the
    history (NumPy's linear interpolation), which is what the authors'
    reference code does. The history is kept sorted, so a step costs
    ``O(log n)`` comparisons plus one list insertion, not a sort.

    Parameters
    ----------
    percentile : float, default 10.0
        In ``[0, 100]`` (the paper's recommended value is 10).
    history_size : int, optional
        Keep only the last ``history_size`` norms (``None``: all of them, as
        in the paper).
    comm : mpi4py.MPI.Intracomm, optional, keyword-only
        Gradients sharded across the ranks of ``comm`` (see
        :mod:`fastclip.distributed`): the global norm is that of every
        rank's arrays together, the same on every rank, so every rank takes the
        same decision; :meth:`clip_` is then collective, and raises ValueError on
        every rank when the ranks' settings or state differ. Not part of the state.

    Attributes
    ----------
    last_threshold : float
        The clipping threshold of the last step (NaN before the first).
    last_norm, last_clipped, last_sqnorms
        The last step's pre-clip global norm, whether it was scaled (0/1), and
        the per-array sums of squares after clipping.

    Raises
    ------
    ValueError
        For a percentile outside ``[0, 100]`` or ``history_size < 1``.
    """

    def __init__(self, percentile: float = 10.0, history_size: int | None = None, *,
                 comm: Any = None) -> None:
        super().__init__(comm)
        self.percentile = _cs.check_interval(percentile, "percentile", low=0.0, low_open=False,
                                      high=100.0, high_open=False)
        self.history_size = (None if history_size is None
                             else _cs.check_int(history_size, "history_size", 1))
        self._window = SortedWindow(self.history_size)
        self.last_threshold = math.nan

    @property
    def history(self) -> np.ndarray:
        """The norms kept, oldest first (a copy)."""
        return np.array(self._window.order, dtype=np.float64)

    def threshold(self) -> float:
        """The current threshold: the percentile of the history (NaN if empty)."""
        if not self._window.sorted:
            return math.nan
        return _lerp_percentile(self._window.sorted, self.percentile)

    @_fill(grads_params=_GRADS_PARAMS)
    def clip_(self, grads: Arrays, params: Arrays | None = None, *,
              sqnorms: Any = None) -> float:
        """Record the global norm, then clip ``grads`` in place to the percentile.

        Parameters
        ----------
        {grads_params}
        sqnorms : array-like, optional
            Per-array sums of squares of ``grads`` (e.g. ``model.grad_sqnorms()``);
            saves the norm pass.

        Returns
        -------
        float
            The global L2 norm before clipping. A non-finite norm is not
            recorded and nothing is scaled.
        """
        arrays, written, sq, norm = self._begin(grads, sqnorms)
        if not math.isfinite(norm):
            return norm
        self._window.push(norm)
        thr = self.threshold()
        self.last_threshold = thr
        if thr / (norm + 1e-6) < 1.0:
            self._clip_to(arrays, written, sq, thr, norm)
        return norm

    def state_dict(self) -> dict[str, Any]:
        """Settings and the norm history (oldest first)."""
        return {
            "percentile": self.percentile,
            "history_size": self.history_size,
            "history": self.history,
            "last_threshold": self.last_threshold,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (validated before anything changes)."""
        _cad.require_keys(state, ("percentile", "history_size", "history"), "AutoClip")
        pct = _cs.check_interval(state["percentile"], "percentile", low=0.0, low_open=False,
                          high=100.0, high_open=False)
        size = (None if state["history_size"] is None
                else _cs.check_int(state["history_size"], "history_size", 1))
        hist = _cad.norms_arg(state["history"], "history")
        if hist.ndim != 1 or not np.all(np.isfinite(hist)) or np.any(hist < 0):
            raise ValueError("history must be a 1-d array of finite norms >= 0")
        if size is not None and hist.size > size:
            raise ValueError(f"history holds {hist.size} norms, more than history_size={size}")
        last = _cad.last_threshold_arg(state)
        self.percentile, self.history_size = pct, size
        self._window = SortedWindow(size, hist)
        self.last_threshold = last

    @property
    def bounds_spikes(self) -> bool:
        # the threshold is a percentile of the history with the new norm in it: below
        # a new high once the window also holds an older norm, unless it is the maximum
        size = self.history_size
        return self.percentile < 100.0 and len(self._window) > 0 and (size is None or size >= 2)

    def _agreement(self) -> tuple[Any, ...]:
        w = self._window
        return (self.percentile, self.history_size, len(w), w.order[-1] if len(w) else None)

    def __repr__(self) -> str:
        return (f"AutoClip(percentile={self.percentile!r}, history_size={self.history_size!r}, "
                f"{len(self._window)} norms recorded)")


class ZClip(_Clipper):
    """ZClip: z-score clipping against an EMA of the gradient norm.

    Kumar et al. 2025, "ZClip: Adaptive Spike Mitigation for LLM
    Pre-Training", with the defaults and modes of the authors' ``zclip``
    package. For the first ``warmup_steps`` steps the global norms are only
    collected (and clipped to ``max_grad_norm`` when it is set); then the
    mean and (population) variance of those norms start an exponential
    moving average. At every later step with norm ``g``, mean ``mu`` and
    standard deviation ``sd``:

    - ``mode="zscore"``: ``z = (g - mu) / (sd + eps)``; when ``z > z_thresh``
      the threshold is ``(mu + z_thresh * sd / (z / z_thresh)) * clip_factor``
      (``clip_option="adaptive_scaling"``) or ``mu`` (``clip_option="mean"``);
    - ``mode="percentile"``: the threshold is ``mu + z_thresh * sd`` whenever
      ``g`` exceeds it;

    the threshold is capped at ``max_grad_norm``, the gradients are scaled by
    ``threshold / (g + 1e-6)`` when ``g`` exceeds it, and the EMA is updated
    with the threshold (a spike) or ``g``: ``mu <- alpha mu + (1 - alpha) x``,
    then ``var <- alpha var + (1 - alpha) (x - mu)^2`` with the new ``mu``
    (skipped for spikes when ``skip_update_on_spike``).

    Deviation from the package: a non-finite norm leaves the gradients and
    the statistics untouched (the package would turn its EMA into NaN).

    Parameters
    ----------
    alpha : float, default 0.97
        EMA smoothing factor, in ``(0, 1)``.
    z_thresh : float, default 2.5
        ``> 0``.
    max_grad_norm : float, optional
        A hard cap on the threshold, ``> 0``. The package's README documents
        ``None`` as the default (its code has used 1.0); None here.
    eps : float, default 1e-6
        ``>= 0``.
    warmup_steps : int, default 25
        ``>= 1``.
    mode : {"zscore", "percentile"}, default "zscore"
    clip_option : {"adaptive_scaling", "mean"}, default "adaptive_scaling"
        Used in ``"zscore"`` mode only.
    clip_factor : float, default 1.0
        ``> 0``; multiplies the adaptive-scaling threshold.
    skip_update_on_spike : bool, default False
        Leave the EMA unchanged on steps that were clipped.
    comm : mpi4py.MPI.Intracomm, optional, keyword-only
        Gradients sharded across the ranks of ``comm`` (see
        :mod:`fastclip.distributed`): the global norm is that of every
        rank's arrays together, the same on every rank, so every rank takes the
        same decision; :meth:`clip_` is then collective, and raises ValueError on
        every rank when the ranks' settings or state differ. Not part of the state.

    Raises
    ------
    ValueError
        For an invalid mode, clip_option or out-of-range number (the message
        names the parameter).
    """

    def __init__(
        self,
        alpha: float = 0.97,
        z_thresh: float = 2.5,
        max_grad_norm: float | None = None,
        eps: float = 1e-6,
        warmup_steps: int = 25,
        mode: str = "zscore",
        clip_option: str = "adaptive_scaling",
        clip_factor: float = 1.0,
        skip_update_on_spike: bool = False,
        *,
        comm: Any = None,
    ) -> None:
        super().__init__(comm)
        self.alpha = _cs.check_interval(alpha, "alpha", low=0.0, low_open=True, high=1.0)
        self.z_thresh = _cs.check_interval(z_thresh, "z_thresh", low=0.0, low_open=True)
        self.max_grad_norm = (None if max_grad_norm is None else
                              _cs.check_interval(max_grad_norm, "max_grad_norm", low=0.0, low_open=True))
        self.eps = _cs.check_interval(eps, "eps", low=0.0, low_open=False)
        self.warmup_steps = _cs.check_int(warmup_steps, "warmup_steps", 1)
        self.mode = _cad.choice(mode, "mode", ("zscore", "percentile"))
        self.clip_option = _cad.choice(clip_option, "clip_option", ("adaptive_scaling", "mean"))
        self.clip_factor = _cs.check_interval(clip_factor, "clip_factor", low=0.0, low_open=True)
        self.skip_update_on_spike = _cs.check_bool(skip_update_on_spike, "skip_update_on_spike")
        self._buffer: list[float] = []
        self.mean: float | None = None
        self.var: float | None = None
        self.last_threshold = math.nan

    @property
    def initialized(self) -> bool:
        """Whether the warm-up is over and the EMA statistics exist."""
        return self.mean is not None

    def _clip_value(self, g: float) -> float | None:
        assert self.mean is not None and self.var is not None
        sd = math.sqrt(self.var)
        if self.mode == "percentile":
            thr = self.mean + self.z_thresh * sd
            return thr if g > thr else None
        den = sd + self.eps
        if den > 0:
            z = (g - self.mean) / den
        else:  # eps=0 and no spread yet: any norm above the mean is infinitely far out
            z = math.inf if g > self.mean else 0.0
        if z > self.z_thresh:
            if self.clip_option == "adaptive_scaling":
                eta = z / self.z_thresh
                return (self.mean + self.z_thresh * sd / eta) * self.clip_factor
            return self.mean
        return None

    @_fill(grads_params=_GRADS_PARAMS)
    def clip_(self, grads: Arrays, params: Arrays | None = None, *,
              sqnorms: Any = None) -> float:
        """Update the statistics and clip ``grads`` in place.

        Parameters
        ----------
        {grads_params}
        sqnorms : array-like, optional
            Per-array sums of squares of ``grads``; saves the norm pass.

        Returns
        -------
        float
            The global L2 norm before clipping.
        """
        arrays, written, sq, g = self._begin(grads, sqnorms)
        if not math.isfinite(g):
            return g
        if self.mean is None:
            self._buffer.append(g)
            if len(self._buffer) >= self.warmup_steps:
                n = len(self._buffer)
                mean = sum(self._buffer) / n
                self.var = sum((x - mean) ** 2 for x in self._buffer) / n
                self.mean = mean
                self._buffer = []
            self.last_threshold = math.inf if self.max_grad_norm is None else self.max_grad_norm
            if self.max_grad_norm is not None:
                # torch.nn.utils.clip_grad_norm_(..., max_grad_norm), as the package
                if self.max_grad_norm / (g + 1e-6) < 1.0:
                    self._clip_to(arrays, written, sq, self.max_grad_norm, g)
            return g
        clip_val = self._clip_value(g)
        limit = g if clip_val is None else clip_val
        if self.max_grad_norm is not None:
            limit = min(limit, self.max_grad_norm)
        self.last_threshold = limit
        if g > limit:
            self._clip_to(arrays, written, sq, limit, g)
        if clip_val is not None and self.skip_update_on_spike:
            return g
        x = g if clip_val is None else clip_val
        assert self.var is not None
        self.mean = self.alpha * self.mean + (1.0 - self.alpha) * x
        self.var = self.alpha * self.var + (1.0 - self.alpha) * (x - self.mean) ** 2
        return g

    _SETTINGS = ("alpha", "z_thresh", "max_grad_norm", "eps", "warmup_steps", "mode",
                 "clip_option", "clip_factor", "skip_update_on_spike")

    def state_dict(self) -> dict[str, Any]:
        """Settings, warm-up buffer and EMA statistics."""
        d: dict[str, Any] = {k: getattr(self, k) for k in self._SETTINGS}
        d.update(buffer=np.array(self._buffer, dtype=np.float64), mean=self.mean, var=self.var,
                 last_threshold=self.last_threshold)
        return d

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (validated before anything changes)."""
        _cad.require_keys(state, self._SETTINGS + ("buffer", "mean", "var"), "ZClip")
        other = ZClip(**{k: state[k] for k in self._SETTINGS})
        buf = _cad.norms_arg(state["buffer"], "buffer")
        if buf.ndim != 1 or not np.all(np.isfinite(buf)) or np.any(buf < 0):
            raise ValueError("buffer must be a 1-d array of finite norms >= 0")
        mean, var = state["mean"], state["var"]
        if (mean is None) != (var is None):
            raise ValueError("mean and var must both be None (warm-up) or both be numbers")
        if mean is not None:
            # statistics of norms: finite (an infinite mean or variance would switch the
            # clipper off for good) and >= 0
            mean = _cs.check_interval(mean, "mean", low=0.0, low_open=False,
                                      high=math.inf, high_open=True)
            var = _cs.check_interval(var, "var", low=0.0, low_open=False,
                                     high=math.inf, high_open=True)
            if buf.size:
                raise ValueError("buffer must be empty once the warm-up is over (mean and var "
                                 "are set)")
        elif buf.size >= other.warmup_steps:
            raise ValueError(f"buffer holds {buf.size} norms, but the warm-up ends at "
                             f"warmup_steps={other.warmup_steps}")
        last = _cad.last_threshold_arg(state)
        for k in self._SETTINGS:
            setattr(self, k, getattr(other, k))
        self._buffer = [float(b) for b in buf]
        self.mean, self.var = mean, var
        self.last_threshold = last

    @property
    def bounds_spikes(self) -> bool:
        # during warm-up only max_grad_norm (when given) clips
        return self.mean is not None or self.max_grad_norm is not None

    def _agreement(self) -> tuple[Any, ...]:
        return (*(getattr(self, k) for k in self._SETTINGS), len(self._buffer), self.mean,
                self.var)

    def __repr__(self) -> str:
        return (f"ZClip(alpha={self.alpha!r}, z_thresh={self.z_thresh!r}, mode={self.mode!r}, "
                f"clip_option={self.clip_option!r}, warmup_steps={self.warmup_steps!r})")
