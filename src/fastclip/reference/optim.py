"""Reference (pure NumPy) fused optimiser step: the twin of ``fastclip._optim``.

:func:`fused_step` is the kernel behind every optimiser of :mod:`fastclip.optim`:
the global L2 norm of the gradients (or the one given by ``sqnorms``), then, for
each parameter, the clipping of the gradient (global norm or value) and the
update of PyTorch's ``SGD``, ``Adam``/``AdamW`` or ``RMSprop``, with the
operations in PyTorch's order and the scalars rounded to the parameter dtype
as PyTorch's CPU kernels do. The gradients are read only: the clipped value is
used on the fly.

The argument checks and their messages are those of :mod:`fastclip._checks.optim`,
shared with the C binding, so both raise the same exceptions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from fastclip._checks import arrays as _ca
from fastclip._checks import optim as _co
from fastclip.reference.clip import _coef, _norm, _total

__all__ = ["KINDS", "StepPlan", "fused_step", "state_names"]

KINDS = _co.KINDS
state_names = _co.state_names

# ---------------------------------------------------------------------------
# The fused step
# ---------------------------------------------------------------------------
def _lerp_(m: np.ndarray, d: np.ndarray, weight: float) -> None:
    """``m = torch.lerp(m, d, weight)`` in m's dtype (PyTorch's two formulas)."""
    t = m.dtype.type
    w = t(weight)
    if abs(w) < 0.5:
        m += w * (d - m)
    else:
        m[...] = d - (d - m) * (t(1) - w)


def _sgd(p, g, st, *, lr, step, weight_decay, momentum, dampening, nesterov, **_):
    t = p.dtype.type
    d = g + t(weight_decay) * p if weight_decay != 0 else g
    if momentum != 0:
        buf = st[0]
        if step == 1:
            buf[...] = d
        else:
            buf[...] = buf * t(momentum) + t(1.0 - dampening) * d
        d = d + t(momentum) * buf if nesterov else buf
    p += t(-lr) * d


def _adam(p, g, st, *, lr, step, weight_decay, beta1, beta2, eps, amsgrad, decoupled, **_):
    t = p.dtype.type
    d = g
    if weight_decay != 0:
        if decoupled:
            p *= t(1.0 - lr * weight_decay)
        else:
            d = g + t(weight_decay) * p
    m, v = st[0], st[1]
    _lerp_(m, d, 1.0 - beta1)
    v[...] = v * t(beta2) + (t(1.0 - beta2) * d) * d
    bc1 = 1.0 - beta1**step
    bc2 = 1.0 - beta2**step
    step_size = lr / bc1
    bc2_sqrt = bc2**0.5
    if amsgrad:
        np.maximum(st[2], v, out=st[2])
        denom = np.sqrt(st[2]) / t(bc2_sqrt) + t(eps)
    else:
        denom = np.sqrt(v) / t(bc2_sqrt) + t(eps)
    p += t(-step_size) * (m / denom)


def _rmsprop(p, g, st, *, lr, weight_decay, momentum, alpha, eps, centered, **_):
    t = p.dtype.type
    d = g + t(weight_decay) * p if weight_decay != 0 else g
    sq = st[0]
    sq[...] = sq * t(alpha) + (t(1.0 - alpha) * d) * d
    k = 1
    if centered:
        ga = st[k]
        k += 1
        _lerp_(ga, d, 1.0 - alpha)
        avg = np.sqrt(sq + (t(-1) * ga) * ga)
    else:
        avg = np.sqrt(sq)
    avg = avg + t(eps)
    if momentum > 0:
        buf = st[k]
        buf[...] = buf * t(momentum) + d / avg
        p += t(-lr) * buf
    else:
        p += t(-lr) * (d / avg)


_UPDATES: dict[str, Callable[..., None]] = {"sgd": _sgd, "adam": _adam, "rmsprop": _rmsprop}


class StepPlan:
    """One optimiser's validated parameters, state and hyper-parameters.

    Built once: the parameters, the state arrays and the clipping are checked
    here; :meth:`step` then checks only the gradients, ``sqnorms``, ``lr`` and
    ``step`` (and that every parameter is still writeable).
    """

    def __init__(self, kind: str, params: Any, states: Any, *, weight_decay: float = 0.0,
                 momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
                 beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 amsgrad: bool = False, decoupled: bool = False, alpha: float = 0.99,
                 centered: bool = False, clip_norm: float | None = None,
                 clip_value: float | None = None) -> None:
        self.kind = _co.check_kind(kind)
        self.params = _co.check_params_list(params)
        names = _co.state_names(self.kind, momentum=momentum, amsgrad=amsgrad,
                                centered=centered)
        self.states = _co.check_states(states, self.params, len(names))
        self.clip_norm, self.clip_value = _co.check_clip(clip_norm, clip_value)
        self.hyper = dict(
            weight_decay=float(weight_decay), momentum=float(momentum),
            dampening=float(dampening), nesterov=bool(nesterov), beta1=float(beta1),
            beta2=float(beta2), eps=float(eps), amsgrad=bool(amsgrad),
            decoupled=bool(decoupled), alpha=float(alpha), centered=bool(centered),
        )

    def step(self, grads: Any, *, lr: float, step: int, sqnorms: Any = None) -> tuple[float, int]:
        """One update with these gradients; ``(norm, first_nonfinite)`` as
        :func:`fused_step`."""
        ps = self.params
        gs = _co.check_grads(grads, ps)
        for i, p in enumerate(ps):
            if not p.flags.writeable:
                raise ValueError(_ca.readonly_msg(_ca.label("params", i, False)))
        _co.check_grads_disjoint(ps, gs)
        sq = _co.check_sqnorms(sqnorms, len(ps))
        step = _co.check_step(step)
        lr = float(lr)
        if sq is None:
            norms = np.array([_norm(g, 2.0) for g in gs], dtype=np.float64)
        else:
            norms = np.sqrt(sq)
        total = _total(norms, 2.0)
        if not math.isfinite(total):
            return total, _co.first_nonfinite(norms)
        cn, cv = self.clip_norm, self.clip_value
        coef = _coef(cn, total) if cn is not None else 1.0
        upd = _UPDATES[self.kind]
        hp = dict(lr=lr, step=step, **self.hyper)
        for p, g, st in zip(ps, gs, self.states):
            t = p.dtype.type
            if coef != 1.0:
                g = g * t(coef)
            if cv is not None:
                g = np.clip(g, t(-cv), t(cv))
            upd(p, g, st, **hp)
        return total, -1


def fused_step(
    kind: str,
    params: Any,
    grads: Any,
    states: Any,
    *,
    lr: float,
    step: int,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    amsgrad: bool = False,
    decoupled: bool = False,
    alpha: float = 0.99,
    centered: bool = False,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    sqnorms: Any = None,
) -> tuple[float, int]:
    """One clipped optimiser update of every parameter, in place.

    Parameters
    ----------
    kind : {"sgd", "adam", "rmsprop"}
        The update rule (``adam`` with ``decoupled=True`` is AdamW).
    params : list of ndarray
        Writeable float32/float64 arrays, updated in place.
    grads : list of ndarray
        One per parameter, same dtype and shape; read only.
    states : list of tuple of ndarray
        Per parameter, the arrays named by :func:`state_names`, updated in place.
    lr : float
        The learning rate of this update.
    step : int
        The 1-based index of this update (Adam's bias correction; SGD copies the
        gradient into the momentum buffer when ``step == 1``).
    clip_norm, clip_value : float or None
        Global-norm clipping (PyTorch's coefficient
        ``min(1, clip_norm / (norm + 1e-6))``) or clamping to
        ``[-clip_value, clip_value]``, applied to the raw gradient before weight
        decay, on the fly.
    sqnorms : array of float, optional
        Per-gradient sums of squares; the global norm is then
        ``||sqrt(sqnorms)||_2`` and the gradients are not read for it.

    Returns
    -------
    (norm, first_nonfinite) : (float, int)
        The global L2 norm before clipping. When it is not finite nothing is
        modified and ``first_nonfinite`` is the index of the first gradient whose
        norm is not finite (``-1`` if the total overflowed); otherwise it is -1.
    """
    plan = StepPlan(kind, params, states, weight_decay=weight_decay, momentum=momentum,
                    dampening=dampening, nesterov=nesterov, beta1=beta1, beta2=beta2, eps=eps,
                    amsgrad=amsgrad, decoupled=decoupled, alpha=alpha, centered=centered,
                    clip_norm=clip_norm, clip_value=clip_value)
    return plan.step(grads, lr=lr, step=step, sqnorms=sqnorms)
