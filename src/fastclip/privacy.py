"""Differentially private training: per-example clipping, noise and privacy accounting.

DP-SGD (Abadi et al., 2016) clips each example's gradient to an L2 norm ``C``,
sums the clipped gradients, adds Gaussian noise of standard deviation
``sigma * C`` and divides by the expected batch size. This module has its pieces:

- :func:`per_example_clip_` clips gradients that carry a leading batch axis in
  place and returns the per-example norms and the sum of the clipped gradients,
  with Opacus' factor ``min(1, C / (norm + 1e-6))``;
- :func:`per_example_global_norm_clip` and :func:`per_example_layer_norm_clip`
  are the out-of-place functions of optax, with optax's semantics;
- :class:`DPOptimizer` wraps any :mod:`fastclip.optim` optimiser: it adds the
  noise to the summed clipped gradient, divides by the expected batch size (as
  Opacus' ``DPOptimizer`` with ``loss_reduction="mean"``) and steps;
- :class:`PrivacyAccountant`, :func:`compute_epsilon` and
  :func:`get_noise_multiplier` account for the privacy spent with Google's
  ``dp-accounting`` package (RDP or PLD accountant; ``pip install
  "numpy-fastclip[privacy]"``), imported only when they are used.

The norms and sums are computed by one C call per primitive (``fastclip._privacy``)
or, after ``fastclip.set_implementation("python")``, by the NumPy reference
(``fastclip.reference.privacy``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any, Union

import numpy as np

from fastclip._checks import arrays as _ca
from fastclip._checks import privacy as _cp
from fastclip._dispatch import family

__all__ = [
    "DPConfig",
    "DPOptimizer",
    "PoissonSampler",
    "PrivacyAccountant",
    "compute_epsilon",
    "gaussian_noise",
    "get_noise_multiplier",
    "per_example_clip_",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
]

Arrays = Union[np.ndarray, Iterable[np.ndarray]]

_fam = family("privacy")

#: The Renyi orders of Opacus' RDP accountant, so that both give the same epsilon.
RDP_ORDERS = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))
_MAX_SIGMA = 1e6


def _one(single: bool, items: list[np.ndarray]) -> Any:
    return items[0] if single else items


def per_example_clip_(grads: Arrays, max_norm: float) -> tuple[np.ndarray, Any]:
    """Clip every example's gradient in place; return the norms and the clipped sum.

    The norm of example ``i`` is the L2 norm of ``g[i]`` over every array together
    (the global norm, as Opacus and optax's ``per_example_global_norm_clip``), and
    each example is multiplied by ``min(1, max_norm / (norm_i + 1e-6))``, the
    factor of Opacus' ``DPOptimizer``.

    Parameters
    ----------
    grads : ndarray or iterable of ndarray
        Per-example gradients: float32 or float64 arrays whose first axis is the
        batch (the same length ``B >= 1`` for every array), modified in place.
        They must be writeable and must not share memory with each other.
    max_norm : float
        The clipping norm ``C``, finite and ``> 0``.

    Returns
    -------
    norms : ndarray of shape (B,), float64
        The per-example norms before clipping.
    summed : ndarray or list of ndarray
        ``sum_i clipped g[i]`` for each array (shape ``g.shape[1:]``, its dtype),
        one array when ``grads`` is one array. Terms are accumulated in float64
        in example order, so the result does not depend on the thread count.

    Raises
    ------
    TypeError
        ``grads`` not float32/float64 ndarrays, or masked arrays.
    ValueError
        ``max_norm`` not finite and > 0; a 0-d array; different batch sizes;
        a batch of size 0; read-only arrays or arrays sharing memory. Nothing is
        modified.

    Notes
    -----
    A NaN in an example's gradient makes its norm and factor NaN, so the sum is
    NaN, as in Opacus.
    """
    c = _cp.check_clip_norm(max_norm, "max_norm", allow_zero=False, allow_inf=False)
    arrays, single = _cp.check_batched_arrays(grads, "grads", inplace=True)
    impl = _fam.impl
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        norms = np.sqrt(impl.row_sqnorms(arrays).sum(axis=0))
        factors = np.minimum(c / (norms + 1e-6), 1.0)
    sums = impl.row_weighted_sum(arrays, np.broadcast_to(factors, (len(arrays), norms.size)),
                                 True)
    return norms, _one(single, sums)


def _optax_multipliers(norms: np.ndarray, c: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.minimum(c / norms, 1.0)
    return np.nan_to_num(m, nan=1.0)


def per_example_global_norm_clip(grads: Arrays, l2_norm_clip: float) -> tuple[Any, int]:
    """Clip per-example gradients to a global L2 norm and sum them (optax semantics).

    Equals ``optax.per_example_global_norm_clip``: example ``i`` is multiplied by
    ``min(l2_norm_clip / norm_i, 1)`` (1 where that is NaN, e.g. a zero norm with
    a zero clip), and the scaled gradients are summed over the batch. Nothing is
    modified.

    Parameters
    ----------
    grads : ndarray or sequence of ndarray
        Per-example gradients with a common leading batch axis (length ``>= 1``).
        Anything exposing ``__array__`` is read.
    l2_norm_clip : float
        Maximum L2 norm of each example's gradient, ``>= 0`` (``inf`` disables
        clipping).

    Returns
    -------
    clipped_sum : list of ndarray (or one ndarray for one array)
        The sums of the clipped per-example gradients, new arrays.
    num_clipped : int
        How many examples were scaled down.

    Raises
    ------
    TypeError, ValueError
        As :func:`per_example_clip_` (``l2_norm_clip`` named, NaN or < 0 rejected).
    """
    c = _cp.check_clip_norm(l2_norm_clip, "l2_norm_clip", allow_zero=True, allow_inf=True)
    arrays, single = _cp.check_batched_arrays(_as_arrays(grads), "grads", inplace=False)
    impl = _fam.impl
    norms = np.sqrt(impl.row_sqnorms(arrays).sum(axis=0))
    m = _optax_multipliers(norms, c)
    sums = impl.row_weighted_sum(arrays, np.broadcast_to(m, (len(arrays), m.size)), False)
    return _one(single, sums), int(np.count_nonzero(m < 1.0))


def per_example_layer_norm_clip(
    grads: Arrays, global_l2_norm_clip: float, uniform: bool = True
) -> tuple[Any, list[int]]:
    """Clip each array's per-example gradients separately and sum them (optax semantics).

    Equals ``optax.per_example_layer_norm_clip``: with ``K`` arrays, array ``k``
    is clipped per example to ``C / sqrt(K)`` when ``uniform`` is true, or to
    ``C * sqrt(D_k / D)`` otherwise (``D_k`` elements per example of array
    ``k``, ``D`` in total), each with :func:`per_example_global_norm_clip`.

    Parameters
    ----------
    grads : ndarray or sequence of ndarray
        Per-example gradients with a common leading batch axis.
    global_l2_norm_clip : float
        The overall clipping norm ``C >= 0``.
    uniform : bool, default True
        Split ``C`` equally, or in proportion to the square root of each array's size.

    Returns
    -------
    clipped_sum : list of ndarray (or one ndarray for one array)
    num_clipped : list of int
        Per array, how many examples were scaled down.
    """
    c = _cp.check_clip_norm(global_l2_norm_clip, "global_l2_norm_clip", allow_zero=True,
                            allow_inf=True)
    uni = _cp.check_bool(uniform, "uniform")
    arrays, single = _cp.check_batched_arrays(_as_arrays(grads), "grads", inplace=False)
    k = len(arrays)
    if uni:
        clips = np.full(k, c * (1.0 / k) ** 0.5)
    else:
        sizes = np.array([a[0].size for a in arrays], dtype=np.float64)
        total = sizes.sum()
        clips = c * (sizes / total) ** 0.5 if total > 0 else np.full(k, c)
    impl = _fam.impl
    norms = np.sqrt(impl.row_sqnorms(arrays))
    m = np.stack([_optax_multipliers(norms[j], float(clips[j])) for j in range(k)])
    sums = impl.row_weighted_sum(arrays, m, False)
    return _one(single, sums), [int(np.count_nonzero(m[j] < 1.0)) for j in range(k)]


def _as_arrays(grads: Any) -> Any:
    """Read ``__array__`` leaves (e.g. JAX CPU arrays) of a list as ndarrays."""
    if isinstance(grads, np.ndarray):
        return grads
    if hasattr(grads, "__array__") and not isinstance(grads, (list, tuple)):
        return np.asarray(grads)
    if isinstance(grads, (list, tuple)):
        return [g if isinstance(g, np.ndarray) or not hasattr(g, "__array__")
                else np.asarray(g) for g in grads]
    return grads


def _clip_rows(model: Any, rows: list[np.ndarray], slopes: list[np.ndarray | None],
               xs: list[np.ndarray], clip: Any, per_layer: Any,
               scale: float) -> list[np.ndarray]:
    """Per-example factors of a model's per-example backward (``fastclip.nn``).

    ``rows[l]`` is block ``l``'s output gradient ``dz`` (B, out), ``xs[l]`` its
    input and ``slopes[l]`` the per-example PReLU slope gradients (or None).
    Example ``i``'s gradient of block ``l`` is ``scale * x_i dz_i^T`` (weight),
    ``scale * dz_i`` (bias) and ``scale * s_i`` (slope): their squared norms need
    only ``|x_i|^2`` and ``|dz_i|^2``. Returns, per parameter array, the weights
    ``scale * factor_i`` by which its rows are scaled (the same array object for
    every parameter under global clipping), and records the global norms on the
    model (:meth:`fastclip.nn.MLP.per_example_norms`).
    """
    impl = _fam.impl
    sq: list[np.ndarray] = []  # per parameter array, (B,) squared per-example norms
    sizes: list[int] = []
    s2 = scale * scale
    # |x_l|^2 and |dz_l|^2 of every layer in one call: rows 2l and 2l + 1
    r_all = impl.row_sqnorms([a for x, dz in zip(xs, rows) for a in (x, dz)])
    for layer, (dz, s, x) in enumerate(zip(rows, slopes, xs)):
        r = r_all[2 * layer:2 * layer + 2]
        sq.append(r[0] * r[1] * s2)
        sq.append(r[1] * s2)
        sizes += [x.shape[1] * dz.shape[1], dz.shape[1]]
        if s is not None:
            sq.append(s * s * s2)
            sizes.append(1)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        norms = np.sqrt(np.sum(sq, axis=0))
        model._pe_norms = norms
        if per_layer is None:
            f = np.minimum(clip / (norms + 1e-6), 1.0) * scale
            return [f] * len(sq)
        if per_layer == "explicit":
            clips = np.asarray(clip, dtype=np.float64)
        elif per_layer == "equal":
            clips = np.full(len(sq), clip / math.sqrt(len(sq)))
        else:
            d = np.array(sizes, dtype=np.float64)
            clips = clip * np.sqrt(d / d.sum())
        out = []
        for k, q in enumerate(sq):
            n = np.sqrt(q)
            f = np.minimum(clips[k] / (n + 1e-6), 1.0) * scale
            out.append(f)
        return out


# ---------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------
def _os_uniform_ints(n: int) -> np.ndarray:
    """``n`` uniform 53-bit integers (as float64) from the operating system's CSPRNG."""
    raw = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
    return (raw >> np.uint64(11)).astype(np.float64)


