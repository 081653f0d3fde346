"""Saving and loading models and optimisers without pickle: ``.npz`` plus a JSON header.

A file written by :func:`save` is an ordinary NumPy ``.npz`` archive holding
numeric arrays only, one of which (``__fastclip__``) is the UTF-8 bytes of a
JSON header describing what the arrays are. :func:`load` reads it with
``numpy.load(..., allow_pickle=False)`` and ``json.loads``, and rebuilds objects
only from a fixed list of fastclip classes named in the header: loading a file
from an untrusted source executes nothing (a malformed file raises
:class:`ValueError`).

What can be saved: a fastclip model (:class:`fastclip.nn.MLP`,
:class:`fastclip.nn.Linear`), an optimiser of :mod:`fastclip.optim`, or a
dict of them with string keys (e.g. ``{"model": m, "optimizer": opt}``). An
optimiser saved together with the model it was built on is rebuilt on the
loaded model's parameters; one saved alone keeps its own parameter arrays
(``opt.params`` after loading). The learning rate must be a number or a
schedule of :mod:`fastclip.schedules` (saved with ``to_dict()``; a
:class:`~fastclip.schedules.ReduceLROnPlateau` with its state); any other
callable cannot be written without pickle and raises :class:`TypeError`. A
dict may also hold schedules: one that is the lr of an optimiser in the same
dict comes back as that optimiser's lr object (so that stepping it after
loading drives the optimiser, as before saving).

A model keeps its architecture (sizes, activation, batch normalisation with its
``eps`` and momentum, dropout probability), its parameters and its running
statistics; a loaded model starts in training mode, as a new one, and its dropout
masks come from a fresh generator.

Training resumes bit for bit: the parameters, every optimiser state array,
``step_count`` and ``lr_scale`` are stored exactly.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from typing import Any

import numpy as np

__all__ = ["load", "save"]

_FORMAT = "fastclip"
_VERSION = 1
_HEADER = "__fastclip__"
_MODELS = ("MLP", "Linear")
_OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop")


def _json_value(v: Any, what: str) -> Any:
    """Hyper-parameters as JSON values (floats, bools, ints, lists)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, (tuple, list)):
        return [_json_value(x, what) for x in v]
    raise TypeError(f"{what} is a {type(v).__name__}, which cannot be saved without pickle")


class _Writer:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, a: np.ndarray) -> str:
        key = f"a{len(self.arrays)}"
        self.arrays[key] = np.array(a, copy=True, order="K")
        return key


def _model_entry(m: Any, w: _Writer) -> dict[str, Any]:
    from fastclip import nn

    blk = m._blocks[0]
    config: dict[str, Any]
    if type(m) is nn.MLP:
        config = {"sizes": list(m.sizes), "activation": m.activation,
                  "batchnorm": bool(m.batchnorm), "dropout": float(m.dropout)}
        bns = [b for b in m._blocks if isinstance(b, nn._BatchNormLayer)]
        if bns:
            config["bn_eps"] = float(bns[0].eps)
            config["bn_momentum"] = None if bns[0].momentum is None else float(bns[0].momentum)
    else:
        config = {"in_features": m.in_features, "out_features": m.out_features,
                  "activation": m.activation}
    config["negative_slope"] = float(blk.negative_slope)
    config["dtype"] = m.dtype.name
    return {
        "type": type(m).__name__,
        "config": config,
        "params": {n: w.add(p.data) for n, p in zip(m.parameter_names(), m.parameters())},
        # batch normalisation's running statistics
        "buffers": {n: w.add(b) for n, b in m.named_buffers()},
    }


def _lr_entry(lr: Any) -> Any:
    from fastclip import schedules

    if isinstance(lr, schedules.Schedule):
        return {"schedule": lr.to_dict()}  # type: ignore[attr-defined]
    if isinstance(lr, schedules.ReduceLROnPlateau):
        return {"plateau": _plateau_state(lr)}
    if callable(lr):
        raise TypeError(
            f"the optimiser's lr is a {type(lr).__name__}; only a number or a "
            "fastclip.schedules schedule can be saved without pickle"
        )
    return float(lr)


