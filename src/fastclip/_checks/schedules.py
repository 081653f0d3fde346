"""Checks of schedule parameters and steps, and their lowering, shared by the
compiled and the reference schedules.

A schedule is identified by its ``kind`` (the name of its factory in
:mod:`fastclip.schedules`) and its canonical parameters (an ordered dict, the
factory's arguments after validation). Both implementations evaluate the same
*lowered* description (:class:`Lowered`): a kind code, flags, up to eight
doubles, boundaries, values and child schedules, mirroring the C struct
``fc_schedule`` of ``csrc/schedules.h``. Derived numbers (OneCycleLR's phase
ends, CyclicLR's cycle length and ratio, ...) are computed here once, so the C
kernels and the NumPy reference see identical inputs.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from fastclip._checks import scalars as _cs

# kind codes (csrc/schedules.h)
CODES = {
    "constant": 0,
    "step": 1,
    "multistep": 2,
    "piecewise_constant": 3,
    "exponential": 4,
    "polynomial": 5,
    "inverse_time": 6,
    "inverse_sqrt": 7,
    "cosine": 8,
    "linear": 9,
    "warmup": 10,
    "warmup_cosine": 11,
    "cosine_restarts": 12,
    "one_cycle": 13,
    "cyclic": 14,
    "join": 15,
}

F_STAIRCASE = 1
F_HAS_END = 2
F_CYCLE = 4
F_AFTER = 8
F_SHIFT = 16
F_THREE_PHASE = 32
F_LINEAR_ANNEAL = 64

CYCLIC_MODES = ("triangular", "triangular2", "exp_range")
NPARAMS = 8


class Lowered(NamedTuple):
    code: int
    flags: int
    mode: int
    p: tuple[float, ...]
    bounds: tuple[float, ...]
    values: tuple[float, ...]
    children: tuple[Any, ...]


def _lower(
    kind: str,
    p: tuple[float, ...] = (),
    flags: int = 0,
    mode: int = 0,
    bounds: tuple[float, ...] = (),
    values: tuple[float, ...] = (),
    children: tuple[Any, ...] = (),
) -> Lowered:
    p = tuple(float(v) for v in p) + (0.0,) * (NPARAMS - len(p))
    return Lowered(CODES[kind], flags, mode, p, tuple(bounds), tuple(values), tuple(children))


# ---------------------------------------------------------------------------
# argument checks (messages name the argument)
# ---------------------------------------------------------------------------


def _num(value: Any, name: str) -> float:
    """A finite real number (scalars.check_finite); an int too large for a
    float is reported as not finite."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        try:
            float(value)
        except OverflowError:
            raise ValueError(f"{name} must be finite, got an int too large for a float") from None
    return _cs.check_finite(value, name)


def _tidy(v: float) -> int | float:
    """Integral step counts are kept as ints (readable repr)."""
    return int(v) if v.is_integer() and abs(v) < 2.0**53 else v


def rate(value: Any, name: str) -> float:
    """A learning rate or other non-negative finite number."""
    return _cs.at_least_zero(_num(value, name), name)


def positive(value: Any, name: str) -> float:
    """A finite number > 0."""
    return _cs.above_zero(_num(value, name), name)


def steps_pos(value: Any, name: str) -> int | float:
    """A number of steps > 0."""
    return _tidy(positive(value, name))


def steps_nonneg(value: Any, name: str) -> int | float:
    """A number of steps >= 0."""
    return _tidy(rate(value, name))


#: The largest count an integer parameter may hold (the C state uses int64_t).
INT_MAX = 2**63 - 1


def integer(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) \
                and math.isfinite(float(value)) and float(value).is_integer():
            value = int(float(value))
        else:
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    if v > INT_MAX:
        raise ValueError(f"{name} must be <= 2**63 - 1, got {v!r}")
    return v


# the shared scalar checks, under the names the schedule checks use
flag = _cs.check_bool
choice = _cs.check_choice


