"""What the public functions accept, turned into the NumPy arrays the kernels take.

One place for every conversion, used by :mod:`fastclip.clip`,
:mod:`fastclip.adaptive` and :mod:`fastclip.optim`:

- :class:`fastclip.nn.Parameter` and ``torch.nn.Parameter``: the gradient
  ``p.grad`` is the array (parameters whose ``grad`` is None are skipped);
- ``numpy.ndarray`` and plain torch tensors: the array itself;
- nested dicts, lists and tuples of those (pytrees), leaves in insertion order;
- for the read-only (out-of-place) functions, any object exposing ``__array__``;
- for parameter values (AGC's ``params``, :func:`value_arrays`), a parameter
  gives its value.

torch tensors are shared, never copied: a CPU float32/float64 strided tensor is
viewed through ``Tensor.numpy()`` (same memory), anything else raises
:class:`TypeError` naming the dtype, device or layout. A torch object is any
instance of ``torch.Tensor`` (subclasses defined anywhere included), looked up
only when torch is already imported: no torch object can exist before, so
fastclip never imports torch itself unless a torch object is passed.
"""

from __future__ import annotations

import functools
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from fastclip._checks import arrays as _ca

_ND = np.ndarray
_MODULES = sys.modules


def is_torch(x: Any) -> bool:
    """True for torch tensors and parameters, subclasses included (without importing
    torch: before torch is imported nothing is a tensor)."""
    torch = _MODULES.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


_PARAM: Any = None


def _is_param(x: Any) -> bool:
    """A fastclip or torch parameter: something whose ``grad`` is the gradient.

    A torch tensor counts as one when it is a ``torch.nn.Parameter`` or a leaf
    that requires grad (what ``torch.nn.utils.clip_grad_norm_`` is given);
    any other torch tensor is a gradient itself.
    """
    global _PARAM
    if is_torch(x):
        import torch

        return isinstance(x, torch.nn.Parameter) or (
            isinstance(x, torch.Tensor) and x.requires_grad and x.is_leaf
        )
    if _PARAM is None:
        from fastclip.nn import Parameter

        _PARAM = Parameter
    return isinstance(x, _PARAM)


def torch_array(t: Any, lab: str) -> np.ndarray:
    """An ndarray sharing memory with the CPU float tensor ``t``; TypeError otherwise."""
    import torch

    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{lab} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise TypeError(
            f"{lab} is a torch tensor on device {t.device}; fastclip works on CPU tensors "
            "only (it never copies a tensor to the host and back)"
        )
    if t.layout != torch.strided:
        raise TypeError(
            f"{lab} is a torch tensor with layout {t.layout}; fastclip needs a strided "
            "(dense) CPU tensor to share its memory"
        )
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"{lab} is a torch tensor of dtype {t.dtype}; fastclip supports torch.float32 "
            "and torch.float64 only (no silent conversion)"
        )
    if t.is_conj() or t.is_neg():
        raise TypeError(
            f"{lab} is a torch tensor with a lazy conjugate/negative bit; its memory does "
            "not hold its values (call .resolve_conj()/.resolve_neg() first)"
        )
    a = t.detach().numpy()
    if a.size and a.__array_interface__["data"][0] != t.data_ptr():
        raise TypeError(f"{lab}: torch did not share the tensor's memory with NumPy")
    return a


def check_torch_writable(t: Any, lab: str) -> None:
    """ValueError for an inference tensor outside ``torch.inference_mode()``: torch
    refuses in-place updates to it there, and so does fastclip."""
    if t.is_inference():
        import torch

        if not torch.is_inference_mode_enabled():
            raise ValueError(
                f"{lab} is an inference tensor (made under torch.inference_mode()); torch "
                "refuses in-place updates to it outside inference mode, and so does "
                "fastclip: pass a clone, or call inside torch.inference_mode()"
            )


def _leaf_array(x: Any, lab: str, inplace: bool) -> np.ndarray:
    """One leaf that is not a parameter, as a validated ndarray."""
    if type(x) is _ND or isinstance(x, _ND):
        return _ca.check_array(x, lab, inplace)
    if is_torch(x):
        a = _ca.check_array(torch_array(x, lab), lab, inplace)
        if inplace:
            check_torch_writable(x, lab)
        return a
    if hasattr(x, "__array__") and not isinstance(x, (str, bytes)):
        a = np.asarray(x)
        if inplace:
            if not a.flags.writeable:
                raise ValueError(_ca.readonly_msg(lab))
            raise TypeError(
                f"{lab} is a {type(x).__name__}, not an ndarray: an in-place function cannot "
                "know that writing to numpy.asarray() of it changes it; pass an ndarray"
            )
        return _ca.check_array(a, lab, False)
    raise TypeError(_ca.not_array_msg(lab, x))


