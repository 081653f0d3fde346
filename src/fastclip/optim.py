"""Optimisers whose update is fused with gradient clipping: SGD, Adam, AdamW, RMSprop.

Each optimiser follows PyTorch's update rule (``torch.optim.SGD``, ``Adam``,
``AdamW``, ``RMSprop``; the single-tensor implementation, operations in the same
order) and is tested against it step by step. A call to :meth:`Optimizer.step`
makes one C call for the whole parameter list, with the GIL released:

1. the global L2 norm of the gradients (skipped when ``sqnorms`` is given, e.g.
   ``model.grad_sqnorms()`` from :mod:`fastclip.nn`), deterministic whatever the
   number of threads;
2. one pass over each parameter that clips the gradient and applies the update.

Clipping acts on the raw gradient before weight decay is added, as
``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` followed by
``optimizer.step()`` do. The gradient arrays are **not** modified: the clipped
value is computed on the fly inside the update pass (PyTorch clips ``p.grad`` in
place; here gradients are read-only inputs).

Built on parameters (``model.parameters()`` of a fastclip model, or of a torch
CPU model whose float32/float64 tensors are then updated in place through shared
memory, never copied), :meth:`Optimizer.step` with no argument reads each
``p.grad`` and skips parameters whose grad is None, and
:meth:`Optimizer.zero_grad` resets the gradients (``set_to_none=True`` by
default, as PyTorch). On a torch model ``p.grad`` is left unclipped, where
``torch.nn.utils.clip_grad_norm_`` before ``optimizer.step()`` would have
scaled it in place; the parameters are the same.

A step whose gradient norm is not finite is never applied: with
``on_nonfinite="raise"`` (default) it raises :class:`FloatingPointError` naming
the first non-finite gradient, with ``"skip"`` it returns the norm; in both
cases neither the parameters nor the optimiser state are modified and
``step_count`` does not advance. (PyTorch's ``clip_grad_norm_`` with its default
``error_if_nonfinite=False`` would instead write NaN into every parameter.)

``lr`` is a float or any callable ``step -> float`` such as a schedule of
:mod:`fastclip.schedules`; it is evaluated at :attr:`Optimizer.step_count` (the
first step uses ``lr(0)``) and multiplied by :attr:`Optimizer.lr_scale`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from fastclip import _interop as _io
from fastclip._checks import optim as _co
from fastclip._checks import scalars as _cs
from fastclip._dispatch import family
from fastclip._docs import fill as _fill

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop"]

LR = _co.LR

_fam = family("optim")


# The params paragraph of every optimiser's docstring (fastclip._docs.fill).
_PARAMS = """
params : iterable of ndarray, or of parameters
    ``model.parameters()`` of a fastclip model (:class:`fastclip.nn.Parameter`)
    or of a torch CPU model (float32/float64, updated in place through
    shared memory; then :meth:`step` with no argument reads each ``p.grad``),
    or the value arrays themselves.
