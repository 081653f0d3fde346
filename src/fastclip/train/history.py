"""What :func:`fastclip.train.fit` records: :class:`History`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fastclip.train.events import Event

__all__ = ["History"]


class History:
    """What :func:`fit` recorded: per step, per epoch, and the events.

    Per step (arrays of length :attr:`n_steps`): ``step``, ``epoch``, ``loss``
    (the mini-batch loss), ``grad_norm`` (global L2 norm before clipping),
    ``layer_norms`` (``(n_steps, n_params)``: each parameter's gradient norm,
    columns named by :attr:`layer_names`), ``lr`` (the learning rate the step
    used or would have used) and ``applied`` (False for skipped and rolled-back
    steps). Per epoch: ``epoch_loss`` (mean loss of the applied steps),
    ``val_loss``, ``val_accuracy`` (NaN without validation data / for
    non-classification losses), ``epoch_time`` (seconds) and ``epsilon`` (the
    epsilon of the (epsilon, delta)-DP guarantee spent up to the end of the
    epoch when ``fit`` trains with ``privacy=``; NaN otherwise). :attr:`events`
    lists every flagged step and every vanishing-gradient report
    (:class:`Event`). :attr:`privacy` describes a private run (``fit(privacy=...)``):
    ``noise_multiplier``, ``sample_rate``, ``max_grad_norm``, ``delta``,
    ``accountant`` and ``expected_batch_size``; None otherwise.
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
        return self._layers[: self._n].copy()

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