def _read_leaf(x: Any, lab: str) -> np.ndarray:
    """A leaf read by an out-of-place function; parameters are ambiguous there."""
    if type(x) is not _ND and _is_param(x):
        raise TypeError(
            f"{lab} is a parameter ({type(x).__name__}); this function reads arrays: pass "
            "its gradient (p.grad) or its value (p.data) explicitly"
        )
    return _leaf_array(x, lab, False)


def _key_label(k: Any) -> str:
    return f"[{k!r}]"


class _Tree:
    """The structure of a pytree: containers and where each leaf goes."""

    __slots__ = ("children", "cls", "keys", "kind")

    def __init__(self, kind: str, cls: Any, keys: Any, children: list[Any]) -> None:
        self.kind = kind  # "leaf", "none", "dict", "list", "tuple", "namedtuple"
        self.cls = cls
        self.keys = keys
        self.children = children


def _flatten(obj: Any, path: str, leaves: list[Any], labels: list[str]) -> _Tree:
    if obj is None:
        return _Tree("none", None, None, [])
    if isinstance(obj, Mapping):
        keys = list(obj.keys())
        cls: Any = type(obj)
        if isinstance(obj, defaultdict):  # rebuilt with its default factory, as JAX does
            cls = functools.partial(cls, obj.default_factory)
        return _Tree("dict", cls, keys,
                     [_flatten(obj[k], path + _key_label(k), leaves, labels) for k in keys])
    if isinstance(obj, tuple):
        kind = "namedtuple" if hasattr(type(obj), "_fields") else "tuple"
        return _Tree(kind, type(obj), None,
                     [_flatten(c, f"{path}[{i}]", leaves, labels) for i, c in enumerate(obj)])
    if isinstance(obj, list):
        return _Tree("list", list, None,
                     [_flatten(c, f"{path}[{i}]", leaves, labels) for i, c in enumerate(obj)])
    leaves.append(obj)
    labels.append(path)
    return _Tree("leaf", None, None, [])


def _unflatten(tree: _Tree, it: Any) -> Any:
    if tree.kind == "leaf":
        return next(it)
    if tree.kind == "none":
        return None
    kids = [_unflatten(c, it) for c in tree.children]
    if tree.kind == "dict":
        pairs = list(zip(tree.keys, kids))
        if tree.cls is dict:
            return dict(pairs)
        try:
            return tree.cls(pairs)
        except (TypeError, ValueError):  # a Mapping type that cannot be built from pairs
            return dict(pairs)
    if tree.kind == "namedtuple":
        return tree.cls(*kids)
    if tree.kind == "tuple":
        return tuple(kids)
    return kids


def materialize(obj: Any, name: str) -> Any:
    """Materialise a one-shot iterable (e.g. torch's ``model.parameters()``)."""
    if isinstance(obj, (_ND, Mapping, list, tuple)) or obj is None:
        return obj
    if is_torch(obj) or hasattr(obj, "__array__") or _is_param(obj):
        return obj
    if isinstance(obj, (str, bytes)) or not isinstance(obj, Iterable):
        raise TypeError(_ca.not_iterable_msg(name, obj))
    return list(obj)


def _all_ndarrays(obj: Any) -> bool:
    return type(obj) is list and (not obj or set(map(type, obj)) == {_ND})