"""


class Optimizer:
    """Base class of the fused optimisers (not instantiated directly).

    Attributes
    ----------
    params : list of ndarray
        The parameters, updated in place by :meth:`step`.
    step_count : int
        Number of applied steps (skipped steps do not count).
    lr : float
        The learning rate the next step will use: ``lr(step_count)`` (or the
        float ``lr``) times ``lr_scale``.
    lr_scale : float
        Multiplier of the learning rate, default 1.0, settable (e.g. halved by a
        rollback policy).
    clip_norm, clip_value : float or None
        The clipping applied by every step.
    """

    _kind = ""

    def __init__(
        self,
        params: Iterable[Any],
        lr: LR,
        hyper: dict[str, Any],
        kernel: dict[str, Any],
        *,
        clip_norm: float | None,
        clip_value: float | None,
    ) -> None:
        values, handles = _io.optim_params(params)
        plist = _co.check_params_list(values)
        if len(plist) == 0:
            raise ValueError("params is an empty list: the optimiser has nothing to update")
        self._params: list[np.ndarray] = plist
        self._lr = _co.check_lr(lr)
        self._clip_norm, self._clip_value = _co.check_clip(clip_norm, clip_value)
        self._hyper = hyper  # the public hyper-parameters (validated by subclasses)
        self._kernel = kernel  # the same, as keyword arguments of fused_step
        self._names = _co.state_names(
            self._kind,
            momentum=kernel.get("momentum", 0.0),
            amsgrad=kernel.get("amsgrad", False),
            centered=kernel.get("centered", False),
        )
        self._state: list[tuple[np.ndarray, ...]] = [
            tuple(np.zeros(p.shape, p.dtype, order=_co.layout_order(p)) for _ in self._names)
            for p in plist
        ]
        self._step_count = 0
        # step, state_dict and load_state_dict read and write the state as a whole:
        # one at a time, so that threads sharing an optimiser see whole steps
        self._lock = threading.RLock()
        self._lr_scale = 1.0
        self._reader = None if handles is None else _io.GradReader(handles, self._params)
        # validated once here, into the selected implementation's step plan
        self._plan: Any = None
        self._plan_impl: str | None = None
        self._current_plan()

    # -- attributes ---------------------------------------------------------------------
    @property
    def params(self) -> list[np.ndarray]:
        """The parameter arrays (a new list holding the same arrays)."""
        return list(self._params)

    @property
    def step_count(self) -> int:
        """Number of applied steps."""
        return self._step_count

    @property
    def lr_scale(self) -> float:
        """Multiplier applied to the learning rate (default 1.0)."""
        return self._lr_scale

    @lr_scale.setter
    def lr_scale(self, value: float) -> None:
        self._lr_scale = _co.check_lr_scale(value, "lr_scale")

    @property
    def lr(self) -> float:
        """The learning rate of the next step: ``lr(step_count) * lr_scale``."""
        return self._lr_at(self._step_count)

    @property
    def clip_norm(self) -> float | None:
        return self._clip_norm

    @property
    def clip_value(self) -> float | None:
        return self._clip_value

    @property
    def hyperparams(self) -> dict[str, Any]:
        """The hyper-parameters other than ``lr`` and clipping (a copy)."""
        return dict(self._hyper)

    def _lr_at(self, step: int) -> float:
        if callable(self._lr):
            v = _co.check_lr_value(self._lr(step), step)
        else:
            v = self._lr
        return v * self._lr_scale

    # -- the step -------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of the parameters, as ``torch.optim.Optimizer.zero_grad``.

        Parameters
        ----------
        set_to_none : bool, default True
            True (PyTorch's default): set every ``p.grad`` to None; a fastclip
            model's next ``backward`` sets it back to its gradient array (which it
            overwrites, so zeroing is never needed between steps), a torch
            model's next backward allocates a new tensor. False: fill each
            existing gradient with zeros in place.

        Raises
        ------
        TypeError
            The optimiser was built on plain arrays (it knows no gradients).
        """
        if self._reader is None:
            raise TypeError(
                "zero_grad() needs an optimiser built on parameters (model.parameters()); "
                "this one was built on plain arrays and knows no gradients"
            )
        self._reader.zero_grad(bool(set_to_none))

    def step(
        self,
        grads: Sequence[np.ndarray] | None = None,
        *,
        sqnorms: Any = None,
        on_nonfinite: str = "raise",
    ) -> float:
        """Clip the gradients and update every parameter, in one fused pass.

        Parameters
        ----------
        grads : list of ndarray, optional
            One gradient per parameter, same dtype and shape, in the order of
            :attr:`params`. Read only: the clipped gradient is used on the fly and
            never written back. Omitted (optimiser built on parameters): each
            parameter's ``p.grad`` is used, and parameters whose grad is None
            are skipped, as PyTorch does (their state is left unchanged). One
            step count serves every parameter, where PyTorch keeps one per
            parameter: a parameter whose first gradient comes after the first step
            gets Adam's/AdamW's bias correction of :attr:`step_count`, and SGD with
            ``momentum`` and ``dampening`` starts its momentum buffer from
            ``(1 - dampening) * grad`` instead of PyTorch's ``grad`` (with the
            default ``dampening=0`` the two agree). When every grad is None the
            step does nothing and returns 0.0.
        sqnorms : array of float, optional
            Per-gradient sums of squares (e.g. ``model.grad_sqnorms()``); the global
            norm is then ``sqrt(sum(sqnorms))`` (computed with rescaling) and the
            gradients are not read for it. The non-finite check then relies on
            ``sqnorms`` too: they must come from the same gradients (a NaN gradient
            gives a NaN sum of squares).
        on_nonfinite : {"raise", "skip"}
            What to do when the global norm is NaN or inf: raise
            :class:`FloatingPointError` naming the first non-finite gradient, or
            skip the step and return the norm. Either way nothing is modified.

        Returns
        -------
        float
            The global L2 norm of the gradients before clipping.

        Raises
        ------
        TypeError
            A gradient that is not a float32/float64 ndarray, or whose dtype
            differs from its parameter's.
        ValueError
            A gradient count or shape that does not match the parameters (the
            message names both shapes), a gradient sharing memory with a
            parameter, bad ``sqnorms``, or an unknown ``on_nonfinite``.
        FloatingPointError
            With ``on_nonfinite="raise"``, when the norm is not finite.
        """
        if on_nonfinite not in ("raise", "skip"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
        with self._lock:
            return self._step(grads, sqnorms, on_nonfinite)

    def _step(self, grads: Sequence[np.ndarray] | None, sqnorms: Any,
              on_nonfinite: str) -> float:
        plan = None
        idx: list[int] | None = None
        if self._reader is not None:
            self._reader.check_writable()
        if grads is None:
            if self._reader is None:
                raise TypeError(
                    "step() without grads needs an optimiser built on parameters "
                    "(model.parameters()); this one was built on plain arrays: pass grads"
                )
            if self._reader.refresh_values():
                self._storage_replaced()
            grads, idx = self._reader.grads()
            if len(idx) < len(self._params):
                if not idx:
                    return 0.0
                if sqnorms is not None:
                    raise ValueError(
                        "sqnorms was given but some parameters have no grad: it must hold "
                        "one value per parameter with a gradient"
                    )
                # the parameters that have a gradient: a plan of their own for this step
                plan = _fam.impl.StepPlan(
                    self._kind, [self._params[i] for i in idx], [self._state[i] for i in idx],
                    clip_norm=self._clip_norm, clip_value=self._clip_value, **self._kernel)
        elif self._reader is not None and self._reader.refresh_values():
            self._storage_replaced()
        if plan is None:
            plan = self._current_plan()
            idx = None
        lr = self._lr_at(self._step_count)
        try:
            total, bad = plan.step(grads, lr=lr, step=self._step_count + 1, sqnorms=sqnorms)
        except (TypeError, ValueError) as exc:
            if idx is None:
                raise
            # the plan ran on the parameters that have a gradient: name each by its own index
            err: Exception = exc
            for name in ("grads", "params"):
                err = _io.relabelled(err, name, [f"{name}[{i}]" for i in idx])
            raise err from None
        if idx is not None and bad >= 0:
            bad = idx[bad]
        if not math.isfinite(total):
            if on_nonfinite == "raise":
                where = (
                    f"grads[{bad}] holds a non-finite value"
                    if bad >= 0
                    else "the sum of squares overflowed"
                )
                raise FloatingPointError(
                    f"the global norm of grads is {total!r}: {where}; nothing was modified "
                    "(pass on_nonfinite='skip' to skip such steps)"
                )
            return total
        self._step_count += 1
        if self._reader is not None:
            self._reader.values_written(idx)  # torch parameters: as an in-place update
        return total

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The optimiser state, as deep copies.

        Returns
        -------
        dict
            ``{"optimizer": name, "step_count": int, "lr_scale": float,
            "hyperparams": dict, "state": [dict name -> ndarray per parameter]}``
            with PyTorch's state names (``momentum_buffer``, ``exp_avg``,
            ``exp_avg_sq``, ``max_exp_avg_sq``, ``square_avg``, ``grad_avg``).
        """
        with self._lock:
            return {
                "optimizer": type(self).__name__,
                "step_count": self._step_count,
                "lr_scale": self._lr_scale,
                "hyperparams": dict(self._hyper),
                "state": [
                    {name: arr.copy(order="K") for name, arr in zip(self._names, st)}
                    for st in self._state
                ],
            }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (values are copied in).

        The optimiser class and every hyper-parameter other than ``lr`` and the
        clipping must equal this optimiser's, and every array must have its
        parameter's shape and dtype; everything is checked before anything is
        written.

        Raises
        ------
        TypeError
            Not a dict, an array that is not an ndarray or has the wrong dtype.
        ValueError
            Another optimiser class, different hyper-parameters, a missing or
            extra key, a wrong parameter count or array shape, a bad step count or
            lr scale.
        """
        sc, scale, st = _co.check_state_dict(
            state_dict, type(self).__name__, self._hyper, self._names, self._params
        )
        with self._lock:
            for entry, arrs in zip(st, self._state):
                for k, dst in zip(self._names, arrs):
                    np.copyto(dst, entry[k])
            self._step_count = int(sc)
            self._lr_scale = scale

    def _storage_replaced(self) -> None:
        """A torch parameter's storage was replaced (``p.data = t``): the step plan is
        rebuilt on the new views, and a parameter's state follows its new memory
        order (the same values; the fused pass walks a parameter and its state in one
        order)."""
        self._plan_impl = None
        for i, p in enumerate(self._params):
            order = _co.layout_order(p)
            arrs = self._state[i]
            if arrs and not _co.in_order(arrs[0], order):
                moved = []
                for a in arrs:
                    b = np.zeros(p.shape, p.dtype, order=order)
                    np.copyto(b, a)
                    moved.append(b)
                self._state[i] = tuple(moved)

    def _current_plan(self) -> Any:
        """The step plan of the implementation selected now (built on first use and
        again after :func:`fastclip.set_implementation` switched it)."""
        impl = _fam.impl
        if self._plan_impl != impl.__name__:
            self._plan = impl.StepPlan(
                self._kind, self._params, self._state, clip_norm=self._clip_norm,
                clip_value=self._clip_value, **self._kernel,
            )
            self._plan_impl = impl.__name__  # the module's name: optimisers hold data only
        return self._plan

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # a lock and a plan (views of this object's arrays) do not pickle or copy:
        # each copy gets its own
        del state["_lock"]
        state["_plan"] = state["_plan_impl"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self._hyper.items())
        lr = self._lr if not callable(self._lr) else repr(self._lr)
        clip = ""
        if self._clip_norm is not None:
            clip = f", clip_norm={self._clip_norm!r}"
        elif self._clip_value is not None:
            clip = f", clip_value={self._clip_value!r}"
        return (
            f"{type(self).__name__}({len(self._params)} params, lr={lr}, {hp}{clip}, "
            f"step_count={self._step_count})"
        )


