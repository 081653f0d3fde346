"""The training loop: :func:`fit`."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from fastclip import _interop as _io
from fastclip._checks import scalars as _cs
from fastclip._checks import train as _ct
from fastclip.train.engine import StepEngine
from fastclip.train.history import History
from fastclip.train.monitor import GradientMonitor, update_is_bounded
from fastclip.train.options import (check_loss_takes_sample_weight, resolve_clipper,
                                    resolve_loss, resolve_monitor)
from fastclip.train.progress import make_bar, postfix

__all__ = ["fit"]


def _buffers(model: Any) -> list[np.ndarray]:
    """The model's buffer arrays (batch normalisation's running statistics), if any."""
    nb = getattr(model, "named_buffers", None)
    return [b for _, b in nb()] if callable(nb) else []


def fit(
    model: Any,
    X: Any,
    y: Any,
    loss: Any = "cross_entropy",
    optimizer: Any = None,
    epochs: int = 10,
    batch_size: int = 32,
    clipper: Any = None,
    validation: tuple[Any, Any] | None = None,
    monitor: Any = "skip",
    callbacks: Iterable[Callable[[int, History], Any]] = (),
    progress: bool = True,
    seed: Any = None,
    comm: Any = None,
    *,
    desc: str | None = None,
    classification: bool | None = None,
    privacy: Any = None,
    sample_weight: Any = None,
) -> History:
    """Train ``model`` on ``(X, y)`` with mini-batches, monitoring every step.

    Parameters
    ----------
    model : fastclip.nn.MLP or compatible
        Provides ``forward``, ``backward``, ``parameters``, ``gradients``,
        ``grad_sqnorms`` (and optionally ``parameter_names``, ``dtype``).
        A model with ``train()``/``eval()`` is put in training mode and
        left in it; validation runs in evaluation mode. With batch
        normalisation, a last batch of one row is refused (choose
        ``batch_size`` so that ``n_samples % batch_size != 1``).
    X : array_like, shape (n_samples, n_features)
        Real numbers; cast once to the model's dtype. Must be finite, and
        finite in the model's dtype (1e300 overflows float32 and is rejected).
    y : array_like
        For ``"cross_entropy"``: integer labels ``(n_samples,)`` in
        ``[0, n_outputs)`` or class probabilities ``(n_samples, n_outputs)``;
        for ``"mse"``: targets ``(n_samples, n_outputs)`` (or
        ``(n_samples,)`` for one output). Must be finite (in the model's
        dtype too). Whether ``y`` holds class labels is decided by the loss
        (see ``classification``).
    loss : {"cross_entropy", "softmax_cross_entropy", "mse"} or callable
        A callable takes ``(output, target)`` and returns ``(loss, d_output)``
        like :func:`fastclip.nn.softmax_cross_entropy`; with ``sample_weight``
        it is called as ``loss(output, target, sample_weight=w)`` and must take
        that keyword.
    optimizer : fastclip.optim.Optimizer, optional
        Built on ``model.parameters()``. Default: ``Adam(model.parameters())``.
    epochs : int, default 10
        ``>= 1``.
    batch_size : int, default 32
        ``>= 1``; the last batch of an epoch may be smaller.
    clipper : {"agc", "autoclip", "zclip"} or clipper, optional
        An adaptive clipper (:class:`fastclip.AGC`, :class:`fastclip.AutoClip`,
        :class:`fastclip.ZClip`, or any object with
        ``clip_(grads, params, sqnorms=...)``), run before the optimiser step.
        A name builds one with default settings.
    validation : (X_val, y_val), optional
        Evaluated after every epoch (loss, and accuracy for classification).
    monitor : {"raise", "skip", "rollback"}, GradientMonitor or None, default "skip"
        Explosion policy (see :class:`GradientMonitor`). The default drops
        flagged updates and stops after more than 5 in a row; ``"raise"``
        stops at the first one. ``None`` disables the
        monitor; a non-finite gradient then makes the optimiser raise
        :class:`FloatingPointError`. A string builds a new monitor for this
        call; a :class:`GradientMonitor` object is used as it is and keeps its
        state afterwards (its statistics, events and rollback count carry on
        into the next ``fit`` that is given it, as when training continues;
        call its ``reset()`` to start afresh).
    callbacks : iterable of callables
        Called as ``cb(epoch, history)`` after every epoch; a callback that
        returns True stops training (``history.stopped_early`` is then True).
        Use one to drive :func:`fastclip.schedules.reduce_on_plateau`.
    progress : bool, default True
        Show a tqdm progress bar (when tqdm is installed and standard error is
        a terminal).
    seed : None, int or numpy.random.Generator
        Seeds the shuffling of the mini-batches.
    comm : mpi4py communicator, optional
        Data-parallel training over MPI through :mod:`fastclip.distributed`
        (each rank processes its shard of every batch; the gradients are
        averaged before the monitor and the optimiser see them).
    desc : str, optional
        Label of the progress bar.
    privacy : fastclip.privacy.DPConfig, optional, keyword-only
        Train with differential privacy (DP-SGD): Poisson-sampled batches
        (``round(1 / q)`` steps per epoch, batch sizes vary, a batch may be
        empty), per-example clipping inside the backward pass, Gaussian noise
        on the summed gradients and their average over the expected batch
        size, with the epsilon spent recorded per epoch in ``History.epsilon``
        and shown in the progress bar. Needs a model whose ``backward`` takes
        ``per_example_clip`` (:class:`fastclip.nn.MLP`; batch normalisation,
        which mixes the examples of a batch, and dropout are rejected before
        training, naming the layer). ``clipper`` and
        ``comm`` cannot be combined with it; the optimiser's own
        ``clip_norm``/``clip_value`` then act on the noisy average. The noise
        is drawn from ``seed``'s generator (or the operating system's CSPRNG
        with ``secure_mode``).
    classification : bool, optional
        Whether the loss takes class labels (integer labels are then checked
        to lie in ``[0, n_outputs)``, and validation reports accuracy).
        None (default): ``True`` for ``"cross_entropy"``, ``False`` for
        ``"mse"``; for a callable, its ``classification`` attribute (looked
        for through :func:`functools.partial`, so
        ``partial(fastclip.nn.softmax_cross_entropy)`` is a classification
        loss), else whether it is named ``softmax_cross_entropy``.
    sample_weight : array_like of shape (n_samples,), optional, keyword-only
        A weight per row of ``X``: finite, ``>= 0``, not all 0. Each batch's
        loss is then the weighted mean ``sum_i w_i l_i / sum_i w_i`` over its
        rows (scikit-learn's, not Keras' division by the batch size), the
        weights going to the loss as ``sample_weight=`` (the built-in losses
        take it; a callable must too), and ``History.epoch_loss`` weighs
        each batch by its weights' sum. A batch whose weights are all 0 is
        skipped: no step, nothing recorded (the optimiser's momentum and
        weight decay would move the parameters on a zero gradient). The
        validation data are not weighted. None (default): every row weighs
        the same, as without the argument. Cannot be combined with
        ``privacy`` (DP-SGD bounds each example's contribution by clipping,
        which a weight would change) nor with ``comm``.

    Returns
    -------
    History
        Per-step loss, pre-clip global norm, per-layer norms, learning rate,
        per-epoch summaries and events.

    Raises
    ------
    TypeError
        A model/optimiser/clipper without the needed methods, non-numeric data,
        ``sample_weight`` with a loss that does not take it.
    ValueError
        Mismatched shapes, non-finite data (the message gives the row and
        column), labels out of range, bad ``epochs``/``batch_size``, an
        unknown loss, policy or clipper name, bad ``sample_weight`` (of the
        wrong shape, not finite, negative or all 0; with ``privacy`` or
        ``comm``).
    GradientExplosionError
        When the monitor's policy stops training (see :class:`GradientMonitor`).

    Notes
    -----
    An exception raised during training (a :class:`KeyboardInterrupt`, an
    error of a callback, of the loss or of the model, and
    :class:`GradientExplosionError`) keeps what was recorded: its ``history``
    attribute holds the :class:`History` up to the last completed step, as
    :class:`GradientExplosionError` always did::

        try:
            history = fit(model, X, y)
        except KeyboardInterrupt as exc:
            history = exc.history
    """
    # ---- validate everything before training ---------------------------------------
    # (with comm, a local error is agreed on by every rank before the first collective)
    if comm is not None:
        from fastclip import distributed

        distributed.check_comm(comm)
    local_error: BaseException | None = None
    rng: np.random.Generator | None = None
    try:
        _ct.check_model(model)
        loss_fn, is_cls = resolve_loss(loss, classification)
        epochs = _ct.int_arg(epochs, "epochs", 1)
        batch_size = _ct.int_arg(batch_size, "batch_size", 1)
        progress = _cs.check_bool(progress, "progress")
        if desc is not None and not isinstance(desc, str):
            raise TypeError(f"desc must be a str or None, got {type(desc).__name__}")
        mon = resolve_monitor(monitor)
        clip = resolve_clipper(clipper)
        if comm is not None and getattr(clip, "comm", None) is not None:
            # the clipper would add up the reduced gradients of every rank as shards
            raise ValueError("clipper has its own comm, but fit(comm=...) clips the gradients "
                             "after reducing them (the same on every rank): build the clipper "
                             "without comm")
        cbs = _ct.check_callbacks(callbacks)
        rng = _ct.rng_arg(seed)
        dtype = np.dtype(getattr(model, "dtype", np.float64))
        X = _ct.check_X(X, "X", dtype)
        n_out = _output_size(model, X)
        y = _ct.check_y(y, "y", X.shape[0], n_out, is_cls, dtype)
        sw = None
        if sample_weight is not None:
            if privacy is not None:
                raise ValueError("sample_weight cannot be combined with privacy: DP-SGD "
                                 "bounds every example's contribution by clipping it, and "
                                 "a weight would scale it past the bound")
            if comm is not None:
                raise ValueError("sample_weight cannot be combined with comm")
            sw = _ct.check_sample_weight(sample_weight, X.shape[0])
            check_loss_takes_sample_weight(loss_fn)
        if privacy is None and getattr(model, "_batch_statistics", False):
            # batch normalisation cannot train on one row: refuse before the first step
            # rather than after the steps of the epoch's other batches
            _ct.check_no_single_row_batch(X.shape[0], batch_size,
                                          1 if comm is None else int(comm.Get_size()))
        if validation is not None:
            if not isinstance(validation, (tuple, list)) or len(validation) != 2:
                raise TypeError("validation must be a pair (X_val, y_val)")
            Xv = _ct.check_X(validation[0], "validation[0]", dtype)
            if Xv.shape[1] != X.shape[1]:
                raise ValueError(f"validation[0] has {Xv.shape[1]} features but X has {X.shape[1]}")
            yv = _ct.check_y(validation[1], "validation[1]", Xv.shape[0], n_out, is_cls, dtype,
                             x_name="validation[0]")
        params = _io.values(model.parameters())
        if optimizer is None:
            from fastclip.optim import Adam

            optimizer = Adam(list(model.parameters()))
        if not callable(getattr(optimizer, "step", None)) or type(
                optimizer).__module__.split(".")[0] == "torch":
            # a torch.optim optimiser steps torch tensors from their .grad: it cannot
            # take fit's NumPy gradients
            raise TypeError(f"optimizer must be a fastclip.optim optimiser, got "
                            f"{type(optimizer).__module__}.{type(optimizer).__name__}")
        _ct.check_optimizer_params(optimizer, params)
        if mon is not None and mon.policy == "rollback" and not hasattr(optimizer, "lr_scale"):
            raise TypeError("monitor policy 'rollback' needs an optimiser with lr_scale")
        backward_kw = _backward_kwargs(model)
        dp = None
        if privacy is not None:
            from fastclip import privacy as _privacy

            dp = _privacy.fit_setup(privacy, model, optimizer, X.shape[0], batch_size, epochs,
                                    rng, clipper=clip, comm=comm)
            backward_kw.update(dp.backward_kwargs)
        names = (list(model.parameter_names()) if callable(getattr(model, "parameter_names", None))
                 else [f"param{i}" for i in range(len(params))])
    except Exception as exc:
        if comm is None:
            raise
        local_error = exc
    if comm is not None:
        distributed.comm.agree_or_raise(comm, local_error)
    assert rng is not None  # (for mypy: the validation above set it or raised)

    reducer = None
    if comm is not None:
        reducer, rng = distributed.fit_setup(
            model, X, y, rng, comm,
            {"epochs": epochs, "batch_size": batch_size,
             **distributed._training_settings(optimizer, clip, mon)})
        if comm.Get_rank() != 0:
            progress = False

    # ---- train ---------------------------------------------------------------------
    history = History(names)
    if dp is not None:
        history.privacy = dp.summary()
    engine = None if mon is None else StepEngine(mon, optimizer, params, clipper=clip,
                                                 history=history, buffers=_buffers(model))
    try:
        _train(model, X, y, loss_fn, is_cls, optimizer, epochs, batch_size, clip,
               (Xv, yv) if validation is not None else None, mon, engine, cbs, progress, rng,
               comm, reducer, desc, backward_kw, names, history, dp, sw)
    except BaseException as exc:
        if getattr(exc, "history", None) is None:
            try:
                exc.history = history  # type: ignore[attr-defined]
            except AttributeError:  # an exception type without an instance __dict__
                pass
        raise
    finally:
        if dp is not None:
            _record_privacy_spent(history, dp)
    return history


def _callbacks_on_every_rank(cbs: list[Any], epoch: int, history: History, comm: Any) -> bool:
    """The callbacks of one epoch with ``comm``: a callback that raises on one rank makes
    every rank raise, and training stops on every rank when a callback asks for it on
    any (a rank that stopped alone would leave the others waiting in the next step)."""
    from fastclip.distributed.comm import mpi, raise_everywhere

    stop, exc = False, None
    try:
        for cb in cbs:
            if cb(epoch, history):
                stop = True
    except BaseException as e:  # sys.exit() or KeyboardInterrupt on one rank too
        exc = e
    m = mpi()
    flags = np.array([0 if exc is None else 1, 1 if stop else 0], dtype=np.int64)
    comm.Allreduce(m.IN_PLACE, flags, op=m.SUM)
    if flags[0]:
        raise_everywhere(comm, exc)
    return bool(flags[1])


def _clip(clip: Any, grads: list[np.ndarray], params: Any, needs_params: bool,
          sq: np.ndarray) -> np.ndarray | None:
    """The clipper's step (when there is one); returns the sums of squares after it, for
    the optimiser (None when the clipper does not say)."""
    if clip is None:
        return sq
    clip.clip_(grads, params if needs_params else None, sqnorms=sq)
    post = getattr(clip, "last_sqnorms", None)
    return post if post is not None and len(post) == len(sq) else None


def _record_privacy_spent(history: History, dp: Any) -> None:
    """Every accounted step's privacy, also when training stopped inside an epoch
    (``History.epsilon`` holds the epochs' ends only)."""
    if history.privacy is None:
        return
    history.privacy["steps"] = int(dp.accountant.steps)
    try:
        history.privacy["epsilon_spent"] = float(dp.epsilon())
    except Exception:  # the accountant must not hide the error being raised
        history.privacy["epsilon_spent"] = math.nan


def _train(model: Any, X: np.ndarray, y: np.ndarray, loss_fn: Callable, is_cls: bool,
           optimizer: Any, epochs: int, batch_size: int, clip: Any,
           validation: tuple[np.ndarray, np.ndarray] | None, mon: GradientMonitor | None,
           engine: StepEngine | None, cbs: list[Any], progress: Any, rng: np.random.Generator,
           comm: Any, reducer: Any, desc: str | None, backward_kw: dict[str, Any],
           names: list[str], history: History, dp: Any = None,
           sw: np.ndarray | None = None) -> None:
    """The epochs of :func:`fit` (arguments validated; ``sw``: the sample weights)."""
    if hasattr(model, "training") and callable(getattr(model, "train", None)):
        model.train()  # batch norm on batch statistics, dropout active (as torch's loops)
    if comm is not None:
        from fastclip import distributed
    from fastclip.clip import array_norms
    params = _io.values(model.parameters())
    # the float buffers (running statistics; the step counters agree on every rank)
    bufs = [b for b in _buffers(model) if b.dtype.kind == "f"]
    n = X.shape[0]
    steps_per_epoch = -(-n // batch_size) if dp is None else dp.sampler.steps_per_epoch
    needs_params = bool(getattr(clip, "requires_params", False))
    bar = make_bar(progress, epochs * steps_per_epoch, desc)
    step = 0
    last_post = 0.0
    lo = gnorm = lr = eps = math.nan
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            perm = rng.permutation(n) if dp is None else None
            loss_sum = 0.0
            loss_count: float = 0  # applied batches (with sample weights: their weight sums)
            for b in range(steps_per_epoch):
                if dp is None:
                    assert perm is not None
                    idx = perm[b * batch_size:(b + 1) * batch_size]
                else:
                    idx = dp.sampler.sample()
                if reducer is not None:
                    idx = idx[distributed.shard_slice(len(idx), comm)]
                w_sum = 1.0  # the batch's weight in the epoch loss
                if sw is not None:
                    wb = sw[idx]
                    w_sum = float(wb.sum())
                    if w_sum == 0.0:
                        # no row of the batch counts: it is skipped (a step on its zero
                        # gradient would still apply momentum and weight decay)
                        if bar is not None:
                            bar.update(1)
                        continue
                if dp is not None and idx.size == 0:
                    lo = math.nan  # an empty Poisson batch: the step is noise alone
                    grads = model.gradients()
                    for g in grads:
                        g[...] = 0
                else:
                    try:
                        xb, yb = X[idx], y[idx]
                        out = model.forward(xb)
                        lo, dout = (loss_fn(out, yb) if sw is None
                                    else loss_fn(out, yb, sample_weight=wb))
                        lo = float(lo)
                        model.backward(dout, **backward_kw)
                        grads = model.gradients()
                    except BaseException as e:  # KeyboardInterrupt too: no rank waits
                        if reducer is not None and dp is None:
                            # enter this step's all-reduce with the error: every rank
                            # raises, none waits for this one
                            reducer.abort(e)
                        raise
                if dp is not None:
                    grads = dp.noisy_grads(grads)
                    sq = dp.noisy_sqnorms()
                elif reducer is not None:
                    res = reducer.reduce_(grads, weight=len(idx), value=lo,
                                          sqnorms=model.grad_sqnorms())
                    lo = res.value
                    sq = array_norms(grads) ** 2
                else:
                    sq = np.asarray(model.grad_sqnorms(), dtype=np.float64)
                total = float(np.add.reduce(sq, axis=None))  # sq.sum() without its wrapper
                gnorm = math.sqrt(total) if total >= 0 else math.nan
                lr = float(getattr(optimizer, "lr", math.nan))
                ev = None
                if mon is not None:
                    # under privacy the decision may depend only on the noised
                    # gradients: the loss of the batch is not private
                    ev = mon.observe(step, sq, loss=0.0 if dp is not None else lo,
                                     names=names, epoch=epoch,
                                     clipped=update_is_bounded(optimizer, clip))
                if ev is None:
                    if reducer is None:
                        post = _clip(clip, grads, params, needs_params, sq)
                        optimizer.step(grads, sqnorms=post)
                    else:
                        # every rank clips and steps the same reduced gradients; an error
                        # on one rank is made an error on every rank before any rank
                        # updates (none waits in the next reduce, none steps alone)
                        post = sq
                        if clip is not None:
                            post = distributed._on_every_rank(comm, _clip, clip, grads,
                                                              params, needs_params, sq)
                        distributed._on_every_rank(comm, optimizer.step, grads, sqnorms=post)
                    history.record_step(step, epoch, lo, gnorm, lr, True, sq)
                    if mon is not None and mon.last_warnings:
                        history.events.extend(mon.last_warnings)
                    if not (dp is not None and math.isnan(lo)):
                        if sw is None:
                            loss_sum += lo
                            loss_count += 1
                        else:  # the epoch's weighted mean: batches weigh their weights' sum
                            loss_sum += lo * w_sum
                            loss_count += w_sum
                    if engine is not None:
                        engine.applied()
                else:
                    history.record_step(step, epoch, lo, gnorm, lr, False, sq)
                    assert engine is not None
                    engine.flagged(ev)
                step += 1
                if bar is not None:
                    bar.update(1)
                    now = time.perf_counter()
                    if now - last_post > 0.2:
                        postfix(bar, lo, gnorm, lr, _vanishing(mon), refresh=False,
                                epsilon=eps)
                        last_post = now
            if dp is not None:
                eps = dp.epsilon()
            if bar is not None and history.n_steps:  # the epoch's last values, always shown
                postfix(bar, lo, gnorm, lr, _vanishing(mon), refresh=True, epsilon=eps)
            if reducer is not None and bufs:
                # each rank's running statistics come from its own blocks of the batches:
                # rank 0's go to every rank (as DistributedDataParallel broadcasts its
                # buffers), so the replicas stay identical in evaluation mode
                distributed.broadcast_parameters(bufs, comm)
            val_loss = val_acc = math.nan
            if validation is not None:
                if comm is None:
                    val_loss, val_acc = _evaluate(model, validation[0], validation[1],
                                                  loss_fn, is_cls)
                else:
                    val_loss, val_acc = distributed._on_every_rank(
                        comm, _evaluate, model, validation[0], validation[1], loss_fn, is_cls)
            history.record_epoch(loss_sum / loss_count if loss_count else math.nan, val_loss,
                                 val_acc, time.perf_counter() - t0, epsilon=eps)
            stop = False
            if comm is None:
                for cb in cbs:
                    if cb(epoch, history):
                        stop = True
            elif cbs:
                stop = _callbacks_on_every_rank(cbs, epoch, history, comm)
            if stop:
                history.stopped_early = True
                break
    finally:
        if bar is not None:
            bar.close()


def _vanishing(mon: GradientMonitor | None) -> list[str]:
    return [] if mon is None or not mon.watches_vanishing else mon.vanishing_layers


def _backward_kwargs(model: Any) -> dict[str, Any]:
    """``{"input_grad": False}`` when ``model.backward`` takes it: a training step never
    uses the gradient of the input, so the first layer's ``dz @ W.T`` is skipped."""
    try:
        params = inspect.signature(model.backward).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return {}
    return {"input_grad": False} if "input_grad" in params else {}


def _output_size(model: Any, X: np.ndarray) -> int:
    n_in, n_out = getattr(model, "in_features", None), getattr(model, "out_features", None)
    if isinstance(n_in, int) and isinstance(n_out, int):
        # no trial forward: it would update batch-norm statistics and draw dropout masks
        if X.shape[1] != n_in:
            raise ValueError(f"X has {X.shape[1]} features per row but the model expects "
                             f"{n_in}")
        return n_out
    try:
        out = model.forward(X[:1])
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"X has {X.shape[1]} features per row and the model rejected it: {exc}"
        ) from None
    out = np.asarray(out)
    return int(out.shape[-1]) if out.ndim == 2 else 1


def _evaluate(model: Any, X: np.ndarray, y: np.ndarray, loss_fn: Callable,
              classification: bool, batch: int = 2048) -> tuple[float, float]:
    """Validation loss and accuracy, in evaluation mode when the model has one
    (batch norm on its running statistics, no dropout); the mode is restored."""
    was_training = getattr(model, "training", None)
    if was_training is not None and callable(getattr(model, "eval", None)):
        model.eval()
    try:
        return _evaluate_batches(model, X, y, loss_fn, classification, batch)
    finally:
        if was_training is not None and callable(getattr(model, "train", None)):
            model.train(bool(was_training))


def _evaluate_batches(model: Any, X: np.ndarray, y: np.ndarray, loss_fn: Callable,
                      classification: bool, batch: int) -> tuple[float, float]:
    total, correct, n = 0.0, 0, X.shape[0]
    for s in range(0, n, batch):
        out = model.forward(X[s:s + batch])
        lo, _ = loss_fn(out, y[s:s + batch])
        m = out.shape[0]
        total += float(lo) * m
        if classification:
            pred = np.argmax(out, axis=1)
            tgt = y[s:s + batch] if y.ndim == 1 else np.argmax(y[s:s + batch], axis=1)
            correct += int(np.count_nonzero(pred == tgt))
    return total / n, (correct / n if classification else math.nan)
