"""Learning-rate schedules: closed forms of the step, evaluated in C.

Every factory returns an immutable :class:`Schedule`: ``sched(step)`` with an
int or float step returns a Python float, ``sched(steps)`` with an array (or
list) returns a float64 ndarray of the same shape (one C loop, GIL released,
threads for large arrays). The value depends on the step alone, so a run
resumes at any step with no replay.

Steps count from 0 (the first optimiser step uses ``sched(0)``), like
PyTorch's ``last_epoch`` after construction and optax's ``count``. Fractional
steps are allowed (the formulas are continuous in the step; ``staircase``
options floor). A negative, NaN or infinite step raises :class:`ValueError`, a
non-numeric one :class:`TypeError`; a very large step (``1e12``) returns the
schedule's final value (periodic schedules: their value there), never NaN.

Invalid parameters raise :class:`ValueError` (or :class:`TypeError`) naming
the parameter at construction: NaN or infinite numbers, negative rates, step
counts ``<= 0``, unsorted or duplicate boundaries, mismatched lengths, a
warm-up longer than the schedule.

Schedules compare equal (and hash) by kind and parameters, pickle, have a
``repr`` that is the factory call that rebuilds them, and convert to and from
plain dictionaries (:meth:`Schedule.to_dict`, :func:`from_dict`) for
configuration files. :func:`reduce_on_plateau` is the one stateful schedule.

Conventions where the anchors disagree (each documented on its factory):

* :func:`piecewise_constant` switches *at* a boundary (optax, PyTorch's
  milestones); ``switch="after"`` gives Keras's ``PiecewiseConstantDecay``.
* :func:`warmup_cosine` counts the warm-up inside ``decay_steps`` (optax);
  ``warmup_in_decay=False`` gives Keras's ``CosineDecay(warmup_steps=...)``.
* :func:`warmup` starts the inner schedule at its step 0 when the warm-up ends
  (``shift=True``); ``shift=False`` runs it on the global step.

The compiled path and the NumPy reference (:mod:`fastclip.reference.schedules`)
are switched with :func:`fastclip.set_implementation` at any time, also for
schedules that already exist.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from fastclip._checks import schedules as _s
from fastclip._checks.scalars import check_real
from fastclip._dispatch import family

__all__ = [
    "ReduceLROnPlateau",
    "Schedule",
    "constant",
    "cosine",
    "cosine_restarts",
    "cyclic",
    "exponential",
    "from_dict",
    "inverse_sqrt",
    "inverse_time",
    "join",
    "linear",
    "multistep",
    "one_cycle",
    "piecewise_constant",
    "polynomial",
    "reduce_on_plateau",
    "step",
    "warmup",
    "warmup_cosine",
]

_fam = family("schedules")
_INF = float("inf")


class Schedule(abc.ABC):
    """An immutable learning-rate schedule (built by the factories of this module).

    Attributes
    ----------
    kind : str
        The factory's name (``"cosine"``, ...).
    params : dict
        The validated parameters, in the factory's order (a copy).

    Methods
    -------
    __call__(step)
        A Python float for an int/float step; a float64 ndarray of the same
        shape for an ndarray or list of steps (int or float dtype).
    to_dict()
        ``{"kind": ..., **params}`` with child schedules as nested dicts;
        :func:`from_dict` inverts it.

    Both the compiled schedules and the reference ones are instances of this
    class (``isinstance(s, fastclip.schedules.Schedule)``).
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Schedule:  # noqa: PYI034
        raise TypeError(
            "fastclip.schedules.Schedule is abstract: build schedules with the factories "
            "of fastclip.schedules (cosine(...), warmup(...), ...) or from_dict()"
        )

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Schedule:
        """Rebuild a schedule from :meth:`to_dict` output (see :func:`from_dict`)."""
        return from_dict(d)


Schedule.register(_fam.reference.Schedule)
if _fam.compiled is not None:
    Schedule.register(_fam.compiled.Schedule)


def _make(kind: str, **kwargs: Any) -> Schedule:
    params, low = _s.normalize(kind, kwargs)
    mod = _fam.compiled if _fam.compiled is not None else _fam.reference
    return mod.Schedule(kind, params, low)


def _rebuild(kind: str, params: dict[str, Any]) -> Schedule:
    """Unpickling entry point: rebuild (and revalidate) from kind and parameters."""
    return _make(kind, **params)