def _secure_standard_normal(n: int) -> np.ndarray:
    """``n`` standard normal float64 samples from the operating system's CSPRNG.

    Box-Muller on 53-bit uniforms from :func:`os.urandom`; each sample is the
    normalised sum of two draws, which hides the floating-point structure of a
    single draw (Mironov, 2012), as Opacus's secure mode does with four.
    """
    if n == 0:
        return np.zeros(0)
    pairs = (2 * n + 1) // 2 * 2  # two uniforms per Box-Muller pair, 2n samples drawn
    u = (_os_uniform_ints(2 * pairs) + 0.5) * 2.0**-53  # in (0, 1): log(u) is finite
    u1, u2 = u[:pairs], u[pairs:]
    r = np.sqrt(-2.0 * np.log(u1))
    z = np.concatenate([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)])
    return (z[:n] + z[n:2 * n]) / math.sqrt(2.0)


def gaussian_noise(shape: Any, std: float, *, rng: Any = None, secure_mode: bool = False,
                   dtype: Any = np.float64, out: np.ndarray | None = None) -> np.ndarray:
    """Gaussian noise N(0, std^2) of a given shape, seeded or cryptographically secure.

    Without ``secure_mode`` the samples come from fastclip's noise kernel: a
    counter-based stream (SplitMix64 and Box-Muller; float64 samples from 52-bit
    uniforms in float64 arithmetic, float32 samples from one 64-bit hash per pair
    in float32 arithmetic, magnitudes up to 7.4) whose seed is drawn from ``rng``,
    vectorised and threaded, with the same values whatever the thread count or
    SIMD level (the NumPy reference gives the same bits).

    Parameters
    ----------
    shape : int or tuple of int
    std : float
        Standard deviation, finite and ``>= 0``.
    rng : numpy.random.Generator, int or None
        Seeds the stream (an int seed or None makes ``numpy.random.default_rng(rng)``);
        ignored with ``secure_mode=True``.
    secure_mode : bool, default False
        Draw from the operating system's CSPRNG (:func:`os.urandom`) instead;
        slower, not reproducible, and the right choice for a deployed privacy
        guarantee.
    dtype : {float32, float64}
    out : ndarray, optional
        A writeable C-contiguous array of ``shape`` and ``dtype`` to fill.

    Returns
    -------
    ndarray
    """
    s = _cp.check_clip_norm(std, "std", allow_zero=True, allow_inf=False)
    secure = _cp.check_bool(secure_mode, "secure_mode")
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    if out is None:
        out = np.empty(shape, dtype=dt)
    elif not (isinstance(out, np.ndarray) and out.dtype == dt and out.flags.c_contiguous
              and out.flags.writeable and out.shape == np.empty(shape, dtype=bool).shape):
        raise ValueError("out must be a writeable C-contiguous array of shape and dtype")
    if secure:
        out[...] = _secure_standard_normal(out.size).reshape(out.shape) * s
    else:
        seed = int(_rng(rng).integers(0, 2**63))
        _fam.impl.gaussian_(out, None, seed, 0, s, 1.0)
    return out