@_fill(params=_PARAMS)
class SGD(Optimizer):
    """Stochastic gradient descent with momentum, fused with clipping (``torch.optim.SGD``).

    With ``d = clip(g) + weight_decay * p``: the momentum buffer is ``d`` at the
    first step and ``momentum * buf + (1 - dampening) * d`` afterwards; the update
    direction is ``d + momentum * buf`` (Nesterov) or ``buf``; ``p -= lr * dir``.

    Parameters
    ----------
    {params}
        Writeable float32/float64 arrays not sharing memory (any layout).
    lr : float or callable
        Learning rate ``>= 0``, or a callable ``step -> float`` evaluated at
        :attr:`step_count`.
    momentum : float, default 0.0
        Finite, ``>= 0``.
    dampening : float, default 0.0
        Finite.
    nesterov : bool, default False
        Requires ``momentum > 0`` and ``dampening == 0``.
    weight_decay : float, default 0.0
        L2 penalty, finite and ``>= 0``, added to the clipped gradient.
    clip_norm : float, optional
        Clip the global L2 norm of the gradients to this (``>= 0``).
    clip_value : float, optional
        Clamp every gradient element to ``[-clip_value, clip_value]``; exclusive
        with ``clip_norm``.

    Raises
    ------
    ValueError
        A hyper-parameter out of range (named in the message), an empty or
        read-only parameter list, parameters sharing memory, or both
        ``clip_norm`` and ``clip_value``.
    TypeError
        A parameter that is not a float32/float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from fastclip.optim import SGD
    >>> w = np.ones(3)
    >>> opt = SGD([w], lr=0.1, momentum=0.9, clip_norm=1.0)
    >>> opt.step([np.array([3.0, 4.0, 0.0])])
    5.0
    >>> np.round(w, 6)
    array([0.94, 0.92, 1.  ])
    """

    _kind = "sgd"

    def __init__(
        self,
        params: Iterable[Any],
        lr: LR,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        # finite: an infinite momentum, dampening or decay turns every parameter into
        # inf or NaN at the first step
        momentum = _cs.check_rate(momentum, "momentum")
        dampening = _cs.check_finite(dampening, "dampening")
        nesterov = _cs.check_bool(nesterov, "nesterov")
        weight_decay = _cs.check_rate(weight_decay, "weight_decay")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                "nesterov=True requires momentum > 0 and dampening == 0 (as torch.optim.SGD), "
                f"got momentum={momentum!r}, dampening={dampening!r}"
            )
        hyper = dict(momentum=momentum, dampening=dampening, nesterov=nesterov,
                     weight_decay=weight_decay)
        super().__init__(params, lr, hyper, dict(hyper), clip_norm=clip_norm,
                         clip_value=clip_value)