def from_dict(d: dict[str, Any]) -> Schedule:
    """Build a schedule from a dictionary ``{"kind": name, **parameters}``.

    The inverse of :meth:`Schedule.to_dict`; child schedules (of :func:`warmup`
    and :func:`join`) are nested dictionaries. Parameters are validated as by
    the factory.

    Raises
    ------
    TypeError
        If ``d`` is not a dict.
    ValueError
        If ``kind`` is missing or unknown, or a parameter is invalid.
    """
    return _from_dict(d, "d", 0, set())


#: How deep child schedules may nest in :func:`from_dict` (a guard against cycles and
#: hostile configuration files, far above any real schedule).
_MAX_DEPTH = 64


def _from_dict(d: Any, where: str, depth: int, active: set[int]) -> Schedule:
    """:func:`from_dict` of the dict at ``where`` (``d['schedule']...``), ``depth``
    levels down; ``active`` holds the ids of the dicts being converted above it."""
    if not isinstance(d, dict):
        raise TypeError(f"{where} must be a dict, got {type(d).__name__}")
    if id(d) in active:
        raise ValueError(f"{where} contains itself: a schedule dict must be a tree")
    if depth > _MAX_DEPTH:
        raise ValueError(f"{where} nests schedules more than {_MAX_DEPTH} levels deep")
    if "kind" not in d:
        raise ValueError(f"{where} must have a 'kind' entry naming the schedule")
    active.add(id(d))
    try:
        params = {}
        for k, v in d.items():
            if k == "kind":
                continue
            field = f"{where}[{k!r}]"
            if isinstance(v, dict) and "kind" in v:
                v = _from_dict(v, field, depth + 1, active)
            elif isinstance(v, (list, tuple)) and v and all(
                isinstance(x, dict) and "kind" in x for x in v
            ):
                v = tuple(_from_dict(x, f"{field}[{i}]", depth + 1, active)
                          for i, x in enumerate(v))
            params[k] = v
    finally:
        active.discard(id(d))
    if d["kind"] == "reduce_on_plateau":
        raise ValueError("reduce_on_plateau is stateful: use ReduceLROnPlateau.load_state_dict")
    if depth == 0:
        return _make(d["kind"], **params)
    try:
        return _make(d["kind"], **params)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None


_MISSING = object()


def _alias(value: Any, name: str, other: Any, other_name: str, default: Any = _MISSING) -> Any:
    """The one of two spellings of a parameter that was given."""
    if value is not None and other is not None:
        raise TypeError(f"pass {name} or {other_name}, not both")
    got = value if value is not None else other
    if got is None:
        if default is _MISSING:
            raise TypeError(f"missing the required argument {name} (or {other_name})")
        return default
    return got


# ---------------------------------------------------------------------------
# factories
# ---------------------------------------------------------------------------


def constant(value: float) -> Schedule:
    """A constant learning rate: ``lr(t) = value``.

    Equals ``optax.constant_schedule(value)`` and a PyTorch optimiser with no
    scheduler.

    Parameters
    ----------
    value : float
        The learning rate, finite and ``>= 0``.
    """
    return _make("constant", value=value)


def step(init_value: float, step_size: float, gamma: float = 0.1) -> Schedule:
    """Decay by ``gamma`` every ``step_size`` steps.

    ``lr(t) = init_value * gamma ** floor(t / step_size)``

    Equals ``torch.optim.lr_scheduler.StepLR(opt, step_size, gamma)`` with the
    optimiser's lr ``init_value``, and ``optax.exponential_decay(init_value,
    step_size, gamma, staircase=True)``.

    Parameters
    ----------
    init_value : float
        The learning rate at step 0 (``>= 0``).
    step_size : float
        Steps between decays, ``> 0``.
    gamma : float, default 0.1
        Multiplicative factor, in ``[0, 1]`` (a growing step schedule has no final
        value).
    """
    return _make("step", init_value=init_value, step_size=step_size, gamma=gamma)


def multistep(init_value: float, milestones: Any, gamma: float = 0.1) -> Schedule:
    """Decay by ``gamma`` at each milestone.

    ``lr(t) = init_value * gamma ** (number of milestones m <= t)``

    Equals ``torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma)``
    (with distinct milestones).

    Parameters
    ----------
    init_value : float
        The learning rate before the first milestone.
    milestones : sequence of float
        Strictly increasing steps ``>= 0`` (duplicates are rejected: PyTorch
        would apply gamma twice).
    gamma : float, default 0.1
        Multiplicative factor, ``>= 0``.
    """
    return _make("multistep", init_value=init_value, milestones=milestones, gamma=gamma)