def gradients(obj: Any, name: str, inplace: bool, written: list[Any] | None = None,
              kept: list[str] | None = None, from_torch: list[bool] | None = None) -> Any:
    """The gradient arrays of ``obj`` for the torch-style functions.

    Returns ``obj`` itself when it is already an ndarray or a list of ndarrays
    (the kernels validate it), else a validated list of ndarrays: the ``grad``
    of each parameter whose grad is not None, the arrays (or shared views of
    torch tensors) otherwise, in tree order. Mixing parameters and plain
    arrays raises TypeError. ``written`` (when given) receives the torch
    tensors whose memory the arrays share, for :func:`bump_versions` after an
    in-place call; ``kept`` (when given) receives the name of each returned
    array in ``obj`` (``grads[2].grad``), for :func:`relabelled` (nothing when
    ``obj`` is returned itself, whose arrays the kernels name right);
    ``from_torch`` (when given) receives, for each returned array, whether it
    is a torch tensor's memory (nothing when ``obj`` is returned itself).
    """
    if type(obj) is _ND or _all_ndarrays(obj):
        return obj
    obj = materialize(obj, name)
    if obj is None:
        raise TypeError(_ca.not_iterable_msg(name, obj))
    leaves: list[Any] = []
    labels: list[str] = []
    single = not isinstance(obj, (Mapping, list, tuple))
    _flatten(obj, "", leaves, labels)
    labels = [name + lab for lab in labels]
    out: list[np.ndarray] = []
    first_param = first_array = None
    for x, lab in zip(leaves, labels):
        if _is_param(x):
            first_param = first_param or lab
            if x.grad is None:
                continue
            leaf, leaf_lab = x.grad, f"{lab}.grad"
        else:
            first_array = first_array or lab
            leaf, leaf_lab = x, lab
        out.append(_leaf_array(leaf, leaf_lab, inplace))
        if written is not None and is_torch(leaf):
            written.append(leaf)
        if kept is not None:
            kept.append(leaf_lab)
        if from_torch is not None:
            from_torch.append(is_torch(leaf))
        if first_param is not None and first_array is not None:
            raise TypeError(
                f"{name} mixes parameters ({first_param}) and plain arrays ({first_array}); "
                "pass either parameters (their .grad is used) or the gradient arrays "
                "themselves"
            )
    if single and len(out) == 1 and not _is_param(obj):
        return out[0]
    return out


def relabelled(exc: Exception, name: str, labels: list[str]) -> Exception:
    """``exc`` raised by a kernel on the arrays of :func:`gradients`, with each
    ``name[k]`` of its message (the k-th array given to the kernel) renamed to
    ``labels[k]``, the array's name in the caller's input; ``exc`` itself when
    nothing is renamed."""
    if not labels or not isinstance(exc, (TypeError, ValueError, ArithmeticError)):
        return exc
    import re

    def own(m: re.Match[str]) -> str:
        k = int(m.group(1))
        return labels[k] if k < len(labels) else m.group(0)

    msg = str(exc)
    new = re.sub(rf"\b{re.escape(name)}\[(\d+)\]", own, msg)
    return exc if new == msg else type(exc)(new)


def bump_versions(tensors: list[Any]) -> None:
    """Tell autograd that fastclip wrote into these torch tensors in place, as a
    torch in-place operation would: a graph that saved one of them then refuses a
    later backward instead of computing it from the new values."""
    if not tensors:
        return
    try:
        from torch.autograd.graph import increment_version
    except ImportError:  # a torch without it: nothing to tell
        return
    live = [t for t in tensors if not t.is_inference()]  # those track no version
    if live:
        increment_version(live)


def arrays_tree(obj: Any, name: str, sources: list[Any] | None = None
                ) -> tuple[Any, Callable[[list[Any]], Any] | None]:
    """``(arrays, rebuild)`` for the read-only, out-of-place functions.

    ``arrays`` is what the kernels take (an ndarray or a list of ndarrays);
    ``rebuild(results)`` puts one result per leaf back into the structure of
    ``obj`` (None when ``obj`` is one array or a plain list of ndarrays, whose
    results need no rebuilding). Every leaf is read as an array: ndarrays,
    CPU torch tensors (shared) and anything with ``__array__``. A parameter is
    ambiguous here (value or gradient?) and raises TypeError. ``sources`` (when
    given) receives the leaf each array was read from (nothing when ``obj`` is
    returned itself: then every leaf is an ndarray), so that a caller can give
    torch results for torch leaves.
    """
    if type(obj) is _ND or _all_ndarrays(obj):
        return obj, None
    obj = materialize(obj, name)
    if obj is None or not isinstance(obj, (Mapping, list, tuple)):
        if obj is not None and (is_torch(obj) or hasattr(obj, "__array__")):
            if sources is not None:
                sources.append(obj)
            return _read_leaf(obj, name), None
        raise TypeError(_ca.not_iterable_msg(name, obj))
    leaves: list[Any] = []
    labels: list[str] = []
    tree = _flatten(obj, name, leaves, labels)
    arrays = [_read_leaf(x, lab) for x, lab in zip(leaves, labels)]
    if sources is not None:
        sources.extend(leaves)

    def rebuild(results: list[Any]) -> Any:
        return _unflatten(tree, iter(results))

    return arrays, rebuild


