"""The step engine: what happens after a step is flagged, shared by ``fit`` and ``DataParallel``.

:func:`fastclip.train.fit` and :class:`fastclip.distributed.DataParallel`
both detect bad steps (a :class:`GradientMonitor`, or a non-finite gradient
counted by the all-reduce) and hand every decision to one :class:`StepEngine`:
it applies the monitor's policy (raise, skip, rollback with ``lr_factor``),
keeps the :class:`Checkpoint` of the last good state every
``checkpoint_every`` applied steps, and records the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fastclip.train.checkpoint import Checkpoint
from fastclip.train.events import Event, GradientExplosionError
from fastclip.train.history import History
from fastclip.train.monitor import GradientMonitor

__all__ = ["StepEngine"]


class StepEngine:
    """Carries out a :class:`GradientMonitor`'s policy for the steps it flags.

    Parameters
    ----------
    monitor : GradientMonitor
        Its ``policy``, ``max_consecutive_errors``, ``lr_factor``,
        ``checkpoint_every`` and ``max_rollbacks`` decide; its
        ``consecutive`` and ``rollbacks`` counters are kept up to date.
    optimizer : object
        With ``lr_scale`` and ``state_dict``/``load_state_dict`` for
        ``"rollback"``.
    params : sequence of ndarray
        The parameters, restored in place by a rollback.
    clipper : object, optional
        Saved and restored with the checkpoint when it has ``state_dict``.
    history : History, optional
        Receives the events (and travels with :class:`GradientExplosionError`).
    buffers : sequence of ndarray, optional
        The model's buffers (batch normalisation's running statistics): put back
        as they were after the last applied step when a step is flagged, and
        saved and restored with the checkpoint.

    Raises
    ------
    TypeError
        Policy ``"rollback"`` with an optimiser without ``lr_scale``.
    """

    def __init__(self, monitor: GradientMonitor, optimizer: Any, params: Sequence[Any], *,
                 clipper: Any = None, history: History | None = None,
                 buffers: Sequence[np.ndarray] = ()) -> None:
        self.monitor = monitor
        self.optimizer = optimizer
        self.history = history
        self.checkpoint: Checkpoint | None = None
        self._since_checkpoint = 0
        # the model's buffers (batch normalisation's running statistics) after the last
        # applied step: a flagged step's forward has already updated them
        self._buffers = list(buffers)
        self._good_buffers = [np.array(b, copy=True) for b in self._buffers]
        if monitor.policy == "rollback":
            if not hasattr(optimizer, "lr_scale"):
                raise TypeError("monitor policy 'rollback' needs an optimiser with lr_scale")
            self.checkpoint = Checkpoint(params, optimizer, clipper, self._buffers)
            self.checkpoint.save()

    def _keep_buffers(self) -> None:
        for dst, src in zip(self._good_buffers, self._buffers):
            np.copyto(dst, src)

    def _restore_buffers(self) -> None:
        for dst, src in zip(self._buffers, self._good_buffers):
            np.copyto(dst, src)

    def applied(self) -> None:
        """A good step was applied: counts towards the next checkpoint."""
        self._keep_buffers()
        if self.checkpoint is not None:
            self._since_checkpoint += 1
            if self._since_checkpoint >= self.monitor.checkpoint_every:
                self.checkpoint.save()
                self._since_checkpoint = 0

    def _record(self, ev: Event) -> None:
        if self.history is not None:
            self.history.events.append(ev)

    def _give_up(self, ev: Event, why: str) -> GradientExplosionError:
        new = ev.with_action("gave_up")
        events = self.monitor.events
        if events and events[-1] is ev:
            events[-1] = new
        self._record(new)
        return GradientExplosionError(f"{new.message}: {why}", new, self.history)

    def flagged(self, ev: Event, *, stop_message: str | None = None) -> Event:
        """Apply the policy to the flagged step ``ev``; returns the event recorded.

        Parameters
        ----------
        ev : Event
            From :meth:`GradientMonitor.observe` or :meth:`GradientMonitor.flag`.
        stop_message : str, optional
            The message of the error raised under policy ``"raise"`` (default:
            the event's message and what to do about it).

        Raises
        ------
        GradientExplosionError
            Policy ``"raise"``, or the policy gave up (too many consecutive
            skips or rollbacks).
        """
        mon = self.monitor
        # the flagged step is not applied, whatever the policy: its forward's updates of
        # the running statistics go too
        self._restore_buffers()
        if mon.policy == "raise":
            self._record(ev)
            raise GradientExplosionError(
                stop_message or f"{ev.message}: training stopped (monitor policy 'raise'; use "
                "'skip' or 'rollback', a lower learning rate, or gradient clipping)",
                ev, self.history)
        if mon.policy == "skip":
            if mon.consecutive > mon.max_consecutive_errors:
                raise self._give_up(
                    ev, f"gave up after {mon.consecutive} consecutive flagged steps "
                    f"(max_consecutive_errors={mon.max_consecutive_errors})")
            self._record(ev)
            return ev
        if mon.rollbacks >= mon.max_rollbacks:
            raise self._give_up(
                ev, f"gave up after {mon.rollbacks} rollbacks (max_rollbacks={mon.max_rollbacks})")
        assert self.checkpoint is not None
        scale = self.optimizer.lr_scale * mon.lr_factor
        self.checkpoint.restore()
        self._keep_buffers()
        self.optimizer.lr_scale = scale
        mon.rollbacks += 1
        # the restored state with the lower learning rate is the new last good state
        self.checkpoint.save()
        self._since_checkpoint = 0
        self._record(ev)
        return ev