def _plateau_state(sched: Any) -> dict[str, Any]:
    st = sched.state_dict()
    return {k: _json_value(v, f"ReduceLROnPlateau {k!r}") if k != "params" else dict(v)
            for k, v in st.items()}


def _schedule_entry(sched: Any, key: str, optimizers: dict[str, Any]) -> dict[str, Any]:
    """A schedule saved in a dict: a link to the optimiser whose lr it is (so that
    :func:`load` gives back that same object), else the schedule itself."""
    for k, opt in optimizers.items():
        if opt._lr is sched:
            return {"lr_of": k}
    return {"plateau": _plateau_state(sched)} if hasattr(sched, "state_dict") else {
        "schedule": sched.to_dict()}


def _optimizer_entry(opt: Any, w: _Writer, models: dict[str, Any]) -> dict[str, Any]:
    name = type(opt).__name__
    if name not in _OPTIMIZERS or type(opt).__module__ != "fastclip.optim":
        raise TypeError(f"cannot save an optimiser of type {name}")
    sd = opt.state_dict()
    entry: dict[str, Any] = {
        "type": name,
        "lr": _lr_entry(opt._lr),
        "clip_norm": opt.clip_norm,
        "clip_value": opt.clip_value,
        "hyperparams": {k: _json_value(v, f"hyperparameter {k!r}")
                        for k, v in sd["hyperparams"].items()},
        "step_count": int(sd["step_count"]),
        "lr_scale": float(sd["lr_scale"]),
        "state": [{k: w.add(a) for k, a in st.items()} for st in sd["state"]],
    }
    params = opt.params
    for key, m in models.items():
        values = [p.data for p in m.parameters()]
        if len(values) == len(params) and all(a is b for a, b in zip(values, params)):
            entry["model"] = key
            break
    else:
        entry["params"] = [w.add(p) for p in params]
    return entry


def _kind(obj: Any) -> str | None:
    from fastclip import nn, optim, schedules

    if isinstance(obj, (nn.MLP, nn.Linear)):
        return "model"
    if isinstance(obj, optim.Optimizer):
        return "optimizer"
    if isinstance(obj, (schedules.Schedule, schedules.ReduceLROnPlateau)):
        return "schedule"
    return None


