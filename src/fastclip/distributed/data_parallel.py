"""Data-parallel training: :class:`DataParallel` and what ``fit(..., comm=comm)`` sets up."""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from fastclip import _interop as _io
from fastclip._checks import train as _ct
from fastclip.distributed.broadcast import broadcast_parameters, signature
from fastclip.distributed.comm import agree_or_raise, check_comm, on_every_rank
from fastclip.distributed.reduce import GradientAllreducer, ReduceResult

__all__ = ["DataParallel", "StepResult", "agree_on_settings", "fit_setup", "training_settings"]


_POLICIES = ("raise", "skip", "rollback")


def training_settings(optimizer: Any, clipper: Any, monitor: Any) -> dict[str, Any]:
    """What must be the same on every rank for the replicas to take the same update
    from the same reduced gradient: the optimiser (kind, learning rate or schedule,
    hyper-parameters, clipping, step count), the clipper (kind, settings and state) and
    the monitor's settings. Plain values and strings, comparable across processes."""
    from fastclip.train.monitor import _SETTINGS

    opt = f"{optimizer!r}, lr_scale={getattr(optimizer, 'lr_scale', None)!r}"
    if type(optimizer).__repr__ is object.__repr__:  # an address, different per process
        opt = type(optimizer).__qualname__
    if clipper is None:
        clip = None
    elif callable(getattr(clipper, "_agreement", None)):
        clip = f"{type(clipper).__qualname__}{clipper._agreement()!r}"
    else:  # a function or another object: its kind (its repr may hold an address)
        clip = getattr(clipper, "__qualname__", type(clipper).__qualname__)
    mon = None if monitor is None else tuple(getattr(monitor, k) for k in _SETTINGS)
    return {"the optimiser": opt, "the clipper": clip, "the monitor's settings": mon}


def agree_on_settings(comm: Any, settings: dict[str, Any]) -> None:
    """Collective: ValueError on every rank, naming the setting and each rank's value,
    unless every rank holds the same ``settings``."""
    gathered = comm.allgather(settings)
    for k, v in settings.items():
        values = [g.get(k) for g in gathered]
        if any(x != values[0] for x in values):
            raise ValueError(f"{k} must be the same on every rank, got {values} on ranks "
                             f"0..{len(values) - 1}")


