"""Training that survives explosions: :func:`fit`, :class:`History`, :class:`GradientMonitor`.

:func:`fit` trains a model of :mod:`fastclip.nn` (or any object with the same
interface: ``forward``, ``backward``, ``parameters``, ``gradients``,
``parameter_names``, ``grad_sqnorms``) with an optimiser of
:mod:`fastclip.optim`. Every step it

1. runs the forward pass, the loss and the backward pass, which also records
   each gradient's sum of squares (``model.grad_sqnorms()``, no extra pass);
2. hands those sums to the :class:`GradientMonitor`, which flags the step as an
   explosion when the global norm is not finite or exceeds ``factor`` times
   its running median, names the layer responsible and applies the chosen
   policy (``"raise"``, ``"skip"`` or ``"rollback"``);
3. otherwise runs the optional adaptive clipper (:mod:`fastclip.adaptive`) and
   the optimiser step, passing the sums of squares along so that neither
   computes a norm again;
4. records the loss, pre-clip global norm, per-layer norms, learning rate and
   events in a :class:`History`.

A progress bar (tqdm) shows loss, gradient norm and learning rate; it turns
itself off when standard error is not a terminal or ``progress=False``.
"""

from __future__ import annotations

import bisect
import inspect
import math
import numbers
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastclip import _interop as _io

__all__ = [
    "POLICIES",
    "Event",
    "GradientExplosionError",
    "GradientMonitor",
    "History",
    "fit",
]

POLICIES = ("raise", "skip", "rollback")