def value_arrays(obj: Any, name: str, kept: list[str] | None = None,
                 with_grad: bool = False, from_torch: list[bool] | None = None) -> Any:
    """The value arrays of ``obj``, read only (AGC's parameters).

    Leaves are ndarrays, torch tensors (shared) or parameters, whose value is
    the array (a fastclip parameter's ``data``, a torch parameter's own memory;
    here a parameter is unambiguous). Returns ``obj`` itself when it is an
    ndarray or a list of ndarrays, one array for one leaf, else a list in tree
    order (the order of :func:`gradients`); ``kept`` (when given) receives the
    name of each returned array and ``from_torch`` whether it is a torch
    tensor's memory, as in :func:`gradients`.

    With ``with_grad``, ``obj`` is the gradients' argument: the values of the
    parameters whose grad is not None, which pair one for one with the arrays
    :func:`gradients` gives for the same ``obj`` (always a list); None when
    ``obj`` holds no parameter (its arrays are gradients with no values).
    """
    if type(obj) is _ND or _all_ndarrays(obj):
        return None if with_grad else obj
    obj = materialize(obj, name)
    if obj is None:
        raise TypeError(_ca.not_iterable_msg(name, obj))
    leaves: list[Any] = []
    labels: list[str] = []
    _flatten(obj, name, leaves, labels)
    out: list[np.ndarray] = []
    seen_param = False
    for x, lab in zip(leaves, labels):
        if _is_param(x):
            seen_param = True
            if with_grad and x.grad is None:
                continue
            a = _ca.check_array(torch_array(x, lab) if is_torch(x) else x.data, lab, False)
        elif with_grad:
            return None
        else:
            a = _leaf_array(x, lab, False)
        out.append(a)
        if kept is not None:
            kept.append(lab)
        if from_torch is not None:
            from_torch.append(is_torch(x))
    if with_grad:
        return out if seen_param else None
    if not isinstance(obj, (Mapping, list, tuple)) and len(out) == 1:
        return out[0]
    return out


def is_sequence(obj: Any) -> bool:
    """True for a list, tuple or other iterable whose items are not containers.

    Such an input is "a list of arrays" (one result per array in a vector), as
    opposed to a pytree (dict or nested containers).
    """
    if isinstance(obj, Mapping):
        return False
    if isinstance(obj, (list, tuple)):
        return not any(isinstance(c, (Mapping, list, tuple)) or c is None for c in obj)
    return True


def values(params: Iterable[Any]) -> list[np.ndarray]:
    """The value arrays of fastclip parameters (other items unchanged)."""
    _is_param(None)  # loads the Parameter class
    return [p.data if isinstance(p, _PARAM) else p for p in params]


def optim_params(params: Any) -> tuple[Any, list[Any] | None]:
    """``(value arrays, parameter handles or None)`` for an optimiser's ``params``.

    Parameters (fastclip or torch) give their value arrays (torch ones shared
    zero-copy) and are kept as handles, so that ``step()`` can read their
    ``grad``; plain ndarrays are returned unchanged with no handles. Mixing
    parameters and plain arrays raises TypeError.
    """
    if type(params) is _ND or _all_ndarrays(params):
        return params, None
    if is_torch(params):
        # iterating a tensor gives its rows, which would become the parameters
        raise TypeError("params must be an iterable of parameters (model.parameters()) or "
                        "of arrays, got a single torch.Tensor; wrap it in a list")
    if isinstance(params, (str, bytes, Mapping)) or not isinstance(params, Iterable):
        return params, None  # check_params_list reports it
    items = list(params)
    for i, p in enumerate(items):
        if isinstance(p, Mapping):
            raise TypeError(
                f"params[{i}] is a dict: fastclip optimisers take one list of parameters "
                "(model.parameters()) or arrays, not torch's parameter groups; build one "
                "optimiser per group"
            )
        if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str):
            raise TypeError(
                f"params[{i}] is a (name, parameter) pair: pass model.parameters(), not "
                "model.named_parameters()"
            )
    kinds = [_is_param(p) for p in items]
    if not any(kinds):
        for i, p in enumerate(items):
            if is_torch(p):
                check_torch_writable(p, f"params[{i}]")
        return [torch_array(p, f"params[{i}]") if is_torch(p) else p
                for i, p in enumerate(items)], None
    if not all(kinds):
        a, b = kinds.index(True), kinds.index(False)
        raise TypeError(
            f"params mixes parameters (params[{a}]) and plain arrays (params[{b}]); pass "
            "either model.parameters() or the value arrays"
        )
    vals = [torch_array(p, f"params[{i}]") if is_torch(p) else p.data
            for i, p in enumerate(items)]
    return vals, items