def _rng(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, "
                    f"got {type(rng).__name__}")


class DPOptimizer:
    """Wrap a :mod:`fastclip.optim` optimiser for DP-SGD: noise, average, step.

    Each :meth:`step` takes the **sum over the batch of the clipped per-example
    gradients** (from :func:`per_example_clip_` or a model's per-example
    backward), adds N(0, (noise_multiplier * max_grad_norm)^2) to every element,
    divides by ``expected_batch_size`` and hands the result to the wrapped
    optimiser, as Opacus' ``DPOptimizer`` does with ``loss_reduction="mean"``.
    Clipping itself is not done here: the sums must already be clipped to
    ``max_grad_norm``.

    Parameters
    ----------
    optimizer : fastclip.optim.Optimizer
        The optimiser that applies the noisy average.
    noise_multiplier : float
        ``sigma >= 0``; 0 gives no privacy (and an infinite epsilon).
    max_grad_norm : float
        The per-example clipping norm ``C``, finite and ``> 0``.
    expected_batch_size : int
        The divisor: ``sample_rate * n_samples`` under Poisson sampling.
    rng : numpy.random.Generator, int or None
        Source of the noise (reproducible with a seed).
    secure_mode : bool, default False
        Draw the noise from the operating system's CSPRNG instead.
    accountant : PrivacyAccountant, optional
        Records every step (needs ``sample_rate``).
    sample_rate : float, optional
        ``q`` in (0, 1], recorded with each step in ``accountant``.

    Attributes
    ----------
    noise_multiplier, max_grad_norm, expected_batch_size, optimizer, accountant
    """

    def __init__(self, optimizer: Any, *, noise_multiplier: float, max_grad_norm: float,
                 expected_batch_size: int, rng: Any = None, secure_mode: bool = False,
                 accountant: PrivacyAccountant | None = None,
                 sample_rate: float | None = None) -> None:
        if not hasattr(optimizer, "step") or not hasattr(optimizer, "params"):
            raise TypeError(f"optimizer must be a fastclip.optim optimiser, "
                            f"got {type(optimizer).__name__}")
        self.noise_multiplier = _cp.check_noise_multiplier(noise_multiplier)
        self.max_grad_norm = _cp.check_clip_norm(max_grad_norm, "max_grad_norm",
                                                 allow_zero=False, allow_inf=False)
        self.expected_batch_size = _cp.check_count(expected_batch_size,
                                                   "expected_batch_size", 1)
        self.secure_mode = _cp.check_bool(secure_mode, "secure_mode")
        self._rng = _rng(rng)
        if accountant is not None and not isinstance(accountant, PrivacyAccountant):
            raise TypeError(f"accountant must be a PrivacyAccountant or None, "
                            f"got {type(accountant).__name__}")
        if accountant is not None and sample_rate is None:
            raise ValueError("sample_rate is needed to record steps in accountant")
        self.sample_rate = None if sample_rate is None else _cp.check_sample_rate(sample_rate)
        self.accountant = accountant
        self.optimizer = optimizer
        self._noisy = [np.empty(_value(p).shape, dtype=_value(p).dtype)
                       for p in optimizer.params]
        # the buffers grouped by dtype (one noise call per group), in parameter order
        self._groups = [[k for k, b in enumerate(self._noisy) if b.dtype == dt]
                        for dt in dict.fromkeys(b.dtype for b in self._noisy)]
        # the noise stream: one seed from rng, a counter that every element advances
        self._seed = int(self._rng.integers(0, 2**63))
        self._counter = 0
        # the noisy averages' sums of squares, written by the noise pass: a
        # fastclip.optim optimiser takes them (sqnorms=) instead of a norm pass
        from fastclip.optim import Optimizer

        self._sqnorms = np.zeros(len(self._noisy))
        self._group_sq = [np.zeros(len(idx)) for idx in self._groups]
        self._takes_sqnorms = isinstance(optimizer, Optimizer)

    @property
    def params(self) -> list[Any]:
        return self.optimizer.params

    def noisy_average(self, summed_grads: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``(summed + N(0, (sigma C)^2)) / expected_batch_size`` per array (internal buffers)."""
        # ndarrays of float32/float64 only: no lists, masked arrays (whose masks would
        # be ignored) or other dtypes converted on the way
        grads, _ = _ca.check_arrays(summed_grads, "summed_grads", inplace=False)
        if len(grads) != len(self._noisy):
            raise ValueError(f"summed_grads has {len(grads)} arrays, the optimiser "
                             f"has {len(self._noisy)} parameters")
        for i, (g, buf) in enumerate(zip(grads, self._noisy)):
            if g.shape != buf.shape:
                raise ValueError(f"summed_grads[{i}] has shape {g.shape}, parameter {i} "
                                 f"has shape {buf.shape}")
        std = self.noise_multiplier * self.max_grad_norm
        inv = 1.0 / self.expected_batch_size
        adds = [np.ascontiguousarray(g, dtype=buf.dtype) for g, buf in zip(grads, self._noisy)]
        if self.secure_mode and std > 0:
            for k, (g, buf) in enumerate(zip(adds, self._noisy)):
                z = _secure_standard_normal(buf.size).reshape(buf.shape)
                buf[...] = (g.astype(np.float64) + std * z) * inv
                v = buf.reshape(-1).astype(np.float64)
                self._sqnorms[k] = float(np.dot(v, v))
            return self._noisy
        # one fused pass per dtype over all the arrays: (summed + std * z) / batch size,
        # and the sum of squares of each result
        impl = _fam.impl
        for idx, sq in zip(self._groups, self._group_sq):
            outs = [self._noisy[k] for k in idx]
            impl.gaussian_arrays_(outs, [adds[k] for k in idx], self._seed, self._counter,
                                  std, inv, sq)
            self._counter += sum(b.size + (b.size & 1) for b in outs)
            self._sqnorms[idx] = sq
        return self._noisy

    def step(self, summed_grads: Sequence[np.ndarray], **kwargs: Any) -> Any:
        """Noise, average and apply one step; extra keyword arguments go to the optimiser.

        Returns what the wrapped optimiser's ``step`` returns.
        """
        noisy = self.noisy_average(summed_grads)
        if self._takes_sqnorms and "sqnorms" not in kwargs:
            kwargs["sqnorms"] = self._sqnorms  # the noise pass's sums: no norm pass
        out = self.optimizer.step(noisy, **kwargs)
        if self.accountant is not None:
            assert self.sample_rate is not None
            self.accountant.step(noise_multiplier=self.noise_multiplier,
                                 sample_rate=self.sample_rate)
        return out

    def __repr__(self) -> str:
        return (f"DPOptimizer({self.optimizer!r}, noise_multiplier={self.noise_multiplier}, "
                f"max_grad_norm={self.max_grad_norm}, "
                f"expected_batch_size={self.expected_batch_size})")


def _value(p: Any) -> np.ndarray:
    data = getattr(p, "data", None)
    return data if isinstance(data, np.ndarray) else np.asarray(p)


class DPConfig:
    """Differentially private training for :func:`fastclip.train.fit` (``privacy=``).

    ``fit(model, X, y, privacy=DPConfig(max_grad_norm=1.0, noise_multiplier=1.1))``
    trains with DP-SGD: every step draws its batch by Poisson sampling with rate
    ``sample_rate`` (default ``batch_size / n_samples``), clips each example's
    gradient to ``max_grad_norm`` inside the backward pass
    (``model.backward(per_example_clip=...)``), adds Gaussian noise of standard
    deviation ``noise_multiplier * max_grad_norm`` to the summed gradients,
    divides by the expected batch size and steps the optimiser. The privacy
    spent is accounted with ``dp-accounting`` and reported per epoch as
    ``History.epsilon`` (and in the progress bar).

    Parameters
    ----------
    max_grad_norm : float
        The per-example clipping norm ``C``, finite and ``> 0``.
    noise_multiplier : float, optional
        ``sigma >= 0``. Give this or ``target_epsilon``.
    target_epsilon : float, optional
        Find the noise multiplier that spends this epsilon over the ``epochs``
        of ``fit`` (:func:`get_noise_multiplier`).
    delta : float, default 1e-5
        The delta of the reported (epsilon, delta) guarantee, in (0, 1); choose
        it below ``1 / n_samples``.
    sample_rate : float, optional
        ``q`` in (0, 1]; default ``batch_size / n_samples``.
    accountant : {"rdp", "pld"}, default "rdp"
    per_layer : {None, "equal", "size"}, default None
        Per-layer clipping (see :meth:`fastclip.nn.MLP.backward`).
    secure_mode : bool, default False
        Noise and Poisson batches from the operating system's CSPRNG instead of
        ``fit``'s seed (not reproducible; the batches must be secret for the
        amplification by subsampling that the accountant counts).

    Raises
    ------
    TypeError, ValueError
        A bad argument, named; neither or both of ``noise_multiplier`` and
        ``target_epsilon``.
    """

    def __init__(self, *, max_grad_norm: float, noise_multiplier: float | None = None,
                 target_epsilon: float | None = None, delta: float = 1e-5,
                 sample_rate: float | None = None, accountant: str = "rdp",
                 per_layer: str | None = None, secure_mode: bool = False) -> None:
        self.max_grad_norm = _cp.check_clip_norm(max_grad_norm, "max_grad_norm",
                                                 allow_zero=False, allow_inf=False)
        if (noise_multiplier is None) == (target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier and target_epsilon")
        self.noise_multiplier = (None if noise_multiplier is None
                                 else _cp.check_noise_multiplier(noise_multiplier))
        self.target_epsilon = (None if target_epsilon is None
                               else _cp.check_epsilon(target_epsilon))
        self.delta = _cp.check_delta(delta)
        self.sample_rate = None if sample_rate is None else _cp.check_sample_rate(sample_rate)
        self.accountant = _cp.check_accountant(accountant)
        if per_layer not in (None, "equal", "size"):
            raise ValueError(f"per_layer must be None, 'equal' or 'size', got {per_layer!r}")
        self.per_layer = per_layer
        self.secure_mode = _cp.check_bool(secure_mode, "secure_mode")

    def resolve(self, n_samples: int, batch_size: int, epochs: int) -> tuple[float, float]:
        """``(sample_rate, noise_multiplier)`` for a run of ``epochs`` over ``n_samples``."""
        q = self.sample_rate if self.sample_rate is not None else min(1.0, batch_size / n_samples)
        q = _cp.check_sample_rate(q)
        if self.noise_multiplier is not None:
            return q, self.noise_multiplier
        assert self.target_epsilon is not None
        steps = max(1, int(round(1.0 / q))) * epochs
        sigma = get_noise_multiplier(target_epsilon=self.target_epsilon,
                                     target_delta=self.delta, sample_rate=q, steps=steps,
                                     accountant=self.accountant)
        return q, sigma

    def __repr__(self) -> str:
        noise = (f"noise_multiplier={self.noise_multiplier}" if self.noise_multiplier is not None
                 else f"target_epsilon={self.target_epsilon}")
        return (f"DPConfig(max_grad_norm={self.max_grad_norm}, {noise}, delta={self.delta}, "
                f"accountant={self.accountant!r})")


class _FitPrivacy:
    """DP-SGD state of one :func:`fastclip.train.fit` run (see ``fit(privacy=...)``)."""

    def __init__(self, config: DPConfig, optimizer: Any, n: int, batch_size: int, epochs: int,
                 rng: np.random.Generator) -> None:
        q, sigma = config.resolve(n, batch_size, epochs)
        self.config = config
        self.sample_rate = q
        self.noise_multiplier = sigma
        self.sampler = PoissonSampler(n, q, rng, secure_mode=config.secure_mode)
        self.accountant = PrivacyAccountant(config.accountant)
        self.dp = DPOptimizer(optimizer, noise_multiplier=sigma,
                              max_grad_norm=config.max_grad_norm,
                              expected_batch_size=self.sampler.expected_batch_size, rng=rng,
                              secure_mode=config.secure_mode)
        self.backward_kwargs: dict[str, Any] = {"per_example_clip": config.max_grad_norm,
                                                "per_layer": config.per_layer}

    def noisy_grads(self, summed: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The noisy average of one step's summed clipped gradients; counts the step."""
        out = self.dp.noisy_average(summed)
        self.accountant.step(noise_multiplier=self.noise_multiplier,
                             sample_rate=self.sample_rate)
        return out

    def noisy_sqnorms(self) -> np.ndarray:
        """The sums of squares of the last noisy average, from its noise pass."""
        return self.dp._sqnorms.copy()

    def epsilon(self) -> float:
        return self.accountant.get_epsilon(self.config.delta)

    def summary(self) -> dict[str, Any]:
        c = self.config
        return {"noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
                "max_grad_norm": c.max_grad_norm, "delta": c.delta,
                "accountant": c.accountant,
                "expected_batch_size": self.sampler.expected_batch_size}