def piecewise_constant(boundaries: Any, values: Any, switch: str = "at") -> Schedule:
    """Piecewise constant: ``values[i]`` between ``boundaries[i-1]`` and ``boundaries[i]``.

    With ``switch="at"`` (default): ``lr(t) = values[k]``, ``k`` = number of
    boundaries ``b <= t``: the new value applies *from* the boundary step on,
    as in optax's ``piecewise_constant_schedule`` (``values[i+1] =
    values[i] * scale_i``) and PyTorch's milestones.

    With ``switch="after"``: ``k`` = number of boundaries ``b < t``: the value
    changes *after* the boundary step, as Keras's
    ``PiecewiseConstantDecay(boundaries, values)``.

    Parameters
    ----------
    boundaries : sequence of float
        Strictly increasing steps ``>= 0``.
    values : sequence of float
        ``len(boundaries) + 1`` learning rates ``>= 0``.
    switch : {"at", "after"}, default "at"
        The boundary rule.
    """
    return _make("piecewise_constant", boundaries=boundaries, values=values, switch=switch)


def exponential(
    init_value: float,
    transition_steps: float,
    decay_rate: float,
    transition_begin: float = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    """Exponential decay, optax's ``exponential_decay`` semantics.

    With ``d = t - transition_begin``: ``lr(t) = init_value`` for ``d <= 0``,
    else ``init_value * decay_rate ** (d / transition_steps)`` (the exponent
    floored when ``staircase``), then bounded by ``end_value`` (a lower bound
    when ``decay_rate < 1``, an upper bound when ``> 1``).

    Equals ``optax.exponential_decay`` with the same arguments;
    ``torch.optim.lr_scheduler.ExponentialLR(opt, gamma)`` is
    ``exponential(lr, 1, gamma)``; Keras's ``ExponentialDecay(initial,
    decay_steps, decay_rate, staircase)`` is ``exponential(initial,
    decay_steps, decay_rate, staircase=staircase)``.

    Parameters
    ----------
    init_value : float
        The learning rate before the decay begins (``>= 0``).
    transition_steps : float
        Steps over which the rate decays by one factor ``decay_rate``; ``> 0``.
    decay_rate : float
        ``> 0``. A rate ``> 1`` (growth) requires ``end_value``.
    transition_begin : float, default 0
        Steps of constant ``init_value`` before the decay, ``>= 0``.
    staircase : bool, default False
        Decay in discrete jumps every ``transition_steps``.
    end_value : float or None
        The bound; must lie on the decay's side of ``init_value``.
    """
    return _make("exponential", init_value=init_value, transition_steps=transition_steps,
                 decay_rate=decay_rate, transition_begin=transition_begin,
                 staircase=staircase, end_value=end_value)


def polynomial(
    init_value: float,
    *,
    decay_steps: float | None = None,
    end_value: float = 0.0,
    power: float = 1.0,
    cycle: bool = False,
    transition_begin: float = 0,
    transition_steps: float | None = None,
) -> Schedule:
    """Polynomial decay from ``init_value`` to ``end_value`` over ``decay_steps``.

    With ``d = max(t - transition_begin, 0)``, ``T = decay_steps``:
    ``lr(t) = (init_value - end_value) * (1 - min(d, T) / T) ** power + end_value``.
    With ``cycle=True`` (Keras), ``T`` becomes ``decay_steps * ceil(d /
    decay_steps)`` for ``d > 0`` and ``d`` is not clamped: the decay restarts
    from a lower height each period.

    Equals ``optax.polynomial_schedule(init_value, end_value, power,
    transition_steps, transition_begin)``; Keras's ``PolynomialDecay(init,
    decay_steps, end, power, cycle)``; ``torch.optim.lr_scheduler.PolynomialLR(opt,
    total_iters, power)`` is ``polynomial(lr, decay_steps=total_iters,
    power=power)``. optax and Keras order the arguments differently, so every
    argument after ``init_value`` is keyword-only.

    Parameters
    ----------
    init_value, end_value : float
        Start and end learning rates (``>= 0``).
    decay_steps : float
        ``> 0`` (required). ``transition_steps`` (optax's name) is accepted
        instead.
    power : float, default 1.0
        ``> 0``.
    cycle : bool, default False
    transition_begin : float, default 0
        Steps of constant ``init_value`` first, ``>= 0``.
    transition_steps : float, optional
        optax's name for ``decay_steps``; pass one of the two.
    """
    decay_steps = _alias(decay_steps, "decay_steps", transition_steps, "transition_steps")
    return _make("polynomial", init_value=init_value, decay_steps=decay_steps,
                 end_value=end_value, power=power, cycle=cycle,
                 transition_begin=transition_begin)


def inverse_time(
    init_value: float,
    decay_steps: float,
    decay_rate: float,
    *,
    power: float = 1.0,
    staircase: bool = False,
) -> Schedule:
    """Inverse-time decay.

    ``lr(t) = init_value / (1 + decay_rate * r) ** power`` with ``r = t /
    decay_steps`` (floored when ``staircase``).

    At ``power=1`` equals Keras's ``InverseTimeDecay(init_value, decay_steps,
    decay_rate, staircase)``; ``power`` and ``staircase`` are keyword-only
    (Keras's fourth argument is ``staircase``).

    Parameters
    ----------
    init_value : float
    decay_steps : float
        ``> 0``.
    decay_rate : float
        ``>= 0``.
    power : float, default 1.0
        ``> 0``.
    staircase : bool, default False
    """
    return _make("inverse_time", init_value=init_value, decay_steps=decay_steps,
                 decay_rate=decay_rate, power=power, staircase=staircase)


def inverse_sqrt(init_value: float, timescale: float = 1.0) -> Schedule:
    """Inverse square-root decay.

    ``lr(t) = init_value / sqrt(1 + t / timescale)``; with ``timescale=1`` this
    is ``init_value / sqrt(t + 1)``. Put :func:`warmup` in front for the
    Transformer-style warm-up then ``1/sqrt`` schedule.

    Parameters
    ----------
    init_value : float
    timescale : float, default 1.0
        ``> 0``.
    """
    return _make("inverse_sqrt", init_value=init_value, timescale=timescale)


def cosine(init_value: float, decay_steps: float, alpha: float = 0.0,
           exponent: float = 1.0) -> Schedule:
    """Cosine decay, optax's ``cosine_decay_schedule``.

    ``c = 0.5 * (1 + cos(pi * min(t, T) / T))``, ``T = decay_steps``;
    ``lr(t) = init_value * ((1 - alpha) * c ** exponent + alpha)``.

    Equals ``optax.cosine_decay_schedule(init_value, decay_steps, alpha,
    exponent)`` and Keras's ``CosineDecay(init_value, decay_steps, alpha)``
    (no warm-up). ``torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max,
    eta_min)`` is ``cosine(lr, T_max, alpha=eta_min / lr)`` for ``t <= T_max``
    (PyTorch then rises again; this stays at the final value).

    Parameters
    ----------
    init_value : float
    decay_steps : float
        ``> 0``.
    alpha : float, default 0.0
        The final value as a fraction of ``init_value``, ``>= 0``.
    exponent : float, default 1.0
        ``> 0``.
    """
    return _make("cosine", init_value=init_value, decay_steps=decay_steps, alpha=alpha,
                 exponent=exponent)


def linear(init_value: float, end_value: float, transition_steps: float,
           transition_begin: float = 0) -> Schedule:
    """Linear interpolation from ``init_value`` to ``end_value``.

    ``f = min(max(t - transition_begin, 0), T) / T``, ``T = transition_steps``;
    ``lr(t) = (init_value - end_value) * (1 - f) + end_value`` (exactly
    ``end_value`` from ``transition_begin + T`` on).

    Equals ``optax.linear_schedule(init_value, end_value, transition_steps,
    transition_begin)``; ``torch.optim.lr_scheduler.LinearLR(opt,
    start_factor, end_factor, total_iters)`` with lr ``base`` is
    ``linear(base * start_factor, base * end_factor, total_iters)``.

    Parameters
    ----------
    init_value, end_value : float
        ``>= 0``.
    transition_steps : float
        ``> 0``.
    transition_begin : float, default 0
        ``>= 0``.
    """
    return _make("linear", init_value=init_value, end_value=end_value,
                 transition_steps=transition_steps, transition_begin=transition_begin)


def warmup(schedule: Schedule, warmup_steps: float, init_value: float = 0.0,
           shift: bool = True) -> Schedule:
    """A linear warm-up from ``init_value`` in front of any schedule.

    With ``W = warmup_steps`` and ``s = schedule``:

    * ``shift=True`` (default): ``lr(t) = lin(t)`` for ``t < W``, then
      ``s(t - W)``: the inner schedule starts at its step 0 when the warm-up
      ends (as ``optax.join_schedules([linear, s], [W])``);
    * ``shift=False``: ``lr(t) = lin(t)`` for ``t < W``, then ``s(t)``: the
      inner schedule runs on the global step and the warm-up replaces its
      first ``W`` values.

    ``lin(t) = (init_value - target) * (1 - t / W) + target`` with ``target =
    s(0)`` (``shift=True``) or ``s(W)`` (``shift=False``), so the schedule is
    continuous at ``W``. ``W = 0`` is ``s`` itself.

    Parameters
    ----------
    schedule : Schedule
        Any schedule of this module.
    warmup_steps : float
        ``>= 0``.
    init_value : float, default 0.0
        The learning rate at step 0.
    shift : bool, default True
    """
    return _make("warmup", schedule=schedule, warmup_steps=warmup_steps,
                 init_value=init_value, shift=shift)


def warmup_cosine(
    *,
    peak_value: float,
    warmup_steps: float,
    decay_steps: float,
    init_value: float = 0.0,
    end_value: float = 0.0,
    exponent: float = 1.0,
    warmup_in_decay: bool = True,
) -> Schedule:
    """Linear warm-up to ``peak_value``, then cosine decay to ``end_value``.

    For ``t < W`` (``W = warmup_steps``): ``(init_value - peak_value) * (1 -
    t / W) + peak_value``. Then, with ``L = decay_steps - W`` when
    ``warmup_in_decay`` (optax: ``decay_steps`` counts the warm-up) or ``L =
    decay_steps`` otherwise (Keras: the decay follows the warm-up), ``c = 0.5 *
    (1 + cos(pi * min(t - W, L) / L))`` and ``lr(t) = peak_value * ((1 - a) *
    c ** exponent + a)`` with ``a = end_value / peak_value``.

    Equals ``optax.warmup_cosine_decay_schedule(init_value, peak_value,
    warmup_steps, decay_steps, end_value, exponent)`` with the same keywords
    (every argument is keyword-only, so a call in optax's positional order
    fails instead of reading ``init_value`` as the peak); with
    ``warmup_in_decay=False`` Keras's ``CosineDecay(initial_learning_rate=
    init_value, decay_steps, alpha=end_value / peak_value,
    warmup_target=peak_value, warmup_steps)``.

    Parameters
    ----------
    peak_value : float
    warmup_steps : float
        ``>= 0``; ``< decay_steps`` when ``warmup_in_decay``.
    decay_steps : float
        ``> 0``.
    init_value, end_value : float, default 0.0
    exponent : float, default 1.0
        ``> 0``.
    warmup_in_decay : bool, default True
    """
    return _make("warmup_cosine", peak_value=peak_value, warmup_steps=warmup_steps,
                 decay_steps=decay_steps, init_value=init_value, end_value=end_value,
                 exponent=exponent, warmup_in_decay=warmup_in_decay)


def cosine_restarts(init_value: float, T_0: float | None = None, T_mult: float | None = None,
                    *, eta_min: float = 0.0, m_mul: float = 1.0, t_0: float | None = None,
                    t_mul: float | None = None) -> Schedule:
    """Cosine annealing with warm restarts (SGDR).

    Period ``i`` lasts ``T_i = t_0 * t_mul ** i`` steps and starts at
    ``S_i = t_0 * (t_mul ** i - 1) / (t_mul - 1)`` (``i * t_0`` when ``t_mul
    == 1``). With ``T_cur = t - S_i``:
    ``lr(t) = eta_min + (init_value * m_mul ** i - eta_min) * (1 + cos(pi *
    T_cur / T_i)) / 2``.

    Equals ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0,
    T_mult, eta_min)`` at ``m_mul=1`` (PyTorch needs an integer ``T_mult``;
    any real ``T_mult >= 1`` works here), and Keras's
    ``CosineDecayRestarts(init_value, first_decay_steps=T_0, t_mul, m_mul,
    alpha=0)`` at ``eta_min=0``. ``eta_min`` and ``m_mul`` are keyword-only
    (Keras's fourth argument is ``m_mul``, PyTorch's ``eta_min``).

    Parameters
    ----------
    init_value : float
        The peak of the first period.
    T_0 : float
        Length of the first period, ``> 0`` (required; ``t_0`` is accepted
        instead).
    T_mult : float, default 1
        Period growth factor, ``>= 1`` (``t_mul`` is accepted instead).
    eta_min : float, default 0.0
        The value each period ends at, ``>= 0``. A period whose peak ``m_mul``
        has brought below ``eta_min`` rises from that peak towards ``eta_min``
        (the formula above): ``eta_min`` is then not a floor.
    m_mul : float, default 1.0
        Peak decay factor per restart, in ``[0, 1]``.
    t_0, t_mul : float, optional
        The same as ``T_0`` and ``T_mult`` (the names of :attr:`Schedule.params`
        and :meth:`Schedule.to_dict`); pass one spelling of each.
    """
    t0 = _alias(T_0, "T_0", t_0, "t_0")
    tm = _alias(T_mult, "T_mult", t_mul, "t_mul", default=1)
    return _make("cosine_restarts", init_value=init_value, t_0=t0, t_mul=tm,
                 eta_min=eta_min, m_mul=m_mul)


def one_cycle(
    max_lr: float,
    total_steps: int,
    *,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    """The 1cycle policy, PyTorch's ``OneCycleLR``.

    ``initial = max_lr / div_factor``, ``min = initial / final_div_factor``.
    Phases end at steps ``e1 = pct_start * total_steps - 1`` and
    ``total_steps - 1`` (two phases: initial -> max_lr -> min) or ``e1``,
    ``2 * pct_start * total_steps - 2`` and ``total_steps - 1`` (three
    phases: initial -> max_lr -> initial -> min). Within a phase from step
    ``s`` to ``e``, ``pct = (t - s) / (e - s)`` and ``lr = end + (start - end)
    / 2 * (cos(pi * pct) + 1)`` (``"cos"``) or ``(end - start) * pct + start``
    (``"linear"``).

    Equals ``torch.optim.lr_scheduler.OneCycleLR(opt, max_lr, total_steps,
    pct_start=..., anneal_strategy=..., div_factor=..., final_div_factor=...,
    three_phase=...)`` for steps ``0 .. total_steps - 1``; later steps return
    the final value ``min`` (PyTorch raises). The arguments after
    ``total_steps`` are keyword-only (PyTorch's third one is ``epochs``).

    Parameters
    ----------
    max_lr : float
    total_steps : int
        ``>= 1``; every phase must contain at least one step.
    pct_start : float, default 0.3
        In ``[0, 1]``.
    anneal_strategy : {"cos", "linear"}, default "cos"
    div_factor, final_div_factor : float
        ``> 0``.
    three_phase : bool, default False
    """
    return _make("one_cycle", max_lr=max_lr, total_steps=total_steps, pct_start=pct_start,
                 anneal_strategy=anneal_strategy, div_factor=div_factor,
                 final_div_factor=final_div_factor, three_phase=three_phase)


def cyclic(
    base_lr: float,
    max_lr: float,
    step_size_up: float = 2000,
    step_size_down: float | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> Schedule:
    """Cyclical learning rate, PyTorch's ``CyclicLR``.

    ``L = step_size_up + step_size_down``, ``r = step_size_up / L``,
    ``cycle = floor(1 + t / L)``, ``x = 1 + t / L - cycle``; ``scale = x / r``
    if ``x <= r`` else ``(x - 1) / (r - 1)``; ``lr(t) = base_lr + (max_lr -
    base_lr) * scale * g`` with ``g = 1`` (``"triangular"``), ``1 / 2 **
    (cycle - 1)`` (``"triangular2"``) or ``gamma ** t`` (``"exp_range"``).

    Equals ``torch.optim.lr_scheduler.CyclicLR(opt, base_lr, max_lr,
    step_size_up, step_size_down, mode, gamma)``.

    Parameters
    ----------
    base_lr, max_lr : float
        ``>= 0``.
    step_size_up : float, default 2000
        ``> 0``.
    step_size_down : float or None
        ``>= 0``; ``None`` means ``step_size_up``.
    mode : {"triangular", "triangular2", "exp_range"}
    gamma : float, default 1.0
        ``exp_range`` only; in ``(0, 1]``.
    """
    return _make("cyclic", base_lr=base_lr, max_lr=max_lr, step_size_up=step_size_up,
                 step_size_down=step_size_down, mode=mode, gamma=gamma)


def join(schedules: Any, boundaries: Any) -> Schedule:
    """Run schedules one after another, each from its own step 0.

    With ``k`` = number of boundaries ``b <= t``: ``lr(t) =
    schedules[k](t - boundaries[k-1])`` (``schedules[0](t)`` before the first
    boundary).

    Equals ``optax.join_schedules(schedules, boundaries)``; PyTorch's
    ``SequentialLR`` with milestones ``boundaries``.

    Parameters
    ----------
    schedules : sequence of Schedule
        At least one.
    boundaries : sequence of float
        ``len(schedules) - 1`` strictly increasing steps ``>= 0``.
    """
    return _make("join", schedules=schedules, boundaries=boundaries)


# ---------------------------------------------------------------------------
# the stateful schedule
# ---------------------------------------------------------------------------


def _plateau_params(init_value, mode, factor, patience, threshold, threshold_mode, cooldown,
                    min_lr, eps) -> dict[str, Any]:
    params: dict[str, Any] = {
        "init_value": _s.rate(init_value, "init_value"),
        "mode": _s.choice(mode, "mode", ("min", "max")),
        "factor": _s.rate(factor, "factor"),
        "patience": _s.integer(patience, "patience", 0),
        "threshold": _s.rate(threshold, "threshold"),
        "threshold_mode": _s.choice(threshold_mode, "threshold_mode", ("rel", "abs")),
        "cooldown": _s.integer(cooldown, "cooldown", 0),
        "min_lr": _s.rate(min_lr, "min_lr"),
        "eps": _s.rate(eps, "eps"),
    }
    if not params["factor"] < 1.0:
        raise ValueError(f"factor must be < 1.0, got {params['factor']!r}")
    return params


class ReduceLROnPlateau:
    """Reduce the learning rate when a metric stops improving (stateful).

    PyTorch's ``torch.optim.lr_scheduler.ReduceLROnPlateau`` for one
    learning rate. After each :meth:`step` with a metric: the metric is
    *better* than the best so far when ``metric < best * (1 - threshold)``
    (``mode="min"``, ``threshold_mode="rel"``), ``metric < best - threshold``
    (``"abs"``), or ``metric > best * (1 + threshold)`` / ``metric > best +
    threshold`` (``mode="max"``). Otherwise it counts as a bad epoch (so does
    a NaN metric). During ``cooldown`` epochs after a reduction bad epochs
    are not counted. After more than ``patience`` bad epochs the rate becomes
    ``max(lr * factor, min_lr)``, unless that changes it by ``eps`` or less.

    ``sched(step)`` returns the current rate whatever the step (the step is
    validated as for the other schedules), so it can be passed as an
    optimiser's ``lr``. :meth:`state_dict` / :meth:`load_state_dict` save and
    restore the state; pickling keeps it too. The state machine runs in C
    (or in the reference when that implementation was selected at
    construction).

    Parameters
    ----------
    init_value : float
        The starting learning rate (``>= 0``).
    mode : {"min", "max"}, default "min"
    factor : float, default 0.1
        In ``[0, 1)``.
    patience : int, default 10
        ``>= 0``.
    threshold : float, default 1e-4
        ``>= 0``.
    threshold_mode : {"rel", "abs"}, default "rel"
    cooldown : int, default 0
        ``>= 0``.
    min_lr : float, default 0.0
    eps : float, default 1e-8
    """

    def __init__(self, init_value: float, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: float = 0.0, eps: float = 1e-8) -> None:
        self._params = _plateau_params(init_value, mode, factor, patience, threshold,
                                       threshold_mode, cooldown, min_lr, eps)
        self._state = _fam.impl.PlateauState(self._params)

    kind = "reduce_on_plateau"

    @property
    def params(self) -> dict[str, Any]:
        """The parameters (a copy)."""
        return dict(self._params)

    @property
    def lr(self) -> float:
        """The current learning rate."""
        return float(self._state.lr)

    def step(self, metric: float) -> float:
        """Record one epoch's metric; returns the (possibly reduced) learning rate.

        Raises
        ------
        TypeError
            If ``metric`` is not a real number (a 1-element array or tensor is
            accepted).
        """
        return self._state.step(metric)

    def __call__(self, step: Any = 0) -> Any:
        """The current learning rate (a float, or an array of it for an array of steps)."""
        if type(step) is float:
            if not (step >= 0 and step < _INF):
                raise _s.bad_step_error(step)
            return self._state.lr
        if _s.is_steps(step):
            x = np.asarray(_s.steps_array(step), dtype=np.float64)
            _s.check_steps(x)
            return np.full(x.shape, self.lr)
        _s.scalar_step(step)
        return self.lr

    def state_dict(self) -> dict[str, Any]:
        """The parameters and the state as a plain dict."""
        d: dict[str, Any] = {"params": dict(self._params)}
        d.update(self._state.get_state())
        return d

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (validated before anything changes)."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        missing = [k for k in ("params",) + _s.PLATEAU_STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"state is missing {missing}")
        params = _plateau_params(**state["params"])
        new = {
            "lr": _s.rate(state["lr"], "state['lr']"),
            "best": check_real(state["best"], "state['best']"),
            "num_bad_epochs": _s.integer(state["num_bad_epochs"], "state['num_bad_epochs']", 0),
            "cooldown_counter": _s.integer(state["cooldown_counter"],
                                           "state['cooldown_counter']", 0),
            "last_epoch": _s.integer(state["last_epoch"], "state['last_epoch']", 0),
        }
        fresh = _fam.impl.PlateauState(params)
        fresh.set_state(new)
        self._params = params
        self._state = fresh

    def __getstate__(self) -> dict[str, Any]:
        return self.state_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._params = _plateau_params(**state["params"])
        self._state = _fam.impl.PlateauState(self._params)
        self.load_state_dict(state)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        st = self._state.get_state()
        return f"ReduceLROnPlateau({args})  # lr={st['lr']!r}, best={st['best']!r}"

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "reduce_on_plateau", **params}`` (the state: :meth:`state_dict`)."""
        return {"kind": "reduce_on_plateau", **self._params}


def reduce_on_plateau(init_value: float, mode: str = "min", factor: float = 0.1,
                      patience: int = 10, threshold: float = 1e-4,
                      threshold_mode: str = "rel", cooldown: int = 0, min_lr: float = 0.0,
                      eps: float = 1e-8) -> ReduceLROnPlateau:
    """Reduce the learning rate when a metric stops improving (a stateful schedule).

    The factory of :class:`ReduceLROnPlateau`, PyTorch's
    ``torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode, factor, patience,
    threshold, threshold_mode, cooldown, min_lr, eps)`` for one learning rate,
    with the optimiser's lr replaced by ``init_value`` (same positional order).
    Call :meth:`ReduceLROnPlateau.step` with the metric once per epoch; calling
    the schedule with any valid step returns the current rate, so it can be an
    optimiser's ``lr``.

    Parameters
    ----------
    init_value : float
        The starting learning rate, finite and ``>= 0``.
    mode : {"min", "max"}, default "min"
        Whether the metric should decrease (a loss) or increase (an accuracy).
    factor : float, default 0.1
        Multiplier of the rate at each reduction, in ``[0, 1)``.
    patience : int, default 10
        Bad epochs tolerated before a reduction, ``>= 0``.
    threshold : float, default 1e-4
        Minimum improvement that counts, ``>= 0``.
    threshold_mode : {"rel", "abs"}, default "rel"
        ``"rel"``: better means beyond ``best * (1 -/+ threshold)``; ``"abs"``:
        beyond ``best -/+ threshold``.
    cooldown : int, default 0
        Epochs after a reduction during which bad epochs are not counted, ``>= 0``.
    min_lr : float, default 0.0
        Lower bound of the rate, ``>= 0``.
    eps : float, default 1e-8
        A reduction smaller than this is not applied, ``>= 0``.

    Returns
    -------
    ReduceLROnPlateau
        The schedule, with its state at the start (``lr == init_value``).

    Raises
    ------
    TypeError
        A parameter of the wrong type (a non-number, a bool, a non-integer
        ``patience``/``cooldown``, a non-string mode).
    ValueError
        A parameter out of range or not finite (the message names it), or an
        unknown ``mode``/``threshold_mode``.

    See Also
    --------
    ReduceLROnPlateau : the rule in detail, ``state_dict``/``load_state_dict``.

    Examples
    --------
    >>> from fastclip import schedules as S
    >>> sched = S.reduce_on_plateau(0.1, patience=1)
    >>> [sched.step(loss) for loss in (1.0, 1.0, 1.0)]
    [0.1, 0.1, 0.010000000000000002]
    >>> sched(0)
    0.010000000000000002
    """
    return ReduceLROnPlateau(init_value, mode, factor, patience, threshold, threshold_mode,
                             cooldown, min_lr, eps)
