"""What the monitor reports: :class:`Event` and :class:`GradientExplosionError`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastclip.train.history import History

__all__ = ["Event", "GradientExplosionError"]


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
        ``"nonfinite"`` (a NaN/inf gradient norm or loss), ``"spike"`` (the
        global norm exceeded ``factor`` times its running median) or
        ``"vanishing"`` (a layer's gradient norm stayed below
        ``vanish_threshold``, or below ``1 / vanish_factor`` times the norm of
        the layer above it, for ``vanish_steps`` steps in a row).
    action : str
        What was done: ``"raise"``, ``"skip"``, ``"rollback"`` or ``"gave_up"``
        for explosions; ``"warn"`` for vanishing gradients (recorded, the
        update is applied).
    layer : str or None
        The parameter held responsible (its name, e.g. ``"2.weight"``): the
        first non-finite one, the one whose norm grew most relative to its
        own running median, or the vanishing one. None when only the loss was
        non-finite.
    layer_norm : float
        That parameter's gradient norm at this step.
    norm : float
        The global gradient norm (pre-clip).
    threshold : float
        ``factor`` times the running median (NaN before the monitor warmed
        up); for ``"vanishing"`` the bound the layer's norm stayed below.
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
        elif self.kind == "vanishing":
            what = (f"vanishing gradient in {where} < {self.threshold:.4g}; "
                    f"global norm {self.norm:.4g}")
        else:
            what = (f"gradient explosion in {where}; global norm {self.norm:.4g} > "
                    f"threshold {self.threshold:.4g}")
        return f"step {self.step} (epoch {self.epoch + 1}): {what} -> {self.action}"

    def with_action(self, action: str) -> Event:
        """A copy of the event with another ``action``."""
        return replace(self, action=action)

    def __str__(self) -> str:
        return self.message


class GradientExplosionError(FloatingPointError):
    """Raised by :func:`fit` when the monitor's policy stops training.

    With policy ``"raise"`` at the first flagged step; with ``"skip"`` after
    more than ``max_consecutive_errors`` consecutive flagged steps; with
    ``"rollback"`` after ``max_rollbacks`` rollbacks. The message names the
    step and the layer. :class:`fastclip.distributed.DataParallel` raises it
    too (it is a :class:`FloatingPointError`).

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