def fit_setup(privacy: Any, model: Any, optimizer: Any, n: int, batch_size: int, epochs: int,
              rng: np.random.Generator, *, clipper: Any, comm: Any) -> _FitPrivacy:
    """Validate ``fit(privacy=...)`` and build its state (used by :func:`fastclip.train.fit`)."""
    if not isinstance(privacy, DPConfig):
        raise TypeError(f"privacy must be a fastclip.privacy.DPConfig, "
                        f"got {type(privacy).__name__}")
    if comm is not None:
        raise ValueError("privacy and comm cannot be combined: data-parallel DP-SGD is not "
                         "supported (train on one process)")
    if clipper is not None:
        raise ValueError("clipper cannot be combined with privacy: DP-SGD clips every "
                         "example's gradient to privacy.max_grad_norm instead")
    backward = getattr(model, "backward", None)
    try:
        import inspect

        takes = "per_example_clip" in inspect.signature(backward).parameters  # type: ignore
    except (TypeError, ValueError):
        takes = False
    if not takes:
        raise TypeError(f"privacy needs a model whose backward takes per_example_clip "
                        f"(fastclip.nn.MLP); {type(model).__name__} does not")
    blocker = getattr(model, "per_example_blocker", None)
    if callable(blocker):
        why = blocker()
        if why:
            raise ValueError(why)
    return _FitPrivacy(privacy, optimizer, n, batch_size, epochs, rng)


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------
class PoissonSampler:
    """Batches drawn by Poisson sampling, as DP-SGD's privacy analysis assumes.

    Every step includes each of the ``n`` examples independently with
    probability ``sample_rate``, so batch sizes vary (and a batch may be empty);
    the expected batch size is ``sample_rate * n``. Iterating yields one epoch
    of ``round(1 / sample_rate)`` index arrays.

    Parameters
    ----------
    n : int
        Number of examples, ``>= 1``.
    sample_rate : float
        ``q`` in (0, 1].
    rng : numpy.random.Generator, int or None
        Ignored with ``secure_mode=True``.
    secure_mode : bool, default False
        Draw the inclusions from the operating system's CSPRNG (:func:`os.urandom`)
        instead of ``rng``: the amplification by subsampling that the accountant
        counts on assumes the batches are secret, as Opacus's secure mode does.
    """

    def __init__(self, n: int, sample_rate: float, rng: Any = None, *,
                 secure_mode: bool = False) -> None:
        self.n = _cp.check_count(n, "n", 1)
        self.sample_rate = _cp.check_sample_rate(sample_rate)
        self.secure_mode = _cp.check_bool(secure_mode, "secure_mode")
        self._rng = _rng(rng)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, int(round(1.0 / self.sample_rate)))

    @property
    def expected_batch_size(self) -> int:
        return max(1, int(round(self.sample_rate * self.n)))

    def sample(self) -> np.ndarray:
        """One batch: the sorted indices of the examples drawn."""
        if self.secure_mode:
            u = _os_uniform_ints(self.n) * 2.0**-53  # in [0, 1)
        else:
            u = self._rng.random(self.n)
        return np.flatnonzero(u < self.sample_rate)

    def __iter__(self) -> Any:
        for _ in range(self.steps_per_epoch):
            yield self.sample()

    def __len__(self) -> int:
        return self.steps_per_epoch