# ---------------------------------------------------------------------------
# Events and exceptions
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One flagged training step.

    Attributes
    ----------
    step : int
        The training step (0-based count of batches seen by :func:`fit`).
    epoch : int
        The epoch of the step (0-based).
    kind : str
        ``"nonfinite"`` (a NaN/inf gradient norm or loss) or ``"spike"`` (the
        global norm exceeded ``factor`` times its running median).
    action : str
        What was done: ``"raise"``, ``"skip"``, ``"rollback"`` or ``"gave_up"``.
    layer : str or None
        The parameter held responsible (its name, e.g. ``"2.weight"``): the
        first non-finite one, or the one whose norm grew most relative to its
        own running median. None when only the loss was non-finite.
    layer_norm : float
        That parameter's gradient norm at this step.
    norm : float
        The global gradient norm (pre-clip).
    threshold : float
        ``factor`` times the running median (NaN before the monitor warmed up).
    """

    step: int
    epoch: int
    kind: str
    action: str
    layer: str | None
    layer_norm: float
    norm: float
    threshold: float

    @property
    def message(self) -> str:
        """A one-line human-readable description."""
        where = f"layer {self.layer!r} (gradient norm {self.layer_norm:.4g})" if self.layer else \
            "the loss"
        if self.kind == "nonfinite":
            what = f"non-finite gradient in {where}; global norm {self.norm:.4g}"
        else:
            what = (f"gradient explosion in {where}; global norm {self.norm:.4g} > "
                    f"threshold {self.threshold:.4g}")
        return f"step {self.step} (epoch {self.epoch + 1}): {what} -> {self.action}"

    def __str__(self) -> str:
        return self.message


class GradientExplosionError(FloatingPointError):
    """Raised by :func:`fit` when the monitor's policy stops training.

    With policy ``"raise"`` at the first flagged step; with ``"skip"`` after
    more than ``max_consecutive_errors`` consecutive flagged steps; with
    ``"rollback"`` after ``max_rollbacks`` rollbacks. The message names the
    step and the layer.

    Attributes
    ----------
    event : Event
        The step that stopped training.
    history : History or None
        Everything recorded up to that step (the model keeps its last
        parameters, which were never updated with the flagged gradient).
    """

    def __init__(self, message: str, event: Event, history: History | None = None) -> None:
        super().__init__(message)
        self.event = event
        self.history = history

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.args[0], self.event, self.history))

    @property
    def step(self) -> int:
        return self.event.step

    @property
    def layer(self) -> str | None:
        return self.event.layer


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------


def _int_arg(value: Any, name: str, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if int(value) < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return int(value)


def _real_arg(value: Any, name: str, low: float, *, inclusive: bool = False,
              high: float | None = None) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    ok = math.isfinite(v) and (v >= low if inclusive else v > low)
    if ok and high is not None:
        ok = v < high
    if not ok:
        rng = f"{'>=' if inclusive else '>'} {low:g}" + ("" if high is None else f" and < {high:g}")
        raise ValueError(f"{name} must be finite and {rng}, got {value!r}")
    return v


# ---------------------------------------------------------------------------
# GradientMonitor
# ---------------------------------------------------------------------------


class _RunningMedian:
    """Median of the last ``window`` values: a deque plus a sorted list."""

    __slots__ = ("order", "sorted", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.order: deque[float] = deque()
        self.sorted: list[float] = []

    def __len__(self) -> int:
        return len(self.order)

    def push(self, v: float) -> None:
        self.order.append(v)
        bisect.insort(self.sorted, v)
        if len(self.order) > self.window:
            old = self.order.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]

    def max(self) -> float:
        return self.sorted[-1] if self.sorted else math.nan

    def median(self) -> float:
        s, n = self.sorted, len(self.sorted)
        if n == 0:
            return math.nan
        h = n // 2
        return s[h] if n % 2 else 0.5 * (s[h - 1] + s[h])


class GradientMonitor:
    """Detects exploding gradients from per-layer norms and decides what to do.

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
      spikes (clipping bounds them; :func:`fit` says so with ``clipped=True``).

    Flagged steps do not enter the running statistics. :func:`fit` applies the
    ``policy``:

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

    Raises
    ------
    ValueError
        An unknown policy or an out-of-range parameter (the message names it).

    Examples
    --------
    Standalone, in a hand-written loop::

        mon = GradientMonitor("skip")
        event = mon.observe(step, model.grad_sqnorms(), loss=loss,
                            names=model.parameter_names())
        if event is None:
            opt.step(model.gradients(), sqnorms=model.grad_sqnorms())
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
    ) -> None:
        if not isinstance(policy, str) or policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        self.policy = policy
        self.factor = _real_arg(factor, "factor", 1.0)
        self.window = _int_arg(window, "window", 1)
        self.warmup = _int_arg(warmup, "warmup", 1)
        self.max_consecutive_errors = _int_arg(max_consecutive_errors,
                                               "max_consecutive_errors", 0)
        self.lr_factor = _real_arg(lr_factor, "lr_factor", 0.0, high=1.0)
        self.checkpoint_every = _int_arg(checkpoint_every, "checkpoint_every", 1)
        self.max_rollbacks = _int_arg(max_rollbacks, "max_rollbacks", 1)
        self.reset()

    def reset(self) -> None:
        """Forget the running statistics and counters."""
        self._median = _RunningMedian(self.window)
        self._layers: np.ndarray | None = None  # ring of per-layer norms (window, L)
        self._pos = 0
        self._seen = 0
        self.consecutive = 0
        self.rollbacks = 0
        self.events: list[Event] = []

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
            consecutive-error counter; flagged steps increment it.
        """
        sq = np.asarray(sqnorms, dtype=np.float64)
        total_sq = float(sq.sum())
        norm = math.sqrt(total_sq) if total_sq >= 0 else math.nan
        thr = self.threshold()
        kind = None
        if not (math.isfinite(norm) and math.isfinite(loss)):
            kind = "nonfinite"
        elif norm > thr and not clipped and norm > self._median.max():  # thr NaN: False
            kind = "spike"
        if kind is None:
            self._record(sq, norm)
            self.consecutive = 0
            return None
        self.consecutive += 1
        layer, layer_norm = self._blame(sq, kind, names)
        ev = Event(int(step), int(epoch), kind, self.policy, layer, layer_norm, norm, thr)
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
        return {
            "policy": self.policy, "factor": self.factor, "window": self.window,
            "warmup": self.warmup, "max_consecutive_errors": self.max_consecutive_errors,
            "lr_factor": self.lr_factor, "checkpoint_every": self.checkpoint_every,
            "max_rollbacks": self.max_rollbacks,
            "norms": np.array(self._median.order, dtype=np.float64),
            "layer_norms": None if self._layers is None else self._ordered_layers(),
            "consecutive": self.consecutive, "rollbacks": self.rollbacks,
        }

    def _ordered_layers(self) -> np.ndarray:
        assert self._layers is not None
        if self._seen < self.window:
            return self._layers[: self._seen].copy()
        return np.roll(self._layers, -self._pos, axis=0)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (validated before anything changes)."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        keys = ("policy", "factor", "window", "warmup", "max_consecutive_errors", "lr_factor",
                "checkpoint_every", "max_rollbacks")
        missing = [k for k in keys + ("norms", "layer_norms", "consecutive", "rollbacks")
                   if k not in state]
        if missing:
            raise ValueError(f"state is missing {missing}")
        other = GradientMonitor(**{k: state[k] for k in keys})
        norms = np.asarray(state["norms"], dtype=np.float64)
        if norms.ndim != 1 or not np.all(np.isfinite(norms)):
            raise ValueError("state['norms'] must be a 1-d array of finite norms")
        layers = state["layer_norms"]
        if layers is not None:
            layers = np.asarray(layers, dtype=np.float64)
            if layers.ndim != 2 or layers.shape[0] > other.window:
                raise ValueError("state['layer_norms'] must be a (steps, layers) array")
        other.consecutive = _int_arg(state["consecutive"], "consecutive", 0)
        other.rollbacks = _int_arg(state["rollbacks"], "rollbacks", 0)
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


# ---------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------


class History:
    """What :func:`fit` recorded: per step, per epoch, and the events.

    Per step (arrays of length :attr:`n_steps`): ``step``, ``epoch``, ``loss``
    (the mini-batch loss), ``grad_norm`` (global L2 norm before clipping),
    ``layer_norms`` (``(n_steps, n_params)``: each parameter's gradient norm,
    columns named by :attr:`layer_names`), ``lr`` (the learning rate the step
    used or would have used) and ``applied`` (False for skipped and rolled-back
    steps). Per epoch: ``epoch_loss`` (mean loss of the applied steps),
    ``val_loss``, ``val_accuracy`` (NaN without validation data / for
    non-classification losses) and ``epoch_time`` (seconds). :attr:`events`
    lists every flagged step (:class:`Event`).
    """

    _STEP_FIELDS = (("step", np.int64), ("epoch", np.int64), ("loss", np.float64),
                    ("grad_norm", np.float64), ("lr", np.float64), ("applied", np.bool_))

    def __init__(self, layer_names: Sequence[str] = ()) -> None:
        self.layer_names = list(layer_names)
        self._n = 0
        self._cap = 0
        self._cols: dict[str, np.ndarray] = {}
        self._layers = np.zeros((0, len(self.layer_names)))
        self._grow(256)
        self._epoch: dict[str, list[float]] = {
            "epoch_loss": [], "val_loss": [], "val_accuracy": [], "epoch_time": []}
        self.events: list[Event] = []
        self.stopped_early = False

    def _grow(self, cap: int) -> None:
        for name, dt in self._STEP_FIELDS:
            new = np.zeros(cap, dtype=dt)
            if name in self._cols:
                new[: self._n] = self._cols[name][: self._n]
            self._cols[name] = new
        layers = np.zeros((cap, len(self.layer_names)))
        layers[: self._n] = self._layers[: self._n]
        self._layers = layers
        self._cap = cap

    def record_step(self, step: int, epoch: int, loss: float, grad_norm: float, lr: float,
                    applied: bool, sqnorms: np.ndarray) -> None:
        """Append one step (``sqnorms``: per-parameter sums of squares)."""
        n = self._n
        if n == self._cap:
            self._grow(2 * self._cap)
        c = self._cols
        c["step"][n] = step
        c["epoch"][n] = epoch
        c["loss"][n] = loss
        c["grad_norm"][n] = grad_norm
        c["lr"][n] = lr
        c["applied"][n] = applied
        if sqnorms.shape[0] == self._layers.shape[1]:
            with np.errstate(invalid="ignore"):
                np.sqrt(sqnorms, out=self._layers[n])
        self._n = n + 1

    def record_epoch(self, loss: float, val_loss: float, val_accuracy: float,
                     seconds: float) -> None:
        """Append one epoch's summary."""
        for k, v in (("epoch_loss", loss), ("val_loss", val_loss),
                     ("val_accuracy", val_accuracy), ("epoch_time", seconds)):
            self._epoch[k].append(float(v))

    @property
    def n_steps(self) -> int:
        return self._n

    @property
    def n_epochs(self) -> int:
        return len(self._epoch["epoch_loss"])

    def __len__(self) -> int:
        return self._n

    def __getattr__(self, name: str) -> np.ndarray:
        cols = self.__dict__.get("_cols", {})
        if name in cols:
            return cols[name][: self._n].copy()
        ep = self.__dict__.get("_epoch", {})
        if name in ep:
            return np.array(ep[name], dtype=np.float64)
        raise AttributeError(name)

    @property
    def layer_norms(self) -> np.ndarray:
        return self._layers[: self._n].copy()

    @property
    def n_explosions(self) -> int:
        """The number of flagged steps."""
        return len(self.events)

    def to_dict(self) -> dict[str, np.ndarray]:
        """Everything as NumPy arrays.

        Returns
        -------
        dict of str to ndarray
            The per-step arrays (``step``, ``epoch``, ``loss``, ``grad_norm``,
            ``lr``, ``applied``, ``layer_norms``), ``layer_names``, the
            per-epoch arrays (``epoch_loss``, ``val_loss``, ``val_accuracy``,
            ``epoch_time``) and the events as parallel arrays
            (``event_step``, ``event_epoch``, ``event_kind``,
            ``event_action``, ``event_layer``, ``event_layer_norm``,
            ``event_norm``, ``event_threshold``).
        """
        d: dict[str, np.ndarray] = {k: getattr(self, k) for k, _ in self._STEP_FIELDS}
        d["layer_norms"] = self.layer_norms
        d["layer_names"] = np.array(self.layer_names, dtype=str)
        for k in self._epoch:
            d[k] = np.array(self._epoch[k], dtype=np.float64)
        ev = self.events
        d["event_step"] = np.array([e.step for e in ev], dtype=np.int64)
        d["event_epoch"] = np.array([e.epoch for e in ev], dtype=np.int64)
        d["event_kind"] = np.array([e.kind for e in ev], dtype=str)
        d["event_action"] = np.array([e.action for e in ev], dtype=str)
        d["event_layer"] = np.array([e.layer or "" for e in ev], dtype=str)
        d["event_layer_norm"] = np.array([e.layer_norm for e in ev], dtype=np.float64)
        d["event_norm"] = np.array([e.norm for e in ev], dtype=np.float64)
        d["event_threshold"] = np.array([e.threshold for e in ev], dtype=np.float64)
        return d

    def to_pandas(self) -> Any:
        """The per-step record as a pandas DataFrame (one row per step).

        Columns: ``step``, ``epoch``, ``loss``, ``grad_norm``, ``lr``,
        ``applied`` and ``norm[<layer name>]`` per parameter.

        Raises
        ------
        ImportError
            When pandas is not installed.
        """
        try:
            import pandas as pd  # type: ignore[import-untyped]
        except ImportError as exc:
            raise ImportError("History.to_pandas needs pandas (pip install pandas); "
                              "History.to_dict gives the same data as NumPy arrays") from exc
        data: dict[str, Any] = {k: getattr(self, k) for k, _ in self._STEP_FIELDS}
        norms = self.layer_norms
        for j, name in enumerate(self.layer_names):
            data[f"norm[{name}]"] = norms[:, j]
        return pd.DataFrame(data)

    def __repr__(self) -> str:
        return (f"History({self._n} steps, {self.n_epochs} epochs, "
                f"{len(self.events)} events)")


