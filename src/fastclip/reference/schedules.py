"""Reference learning-rate schedules: the closed forms of csrc/schedules.c in Python/NumPy.

Same names as the compiled ``fastclip._schedules``: :class:`Schedule`,
:func:`evaluate` and :class:`PlateauState`. Scalar steps are evaluated with
:mod:`math` (the C library's functions, as in C), arrays with NumPy; both
follow the operation order of the C code, so results agree to the last bit for
scalars and to a few ulp for arrays (where NumPy's ``cos``/``pow`` may differ
from the C library's by an ulp). Documentation lives in
:mod:`fastclip.schedules`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastclip._checks import schedules as _s

__all__ = ["PlateauState", "Schedule", "evaluate"]

_PI = math.pi


# ---------------------------------------------------------------------------
# scalar closed forms
# ---------------------------------------------------------------------------


def _count_le(bounds: tuple[float, ...], x: float, strict: bool) -> int:
    lo, hi = 0, len(bounds)
    while lo < hi:
        mid = (lo + hi) // 2
        before = bounds[mid] < x if strict else bounds[mid] <= x
        if before:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _lerp_end(a: float, b: float, f: float) -> float:
    return (a - b) * (1.0 - f) + b


def _cos_pi_ratio(a: float, b: float) -> float:
    """cos(pi * a / b), rounded as PyTorch writes it, unless pi * a overflows."""
    t = _PI * a
    return math.cos(_PI * (a / b) if math.isinf(t) else t / b)


def _cos_pi_ratio_a(a: np.ndarray, b: Any) -> np.ndarray:
    """Array twin of _cos_pi_ratio."""
    with np.errstate(over="ignore", invalid="ignore"):
        t = _PI * a
        return np.cos(np.where(np.isinf(t), _PI * (a / b), t / b))


def _floor(v: float) -> float:
    """floor(v) as a float (inf stays inf, as C's floor)."""
    return float(math.floor(v)) if math.isfinite(v) else v


def _ceil(v: float) -> float:
    return float(math.ceil(v)) if math.isfinite(v) else v


def _exp(v: float) -> float:
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _restart_start(t0: float, tm: float, i: float) -> float:
    # the ratio first: period 1 starts at t0 exactly
    s = t0 * ((_pow(tm, i) - 1.0) / (tm - 1.0))
    if math.isinf(s):  # tm**i overflows: the same start in the log domain
        s = _exp(math.log(t0) + i * math.log(tm) - math.log(tm - 1.0))
    return s


def _restart_len(t0: float, tm: float, i: float) -> float:
    t = t0 * _pow(tm, i)
    if math.isinf(t):
        t = _exp(math.log(t0) + i * math.log(tm))
    return t


def _restart_index(x: float, t0: float, tm: float) -> float:
    """floor(log(x / t0 * (tm - 1) + 1) / log(tm)); the argument of the
    logarithm is taken in the log domain when it overflows."""
    q = x / t0 * (tm - 1.0)
    if math.isinf(q):
        lg = math.log(x) - math.log(t0) + math.log(tm - 1.0)
    else:
        lg = math.log(q + 1.0)
    return _floor(lg / math.log(tm))


def _anneal(start: float, end: float, pct: float, linear: bool) -> float:
    if linear:
        return (end - start) * pct + start
    cos_out = math.cos(_PI * pct) + 1.0
    return end + (start - end) / 2.0 * cos_out


def _pow(x: float, y: float) -> float:
    try:
        return math.pow(x, y)
    except OverflowError:
        return math.inf


def _powe(x: Any, e: float, sqrt: Any = math.sqrt, power: Any = _pow) -> Any:
    """x ** e with the exponents 1, 2 and 0.5 special-cased exactly as in C
    (a float; with ``np.sqrt`` and ``_npow``, an array elementwise)."""
    if e == 1.0:
        return x
    if e == 2.0:
        return x * x
    if e == 0.5:
        return sqrt(x)
    return power(x, e)


def _powe_a(x: np.ndarray, e: float) -> np.ndarray:
    return _powe(x, e, np.sqrt, _npow)


def _one_cycle_phases(
    p: tuple[float, ...], f: int
) -> tuple[bool, tuple[tuple[float, float, float], ...]]:
    """OneCycleLR's (linear annealing, phases): each phase (start value, end
    value, last step), two phases or three."""
    initial, mx, mn = p[0], p[1], p[2]
    if f & _s.F_THREE_PHASE:
        return bool(f & _s.F_LINEAR_ANNEAL), (
            (initial, mx, p[3]), (mx, initial, p[4]), (initial, mn, p[5]))
    return bool(f & _s.F_LINEAR_ANNEAL), ((initial, mx, p[3]), (mx, mn, p[4]))


def eval_scalar(low: _s.Lowered, x: float) -> float:
    """The value at one valid step ``x`` (finite, >= 0)."""
    c, p, f = low.code, low.p, low.flags
    if c == 0:  # constant
        return p[0]
    if c == 1:  # step
        return p[0] * _pow(p[2], _floor(x / p[1]))
    if c == 2:  # multistep
        return p[0] * _pow(p[1], float(_count_le(low.bounds, x, False)))
    if c == 3:  # piecewise_constant
        return low.values[_count_le(low.bounds, x, bool(f & _s.F_AFTER))]
    if c == 4:  # exponential
        d = x - p[3]
        if d <= 0.0:
            v = p[0]
        else:
            e = d / p[1]
            if f & _s.F_STAIRCASE:
                e = _floor(e)
            v = p[0] * _pow(p[2], e)
        if f & _s.F_HAS_END:
            v = max(v, p[4]) if p[2] < 1.0 else min(v, p[4])
        return v
    if c == 5:  # polynomial
        d = x - p[4]
        T = p[2]
        d = max(d, 0.0)
        if f & _s.F_CYCLE:
            if d > 0.0:
                # at least one period: d / T underflows to 0 for a subnormal d
                k = _ceil(d / T)
                T = T * (1.0 if k < 1.0 else k)
            # T * ceil(d / T) can round below d at huge steps: the decay is then over
            return (p[0] - p[1]) * _powe(max(1.0 - d / T, 0.0), p[3]) + p[1]
        d = min(d, T)
        return (p[0] - p[1]) * _powe(1.0 - d / T, p[3]) + p[1]
    if c == 6:  # inverse_time
        r = x / p[1]
        if f & _s.F_STAIRCASE:
            r = _floor(r)
        return p[0] / _powe(1.0 + p[2] * r, p[3])
    if c == 7:  # inverse_sqrt
        return p[0] / math.sqrt(1.0 + x / p[1])
    if c == 8:  # cosine
        cc = min(p[1], x)
        cd = 0.5 * (1.0 + _cos_pi_ratio(cc, p[1]))
        return p[0] * ((1.0 - p[2]) * _powe(cd, p[3]) + p[2])
    if c == 9:  # linear
        d = x - p[3]
        d = max(d, 0.0)
        d = min(d, p[2])
        return _lerp_end(p[0], p[1], d / p[2])
    if c == 10:  # warmup
        w = p[0]
        shift = bool(f & _s.F_SHIFT)
        inner = low.children[0]._fc_lowered
        if x < w:
            target = eval_scalar(inner, 0.0 if shift else w)
            return _lerp_end(p[1], target, x / w)
        return eval_scalar(inner, x - w if shift else x)
    if c == 11:  # warmup_cosine
        w = p[2]
        if x < w:
            return _lerp_end(p[0], p[1], x / w)
        cc = x - w
        cc = min(cc, p[3])
        cd = 0.5 * (1.0 + _cos_pi_ratio(cc, p[3]))
        return p[1] * ((1.0 - p[4]) * _powe(cd, p[5]) + p[4])
    if c == 12:  # cosine_restarts
        init, t0, tm, eta, m = p[0], p[1], p[2], p[3], p[4]
        if tm == 1.0:
            i = _floor(x / t0)
            # x / t0 overflows for a tiny t0: the position in the period is fmod
            tcur = x - i * t0 if math.isfinite(i) else math.fmod(x, t0)
            ti = t0
        else:
            i = _restart_index(x, t0, tm)
            i = max(i, 0.0)
            if i > 0.0 and x < _restart_start(t0, tm, i):
                i -= 1.0
            if x >= _restart_start(t0, tm, i + 1.0):
                i += 1.0
            tcur = x - _restart_start(t0, tm, i)
            ti = _restart_len(t0, tm, i)
        peak = init if m == 1.0 else init * _pow(m, i)
        return eta + (peak - eta) * (1.0 + _cos_pi_ratio(tcur, ti)) / 2.0
    if c == 13:  # one_cycle
        linear, phases = _one_cycle_phases(p, f)
        start_step = 0.0
        last = len(phases) - 1
        for k, (a, b, end) in enumerate(phases):
            if x <= end or k == last:
                pct = (x - start_step) / (end - start_step)
                pct = min(pct, 1.0)
                return _anneal(a, b, pct, linear)
            start_step = end
    if c == 14:  # cyclic
        base, mx, total, ratio = p[0], p[1], p[2], p[3]
        q = x / total
        cycle = _floor(1.0 + q)
        # q overflows for a tiny cycle: the position in the cycle is fmod
        xx = 1.0 + q - cycle if math.isfinite(q) else math.fmod(x, total) / total
        scale = xx / ratio if xx <= ratio else (xx - 1.0) / (ratio - 1.0)
        height = (mx - base) * scale
        if low.mode == 1:
            return base + height * (1.0 / _pow(2.0, cycle - 1.0))
        if low.mode == 2:
            return base + height * _pow(p[4], x)
        return base + height * 1.0
    if c == 15:  # join
        k = _count_le(low.bounds, x, False)
        return eval_scalar(low.children[k]._fc_lowered, x - low.bounds[k - 1] if k > 0 else x)
    raise ValueError(f"unknown schedule code {c}")


# ---------------------------------------------------------------------------
# array closed forms (x: float64 array, every entry finite and >= 0)
# ---------------------------------------------------------------------------


def _lerp_end_a(a: Any, b: Any, f: np.ndarray) -> np.ndarray:
    return (a - b) * (1.0 - f) + b


def _npow(x: Any, y: Any) -> np.ndarray:
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return np.power(x, y)


def _restart_start_a(t0: float, tm: float, i: np.ndarray) -> np.ndarray:
    """Array twin of _restart_start (errors already silenced by the caller)."""
    s = t0 * ((_npow(tm, i) - 1.0) / (tm - 1.0))
    return np.where(np.isinf(s), np.exp(math.log(t0) + i * math.log(tm) - math.log(tm - 1.0)), s)


def eval_array(low: _s.Lowered, x: np.ndarray) -> np.ndarray:
    """Values at a float64 array of valid steps (same shape)."""
    c, p, f = low.code, low.p, low.flags
    if c == 0:
        return np.full(x.shape, p[0])
    if c == 1:
        with np.errstate(over="ignore"):  # a huge x / step_size is inf: gamma**inf
            return p[0] * _npow(p[2], np.floor(x / p[1]))
    if c == 2:
        k = np.searchsorted(np.asarray(low.bounds, dtype=np.float64), x, side="right")
        return p[0] * _npow(p[1], k.astype(np.float64))
    if c == 3:
        kk = np.searchsorted(np.asarray(low.bounds, dtype=np.float64), x,
                             side="left" if f & _s.F_AFTER else "right")
        return np.asarray(low.values, dtype=np.float64)[kk]
    if c == 4:
        d = x - p[3]
        with np.errstate(over="ignore"):
            e = d / p[1]
        if f & _s.F_STAIRCASE:
            e = np.floor(e)
        v = np.where(d <= 0.0, p[0], p[0] * _npow(p[2], e))
        if f & _s.F_HAS_END:
            v = np.maximum(v, p[4]) if p[2] < 1.0 else np.minimum(v, p[4])
        return v
    if c == 5:
        d = np.maximum(x - p[4], 0.0)
        if f & _s.F_CYCLE:
            with np.errstate(over="ignore", invalid="ignore"):
                Tc = np.where(d > 0.0, p[2] * np.maximum(np.ceil(d / p[2]), 1.0), p[2])
                frac = np.maximum(1.0 - d / Tc, 0.0)
            return (p[0] - p[1]) * _powe_a(frac, p[3]) + p[1]
        d = np.minimum(d, p[2])
        return (p[0] - p[1]) * _powe_a(1.0 - d / p[2], p[3]) + p[1]
    if c == 6:
        with np.errstate(over="ignore"):
            r = x / p[1]
        if f & _s.F_STAIRCASE:
            r = np.floor(r)
        return p[0] / _powe_a(1.0 + p[2] * r, p[3])
    if c == 7:
        return p[0] / np.sqrt(1.0 + x / p[1])
    if c == 8:
        cc = np.minimum(x, p[1])
        cd = 0.5 * (1.0 + _cos_pi_ratio_a(cc, p[1]))
        return p[0] * ((1.0 - p[2]) * _powe_a(cd, p[3]) + p[2])
    if c == 9:
        d = np.minimum(np.maximum(x - p[3], 0.0), p[2])
        return _lerp_end_a(p[0], p[1], d / p[2])
    if c == 10:
        w = p[0]
        shift = bool(f & _s.F_SHIFT)
        inner = low.children[0]._fc_lowered
        out = np.empty(x.shape)
        warm = x < w
        if np.any(warm):
            target = eval_scalar(inner, 0.0 if shift else w)
            out[warm] = _lerp_end_a(p[1], target, x[warm] / w)
        rest = ~warm
        out[rest] = eval_array(inner, x[rest] - w if shift else x[rest])
        return out
    if c == 11:
        w = p[2]
        cc = np.minimum(x - w, p[3])
        with np.errstate(invalid="ignore"):
            cd = 0.5 * (1.0 + _cos_pi_ratio_a(cc, p[3]))
            decay = p[1] * ((1.0 - p[4]) * _powe_a(cd, p[5]) + p[4])
        if w > 0:
            return np.where(x < w, _lerp_end_a(p[0], p[1], x / w), decay)
        return decay
    if c == 12:
        init, t0, tm, eta, m = p[0], p[1], p[2], p[3], p[4]
        if tm == 1.0:
            with np.errstate(over="ignore", invalid="ignore"):
                i = np.floor(x / t0)
                tcur = np.where(np.isinf(i), np.fmod(x, t0), x - i * t0)
            ti = np.full(x.shape, t0)
        else:
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                q = x / t0 * (tm - 1.0)
                lg = np.where(np.isinf(q), np.log(x) - math.log(t0) + math.log(tm - 1.0),
                              np.log(q + 1.0))
                i = np.floor(lg / math.log(tm))
                i = np.maximum(i, 0.0)
                i = np.where((i > 0.0) & (x < _restart_start_a(t0, tm, i)), i - 1.0, i)
                i = np.where(x >= _restart_start_a(t0, tm, i + 1.0), i + 1.0, i)
                tcur = x - _restart_start_a(t0, tm, i)
                ti = t0 * _npow(tm, i)
                ti = np.where(np.isinf(ti), np.exp(math.log(t0) + i * math.log(tm)), ti)
        peak = np.full(x.shape, init) if m == 1.0 else init * _npow(m, i)
        return eta + (peak - eta) * (1.0 + _cos_pi_ratio_a(tcur, ti)) / 2.0
    if c == 13:
        linear, phases = _one_cycle_phases(p, f)
        out = np.empty(x.shape)
        done = np.zeros(x.shape, dtype=bool)
        start_step = 0.0
        last = len(phases) - 1
        for ph, (a, b, end) in enumerate(phases):
            sel = ~done if ph == last else (~done & (x <= end))
            pct = np.minimum((x[sel] - start_step) / (end - start_step), 1.0)
            if linear:
                out[sel] = (b - a) * pct + a
            else:
                out[sel] = b + (a - b) / 2.0 * (np.cos(_PI * pct) + 1.0)
            done |= sel
            start_step = end
        return out
    if c == 14:
        base, mx, total, ratio = p[0], p[1], p[2], p[3]
        with np.errstate(over="ignore", invalid="ignore"):
            q = x / total
            cycle = np.floor(1.0 + q)
            xx = np.where(np.isinf(q), np.fmod(x, total) / total, 1.0 + q - cycle)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(xx <= ratio, xx / ratio, (xx - 1.0) / (ratio - 1.0))
        height = (mx - base) * scale
        if low.mode == 1:
            return base + height * (1.0 / _npow(2.0, cycle - 1.0))
        if low.mode == 2:
            return base + height * _npow(p[4], x)
        return base + height * 1.0
    if c == 15:
        bnd = np.asarray(low.bounds, dtype=np.float64)
        kj = np.searchsorted(bnd, x, side="right")
        out = np.empty(x.shape)
        for j, child in enumerate(low.children):
            sel = kj == j
            if np.any(sel):
                out[sel] = eval_array(child._fc_lowered,
                                      x[sel] - bnd[j - 1] if j > 0 else x[sel])
        return out
    raise ValueError(f"unknown schedule code {c}")


def evaluate(low: _s.Lowered, step: Any) -> Any:
    """The schedule described by ``low`` at ``step`` (a number or an array of them).

    A number gives a Python float, an array (or list) a float64 ndarray of the
    same shape. Raises TypeError for a non-numeric step and ValueError for a
    negative, NaN or infinite one.
    """
    if _s.is_steps(step):
        arr = _s.steps_array(step)
        x = np.asarray(arr, dtype=np.float64)
        _s.check_steps(x)
        if x.ndim == 0:
            return np.asarray(eval_scalar(low, float(x)))
        return eval_array(low, x)
    return eval_scalar(low, _s.scalar_step(step))


class Schedule:
    """A learning-rate schedule (reference implementation); see fastclip.schedules."""

    __slots__ = ("__weakref__", "_fc_lowered", "_kind", "_params")
    _fc_schedule = True

    def __init__(self, kind: str, params: dict[str, Any], lowered: _s.Lowered) -> None:
        self._kind = kind
        self._params = dict(params)
        self._fc_lowered = lowered

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def __call__(self, step: Any) -> Any:
        return evaluate(self._fc_lowered, step)

    def __eq__(self, other: object) -> bool:
        if not _s.is_schedule(other):
            return NotImplemented
        return _s.key(self._kind, self._params) == _s.key(other.kind, other.params)

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(_s.key(self._kind, self._params))

    def __repr__(self) -> str:
        return _s.schedule_repr(self._kind, self._params)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._kind, self._params))

    def to_dict(self) -> dict[str, Any]:
        return _s.to_dict(self._kind, self._params)


