"""Gradient clipping on NumPy arrays: PyTorch semantics in place, TensorFlow out of place.

Every function takes one ``numpy.ndarray`` or any iterable of them (float32 or
float64, any shape, any strides, C or Fortran order, views included). With the
compiled kernels, one C call handles the whole list with the GIL released.

Non-finite values follow PyTorch: a NaN or inf in the data is data. With
``error_if_nonfinite=False`` a NaN total norm gives a NaN coefficient, which
turns every gradient into NaN, and an infinite total norm gives a coefficient of
0 (finite gradients become 0, infinite ones NaN). With
``error_if_nonfinite=True`` a non-finite total norm raises
:class:`FloatingPointError` naming the first array whose norm is not finite, and
nothing is modified.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Union

import numpy as np

from fastclip._dispatch import family

__all__ = [
    "array_norms",
    "clip_by_global_norm",
    "clip_by_norm",
    "clip_by_value",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
    "zero_nans_",
]

Arrays = Union[np.ndarray, Iterable[np.ndarray]]

_fam = family("clip")


def clip_grad_norm_(
    grads: Arrays,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    *,
    comm: Any = None,
) -> float:
    """Scale gradients in place so that their total norm is at most ``max_norm``.

    Matches ``torch.nn.utils.clip_grad_norm_``: the total norm is the
    ``norm_type``-norm of the per-array norms, and every array is multiplied by
    ``min(1, max_norm / (total + 1e-6))``. When that coefficient is 1 nothing is
    written.

    Parameters
    ----------
    grads : ndarray or iterable of ndarray
        float32 or float64 arrays, modified in place. They must be writeable and
        must not share memory with each other.
    max_norm : float
        The largest total norm allowed, ``>= 0`` (``inf`` disables clipping).
    norm_type : float, default 2.0
        Any ``p > 0``, or ``inf`` (also the string ``"inf"``).
    error_if_nonfinite : bool, default False
        Raise :class:`FloatingPointError` when the total norm is NaN or inf,
        naming the first array whose norm is not finite; nothing is modified.
    comm : mpi4py.MPI.Intracomm, optional, keyword-only
        The gradients are sharded across the ranks of ``comm``: the total norm
        is that of every rank's arrays together (the all-reduced sum of the
        local p-th powers, the maximum for ``inf``, as PyTorch's FSDP), the same
        on every rank bit for bit and equal to the single-process norm of the
        concatenated list. Collective: every rank must call. See
        :mod:`fastclip.distributed`; ``None`` (default) never imports mpi4py.

    Returns
    -------
    float
        The total norm before clipping (0.0 for an empty list). float32 arrays
        are accumulated in float64, so this is a float64 value.

    Raises
    ------
    TypeError
        An element that is not an ndarray, or a dtype other than float32/float64.
    ValueError
        A read-only array, two arrays sharing memory, a negative or NaN
        ``max_norm``, or an unsupported ``norm_type``.

    Examples
    --------
    >>> import numpy as np, fastclip
    >>> g = [np.full(4, 3.0), np.full(4, 4.0)]
    >>> fastclip.clip_grad_norm_(g, max_norm=1.0)
    10.0
    >>> round(float(np.sqrt(sum((x**2).sum() for x in g))), 6)
    1.0
    """
    if comm is not None:
        from fastclip import distributed

        return distributed.clip_grad_norm_(grads, max_norm, norm_type, error_if_nonfinite, comm)
    return _fam.impl.clip_grad_norm_(grads, max_norm, norm_type, error_if_nonfinite)


def get_total_norm(
    grads: Arrays, norm_type: float = 2.0, error_if_nonfinite: bool = False, *, comm: Any = None
) -> float:
    """The total norm of a list of arrays, as ``torch.nn.utils.get_total_norm``.

    Parameters
    ----------
    grads : ndarray or iterable of ndarray
        float32 or float64 arrays (read only).
    norm_type : float, default 2.0
        Any ``p > 0``, or ``inf``.
    error_if_nonfinite : bool, default False
        Raise :class:`FloatingPointError` when the total is NaN or inf.
    comm : mpi4py.MPI.Intracomm, optional, keyword-only
        The gradients are sharded across the ranks of ``comm``: the total norm
        is that of every rank's arrays together (the all-reduced sum of the
        local p-th powers, the maximum for ``inf``, as PyTorch's FSDP), the same
        on every rank bit for bit and equal to the single-process norm of the
        concatenated list. Collective: every rank must call. See
        :mod:`fastclip.distributed`; ``None`` (default) never imports mpi4py.

    Returns
    -------
    float
        The ``norm_type``-norm of the per-array norms; 0.0 for an empty list.
        float64 norms are computed with rescaling, so values such as 1e200 or
        1e-200 give the right norm where a plain sum of squares overflows or
        underflows. An empty array has norm 0 for every ``norm_type``
        (PyTorch raises for the infinity norm of an empty tensor).
    """
    if comm is not None:
        from fastclip import distributed

        return distributed.get_total_norm(grads, norm_type, error_if_nonfinite, comm)
    return _fam.impl.get_total_norm(grads, norm_type, error_if_nonfinite)


def array_norms(grads: Arrays, norm_type: float = 2.0) -> np.ndarray:
    """One norm per array (per-layer norms for logging), in one pass.

    Parameters
    ----------
    grads : ndarray or iterable of ndarray
        float32 or float64 arrays (read only).
    norm_type : float, default 2.0
        Any ``p > 0``, or ``inf``.

    Returns
    -------
    ndarray of float64, shape (len(grads),)
        ``torch.linalg.vector_norm(g, norm_type)`` for each array.
    """
    return _fam.impl.array_norms(grads, norm_type)


def clip_grads_with_norm_(grads: Arrays, max_norm: float, total_norm: float) -> None:
    """Scale gradients in place given a precomputed total norm.

    Matches ``torch.nn.utils.clip_grads_with_norm_``: every array is multiplied
    by ``min(1, max_norm / (total_norm + 1e-6))``; nothing is written when that
    is 1. A NaN ``total_norm`` propagates into the gradients, as in PyTorch.

    Parameters
    ----------
    grads : ndarray or iterable of ndarray
        Writeable float32 or float64 arrays.
    max_norm : float
        ``>= 0``.
    total_norm : float
        The total norm, e.g. from :func:`get_total_norm` (``>= 0``, inf or NaN).
    """
    return _fam.impl.clip_grads_with_norm_(grads, max_norm, total_norm)


def clip_grad_value_(grads: Arrays, clip_value: float) -> None:
    """Clamp gradients in place to ``[-clip_value, clip_value]``.

    Matches ``torch.nn.utils.clip_grad_value_``. NaN stays NaN.

    Parameters
    ----------
    grads : ndarray or iterable of ndarray
        Writeable float32 or float64 arrays.
    clip_value : float
        ``>= 0`` (``inf`` leaves the data unchanged).
    """
    return _fam.impl.clip_grad_value_(grads, clip_value)


def clip_by_value(x: Arrays, lo: float, hi: float) -> np.ndarray | list[np.ndarray]:
    """Return ``x`` clipped to ``[lo, hi]`` (new arrays), as ``tf.clip_by_value``.

    Parameters
    ----------
    x : ndarray or iterable of ndarray
        float32 or float64 arrays, left unchanged.
    lo, hi : float
        Bounds with ``lo <= hi``; neither may be NaN.

    Returns
    -------
    ndarray or list of ndarray
        An ndarray for an ndarray input, a list otherwise; same dtypes and shapes.
    """
    return _fam.impl.clip_by_value(x, lo, hi)


def clip_by_norm(x: Arrays, clip_norm: float) -> np.ndarray | list[np.ndarray]:
    """Return ``x * clip_norm / max(||x||_2, clip_norm)`` (new arrays), as ``tf.clip_by_norm``.

    Each array is clipped by its own L2 norm (no epsilon, as TensorFlow; a NaN
    norm gives NaN).

    Parameters
    ----------
    x : ndarray or iterable of ndarray
        float32 or float64 arrays, left unchanged.
    clip_norm : float
        ``> 0``.
    """
    return _fam.impl.clip_by_norm(x, clip_norm)


def clip_by_global_norm(
    xs: Arrays, clip_norm: float, use_norm: float | None = None, *, comm: Any = None
) -> tuple[list[np.ndarray], float]:
    """Clip a list of arrays by their global L2 norm, as ``tf.clip_by_global_norm``.

    Each array is multiplied by ``clip_norm * min(1/global_norm, 1/clip_norm)``;
    when the global norm is inf or NaN every entry becomes NaN (TensorFlow's
    signal that something went wrong).

    Parameters
    ----------
    xs : ndarray or iterable of ndarray
        float32 or float64 arrays, left unchanged.
    clip_norm : float
        ``> 0``.
    use_norm : float, optional
        A global norm to use instead of computing it.
    comm : mpi4py.MPI.Intracomm, optional, keyword-only
        The arrays are sharded across the ranks of ``comm``: the global norm is
        that of every rank's arrays together (the all-reduced sum of the local
        squares), the same on every rank bit for bit and equal to the
        single-process norm of the concatenated list; each rank gets its own
        arrays clipped. Ignored (no communication) when ``use_norm`` is given.
        Collective: every rank must call. See :mod:`fastclip.distributed`.

    Returns
    -------
    (list of ndarray, float)
        The clipped copies and the global norm before clipping.
    """
    if comm is not None:
        from fastclip import distributed

        return distributed.clip_by_global_norm(xs, clip_norm, use_norm, comm)
    return _fam.impl.clip_by_global_norm(xs, clip_norm, use_norm)


def zero_nans_(grads: Arrays) -> int:
    """Replace every NaN by 0 in place; returns how many were replaced.

    A cheap repair for a step whose gradients picked up NaNs (from a 0/0 or an
    overflow in a loss, say) when dropping the whole step is not wanted: the NaN
    entries contribute nothing to the update while the finite ones are kept.
    Infinite values are left alone (clip them by value or norm); to drop a
    non-finite step instead, use the ``"skip"`` policy of :func:`fastclip.fit`
    or ``error_if_nonfinite=True`` of :func:`clip_grad_norm_`.

    Parameters
    ----------
    grads : ndarray or iterable of ndarray
        Writeable float32 or float64 arrays, modified in place.

    Returns
    -------
    int
        The number of NaN entries replaced, over all arrays.

    Raises
    ------
    TypeError, ValueError
        For arrays that are not float32/float64, read-only or sharing memory
        (the message names ``grads``); nothing is modified.

    Examples
    --------
    >>> import numpy as np, fastclip
    >>> g = np.array([1.0, np.nan, -np.inf, np.nan])
    >>> fastclip.zero_nans_(g)
    2
    >>> g
    array([  1.,   0., -inf,   0.])
    """
    return _fam.impl.zero_nans_(grads)