def fit_setup(
    model: Any, X: np.ndarray, y: np.ndarray, rng: np.random.Generator, comm: Any,
    settings: dict[str, Any] | None = None,
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
    # a digest of the data: a rank given its own shard instead of the whole set would
    # otherwise train on 1/size of that shard without a word
    h = hashlib.blake2b(digest_size=16)
    for a in (X, y):
        h.update(np.ascontiguousarray(a).data)
    mine = (tuple(np.shape(X)), tuple(np.shape(y)), h.hexdigest())
    gathered = comm.allgather(mine)
    for r, (xs, ys, digest) in enumerate(gathered):
        if (xs, ys) != gathered[0][:2]:
            raise ValueError(
                f"every rank must hold the same training data: X, y have shapes {(xs, ys)} "
                f"on rank {r} but {gathered[0][:2]} on rank 0"
            )
        if digest != gathered[0][2]:
            raise ValueError(
                f"every rank must hold the same training data (each trains on its shard of "
                f"every batch): X, y on rank {r} differ from rank 0's"
            )
    reducer = GradientAllreducer(list(model.gradients()), comm)  # the same architecture
    # the ranks would take different numbers of steps or different updates
    agree_on_settings(comm, dict(settings or {}))
    state = comm.bcast(rng.bit_generator.state, root=0)
    if comm.Get_rank() != 0:
        # the root's generator, whatever kind this rank was given
        rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
        rng.bit_generator.state = state
    broadcast_parameters(_io.values(model.parameters()), comm)
    return reducer, rng


class StepResult(NamedTuple):
    """What :meth:`DataParallel.step` did."""

    loss: float
    """The mean loss over the global batch (before the update)."""
    norm: float
    """The pre-clip global norm of the averaged gradient (NaN if non-finite)."""
    applied: bool
    """Whether the update was applied (False: skipped or rolled back)."""


class DataParallel:
    """Data-parallel training of a model replica per rank, over MPI.

    At construction the model's parameters are broadcast from ``root`` (one
    ``Bcast``) and its gradient list is checked to match on every rank. Each
    :meth:`step` runs forward and backward on this rank's shard of the batch,
    averages the gradients over the global batch with one ``Allreduce`` on a
    single contiguous buffer (:class:`GradientAllreducer`), then applies the
    optimiser (whose ``clip_norm``/``clip_value`` clipping therefore acts on
    the averaged, full-batch gradient, as in PyTorch's DDP). Every rank ends
    the step with the same parameters. The clipper and the optimiser's step
    are each followed by a one-integer ``Allreduce``: an error in either on one
    rank raises on every rank (none waits in the next step), and a clipper
    failing anywhere stops every rank before any rank updates. At construction
    the ranks also check that they hold the same optimiser (kind, learning
    rate, hyper-parameters, clipping), clipper and monitor settings: a
    ValueError on every rank names the one that differs.

    A non-finite local gradient on any rank is counted in the same
    all-reduce, so every rank takes the same decision, chosen by
    ``on_nonfinite``: ``"raise"`` (:class:`fastclip.train.GradientExplosionError`,
    a FloatingPointError, on every rank, nothing updated), ``"skip"`` (no
    update anywhere) or ``"rollback"`` (every rank restores the last snapshot
    of parameters and optimiser state and multiplies ``optimizer.lr_scale``
    by ``lr_factor``). The decisions are taken by the same
    :class:`fastclip.train.StepEngine` as :func:`fastclip.train.fit`'s.

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
        Without ``monitor``: skipping and rolling back never give up.
    snapshot_every : int, default 1
        With ``"rollback"``: applied steps between snapshots.
    lr_factor : float, default 0.5
        With ``"rollback"``: learning-rate multiplier per rollback, in ``(0, 1)``.
    clipper : callable, optional
        ``clipper(grads) -> norm`` run on the averaged gradients before the
        optimiser (e.g. ``lambda g: fastclip.clip_grad_norm_(g, 1.0)``), or an
        adaptive clipper (its ``clip_`` is used, with the parameters for AGC);
        the same on every rank since the gradients are. Build an adaptive
        clipper without ``comm``: the gradients are already reduced.
    monitor : fastclip.train.GradientMonitor, optional
        Monitor the averaged gradient as :func:`fastclip.train.fit` does
        (spikes, vanishing layers, and the monitor's own policy,
        ``lr_factor``, ``checkpoint_every``, ``max_consecutive_errors`` and
        ``max_rollbacks``), at the cost of one norm pass per step. It then
        replaces ``on_nonfinite``, ``snapshot_every`` and ``lr_factor``, which
        must be left at their defaults.

    Attributes
    ----------
    steps, skipped, rollbacks : int
        Applied, skipped and rolled-back steps so far.
    events : list of fastclip.train.Event
        Every flagged step.

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
        lr_factor: float = 0.5,
        monitor: Any = None,
    ) -> None:
        from fastclip.train import GradientMonitor, StepEngine
        from fastclip.train.loop import _backward_kwargs

        self.comm = check_comm(comm)
        exc: BaseException | None = None
        params: list[np.ndarray] = []
        grads: list[np.ndarray] = []
        mon: Any = None
        try:
            if on_nonfinite not in _POLICIES:
                raise ValueError(f"on_nonfinite must be one of {_POLICIES}, got {on_nonfinite!r}")
            if (
                isinstance(snapshot_every, bool)
                or not isinstance(snapshot_every, (int, np.integer))
                or snapshot_every < 1
            ):
                raise ValueError(f"snapshot_every must be an int >= 1, got {snapshot_every!r}")
            if monitor is None:
                # no spike detection: only non-finite steps are flagged, and neither skipping
                # nor rolling back gives up
                mon = GradientMonitor(on_nonfinite, lr_factor=lr_factor,
                                      checkpoint_every=int(snapshot_every),
                                      max_consecutive_errors=sys.maxsize,
                                      max_rollbacks=sys.maxsize)
            elif not isinstance(monitor, GradientMonitor):
                raise TypeError(f"monitor must be a fastclip.train.GradientMonitor or None, got "
                                f"{type(monitor).__name__}")
            elif on_nonfinite != "raise" or snapshot_every != 1 or lr_factor != 0.5:
                raise ValueError("give either monitor or on_nonfinite/snapshot_every/lr_factor: "
                                 "the monitor's policy, checkpoint_every and lr_factor apply")
            else:
                mon = monitor
            if isinstance(clipper, type):
                raise TypeError(f"clipper must be a clipper object or a function, e.g. "
                                f"{clipper.__name__}(); got the class {clipper.__name__} itself")
            if clipper is not None and not callable(clipper) and not callable(
                    getattr(clipper, "clip_", None)):
                raise TypeError(f"clipper must be callable, got {type(clipper).__name__}")
            if getattr(clipper, "comm", None) is not None:
                raise ValueError("clipper has its own comm, but DataParallel clips the "
                                 "gradients after reducing them (the same on every rank): "
                                 "build the clipper without comm")
            for attr in ("forward", "backward", "parameters", "gradients"):
                if not callable(getattr(model, attr, None)):
                    raise TypeError(f"model must have a {attr}() method")
            if not callable(getattr(optimizer, "step", None)):
                raise TypeError("optimizer must have a step(grads, ...) method")
            _ct.check_optimizer_params(optimizer, _io.values(model.parameters()))
            if mon.policy == "rollback" and not hasattr(optimizer, "lr_scale"):
                raise TypeError("policy 'rollback' needs an optimiser with lr_scale")
            params = _io.values(model.parameters())
            grads = list(model.gradients())
            if signature(params) != signature(grads):
                raise ValueError(
                    "model.parameters() and model.gradients() differ in shapes or dtypes"
                )
        except Exception as e:
            exc = e
        agree_or_raise(comm, exc)
        reducer = GradientAllreducer(grads, comm)  # the same architecture on every rank
        # a flagged step would be skipped on some ranks and raise on others, or the same
        # reduced gradient would give different updates: every rank raises instead
        agree_on_settings(comm, training_settings(optimizer, clipper, mon))
        self.model = model
        self.optimizer = optimizer
        self._bw_kwargs = _backward_kwargs(model)
        self.on_nonfinite = mon.policy
        self.snapshot_every = mon.checkpoint_every
        self.clipper = clipper
        self.params = params
        self.grads = grads
        self.monitor = mon if monitor is not None else None
        self._names = (list(model.parameter_names())
                       if callable(getattr(model, "parameter_names", None)) else None)
        self.reducer = reducer
        broadcast_parameters(params, comm, root)
        self.steps = 0
        self.skipped = 0
        nb = getattr(model, "named_buffers", None)
        self.engine = StepEngine(mon, optimizer, params,
                                 clipper=clipper if hasattr(clipper, "state_dict") else None,
                                 buffers=[b for _, b in nb()] if callable(nb) else [])

    @property
    def rank(self) -> int:
        return int(self.comm.Get_rank())

    @property
    def size(self) -> int:
        return int(self.comm.Get_size())

    @property
    def rollbacks(self) -> int:
        return int(self.engine.monitor.rollbacks)

    @property
    def events(self) -> list[Any]:
        return list(self.engine.monitor.events)

    def forward_backward(self, x: np.ndarray, y: np.ndarray, loss: Callable) -> ReduceResult:
        """Forward/backward on the local shard, then the gradient all-reduce.

        Collective. ``loss(out, y) -> (mean_loss, dout)``. An empty shard
        contributes weight 0. Returns the :class:`ReduceResult`; the model's
        gradients then hold the average over the global batch.
        """
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
        except BaseException as e:  # KeyboardInterrupt too: no rank waits
            self.reducer.abort(e)  # enters the all-reduce with the error flag: no rank waits
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
        fastclip.train.GradientExplosionError
            A FloatingPointError. With ``on_nonfinite="raise"``, on every
            rank, naming the ranks whose gradient was not finite; nothing is
            updated. With a ``monitor``, when its policy stops training.
        """
        res = self.forward_backward(x, y, loss)
        if res.nonfinite_ranks:
            return self._nonfinite(res)
        norm = math.nan
        if self.monitor is not None:
            from fastclip.clip import array_norms
            from fastclip.train.monitor import update_is_bounded

            sq = array_norms(self.grads) ** 2
            ev = self.monitor.observe(self._step_index(), sq, loss=res.value, names=self._names,
                                      clipped=update_is_bounded(self.optimizer, self.clipper))
            if ev is not None:
                return self._flagged(res, ev)
        # The clipper and the optimiser run on each rank's copy of the averaged
        # gradient; an error on one rank is made an error on every rank (one small
        # all-reduce after each), before any rank updates, so that no rank steps alone
        # or goes on to the next step's all-reduce alone.
        if self.clipper is not None:
            norm = float(on_every_rank(self.comm, self._clip))
        onf = "raise" if self.on_nonfinite == "raise" else "skip"
        n2 = float(on_every_rank(self.comm, self.optimizer.step, self.grads,
                                 on_nonfinite=onf))
        if self.clipper is None:
            norm = n2
        if not math.isfinite(n2):  # the sum overflowed: same data, same decision everywhere
            return self._nonfinite(res, overflow=True)
        self.steps += 1
        self.engine.applied()
        return StepResult(res.value, norm, True)

    def _clip(self) -> float:
        assert self.clipper is not None
        clip_ = getattr(self.clipper, "clip_", None)
        if callable(clip_):  # an adaptive clipper: clips in place, returns the norm
            needs = bool(getattr(self.clipper, "requires_params", False))
            return float(clip_(self.grads, self.params if needs else None))
        return float(self.clipper(self.grads))

    def _step_index(self) -> int:
        return self.steps + self.skipped + self.rollbacks

    def _nonfinite(self, res: ReduceResult, overflow: bool = False) -> StepResult:
        message = None
        if self.on_nonfinite == "raise":
            if overflow:
                message = (f"the averaged gradient is not finite (its sum over {self.size} "
                           "ranks overflowed); no update was applied")
            else:
                ranks = self.reducer.nonfinite_ranks(res.local_nonfinite)
                message = (f"non-finite gradient on rank(s) {ranks} of {self.size} at step "
                           f"{self._step_index()}; no rank applied the update (use "
                           "on_nonfinite='skip' or 'rollback' to continue)")
        ev = self.engine.monitor.flag(self._step_index())
        return self._flagged(res, ev, message)

    def _flagged(self, res: ReduceResult, ev: Any, message: str | None = None) -> StepResult:
        self.engine.flagged(ev, stop_message=message)
        if self.on_nonfinite == "skip":
            self.skipped += 1
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
