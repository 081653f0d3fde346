"""What :func:`fastclip.train.fit` records: :class:`History`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fastclip.train.events import Event

__all__ = ["History"]


class History:
    """What :func:`fit` recorded: per step, per epoch, and the events.

    :func:`fit` returns one (and attaches the history so far to an exception that
    stops it, as ``exc.history``). Every per-step and per-epoch record is read as
    an attribute and returned as a new NumPy array, so it can be kept or modified
    without touching the history.

    Parameters
    ----------
    layer_names : sequence of str, optional
        The names of the model's parameters (``model.parameter_names()``, such
        as ``"0.weight"``): the columns of :attr:`layer_norms`.

    Attributes
    ----------
    step, epoch : ndarray of int64, shape (n_steps,)
        The global step number and the epoch of each step.
    loss : ndarray of float64, shape (n_steps,)
        The mini-batch loss.
    grad_norm : ndarray of float64, shape (n_steps,)
        The global L2 norm of the gradients before clipping.
    layer_norms : ndarray of float64, shape (n_steps, n_params)
        Each parameter's gradient norm (before clipping), columns named by
        :attr:`layer_names`.
    lr : ndarray of float64, shape (n_steps,)
        The learning rate the step used, or would have used.
    applied : ndarray of bool, shape (n_steps,)
        False for skipped and rolled-back steps.
    epoch_loss : ndarray of float64, shape (n_epochs,)
        The mean loss of the epoch's applied steps (with ``fit(sample_weight=...)``,
        weighted by the sum of each batch's sample weights).
    val_loss, val_accuracy : ndarray of float64, shape (n_epochs,)
        On the validation data; NaN without validation data (accuracy: also for
        losses that are not classifications).
    epoch_time : ndarray of float64, shape (n_epochs,)
        Seconds per epoch.
    epsilon : ndarray of float64, shape (n_epochs,)
        With ``fit(..., privacy=...)``: the epsilon of the (epsilon, delta)-DP
        guarantee spent up to the end of each epoch; NaN otherwise.
    events : list of Event
        Every flagged step and every vanishing-gradient report (:class:`Event`).
    layer_names : list of str
    n_steps, n_epochs : int
    n_explosions : int
        The number of flagged steps.
    privacy : dict or None
        For a private run (``fit(privacy=...)``): ``noise_multiplier``,
        ``sample_rate``, ``max_grad_norm``, ``delta``, ``accountant`` and
        ``expected_batch_size``; when training ends or stops, ``steps`` (the
        steps accounted) and ``epsilon_spent`` (their epsilon, which counts a
        partial last epoch that :attr:`epsilon` does not); None otherwise.

    See Also
    --------
    fit, GradientMonitor

    Examples
    --------
    >>> import numpy as np, fastclip
    >>> from fastclip import nn, optim
    >>> X = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(np.int64)
    >>> model = nn.MLP([4, 8, 2], rng=0)
    >>> h = fastclip.fit(model, X, y, optimizer=optim.SGD(model.parameters(), lr=0.1),
    ...                  epochs=2, batch_size=16, progress=False, seed=0)
    >>> h.n_steps, h.n_epochs, h.grad_norm.shape, h.layer_norms.shape
    (8, 2, (8,), (8, 4))
    >>> h.layer_names
    ['0.weight', '0.bias', '1.weight', '1.bias']
    """

    _STEP_FIELDS = (("step", np.int64), ("epoch", np.int64), ("loss", np.float64),
                    ("grad_norm", np.float64), ("lr", np.float64), ("applied", np.bool_))

    def __init__(self, layer_names: Sequence[str] = ()) -> None:
        self.layer_names = list(layer_names)
        self._n = 0
        self._cap = 0
        self._cols: dict[str, np.ndarray] = {}
        self._step_cols: tuple[np.ndarray, ...] = ()
        # per step, each parameter's sum of squares (float64); :attr:`layer_norms`
        # takes the square roots when read, so that recording a step is a row copy
        self._sq = np.zeros((0, len(self.layer_names)))
        self._grow(256)
        self._epoch: dict[str, list[float]] = {
            "epoch_loss": [], "val_loss": [], "val_accuracy": [], "epoch_time": [],
            "epsilon": []}
        self.events: list[Event] = []
        self.stopped_early = False
        self.privacy: dict[str, Any] | None = None

    def _grow(self, cap: int) -> None:
        for name, dt in self._STEP_FIELDS:
            new = np.zeros(cap, dtype=dt)
            if name in self._cols:
                new[: self._n] = self._cols[name][: self._n]
            self._cols[name] = new
        # the columns in the order of record_step's arguments
        self._step_cols = tuple(self._cols[name] for name, _ in self._STEP_FIELDS)
        sq = np.zeros((cap, len(self.layer_names)))
        sq[: self._n] = self._sq[: self._n]
        self._sq = sq
        self._cap = cap

    def record_step(self, step: int, epoch: int, loss: float, grad_norm: float, lr: float,
                    applied: bool, sqnorms: np.ndarray) -> None:
        """Append one step (``sqnorms``: per-parameter sums of squares, kept in float64)."""
        n = self._n
        if n == self._cap:
            self._grow(2 * self._cap)
        c_step, c_epoch, c_loss, c_norm, c_lr, c_applied = self._step_cols
        c_step[n] = step
        c_epoch[n] = epoch
        c_loss[n] = loss
        c_norm[n] = grad_norm
        c_lr[n] = lr
        c_applied[n] = applied
        sq = self._sq
        if sqnorms.shape[0] == sq.shape[1]:
            sq[n] = sqnorms
        self._n = n + 1

    def record_epoch(self, loss: float, val_loss: float, val_accuracy: float,
                     seconds: float, epsilon: float = float("nan")) -> None:
        """Append one epoch's summary (``epsilon``: the privacy spent so far, or NaN)."""
        for k, v in (("epoch_loss", loss), ("val_loss", val_loss),
                     ("val_accuracy", val_accuracy), ("epoch_time", seconds),
                     ("epsilon", epsilon)):
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
        with np.errstate(invalid="ignore"):  # a negative sum of squares reads as NaN
            return np.sqrt(self._sq[: self._n])

    @property
    def n_explosions(self) -> int:
        """The number of flagged steps (events other than vanishing gradients)."""
        return sum(1 for e in self.events if e.kind != "vanishing")

    def to_dict(self) -> dict[str, np.ndarray]:
        """Everything as NumPy arrays.

        Returns
        -------
        dict of str to ndarray
            The per-step arrays (``step``, ``epoch``, ``loss``, ``grad_norm``,
            ``lr``, ``applied``, ``layer_norms``), ``layer_names``, the
            per-epoch arrays (``epoch_loss``, ``val_loss``, ``val_accuracy``,
            ``epoch_time``, ``epsilon``) and the events as parallel arrays
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