# ---------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------

_LOSSES = ("cross_entropy", "softmax_cross_entropy", "mse")


def _resolve_loss(loss: Any) -> tuple[Callable[[np.ndarray, np.ndarray], tuple[float, Any]],
                                      bool]:
    """(loss function, is_classification)."""
    if isinstance(loss, str):
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES} or a callable, got {loss!r}")
        from fastclip import nn

        if loss == "mse":
            return nn.mse, False
        return nn.softmax_cross_entropy, True
    if callable(loss):
        name = getattr(loss, "__name__", "")
        return loss, name == "softmax_cross_entropy"
    raise TypeError(f"loss must be one of {_LOSSES} or a callable, got {type(loss).__name__}")


def _check_model(model: Any) -> None:
    needed = ("forward", "backward", "parameters", "gradients", "grad_sqnorms")
    missing = [m for m in needed if not callable(getattr(model, m, None))]
    if missing:
        raise TypeError(
            f"model must provide {', '.join(needed)} (like fastclip.nn.MLP); "
            f"{type(model).__name__} lacks {', '.join(missing)}"
        )


def _first_nonfinite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind != "f" or bool(np.isfinite(arr).all()):
        return
    where = np.argwhere(~np.isfinite(arr))[0]
    val = arr[tuple(where)]
    if arr.ndim == 1:
        pos = f"row {int(where[0])}"
    elif arr.ndim == 2:
        pos = f"row {int(where[0])}, column {int(where[1])}"
    else:
        pos = f"index {tuple(int(i) for i in where)}"
    raise ValueError(
        f"{name} contains {float(val)!r} at {pos}: training data must be finite "
        "(remove or impute the missing values first)"
    )


