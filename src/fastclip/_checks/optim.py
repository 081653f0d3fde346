"""Checks of the optimiser arguments: parameters, gradients, state, hyper-parameters.

Used by :mod:`fastclip.optim` (once, when an optimiser is built or its state is
loaded), by the compiled ``fastclip._optim`` and by the reference
``fastclip.reference.optim`` (on every call of their ``fused_step``), so both
implementations raise the same exceptions with the same messages.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, Literal, Union

import numpy as np

from fastclip._checks import arrays as _ca
from fastclip._checks import memory as _memory
from fastclip._checks import scalars as _cs

KINDS = ("sgd", "adam", "rmsprop")


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
    arrays, _ = _ca.check_arrays(params, "params", inplace=True)
    return arrays


def check_grads(grads: Any, params: list[np.ndarray]) -> list[np.ndarray]:
    """Validate the gradients against the parameters (count, dtype, shape)."""
    if isinstance(grads, np.ndarray):
        raise TypeError(single_msg("grads"))
    arrays, _ = _ca.check_arrays(grads, "grads", inplace=False)
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
    if isinstance(sqnorms, np.ma.MaskedArray):
        raise TypeError(_ca.masked_msg("sqnorms"))
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
    return _ca.check_sums_of_squares(sq)


def check_clip(clip_norm: Any, clip_value: Any) -> tuple[float | None, float | None]:
    if clip_norm is not None and clip_value is not None:
        raise ValueError(
            "clip_norm and clip_value are exclusive: pass one of them (or neither)"
        )
    cn = None if clip_norm is None else _cs.check_nonnegative(clip_norm, "clip_norm")
    cv = None if clip_value is None else _cs.check_nonnegative(clip_value, "clip_value")
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
# hyper-parameters of the optimiser classes
# ---------------------------------------------------------------------------
LR = Union[float, Callable[[int], float]]  # noqa: UP007 (a runtime alias)


def check_lr(lr: Any) -> LR:
    """A learning rate: a callable ``step -> float`` (its values are checked by
    :func:`check_lr_value` at each step) or a finite real number >= 0."""
    if callable(lr):
        return lr
    v = _cs.check_real(lr, "lr")
    if v < 0:
        raise ValueError(f"lr must be >= 0 (invalid learning rate), got {v!r}")
    if math.isinf(v):
        raise ValueError(f"lr must be finite, got {v!r}")
    return v


def check_lr_value(raw: Any, step: int) -> float:
    """The value of an lr callable at ``step``: a finite real number >= 0."""
    try:
        v = _cs.check_real(raw, "lr")
    except (TypeError, ValueError) as exc:
        raise type(exc)(
            f"the lr callable returned {raw!r} at step {step}; it must return a "
            "finite real number >= 0"
        ) from None
    if v < 0:
        raise ValueError(
            f"the lr callable returned {v!r} at step {step}; a learning rate must be >= 0"
        )
    if math.isinf(v):
        raise ValueError(
            f"the lr callable returned {v!r} at step {step}; a learning rate must be finite"
        )
    return v


def check_lr_scale(value: Any, name: str = "lr_scale") -> float:
    """A finite multiplier >= 0 of the learning rate."""
    v = _cs.check_real(value, name)
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
    return v


def check_betas(betas: Any) -> tuple[float, float]:
    """Adam's ``(beta1, beta2)``, each in ``[0, 1)``."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair of floats, got {betas!r}")
    out = []
    for k, b in enumerate(betas):
        v = _cs.check_real(b, f"betas[{k}]")
        if not 0.0 <= v < 1.0:
            raise ValueError(f"betas[{k}] must be in [0, 1), got {v!r}")
        out.append(v)
    return out[0], out[1]


def check_on_nonfinite(value: Any) -> str:
    if value not in ("raise", "skip"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'skip', got {value!r}")
    return str(value)


def same_hyper(a: Any, b: Any) -> bool:
    """Hyper-parameter equality (tuples element by element, no array truth values)."""
    if isinstance(b, tuple):
        return isinstance(a, tuple) and len(a) == len(b) and all(map(same_hyper, a, b))
    try:
        return bool(a == b) and type(a) is not str
    except (TypeError, ValueError):
        return False


def check_step_count(value: Any, name: str) -> int:
    """A step count: an int >= 0 (not a bool)."""
    sc: int
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        sc = operator.index(value)
    except TypeError:
        sc = -1
    if sc < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return sc


def check_state_dict(
    state_dict: Any,
    name: str,
    hyper: dict[str, Any],
    names: tuple[str, ...],
    params: list[np.ndarray],
) -> tuple[int, float, list[dict[str, np.ndarray]]]:
    """Validate an optimiser ``state_dict`` against this optimiser (class ``name``,
    hyper-parameters ``hyper``, state names ``names``, parameters ``params``);
    returns ``(step_count, lr_scale, per-parameter state dicts)``."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
    keys = {"optimizer", "step_count", "lr_scale", "hyperparams", "state"}
    if set(state_dict) != keys:
        raise ValueError(
            f"state_dict must have the keys {sorted(keys)}, got {sorted(state_dict)}"
        )
    if state_dict["optimizer"] != name:
        raise ValueError(
            f"state_dict['optimizer'] is {state_dict['optimizer']!r} but this optimiser "
            f"is {name!r}"
        )
    got_hyper = state_dict["hyperparams"]
    if not isinstance(got_hyper, dict) or set(got_hyper) != set(hyper):
        raise ValueError(f"state_dict['hyperparams'] must have the keys {sorted(hyper)}")
    for k, v in hyper.items():
        got = got_hyper[k]
        if isinstance(v, tuple) and isinstance(got, (list, tuple, np.ndarray)):
            got = tuple(got)  # betas after a JSON or npz round trip
        if not same_hyper(got, v):
            raise ValueError(
                f"state_dict['hyperparams'][{k!r}] is {got_hyper[k]!r} but this optimiser "
                f"has {k}={v!r}; create the optimiser with the same hyper-parameters"
            )
    sc = check_step_count(state_dict["step_count"], "state_dict['step_count']")
    scale = check_lr_scale(state_dict["lr_scale"], "state_dict['lr_scale']")
    st = state_dict["state"]
    if not isinstance(st, (list, tuple)) or len(st) != len(params):
        n = len(st) if isinstance(st, (list, tuple)) else type(st).__name__
        raise ValueError(
            f"state_dict['state'] must be a list of {len(params)} dicts (one per "
            f"parameter), got {n}"
        )
    for i, (entry, p) in enumerate(zip(st, params)):
        if not isinstance(entry, dict) or set(entry) != set(names):
            raise ValueError(
                f"state_dict['state'][{i}] must be a dict with the keys {sorted(names)}"
            )
        for k in names:
            a = entry[k]
            lab = f"state_dict['state'][{i}][{k!r}]"
            if not isinstance(a, np.ndarray):
                raise TypeError(f"{lab} must be a numpy.ndarray, got {type(a).__name__}")
            if isinstance(a, np.ma.MaskedArray):
                raise TypeError(_ca.masked_msg(lab))
            if a.dtype != p.dtype:
                raise TypeError(f"{lab} has dtype {a.dtype} but params[{i}] has dtype {p.dtype}")
            if a.shape != p.shape:
                raise ValueError(f"{lab} has shape {a.shape} but params[{i}] has shape {p.shape}")
    return sc, scale, list(st)
