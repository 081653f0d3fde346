"""fastclip: fast, stable neural-network training kernels for NumPy.

Gradient clipping (by value, by norm, by global norm, p-norms, non-finite
handling), learning-rate schedules, fused MLP layers and optimisers, all in C
with a pure-NumPy reference twin (:mod:`fastclip.reference`) selectable at run
time with :func:`set_implementation` or ``FASTCLIP_IMPLEMENTATION=c|python``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from fastclip import _fork  # noqa: F401  (hardening: serial kernels in forked children)
from fastclip._config import get_config, show_config
from fastclip._dispatch import get_implementation, set_implementation, use_implementation
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
from fastclip import optim  # noqa: E402,F401  (fastclip.optim: fused optimisers)

# --- learning-rate schedules (branch sched) ---
from fastclip import schedules
from fastclip._plot import plot_schedule
# --- end learning-rate schedules ---
# fastclip.nn (branch nn): fused MLP layers, losses, initialisers
from fastclip import nn

__all__ = [
    "__version__",
    "nn",
    "array_norms",
    "clip_by_global_norm",
    "clip_by_norm",
    "clip_by_value",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_config",
    "get_implementation",
    "get_total_norm",
    "set_implementation",
    "show_config",
    "use_implementation",
    "zero_nans_",
]
__all__ += ["plot_schedule", "schedules"]  # learning-rate schedules (branch sched)

# --- train branch: adaptive clippers and the training loop ---
from fastclip.adaptive import AGC, AutoClip, ZClip, adaptive_grad_clip_, unitwise_norms  # noqa: E402
from fastclip import train  # noqa: E402
from fastclip.train import GradientExplosionError, GradientMonitor, History, fit  # noqa: E402

__all__ += ["AGC", "AutoClip", "ZClip", "adaptive_grad_clip_", "unitwise_norms", "train",
            "GradientExplosionError", "GradientMonitor", "History", "fit"]
# --- end train branch ---