def _check_X(X: Any, name: str, dtype: np.dtype) -> np.ndarray:
    if not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
        except Exception as exc:  # noqa: BLE001  (ragged lists and the like)
            raise TypeError(f"{name} must be a 2-d array of numbers: {exc}") from None
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-d (samples, features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    _first_nonfinite(X, name)
    return np.ascontiguousarray(X, dtype=dtype)


def _check_y(y: Any, name: str, n: int, n_out: int, classification: bool,
             dtype: np.dtype) -> np.ndarray:
    if not isinstance(y, np.ndarray):
        try:
            y = np.asarray(y)
        except Exception as exc:  # noqa: BLE001
            raise TypeError(f"{name} must be an array: {exc}") from None
    if y.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers, got dtype {y.dtype}")
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(
            f"{name} has {y.shape[0] if y.ndim else 0} rows but X has {n}; they must match"
        )
    _first_nonfinite(y, name)
    if classification and y.ndim == 1:
        if y.dtype.kind == "f" and not np.all(y == np.round(y)):
            bad = int(np.flatnonzero(y != np.round(y))[0])
            raise ValueError(f"{name} holds class labels; row {bad} is {float(y[bad])!r}, "
                             "not an integer")
        yi = y.astype(np.int64)
        out_of_range = (yi < 0) | (yi >= n_out)
        if out_of_range.any():
            bad = int(np.flatnonzero(out_of_range)[0])
            raise ValueError(
                f"{name}[{bad}] is {yi[bad]}, not a class label in [0, {n_out}) "
                f"(the model has {n_out} outputs)"
            )
        return yi
    want = (n, n_out)
    if y.ndim == 1 and n_out == 1 and not classification:
        y = y.reshape(n, 1)
    if y.shape != want:
        raise ValueError(f"{name} must have shape {want} to match the model's output, got "
                         f"{y.shape}")
    return np.ascontiguousarray(y, dtype=dtype)


def _output_size(model: Any, X: np.ndarray) -> int:
    try:
        out = model.forward(X[:1])
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"X has {X.shape[1]} features per row and the model rejected it: {exc}"
        ) from None
    out = np.asarray(out)
    return int(out.shape[-1]) if out.ndim == 2 else 1


