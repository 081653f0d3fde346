"""How :func:`fastclip.train.fit` turns its arguments into objects: loss, monitor, clipper."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastclip.train.monitor import POLICIES, GradientMonitor

__all__ = ["check_loss_takes_sample_weight", "resolve_clipper", "resolve_loss",
           "resolve_monitor"]

LOSSES = ("cross_entropy", "softmax_cross_entropy", "mse")
CLIPPERS = ("agc", "autoclip", "zclip")

LossFn = Callable[[Any, Any], tuple[float, Any]]


def _loss_is_classification(loss: Any) -> bool:
    """A callable's own ``classification`` attribute, looked for through functools.partial.

    Without one, a function named ``softmax_cross_entropy`` is a
    classification loss and anything else is not.
    """
    fn = loss
    while True:
        flag = getattr(fn, "classification", None)
        if isinstance(flag, bool):
            return flag
        if isinstance(fn, (functools.partial, functools.partialmethod)):
            fn = fn.func
            continue
        return getattr(fn, "__name__", "") == "softmax_cross_entropy"


def resolve_loss(loss: Any, classification: Any = None) -> tuple[LossFn, bool]:
    """(loss function, whether its targets are class labels)."""
    if classification is not None and not isinstance(classification, bool):
        raise TypeError(f"classification must be None, True or False, got "
                        f"{type(classification).__name__}")
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES} or a callable, got {loss!r}")
        from fastclip import nn

        fn, is_cls = (nn.mse, False) if loss == "mse" else (nn.softmax_cross_entropy, True)
        if classification is not None and classification != is_cls:
            raise ValueError(f"classification={classification} contradicts loss={loss!r}")
        return fn, is_cls
    if callable(loss):
        return loss, (_loss_is_classification(loss) if classification is None
                      else classification)
    raise TypeError(f"loss must be one of {LOSSES} or a callable, got {type(loss).__name__}")


def check_loss_takes_sample_weight(loss: LossFn) -> None:
    """``fit(sample_weight=...)`` calls ``loss(output, target, sample_weight=w)``: a loss
    that takes no ``sample_weight`` keyword (nor ``**kwargs``) is refused, by name."""
    try:
        params = inspect.signature(loss).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        params = None
    if params is not None and any(
            p.kind == p.VAR_KEYWORD
            or (p.name == "sample_weight" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
            for p in params):
        return
    name = getattr(loss, "__name__", type(loss).__name__)
    raise TypeError(f"sample_weight was given but the loss {name!r} takes no sample_weight "
                    f"keyword: fit calls loss(output, target, sample_weight=w) with each "
                    f"batch's weights (see fastclip.nn.mse)")


def resolve_monitor(monitor: Any) -> GradientMonitor | None:
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


def resolve_clipper(clipper: Any) -> Any:
    if clipper is None:
        return None
    if isinstance(clipper, str):
        from fastclip import adaptive

        key = clipper.lower()
        if key not in CLIPPERS:
            raise ValueError(f"clipper must be one of {CLIPPERS}, an object with a clip_ "
                             f"method, or None; got {clipper!r}")
        return {"agc": adaptive.AGC, "autoclip": adaptive.AutoClip, "zclip": adaptive.ZClip}[key]()
    if isinstance(clipper, type):
        raise TypeError(f"clipper must be a clipper object, e.g. {clipper.__name__}(), or one "
                        f"of {CLIPPERS}; got the class {clipper.__name__} itself")
    if not callable(getattr(clipper, "clip_", None)):
        raise TypeError(f"clipper must be one of {CLIPPERS}, an object with a clip_ method "
                        f"(fastclip.AGC, AutoClip, ZClip) or None; got {type(clipper).__name__}")
    return clipper
