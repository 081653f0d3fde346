"""Reference (pure NumPy) fused optimiser step: the twin of ``fastclip._optim``.

:func:`fused_step` is the kernel behind every optimiser of :mod:`fastclip.optim`:
the global L2 norm of the gradients (or the one given by ``sqnorms``), then, for
each parameter, the clipping of the gradient (global norm or value) and the
update of PyTorch's ``SGD``, ``Adam``/``AdamW`` or ``RMSprop``, with the
operations in PyTorch's order and the scalars rounded to the parameter dtype
as PyTorch's CPU kernels do. The gradients are read only: the clipped value is
used on the fly.

This module also holds the argument checks and messages shared with the C
binding (``fastclip._optim`` imports them), so both raise the same exceptions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from fastclip import _validation as _v
from fastclip._checks import memory as _memory
from fastclip.reference.clip import _coef, _norm, _total

__all__ = ["KINDS", "fused_step", "state_names"]

KINDS = ("sgd", "adam", "rmsprop")


# ---------------------------------------------------------------------------
# Shared checks and messages (used by fastclip._optim too)
# ---------------------------------------------------------------------------
def check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


def state_names(
    kind: str, *, momentum: float = 0.0, amsgrad: bool = False, centered: bool = False
) -> tuple[str, ...]:
    """Names (and order) of the per-parameter state arrays of an optimiser.

    ``sgd``: ``momentum_buffer`` when ``momentum != 0``; ``adam``: ``exp_avg``,
    ``exp_avg_sq`` and, with ``amsgrad``, ``max_exp_avg_sq``; ``rmsprop``:
    ``square_avg``, then ``grad_avg`` when ``centered`` and ``momentum_buffer``
    when ``momentum > 0`` (PyTorch's state names).
    """
    check_kind(kind)
    if kind == "sgd":
        return ("momentum_buffer",) if momentum != 0 else ()
    if kind == "adam":
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())
    names: tuple[str, ...] = ("square_avg",)
    if centered:
        names += ("grad_avg",)
    if momentum > 0:
        names += ("momentum_buffer",)
    return names


def layout_order(p: np.ndarray) -> Literal["C", "F"]:
    """Memory order the fused pass uses for parameter ``p`` and its state:
    ``"F"`` for a Fortran-contiguous array that is not C-contiguous, ``"C"``
    otherwise (a non-contiguous parameter is updated through a C-ordered copy)."""
    return "F" if (p.flags.f_contiguous and not p.flags.c_contiguous) else "C"


def in_order(a: np.ndarray, order: str) -> bool:
    return bool(a.flags.c_contiguous if order == "C" else a.flags.f_contiguous)


def len_msg(n_grads: int, n_params: int) -> str:
    return (
        f"grads has {n_grads} arrays but params has {n_params}; pass one gradient per "
        "parameter, in the order of params"
    )


def shape_msg(i: int, gshape: tuple, pshape: tuple) -> str:
    return f"grads[{i}] has shape {tuple(gshape)} but params[{i}] has shape {tuple(pshape)}"


def dtype_msg(i: int, gdt: Any, pdt: Any) -> str:
    return f"grads[{i}] has dtype {np.dtype(gdt)} but params[{i}] has dtype {np.dtype(pdt)}"


def grad_shares_msg(i: int, j: int) -> str:
    return (
        f"grads[{i}] shares memory with params[{j}]; gradients are read while the "
        "parameters are written, so they must be separate arrays"
    )


def states_msg(detail: str) -> str:
    return f"states {detail} (the optimiser state does not match its parameters)"


def single_msg(name: str) -> str:
    return (
        f"{name} must be a list of numpy.ndarray (one per parameter), got a single "
        "numpy.ndarray; wrap it in a list"
    )


def check_params_list(params: Any) -> list[np.ndarray]:
    """Writeable native float32/float64 arrays, not sharing memory, in a list."""
    if isinstance(params, np.ndarray):
        raise TypeError(single_msg("params"))
    arrays, _ = _v.check_arrays(params, "params", inplace=True)
    return arrays


def check_grads(grads: Any, params: list[np.ndarray]) -> list[np.ndarray]:
    """Validate the gradients against the parameters (count, dtype, shape)."""
    if isinstance(grads, np.ndarray):
        raise TypeError(single_msg("grads"))
    arrays, _ = _v.check_arrays(grads, "grads", inplace=False)
    if len(arrays) != len(params):
        raise ValueError(len_msg(len(arrays), len(params)))
    for i, (g, p) in enumerate(zip(arrays, params)):
        if g.dtype != p.dtype:
            raise TypeError(dtype_msg(i, g.dtype, p.dtype))
        if g.shape != p.shape:
            raise ValueError(shape_msg(i, g.shape, p.shape))
    return arrays


def check_grads_disjoint(params: list[np.ndarray], grads: list[np.ndarray]) -> None:
    """ValueError when a gradient shares memory with a parameter."""
    pair = _memory.first_shared_pair([*params, *grads], [0] * len(params) + [1] * len(grads))
    if pair is not None:
        i, j = sorted(pair)
        raise ValueError(grad_shares_msg(j - len(params), i))


def check_states(states: Any, params: list[np.ndarray], count: int) -> list[tuple]:
    """The state arrays: one tuple of ``count`` arrays per parameter, each writeable,
    of the parameter's dtype and shape, dense in the parameter's layout order."""
    if not isinstance(states, (list, tuple)) or len(states) != len(params):
        n = len(states) if isinstance(states, (list, tuple)) else type(states).__name__
        raise ValueError(states_msg(f"must be a list of {len(params)} tuples, got {n}"))
    out = []
    for i, (st, p) in enumerate(zip(states, params)):
        if not isinstance(st, (list, tuple)) or len(st) != count:
            raise ValueError(states_msg(f"[{i}] must hold {count} arrays"))
        order = layout_order(p)
        for k, s in enumerate(st):
            if (
                not isinstance(s, np.ndarray)
                or s.dtype != p.dtype
                or s.shape != p.shape
                or not s.flags.writeable
                or not in_order(s, order)
            ):
                raise ValueError(
                    states_msg(
                        f"[{i}][{k}] must be a writeable {order}-ordered array of dtype "
                        f"{p.dtype} and shape {p.shape}"
                    )
                )
        out.append(tuple(st))
    return out


def check_sqnorms(sqnorms: Any, n: int) -> np.ndarray | None:
    if sqnorms is None:
        return None
    try:
        sq = np.asarray(sqnorms)
    except Exception as exc:
        raise TypeError(
            f"sqnorms must be an array of {n} floats, got {type(sqnorms).__name__}"
        ) from exc
    if sq.dtype.kind not in "fiu":
        raise TypeError(f"sqnorms must be an array of {n} floats, got dtype {sq.dtype}")
    sq = np.ascontiguousarray(sq, dtype=np.float64)
    if sq.shape != (n,):
        raise ValueError(
            f"sqnorms has shape {sq.shape} but there are {n} gradients; pass one sum of "
            f"squares per gradient, shape ({n},)"
        )
    if (sq < 0).any():
        raise ValueError("sqnorms holds a negative value; sums of squares are >= 0")
    return sq


def check_clip(clip_norm: Any, clip_value: Any) -> tuple[float | None, float | None]:
    if clip_norm is not None and clip_value is not None:
        raise ValueError(
            "clip_norm and clip_value are exclusive: pass one of them (or neither)"
        )
    cn = None if clip_norm is None else _v.check_nonnegative(clip_norm, "clip_norm")
    cv = None if clip_value is None else _v.check_nonnegative(clip_value, "clip_value")
    return cn, cv


def check_step(step: Any) -> int:
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step must be an int, got {type(step).__name__}")
    if step < 1:
        raise ValueError(f"step must be >= 1 (the 1-based index of this update), got {step}")
    return int(step)


def first_nonfinite(norms: np.ndarray) -> int:
    bad = np.flatnonzero(~np.isfinite(norms))
    return int(bad[0]) if bad.size else -1


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
    kind = check_kind(kind)
    ps = check_params_list(params)
    gs = check_grads(grads, ps)
    check_grads_disjoint(ps, gs)
    names = state_names(kind, momentum=momentum, amsgrad=amsgrad, centered=centered)
    sts = check_states(states, ps, len(names))
    sq = check_sqnorms(sqnorms, len(ps))
    cn, cv = check_clip(clip_norm, clip_value)
    step = check_step(step)
    lr = float(lr)
    if sq is None:
        norms = np.array([_norm(g, 2.0) for g in gs], dtype=np.float64)
    else:
        norms = np.sqrt(sq)
    total = _total(norms, 2.0)
    if not math.isfinite(total):
        return total, first_nonfinite(norms)
    coef = _coef(cn, total) if cn is not None else 1.0
    upd = _UPDATES[kind]
    hp = dict(
        lr=lr, step=step, weight_decay=float(weight_decay), momentum=float(momentum),
        dampening=float(dampening), nesterov=bool(nesterov), beta1=float(beta1),
        beta2=float(beta2), eps=float(eps), amsgrad=bool(amsgrad), decoupled=bool(decoupled),
        alpha=float(alpha), centered=bool(centered),
    )
    for p, g, st in zip(ps, gs, sts):
        t = p.dtype.type
        if coef != 1.0:
            g = g * t(coef)
        if cv is not None:
            g = np.clip(g, t(-cv), t(cv))
        upd(p, g, st, **hp)
    return total, -1
