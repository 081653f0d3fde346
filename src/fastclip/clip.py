"""Gradient clipping on NumPy arrays: PyTorch semantics in place, TensorFlow out of place.

Every function takes one ``numpy.ndarray`` or any iterable of them (float32 or
float64, any shape, any strides, C or Fortran order, views included). With the
compiled kernels, one C call handles the whole list with the GIL released.

The rule for what is clipped: given parameters (``model.parameters()`` of a
fastclip or torch model), the torch-style functions (``clip_grad_norm_``,
``clip_grad_value_``, ``clip_grads_with_norm_``, ``get_total_norm``,
``zero_nans_``) act on each ``p.grad`` and skip parameters whose grad is None,
as PyTorch does; given plain arrays or plain torch tensors, the arrays are the
gradients themselves. torch CPU float32/float64 tensors are shared, never
copied. The TensorFlow/optax-style functions (``clip_by_*``, ``array_norms``)
also take pytrees (nested dicts, lists, tuples; leaves in insertion order) and
anything exposing ``__array__``, and return the same structure of new NumPy
arrays.

Non-finite values follow PyTorch: a NaN or inf in the data is data. With
``error_if_nonfinite=False`` a NaN total norm gives a NaN coefficient, which
turns every gradient into NaN, and an infinite total norm gives a coefficient of
0 (finite gradients become 0, infinite ones NaN). With
``error_if_nonfinite=True`` a non-finite total norm raises
:class:`FloatingPointError` naming the first array whose norm is not finite, and
nothing is modified.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import Any, Union

import numpy as np

from fastclip import _interop as _io
from fastclip._dispatch import family
from fastclip._docs import GIVEN_PARAMS
from fastclip._docs import fill as _fill

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

# Docstring paragraphs of several functions (fastclip._docs.fill).
_GIVEN_PARAMS = GIVEN_PARAMS

_INPLACE_GRADS = f"""
grads : ndarray, iterable of ndarray, or iterable of parameters
    Writeable float32 or float64 arrays.
{textwrap.indent(_GIVEN_PARAMS.strip(), "    ")}
"""

_COMM = """
comm : mpi4py.MPI.Intracomm, optional, keyword-only
    The gradients are sharded across the ranks of ``comm``: the total norm
    is that of every rank's arrays together (the all-reduced sum of the
    local p-th powers, the maximum for ``inf``, as PyTorch's FSDP), the same
    on every rank bit for bit and equal to the single-process norm of the
    concatenated list. Collective: every rank must call. See
    :mod:`fastclip.distributed`; ``None`` (default) never imports mpi4py.