# ---------------------------------------------------------------------------
# Accounting (Google's dp-accounting)
# ---------------------------------------------------------------------------
def _dp_accounting() -> Any:
    try:
        import dp_accounting
        from dp_accounting.pld import pld_privacy_accountant  # noqa: F401
        from dp_accounting.rdp import rdp_privacy_accountant  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError(
            "privacy accounting needs Google's dp-accounting package: "
            'pip install "numpy-fastclip[privacy]" (or pip install dp-accounting)'
        ) from exc
    return dp_accounting


def _event(history: Sequence[tuple[float, float, int]]) -> Any:
    dpa = _dp_accounting()
    events = []
    for sigma, q, steps in history:
        if steps == 0:  # no step: nothing spent (and 0 * inf would poison the RDP sum)
            continue
        gauss = dpa.GaussianDpEvent(sigma)
        one = gauss if q == 1.0 else dpa.PoissonSampledDpEvent(q, gauss)
        events.append(dpa.SelfComposedDpEvent(one, steps))
    return dpa.ComposedDpEvent(events)


def _epsilon(history: Sequence[tuple[float, float, int]], delta: float, mechanism: str,
             value_discretization_interval: float = 1e-4) -> float:
    if not any(n > 0 for _, _, n in history):
        return 0.0
    if any(s == 0.0 for s, _, n in history if n > 0):
        return math.inf
    dpa = _dp_accounting()
    if mechanism == "rdp":
        acc = dpa.rdp.RdpAccountant(list(RDP_ORDERS))
    else:
        acc = dpa.pld.PLDAccountant(value_discretization_interval=value_discretization_interval)
    # dp-accounting logs (through absl) every Renyi order whose series it drops at
    # small noise multipliers; the epsilon (from the other orders) remains an upper
    # bound, and the user needs no log line per dropped order
    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        acc.compose(_event(history))
        return float(acc.get_epsilon(delta))
    finally:
        log.setLevel(level)