def _rebuild(kind: str, params: dict[str, Any]) -> Schedule:
    """Unpickling entry point: rebuild (and revalidate) from kind and parameters."""
    norm_params, low = _s.normalize(kind, params)
    return Schedule(kind, norm_params, low)


class PlateauState:
    """The state machine of PyTorch's ReduceLROnPlateau for one learning rate (reference).

    ``params`` are the validated parameters of fastclip.schedules.ReduceLROnPlateau.
    """

    _STATE = ("lr", "best", "num_bad_epochs", "cooldown_counter", "last_epoch")

    def __init__(self, params: dict[str, Any]) -> None:
        self._params = dict(params)
        self._mode_max = params["mode"] == "max"
        self._abs = params["threshold_mode"] == "abs"
        self.lr = float(params["init_value"])
        self.best = -math.inf if self._mode_max else math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    def step(self, metric: Any) -> float:
        current = _s.metric_value(metric)
        prm = self._params
        self.last_epoch += 1
        thr = prm["threshold"]
        if self._mode_max:
            better = current > self.best + thr if self._abs else current > self.best * (thr + 1.0)
        else:
            better = current < self.best - thr if self._abs else current < self.best * (1.0 - thr)
        if better:
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > prm["patience"]:
            old = self.lr
            new = max(old * prm["factor"], prm["min_lr"])
            if old - new > prm["eps"]:
                self.lr = new
            self.cooldown_counter = prm["cooldown"]
            self.num_bad_epochs = 0
        return self.lr

    def get_state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._STATE}

    def set_state(self, state: dict[str, Any]) -> None:
        for k in self._STATE:
            setattr(self, k, state[k])