def _resolve_monitor(monitor: Any) -> GradientMonitor | None:
    if monitor is None or isinstance(monitor, GradientMonitor):
        return monitor
    if isinstance(monitor, str):
        if monitor not in POLICIES:
            raise ValueError(
                f"monitor must be a policy name {POLICIES}, a GradientMonitor or None, "
                f"got {monitor!r}"
            )
        return GradientMonitor(monitor)
    raise TypeError(f"monitor must be a policy name {POLICIES}, a GradientMonitor or None, "
                    f"got {type(monitor).__name__}")


_CLIPPERS = ("agc", "autoclip", "zclip")


def _resolve_clipper(clipper: Any) -> Any:
    if clipper is None:
        return None
    if isinstance(clipper, str):
        from fastclip import adaptive

        key = clipper.lower()
        if key not in _CLIPPERS:
            raise ValueError(f"clipper must be one of {_CLIPPERS}, an object with a clip_ "
                             f"method, or None; got {clipper!r}")
        return {"agc": adaptive.AGC, "autoclip": adaptive.AutoClip, "zclip": adaptive.ZClip}[key]()
    if not callable(getattr(clipper, "clip_", None)):
        raise TypeError(f"clipper must be one of {_CLIPPERS}, an object with a clip_ method "
                        f"(fastclip.AGC, AutoClip, ZClip) or None; got {type(clipper).__name__}")
    return clipper


def _make_bar(progress: Any, total: int, desc: str | None) -> Any:
    if not progress:
        return None
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="step", leave=True, dynamic_ncols=True)


def _evaluate(model: Any, X: np.ndarray, y: np.ndarray, loss_fn: Callable,
              classification: bool, batch: int = 2048) -> tuple[float, float]:
    total, correct, n = 0.0, 0, X.shape[0]
    for s in range(0, n, batch):
        out = model.forward(X[s:s + batch])
        lo, _ = loss_fn(out, y[s:s + batch])
        m = out.shape[0]
        total += float(lo) * m
        if classification:
            pred = np.argmax(out, axis=1)
            tgt = y[s:s + batch] if y.ndim == 1 else np.argmax(y[s:s + batch], axis=1)
            correct += int(np.count_nonzero(pred == tgt))
    return total / n, (correct / n if classification else math.nan)


