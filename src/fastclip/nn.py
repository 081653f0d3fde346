"""Fused MLP layers, losses and initialisers on NumPy arrays.

A block is ``y = act(x @ W + b)`` with ``W`` of shape ``(in_features,
out_features)``. With the compiled kernels its forward is one BLAS GEMM
followed by one pass that adds the bias and applies the activation while
keeping what the backward needs; its backward is one pass for the activation
derivative that also produces the bias gradient (and the PReLU slope gradient),
then the GEMMs ``dW = x.T @ dz`` and ``dx = dz @ W.T``. Every gradient's sum of
squares is recorded on the way (:meth:`MLP.grad_sqnorms`), so that global-norm
clipping needs no extra pass over the gradients.

Buffers are allocated per batch size and reused (the two most recent batch
sizes are kept), so a training step at a fixed batch size allocates nothing.
Each thread has its own buffers, so one model can serve inference (``forward``)
from several threads at once. Consequently:

- the array returned by ``forward`` is a read-only view of an internal buffer,
  overwritten by the next ``forward`` with the same batch size in the same
  thread (copy it to keep it); likewise the ``dx`` returned by ``backward``;
- ``forward`` keeps a reference to its input ``x`` for the backward: do not
  modify ``x`` in place between ``forward`` and ``backward``;
- ``backward`` overwrites the gradients (it does not accumulate into them):
  :meth:`MLP.gradients` are the same array objects after every step. It uses
  the last ``forward`` of the calling thread; the gradients are shared, so
  train from one thread at a time.

Models can be copied with :func:`copy.deepcopy` and :mod:`pickle`; a copy
behaves exactly like the original (same outputs, gradients and
:meth:`MLP.grad_sqnorms`).

The kernels come from ``fastclip._nn`` or, after
``fastclip.set_implementation("python")``, from ``fastclip.reference.nn``; the
same model object switches with it.

Activations: ``"identity"``, ``"relu"``, ``"leaky_relu"`` (fixed
``negative_slope``, as ``torch.nn.LeakyReLU``), ``"prelu"`` (one learnable
scalar slope per block, as ``torch.nn.PReLU()`` with ``num_parameters=1``),
``"sigmoid"`` and ``"tanh"`` (as ``torch.nn.Sigmoid`` / ``torch.nn.Tanh``; their
derivatives ``y (1 - y)`` and ``1 - y**2`` are taken from the output, as in
PyTorch). At 0 the derivative is 0 for relu and the slope for
leaky_relu/prelu, as in PyTorch; NaN propagates through every activation.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from fastclip import _interop as _io
from fastclip._checks import nn as _cn
from fastclip._checks import scalars as _cs
from fastclip._checks import train as _ct
from fastclip._dispatch import family
from fastclip._docs import fill as _fill

__all__ = [
    "MLP",
    "BatchNorm1d",
    "Dropout",
    "Linear",
    "Parameter",
    "Sigmoid",
    "Tanh",
    "he_normal",
    "he_uniform",
    "mse",
    "softmax_cross_entropy",
    "xavier_normal",
    "xavier_uniform",
]

_fam = family("nn")
_lfam = family("layers")

_ACTS = {"identity": 0, "relu": 1, "leaky_relu": 2, "prelu": 3, "sigmoid": 4, "tanh": 5}
_INITS = {
    "xavier_uniform": "xavier_uniform",
    "xavier_normal": "xavier_normal",
    "he_uniform": "he_uniform",
    "he_normal": "he_normal",
    "xavier": "xavier_uniform",
    "glorot": "xavier_uniform",
    "glorot_uniform": "xavier_uniform",
    "glorot_normal": "xavier_normal",
    "he": "he_normal",
    "kaiming": "he_normal",
    "kaiming_uniform": "he_uniform",
    "kaiming_normal": "he_normal",
}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_CACHED_BATCH_SIZES = 2


# ---------------------------------------------------------------------------
# Initialisers
# ---------------------------------------------------------------------------
_INIT_DOC = """

    Parameters
    ----------
    shape : tuple of int
        At least 2-D; ``fan_in = shape[0] * r`` and ``fan_out = shape[1] * r``
        with ``r = prod(shape[2:])`` (fastclip's weights are ``(in, out)``,
        the transpose of PyTorch's ``(out, in)``).
    rng : numpy.random.Generator, int or None
        The random generator (an int seed or None makes
        ``numpy.random.default_rng(rng)``). The same generator state gives the
        same array; samples are drawn in float64 and rounded to ``dtype``, so a
        float32 array is the float64 one rounded.
    gain : float, default 1.0
        Multiplies the standard deviation / bound.
    dtype : {numpy.float32, numpy.float64}, default float32

    Returns
    -------
    ndarray of shape ``shape`` and dtype ``dtype``.

    Raises
    ------
    TypeError
        ``rng`` not a Generator/int/None, ``dtype`` not float32/float64, non-real gain.
    ValueError
        Fewer than 2 dimensions, negative sizes, or a negative/non-finite gain.
    """


def xavier_uniform(shape: Any, rng: Any, gain: float = 1.0, dtype: Any = np.float32) -> np.ndarray:
    shp, fi, fo, r, g, dt = _cn.init_args(shape, rng, gain, dtype)
    bound = g * math.sqrt(6.0 / _cn.fan(fi + fo))
    return _cn.init_values(r.uniform(-bound, bound, size=shp), dt)


def xavier_normal(shape: Any, rng: Any, gain: float = 1.0, dtype: Any = np.float32) -> np.ndarray:
    shp, fi, fo, r, g, dt = _cn.init_args(shape, rng, gain, dtype)
    std = g * math.sqrt(2.0 / _cn.fan(fi + fo))
    return _cn.init_values(r.standard_normal(size=shp) * std, dt)


def he_uniform(shape: Any, rng: Any, gain: float = 1.0, dtype: Any = np.float32) -> np.ndarray:
    shp, fi, _, r, g, dt = _cn.init_args(shape, rng, gain, dtype)
    bound = g * math.sqrt(6.0 / _cn.fan(fi))
    return _cn.init_values(r.uniform(-bound, bound, size=shp), dt)


def he_normal(shape: Any, rng: Any, gain: float = 1.0, dtype: Any = np.float32) -> np.ndarray:
    shp, fi, _, r, g, dt = _cn.init_args(shape, rng, gain, dtype)
    std = g * math.sqrt(2.0 / _cn.fan(fi))
    return _cn.init_values(r.standard_normal(size=shp) * std, dt)


_INIT_FUNCS: dict[str, Callable[..., np.ndarray]] = {
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
}

xavier_uniform.__doc__ = (
    "Glorot/Xavier uniform: U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))``.\n\n"
    "    Same distribution as ``torch.nn.init.xavier_uniform_`` (for the transposed\n"
    "    shape) and Keras' ``GlorotUniform``." + _INIT_DOC
)
xavier_normal.__doc__ = (
    "Glorot/Xavier normal: N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``.\n\n"
    "    Same distribution as ``torch.nn.init.xavier_normal_`` (not truncated)." + _INIT_DOC
)
he_uniform.__doc__ = (
    "He/Kaiming uniform: U(-a, a) with ``a = gain * sqrt(6 / fan_in)``.\n\n"
    "    With ``gain=1`` this is ``torch.nn.init.kaiming_uniform_(w, mode='fan_in',\n"
    "    nonlinearity='relu')`` (PyTorch's gain sqrt(2) is built in); for a leaky ReLU\n"
    "    of slope ``a`` pass ``gain=1/sqrt(1 + a**2)``." + _INIT_DOC
)
he_normal.__doc__ = (
    "He/Kaiming normal: N(0, std^2) with ``std = gain * sqrt(2 / fan_in)``.\n\n"
    "    With ``gain=1`` this is ``torch.nn.init.kaiming_normal_(w, mode='fan_in',\n"
    "    nonlinearity='relu')`` (not truncated, unlike Keras' ``HeNormal``)." + _INIT_DOC
)


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------
# The sample_weight paragraph of both losses (fastclip._docs.fill).
_SAMPLE_WEIGHT = """
Per-row weights: a 1-D ndarray of N real numbers, finite and ``>= 0``
(scikit-learn's weighted mean: the loss is ``sum_i w_i l_i / sum_i w_i``,
not Keras' ``sum_i w_i l_i / N``). None (default): every row weighs the
same, and the results are those of the unweighted call, bit for bit. Weights
of 1 give the unweighted gradient exactly (the loss up to rounding); weights
summing to 0 give a NaN loss and a zero gradient (no row contributes).
"""


@_fill(sample_weight=_SAMPLE_WEIGHT)
def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray,
                          sample_weight: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy, mean over rows, and its gradient, in one pass.

    Matches ``torch.nn.CrossEntropyLoss()`` (``reduction="mean"``) for class
    indices and for class probabilities. Numerically stable (log-sum-exp with
    the row maximum subtracted, accumulated in float64).

    Parameters
    ----------
    logits : ndarray of shape (N, C), float32 or float64
    labels : ndarray
        Integer class indices of shape ``(N,)`` in ``[0, C)``, or floating-point
        one-hot/probability targets of shape ``(N, C)`` (cast to the logits'
        dtype; rows need not sum to 1, as in PyTorch).
    sample_weight : ndarray of shape (N,), optional
        {sample_weight}

    Returns
    -------
    loss : float
        ``mean_i(logsumexp(z_i) - z_i[y_i])`` (or ``-sum_j t_ij log softmax(z_i)_j``);
        with ``sample_weight``, the weighted mean ``sum_i w_i l_i / sum_i w_i``.
        NaN or inf when the logits hold NaN/inf, and NaN for ``N == 0`` (as
        PyTorch) or weights summing to 0: a non-finite loss is reported, never
        hidden.
    dlogits : ndarray of shape (N, C), the logits' dtype
        ``(softmax(z) * sum_j t_j - t) / N``: the gradient of the loss (row
        ``i`` times ``w_i / sum_i w_i`` instead of ``1 / N`` with
        ``sample_weight``; all zeros when the weights sum to 0).

    Raises
    ------
    TypeError
        logits not float32/float64, labels neither integer nor floating point,
        sample_weight not an ndarray of real numbers.
    ValueError
        logits not 2-D; labels of the wrong shape (both shapes named); a label
        outside ``[0, C)``; sample_weight not of shape ``(N,)``, not finite or
        negative.
    """
    if sample_weight is None:  # the unweighted call stays as it was
        return _fam.impl.softmax_cross_entropy(logits, labels)
    return _fam.impl.softmax_cross_entropy(logits, labels, sample_weight)


softmax_cross_entropy.classification = True  # type: ignore[attr-defined]  # (fastclip.train.fit)


@_fill(sample_weight=_SAMPLE_WEIGHT)
def mse(pred: np.ndarray, target: np.ndarray,
        sample_weight: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Mean squared error over all elements and its gradient, in one pass.

    Matches ``torch.nn.MSELoss()`` (``reduction="mean"``), without broadcasting.

    Parameters
    ----------
    pred : ndarray, float32 or float64, any shape and layout
    target : ndarray of the same shape, any real dtype (cast to pred's dtype)
    sample_weight : ndarray of shape (N,), optional
        One weight per row of ``pred`` (its first axis, of ``k`` elements
        each).
        {sample_weight}

    Returns
    -------
    loss : float
        ``mean((pred - target)**2)`` accumulated in float64; with
        ``sample_weight``, ``sum_i w_i sum_j d_ij**2 / (k sum_i w_i)`` (the
        weighted mean over rows of each row's mean, as scikit-learn's
        ``np.average(d**2, weights=w, axis=0).mean()``). NaN for an empty
        array (as PyTorch) or weights summing to 0, and NaN/inf when the
        inputs hold them.
    dpred : ndarray, C-contiguous, shape and dtype of pred
        ``2 * (pred - target) / pred.size``; with ``sample_weight``, row ``i``
        is ``2 * (pred_i - target_i) * w_i / (k sum_i w_i)`` (all zeros when
        the weights sum to 0).

    Raises
    ------
    TypeError
        pred not float32/float64, target not numeric, sample_weight not an
        ndarray of real numbers.
    ValueError
        Different shapes (both are named); sample_weight not of shape
        ``(N,)``, not finite or negative.
    """
    if sample_weight is None:  # the unweighted call stays as it was
        return _fam.impl.mse(pred, target)
    return _fam.impl.mse(pred, target, sample_weight)


mse.classification = False  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------
class Parameter:
    """A model parameter: its value array and its gradient, as ``torch.nn.Parameter``.

    ``model.parameters()`` returns these objects, so that
    ``fastclip.clip_grad_norm_(model.parameters(), 1.0)`` clips the gradients
    (``p.grad``), never the values, exactly as in PyTorch.

    Parameters
    ----------
    data : ndarray
        The value array, float32 or float64. Kept by reference: the parameter
        is a handle on this array, not a copy.
    grad : ndarray or None, default None
        The gradient: an ndarray of the shape and dtype of ``data``, or None.
    name : str, default ""
        The parameter's name in its model (e.g. ``"0.weight"``).

    Attributes
    ----------
    data : ndarray
        The value array the model computes with (read-only attribute: the same
        object for the parameter's life; update the values in place, e.g.
        ``p.data[...] = x``).
    grad : ndarray or None
        The gradient array filled by the model's ``backward`` (the same array
        object as in ``model.gradients()``), or None before the first backward
        and after ``optimizer.zero_grad()``. Settable to None or to an ndarray
        of the same shape and dtype as ``data``.
    name : str

    Notes
    -----
    ``numpy.asarray(p)`` is ``p.data`` (no copy), so NumPy functions read a
    parameter's value; ``shape``, ``dtype``, ``ndim`` and ``size`` are those of
    ``data``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastclip.nn import Parameter
    >>> p = Parameter(np.zeros(3), name="w")
    >>> p.grad is None, p.shape
    (True, (3,))
    >>> p.grad = np.array([3.0, 4.0, 0.0])
    >>> import fastclip
    >>> fastclip.clip_grad_norm_([p], 1.0)   # clips p.grad, not p.data
    5.0
    """

    __slots__ = ("__weakref__", "_data", "_grad", "name")

    def __init__(self, data: np.ndarray, grad: np.ndarray | None = None, name: str = "") -> None:
        if not isinstance(data, np.ndarray):
            raise TypeError(f"data must be a numpy.ndarray, got {type(data).__name__}")
        if data.dtype not in _FLOATS:
            raise TypeError(f"data must have dtype float32 or float64, got {data.dtype}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        self._data = data
        self._grad: np.ndarray | None = None
        self.grad = grad
        self.name = name

    @property
    def data(self) -> np.ndarray:
        """The value array (the same object for the parameter's life)."""
        return self._data

    @property
    def grad(self) -> np.ndarray | None:
        """The gradient array, or None."""
        return self._grad

    @grad.setter
    def grad(self, value: np.ndarray | None) -> None:
        if value is not None:
            d = self._data
            if not isinstance(value, np.ndarray):
                raise TypeError(
                    f"grad must be a numpy.ndarray or None, got {type(value).__name__}"
                )
            if value.dtype != d.dtype:
                raise TypeError(
                    f"grad has dtype {value.dtype} but the parameter has dtype {d.dtype}"
                )
            if value.shape != d.shape:
                raise ValueError(
                    f"grad has shape {value.shape} but the parameter has shape {d.shape}"
                )
        self._grad = value

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of :attr:`data`."""
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        """dtype of :attr:`data`."""
        return self._data.dtype

    @property
    def ndim(self) -> int:
        """Number of dimensions of :attr:`data`."""
        return self._data.ndim

    @property
    def size(self) -> int:
        """Number of elements of :attr:`data`."""
        return self._data.size

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        a = self._data
        if dtype is not None and np.dtype(dtype) != a.dtype:
            if copy is False:
                raise ValueError("a copy is needed to change the dtype of a Parameter's data")
            return a.astype(dtype)
        return a.copy() if copy else a

    def __repr__(self) -> str:
        g = "None" if self._grad is None else "ndarray"
        name = f"{self.name!r}, " if self.name else ""
        return f"Parameter({name}shape={self.shape}, dtype={self.dtype.name}, grad={g})"


# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------
_check_dtype = _cn.check_dtype


def _check_size(v: Any, name: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if int(v) < 1:
        raise ValueError(f"{name} must be >= 1, got {int(v)}")
    return int(v)


def _check_activation(act: Any) -> int:
    if not isinstance(act, str) or act.lower() not in _ACTS:
        raise ValueError(f"activation must be one of {tuple(_ACTS)}, got {act!r}")
    return _ACTS[act.lower()]


def _check_slope(v: Any) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"negative_slope must be a real number, got {type(v).__name__}")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"negative_slope must be finite, got {f!r}")
    return f


def _check_init(init: Any) -> str:
    if not isinstance(init, str) or init.lower() not in _INITS:
        raise ValueError(f"init must be one of {tuple(_INITS)}, got {init!r}")
    return _INITS[init.lower()]


def _check_rng(rng: Any) -> np.random.Generator:
    return _ct.rng_arg(rng, "rng")


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


class _Buffers:
    __slots__ = ("dx", "dz", "out", "pre")

    def __init__(self, n: int, blk: _Block) -> None:
        dt = blk.dtype
        self.out = np.empty((n, blk.out_features), dtype=dt)
        self.pre = np.empty((n, blk.out_features), dtype=dt) if blk.needs_pre else None
        self.dz = np.empty((n, blk.out_features), dtype=dt) if blk.act != 0 else None
        self.dx: np.ndarray | None = None


class _BlockRun:
    """One thread's state of a block: buffers per batch size, the last input and buffers."""

    __slots__ = ("bufs", "cur", "x")

    def __init__(self) -> None:
        # per batch size (a fused block's _Buffers; the other layers keep lists)
        self.bufs: dict[Any, Any] = {}
        self.x: np.ndarray | None = None
        self.cur: Any = None


def _run_arrays(obj: Any) -> Iterator[np.ndarray]:
    """Every ndarray held in a block's state (buffers, lists of them, slots)."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _run_arrays(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _run_arrays(o)
    elif hasattr(obj, "__slots__"):
        for name in obj.__slots__:
            yield from _run_arrays(getattr(obj, name, None))


def _unaliased(a: np.ndarray, run: _Run) -> np.ndarray:
    """``a``, or a copy when it views one of the network's own buffers: the read-only
    output of an earlier forward or backward given back to it (``lin(lin(x))``, as in
    torch), which this call would overwrite while reading it. Only read-only arrays can
    be such views, so the user's own arrays are never scanned."""
    if a.flags.writeable or a.size == 0:
        return a
    for blk in run.blocks:
        for b in _run_arrays(blk.bufs):
            if np.may_share_memory(a, b):
                return a.copy()
    return a


class _Run:
    """One thread's state of a network: the last forward's batch size and the blocks' state."""

    __slots__ = ("blocks", "last_dtype", "last_n", "last_w")

    def __init__(self, n_blocks: int) -> None:
        self.last_n: int | None = None
        self.last_w: int | None = None
        self.last_dtype: np.dtype | None = None
        self.blocks = [_BlockRun() for _ in range(n_blocks)]


_RUNS_LOCK = threading.Lock()


class _Block:
    """One fused Linear + activation block (parameters and gradients)."""

    __slots__ = (
        "_row_scratch",
        "act",
        "bias",
        "dbias",
        "dslope",
        "dtype",
        "dweight",
        "in_features",
        "needs_pre",
        "negative_slope",
        "out_features",
        "slope",
        "sqnorms",
        "weight",
    )

    def __init__(self, n_in: int, n_out: int, act: int, negative_slope: float, dtype: np.dtype,
                 weight: np.ndarray) -> None:
        self.in_features = n_in
        self.out_features = n_out
        self.act = act
        self.negative_slope = negative_slope
        self.dtype = dtype
        # leaky relu with a slope >= 0 keeps sign(y) == sign(z): y is enough
        self.needs_pre = act == 3 or (act == 2 and negative_slope < 0)
        self.weight = np.ascontiguousarray(weight, dtype=dtype)
        self.bias = np.zeros(n_out, dtype=dtype)
        self.slope = np.full(1, negative_slope, dtype=dtype) if act == 3 else None
        self.dweight = np.zeros_like(self.weight)
        self.dbias = np.zeros_like(self.bias)
        self.dslope = np.zeros(1, dtype=dtype) if act == 3 else None
        self.sqnorms: np.ndarray = np.zeros(3 if act == 3 else 2)
        self._row_scratch: tuple[Any, ...] | None = None

    def params(self) -> list[np.ndarray]:
        ps = [self.weight, self.bias]
        return ps + [self.slope] if self.slope is not None else ps

    def grads(self) -> list[np.ndarray]:
        gs = [self.dweight, self.dbias]
        return gs + [self.dslope] if self.dslope is not None else gs

    def buffers(self, n: int, run: _BlockRun) -> _Buffers:
        bufs = run.bufs
        b = bufs.get(n)
        if b is None:
            while len(bufs) >= _CACHED_BATCH_SIZES:
                del bufs[next(iter(bufs))]
            b = bufs[n] = _Buffers(n, self)
        return b

    def forward(self, impl: Any, x: np.ndarray, run: _BlockRun) -> np.ndarray:
        b = self.buffers(x.shape[0], run)
        impl.dense_forward(x, self.weight, self.bias, self.slope, self.act, self.negative_slope,
                           b.pre, b.out)
        run.x = x
        run.cur = b
        return b.out

    def backward(self, impl: Any, dy: np.ndarray, need_dx: bool,
                 run: _BlockRun) -> np.ndarray | None:
        b = run.cur
        x = run.x
        assert b is not None and x is not None
        dx = None
        if need_dx:
            if b.dx is None:
                b.dx = np.empty((b.out.shape[0], self.in_features), dtype=self.dtype)
            dx = b.dx
        impl.dense_backward(dy, x, self.weight, self.slope, self.act, self.negative_slope,
                            b.pre, b.out, b.dz, dx, self.dweight, self.dbias, self.dslope,
                            self.sqnorms)
        return dx

    # -- per-example clipping (fastclip.privacy) --------------------------------
    def backward_rows(self, impl: Any, dy: np.ndarray, need_dx: bool,
                      run: _BlockRun) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """The first pass of a per-example backward: ``dz`` and ``dx``, no weight gradient.

        Returns ``(dx, dz, s)``: ``dz`` (an internal buffer, owned by this block, so
        it may be scaled in place) and, for PReLU, the per-example slope gradients
        ``s[i] = sum_j [z_ij <= 0] dy_ij z_ij`` (float64); None otherwise.
        """
        b = run.cur
        x = run.x
        assert b is not None and x is not None
        n = b.out.shape[0]
        dx = None
        if need_dx:
            if b.dx is None:
                b.dx = np.empty((n, self.in_features), dtype=self.dtype)
            dx = b.dx
        if b.dz is None:  # identity: a copy of dy, which may be the caller's array
            b.dz = np.empty((n, self.out_features), dtype=self.dtype)
        scratch = self._row_scratch
        if scratch is None:  # where the first pass's unused bias gradient and norms go
            scratch = self._row_scratch = (
                np.empty(self.out_features, dtype=self.dtype),
                np.empty(1, dtype=self.dtype) if self.act == 3 else None,
                np.empty(len(self.sqnorms)))
        impl.dense_backward(dy, x, self.weight, self.slope, self.act, self.negative_slope,
                            b.pre, b.out, b.dz, dx, None, scratch[0], scratch[1], scratch[2])
        s = None
        if self.act == 3:
            ref = b.pre if b.pre is not None else b.out
            with np.errstate(invalid="ignore", over="ignore"):
                zd = ref.astype(np.float64) * dy.astype(np.float64)
                s = np.where(ref > 0, 0.0, zd).sum(axis=1)
        return dx, b.dz, s

    def weight_grads_from_rows(self, impl: Any, g: np.ndarray, run: _BlockRun) -> None:
        """The second pass: ``dweight = x.T @ g`` and ``dbias = g.sum(0)`` from the
        (already scaled) rows ``g``, with their sums of squares."""
        x = run.x
        assert x is not None
        impl.dense_backward(g, x, self.weight, None, 0, 0.0, None, g, None, None, self.dweight,
                            self.dbias, None, self.sqnorms[:2])


def _cached(cache: dict, key: Any, make: Callable[[], Any]) -> Any:
    """``cache[key]``, made on first use; the two most recent keys are kept."""
    b = cache.get(key)
    if b is None:
        while len(cache) >= _CACHED_BATCH_SIZES:
            del cache[next(iter(cache))]
        b = cache[key] = make()
    return b


class _BatchNormLayer:
    """Batch normalisation over the rows of an (N, C) batch (parameters,
    gradients, running statistics, buffers)."""

    def __init__(self, m: int, eps: float, momentum: float | None, affine: bool,
                 track_running_stats: bool, dtype: np.dtype) -> None:
        self.in_features = self.out_features = m
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.dtype = dtype
        self.training = True
        self.weight = np.ones(m, dtype=dtype) if affine else None
        self.bias = np.zeros(m, dtype=dtype) if affine else None
        self.dweight = np.zeros(m, dtype=dtype) if affine else None
        self.dbias = np.zeros(m, dtype=dtype) if affine else None
        self.running_mean = np.zeros(m, dtype=dtype) if track_running_stats else None
        self.running_var = np.ones(m, dtype=dtype) if track_running_stats else None
        self.num_batches_tracked = np.zeros((), dtype=np.int64) if track_running_stats else None
        self.sqnorms: np.ndarray = np.zeros(2 if affine else 0)

    def params(self) -> list[np.ndarray]:
        return [self.weight, self.bias] if self.weight is not None and self.bias is not None else []

    def grads(self) -> list[np.ndarray]:
        return ([self.dweight, self.dbias] if self.dweight is not None and self.dbias is not None
                else [])

    def named_buffers(self) -> list[tuple[str, np.ndarray]]:
        if self.running_mean is None or self.running_var is None:
            return []
        assert self.num_batches_tracked is not None
        return [("running_mean", self.running_mean), ("running_var", self.running_var),
                ("num_batches_tracked", self.num_batches_tracked)]

    def forward(self, impl: Any, x: np.ndarray, run: _BlockRun) -> np.ndarray:
        # run.cur: [xhat, out, invstd, dx or None, batch statistics used]
        n, m = x.shape
        dt = self.dtype
        b = _cached(run.bufs, n, lambda: [np.empty((n, m), dt), np.empty((n, m), dt),
                                          np.empty(m, dt), None, True])
        batch_stats = self.training or self.running_mean is None
        update = self.training and self.running_mean is not None
        factor = 0.0
        if update:
            assert self.num_batches_tracked is not None
            if n < 2:
                raise ValueError(f"x has {n} row(s): batch normalisation in training mode "
                                 f"needs more than 1 value per feature (as torch)")
            self.num_batches_tracked += 1
            factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
        _lfam.impl.bn_forward(x, self.weight, self.bias,
                              self.running_mean if update else
                              (None if batch_stats else self.running_mean),
                              self.running_var if update else
                              (None if batch_stats else self.running_var),
                              batch_stats, self.eps, factor, b[2], b[0], b[1])
        b[4] = batch_stats
        run.cur = b
        return b[1]

    def backward(self, impl: Any, dy: np.ndarray, need_dx: bool,
                 run: _BlockRun) -> np.ndarray | None:
        b = run.cur
        assert b is not None
        dx = None
        if need_dx:
            if b[3] is None:
                b[3] = np.empty(b[0].shape, dtype=self.dtype)
            dx = b[3]
        _lfam.impl.bn_backward(dy, b[0], self.weight, b[2], b[4], dx,
                               self.dweight, self.dbias, self.sqnorms if self.affine else None)
        return dx


class _DropoutLayer:
    """Inverted dropout: in training, each element is kept with probability
    ``1 - p`` and scaled by ``1 / (1 - p)``; the identity in evaluation."""

    def __init__(self, p: float, rng: np.random.Generator) -> None:
        self.p = p
        self.rng = rng
        self.training = True
        self.sqnorms: np.ndarray = np.zeros(0)
        self.dtype: np.dtype | None = None
        self.mask: np.ndarray | None = None  # the last mask drawn (any thread)

    def params(self) -> list[np.ndarray]:
        return []

    def grads(self) -> list[np.ndarray]:
        return []

    def named_buffers(self) -> list[tuple[str, np.ndarray]]:
        return []

    @property
    def scale(self) -> float:
        return 1.0 / (1.0 - self.p) if self.p < 1.0 else 0.0

    def forward(self, impl: Any, x: np.ndarray, run: _BlockRun) -> np.ndarray:
        # run.cur: [out, dx or None, mask], or None when inactive (identity)
        if not (self.training and self.p > 0.0):
            run.cur = None
            return x
        n, m = x.shape
        dt = x.dtype
        b = _cached(run.bufs, (n, m, dt.str), lambda: [np.empty((n, m), dt), None, None])
        # keep with probability 1 - p (torch: bernoulli(1 - p)); p == 1 drops all
        mask = self.rng.random((n, m)) < 1.0 - self.p
        _lfam.impl.dropout(x, mask, self.scale, b[0])
        b[2] = self.mask = mask
        run.cur = b
        return b[0]

    def backward(self, impl: Any, dy: np.ndarray, need_dx: bool,
                 run: _BlockRun) -> np.ndarray | None:
        if not need_dx:
            return None
        b = run.cur
        if b is None:
            return dy
        if b[1] is None:
            b[1] = np.empty(b[0].shape, dtype=b[0].dtype)
        _lfam.impl.dropout(dy, b[2], self.scale, b[1])
        return b[1]


class _ActLayer:
    """A standalone elementwise activation (PReLU holds its slope)."""

    def __init__(self, act: int, negative_slope: float, dtype: np.dtype | None) -> None:
        self.act = act
        self.negative_slope = negative_slope
        self.dtype = dtype
        self.training = True
        if act == 3:
            assert dtype is not None
            self.slope: np.ndarray | None = np.full(1, negative_slope, dtype=dtype)
            self.dslope: np.ndarray | None = np.zeros(1, dtype=dtype)
            self.sqnorms: np.ndarray = np.zeros(1)
        else:
            self.slope = self.dslope = None
            self.sqnorms = np.zeros(0)

    def params(self) -> list[np.ndarray]:
        return [self.slope] if self.slope is not None else []

    def grads(self) -> list[np.ndarray]:
        return [self.dslope] if self.dslope is not None else []

    def named_buffers(self) -> list[tuple[str, np.ndarray]]:
        return []

    def _s(self) -> float:
        return float(self.slope[0]) if self.slope is not None else self.negative_slope

    def forward(self, impl: Any, x: np.ndarray, run: _BlockRun) -> np.ndarray:
        # run.cur: [out, dx or None]; run.x: the input
        n, m = x.shape
        dt = x.dtype
        b = _cached(run.bufs, (n, m, dt.str), lambda: [np.empty((n, m), dt), None])
        _lfam.impl.act_forward(x, self.act, self._s(), b[0])
        run.x = x
        run.cur = b
        return b[0]

    def backward(self, impl: Any, dy: np.ndarray, need_dx: bool,
                 run: _BlockRun) -> np.ndarray | None:
        b = run.cur
        assert b is not None and run.x is not None
        if b[1] is None:
            b[1] = np.empty(b[0].shape, dtype=b[0].dtype)
        _lfam.impl.act_backward(dy, run.x, b[0], self.act, self._s(), b[1], self.dslope,
                                self.sqnorms if self.act == 3 else None)
        return b[1] if need_dx else None


class _Network:
    """Shared machinery of the layers and of :class:`MLP`: a chain of layers
    run in order, their parameters, gradients and running buffers."""

    _blocks: list[Any]
    _names: list[str]

    def _setup(self, blocks: list[Any], names: list[str], dtype: np.dtype | None,
               buffer_prefixes: list[str] | None = None) -> None:
        self._blocks = blocks
        self._names = names
        self._dtype = dtype
        self._params = [p for blk in blocks for p in blk.params()]
        self._grads = [g for blk in blocks for g in blk.grads()]
        self._pobjs = [Parameter(p, None, n) for p, n in zip(self._params, names)]
        self._sq = np.zeros(len(self._grads))
        self._link_sqnorms()
        self._runs: dict[int, _Run] = {}
        prefixes = buffer_prefixes or [""] * len(blocks)
        self._prefixes = prefixes
        self._buffers = [(pre + name, arr) for pre, blk in zip(prefixes, blocks)
                         for name, arr in (blk.named_buffers() if hasattr(blk, "named_buffers")
                                           else [])]
        self.training = True

    def per_example_blocker(self) -> str | None:
        """Why per-example clipping (``backward(per_example_clip=...)``, and so
        ``fit(privacy=...)``) cannot run on this model, naming the layer; None when
        it can (a model of Linear blocks with their activations only)."""
        kinds = {_BatchNormLayer: "batch normalisation, which mixes the examples of a "
                                  "batch (Opacus refuses it too)",
                 _DropoutLayer: "dropout, which has no per-example path here (build the "
                                "model with dropout=0)",
                 _ActLayer: "a standalone activation, which has no per-example path here"}
        for k, blk in enumerate(self._blocks):
            if not isinstance(blk, _Block):
                name = self._prefixes[k].rstrip(".") or str(k)
                what = kinds.get(type(blk), type(blk).__name__)
                return (f"per_example_clip needs a model of Linear blocks only: layer "
                        f"{name!r} is {what}")
        return None

    def _link_sqnorms(self) -> None:
        """Make each block's ``sqnorms`` a view of the network's ``_sq`` (the backward
        writes the blocks' views; :meth:`grad_sqnorms` reads ``_sq``)."""
        k = 0
        for blk in self._blocks:
            n = len(blk.sqnorms)
            self._sq[k:k + n] = blk.sqnorms
            blk.sqnorms = self._sq[k:k + n]
            k += n

    def _run(self, create: bool = True) -> _Run | None:
        """The calling thread's forward/backward state."""
        tid = threading.get_ident()
        run = self._runs.get(tid)
        if run is None and create:
            with _RUNS_LOCK:
                alive = {t.ident for t in threading.enumerate()}
                for k in [k for k in self._runs if k not in alive]:
                    del self._runs[k]  # threads that ended: their buffers go
                run = self._runs[tid] = _Run(len(self._blocks))
        return run

    # -- copies -------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # A copy keeps the copying thread's forward state (so a backward after the
        # copy works as on the original); other threads' buffers are not copied.
        state = self.__dict__.copy()
        state["_runs"] = self._runs.get(threading.get_ident())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        run = state.pop("_runs", None)
        self.__dict__.update(state)
        self._runs = {} if run is None else {threading.get_ident(): run}
        # copy and pickle copy the blocks' views of _sq as separate arrays: link them again
        self._link_sqnorms()

    # -- properties ---------------------------------------------------------
    @property
    def _batch_statistics(self) -> bool:
        """Whether training mode normalises with batch statistics (batch
        normalisation), so that a batch needs more than one row."""
        return any(isinstance(blk, _BatchNormLayer) for blk in self._blocks)

    @property
    def dtype(self) -> np.dtype | None:
        """The dtype of every parameter, gradient and accepted input (None for
        a layer without parameters, which accepts float32 and float64)."""
        return self._dtype

    @property
    def in_features(self) -> int | None:
        """Width of the input (None: any width)."""
        return getattr(self._blocks[0], "in_features", None)

    @property
    def out_features(self) -> int | None:
        """Width of the output (None: the width of the input)."""
        return getattr(self._blocks[-1], "out_features", None)

    # -- modes --------------------------------------------------------------
    def train(self, mode: bool = True) -> _Network:
        """Set training mode (``mode=True``) or evaluation mode; returns self.

        As ``torch.nn.Module.train``: in training mode batch normalisation
        uses (and updates the running estimates from) the batch statistics
        and dropout is active; in evaluation mode batch normalisation uses its
        running estimates and dropout is the identity. Layers without such
        behaviour ignore the mode. New models start in training mode.

        Raises
        ------
        TypeError
            ``mode`` not a bool.
        """
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"mode must be a bool, got {type(mode).__name__}")
        self.training = bool(mode)
        for blk in self._blocks:
            if hasattr(blk, "training"):
                blk.training = self.training
        return self

    def eval(self) -> _Network:
        """Set evaluation mode (``train(False)``); returns self."""
        return self.train(False)

    # -- forward / backward -------------------------------------------------
    def _check_rows(self, a: Any, name: str, width: int | None, what: str,
                    dtype: np.dtype | None = None) -> np.ndarray:
        return _cn.check_rows(a, name, width, what, self._dtype if dtype is None else dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run the network on a batch.

        Parameters
        ----------
        x : ndarray of shape (N, in_features), the model's dtype
            Any layout (rows that are not unit-stride are copied once). Kept
            by reference for :meth:`backward`: do not modify it in between. An
            earlier output of this network given back to it (``lin(lin(x))``)
            is copied first, since this call overwrites that buffer.

        Returns
        -------
        ndarray of shape (N, out_features)
            A read-only view of an internal buffer, overwritten by the next
            forward with the same N. ``N == 0`` gives an empty array.

        Raises
        ------
        TypeError
            x not an ndarray, or not of the model's dtype.
        ValueError
            x not of shape (N, in_features) (both shapes are named); a batch
            of one row for batch normalisation in training mode.
        """
        x = self._check_rows(x, "x", self.in_features, "an input")
        impl = _fam.impl
        run = self._run()
        assert run is not None
        x = _unaliased(x, run)
        n = x.shape[0]
        for blk in self._blocks:  # refused before any block runs or any statistic moves
            if isinstance(blk, _BatchNormLayer) and blk.training and \
                    blk.running_mean is not None and n < 2:
                raise ValueError(f"x has {n} row(s): batch normalisation in training mode "
                                 f"needs more than 1 value per feature (as torch)")
        # a forward that raises midway leaves no half-run state for backward to use
        run.last_n = None
        for blk, brun in zip(self._blocks, run.blocks):
            x = blk.forward(impl, x, brun)
        run.last_n = x.shape[0]
        run.last_w = x.shape[1]
        run.last_dtype = x.dtype
        return _readonly(x)

    __call__ = forward

    def backward(self, dy: np.ndarray, *, input_grad: bool = True,
                 per_example_clip: Any = None, per_layer: Any = None,
                 loss_reduction: str = "mean") -> np.ndarray | None:
        """Back-propagate ``dy`` (the gradient of the loss w.r.t. the output).

        Fills :meth:`gradients` (overwriting them) and :meth:`grad_sqnorms`.
        The backward of batch normalisation and dropout follows the mode of
        the last :meth:`forward`.

        Parameters
        ----------
        dy : ndarray of shape (N, out_features), the model's dtype
            N must be the batch size of the last :meth:`forward`.
        input_grad : bool, default True
            Compute and return the gradient of the input. ``False`` skips the
            first block's ``dz @ W.T`` GEMM (a training step does not need it)
            and returns None.
        per_example_clip : float or sequence of float, optional, keyword-only
            Differentially private backward (DP-SGD): clip every example's
            gradient to this L2 norm ``C`` and leave in :meth:`gradients` the
            **sum over the batch of the clipped per-example gradients**, as
            Opacus' ``DPOptimizer`` sums them before adding noise. Example ``i``
            is scaled by ``min(1, C / (norm_i + 1e-6))``, where ``norm_i`` is the
            norm of its gradient over every parameter (global, as Opacus and
            optax's ``per_example_global_norm_clip``). No per-example gradient is
            ever formed: for a block ``y = act(x W + b)`` the gradient of example
            ``i`` is ``x_i dz_i^T`` (and ``dz_i`` for the bias), whose squared norm
            is ``|x_i|^2 |dz_i|^2``, and the clipped sum is the ordinary weight
            GEMM on rows of ``dz`` scaled by the factors. The norms before
            clipping are kept: :meth:`per_example_norms`. A sequence gives one
            norm per parameter (per-layer clipping, Opacus' per-layer mode).
        per_layer : {None, "equal", "size"}, optional, keyword-only
            With a float ``C``: ``None`` clips the global per-example norm;
            ``"equal"`` clips each of the ``K`` parameter arrays to ``C / sqrt(K)``
            and ``"size"`` to ``C * sqrt(D_k / D)`` (``D_k`` elements of array
            ``k``), as optax's ``per_example_layer_norm_clip``.
        loss_reduction : {"mean", "sum"}, default "mean", keyword-only
            How the loss whose gradient is ``dy`` combined the examples: with
            ``"mean"`` (fastclip's losses), ``dy`` carries a factor ``1/N`` that
            the per-example gradients do not have, so they are ``N`` times
            the rows' contributions (Opacus' convention).

        Returns
        -------
        ndarray of shape (N, in_features) or None
            A read-only view of an internal buffer (overwritten by the next
            backward with the same N).

        Raises
        ------
        RuntimeError
            No forward has run.
        TypeError, ValueError
            dy not an ndarray of the model's dtype and of shape (N, out_features).
        """
        run = self._run(create=False)
        if run is None or run.last_n is None:
            raise RuntimeError("backward called before forward (in this thread), or after a "
                               "forward that raised")
        dy = self._check_rows(dy, "dy", run.last_w, "an output gradient", run.last_dtype)
        dy = _unaliased(dy, run)
        if dy.shape[0] != run.last_n:
            raise ValueError(
                f"dy has shape {dy.shape} but the last forward produced an output of shape "
                f"({run.last_n}, {run.last_w})"
            )
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(f"loss_reduction must be 'mean' or 'sum', got {loss_reduction!r}")
        input_grad = _cs.check_bool(input_grad, "input_grad")
        if per_example_clip is not None or per_layer is not None:
            from fastclip._checks import privacy as _cp

            clip, layer_mode = _cp.check_per_example_clip(per_example_clip, per_layer,
                                                         len(self._grads))
            if dy.shape[0] == 0:
                raise ValueError("dy has a batch of size 0: per-example clipping needs "
                                 "at least one example")
            why = self.per_example_blocker()
            if why is not None:
                raise ValueError(why)
            scale = float(dy.shape[0]) if loss_reduction == "mean" else 1.0
            return self._backward_per_example(dy, bool(input_grad), clip, layer_mode, scale)
        impl = _fam.impl
        blocks = self._blocks
        bruns = run.blocks
        last = len(blocks) - 1
        g: np.ndarray = dy
        for i in range(last, 0, -1):
            gi = blocks[i].backward(impl, g, True, bruns[i])
            assert gi is not None
            g = gi
        dx = blocks[0].backward(impl, g, bool(input_grad), bruns[0])
        for p, gr in zip(self._pobjs, self._grads):
            p._grad = gr
        return None if dx is None else _readonly(dx)

    def _backward_per_example(self, dy: np.ndarray, input_grad: bool, clip: Any,
                              per_layer: Any, scale: float) -> np.ndarray | None:
        """Per-example clipped backward (see :meth:`backward`); ``dy`` is checked."""
        from fastclip import privacy as _privacy

        run = self._run(create=False)
        assert run is not None
        impl = _fam.impl
        blocks = self._blocks
        bruns = run.blocks
        rows: list[np.ndarray] = []
        slopes: list[np.ndarray | None] = []
        g: np.ndarray = dy
        dx = None
        for i in range(len(blocks) - 1, -1, -1):
            need = True if i > 0 else bool(input_grad)
            dxi, dz, s = blocks[i].backward_rows(impl, g, need, bruns[i])
            rows.append(dz)
            slopes.append(s)
            if i > 0:
                assert dxi is not None
                g = dxi
            else:
                dx = dxi
        rows.reverse()
        slopes.reverse()
        xs: list[np.ndarray] = []
        for br in bruns:
            assert br.x is not None  # set by the forward that backward checked for
            xs.append(br.x)
        weights = _privacy._clip_rows(self, rows, slopes, xs, clip, per_layer, scale)
        # weights: per parameter array, the per-example factor of its rows; under
        # global clipping one array for all, and every layer's rows are scaled in
        # one call
        pimpl = _privacy._fam.impl
        shared = all(w is weights[0] for w in weights)
        if shared:
            pimpl.row_weighted_sum(rows, np.broadcast_to(weights[0], (len(rows), dy.shape[0])),
                                   True, sums=False)
        k = 0
        for blk, dz, s, br in zip(blocks, rows, slopes, bruns):
            w_w, w_b = weights[k], weights[k + 1]
            db = pimpl.row_weighted_sum([dz], w_b[None, :], False)[0] \
                if w_b is not w_w else None
            if not shared:
                pimpl.row_weighted_sum([dz], w_w[None, :], True)
            blk.weight_grads_from_rows(impl, dz, br)
            if db is not None:
                blk.dbias[...] = db
                blk.sqnorms[1] = float(np.dot(db.astype(np.float64), db.astype(np.float64)))
            k += 2
            if s is not None:
                assert blk.dslope is not None
                ds = float(np.dot(weights[k], s))
                blk.dslope[0] = ds
                blk.sqnorms[2] = float(blk.dslope[0]) ** 2
                k += 1
        return None if dx is None else _readonly(dx)

    # -- parameters ---------------------------------------------------------
    def parameters(self) -> list[Parameter]:
        """The parameters, as :class:`Parameter` objects (value ``p.data``, gradient ``p.grad``).

        Per block: weight ``(in, out)``, bias ``(out,)`` and, for prelu, the
        slope ``(1,)``. The same objects on every call; ``p.data`` is the array
        the model computes with (update it in place), ``p.grad`` is None before
        the first :meth:`backward` and afterwards the array of
        :meth:`gradients` that the backward fills. Clipping functions and
        optimisers given these objects act on ``p.grad``, as in PyTorch; use
        ``[p.data for p in model.parameters()]`` for the value arrays.
        """
        return list(self._pobjs)

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """Yield ``(name, parameter)`` pairs in the order of :meth:`parameters`.

        As ``torch.nn.Module.named_parameters``; the names are those of
        :meth:`parameter_names` (``"0.weight"``, ``"0.bias"``, ...).
        """
        yield from zip(self._names, list(self._pobjs))

    def gradients(self) -> list[np.ndarray]:
        """The gradient arrays, in the order and shapes of :meth:`parameters`; the
        same array objects after every :meth:`backward` (which fills them in
        place, and sets each parameter's ``grad`` to them)."""
        return list(self._grads)

    def parameter_names(self) -> list[str]:
        """Names in the order of :meth:`parameters` (the keys of :meth:`state_dict`)."""
        return list(self._names)

    def per_example_norms(self) -> np.ndarray | None:
        """The per-example gradient norms of the last per-example backward (a copy).

        float64 of shape (N,): the global L2 norm of each example's gradient
        before clipping (see ``backward(per_example_clip=...)``); None before the
        first such backward.
        """
        norms = getattr(self, "_pe_norms", None)
        return None if norms is None else norms.copy()

    def grad_sqnorms(self) -> np.ndarray:
        """float64 sums of squares of each gradient from the last backward (a copy).

        Computed by the backward's fused passes: ``sqrt(grad_sqnorms().sum())``
        is the global L2 norm, with no extra pass over the gradients. Zeros
        before the first backward.
        """
        return self._sq.copy()

    def num_parameters(self) -> int:
        """Total number of scalar parameters."""
        return int(sum(p.size for p in self._params))

    def named_buffers(self) -> list[tuple[str, np.ndarray]]:
        """The running statistics of batch normalisation, as torch's
        ``named_buffers()``: ``(name, array)`` pairs (``"<layer>.running_mean"``,
        ``"<layer>.running_var"``, ``"<layer>.num_batches_tracked"``). The
        arrays themselves (updated in place by training-mode forwards)."""
        return list(self._buffers)

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{name: copy}`` of the parameters, in the order of
        :meth:`parameter_names`, then of the buffers (:meth:`named_buffers`)."""
        sd = {n: p.copy() for n, p in zip(self._names, self._params)}
        sd.update((n, b.copy()) for n, b in self._buffers)
        return sd

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy parameters in place from ``state`` (as returned by :meth:`state_dict`).

        Parameters and buffers (batch normalisation's running statistics)
        alike. Every entry is validated before any array is written; the
        arrays stay the same objects (an optimiser holding them keeps
        working). Values are cast to the model's dtype.

        Raises
        ------
        TypeError
            ``state`` not a mapping, a value not a real numeric array.
        ValueError
            Missing or unexpected keys, or a shape mismatch (both shapes named).
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping of name -> array, got {type(state).__name__}")
        names = self._names + [n for n, _ in self._buffers]
        arrays = self._params + [b for _, b in self._buffers]
        missing = [n for n in names if n not in state]
        unexpected = [k for k in state if k not in names]
        if missing or unexpected:
            raise ValueError(
                f"state does not match the model's parameters: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        values = []
        for n, p in zip(names, arrays):
            v = state[n]
            if _io.is_torch(v):  # a torch state_dict's tensors (detached, as torch copies)
                try:
                    v = v.detach().cpu().numpy()
                except (TypeError, RuntimeError) as exc:
                    raise TypeError(f"state[{n!r}] is a torch tensor NumPy cannot read: "
                                    f"{exc}") from None
            elif not isinstance(v, np.ndarray):
                v = np.asarray(v)
            if v.dtype.kind not in "iuf":
                raise TypeError(f"state[{n!r}] must be a real numeric array, got dtype {v.dtype}")
            if v.shape != p.shape:
                raise ValueError(
                    f"state[{n!r}] has shape {v.shape} but the parameter has shape {p.shape}"
                )
            values.append(v)
        for p, v in zip(arrays, values):
            np.copyto(p, v, casting="unsafe")


class Linear(_Network):
    """A fused affine layer with activation: ``y = act(x @ weight + bias)``.

    Like ``torch.nn.Linear`` followed by the activation, but ``weight`` has
    shape ``(in_features, out_features)`` (the transpose of PyTorch's).

    Parameters
    ----------
    in_features, out_features : int
        Sizes (>= 1).
    activation : {"identity", "relu", "leaky_relu", "prelu", "sigmoid", "tanh"}, default "identity"
    negative_slope : float, default 0.01
        The slope for negative inputs of ``leaky_relu`` (any finite value, as
        ``torch.nn.LeakyReLU``), and the initial value of the learnable slope of
        ``prelu`` (PyTorch's ``PReLU`` starts at 0.25).
    init : str, default "he_normal"
        ``"xavier_uniform"``, ``"xavier_normal"``, ``"he_uniform"`` or
        ``"he_normal"`` (aliases: ``"xavier"``, ``"glorot"``, ``"he"``,
        ``"kaiming"``, ...). For leaky_relu/prelu the He gain is
        ``1/sqrt(1 + slope**2)`` (PyTorch's ``calculate_gain('leaky_relu')``
        divided by sqrt(2), which He's formula holds). The bias starts at 0.
    dtype : {numpy.float32, numpy.float64}, default float32
        The dtype of the parameters, gradients and accepted inputs.
    rng : numpy.random.Generator, int or None
        Source of the initial weights (reproducible with a seed).

    Attributes
    ----------
    weight, bias : ndarray
    slope : ndarray of shape (1,) or None
        The PReLU slope (None for other activations).

    Notes
    -----
    :meth:`parameters` is ``[weight, bias]`` (plus ``slope`` for prelu), named
    ``"weight"``, ``"bias"``, ``"slope"``.
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "identity", *,
                 negative_slope: float = 0.01, init: str = "he_normal", dtype: Any = np.float32,
                 rng: Any = None) -> None:
        n_in = _check_size(in_features, "in_features")
        n_out = _check_size(out_features, "out_features")
        act = _check_activation(activation)
        ns = _check_slope(negative_slope)
        init_name = _check_init(init)
        dt = _check_dtype(dtype)
        gen = _check_rng(rng)
        w = _init_weight(init_name, n_in, n_out, act, ns, gen, dt)
        blk = _Block(n_in, n_out, act, ns, dt, w)
        self.activation = activation.lower()
        names = ["weight", "bias"] + (["slope"] if act == 3 else [])
        self._setup([blk], names, dt)

    @property
    def weight(self) -> np.ndarray:
        """The weight, shape ``(in_features, out_features)``."""
        return self._blocks[0].weight

    @property
    def bias(self) -> np.ndarray:
        """The bias, shape ``(out_features,)``."""
        return self._blocks[0].bias

    @property
    def slope(self) -> np.ndarray | None:
        """The PReLU slope, shape ``(1,)``, or None."""
        return self._blocks[0].slope

    def __repr__(self) -> str:
        return (f"Linear({self.in_features}, {self.out_features}, "
                f"activation={self.activation!r}, dtype={self._dtype!s})")


def _check_prob(p: Any) -> float:
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
        raise TypeError(f"dropout probability p must be a real number, got {type(p).__name__}")
    f = float(p)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1], got {f!r}")
    return f


def _check_eps(eps: Any) -> float:
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    f = float(eps)
    if not (math.isfinite(f) and f >= 0.0):
        raise ValueError(f"eps must be finite and >= 0, got {f!r}")
    return f


def _check_momentum(momentum: Any) -> float | None:
    if momentum is None:
        return None
    if isinstance(momentum, (bool, np.bool_)) or not isinstance(momentum, numbers.Real):
        raise TypeError(f"momentum must be a real number or None, got {type(momentum).__name__}")
    f = float(momentum)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"momentum must be in [0, 1] or None, got {f!r}")
    return f


_check_bool = _cs.check_bool


class BatchNorm1d(_Network):
    """Batch normalisation over the rows of an ``(N, C)`` batch, as
    ``torch.nn.BatchNorm1d(num_features)`` on 2-D input.

    In training mode each feature is normalised with the mean and the
    *biased* variance of the batch, ``y = (x - mean) / sqrt(var + eps) *
    weight + bias``, and the running estimates are updated with the
    *unbiased* variance: ``running = (1 - momentum) * running + momentum *
    batch`` (PyTorch's convention). In evaluation mode (:meth:`eval`) the
    running estimates are used instead. Statistics are accumulated in
    float64.

    Parameters
    ----------
    num_features : int
        C, the width of the input (>= 1).
    eps : float, default 1e-5
        Added to the variance (finite, >= 0).
    momentum : float or None, default 0.1
        Weight of the batch statistics in the running estimates, in [0, 1];
        None gives the cumulative average (factor ``1 / num_batches_tracked``).
    affine : bool, default True
        Learnable per-feature ``weight`` (starts at 1) and ``bias`` (0).
    track_running_stats : bool, default True
        Keep running estimates. Without them batch statistics are used in
        both modes.
    dtype : {numpy.float32, numpy.float64}, default float32

    Attributes
    ----------
    weight, bias : ndarray of shape (C,) or None
    running_mean, running_var : ndarray of shape (C,) or None
        Start at 0 and 1.
    num_batches_tracked : 0-d int64 ndarray or None

    Notes
    -----
    :meth:`parameters` is ``[weight, bias]`` (named ``"weight"``,
    ``"bias"``, as torch), empty without ``affine``. The running estimates
    are buffers (:meth:`named_buffers`), saved by :meth:`state_dict`. A
    training-mode batch needs at least 2 rows (ValueError otherwise, as
    torch).

    Examples
    --------
    >>> import numpy as np
    >>> from fastclip.nn import BatchNorm1d
    >>> bn = BatchNorm1d(3, dtype=np.float64)
    >>> y = bn(np.arange(12.0).reshape(4, 3))
    >>> bool(np.allclose(y.mean(axis=0), 0.0))
    True
    >>> bn.running_mean
    array([0.45, 0.55, 0.65])
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *,
                 dtype: Any = np.float32) -> None:
        m = _check_size(num_features, "num_features")
        e = _check_eps(eps)
        mom = _check_momentum(momentum)
        aff = _check_bool(affine, "affine")
        trk = _check_bool(track_running_stats, "track_running_stats")
        dt = _check_dtype(dtype)
        self._bn = _BatchNormLayer(m, e, mom, aff, trk, dt)
        self._setup([self._bn], ["weight", "bias"] if aff else [], dt)

    @property
    def num_features(self) -> int:
        """C, the number of features."""
        return self._bn.in_features

    @property
    def eps(self) -> float:
        """Added to the variance."""
        return self._bn.eps

    @property
    def momentum(self) -> float | None:
        """Weight of the batch statistics in the running estimates, or None (cumulative average)."""
        return self._bn.momentum

    @property
    def affine(self) -> bool:
        """Whether ``weight`` and ``bias`` exist."""
        return self._bn.affine

    @property
    def track_running_stats(self) -> bool:
        """Whether running estimates are kept."""
        return self._bn.track_running_stats

    @property
    def weight(self) -> np.ndarray | None:
        """Per-feature scale, shape (C,), or None."""
        return self._bn.weight

    @property
    def bias(self) -> np.ndarray | None:
        """Per-feature shift, shape (C,), or None."""
        return self._bn.bias

    @property
    def running_mean(self) -> np.ndarray | None:
        """Running mean, shape (C,), or None."""
        return self._bn.running_mean

    @property
    def running_var(self) -> np.ndarray | None:
        """Running unbiased variance, shape (C,), or None."""
        return self._bn.running_var

    @property
    def num_batches_tracked(self) -> np.ndarray | None:
        """Training-mode batches seen (0-d int64 array), or None."""
        return self._bn.num_batches_tracked

    def __repr__(self) -> str:
        return (f"BatchNorm1d({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}, "
                f"dtype={self._bn.dtype.name})")


class Dropout(_Network):
    """Inverted dropout, as ``torch.nn.Dropout(p)``.

    In training mode each element is zeroed with probability ``p`` and the
    others are scaled by ``1 / (1 - p)`` (``p = 1`` zeroes everything); the
    backward applies the same mask and scale. In evaluation mode
    (:meth:`eval`) it is the identity. The mask is drawn from ``rng``, so a
    seed reproduces it. Accepts float32 and float64 input of any width.

    Parameters
    ----------
    p : float, default 0.5
        Drop probability, in [0, 1].
    rng : numpy.random.Generator, int or None
        Source of the masks (an int seed or None makes
        ``numpy.random.default_rng(rng)``; a Generator is used, not copied).

    Attributes
    ----------
    p : float
    mask : ndarray of bool or None
        The mask of the last training-mode forward (True: kept).

    Examples
    --------
    >>> import numpy as np
    >>> from fastclip.nn import Dropout
    >>> d = Dropout(0.5, rng=0)
    >>> y = d(np.ones((2, 4)))
    >>> sorted(set(y.ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    >>> bool((d.eval()(np.ones((2, 4))) == 1).all())
    True
    """

    def __init__(self, p: float = 0.5, *, rng: Any = None) -> None:
        self._drop = _DropoutLayer(_check_prob(p), _check_rng(rng))
        self._setup([self._drop], [], None)

    @property
    def p(self) -> float:
        """The drop probability."""
        return self._drop.p

    @property
    def mask(self) -> np.ndarray | None:
        """The keep mask of the last training-mode forward (read-only), or None."""
        return None if self._drop.mask is None else _readonly(self._drop.mask)

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


class Sigmoid(_Network):
    """The logistic function ``1 / (1 + exp(-x))``, as ``torch.nn.Sigmoid``.

    Elementwise on float32/float64 input of any width; the backward is
    ``dy * y * (1 - y)`` from the output y (PyTorch's formula). Inside
    :class:`MLP` and :class:`Linear` use ``activation="sigmoid"``, which fuses
    it with the affine layer.

    Examples
    --------
    >>> import numpy as np
    >>> from fastclip.nn import Sigmoid
    >>> Sigmoid()(np.zeros((1, 2)))
    array([[0.5, 0.5]])
    """

    def __init__(self) -> None:
        self._setup([_ActLayer(4, 0.0, None)], [], None)

    def __repr__(self) -> str:
        return "Sigmoid()"


class Tanh(_Network):
    """The hyperbolic tangent, as ``torch.nn.Tanh``.

    Elementwise on float32/float64 input of any width; the backward is
    ``dy * (1 - y**2)`` from the output y (PyTorch's formula). Inside
    :class:`MLP` and :class:`Linear` use ``activation="tanh"``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastclip.nn import Tanh
    >>> Tanh()(np.zeros((1, 2)))
    array([[0., 0.]])
    """

    def __init__(self) -> None:
        self._setup([_ActLayer(5, 0.0, None)], [], None)

    def __repr__(self) -> str:
        return "Tanh()"


def _init_weight(init_name: str, n_in: int, n_out: int, act: int, slope: float,
                 rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    gain = 1.0
    if init_name.startswith("he") and act in (2, 3):
        gain = 1.0 / math.sqrt(1.0 + slope * slope)
    fn: Callable[..., np.ndarray] = _INIT_FUNCS[init_name]
    return fn((n_in, n_out), rng, gain, dtype)


class MLP(_Network):
    """A multilayer perceptron of fused Linear + activation blocks.

    ``len(sizes) - 1`` blocks; block ``i`` maps ``sizes[i]`` to ``sizes[i+1]``.
    Hidden blocks use ``activation``; the last block is linear (identity) and
    returns the logits. Equivalent to PyTorch's
    ``nn.Sequential(nn.Linear, act, ..., nn.Linear)`` with transposed weights.

    Parameters
    ----------
    sizes : sequence of int
        At least two sizes, each >= 1, e.g. ``(784, 512, 512, 10)``.
    activation : {"relu", "leaky_relu", "prelu", "sigmoid", "tanh", "identity"}, default "relu"
    init : str, default "he_normal"
        As for :class:`Linear`; the weights of every block are drawn from ``rng``
        in order.
    negative_slope : float, default 0.01
        leaky_relu slope, or the initial slope of every prelu block.
    batchnorm : bool, default False
        Hidden layers become ``Linear -> BatchNorm1d -> activation`` (the
        activation then runs as its own pass instead of fused into the
        affine layer), as ``nn.Sequential(nn.Linear, nn.BatchNorm1d, act)``.
    dropout : float, default 0.0
        When > 0, a :class:`Dropout` of this probability after every hidden
        activation (never after the output layer). Its masks come from a
        generator seeded by one draw from ``rng`` after the weights.
    bn_eps, bn_momentum : float, default 1e-5 and 0.1
        ``eps`` and ``momentum`` of the batch-norm layers (see
        :class:`BatchNorm1d`).
    dtype : {numpy.float32, numpy.float64}, default float32
    rng : numpy.random.Generator, int or None

    Notes
    -----
    :meth:`parameters` / :meth:`gradients` order: ``W0, b0, [a0], W1, b1, [a1],
    ...`` (no slope on the last block), named ``"0.weight"``, ``"0.bias"``,
    ``"0.slope"``, ``"1.weight"``, ... With ``batchnorm`` each hidden layer
    ``i`` adds ``"i.bn.weight"``, ``"i.bn.bias"`` after its bias, and the
    buffers ``"i.bn.running_mean"``, ``"i.bn.running_var"``,
    ``"i.bn.num_batches_tracked"`` (:meth:`named_buffers`). Training and
    evaluation modes: :meth:`train`, :meth:`eval`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastclip.nn import MLP, softmax_cross_entropy
    >>> model = MLP([4, 8, 3], rng=0)
    >>> x = np.ones((2, 4), dtype=np.float32)
    >>> loss, dlogits = softmax_cross_entropy(model(x), np.array([0, 2]))
    >>> _ = model.backward(dlogits, input_grad=False)
    >>> [g.shape for g in model.gradients()]
    [(4, 8), (8,), (8, 3), (3,)]
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu", init: str = "he_normal", *,
                 negative_slope: float = 0.01, batchnorm: bool = False, dropout: float = 0.0,
                 bn_eps: float = 1e-5, bn_momentum: float | None = 0.1, dtype: Any = np.float32,
                 rng: Any = None) -> None:
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) and not (
                isinstance(sizes, np.ndarray)):
            raise TypeError(f"sizes must be a sequence of ints, got {type(sizes).__name__}")
        szs = [_check_size(s, f"sizes[{i}]") for i, s in enumerate(sizes)]
        if len(szs) < 2:
            raise ValueError(f"sizes must have at least 2 entries, got {len(szs)}")
        act = _check_activation(activation)
        ns = _check_slope(negative_slope)
        init_name = _check_init(init)
        bn = _check_bool(batchnorm, "batchnorm")
        p_drop = _check_prob(dropout)
        eps = _check_eps(bn_eps)
        mom = _check_momentum(bn_momentum)
        dt = _check_dtype(dtype)
        gen = _check_rng(rng)
        blocks: list[Any] = []
        names: list[str] = []
        prefixes: list[str] = []
        hidden = len(szs) - 2
        for i in range(len(szs) - 1):
            a = act if i < hidden else 0
            w = _init_weight(init_name, szs[i], szs[i + 1], a, ns, gen, dt)
            if bn and i < hidden:
                # Linear -> BatchNorm1d -> activation, as torch's usual stack
                blocks.append(_Block(szs[i], szs[i + 1], 0, ns, dt, w))
                names += [f"{i}.weight", f"{i}.bias"]
                prefixes.append(f"{i}.")
                blocks.append(_BatchNormLayer(szs[i + 1], eps, mom, True, True, dt))
                names += [f"{i}.bn.weight", f"{i}.bn.bias"]
                prefixes.append(f"{i}.bn.")
                if a != 0:
                    blocks.append(_ActLayer(a, ns, dt))
                    names += [f"{i}.slope"] if a == 3 else []
                    prefixes.append(f"{i}.")
            else:
                blocks.append(_Block(szs[i], szs[i + 1], a, ns, dt, w))
                names += [f"{i}.weight", f"{i}.bias"] + ([f"{i}.slope"] if a == 3 else [])
                prefixes.append(f"{i}.")
            if p_drop > 0.0 and i < hidden:
                blocks.append(_DropoutLayer(p_drop, gen))
                prefixes.append(f"{i}.")
        drops = [blk for blk in blocks if isinstance(blk, _DropoutLayer)]
        if drops:
            # one mask generator for every dropout layer, seeded after the weights
            drop_rng = np.random.default_rng(int(gen.integers(0, 2**63 - 1)))
            for d in drops:
                d.rng = drop_rng
        self.sizes = tuple(szs)
        self.activation = activation.lower()
        self.batchnorm = bn
        self.dropout = p_drop
        self._setup(blocks, names, dt, prefixes)

    def __repr__(self) -> str:
        extra = (", batchnorm=True" if self.batchnorm else "") + (
            f", dropout={self.dropout}" if self.dropout else "")
        return (f"MLP({list(self.sizes)}, activation={self.activation!r}{extra}, "
                f"dtype={self._dtype!s})")

    # -- torch interop --------------------------------------------------------------
    def to_torch_state_dict(self, *, tensors: bool = False) -> dict[str, Any]:
        """The parameters as the ``state_dict`` of the equivalent ``torch.nn.Sequential``.

        The torch model is ``Sequential(Linear, act, Linear, act, ..., Linear)``:
        block ``i`` is module ``2 * i`` (``"{2i}.weight"`` of shape ``(out, in)``,
        the transpose of fastclip's weight, and ``"{2i}.bias"``) and, for
        ``activation="prelu"``, its ``nn.PReLU()`` is module ``2 * i + 1``
        (``"{2i+1}.weight"`` of shape ``(1,)``).

        Parameters
        ----------
        tensors : bool, default False, keyword-only
            Return ``torch.Tensor`` values (imports torch) instead of ndarrays.

        Returns
        -------
        dict of str -> ndarray (or torch.Tensor)
            New C-contiguous copies, in module order.
        """
        if not all(isinstance(blk, _Block) for blk in self._blocks):
            raise ValueError("to_torch_state_dict supports MLPs without batchnorm or dropout")
        out: dict[str, Any] = {}
        for i, blk in enumerate(self._blocks):
            out[f"{2 * i}.weight"] = np.ascontiguousarray(blk.weight.T)
            out[f"{2 * i}.bias"] = blk.bias.copy()
            if blk.slope is not None:
                out[f"{2 * i + 1}.weight"] = blk.slope.copy()
        tensors = _cs.check_bool(tensors, "tensors")
        if tensors:
            import torch

            return {k: torch.from_numpy(v) for k, v in out.items()}
        return out

    @classmethod
    def from_torch_state_dict(cls, state_dict: Mapping[str, Any], activation: str = "relu", *,
                              negative_slope: float = 0.01, dtype: Any = None) -> MLP:
        """Build an MLP from the ``state_dict`` of a torch ``nn.Sequential`` of Linear layers.

        The modules holding parameters are taken in the order of the dict (a
        ``state_dict`` lists them in torch's registration order, the forward order
        of an ``nn.Sequential``), except that modules numbered by the same
        container are taken in the order of their numbers: ``nn.Sequential`` and
        ``nn.ModuleList`` number their children in forward order, so ``"2"``,
        ``"10"``, ``"1.0"``, ``"features.3"`` are placed right even when the keys
        were sorted as strings (``"10"`` before ``"2"``). Names compare component
        by component; siblings that are not all numbers (``"features"``,
        ``"classifier"``) keep the order of the dict, where their names cannot tell.
        The modules are the ``nn.Linear`` layers (a 2-D ``weight`` of torch's
        layout ``(out, in)``, always transposed into fastclip's ``(in, out)``, so a
        square layer can never load transposed; an optional ``bias``, zero when
        absent) and, for ``activation="prelu"``, one ``nn.PReLU()`` (a ``(1,)``
        weight) after every hidden Linear. Activations without parameters leave no trace in a
        state_dict: pass ``activation`` (and ``negative_slope``) as in the torch
        model. A prefix common to all keys (``"net.0.weight"``) is fine.

        Parameters
        ----------
        state_dict : mapping of str -> torch.Tensor or ndarray
        activation : str, default "relu"
            The hidden activation of the torch model.
        negative_slope : float, default 0.01
            leaky_relu's slope (ignored for prelu: the slopes are loaded).
        dtype : {None, numpy.float32, numpy.float64}
            Default: the dtype of the first weight.

        Returns
        -------
        MLP

        Raises
        ------
        TypeError
            Not a mapping, or a value that is not a real numeric array/tensor.
        ValueError
            Keys that are not ``<module>.weight``/``<module>.bias``, a layer whose
            input width is not the previous layer's output width (both keys and
            shapes named), PReLU weights without ``activation="prelu"`` or the
            reverse, or fewer than one Linear.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"state_dict must be a mapping of name -> tensor, got {type(state_dict).__name__}"
            )
        from fastclip._interop import is_torch

        modules: dict[str, dict[str, np.ndarray]] = {}
        for key, v in state_dict.items():
            if not isinstance(key, str) or "." not in key:
                raise ValueError(f"state_dict key {key!r} is not of the form '<module>.<param>'")
            mod, _, name = key.rpartition(".")
            if name not in ("weight", "bias"):
                raise ValueError(f"state_dict[{key!r}]: only Linear and PReLU parameters "
                                 "(weight, bias) are supported")
            if is_torch(v):
                try:
                    v = v.detach().cpu().numpy()
                except (TypeError, RuntimeError, NotImplementedError) as exc:
                    # bfloat16, sparse or meta tensors have no NumPy view
                    raise TypeError(f"state_dict[{key!r}] cannot be read as a NumPy array "
                                    f"({exc}); pass a dense float32/float64 tensor") from None
            a = np.asarray(v)
            if a.dtype.kind not in "iuf":
                raise TypeError(f"state_dict[{key!r}] must be a real numeric array, got dtype "
                                f"{a.dtype}")
            modules.setdefault(mod, {})[name] = a
        modules = {mod: modules[mod] for mod in _forward_order(list(modules))}
        linears: list[tuple[str, np.ndarray, np.ndarray | None]] = []
        slopes: list[tuple[str, np.ndarray]] = []
        for mod, ps in modules.items():
            w = ps.get("weight")
            if w is None:
                raise ValueError(f"state_dict has {mod}.bias but no {mod}.weight")
            if w.ndim == 2:
                b = ps.get("bias")
                if b is not None and b.shape != (w.shape[0],):
                    raise ValueError(f"state_dict[{mod + '.bias'!r}] has shape {b.shape} but "
                                     f"{mod}.weight has shape {w.shape} (out, in)")
                if slopes and len(slopes) != len(linears):
                    raise ValueError(f"state_dict: two PReLU modules in a row before {mod}")
                linears.append((mod, w, b))
            elif w.shape == (1,) and "bias" not in ps:
                if len(slopes) != len(linears) - 1:
                    raise ValueError(f"state_dict[{mod + '.weight'!r}]: a PReLU that does not "
                                     "follow a Linear")
                slopes.append((mod, w))
            else:
                raise ValueError(f"state_dict[{mod + '.weight'!r}] has shape {w.shape}: neither "
                                 "a Linear weight (out, in) nor a PReLU() weight (1,)")
        if not linears:
            raise ValueError("state_dict holds no Linear layer (no 2-D weight)")
        act = activation.lower() if isinstance(activation, str) else activation
        if slopes and act != "prelu":
            raise ValueError(f"state_dict holds PReLU weights ({slopes[0][0]}.weight) but "
                             f"activation is {activation!r}; pass activation='prelu'")
        if act == "prelu" and len(slopes) != len(linears) - 1:
            raise ValueError(f"activation='prelu' needs one PReLU() weight after each of the "
                             f"{len(linears) - 1} hidden Linear layers, found {len(slopes)}")
        for (m0, w0, _), (m1, w1, _) in zip(linears, linears[1:]):
            if w1.shape[1] != w0.shape[0]:
                raise ValueError(
                    f"state_dict[{m1 + '.weight'!r}] has shape {w1.shape} (out, in) but the "
                    f"previous layer {m0}.weight has {w0.shape[0]} outputs"
                )
        first = linears[0][1]
        if dtype is None and first.dtype.kind == "f" and first.dtype not in _FLOATS:
            raise TypeError(f"state_dict[{linears[0][0] + '.weight'!r}] has dtype {first.dtype}: "
                            "pass dtype=numpy.float32 or numpy.float64 to convert it")
        dt = _check_dtype(first.dtype if dtype is None and first.dtype.kind == "f"
                          else (np.float32 if dtype is None else dtype))
        sizes = [int(linears[0][1].shape[1])] + [int(w.shape[0]) for _, w, _ in linears]
        model = cls(sizes, activation, negative_slope=negative_slope, dtype=dt, rng=0)
        for i, ((_, w, b), blk) in enumerate(zip(linears, model._blocks)):
            np.copyto(blk.weight, w.T, casting="unsafe")  # torch (out, in) -> fastclip (in, out)
            if b is None:
                blk.bias[...] = 0
            else:
                np.copyto(blk.bias, b, casting="unsafe")
            if blk.slope is not None:
                np.copyto(blk.slope, slopes[i][1], casting="unsafe")
        return model


def _forward_order(names: list[str]) -> list[str]:
    """The module paths ``names`` (dotted, e.g. ``"features.0"``) in forward order.

    A state_dict lists a module's own parameters, then each child's, depth first in
    registration order. Over the tree of dotted components: the children of a node
    whose names are all numbers (an ``nn.Sequential``/``nn.ModuleList``) are taken by
    number, the others (named children, or a module's own parameters among its
    children) in the order they first appear in ``names``.
    """
    def order(paths: list[tuple[str, ...]], depth: int) -> list[tuple[str, ...]]:
        groups: dict[str | None, list[tuple[str, ...]]] = {}
        for path in paths:  # None: the node's own parameters
            groups.setdefault(path[depth] if len(path) > depth else None, []).append(path)
        keys = list(groups)
        if all(k is not None and k.isascii() and k.isdigit() for k in keys):
            keys.sort(key=lambda k: int(k or 0))
        return [q for k in keys
                for q in (groups[k] if k is None else order(groups[k], depth + 1))]

    return [".".join(p) for p in order([tuple(n.split(".")) for n in names], 0)]