"""

_PYTREE_INPUT = """
float32 or float64 arrays, left unchanged. A pytree (nested dict/list/tuple; leaves in insertion order)
is accepted, and anything exposing ``__array__`` (e.g. a JAX CPU array)
is read. A parameter is refused (TypeError): pass ``p.grad`` or
``p.data``.
"""


@_fill(given_params=_GIVEN_PARAMS, comm=_COMM)
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
    grads : ndarray, iterable of ndarray, or iterable of parameters
        float32 or float64 arrays, modified in place. They must be writeable and
        must not share memory with each other.
        {given_params}
        torch CPU tensors are clipped in place through shared memory.
    max_norm : float
        The largest total norm allowed, ``>= 0`` (``inf`` disables clipping).
    norm_type : float, default 2.0
        Any ``p > 0``, or ``inf`` (also the string ``"inf"``).
    error_if_nonfinite : bool, default False
        Raise :class:`FloatingPointError` when the total norm is NaN or inf,
        naming the first array whose norm is not finite; nothing is modified.
    {comm}

    Returns
    -------
    float
        The total norm before clipping (0.0 for an empty list). float32 arrays
        are accumulated in float64, so this is a float64 value. (PyTorch returns
        a 0-d tensor; this is always a Python float, also for torch inputs.)

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
    if comm is None:
        return _on_grads(_fam.impl.clip_grad_norm_, grads, max_norm, norm_type,
                         error_if_nonfinite)
    from fastclip import distributed

    written: list[Any] = []
    arrays = _convert_for_collective(lambda: _io.gradients(grads, "grads", True, written))
    total = distributed.clip_grad_norm_(arrays, max_norm, norm_type, error_if_nonfinite, comm)
    _io.bump_versions(written)
    return total


@_fill(given_params=_GIVEN_PARAMS, comm=_COMM)
def get_total_norm(
    grads: Arrays, norm_type: float = 2.0, error_if_nonfinite: bool = False, *, comm: Any = None
) -> float:
    """The total norm of a list of arrays, as ``torch.nn.utils.get_total_norm``.

    Parameters
    ----------
    grads : ndarray, iterable of ndarray, or iterable of parameters
        float32 or float64 arrays (read only).
        {given_params}
    norm_type : float, default 2.0
        Any ``p > 0``, or ``inf``.
    error_if_nonfinite : bool, default False
        Raise :class:`FloatingPointError` when the total is NaN or inf.
    {comm}

    Returns
    -------
    float
        The ``norm_type``-norm of the per-array norms; 0.0 for an empty list
        (PyTorch returns a 0-d tensor; this is a Python float).
        float64 norms are computed with rescaling, so values such as 1e200 or
        1e-200 give the right norm where a plain sum of squares overflows or
        underflows. An empty array has norm 0 for every ``norm_type``
        (PyTorch raises for the infinity norm of an empty tensor).
    """
    if comm is not None:
        from fastclip import distributed

        grads = _convert_for_collective(lambda: _io.gradients(grads, "grads", False))
        return distributed.get_total_norm(grads, norm_type, error_if_nonfinite, comm)
    return _on_grads(_fam.impl.get_total_norm, grads, norm_type, error_if_nonfinite,
                     inplace=False)


def array_norms(grads: Arrays, norm_type: float = 2.0) -> np.ndarray:
    """One norm per array (per-layer norms for logging), in one pass.

    Parameters
    ----------
    grads : ndarray, iterable of ndarray, or pytree
        float32 or float64 arrays (read only). A pytree (nested dict/list/tuple; leaves in insertion order)
        is accepted, and anything exposing ``__array__`` (e.g. a JAX CPU array)
        is read. A parameter is refused (TypeError): pass ``p.grad`` or
        ``p.data``.
    norm_type : float, default 2.0
        Any ``p > 0``, or ``inf``.

    Returns
    -------
    ndarray of float64, shape (len(grads),), or pytree of float
        ``torch.linalg.vector_norm(g, norm_type)`` for each array: an ndarray
        for one array or a flat list/tuple/iterable of arrays, the same
        structure with a float per leaf for a dict or nested containers.
    """
    if not isinstance(grads, (np.ndarray, list, tuple, dict)):
        grads = _io.materialize(grads, "grads")
    arrays, rebuild = _io.arrays_tree(grads, "grads")
    norms = _fam.impl.array_norms(arrays, norm_type)
    if rebuild is None or _io.is_sequence(grads):
        return norms
    return rebuild([float(v) for v in norms])


@_fill(inplace_grads=_INPLACE_GRADS)
def clip_grads_with_norm_(grads: Arrays, max_norm: float, total_norm: float) -> None:
    """Scale gradients in place given a precomputed total norm.

    Matches ``torch.nn.utils.clip_grads_with_norm_``: every array is multiplied
    by ``min(1, max_norm / (total_norm + 1e-6))``; nothing is written when that
    is 1. A NaN ``total_norm`` propagates into the gradients, as in PyTorch.

    Parameters
    ----------
    {inplace_grads}
    max_norm : float
        ``>= 0``.
    total_norm : float
        The total norm, e.g. from :func:`get_total_norm` (``>= 0``, inf or NaN).
    """
    return _on_grads(_fam.impl.clip_grads_with_norm_, grads, max_norm, total_norm)


@_fill(inplace_grads=_INPLACE_GRADS)
def clip_grad_value_(grads: Arrays, clip_value: float) -> None:
    """Clamp gradients in place to ``[-clip_value, clip_value]``.

    Matches ``torch.nn.utils.clip_grad_value_``. NaN stays NaN.

    Parameters
    ----------
    {inplace_grads}
    clip_value : float
        ``>= 0`` (``inf`` leaves the data unchanged).
    """
    return _on_grads(_fam.impl.clip_grad_value_, grads, clip_value)


@_fill(pytree_input=_PYTREE_INPUT)
def clip_by_value(x: Arrays, lo: float, hi: float) -> np.ndarray | list[np.ndarray]:
    """Return ``x`` clipped to ``[lo, hi]`` (new arrays), as ``tf.clip_by_value``.

    Parameters
    ----------
    x : ndarray, iterable of ndarray, or pytree
        {pytree_input}
    lo, hi : float
        Bounds with ``lo <= hi``; neither may be NaN.

    Returns
    -------
    ndarray, list of ndarray, or pytree
        An ndarray for one array, the input's structure for a list, tuple,
        namedtuple or dict (nested), a list for any other iterable; new NumPy
        arrays of the same dtypes and shapes.
    """
    arrays, rebuild = _io.arrays_tree(x, "x")
    out = _fam.impl.clip_by_value(arrays, lo, hi)
    return out if rebuild is None else rebuild(out)


@_fill(pytree_input=_PYTREE_INPUT)
def clip_by_norm(x: Arrays, clip_norm: float) -> np.ndarray | list[np.ndarray]:
    """Return ``x * clip_norm / max(||x||_2, clip_norm)`` (new arrays), as ``tf.clip_by_norm``.

    Each array is clipped by its own L2 norm (no epsilon, as TensorFlow; a NaN
    norm gives NaN).

    Parameters
    ----------
    x : ndarray, iterable of ndarray, or pytree
        {pytree_input}
    clip_norm : float
        Finite and ``> 0`` (TensorFlow's formula gives NaN for inf).

    Returns
    -------
    ndarray, list of ndarray, or pytree
        As :func:`clip_by_value`.
    """
    arrays, rebuild = _io.arrays_tree(x, "x")
    out = _fam.impl.clip_by_norm(arrays, clip_norm)
    return out if rebuild is None else rebuild(out)


@_fill(pytree_input=_PYTREE_INPUT)
def clip_by_global_norm(
    xs: Arrays, clip_norm: float, use_norm: float | None = None, *, comm: Any = None
) -> tuple[list[np.ndarray], float]:
    """Clip a list of arrays by their global L2 norm, as ``tf.clip_by_global_norm``.

    Each array is multiplied by ``clip_norm * min(1/global_norm, 1/clip_norm)``;
    when the global norm is inf or NaN every entry becomes NaN (TensorFlow's
    signal that something went wrong).

    Parameters
    ----------
    xs : ndarray, iterable of ndarray, or pytree
        {pytree_input}
    clip_norm : float
        Finite and ``> 0`` (TensorFlow's formula gives NaN for inf).
    use_norm : float, optional
        A global norm to use instead of computing it.
    comm : mpi4py.MPI.Intracomm, optional, keyword-only
        The arrays are sharded across the ranks of ``comm``: the global norm is
        that of every rank's arrays together (the all-reduced sum of the local
        squares), the same on every rank bit for bit and equal to the
        single-process norm of the concatenated list; each rank gets its own
        arrays clipped. With ``use_norm`` the norm is not computed, but the
        ranks still check (one small all-gather) that all of them gave
        ``use_norm`` and the same ``clip_norm``. Collective: every rank must
        call. See :mod:`fastclip.distributed`.

    Returns
    -------
    (list of ndarray or pytree, float)
        The clipped copies (a list for an ndarray, a list or another iterable;
        the input's structure for a tuple, namedtuple, dict or nested
        containers) and the global norm before clipping.
    """
    if comm is not None:
        from fastclip import distributed

        tree = _convert_for_collective(lambda: _io.arrays_tree(xs, "xs"))
        arrays, rebuild = (tree, None) if not isinstance(tree, tuple) else tree
        out, g = distributed.clip_by_global_norm(arrays, clip_norm, use_norm, comm)
    else:
        arrays, rebuild = _io.arrays_tree(xs, "xs")
        out, g = _fam.impl.clip_by_global_norm(arrays, clip_norm, use_norm)
    return (out if rebuild is None else rebuild(out)), g


def _on_grads(kernel: Any, grads: Any, *args: Any, inplace: bool = True) -> Any:
    """``kernel(arrays, *args)`` on the gradient arrays of ``grads`` (in place unless
    ``inplace`` is False); the torch tensors written are then marked as written for
    autograd. The kernel's errors name each array as the caller does (``grads[2].grad``,
    also when parameters before it have no grad), not by its index in ``arrays``."""
    written: list[Any] = []
    labels: list[str] = []
    arrays = _io.gradients(grads, "grads", inplace, written if inplace else None, labels)
    try:
        out = kernel(arrays, *args)
    except Exception as exc:
        new = _io.relabelled(exc, "grads", labels)
        if new is exc:
            raise
        raise new.with_traceback(exc.__traceback__) from None
    _io.bump_versions(written)
    return out


def _convert_for_collective(convert: Any) -> Any:
    """``convert()``, or its error wrapped for the collective call that follows: raised
    there, inside the call's checks, every rank raises instead of the others waiting."""
    from fastclip.distributed.norms import ArgumentFailure

    try:
        return convert()
    except Exception as exc:
        return ArgumentFailure(exc)


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
    grads : ndarray, iterable of ndarray, or parameters
        Writeable float32 or float64 arrays, modified in place; taken as in
        :func:`clip_grad_norm_` (parameters give their ``p.grad``).

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
    return _on_grads(_fam.impl.zero_nans_, grads)
