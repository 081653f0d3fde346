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

The monitor also reports layers whose gradient vanishes (``vanish_threshold``
/ ``vanish_factor`` of :class:`GradientMonitor`). The decisions after a
flagged step (raise, skip, rollback to a :class:`~fastclip.train.checkpoint.Checkpoint`)
are taken by one :class:`StepEngine`, which
:class:`fastclip.distributed.DataParallel` uses too.

Modules: ``events`` (:class:`Event`, :class:`GradientExplosionError`),
``monitor`` (:class:`GradientMonitor`), ``history`` (:class:`History`),
``checkpoint`` and ``engine`` (the policies), ``options`` (loss, monitor and
clipper arguments), ``progress`` (the bar) and ``loop`` (:func:`fit`).

A progress bar (tqdm) shows loss, gradient norm and learning rate; it turns
itself off when standard error is not a terminal or ``progress=False``.
"""

from __future__ import annotations

from fastclip.train.engine import StepEngine
from fastclip.train.events import Event, GradientExplosionError
from fastclip.train.history import History
from fastclip.train.loop import fit
from fastclip.train.monitor import POLICIES, GradientMonitor
from fastclip.train.progress import make_bar as _make_bar  # noqa: F401  (tests call it)

__all__ = [
    "POLICIES",
    "Event",
    "GradientExplosionError",
    "GradientMonitor",
    "History",
    "StepEngine",
    "fit",
]
