"""The gradient monitor: explosions (non-finite or spiking norms) and vanishing layers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fastclip._checks import train as _ct
from fastclip._window import SortedWindow
from fastclip.train.events import Event

__all__ = ["POLICIES", "GradientMonitor", "update_is_bounded"]

POLICIES = ("raise", "skip", "rollback")

_SETTINGS = ("policy", "factor", "window", "warmup", "max_consecutive_errors", "lr_factor",
             "checkpoint_every", "max_rollbacks")
_VANISH_SETTINGS = ("vanish_threshold", "vanish_factor", "vanish_steps")


def _layer_groups(names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Layers (name prefixes before the last ``.``, in order) and each parameter's layer."""
    layers: list[str] = []
    index: dict[str, int] = {}
    of = np.empty(len(names), dtype=np.intp)
    for i, n in enumerate(names):
        key = n.rsplit(".", 1)[0] if "." in n else n
        if key not in index:
            index[key] = len(layers)
            layers.append(key)
        of[i] = index[key]
    return layers, of


class GradientMonitor:
    """Detects exploding and vanishing gradients from per-layer norms.

    The monitor sees the per-parameter sums of squares that the backward pass
    computed anyway (``model.grad_sqnorms()``) and the loss; it never reads the
    gradients. A step is flagged

    - ``"nonfinite"`` when the global norm or the loss is NaN or inf (the layer
      named is the first whose norm is not finite);
    - ``"spike"`` when, after ``warmup`` good steps, the global norm exceeds
      ``factor`` times the median of the last ``window`` good steps' norms and
      is the largest of those norms (a new high: once training has converged
      the median is small and isolated 10x batches are common; they are not
      explosions unless they also exceed everything seen recently). The layer
      named is the one whose norm grew most relative to the median of its own
      recent norms. Steps whose update is clipped are not checked for
      spikes (clipping bounds them; :func:`fit` says so with ``clipped=True``
      when the optimiser clips by norm or value, or when an adaptive clipper's
      ``bounds_spikes`` says its next clip bounds a spike: not while ZClip
      warms up). Under privacy :func:`fit` passes no loss (the batch's loss is
      not private; the decision rests on the noised gradients alone).

    Flagged steps do not enter the running statistics. :func:`fit` (and
    :class:`fastclip.distributed.DataParallel`) apply the ``policy``:

    - ``"raise"``: stop with :class:`GradientExplosionError` naming the step
      and the layer;
    - ``"skip"``: drop the update and go on, as optax's ``apply_if_finite``;
      after more than ``max_consecutive_errors`` flagged steps in a row, give
      up with :class:`GradientExplosionError` (optax would then apply the
      non-finite update; stopping keeps the last good parameters instead);
    - ``"rollback"``: restore the parameters, optimiser state and clipper
      state saved at the last checkpoint (taken every ``checkpoint_every``
      good steps) and multiply the learning rate by ``lr_factor`` (through
      ``optimizer.lr_scale``); after ``max_rollbacks`` rollbacks, give up.

    **Vanishing gradients** are looked for when ``vanish_threshold`` or
    ``vanish_factor`` is set. A layer is the group of parameters whose names
    share the prefix before the last ``.`` (``"0.weight"`` and ``"0.bias"``
    form layer ``"0"``; a name without a dot is a layer of its own); its
    gradient norm is the L2 norm of its parameters' gradients. On a good step
    a layer is *vanishing* when its norm is below ``vanish_threshold``, or
    when ``vanish_factor`` times its norm is below the norm of the layer
    above it (the next layer towards the output). After ``vanish_steps``
    vanishing steps in a row the monitor records an :class:`Event` of kind
    ``"vanishing"`` and action ``"warn"`` naming the layer (once per run of
    vanishing steps: a layer that recovers and vanishes again is reported
    again). The update is applied; the event is in ``history.events`` and
    the layer is shown in :func:`fit`'s progress bar while it keeps vanishing.

    Parameters
    ----------
    policy : {"raise", "skip", "rollback"}, default "raise"
    factor : float, default 10.0
        Spike threshold relative to the running median, ``> 1``.
    window : int, default 100
        Number of recent good steps in the running median, ``>= 1``.
    warmup : int, default 10
        Good steps seen before spikes are looked for, ``>= 1``.
    max_consecutive_errors : int, default 5
        ``"skip"``: flagged steps in a row tolerated, ``>= 0``.
    lr_factor : float, default 0.5
        ``"rollback"``: learning-rate multiplier per rollback, in ``(0, 1)``.
    checkpoint_every : int, default 50
        ``"rollback"``: good steps between checkpoints, ``>= 1``.
    max_rollbacks : int, default 10
        ``"rollback"``: rollbacks tolerated, ``>= 1``.
    vanish_threshold : float, optional
        A layer whose gradient norm is below this (``> 0``) is vanishing.
        None (default): no absolute bound.
    vanish_factor : float, optional
        A layer whose gradient norm is more than this factor (``> 1``)
        smaller than the layer above it is vanishing. None (default): no
        relative bound.
    vanish_steps : int, default 10
        Vanishing steps in a row before a layer is reported (``K``), ``>= 1``.

    Attributes
    ----------
    events : list of Event
        Every event so far (explosions and vanishing layers).
    last_warnings : list of Event
        The ``"vanishing"`` events of the last :meth:`observe` (empty when
        none was reported at that step).
    vanishing_layers : list of str
        The layers vanishing for at least ``vanish_steps`` steps in a row up
        to the last good step.

    Raises
    ------
    ValueError
        An unknown policy or an out-of-range parameter (the message names it).
    TypeError
        A parameter of the wrong type (the message names it).

    Examples
    --------
    Standalone, in a hand-written loop::

        mon = GradientMonitor("skip", vanish_threshold=1e-6)
        event = mon.observe(step, model.grad_sqnorms(), loss=loss,
                            names=model.parameter_names())
        if event is None:
            opt.step(model.gradients(), sqnorms=model.grad_sqnorms())
        for warning in mon.last_warnings:
            print(warning.message)
    """

    def __init__(
        self,
        policy: str = "raise",
        *,
        factor: float = 10.0,
        window: int = 100,
        warmup: int = 10,
        max_consecutive_errors: int = 5,
        lr_factor: float = 0.5,
        checkpoint_every: int = 50,
        max_rollbacks: int = 10,
        vanish_threshold: float | None = None,
        vanish_factor: float | None = None,
        vanish_steps: int = 10,
    ) -> None:
        if not isinstance(policy, str) or policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        self.policy = policy
        self.factor = _ct.real_arg(factor, "factor", 1.0)
        self.window = _ct.int_arg(window, "window", 1)
        self.warmup = _ct.int_arg(warmup, "warmup", 1)
        self.max_consecutive_errors = _ct.int_arg(max_consecutive_errors,
                                                  "max_consecutive_errors", 0)
        self.lr_factor = _ct.real_arg(lr_factor, "lr_factor", 0.0, high=1.0)
        self.checkpoint_every = _ct.int_arg(checkpoint_every, "checkpoint_every", 1)
        self.max_rollbacks = _ct.int_arg(max_rollbacks, "max_rollbacks", 1)
        self.vanish_threshold = _ct.opt_real_arg(vanish_threshold, "vanish_threshold", 0.0)
        self.vanish_factor = _ct.opt_real_arg(vanish_factor, "vanish_factor", 1.0)
        self.vanish_steps = _ct.int_arg(vanish_steps, "vanish_steps", 1)
        self.reset()

    def reset(self) -> None:
        """Forget the running statistics and counters."""
        self._median = SortedWindow(self.window)
        self._layers: np.ndarray | None = None  # ring of per-layer norms (window, L)
        self._pos = 0
        self._seen = 0
        self._vanish_runs: np.ndarray | None = None  # vanishing steps in a row, per layer
        self._vanish_key: tuple[str, ...] | None = None
        self._groups: tuple[list[str], np.ndarray] = ([], np.empty(0, dtype=np.intp))
        self.consecutive = 0
        self.rollbacks = 0
        self.events: list[Event] = []
        self.last_warnings: list[Event] = []

    @property
    def watches_vanishing(self) -> bool:
        """Whether vanishing gradients are looked for."""
        return self.vanish_threshold is not None or self.vanish_factor is not None

    @property
    def vanishing_layers(self) -> list[str]:
        """The layers vanishing for at least ``vanish_steps`` good steps in a row."""
        if self._vanish_runs is None:
            return []
        names = self._groups[0]
        return [names[j] for j in np.flatnonzero(self._vanish_runs >= self.vanish_steps)]

    def threshold(self) -> float:
        """The current spike threshold (NaN while warming up)."""
        if len(self._median) < self.warmup:
            return math.nan
        return self.factor * self._median.median()

    def observe(
        self,
        step: int,
        sqnorms: Any,
        *,
        loss: float = 0.0,
        names: Sequence[str] | None = None,
        epoch: int = 0,
        clipped: bool = False,
    ) -> Event | None:
        """Check one step; returns an :class:`Event` if it is flagged, else None.

        Parameters
        ----------
        step : int
            The step number (for the event).
        sqnorms : array of float
            Per-parameter sums of squares of the gradients.
        loss : float, default 0.0
            The step's loss (a non-finite loss flags the step).
        names : sequence of str, optional
            Parameter names for the event (default ``"param0"``, ...).
        epoch : int, default 0
        clipped : bool, default False
            The step's update will be clipped (by norm, by value or by an
            adaptive clipper): clipping bounds a spike, so only non-finite
            steps are flagged. Spikes are looked for in unclipped training.

        Returns
        -------
        Event or None
            The event (with ``action`` set to the policy) for a flagged step.
            Good steps update the running statistics and reset the
            consecutive-error counter; flagged steps increment it. Vanishing
            layers never flag a step: they are reported in
            :attr:`last_warnings` (and :attr:`events`).
        """
        # checked before any state changes
        sq = _ct.check_step_sqnorms(sqnorms)
        loss = _ct.check_step_loss(loss)
        total_sq = float(np.add.reduce(sq, axis=None))  # sq.sum() without its wrapper
        norm = math.sqrt(total_sq) if total_sq >= 0 else math.nan
        thr = self.threshold()
        self.last_warnings = []
        kind = None
        if not (math.isfinite(norm) and math.isfinite(loss)):
            kind = "nonfinite"
        elif norm > thr and not clipped and norm > self._median.max():  # thr NaN: False
            kind = "spike"
        if kind is None:
            self._record(sq, norm)
            self.consecutive = 0
            if self.watches_vanishing:
                self._vanishing(int(step), int(epoch), sq, norm, names)
            return None
        self.consecutive += 1
        layer, layer_norm = self._blame(sq, kind, names)
        ev = Event(int(step), int(epoch), kind, self.policy, layer, layer_norm, norm, thr)
        self.events.append(ev)
        return ev

    def flag(self, step: int, *, epoch: int = 0, norm: float = math.nan) -> Event:
        """Flag a step as non-finite without per-layer norms (e.g. a rank reported it).

        Counts as a flagged step for the policy, as :meth:`observe` does.

        Parameters
        ----------
        step : int
            The step number (for the event).
        epoch : int, default 0
        norm : float, default NaN
            The global norm, when known.

        Returns
        -------
        Event
            Of kind ``"nonfinite"``, with no layer named.
        """
        self.consecutive += 1
        ev = Event(int(step), int(epoch), "nonfinite", self.policy, None, math.nan, norm,
                   self.threshold())
        self.events.append(ev)
        return ev

    def _record(self, sq: np.ndarray, norm: float) -> None:
        self._median.push(norm)
        L = sq.shape[0]
        if self._layers is None or self._layers.shape[1] != L:
            self._layers = np.zeros((self.window, L))
            self._pos = self._seen = 0
        np.sqrt(sq, out=self._layers[self._pos])
        self._pos = (self._pos + 1) % self.window
        self._seen = min(self._seen + 1, self.window)

    def _vanishing(self, step: int, epoch: int, sq: np.ndarray, norm: float,
                   names: Sequence[str] | None) -> None:
        key = tuple(names) if names is not None and len(names) == sq.size else \
            tuple(f"param{i}" for i in range(sq.size))
        if key != self._vanish_key:
            self._groups = _layer_groups(key)
            self._vanish_key = key
            self._vanish_runs = np.zeros(len(self._groups[0]), dtype=np.int64)
        assert self._vanish_runs is not None
        layer_names, of = self._groups
        lnorms = np.sqrt(np.bincount(of, weights=sq, minlength=len(layer_names)))
        bound = np.full(lnorms.shape, -math.inf)
        if self.vanish_threshold is not None:
            bound[:] = self.vanish_threshold
        if self.vanish_factor is not None and lnorms.size > 1:
            np.maximum(bound[:-1], lnorms[1:] / self.vanish_factor, out=bound[:-1])
        low = lnorms < bound
        runs = self._vanish_runs
        runs[low] += 1
        runs[~low] = 0
        for j in np.flatnonzero(runs == self.vanish_steps):
            ev = Event(step, epoch, "vanishing", "warn", layer_names[j], float(lnorms[j]), norm,
                       float(bound[j]))
            self.events.append(ev)
            self.last_warnings.append(ev)

    def _blame(self, sq: np.ndarray, kind: str, names: Sequence[str] | None
               ) -> tuple[str | None, float]:
        if sq.size == 0:
            return None, math.nan
        with np.errstate(invalid="ignore", over="ignore"):
            lnorms = np.sqrt(sq)
        bad = np.flatnonzero(~np.isfinite(lnorms))
        if kind == "nonfinite":
            if bad.size:
                i = int(bad[0])
            elif math.isfinite(float(np.sum(sq))):
                return None, math.nan  # only the loss is non-finite
            else:
                i = int(np.argmax(lnorms))  # finite norms whose squares overflowed
        elif self._layers is not None and self._seen and self._layers.shape[1] == sq.size:
            med = np.median(self._layers[: self._seen], axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(med > 0, lnorms / np.where(med > 0, med, 1.0), np.inf)
            ratio = np.where(lnorms > 0, ratio, 0.0)
            i = int(np.argmax(ratio))
        else:
            i = int(np.argmax(lnorms))
        name = names[i] if names is not None and i < len(names) else f"param{i}"
        return name, float(lnorms[i])

    def state_dict(self) -> dict[str, Any]:
        """Settings, running statistics and counters."""
        d: dict[str, Any] = {k: getattr(self, k) for k in _SETTINGS + _VANISH_SETTINGS}
        d.update(
            norms=np.array(self._median.order, dtype=np.float64),
            layer_norms=None if self._layers is None else self._ordered_layers(),
            consecutive=self.consecutive, rollbacks=self.rollbacks,
            vanish_names=None if self._vanish_key is None else list(self._vanish_key),
            vanish_runs=None if self._vanish_runs is None else self._vanish_runs.copy(),
        )
        return d

    def _ordered_layers(self) -> np.ndarray:
        assert self._layers is not None
        if self._seen < self.window:
            return self._layers[: self._seen].copy()
        return np.roll(self._layers, -self._pos, axis=0)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (validated before anything changes).

        The vanishing-gradient entries are optional (a state saved without
        them restores with vanishing detection off).
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        missing = [k for k in _SETTINGS + ("norms", "layer_norms", "consecutive", "rollbacks")
                   if k not in state]
        if missing:
            raise ValueError(f"state is missing {missing}")
        other = GradientMonitor(**{k: state[k] for k in _SETTINGS},
                                **{k: state[k] for k in _VANISH_SETTINGS if k in state})
        norms = np.asarray(state["norms"], dtype=np.float64)
        if norms.ndim != 1 or not np.all(np.isfinite(norms)):
            raise ValueError("state['norms'] must be a 1-d array of finite norms")
        layers = state["layer_norms"]
        if layers is not None:
            layers = np.asarray(layers, dtype=np.float64)
            if layers.ndim != 2 or layers.shape[0] > other.window:
                raise ValueError("state['layer_norms'] must be a (steps, layers) array")
        other.consecutive = _ct.int_arg(state["consecutive"], "consecutive", 0)
        other.rollbacks = _ct.int_arg(state["rollbacks"], "rollbacks", 0)
        vnames, vruns = state.get("vanish_names"), state.get("vanish_runs")
        if (vnames is None) != (vruns is None):
            raise ValueError("state['vanish_names'] and state['vanish_runs'] must both be "
                             "None or both be given")
        if vnames is not None:
            if not all(isinstance(n, str) for n in vnames):
                raise TypeError("state['vanish_names'] must be a list of str")
            key = tuple(vnames)
            groups = _layer_groups(key)
            runs = np.asarray(vruns)
            if (runs.ndim != 1 or runs.shape[0] != len(groups[0]) or runs.dtype.kind not in "iu"
                    or (runs < 0).any()):
                raise ValueError("state['vanish_runs'] must hold one count >= 0 per layer")
            other._vanish_key, other._groups = key, groups
            other._vanish_runs = runs.astype(np.int64)
        for v in norms[-other.window:]:
            other._median.push(float(v))
        if layers is not None:
            other._layers = np.zeros((other.window, layers.shape[1]))
            other._layers[: layers.shape[0]] = layers
            other._seen = layers.shape[0]
            other._pos = layers.shape[0] % other.window
        self.__dict__.update(other.__dict__)

    def __repr__(self) -> str:
        return (f"GradientMonitor(policy={self.policy!r}, factor={self.factor!r}, "
                f"window={self.window!r}, warmup={self.warmup!r})")


def update_is_bounded(optimizer: Any, clipper: Any) -> bool:
    """Whether this step's update will be clipped so that a spike is bounded (the
    ``clipped`` argument of :meth:`GradientMonitor.observe`): the optimiser clips by
    norm or value, or the clipper says that its next clip bounds a spike (an adaptive
    clipper still warming up does not)."""
    if any(getattr(optimizer, a, None) is not None for a in ("clip_norm", "clip_value")):
        return True
    return clipper is not None and bool(getattr(clipper, "bounds_spikes", True))