def boundaries(value: Any, name: str) -> tuple[int | float, ...]:
    """Strictly increasing, finite, >= 0."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(value).__name__}")
    out = tuple(steps_nonneg(v, f"{name}[{i}]") for i, v in enumerate(value))
    for i in range(1, len(out)):
        if not out[i] > out[i - 1]:
            what = "duplicate" if out[i] == out[i - 1] else "unsorted"
            raise ValueError(
                f"{name} must be strictly increasing ({what} at {name}[{i}] = {out[i]!r} "
                f"after {out[i - 1]!r})"
            )
    return out


def rates(value: Any, name: str) -> tuple[float, ...]:
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(value).__name__}")
    return tuple(rate(v, f"{name}[{i}]") for i, v in enumerate(value))


def is_schedule(obj: Any) -> bool:
    return getattr(obj, "_fc_schedule", False) is True


def schedule_arg(value: Any, name: str) -> Any:
    if not is_schedule(value):
        raise TypeError(
            f"{name} must be a fastclip schedule (built by fastclip.schedules), got "
            f"{type(value).__name__}"
        )
    return value


# ---------------------------------------------------------------------------
# canonical parameters and lowering, one function per kind
# ---------------------------------------------------------------------------


def _constant(value):
    params = {"value": rate(value, "value")}
    return params, _lower("constant", (params["value"],))


def _step(init_value, step_size, gamma=0.1):
    params = {
        "init_value": rate(init_value, "init_value"),
        "step_size": steps_pos(step_size, "step_size"),
        "gamma": rate(gamma, "gamma"),
    }
    if params["gamma"] > 1:
        raise ValueError(
            f"gamma must be <= 1 (gamma > 1 grows without bound; use multistep for a "
            f"bounded increase), got {params['gamma']!r}"
        )
    return params, _lower("step", (params["init_value"], params["step_size"], params["gamma"]))


def _multistep(init_value, milestones, gamma=0.1):
    params = {
        "init_value": rate(init_value, "init_value"),
        "milestones": boundaries(milestones, "milestones"),
        "gamma": rate(gamma, "gamma"),
    }
    return params, _lower(
        "multistep", (params["init_value"], params["gamma"]), bounds=params["milestones"]
    )


def _piecewise_constant(boundaries_, values, switch="at"):
    b = boundaries(boundaries_, "boundaries")
    v = rates(values, "values")
    if len(v) != len(b) + 1:
        raise ValueError(
            f"values must have len(boundaries) + 1 = {len(b) + 1} entries, got {len(v)}"
        )
    sw = choice(switch, "switch", ("at", "after"))
    params = {"boundaries": b, "values": v, "switch": sw}
    return params, _lower(
        "piecewise_constant", flags=F_AFTER if sw == "after" else 0, bounds=b, values=v
    )


def _exponential(init_value, transition_steps, decay_rate, transition_begin=0,
                 staircase=False, end_value=None):
    init = rate(init_value, "init_value")
    ts = steps_pos(transition_steps, "transition_steps")
    dr = positive(decay_rate, "decay_rate")
    tb = steps_nonneg(transition_begin, "transition_begin")
    st = flag(staircase, "staircase")
    flags = F_STAIRCASE if st else 0
    end = None
    if end_value is not None:
        end = rate(end_value, "end_value")
        if dr < 1 and end > init:
            raise ValueError(
                f"end_value must be <= init_value for a decay_rate < 1 (it is a lower "
                f"bound), got end_value={end!r} > init_value={init!r}"
            )
        if dr > 1 and end < init:
            raise ValueError(
                f"end_value must be >= init_value for a decay_rate > 1 (it is an upper "
                f"bound), got end_value={end!r} < init_value={init!r}"
            )
        flags |= F_HAS_END
    elif dr > 1:
        raise ValueError(
            f"decay_rate > 1 ({dr!r}) grows without bound: pass end_value as the upper bound"
        )
    params = {"init_value": init, "transition_steps": ts, "decay_rate": dr,
              "transition_begin": tb, "staircase": st, "end_value": end}
    return params, _lower(
        "exponential", (init, ts, dr, tb, 0.0 if end is None else end), flags=flags
    )


def _polynomial(init_value, decay_steps, end_value=0.0, power=1.0, cycle=False,
                transition_begin=0):
    params = {
        "init_value": rate(init_value, "init_value"),
        "decay_steps": steps_pos(decay_steps, "decay_steps"),
        "end_value": rate(end_value, "end_value"),
        "power": positive(power, "power"),
        "cycle": flag(cycle, "cycle"),
        "transition_begin": steps_nonneg(transition_begin, "transition_begin"),
    }
    return params, _lower(
        "polynomial",
        (params["init_value"], params["end_value"], params["decay_steps"], params["power"],
         params["transition_begin"]),
        flags=F_CYCLE if params["cycle"] else 0,
    )


def _inverse_time(init_value, decay_steps, decay_rate, power=1.0, staircase=False):
    params = {
        "init_value": rate(init_value, "init_value"),
        "decay_steps": steps_pos(decay_steps, "decay_steps"),
        "decay_rate": rate(decay_rate, "decay_rate"),
        "power": positive(power, "power"),
        "staircase": flag(staircase, "staircase"),
    }
    return params, _lower(
        "inverse_time",
        (params["init_value"], params["decay_steps"], params["decay_rate"], params["power"]),
        flags=F_STAIRCASE if params["staircase"] else 0,
    )


def _inverse_sqrt(init_value, timescale=1.0):
    params = {"init_value": rate(init_value, "init_value"),
              "timescale": steps_pos(timescale, "timescale")}
    return params, _lower("inverse_sqrt", (params["init_value"], params["timescale"]))


def _cosine(init_value, decay_steps, alpha=0.0, exponent=1.0):
    params = {
        "init_value": rate(init_value, "init_value"),
        "decay_steps": steps_pos(decay_steps, "decay_steps"),
        "alpha": rate(alpha, "alpha"),
        "exponent": positive(exponent, "exponent"),
    }
    return params, _lower(
        "cosine",
        (params["init_value"], params["decay_steps"], params["alpha"], params["exponent"]),
    )


def _linear(init_value, end_value, transition_steps, transition_begin=0):
    params = {
        "init_value": rate(init_value, "init_value"),
        "end_value": rate(end_value, "end_value"),
        "transition_steps": steps_pos(transition_steps, "transition_steps"),
        "transition_begin": steps_nonneg(transition_begin, "transition_begin"),
    }
    return params, _lower(
        "linear",
        (params["init_value"], params["end_value"], params["transition_steps"],
         params["transition_begin"]),
    )


def _warmup(schedule, warmup_steps, init_value=0.0, shift=True):
    params = {
        "schedule": schedule_arg(schedule, "schedule"),
        "warmup_steps": steps_nonneg(warmup_steps, "warmup_steps"),
        "init_value": rate(init_value, "init_value"),
        "shift": flag(shift, "shift"),
    }
    return params, _lower(
        "warmup", (params["warmup_steps"], params["init_value"]),
        flags=F_SHIFT if params["shift"] else 0, children=(params["schedule"],),
    )


def _warmup_cosine(peak_value, warmup_steps, decay_steps, init_value=0.0, end_value=0.0,
                   exponent=1.0, warmup_in_decay=True):
    peak = rate(peak_value, "peak_value")
    w = steps_nonneg(warmup_steps, "warmup_steps")
    d = steps_pos(decay_steps, "decay_steps")
    init = rate(init_value, "init_value")
    end = rate(end_value, "end_value")
    e = positive(exponent, "exponent")
    inside = flag(warmup_in_decay, "warmup_in_decay")
    if inside and not d > w:
        raise ValueError(
            f"warmup_steps must be < decay_steps when warmup_in_decay=True (decay_steps "
            f"counts the warm-up), got warmup_steps={w!r} >= decay_steps={d!r}"
        )
    params = {"peak_value": peak, "warmup_steps": w, "decay_steps": d, "init_value": init,
              "end_value": end, "exponent": e, "warmup_in_decay": inside}
    length = d - w if inside else d
    alpha = 0.0 if peak == 0.0 else end / peak
    return params, _lower("warmup_cosine", (init, peak, w, length, alpha, e))


def _cosine_restarts(init_value, t_0, t_mul=1, eta_min=0.0, m_mul=1.0):
    params = {
        "init_value": rate(init_value, "init_value"),
        "t_0": steps_pos(t_0, "t_0"),
        "t_mul": _tidy(_num(t_mul, "t_mul")),
        "eta_min": rate(eta_min, "eta_min"),
        "m_mul": rate(m_mul, "m_mul"),
    }
    if params["t_mul"] < 1:
        raise ValueError(f"t_mul must be >= 1, got {params['t_mul']!r}")
    if params["m_mul"] > 1:
        raise ValueError(
            f"m_mul must be <= 1 (the peaks would grow without bound), got {params['m_mul']!r}"
        )
    return params, _lower(
        "cosine_restarts",
        (params["init_value"], params["t_0"], params["t_mul"], params["eta_min"],
         params["m_mul"]),
    )


def _one_cycle(max_lr, total_steps, pct_start=0.3, anneal_strategy="cos", div_factor=25.0,
               final_div_factor=1e4, three_phase=False):
    mx = rate(max_lr, "max_lr")
    total = integer(total_steps, "total_steps", 1)
    pct = _num(pct_start, "pct_start")
    if not 0 <= pct <= 1:
        raise ValueError(f"pct_start must be in [0, 1], got {pct!r}")
    strat = choice(anneal_strategy, "anneal_strategy", ("cos", "linear"))
    div = positive(div_factor, "div_factor")
    fdiv = positive(final_div_factor, "final_div_factor")
    three = flag(three_phase, "three_phase")
    # PyTorch's phase ends (OneCycleLR.__init__)
    e1 = float(pct * total) - 1
    if three:
        e2 = float(2 * pct * total) - 2
        e3 = float(total) - 1
        ends = (e1, e2, e3)
    else:
        e2 = float(total) - 1
        ends = (e1, e2)
    start = 0.0
    for k, e in enumerate(ends):
        if not e > start:
            raise ValueError(
                f"pct_start={pct!r} with total_steps={total} gives an empty phase {k + 1} "
                f"(phase ends {ends}); every phase needs at least one step"
            )
        start = e
    initial = mx / div
    minimum = initial / fdiv
    params = {"max_lr": mx, "total_steps": total, "pct_start": pct, "anneal_strategy": strat,
              "div_factor": div, "final_div_factor": fdiv, "three_phase": three}
    flags = (F_THREE_PHASE if three else 0) | (F_LINEAR_ANNEAL if strat == "linear" else 0)
    return params, _lower("one_cycle", (initial, mx, minimum) + ends, flags=flags)


def _cyclic(base_lr, max_lr, step_size_up=2000, step_size_down=None, mode="triangular",
            gamma=1.0):
    base = rate(base_lr, "base_lr")
    mx = rate(max_lr, "max_lr")
    up = steps_pos(step_size_up, "step_size_up")
    down = None if step_size_down is None else steps_nonneg(step_size_down, "step_size_down")
    m = choice(mode, "mode", CYCLIC_MODES)
    g = positive(gamma, "gamma")
    if g > 1 and m == "exp_range":
        raise ValueError(f"gamma must be <= 1 for mode='exp_range' (it is gamma**step), got {g!r}")
    params = {"base_lr": base, "max_lr": mx, "step_size_up": up, "step_size_down": down,
              "mode": m, "gamma": g}
    # PyTorch's CyclicLR.__init__
    up_f = float(up)
    down_f = float(down) if down is not None else up_f
    total = up_f + down_f
    ratio = up_f / total
    return params, _lower("cyclic", (base, mx, total, ratio, g), mode=CYCLIC_MODES.index(m))


def _join(schedules, boundaries_):
    if isinstance(schedules, (str, bytes, dict)) or not hasattr(schedules, "__iter__"):
        raise TypeError(
            f"schedules must be a sequence of schedules, got {type(schedules).__name__}"
        )
    scheds = tuple(schedule_arg(s, f"schedules[{i}]") for i, s in enumerate(schedules))
    if not scheds:
        raise ValueError("schedules must not be empty")
    b = boundaries(boundaries_, "boundaries")
    if len(b) != len(scheds) - 1:
        raise ValueError(
            f"boundaries must have len(schedules) - 1 = {len(scheds) - 1} entries, got {len(b)}"
        )
    params = {"schedules": scheds, "boundaries": b}
    return params, _lower("join", bounds=b, children=scheds)


NORMALIZERS: dict[str, Callable[..., tuple[dict[str, Any], Lowered]]] = {
    "constant": _constant,
    "step": _step,
    "multistep": _multistep,
    "piecewise_constant": _piecewise_constant,
    "exponential": _exponential,
    "polynomial": _polynomial,
    "inverse_time": _inverse_time,
    "inverse_sqrt": _inverse_sqrt,
    "cosine": _cosine,
    "linear": _linear,
    "warmup": _warmup,
    "warmup_cosine": _warmup_cosine,
    "cosine_restarts": _cosine_restarts,
    "one_cycle": _one_cycle,
    "cyclic": _cyclic,
    "join": _join,
}


class ParameterError(ValueError, TypeError):
    """A schedule description (``from_dict``, unpickling) with a missing or unknown
    parameter: a ValueError, as a bad value in the description is, and a
    TypeError, as the same mistake in a call is."""


def normalize(kind: str, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Lowered]:
    """Validated canonical parameters and the lowered description."""
    try:
        fn = NORMALIZERS[kind]
    except KeyError:
        raise ValueError(f"kind must be one of {tuple(NORMALIZERS)}, got {kind!r}") from None
    if kind == "piecewise_constant" and "boundaries" in kwargs:
        kwargs = dict(kwargs)
        kwargs["boundaries_"] = kwargs.pop("boundaries")
    if kind == "join" and "boundaries" in kwargs:
        kwargs = dict(kwargs)
        kwargs["boundaries_"] = kwargs.pop("boundaries")
    # a missing or unknown parameter is named as a field, not as a Python call error
    params = inspect.signature(fn).parameters
    for k in kwargs:
        if k not in params:
            known = ", ".join(repr(n.rstrip("_")) for n in params)
            raise ParameterError(f"{kind} has no parameter {k.rstrip('_')!r}; its "
                                 f"parameters are {known}")
    for n, prm in params.items():
        if prm.default is inspect.Parameter.empty and n not in kwargs:
            raise ParameterError(f"{kind} needs the parameter {n.rstrip('_')!r}")
    return fn(**kwargs)


# ---------------------------------------------------------------------------
# shared behaviour of schedule objects
# ---------------------------------------------------------------------------


def key(kind: str, params: dict[str, Any]) -> tuple[Any, ...]:
    return (kind,) + tuple(params.items())


def fmt(v: Any) -> str:
    if isinstance(v, tuple):
        inner = ", ".join(fmt(x) for x in v)
        return f"[{inner}]"
    return repr(v)


def schedule_repr(kind: str, params: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={fmt(v)}" for k, v in params.items())
    return f"{kind}({args})"


def to_dict(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind}
    for k, v in params.items():
        if is_schedule(v):
            out[k] = v.to_dict()
        elif isinstance(v, tuple):
            out[k] = [x.to_dict() if is_schedule(x) else x for x in v]
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------------------
# steps
# ---------------------------------------------------------------------------

STEP_DTYPES = {
    np.dtype(np.float64): 0,
    np.dtype(np.float32): 1,
    np.dtype(np.int64): 2,
    np.dtype(np.int32): 3,
}


def step_type_error(step: Any) -> TypeError:
    return TypeError(
        f"step must be a real number or an array of them, got {type(step).__name__}"
    )


def bad_step_error(x: float) -> ValueError:
    return ValueError(f"step must be a finite number >= 0, got {x!r}")


def huge_step_error(step: Any, where: str = "step") -> ValueError:
    """The ValueError for an integer step beyond the float range."""
    sign = "a negative" if step < 0 else "an"
    return ValueError(f"{where} must be a finite number >= 0, got {sign} integer too "
                      "large for a float")


def scalar_step(step: Any) -> float:
    """A validated scalar step (TypeError/ValueError otherwise)."""
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Real):
        raise step_type_error(step)
    try:
        x = float(step)
    except OverflowError:
        raise huge_step_error(step) from None
    if not (x >= 0.0 and x < math.inf):
        raise bad_step_error(x)
    return x


def is_steps(step: Any) -> bool:
    """Whether ``step`` is evaluated as an array of steps: an ndarray, list or tuple,
    or another array (a JAX or CuPy array, anything with ``__array__`` that is not a
    number), which then gives an ndarray of the same shape."""
    return isinstance(step, (np.ndarray, list, tuple)) or (
        hasattr(step, "__array__")
        and not isinstance(step, (numbers.Number, np.generic, str, bytes)))


def steps_array(steps: Any) -> np.ndarray:
    """The steps as an ndarray of a real dtype (no copy when possible)."""
    if isinstance(steps, (str, bytes, dict)):
        raise step_type_error(steps)
    arr = np.asarray(steps)
    if arr.dtype == object and arr.size and all(
        isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in arr.flat
    ):
        # Python ints beyond int64/uint64 (NumPy keeps them as objects): as floats
        out = np.empty(arr.shape, np.float64)
        for idx, v in np.ndenumerate(arr):
            try:
                out[idx] = float(v)
            except OverflowError:
                raise huge_step_error(v, steps_where(idx, arr.ndim)) from None
        return out
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"steps must be an array of real numbers, got dtype {arr.dtype}")
    return arr


def steps_where(idx: tuple[Any, ...], ndim: int) -> str:
    """How an error names entry ``idx`` of an array of steps."""
    return f"steps[{', '.join(str(int(i)) for i in idx)}]" if ndim else "steps"


def steps_error(arr: np.ndarray) -> ValueError:
    """The ValueError for the first bad step of ``arr`` (C order)."""
    x = np.asarray(arr, dtype=np.float64)
    bad = ~((x >= 0.0) & (x < np.inf))
    idx = np.unravel_index(int(np.argmax(bad)), x.shape) if x.ndim else ()
    return ValueError(f"{steps_where(idx, x.ndim)} must be a finite number >= 0, got "
                      f"{float(x[idx])!r}")


def check_steps(x: np.ndarray) -> None:
    """Raise for any negative, NaN or infinite entry of a float64 array."""
    if x.size and not bool(np.all((x >= 0.0) & (x < np.inf))):
        raise steps_error(x)


def metric_value(metric: Any) -> float:
    """A metric for ReduceLROnPlateau.step: a real number (NaN allowed, as in PyTorch)."""
    if type(metric) is float:
        return metric
    if isinstance(metric, (bool, np.bool_)):
        raise TypeError(f"metric must be a real number, got {type(metric).__name__}")
    if isinstance(metric, numbers.Real):
        try:
            return float(metric)
        except OverflowError:
            raise ValueError("metric must be a real number, got an integer too large for a "
                             "float") from None
    if isinstance(metric, np.ndarray) and metric.size == 1 and metric.dtype.kind in "fiu":
        return float(metric.reshape(()))
    if hasattr(metric, "item") and hasattr(metric, "numel"):  # a one-element torch tensor
        try:
            v = metric.item()
        except (RuntimeError, ValueError):
            v = None
        if isinstance(v, numbers.Real) and not isinstance(v, bool):
            return float(v)
    raise TypeError(f"metric must be a real number, got {type(metric).__name__}")


PLATEAU_STATE_KEYS = ("lr", "best", "num_bad_epochs", "cooldown_counter", "last_epoch")