def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Save a model, an optimiser, or a dict of them to an ``.npz`` file, without pickle.

    Parameters
    ----------
    obj : fastclip model, fastclip optimiser, or dict of str -> model/optimiser/schedule
        For example ``{"model": model, "optimizer": opt}``; an optimiser built
        on ``model.parameters()`` of a model in the same dict is rebuilt on it
        by :func:`load`, and a schedule that is an optimiser's lr comes back as
        that optimiser's lr (``{"model": m, "optimizer": opt, "plateau": sched}``).
    path : str or path-like
        The file to write (NumPy appends ``.npz`` when the name lacks it).

    Raises
    ------
    TypeError
        ``obj`` is none of these, a key is not a string, or an optimiser's
        ``lr`` is a callable that is not a :mod:`fastclip.schedules` schedule.

    Examples
    --------
    >>> import numpy as np, tempfile, os, fastclip
    >>> from fastclip import nn, optim
    >>> m = nn.MLP([3, 4, 2], rng=0)
    >>> opt = optim.Adam(m.parameters(), lr=1e-3, clip_norm=1.0)
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> fastclip.save({"model": m, "optimizer": opt}, path)
    >>> state = fastclip.load(path)
    >>> sorted(state)
    ['model', 'optimizer']
    """
    w = _Writer()
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str):
                raise TypeError(f"obj's keys must be strings, got {type(k).__name__}")
        kinds = {k: _kind(v) for k, v in obj.items()}
        for k, kd in kinds.items():
            if kd is None:
                raise TypeError(
                    f"obj[{k!r}] is a {type(obj[k]).__name__}; save takes fastclip models, "
                    "optimisers and schedules"
                )
        models = {k: v for k, v in obj.items() if kinds[k] == "model"}
        root: dict[str, Any] = {"dict": {}}
        for k, v in obj.items():
            if kinds[k] == "model":
                root["dict"][k] = {"model": _model_entry(v, w)}
        for k, v in obj.items():
            if kinds[k] == "optimizer":
                root["dict"][k] = {"optimizer": _optimizer_entry(v, w, models)}
        optimizers = {k: v for k, v in obj.items() if kinds[k] == "optimizer"}
        for k, v in obj.items():
            if kinds[k] == "schedule":
                root["dict"][k] = {"schedule": _schedule_entry(v, k, optimizers)}
        root["order"] = list(obj)
    else:
        kd = _kind(obj)
        if kd not in ("model", "optimizer"):
            raise TypeError(
                f"obj is a {type(obj).__name__}; save takes a fastclip model, a fastclip "
                "optimiser or a dict of them (a schedule is saved inside such a dict)"
            )
        root = {kd: _model_entry(obj, w) if kd == "model" else _optimizer_entry(obj, w, {})}
    header = {"format": _FORMAT, "version": _VERSION, "root": root}
    raw = json.dumps(header, allow_nan=True).encode("utf-8")
    arrays: dict[str, Any] = {_HEADER: np.frombuffer(raw, dtype=np.uint8), **w.arrays}
    np.savez(path, **arrays)


# ---------------------------------------------------------------------------
# Loading: everything is checked against the fixed schema before it is used.
# ---------------------------------------------------------------------------
def _bad(detail: str) -> ValueError:
    return ValueError(f"not a valid fastclip file: {detail}")


def _get(d: Any, key: str, typ: Any, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise _bad(f"{where} has no {key!r}")
    v = d[key]
    if typ is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _bad(f"{where}[{key!r}] must be a number")
        return float(v)
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise _bad(f"{where}[{key!r}] must be of type {getattr(typ, '__name__', typ)}")
    return v


class _Reader:
    def __init__(self, npz: Any) -> None:
        self.npz = npz

    def array(self, key: Any, where: str, counter: bool = False) -> np.ndarray:
        """The array ``key`` of the file: float32/float64 (``counter``: int64)."""
        if not isinstance(key, str) or key == _HEADER or key not in self.npz.files:
            raise _bad(f"{where} names no array of the file")
        a = self.npz[key]
        ok = (np.dtype(np.int64),) if counter else (np.dtype(np.float32), np.dtype(np.float64))
        if a.dtype not in ok:
            raise _bad(f"{where} has dtype {a.dtype}, not {'/'.join(str(d) for d in ok)}")
        return a


def _load_model(e: Any, r: _Reader, where: str) -> Any:
    from fastclip import nn

    typ = _get(e, "type", str, where)
    if typ not in _MODELS:
        raise _bad(f"{where} has unknown model type {typ!r}")
    cfg = _get(e, "config", dict, where)
    dtype = _get(cfg, "dtype", str, where)
    if dtype not in ("float32", "float64"):
        raise _bad(f"{where} has dtype {dtype!r}")
    act = _get(cfg, "activation", str, where)
    slope = _get(cfg, "negative_slope", float, where)
    try:
        m: Any
        if typ == "MLP":
            sizes = _get(cfg, "sizes", list, where)
            # files without these keys were written before they existed: plain MLPs
            bn = _get(cfg, "batchnorm", bool, where) if "batchnorm" in cfg else False
            drop = _get(cfg, "dropout", float, where) if "dropout" in cfg else 0.0
            eps = _get(cfg, "bn_eps", float, where) if "bn_eps" in cfg else 1e-5
            mom = cfg.get("bn_momentum", 0.1)
            if "bn_momentum" in cfg and mom is not None:
                mom = _get(cfg, "bn_momentum", float, where)
            m = nn.MLP(sizes, act, negative_slope=slope, batchnorm=bn, dropout=drop,
                       bn_eps=eps, bn_momentum=mom, dtype=dtype, rng=0)
        else:
            m = nn.Linear(_get(cfg, "in_features", int, where),
                          _get(cfg, "out_features", int, where), act,
                          negative_slope=slope, dtype=dtype, rng=0)
    except (TypeError, ValueError) as exc:
        raise _bad(f"{where}: {exc}") from None
    params = _get(e, "params", dict, where)
    state = {n: r.array(k, f"{where} parameter {n!r}") for n, k in params.items()}
    buffers = e.get("buffers", {}) if isinstance(e, dict) else {}
    if not isinstance(buffers, dict):
        raise _bad(f"{where}['buffers'] must be of type dict")
    for n, k in buffers.items():
        if n in state:
            raise _bad(f"{where} names {n!r} as a parameter and as a buffer")
        state[n] = r.array(k, f"{where} buffer {n!r}", counter=str(n).endswith(
            "num_batches_tracked"))
    try:
        m.load_state_dict(state)
    except (TypeError, ValueError) as exc:
        raise _bad(f"{where}: {exc}") from None
    return m


def _load_schedule(e: Any, where: str) -> Any:
    """A schedule entry: ``{"schedule": to_dict()}`` or ``{"plateau": state_dict()}``."""
    from fastclip import schedules

    try:
        if isinstance(e, dict) and "plateau" in e:
            st = _get(e, "plateau", dict, where)
            sched = schedules.ReduceLROnPlateau(**_get(st, "params", dict, where))
            sched.load_state_dict(st)
            return sched
        return schedules.from_dict(_get(e, "schedule", dict, where))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith("not a valid fastclip file"):
            raise
        raise _bad(f"{where} schedule: {exc}") from None


def _load_optimizer(e: Any, r: _Reader, where: str, models: dict[str, Any]) -> Any:
    from fastclip import optim, schedules

    typ = _get(e, "type", str, where)
    if typ not in _OPTIMIZERS:
        raise _bad(f"{where} has unknown optimiser type {typ!r}")
    cls = getattr(optim, typ)
    if "model" in e:
        key = _get(e, "model", str, where)
        if key not in models:
            raise _bad(f"{where} refers to model {key!r}, which is not in the file")
        params: list[Any] = models[key].parameters()
    else:
        keys = _get(e, "params", list, where)
        params = [np.array(r.array(k, f"{where} params[{i}]")) for i, k in enumerate(keys)]
    lr_e = e.get("lr") if isinstance(e, dict) else None
    if isinstance(lr_e, dict):
        lr: Any = _load_schedule(lr_e, f"{where} lr")
    else:
        lr = _get(e, "lr", float, where)
    hyper = dict(_get(e, "hyperparams", dict, where))
    if "betas" in hyper and isinstance(hyper["betas"], list):
        hyper["betas"] = tuple(hyper["betas"])
    clip = {}
    for k in ("clip_norm", "clip_value"):
        v = e.get(k)
        if v is not None:
            clip[k] = _get(e, k, float, where)
    try:
        opt = cls(params, lr, **hyper, **clip)
    except (TypeError, ValueError) as exc:
        raise _bad(f"{where}: {exc}") from None
    states = _get(e, "state", list, where)
    sd = {
        "optimizer": typ,
        "step_count": _get(e, "step_count", int, where),
        "lr_scale": _get(e, "lr_scale", float, where),
        "hyperparams": opt.hyperparams,
        "state": [
            {k: r.array(v, f"{where} state[{i}][{k!r}]") for k, v in st.items()}
            if isinstance(st, dict) else st
            for i, st in enumerate(states)
        ],
    }
    try:
        opt.load_state_dict(sd)
    except (TypeError, ValueError) as exc:
        raise _bad(f"{where}: {exc}") from None
    return opt


def load(path: str | os.PathLike[str]) -> Any:
    """Load what :func:`save` wrote: new model and optimiser objects.

    The file is read with ``numpy.load(path, allow_pickle=False)`` and a JSON
    header; only fastclip's own model and optimiser classes can be built, so a
    file from an untrusted source executes nothing.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    model, optimiser, or dict
        What was saved, as new objects: a dict has the same keys, and an
        optimiser saved with its model is built on the new model's
        ``parameters()``.

    Raises
    ------
    ValueError
        The file is not a fastclip file, or its header or arrays are malformed
        (the message says what is wrong). Loading never executes code from the
        file.
    """
    where = os.fspath(path)
    try:
        opened = np.load(path, allow_pickle=False)
    except (EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        # empty, truncated or not an archive at all (NumPy's own message speaks of
        # pickles, which a fastclip file never holds)
        raise _bad(f"{where!r} is not a .npz archive ({type(exc).__name__})") from None
    if not isinstance(opened, np.lib.npyio.NpzFile):
        raise _bad(f"{where!r} holds a single .npy array, not a .npz archive")
    try:
        return _load_archive(opened, where)
    except (EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise _bad(f"{where!r} is damaged ({type(exc).__name__}: {exc})") from None
    finally:
        opened.close()


def _load_archive(npz: Any, path: str) -> Any:
    """:func:`load` of an opened archive."""
    if _HEADER not in npz.files:
        raise _bad(f"{path!r} has no {_HEADER} header")
    raw = npz[_HEADER]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _bad("the header is not a byte string")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(f"the header is not JSON ({exc})") from None
    if _get(header, "format", str, "header") != _FORMAT:
        raise _bad("the header's format is not 'fastclip'")
    version = _get(header, "version", int, "header")
    if version != _VERSION:
        raise _bad(f"version {version} is not supported (this fastclip reads {_VERSION})")
    root = _get(header, "root", dict, "header")
    r = _Reader(npz)
    if "model" in root:
        return _load_model(root["model"], r, "model")
    if "optimizer" in root:
        return _load_optimizer(root["optimizer"], r, "optimizer", {})
    entries = _get(root, "dict", dict, "header root")
    order = _get(root, "order", list, "header root")
    if sorted(map(str, order)) != sorted(entries):
        raise _bad("the header's order does not list its entries")
    models = {}
    for k, v in entries.items():
        if isinstance(v, dict) and "model" in v:
            models[k] = _load_model(v["model"], r, f"[{k!r}]")
    out: dict[str, Any] = {}
    for k in order:
        v = entries[k]
        if k in models:
            out[k] = models[k]
        elif isinstance(v, dict) and "optimizer" in v:
            out[k] = _load_optimizer(v["optimizer"], r, f"[{k!r}]", models)
        elif not (isinstance(v, dict) and "schedule" in v):
            raise _bad(f"entry {k!r} is neither a model, an optimiser nor a schedule")
    for k in order:  # schedules last: one may be the lr of an optimiser loaded above
        v = entries[k]
        if isinstance(v, dict) and "schedule" in v:
            e = v["schedule"]
            if isinstance(e, dict) and "lr_of" in e:
                of = _get(e, "lr_of", str, f"[{k!r}]")
                opt = out.get(of)
                if opt is None or not isinstance(entries[of], dict) or \
                        "optimizer" not in entries[of] or not callable(opt._lr):
                    raise _bad(f"[{k!r}] is the lr of {of!r}, which is not an optimiser "
                               "with a schedule in the file")
                out[k] = opt._lr
            else:
                out[k] = _load_schedule(e, f"[{k!r}]")
    return {k: out[k] for k in order}