class GradReader:
    """Reads the current ``grad`` of each parameter as an ndarray, fast.

    A torch gradient tensor is viewed once and the view reused while
    ``p.grad`` is the same tensor with the same storage; a new tensor (after
    ``zero_grad(set_to_none=True)`` and a backward) is viewed anew.
    """

    __slots__ = ("_cache", "_handles", "_inference", "_ptrs", "_torch", "_tidx", "_vals")

    def __init__(self, handles: list[Any], vals: list[np.ndarray]) -> None:
        self._handles = handles
        self._vals = vals
        self._torch = [is_torch(p) for p in handles]
        self._tidx = [i for i, t in enumerate(self._torch) if t]
        self._inference = [i for i in self._tidx if handles[i].is_inference()]
        self.check_writable()
        self._ptrs = [handles[i].data_ptr() for i in self._tidx]
        self._cache: list[Any] = [None] * len(handles)

    def check_writable(self) -> None:
        """ValueError if a parameter is an inference tensor and inference mode is off
        (torch's optimisers fail there too); checked when built and at each step."""
        for i in self._inference:
            check_torch_writable(self._handles[i], f"params[{i}]")

    def refresh_values(self) -> bool:
        """Re-view a torch parameter whose storage was replaced (``p.data = t``);
        True when one was."""
        handles = self._handles
        # every replaced parameter is checked before any view is swapped: a refused
        # step leaves the views (and the step plan built on them) as they were
        swaps = []
        for k, i in enumerate(self._tidx):
            p = handles[i]
            if p.data_ptr() != self._ptrs[k]:
                v = self._vals[i]
                new = torch_array(p, f"params[{i}]")
                check_torch_writable(p, f"params[{i}]")
                if new.shape != v.shape or new.dtype != v.dtype:
                    raise ValueError(
                        f"params[{i}] changed from shape {v.shape} {v.dtype} to "
                        f"{new.shape} {new.dtype} after the optimiser was built"
                    )
                swaps.append((k, i, new, p.data_ptr()))
        for k, i, new, ptr in swaps:
            self._vals[i] = new
            self._ptrs[k] = ptr
        if swaps:
            self._inference = [i for i in self._tidx if handles[i].is_inference()]
        return bool(swaps)

    def values_written(self, idx: list[int] | None = None) -> None:
        """The optimiser wrote the values of the torch parameters (all, or those in
        ``idx``): autograd learns of it (:func:`bump_versions`)."""
        if self._tidx:
            h = self._handles
            tidx = self._tidx if idx is None else [i for i in idx if self._torch[i]]
            bump_versions([h[i] for i in tidx])

    def grads(self) -> tuple[list[np.ndarray], list[int]]:
        """``(gradients, indices)`` of the parameters whose grad is not None."""
        out: list[np.ndarray] = []
        idx: list[int] = []
        cache = self._cache
        is_torch_ = self._torch
        ptr: Any = None
        if self._tidx:
            import torch

            ptr = torch._C.TensorBase.data_ptr  # no __torch_function__ dispatch
        for i, p in enumerate(self._handles):
            g = p.grad
            if g is None:
                continue
            if is_torch_[i]:
                c = cache[i]
                if c is not None and c[0] is g and c[2] == ptr(g):
                    a = c[1]
                else:
                    a = torch_array(g, f"params[{i}].grad")
                    cache[i] = (g, a, ptr(g))
                out.append(a)
            else:
                out.append(g)
            idx.append(i)
        return out, idx

    def zero_grad(self, set_to_none: bool) -> None:
        for i, p in enumerate(self._handles):
            g = p.grad
            if g is None:
                continue
            if set_to_none:
                p.grad = None
                self._cache[i] = None
            elif self._torch[i]:
                # as torch.optim.Optimizer.zero_grad: detach_() refuses a view (DDP's
                # gradient buckets), so a grad without a grad_fn only stops requiring grad
                if g.grad_fn is not None:
                    g.detach_()
                else:
                    g.requires_grad_(False)
                g.zero_()
            else:
                g[...] = 0