class PrivacyAccountant:
    """The privacy spent by DP-SGD steps, with Google's ``dp-accounting``.

    Each step is a Poisson-subsampled Gaussian mechanism with noise multiplier
    ``sigma`` and sampling rate ``q``; :meth:`get_epsilon` composes them with the
    RDP accountant (``"rdp"``, the orders of Opacus' RDP accountant, so both give
    the same epsilon) or the PLD accountant (``"pld"``, tighter, slower).

    Parameters
    ----------
    mechanism : {"rdp", "pld"}, default "rdp"
    value_discretization_interval : float, default 1e-4
        The PLD accountant's discretisation (ignored by RDP).

    Attributes
    ----------
    history : list of (noise_multiplier, sample_rate, steps)
        Consecutive steps with the same parameters are merged.
    """

    def __init__(self, mechanism: str = "rdp", *,
                 value_discretization_interval: float = 1e-4) -> None:
        self.mechanism = _cp.check_accountant(mechanism)
        self.value_discretization_interval = _cp.check_clip_norm(
            value_discretization_interval, "value_discretization_interval",
            allow_zero=False, allow_inf=False)
        self.history: list[tuple[float, float, int]] = []

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Record ``steps`` steps with the given noise multiplier and sampling rate."""
        sigma = _cp.check_noise_multiplier(noise_multiplier)
        q = _cp.check_sample_rate(sample_rate)
        n = _cp.check_count(steps, "steps", 0)
        if n == 0:
            return
        if self.history and self.history[-1][:2] == (sigma, q):
            self.history[-1] = (sigma, q, self.history[-1][2] + n)
        else:
            self.history.append((sigma, q, n))

    @property
    def steps(self) -> int:
        return sum(n for _, _, n in self.history)

    def get_epsilon(self, delta: float) -> float:
        """Epsilon of the (epsilon, delta)-DP guarantee of every step recorded so far."""
        d = _cp.check_delta(delta)
        return _epsilon(self.history, d, self.mechanism, self.value_discretization_interval)

    def state_dict(self) -> dict[str, Any]:
        return {"mechanism": self.mechanism,
                "value_discretization_interval": self.value_discretization_interval,
                "history": [list(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (every entry checked before anything changes;
        a missing ``history`` is an error, never an empty record of the privacy spent;
        entries of 0 steps are dropped; a state without ``value_discretization_interval``
        keeps this accountant's)."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        missing = [k for k in ("mechanism", "history") if k not in state]
        if missing:
            raise ValueError(f"state is missing {missing} (a PrivacyAccountant.state_dict() "
                             f"has 'mechanism' and 'history')")
        mech = _cp.check_accountant(state["mechanism"])
        entries = state["history"]
        if isinstance(entries, (str, bytes)) or not isinstance(entries, (list, tuple)):
            raise TypeError(f"state['history'] must be a list of (noise_multiplier, "
                            f"sample_rate, steps) entries, got {type(entries).__name__}")
        hist = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, (list, tuple)) or len(entry) != 3:
                raise ValueError(f"state['history'][{i}] must be a (noise_multiplier, "
                                 f"sample_rate, steps) triple, got {entry!r}")
            sigma, q, n = entry
            h = (_cp.check_noise_multiplier(sigma), _cp.check_sample_rate(q),
                 _cp.check_count(n, "steps", 0))
            if h[2]:
                hist.append(h)
        vdi = self.value_discretization_interval
        if "value_discretization_interval" in state:
            vdi = _cp.check_clip_norm(state["value_discretization_interval"],
                                      "value_discretization_interval",
                                      allow_zero=False, allow_inf=False)
        self.mechanism, self.history = mech, hist
        self.value_discretization_interval = vdi

    def __repr__(self) -> str:
        return f"PrivacyAccountant({self.mechanism!r}, steps={self.steps})"


def compute_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                    accountant: str = "rdp") -> float:
    """Epsilon after ``steps`` DP-SGD steps with ``(noise_multiplier, sample_rate)``.

    Parameters
    ----------
    noise_multiplier : float
        ``sigma >= 0``.
    sample_rate : float
        ``q`` in (0, 1].
    steps : int
        ``>= 0``.
    delta : float
        In (0, 1).
    accountant : {"rdp", "pld"}, default "rdp"

    Returns
    -------
    float
        ``inf`` when ``noise_multiplier`` is 0 and ``steps > 0``.
    """
    acc = PrivacyAccountant(accountant)
    acc.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
    return acc.get_epsilon(delta)


def get_noise_multiplier(*, target_epsilon: float, target_delta: float, sample_rate: float,
                         epochs: float | None = None, steps: int | None = None,
                         accountant: str = "rdp", epsilon_tolerance: float = 0.01) -> float:
    """The noise multiplier that spends ``(target_epsilon, target_delta)`` in the given steps.

    The same search as Opacus' ``get_noise_multiplier``: double ``sigma`` from 10
    until epsilon is below the target, then bisect until it is within
    ``epsilon_tolerance`` below it. The returned ``sigma`` never exceeds the
    budget.

    Parameters
    ----------
    target_epsilon : float
        ``> 0``.
    target_delta : float
        In (0, 1).
    sample_rate : float
        ``q`` in (0, 1].
    epochs : float, optional
        Training length in epochs (``steps = int(epochs / sample_rate)``); give
        exactly one of ``epochs`` and ``steps``.
    steps : int, optional
    accountant : {"rdp", "pld"}, default "rdp"
    epsilon_tolerance : float, default 0.01

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Bad arguments, or a budget so small that sigma would exceed 1e6.
    """
    eps_t = _cp.check_epsilon(target_epsilon)
    delta = _cp.check_delta(target_delta, "target_delta")
    q = _cp.check_sample_rate(sample_rate)
    mech = _cp.check_accountant(accountant)
    tol = _cp.check_clip_norm(epsilon_tolerance, "epsilon_tolerance", allow_zero=False,
                              allow_inf=False)
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs and steps")
    if steps is None:
        ep = _cp.check_clip_norm(epochs, "epochs", allow_zero=False, allow_inf=False)
        n = int(ep / q)
        if n < 1:
            raise ValueError(f"epochs={ep!r} at sample_rate={q!r} is less than one step "
                             f"(int(epochs / sample_rate) = {n}): train for at least "
                             f"{q!r} epochs")
    else:
        n = _cp.check_count(steps, "steps", 1)

    def eps(sigma: float) -> float:
        return _epsilon([(sigma, q, n)], delta, mech)

    sigma_low, sigma_high, eps_high = 0.0, 10.0, math.inf
    while eps_high > eps_t:
        sigma_high *= 2.0
        eps_high = eps(sigma_high)
        if sigma_high > _MAX_SIGMA:
            raise ValueError("target_epsilon is too small: the noise multiplier would "
                             f"exceed {_MAX_SIGMA:g}")
    # bisection; 200 halvings of [0, sigma_high] reach the float resolution whatever
    # the tolerance
    for _ in range(200):
        if eps_t - eps_high <= tol:
            break
        sigma = (sigma_low + sigma_high) / 2
        e = eps(sigma)
        if e < eps_t:
            sigma_high, eps_high = sigma, e
        else:
            sigma_low = sigma
    return sigma_high
