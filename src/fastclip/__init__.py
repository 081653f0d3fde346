"""fastclip: fast, stable neural-network training kernels for NumPy.

Gradient clipping (by value, by norm, by global norm, p-norms, non-finite
handling), learning-rate schedules, fused MLP layers and optimisers, all in C
with a pure-NumPy reference twin (:mod:`fastclip.reference`) selectable at run
time with :func:`set_implementation` or ``FASTCLIP_IMPLEMENTATION=c|python``.

The submodules and the names they define are imported on first use (PEP 562),
so ``import fastclip`` stays cheap: ``fastclip.fit``, ``fastclip.nn.MLP`` and
``from fastclip import clip_grad_norm_`` work as if everything were imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Registers the at-fork handler that keeps the kernels serial in forked children.
from fastclip import _fork  # noqa: F401
from fastclip._dispatch import get_implementation, set_implementation, use_implementation

# Public submodules, imported when first accessed as attributes of the package.
_SUBMODULES = frozenset(
    {"adaptive", "clip", "distributed", "nn", "optim", "privacy", "reference", "schedules",
     "serialize", "train"}
)

# Public name -> module defining it, imported when the name is first accessed.
# To add a top-level name: add it here, to __all__ and to the TYPE_CHECKING imports.
_LAZY: dict[str, str] = {
    "get_config": "fastclip._config",
    "show_config": "fastclip._config",
    "array_norms": "fastclip.clip",
    "clip_by_global_norm": "fastclip.clip",
    "clip_by_norm": "fastclip.clip",
    "clip_by_value": "fastclip.clip",
    "clip_grad_norm_": "fastclip.clip",
    "clip_grad_value_": "fastclip.clip",
    "clip_grads_with_norm_": "fastclip.clip",
    "get_total_norm": "fastclip.clip",
    "zero_nans_": "fastclip.clip",
    "plot_schedule": "fastclip._plot",
    "AGC": "fastclip.adaptive",
    "AutoClip": "fastclip.adaptive",
    "ZClip": "fastclip.adaptive",
    "adaptive_grad_clip_": "fastclip.adaptive",
    "unitwise_norms": "fastclip.adaptive",
    "GradientExplosionError": "fastclip.train",
    "GradientMonitor": "fastclip.train",
    "History": "fastclip.train",
    "fit": "fastclip.train",
    "load": "fastclip.serialize",
    "save": "fastclip.serialize",
}

__all__ = [
    "__version__",
    # submodules
    "adaptive",
    "clip",
    "distributed",
    "nn",
    "optim",
    "privacy",
    "schedules",
    "serialize",
    "train",
    # implementation and configuration
    "get_config",
    "get_implementation",
    "set_implementation",
    "show_config",
    "use_implementation",
    # clipping
    "array_norms",
    "clip_by_global_norm",
    "clip_by_norm",
    "clip_by_value",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
    "zero_nans_",
    # schedules
    "plot_schedule",
    # adaptive clipping
    "AGC",
    "AutoClip",
    "ZClip",
    "adaptive_grad_clip_",
    "unitwise_norms",
    # training loop
    "GradientExplosionError",
    "GradientMonitor",
    "History",
    "fit",
    # saving without pickle
    "load",
    "save",
]


def __getattr__(name: str) -> Any:
    """Import a submodule or a public name on first access (PEP 562)."""
    if name in _SUBMODULES:
        # import_module also binds the submodule as an attribute of the package.
        return importlib.import_module(f"{__name__}.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups no longer come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES | set(_LAZY))


if TYPE_CHECKING:  # what static checkers see; at run time __getattr__ provides these
    from fastclip import (  # noqa: F401
        adaptive,
        clip,
        distributed,
        nn,
        optim,
        privacy,
        reference,
        schedules,
        serialize,
        train,
    )
    from fastclip._config import get_config, show_config
    from fastclip._plot import plot_schedule
    from fastclip.adaptive import AGC, AutoClip, ZClip, adaptive_grad_clip_, unitwise_norms
    from fastclip.clip import (
        array_norms,
        clip_by_global_norm,
        clip_by_norm,
        clip_by_value,
        clip_grad_norm_,
        clip_grad_value_,
        clip_grads_with_norm_,
        get_total_norm,
        zero_nans_,
    )
    from fastclip.serialize import load, save
    from fastclip.train import GradientExplosionError, GradientMonitor, History, fit