class _Checkpoint:
    """Last good parameters, optimiser state and clipper state (for rollback)."""

    def __init__(self, params: list[np.ndarray]) -> None:
        self.params = params
        self.saved = [np.array(p, copy=True) for p in params]
        self.opt_state: Any = None
        self.clip_state: Any = None

    def save(self, opt: Any, clipper: Any) -> None:
        for dst, src in zip(self.saved, self.params):
            np.copyto(dst, src)
        self.opt_state = opt.state_dict() if hasattr(opt, "state_dict") else None
        self.clip_state = (clipper.state_dict() if clipper is not None
                           and hasattr(clipper, "state_dict") else None)

    def restore(self, opt: Any, clipper: Any) -> None:
        for dst, src in zip(self.params, self.saved):
            np.copyto(dst, src)
        if self.opt_state is not None:
            opt.load_state_dict(self.opt_state)
        if self.clip_state is not None:
            clipper.load_state_dict(self.clip_state)


def fit(
    model: Any,
    X: Any,
    y: Any,
    loss: Any = "cross_entropy",
    optimizer: Any = None,
    epochs: int = 10,
    batch_size: int = 32,
    clipper: Any = None,
    validation: tuple[Any, Any] | None = None,
    monitor: Any = "skip",
    callbacks: Iterable[Callable[[int, History], Any]] = (),
    progress: bool = True,
    seed: Any = None,
    comm: Any = None,
    *,
    desc: str | None = None,
) -> History:
    """Train ``model`` on ``(X, y)`` with mini-batches, monitoring every step.

    Parameters
    ----------
    model : fastclip.nn.MLP or compatible
        Provides ``forward``, ``backward``, ``parameters``, ``gradients``,
        ``grad_sqnorms`` (and optionally ``parameter_names``, ``dtype``).
    X : array_like, shape (n_samples, n_features)
        Real numbers; cast once to the model's dtype. Must be finite.
    y : array_like
        For ``"cross_entropy"``: integer labels ``(n_samples,)`` in
        ``[0, n_outputs)`` or class probabilities ``(n_samples, n_outputs)``;
        for ``"mse"``: targets ``(n_samples, n_outputs)`` (or
        ``(n_samples,)`` for one output). Must be finite.
    loss : {"cross_entropy", "softmax_cross_entropy", "mse"} or callable
        A callable takes ``(output, target)`` and returns ``(loss, d_output)``
        like :func:`fastclip.nn.softmax_cross_entropy`.
    optimizer : fastclip.optim.Optimizer, optional
        Built on ``model.parameters()``. Default: ``Adam(model.parameters())``.
    epochs : int, default 10
        ``>= 1``.
    batch_size : int, default 32
        ``>= 1``; the last batch of an epoch may be smaller.
    clipper : {"agc", "autoclip", "zclip"} or clipper, optional
        An adaptive clipper (:class:`fastclip.AGC`, :class:`fastclip.AutoClip`,
        :class:`fastclip.ZClip`, or any object with
        ``clip_(grads, params, sqnorms=...)``), run before the optimiser step.
        A name builds one with default settings.
    validation : (X_val, y_val), optional
        Evaluated after every epoch (loss, and accuracy for classification).
    monitor : {"raise", "skip", "rollback"}, GradientMonitor or None, default "skip"
        Explosion policy (see :class:`GradientMonitor`). The default drops
        flagged updates and stops after more than 5 in a row; ``"raise"``
        stops at the first one. ``None`` disables the
        monitor; a non-finite gradient then makes the optimiser raise
        :class:`FloatingPointError`.
    callbacks : iterable of callables
        Called as ``cb(epoch, history)`` after every epoch; a callback that
        returns True stops training (``history.stopped_early`` is then True).
        Use one to drive :func:`fastclip.schedules.reduce_on_plateau`.
    progress : bool, default True
        Show a tqdm progress bar (when tqdm is installed and standard error is
        a terminal).
    seed : None, int or numpy.random.Generator
        Seeds the shuffling of the mini-batches.
    comm : mpi4py communicator, optional
        Data-parallel training over MPI through :mod:`fastclip.distributed`
        (each rank processes its shard of every batch; the gradients are
        averaged before the monitor and the optimiser see them).
    desc : str, optional
        Label of the progress bar.

    Returns
    -------
    History
        Per-step loss, pre-clip global norm, per-layer norms, learning rate,
        per-epoch summaries and events.

    Raises
    ------
    TypeError
        A model/optimiser/clipper without the needed methods, non-numeric data.
    ValueError
        Mismatched shapes, non-finite data (the message gives the row and
        column), labels out of range, bad ``epochs``/``batch_size``, an
        unknown loss, policy or clipper name.
    GradientExplosionError
        When the monitor's policy stops training (see :class:`GradientMonitor`).
    """
    # ---- validate everything before training ---------------------------------------
    # (with comm, a local error is agreed on by every rank before the first collective)
    if comm is not None:
        from fastclip import distributed  # type: ignore[attr-defined]  # (branch mpi)

        distributed.check_comm(comm)
    local_error: BaseException | None = None
    try:
        _check_model(model)
        loss_fn, classification = _resolve_loss(loss)
        epochs = _int_arg(epochs, "epochs", 1)
        batch_size = _int_arg(batch_size, "batch_size", 1)
        mon = _resolve_monitor(monitor)
        clip = _resolve_clipper(clipper)
        cbs = list(callbacks)
        for i, cb in enumerate(cbs):
            if not callable(cb):
                raise TypeError(f"callbacks[{i}] must be callable, got {type(cb).__name__}")
        rng = seed if isinstance(seed, np.random.Generator) else None
        if rng is None:
            if seed is not None and (isinstance(seed, (bool, np.bool_))
                                     or not isinstance(seed, numbers.Integral)):
                raise TypeError(f"seed must be None, an int or a numpy.random.Generator, "
                                f"got {type(seed).__name__}")
            rng = np.random.default_rng(None if seed is None else int(seed))
        dtype = np.dtype(getattr(model, "dtype", np.float64))
        X = _check_X(X, "X", dtype)
        n_out = _output_size(model, X)
        y = _check_y(y, "y", X.shape[0], n_out, classification, dtype)
        if validation is not None:
            if not isinstance(validation, (tuple, list)) or len(validation) != 2:
                raise TypeError("validation must be a pair (X_val, y_val)")
            Xv = _check_X(validation[0], "validation[0]", dtype)
            if Xv.shape[1] != X.shape[1]:
                raise ValueError(f"validation[0] has {Xv.shape[1]} features but X has {X.shape[1]}")
            yv = _check_y(validation[1], "validation[1]", Xv.shape[0], n_out, classification,
                          dtype)
        params = _io.values(model.parameters())
        if optimizer is None:
            from fastclip.optim import Adam

            optimizer = Adam(params)
        if not callable(getattr(optimizer, "step", None)):
            raise TypeError(f"optimizer must be a fastclip.optim optimiser, got "
                            f"{type(optimizer).__name__}")
        opt_params = getattr(optimizer, "params", None)
        if opt_params is not None and (len(opt_params) != len(params) or any(
                a is not b for a, b in zip(opt_params, params))):
            raise ValueError("optimizer must be built on model.parameters() (the same arrays, in "
                             "the same order)")
        if mon is not None and mon.policy == "rollback" and not hasattr(optimizer, "lr_scale"):
            raise TypeError("monitor policy 'rollback' needs an optimiser with lr_scale")
        try:
            backward_kw = ({"input_grad": False}
                           if "input_grad" in inspect.signature(model.backward).parameters else {})
        except (TypeError, ValueError):  # builtins without a signature
            backward_kw = {}
        names = (list(model.parameter_names()) if callable(getattr(model, "parameter_names", None))
                 else [f"param{i}" for i in range(len(params))])
    except Exception as exc:
        if comm is None:
            raise
        local_error = exc
    if comm is not None:
        distributed._agree_or_raise(comm, local_error)
    assert rng is not None  # (for mypy: the validation above set it or raised)

    reducer = None
    if comm is not None:
        reducer, rng = distributed.fit_setup(model, X, y, rng, comm)
        if comm.Get_rank() != 0:
            progress = False

    # ---- train ---------------------------------------------------------------------
    n = X.shape[0]
    steps_per_epoch = -(-n // batch_size)
    history = History(names)
    checkpoint = None
    if mon is not None and mon.policy == "rollback":
        checkpoint = _Checkpoint(params)
        checkpoint.save(optimizer, clip)
    good_since_ckpt = 0
    clips = clip is not None or any(
        getattr(optimizer, a, None) is not None for a in ("clip_norm", "clip_value"))
    needs_params = bool(getattr(clip, "requires_params", False))
    bar = _make_bar(progress, epochs * steps_per_epoch, desc)
    step = 0
    last_post = 0.0
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            perm = rng.permutation(n)
            loss_sum, loss_count = 0.0, 0
            for b in range(steps_per_epoch):
                idx = perm[b * batch_size:(b + 1) * batch_size]
                if reducer is not None:
                    idx = idx[distributed.shard_slice(len(idx), comm)]
                xb, yb = X[idx], y[idx]
                out = model.forward(xb)
                lo, dout = loss_fn(out, yb)
                lo = float(lo)
                model.backward(dout, **backward_kw)
                grads = model.gradients()
                if reducer is not None:
                    res = reducer.reduce_(grads, weight=len(idx), value=lo,
                                          sqnorms=model.grad_sqnorms())
                    lo = res.value
                    from fastclip.clip import array_norms

                    sq = array_norms(grads) ** 2
                else:
                    sq = np.asarray(model.grad_sqnorms(), dtype=np.float64)
                total = float(sq.sum())
                gnorm = math.sqrt(total) if total >= 0 else math.nan
                lr = float(getattr(optimizer, "lr", math.nan))
                ev = None
                if mon is not None:
                    ev = mon.observe(step, sq, loss=lo, names=names, epoch=epoch,
                                     clipped=clips)
                if ev is None:
                    if clip is not None:
                        clip.clip_(grads, params if needs_params else None, sqnorms=sq)
                        post = getattr(clip, "last_sqnorms", None)
                        post = post if post is not None and len(post) == len(sq) else None
                    else:
                        post = sq
                    optimizer.step(grads, sqnorms=post)
                    history.record_step(step, epoch, lo, gnorm, lr, True, sq)
                    loss_sum += lo
                    loss_count += 1
                    if checkpoint is not None:
                        good_since_ckpt += 1
                        if good_since_ckpt >= mon.checkpoint_every:  # type: ignore[union-attr]
                            checkpoint.save(optimizer, clip)
                            good_since_ckpt = 0
                else:
                    history.record_step(step, epoch, lo, gnorm, lr, False, sq)
                    ev = _apply_policy(mon, ev, optimizer, clip, checkpoint, history)  # type: ignore[arg-type]
                    good_since_ckpt = 0
                step += 1
                if bar is not None:
                    bar.update(1)
                    now = time.perf_counter()
                    if now - last_post > 0.2:
                        bar.set_postfix(loss=f"{lo:.4g}", norm=f"{gnorm:.3g}", lr=f"{lr:.3g}",
                                        refresh=False)
                        last_post = now
            if bar is not None and history.n_steps:  # the epoch's last values, always shown
                bar.set_postfix(loss=f"{lo:.4g}", norm=f"{gnorm:.3g}", lr=f"{lr:.3g}")
            val_loss = val_acc = math.nan
            if validation is not None:
                val_loss, val_acc = _evaluate(model, Xv, yv, loss_fn, classification)
            history.record_epoch(loss_sum / loss_count if loss_count else math.nan, val_loss,
                                 val_acc, time.perf_counter() - t0)
            stop = False
            for cb in cbs:
                if cb(epoch, history):
                    stop = True
            if stop:
                history.stopped_early = True
                break
    finally:
        if bar is not None:
            bar.close()
    return history


def _apply_policy(mon: GradientMonitor, ev: Event, optimizer: Any, clip: Any,
                  checkpoint: _Checkpoint | None, history: History) -> Event:
    """Carry out the monitor's policy for a flagged step (raises to stop)."""
    if mon.policy == "raise":
        history.events.append(ev)
        raise GradientExplosionError(
            f"{ev.message}: training stopped (monitor policy 'raise'; use 'skip' or "
            "'rollback', a lower learning rate, or gradient clipping)", ev, history)
    if mon.policy == "skip":
        if mon.consecutive > mon.max_consecutive_errors:
            ev = _replace_action(mon, ev, "gave_up")
            history.events.append(ev)
            raise GradientExplosionError(
                f"{ev.message}: gave up after {mon.consecutive} consecutive flagged steps "
                f"(max_consecutive_errors={mon.max_consecutive_errors})", ev, history)
        history.events.append(ev)
        return ev
    # rollback
    if mon.rollbacks >= mon.max_rollbacks:
        ev = _replace_action(mon, ev, "gave_up")
        history.events.append(ev)
        raise GradientExplosionError(
            f"{ev.message}: gave up after {mon.rollbacks} rollbacks "
            f"(max_rollbacks={mon.max_rollbacks})", ev, history)
    assert checkpoint is not None
    scale = optimizer.lr_scale * mon.lr_factor
    checkpoint.restore(optimizer, clip)
    optimizer.lr_scale = scale
    mon.rollbacks += 1
    history.events.append(ev)
    return ev


def _replace_action(mon: GradientMonitor, ev: Event, action: str) -> Event:
    new = Event(ev.step, ev.epoch, ev.kind, action, ev.layer, ev.layer_norm, ev.norm,
                ev.threshold)
    if mon.events and mon.events[-1] is ev:
        mon.events[-1] = new
    return new