@_fill(params=_PARAMS)
class Adam(Optimizer):
    """Adam with bias correction and optional AMSGrad, fused with clipping (``torch.optim.Adam``).

    With ``d = clip(g) + weight_decay * p``: ``m = lerp(m, d, 1 - beta1)``,
    ``v = beta2 * v + (1 - beta2) * d * d``, ``vmax = max(vmax, v)`` (AMSGrad),
    ``p -= lr / (1 - beta1**t) * m / (sqrt(v or vmax) / sqrt(1 - beta2**t) + eps)``.

    Parameters
    ----------
    {params}
        Writeable float32/float64 arrays not sharing memory (any layout).
    lr : float or callable, default 1e-3
        Learning rate ``>= 0``, or a callable ``step -> float``.
    betas : (float, float), default (0.9, 0.999)
        Each in ``[0, 1)``.
    eps : float, default 1e-8
        Finite, ``>= 0``.
    weight_decay : float, default 0.0
        L2 penalty, finite and ``>= 0``, added to the clipped gradient (coupled, as
        ``torch.optim.Adam``; see :class:`AdamW` for the decoupled form).
    amsgrad : bool, default False
        Keep the running maximum ``max_exp_avg_sq`` of the second moment.
    clip_norm, clip_value : float, optional
        Global-norm or value clipping of the raw gradient (exclusive).

    Raises
    ------
    ValueError
        A hyper-parameter out of range (named), bad parameters, both clippings.
    TypeError
        Bad parameter types, ``betas`` not a pair.
    """

    _kind = "adam"
    _decoupled = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: LR = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        b1, b2 = _co.check_betas(betas)
        eps = _cs.check_rate(eps, "eps")
        weight_decay = _cs.check_rate(weight_decay, "weight_decay")
        amsgrad = _cs.check_bool(amsgrad, "amsgrad")
        hyper = dict(betas=(b1, b2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        kernel = dict(beta1=b1, beta2=b2, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                      decoupled=self._decoupled)
        super().__init__(params, lr, hyper, kernel, clip_norm=clip_norm, clip_value=clip_value)


@_fill(params=_PARAMS)
class AdamW(Adam):
    """Adam with decoupled weight decay, fused with clipping (``torch.optim.AdamW``).

    As :class:`Adam`, except that weight decay multiplies the parameter by
    ``1 - lr * weight_decay`` before the Adam update instead of being added to
    the gradient.

    Parameters
    ----------
    {params}
        Writeable float32/float64 arrays not sharing memory.
    lr : float or callable, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 1e-2
        Decoupled decay, finite and ``>= 0``.
    amsgrad : bool, default False
    clip_norm, clip_value : float, optional
        Global-norm or value clipping of the raw gradient (exclusive).
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: LR = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, clip_norm=clip_norm,
                         clip_value=clip_value)


@_fill(params=_PARAMS)
class RMSprop(Optimizer):
    """RMSprop (centered, momentum) fused with clipping (``torch.optim.RMSprop``).

    With ``d = clip(g) + weight_decay * p``: ``s = alpha * s + (1 - alpha) * d * d``;
    centered: ``a = lerp(a, d, 1 - alpha)``, ``avg = sqrt(s - a * a) + eps``,
    otherwise ``avg = sqrt(s) + eps``; with momentum ``buf = momentum * buf +
    d / avg`` and ``p -= lr * buf``, otherwise ``p -= lr * d / avg``.

    Parameters
    ----------
    {params}
        Writeable float32/float64 arrays not sharing memory.
    lr : float or callable, default 1e-2
    alpha : float, default 0.99
        Smoothing constant in ``[0, 1]`` (above 1 the running average of the
        squares turns negative).
    eps : float, default 1e-8
        Finite, ``>= 0``.
    weight_decay : float, default 0.0
        Finite, ``>= 0``.
    momentum : float, default 0.0
        Finite, ``>= 0``.
    centered : bool, default False
        Normalise by the estimated variance of the gradient.
    clip_norm, clip_value : float, optional
        Global-norm or value clipping of the raw gradient (exclusive).
    """

    _kind = "rmsprop"

    def __init__(
        self,
        params: Iterable[Any],
        lr: LR = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        # alpha above 1 makes the running average of squares negative (NaN updates)
        alpha = _cs.check_interval(alpha, "alpha", low=0.0, low_open=False, high=1.0,
                                   high_open=False)
        eps = _cs.check_rate(eps, "eps")
        weight_decay = _cs.check_rate(weight_decay, "weight_decay")
        momentum = _cs.check_rate(momentum, "momentum")
        centered = _cs.check_bool(centered, "centered")
        hyper = dict(alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                     centered=centered)
        super().__init__(params, lr, hyper, dict(hyper), clip_norm=clip_norm,
                         clip_value=clip_value)
