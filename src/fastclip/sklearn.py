"""scikit-learn estimators on fastclip's fused MLP: :class:`MLPClassifier` and
:class:`MLPRegressor`.

Drop-in replacements for :class:`sklearn.neural_network.MLPClassifier` and
:class:`~sklearn.neural_network.MLPRegressor` (same parameter names, the same
loss with its L2 term, the same stopping rule), trained by
:func:`fastclip.train.fit` on :class:`fastclip.nn.MLP` with a fused
:mod:`fastclip.optim` optimiser, plus fastclip's own options: gradient
clipping (``clip_norm``, ``clip_value``), a learning-rate ``schedule``, the
gradient ``monitor``, ``batchnorm`` and ``dropout``.

scikit-learn is an optional dependency (``pip install fastclip[sklearn]``):
this module imports it, so import the module only when you use it.

Differences from scikit-learn's estimators:

- the network computes in ``dtype`` (float32 by default, as
  :class:`fastclip.nn.MLP`; pass ``dtype="float64"`` for scikit-learn's
  precision); ``predict_proba`` returns float64;
- the classifier always has a softmax output of one unit per class (two for
  a binary problem, where scikit-learn uses one logistic unit: the same
  model, parametrised twice) and does not support multilabel targets;
- weights start Glorot-uniform (scikit-learn's scheme) and biases at 0;
- ``solver`` is ``"adam"`` or ``"sgd"`` (no ``"lbfgs"``); ``learning_rate``
  schedules other than constant are given as a fastclip ``schedule``;
- ``sample_weight`` must be ``>= 0`` (scikit-learn also takes negative
  weights), and a mini-batch whose weights are all 0 is skipped (in
  scikit-learn its step divides by a zero weight sum).

Examples
--------
>>> from sklearn.datasets import load_digits
>>> from fastclip.sklearn import MLPClassifier
>>> X, y = load_digits(return_X_y=True)
>>> clf = MLPClassifier((64,), max_iter=30, random_state=0, clip_norm=5.0).fit(X / 16, y)
>>> clf.score(X / 16, y) > 0.95
True
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from fastclip import nn as _nn
from fastclip import optim as _optim
from fastclip._checks.train import cast_to_dtype, check_no_single_row_batch, int_arg
from fastclip.train import fit as _fit
from fastclip.train.monitor import GradientMonitor
from fastclip.train.options import resolve_monitor

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "sigmoid": "sigmoid",
                "tanh": "tanh", "relu": "relu", "leaky_relu": "leaky_relu", "prelu": "prelu"}


class _Penalised:
    """The MLP seen by :func:`fastclip.train.fit`, with scikit-learn's L2 term:
    ``alpha / (2 n) * sum ||W||^2`` added to each batch's loss and
    ``alpha / n * W`` to each weight gradient (n: the batch size, or the sum of
    its sample weights; biases and batch-norm parameters are not penalised, as
    scikit-learn's intercepts)."""

    def __init__(self, model: _nn.MLP, alpha: float) -> None:
        self.model = model
        self.alpha = alpha
        names = model.parameter_names()
        widx = [i for i, n in enumerate(names) if n.endswith(".weight") and ".bn." not in n]
        self._params = [p.data for p in model.parameters()]
        self._grads = model.gradients()
        # Per penalised weight, made once: the flat views of the weight and of its
        # gradient (the model fills its arrays in place, so views stay current),
        # a scratch array for alpha / n * W and, for float32, a float64 copy of the
        # gradient for its sum of squares. Every step then allocates nothing.
        self._terms = [(i, _flat(self._params[i]), _flat(self._grads[i]),
                        np.empty_like(self._params[i]),
                        None if self._grads[i].dtype == np.float64
                        else np.empty(self._grads[i].size, dtype=np.float64))
                       for i in widx]
        self._n: float = 1.0
        self._sq: np.ndarray | None = None
        self.dtype = model.dtype
        self.in_features = model.in_features
        self.out_features = model.out_features

    @property
    def training(self) -> bool:
        return bool(self.model.training)

    def train(self, mode: bool = True) -> _Penalised:
        self.model.train(mode)
        return self

    def eval(self) -> _Penalised:
        self.model.eval()
        return self

    def named_buffers(self) -> list[tuple[str, np.ndarray]]:
        return self.model.named_buffers()

    @property
    def _batch_statistics(self) -> bool:
        return bool(self.model._batch_statistics)

    def penalty(self) -> float:
        """The L2 term of the current batch (0 without alpha)."""
        if self.alpha == 0.0:
            return 0.0
        s = 0.0
        for _, w, _, _, _ in self._terms:
            s += float(np.dot(w, w))
        return 0.5 * self.alpha * s / self._n

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._n = float(max(1, x.shape[0]))
        return self.model.forward(x)

    def weigh(self, sample_weight: np.ndarray) -> None:
        """The batch just forwarded has these sample weights: its L2 term is taken over
        their sum (scikit-learn's ``sw_sum``; fit skips batches whose sum is 0)."""
        self._n = float(sample_weight.sum())

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        dx = self.model.backward(dy, input_grad=input_grad)
        sq = self.model.grad_sqnorms()
        if self.alpha != 0.0:
            c = self.alpha / self._n
            for i, _, gv, tmp, g64 in self._terms:
                g = self._grads[i]
                np.multiply(self._params[i], g.dtype.type(c), out=tmp)
                g += tmp
                if g64 is None:  # float64: the gradient itself
                    sq[i] = float(np.dot(gv, gv))
                else:  # float32: squares summed in float64
                    np.copyto(g64, gv)
                    sq[i] = float(np.dot(g64, g64))
        self._sq = sq
        return dx

    def parameters(self) -> list[Any]:
        return self.model.parameters()

    def gradients(self) -> list[np.ndarray]:
        return self.model.gradients()

    def grad_sqnorms(self) -> np.ndarray:
        return self._sq if self._sq is not None else self.model.grad_sqnorms()

    def parameter_names(self) -> list[str]:
        return self.model.parameter_names()


def _flat(a: np.ndarray) -> np.ndarray:
    """``a`` as a 1-D view; ``a`` must be C-contiguous (as every array of
    :class:`fastclip.nn.MLP`), since a flattened copy would not see its updates."""
    if not a.flags.c_contiguous:
        raise ValueError("the L2 term needs C-contiguous parameter and gradient arrays")
    return a.reshape(-1)


def _check_real(v: Any, name: str, low: float, high: float = math.inf, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """``v`` as a finite float in the interval from ``low`` to ``high`` (each end
    closed unless said open; an infinite end is always open: inf is never allowed)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    f = float(v)
    ok = (f > low if low_open else f >= low) and (f < high if high_open else f <= high)
    if not (ok and math.isfinite(f)):
        lo = "(" if low_open or math.isinf(low) else "["
        hi = ")" if high_open or math.isinf(high) else "]"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}, got {f!r}")
    return f


def _own_monitor(monitor: Any) -> GradientMonitor | None:
    """The estimator's own monitor for the ``monitor`` parameter: a copy of a
    GradientMonitor (fit never changes its parameters, and every fresh fit starts
    from the same state), a new one for a policy name."""
    if monitor is None:
        return None
    if isinstance(monitor, str):
        return GradientMonitor(monitor)
    return copy.deepcopy(monitor)


class _Plan(NamedTuple):
    """What one call to ``fit`` or ``partial_fit`` trains on, prepared and checked
    before the estimator changes."""

    X: np.ndarray  # the training rows, in the model's dtype
    y: np.ndarray  # their targets, encoded for the loss
    X_val: np.ndarray | None  # early stopping: the held-out rows ...
    y_val: np.ndarray | None  # ... and their targets as given
    batch: int
    seed: int  # of the order of the rows
    monitor: Any
    epochs: int
    stopping: bool  # fit (convergence test, early stopping), not partial_fit
    sw: np.ndarray | None  # the training rows' sample weights (None: unweighted) ...
    sw_val: np.ndarray | None  # ... and the held-out rows' (weigh the validation score)


class _BaseMLP(BaseEstimator, metaclass=ABCMeta):
    """Shared machinery of the two estimators (not public)."""

    _classifier = False

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: Any = "auto",
        learning_rate_init: float = 0.001,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool | int = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        clip_norm: float | None = None,
        clip_value: float | None = None,
        schedule: Any = None,
        monitor: Any = None,
        batchnorm: bool = False,
        dropout: float = 0.0,
        dtype: Any = "float32",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.clip_norm = clip_norm
        self.clip_value = clip_value
        self.schedule = schedule
        self.monitor = monitor
        self.batchnorm = batchnorm
        self.dropout = dropout
        self.dtype = dtype

    # -- validation ------------------------------------------------------------------
    def _validate_params_(self) -> tuple[list[int], str]:
        h = self.hidden_layer_sizes
        if isinstance(h, numbers.Integral) and not isinstance(h, (bool, np.bool_)):
            hidden = [int(h)]
        elif isinstance(h, (Sequence, np.ndarray)) and not isinstance(h, (str, bytes)):
            hidden = list(h)
        else:
            raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got "
                            f"{type(h).__name__}")
        for i, s in enumerate(hidden):
            int_arg(s, f"hidden_layer_sizes[{i}]", 1)
        if not isinstance(self.activation, str) or self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(_ACTIVATIONS)}, got "
                             f"{self.activation!r}")
        if self.solver not in ("adam", "sgd"):
            raise ValueError(f"solver must be 'adam' or 'sgd', got {self.solver!r}")
        _check_real(self.alpha, "alpha", 0.0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            int_arg(self.batch_size, "batch_size", 1)
        _check_real(self.learning_rate_init, "learning_rate_init", 0.0, low_open=True)
        int_arg(self.max_iter, "max_iter", 1)
        _check_real(self.tol, "tol", 0.0)
        _check_real(self.momentum, "momentum", 0.0, 1.0)
        _check_real(self.validation_fraction, "validation_fraction", 0.0, 1.0, high_open=True)
        _check_real(self.beta_1, "beta_1", 0.0, 1.0, high_open=True)
        _check_real(self.beta_2, "beta_2", 0.0, 1.0, high_open=True)
        _check_real(self.epsilon, "epsilon", 0.0, low_open=True)
        int_arg(self.n_iter_no_change, "n_iter_no_change", 1)
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping",
                     "batchnorm"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        # scikit-learn's verbose: a bool or an int >= 0 (any value above 0 prints)
        v = self.verbose
        if not isinstance(v, (bool, np.bool_)):
            if not isinstance(v, numbers.Integral):
                raise TypeError(f"verbose must be a bool or an int >= 0, got {type(v).__name__}")
            if int(v) < 0:
                raise ValueError(f"verbose must be a bool or an int >= 0, got {int(v)}")
        for name in ("clip_norm", "clip_value"):
            v = getattr(self, name)
            if v is not None:
                _check_real(v, name, 0.0, low_open=True)
        if self.schedule is not None and not callable(self.schedule):
            raise TypeError(f"schedule must be a fastclip schedule (callable step -> lr) or "
                            f"None, got {type(self.schedule).__name__}")
        # the monitor is checked here, not first by fastclip.train.fit once the
        # estimator has changed
        resolve_monitor(self.monitor)
        _check_real(self.dropout, "dropout", 0.0, 1.0, high_open=True)
        try:
            dt = np.dtype(self.dtype)
        except TypeError:
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype!r}") from None
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        return [int(s) for s in hidden], _ACTIVATIONS[self.activation]

    # -- the network -----------------------------------------------------------------
    def _initialize(self, n_features: int, n_out: int, hidden: list[int], act: str,
                    rs: np.random.RandomState) -> None:
        self._model_args = {"sizes": [n_features, *hidden, n_out], "activation": act,
                            "init": "xavier_uniform", "batchnorm": bool(self.batchnorm),
                            "dropout": float(self.dropout), "dtype": np.dtype(self.dtype).name,
                            "rng": int(rs.randint(0, 2**31 - 1))}
        self._build()

    def _build(self) -> None:
        """The network, its loss adapter and the optimiser, from ``_model_args``
        and the current parameters."""
        self._model = _nn.MLP(**self._model_args)
        self._build_optimizer()

    def _build_optimizer(self) -> None:
        """The loss adapter (with ``alpha``) and a fresh optimiser over the model's
        parameters, from the current parameters of the estimator: every ``fit``
        with ``warm_start`` makes them anew, as scikit-learn does. The settings
        are kept (``_optim_args``): unpickling rebuilds the optimiser from them,
        whatever ``set_params`` changed since."""
        if self.solver == "adam":
            kind: dict[str, Any] = {"betas": (float(self.beta_1), float(self.beta_2)),
                                    "eps": float(self.epsilon)}
        else:
            mom = float(self.momentum)
            kind = {"momentum": mom, "nesterov": bool(self.nesterovs_momentum) and mom > 0}
        self._optim_args = {
            "solver": self.solver, "alpha": float(self.alpha),
            "lr": self.schedule if self.schedule is not None else float(self.learning_rate_init),
            "clip_norm": self.clip_norm, "clip_value": self.clip_value, **kind}
        self._make_optimizer()

    def _make_optimizer(self) -> None:
        """The loss adapter and the optimiser of ``_optim_args``."""
        args = dict(self._optim_args)
        self._net = _Penalised(self._model, args.pop("alpha"))
        make = _optim.Adam if args.pop("solver") == "adam" else _optim.SGD
        self._optimizer: Any = make(self._model.parameters(), **args)

    def _reset_progress(self) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_: list[float] = []
        self.best_loss_: float | None = None if self.early_stopping else math.inf
        self.validation_scores_: list[float] | None = [] if self.early_stopping else None
        self.best_validation_score_: float | None = -math.inf if self.early_stopping else None
        self._no_improvement_count = 0

    @property
    def coefs_(self) -> list[np.ndarray]:
        """The weight matrices, ``coefs_[i]`` of shape ``(n_in, n_out)`` (scikit-learn's
        layout); the model's own arrays."""
        check_is_fitted(self, "_model")
        return [p.data for n, p in zip(self._model.parameter_names(),
                                       self._model.parameters())
                if n.endswith(".weight") and ".bn." not in n]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """The bias vectors, ``intercepts_[i]`` of shape ``(n_out,)``."""
        check_is_fitted(self, "_model")
        return [p.data for n, p in zip(self._model.parameter_names(),
                                       self._model.parameters())
                if n.endswith(".bias") and ".bn." not in n]

    @property
    def model_(self) -> _nn.MLP:
        """The fitted :class:`fastclip.nn.MLP`."""
        check_is_fitted(self, "_model")
        return self._model

    @property
    def n_layers_(self) -> int:
        """Number of layers, input and output included (scikit-learn's count)."""
        check_is_fitted(self, "_model")
        return len(self._model.sizes)

    @property
    def n_outputs_(self) -> int:
        """Number of output units."""
        check_is_fitted(self, "_model")
        return int(self._model.sizes[-1])

    # -- training --------------------------------------------------------------------
    @abstractmethod
    def _loss(self) -> tuple[str, Callable[..., tuple[float, np.ndarray]]]:
        """The loss name and function (each estimator's own)."""

    @abstractmethod
    def _encode_y(self, y: np.ndarray) -> np.ndarray:
        """The targets as the loss takes them (class indices, or float rows)."""

    def _batch(self, n: int) -> int:
        if isinstance(self.batch_size, str):
            return min(200, n)
        b = int(self.batch_size)
        if b > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped", UserWarning, stacklevel=3)
        return max(1, min(b, n))

    def _prepare_run(self, X: np.ndarray, y: np.ndarray, rs: np.random.RandomState,
                     incremental: bool, sw: np.ndarray | None) -> _Plan:
        """Everything :func:`fastclip.train.fit` would check, checked before
        training: the data in the model's dtype, the early-stopping split (of
        the sample weights ``sw`` too), the batch size (no single-row batch
        with batch normalisation)."""
        stopping = not incremental
        # finite values beyond float32 are refused by name, for the held-out rows too
        X = cast_to_dtype(X, "X", np.dtype(self.dtype))
        X_val = y_val = sw_val = None
        if stopping and self.early_stopping:
            n, frac = X.shape[0], float(self.validation_fraction)
            strat = y if self._classifier else None
            try:
                if frac > 0 and sw is None:
                    X, X_val, y, y_val = train_test_split(X, y, random_state=rs,
                                                          test_size=frac, stratify=strat)
                elif frac > 0:
                    # the same split, the weights going with their rows (scikit-learn's)
                    X, X_val, y, y_val, sw, sw_val = train_test_split(
                        X, y, sw, random_state=rs, test_size=frac, stratify=strat)
            except ValueError as exc:  # e.g. fewer held-out rows than classes
                raise ValueError(f"validation_fraction={frac} cannot hold out a validation "
                                 f"set from {n} samples: {exc}") from None
            n_val = 0 if X_val is None else X_val.shape[0]
            if n_val < 2:
                # as scikit-learn: the score of one sample (R^2) is undefined
                raise ValueError(
                    f"The validation set is too small: validation_fraction={frac} of {n} "
                    f"samples holds {n_val}, and early stopping needs at least 2. Increase "
                    f"validation_fraction or the size of your dataset.")
            if sw is not None and not sw.any():
                raise ValueError("sample_weight is 0 on every row of the training split "
                                 "that early stopping leaves: nothing to train on")
        yt = self._encode_y(y)
        batch = self._batch(X.shape[0])
        if self.batchnorm:
            check_no_single_row_batch(X.shape[0], batch)
        seed = int(rs.randint(0, 2**31 - 1))
        return _Plan(X, yt, X_val, y_val, batch, seed, self.monitor_,
                     1 if incremental else int(self.max_iter), stopping, sw, sw_val)

    def _run(self, plan: _Plan) -> None:
        """The epochs of one call to ``fit`` or ``partial_fit`` (``plan`` checked)."""
        fit = _fit
        _, loss_fn = self._loss()
        X, yt, X_val, y_val, sw = plan.X, plan.y, plan.X_val, plan.y_val, plan.sw
        stopping, epochs = plan.stopping, plan.epochs
        # as scikit-learn's n_iter_: the epochs of this call (loss_curve_ and t_ go on)
        self.n_iter_ = 0
        if stopping:
            self._no_improvement_count = 0
        net = self._net
        n = X.shape[0]
        batch = plan.batch
        best: list[np.ndarray] | None = None
        converged = [False]

        n_batches = -(-n // batch)
        sizes = np.full(n_batches, batch, dtype=np.float64)
        sizes[-1] = n - (n_batches - 1) * batch

        def epoch_loss(hist: Any) -> float:
            """scikit-learn's epoch loss: the batch losses weighted by the batch sizes
            (a short last batch counts for its rows), over the applied steps."""
            ep = hist.epoch
            if not len(ep):
                return math.nan
            mine = ep == ep[-1]
            if int(mine.sum()) != n_batches:  # not the batches of one epoch: plain mean
                return float(hist.epoch_loss[-1]) if len(hist.epoch_loss) else math.nan
            w = sizes * hist.applied[mine]
            total = float(w.sum())
            return float(np.dot(hist.loss[mine], w) / total) if total > 0 else math.nan

        def after_epoch(epoch: int, hist: Any) -> bool:
            loss = epoch_loss(hist)
            self.n_iter_ += 1
            self.t_ += n
            self.loss_curve_.append(loss)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            nonlocal best
            if stopping and self.early_stopping:
                assert self.validation_scores_ is not None
                assert X_val is not None and y_val is not None
                score = float(self._score_arrays(X_val, y_val, plan.sw_val))
                self.validation_scores_.append(score)
                bvs = self.best_validation_score_
                assert bvs is not None
                if score < bvs + self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                if score > bvs:
                    self.best_validation_score_ = score
                    best = [p.data.copy() for p in self._model.parameters()]
            else:
                # the training-loss rule; partial_fit keeps best_loss_ up to date too,
                # as scikit-learn's does
                bl = self.best_loss_ if self.best_loss_ is not None else math.inf
                if loss > bl - self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                if loss < bl:
                    self.best_loss_ = loss
            if not stopping:  # partial_fit: one epoch, no convergence test
                return False
            if self._no_improvement_count > self.n_iter_no_change:
                converged[0] = True
                return True
            return False

        def loss_with_penalty(out: np.ndarray, target: np.ndarray,
                              sample_weight: np.ndarray | None = None) -> tuple[float, np.ndarray]:
            if sample_weight is None:
                lo, d = loss_fn(out, target)
            else:
                lo, d = loss_fn(out, target, sample_weight=sample_weight)
                net.weigh(sample_weight)
            return lo + net.penalty(), d

        seed = plan.seed
        order_rng = np.random.default_rng(seed)
        if self.shuffle:
            fit(net, X, yt, loss=loss_with_penalty, optimizer=self._optimizer, epochs=epochs,
                batch_size=batch, monitor=plan.monitor, callbacks=[after_epoch], progress=False,
                seed=order_rng, classification=self._classifier, sample_weight=sw)
        else:
            for e in range(epochs):
                # fit draws a permutation of the rows every epoch: hand it the rows
                # arranged so that this permutation gives them back in order
                perm = np.random.default_rng(seed + e).permutation(n)
                inv = np.empty_like(perm)
                inv[perm] = np.arange(n)
                fit(net, X[inv], yt[inv], loss=loss_with_penalty, optimizer=self._optimizer,
                    epochs=1, batch_size=batch, monitor=plan.monitor, callbacks=[after_epoch],
                    progress=False, seed=np.random.default_rng(seed + e),
                    classification=self._classifier,
                    sample_weight=None if sw is None else sw[inv])
                if converged[0]:
                    break
        self._model.eval()
        if stopping and self.early_stopping and best is not None:
            for p, b in zip(self._model.parameters(), best):
                np.copyto(p.data, b)
        if stopping and not converged[0]:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          f"and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=3)
        if stopping and self.early_stopping:
            self.best_loss_ = None

    def _forward(self, X: np.ndarray) -> np.ndarray:
        m = self._model
        m.eval()
        # validate_data checked that X is finite; in the model's dtype it must stay so
        X = cast_to_dtype(X, "X", np.dtype(m.dtype))
        out = np.empty((X.shape[0], int(m.out_features or 0)), dtype=np.float64)
        for s in range(0, X.shape[0], 4096):
            out[s:s + 4096] = m.forward(X[s:s + 4096])
        return out

    def _outputs(self, X: Any) -> np.ndarray:
        """The network's outputs (float64) for new data: a fitted estimator,
        ``X`` validated against the fit."""
        check_is_fitted(self, "_model")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self._forward(X)

    @abstractmethod
    def _predictions(self, out: np.ndarray) -> np.ndarray:
        """What :meth:`predict` returns for the network's outputs ``out``."""

    @abstractmethod
    def _score_arrays(self, X: np.ndarray, y: np.ndarray,
                      sample_weight: np.ndarray | None = None) -> float:
        """:meth:`score` of the held-out split of :meth:`fit` (early stopping),
        which :meth:`fit` validated: not validated again at every epoch. Weighted
        by the held-out rows' sample weights, as scikit-learn's validation score."""

    def _prepare_fit(self, X: Any, y: Any, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32),
                             multi_output=not self._classifier, y_numeric=not self._classifier)
        return X, y

    def _fit(self, X: Any, y: Any, incremental: bool, classes: Any = None,
             sample_weight: Any = None) -> Any:
        try:
            hidden, act = self._validate_params_()
        except (TypeError, ValueError) as exc:
            # as scikit-learn's own estimators: one exception type that is both a
            # ValueError and a TypeError, whichever a caller expects for a bad parameter
            raise InvalidParameterError(str(exc)) from None
        first = not (incremental or self.warm_start) or not hasattr(self, "_model")
        # a call that fails before training leaves the estimator as it was
        saved = dict(self.__dict__)
        try:
            X, y = self._prepare_fit(X, y, reset=first)
            sw = None
            if sample_weight is not None:
                # scikit-learn's checks and messages (shape, finite, not all 0), and >= 0
                sw = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                          ensure_non_negative=True)
            rs = check_random_state(self.random_state)
            if self._classifier:
                self._set_classes(y, first, incremental, classes)
            n_out = self._n_out(y)
            if first:
                self._initialize(X.shape[1], n_out, hidden, act, rs)
                self._reset_progress()
            elif n_out != self._model.out_features:
                raise ValueError(f"y has {n_out} outputs but the fitted model has "
                                 f"{self._model.out_features}")
            elif not incremental:
                # warm start: the weights stay, the optimiser and alpha follow the
                # current parameters (scikit-learn makes a new optimiser every fit)
                self._build_optimizer()
                if self.early_stopping and self.validation_scores_ is None:
                    # early stopping switched on since the last fit: its record starts now
                    self.validation_scores_ = []
                    self.best_validation_score_ = -math.inf
            last = self.__dict__.get("_monitor_param")
            if first or not (self.monitor is last or (isinstance(self.monitor, str)
                                                      and self.monitor == last)):
                # one monitor for all the steps of the fit, every epoch's included;
                # warm starts and partial_fit continue with it while the parameter stays
                self._monitor_param = self.monitor
                self.monitor_ = _own_monitor(self.monitor)
            plan = self._prepare_run(X, y, rs, incremental, sw)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        if incremental and not first:
            # partial_fit keeps its optimiser but takes the current alpha (set only
            # now: the loss adapter is not replaced, so a failed call must not touch it)
            self._net.alpha = float(self.alpha)
        self._run(plan)
        return self

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        """Fit the model to ``(X, y)`` for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) (or (n_samples, n_outputs) for
            the regressor)
        sample_weight : array-like of shape (n_samples,), optional
            Per-sample weights, finite, ``>= 0`` and not all 0, as
            scikit-learn's: each mini-batch's loss is the weighted mean of its
            rows' losses, its L2 term is taken over the sum of its weights
            instead of its size, and with ``early_stopping`` the held-out rows'
            weights weigh the validation score (``loss_curve_`` weighs the
            batches by their sizes, as scikit-learn's). A mini-batch whose
            weights are all 0 is skipped. None: every sample weighs 1.

        Returns
        -------
        self

        Raises
        ------
        TypeError, ValueError
            Bad parameters (named in the message) or data (non-finite values,
            values that overflow ``dtype``, mismatched lengths, too few
            samples). Everything is checked before training, and a call that
            raises changes nothing: a fitted estimator keeps its model and
            optimiser, a new one stays unfitted.
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    # -- pickling: the network and optimiser as plain arrays (rebuilt on load, so
    # that the model's internal views and writeable buffers are its own) --
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if "_model" in state:
            state["_fitted_state"] = (self._model.state_dict(), self._optimizer.state_dict(),
                                      self._model.training, self._net.alpha)
            for k in ("_model", "_net", "_optimizer"):
                del state[k]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        fitted = state.pop("_fitted_state", None)
        self.__dict__.update(state)
        if fitted is not None:
            # the network and optimiser of the fit, not of the current parameters
            self._model = _nn.MLP(**self._model_args)
            self._make_optimizer()
            sd, opt_sd, training, alpha = fitted
            self._net.alpha = alpha
            self._model.load_state_dict({k: np.array(v) for k, v in sd.items()})
            self._optimizer.load_state_dict(opt_sd)
            self._model.train(bool(training))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer-perceptron classifier with scikit-learn's interface, on
    fastclip's fused kernels.

    Trains ``sizes = (n_features, *hidden_layer_sizes, n_classes)`` with the
    softmax cross-entropy plus scikit-learn's L2 term ``alpha / (2 n) *
    sum ||W||^2`` per batch of n rows, Adam or SGD with (Nesterov) momentum,
    and scikit-learn's stopping rule: stop when the training loss (or, with
    ``early_stopping``, the validation accuracy) has not improved by ``tol``
    for more than ``n_iter_no_change`` epochs.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
    activation : {"relu", "tanh", "logistic", "identity", "leaky_relu", "prelu"}, default "relu"
        ``"logistic"`` (scikit-learn's name) is also accepted as ``"sigmoid"``.
    solver : {"adam", "sgd"}, default "adam"
    alpha : float, default 1e-4
        Strength of the L2 penalty of the weights (not of the biases).
    batch_size : int or "auto", default "auto"
        ``"auto"`` is ``min(200, n_samples)``; larger values are clipped.
    learning_rate_init : float, default 1e-3
        The constant learning rate when ``schedule`` is None.
    max_iter : int, default 200
        Maximum number of epochs.
    shuffle : bool, default True
        Shuffle the rows every epoch.
    random_state : None, int or numpy.random.RandomState
        Initial weights, shuffling, the validation split and dropout masks.
    tol : float, default 1e-4
    verbose : bool or int >= 0, default False
        Print the loss after every epoch (when true or above 0).
    warm_start : bool, default False
        Keep the fitted weights and optimiser state across calls to :meth:`fit`.
    momentum : float, default 0.9
        SGD momentum.
    nesterovs_momentum : bool, default True
        Nesterov momentum for SGD (when ``momentum > 0``).
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the data (stratified) and stop on
        its accuracy; the best weights are restored at the end.
    validation_fraction : float in [0, 1), default 0.1
        The share of the data held out for early stopping; it must hold at
        least two samples (and, for the classifier, one per class).
    beta_1, beta_2, epsilon : float, default 0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int, default 10
    clip_norm : float or None, default None
        Clip the global gradient norm to this value at every step (fused
        into the optimiser).
    clip_value : float or None, default None
        Clip every gradient element to ``[-clip_value, clip_value]``.
    schedule : fastclip schedule or callable, optional
        Learning rate as a function of the step (e.g.
        ``fastclip.schedules.warmup_cosine(...)``); replaces
        ``learning_rate_init``.
    monitor : {"raise", "skip", "rollback"}, fastclip.train.GradientMonitor or None
        Gradient-explosion monitor of :func:`fastclip.train.fit` (None: off).
        A policy name makes a new ``GradientMonitor(policy)``; a monitor
        object is copied, never changed. Either way the copy watches every
        step of the fit (``monitor_``).
    batchnorm : bool, default False
        Batch normalisation after every hidden affine layer.
    dropout : float, default 0.0
        Dropout probability after every hidden activation.
    dtype : {"float32", "float64"}, default "float32"
        The dtype the network computes in.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When X has string column names.
    loss_curve_ : list of float
        Mean training loss (L2 term included) of every epoch, of every call
        since the last fit that started afresh (warm-started fits and
        :meth:`partial_fit` append to it).
    n_iter_ : int
        Epochs run by the last call (scikit-learn's meaning): a warm-started
        ``fit`` counts its own epochs only and :meth:`partial_fit` sets 1.
    t_ : int
        Training samples seen by every call since the last fit that started
        afresh.
    best_loss_ : float or None
        Lowest training loss of ``loss_curve_`` since the last fit that started
        afresh, kept up to date by :meth:`partial_fit` too; None after a fit
        with early stopping (see ``best_validation_score_``).
    validation_scores_ : list of float or None
        Validation accuracy of every epoch run with early stopping.
    best_validation_score_ : float or None
    coefs_, intercepts_ : list of ndarray
        Weights ``(n_in, n_out)`` and biases of the affine layers.
    n_layers_, n_outputs_ : int
    model_ : fastclip.nn.MLP
        The network itself.
    monitor_ : fastclip.train.GradientMonitor or None
        The monitor that watched the training (its ``events`` are the flagged
        steps): made from ``monitor`` by every fit that starts afresh, and
        continued by warm-started fits and :meth:`partial_fit` while
        ``monitor`` stays the same.

    Examples
    --------
    >>> import numpy as np
    >>> from fastclip.sklearn import MLPClassifier
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 25)
    >>> y = np.array([0, 1, 1, 0] * 25)
    >>> clf = MLPClassifier((16,), learning_rate_init=0.05, max_iter=300, random_state=0)
    >>> clf.fit(X, y).predict([[0.0, 1.0], [1.0, 1.0]]).tolist()
    [1, 0]
    """

    _classifier = True

    def _loss(self) -> tuple[str, Callable[..., tuple[float, np.ndarray]]]:
        return "cross_entropy", _nn.softmax_cross_entropy

    def _set_classes(self, y: np.ndarray, first: bool, incremental: bool,
                     classes: Any = None) -> None:
        check_classification_targets(y)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D class labels (multilabel targets are not "
                             f"supported), got shape {y.shape}")
        if incremental and first:
            # the first partial_fit: every class of the problem comes from `classes`
            self.classes_ = unique_labels(np.asarray(classes))
        elif first:
            self.classes_ = unique_labels(y)
        present = unique_labels(y)
        unknown = np.setdiff1d(present, self.classes_)
        if len(unknown):
            if incremental or self.warm_start:
                what = "classes" if incremental and first else "classes_"
                raise ValueError(f"y has classes {unknown.tolist()} not in {what} "
                                 f"{self.classes_.tolist()}")
            self.classes_ = unique_labels(y)

    def _n_out(self, y: np.ndarray) -> int:
        return len(self.classes_)

    def _encode_y(self, y: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.classes_, y).astype(np.int64)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None,
                    classes: Any = None) -> MLPClassifier:
        """One epoch over ``(X, y)`` (no early stopping, no convergence test).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
            As for :meth:`fit`. Third, before ``classes``, as in
            scikit-learn 1.9: pass ``classes`` by keyword.
        classes : array-like of shape (n_classes,), optional
            Every class of the problem; required on the first call.

        Returns
        -------
        self
        """
        if not hasattr(self, "_model"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            unique_labels(np.asarray(classes))  # a valid set of labels
        elif classes is not None and not np.array_equal(unique_labels(np.asarray(classes)),
                                                        self.classes_):
            raise ValueError(f"classes {np.asarray(classes).tolist()} differ from classes_ "
                             f"{self.classes_.tolist()} of the earlier partial_fit")
        return self._fit(X, y, incremental=True, classes=classes, sample_weight=sample_weight)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (softmax of the network's output), float64.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        z = self._outputs(X)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log(predict_proba(X))``, computed stably."""
        z = self._outputs(X)
        z -= z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of every row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,), of the dtype of ``classes_``
        """
        return self._predictions(self._outputs(X))

    def _predictions(self, out: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(out, axis=1)]

    def _score_arrays(self, X: np.ndarray, y: np.ndarray,
                      sample_weight: np.ndarray | None = None) -> float:
        # ClassifierMixin.score: the accuracy of predict(X)
        return float(accuracy_score(y, self._predictions(self._forward(X)),
                                    sample_weight=sample_weight))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer-perceptron regressor with scikit-learn's interface, on
    fastclip's fused kernels.

    Same parameters and attributes as :class:`MLPClassifier` (without
    ``classes_`` and ``predict_proba``). The loss is scikit-learn's half
    squared error ``mean((y - f(x))**2) / 2`` plus the L2 term, with
    scikit-learn's gradient ``(f(x) - y) / n``; ``early_stopping`` stops on
    the validation R^2. The output layer is linear; ``y`` may have several
    columns.

    Examples
    --------
    >>> import numpy as np
    >>> from fastclip.sklearn import MLPRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, (500, 3))
    >>> y = X @ [1.0, -2.0, 0.5]
    >>> reg = MLPRegressor((32,), learning_rate_init=0.01, max_iter=200, random_state=0)
    >>> reg.fit(X, y).score(X, y) > 0.99
    True
    """

    def _loss(self) -> tuple[str, Callable[..., tuple[float, np.ndarray]]]:
        def half_mse(out: np.ndarray, target: np.ndarray,
                     sample_weight: np.ndarray | None = None) -> tuple[float, np.ndarray]:
            lo, d = _nn.mse(out, target, sample_weight)
            k = out.shape[1] if out.ndim == 2 else 1
            d *= d.dtype.type(0.5 * k)
            return 0.5 * lo, d

        return "mse", half_mse

    def _n_out(self, y: np.ndarray) -> int:
        return 1 if y.ndim == 1 else int(y.shape[1])

    def _encode_y(self, y: np.ndarray) -> np.ndarray:
        self._y_1d = y.ndim == 1
        # validate_data checked that y is finite; in the model's dtype it must stay so
        return cast_to_dtype(y, "y", np.dtype(self.dtype)).reshape(y.shape[0], -1)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over ``(X, y)`` (no early stopping, no convergence test).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional
            As for :meth:`fit`.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets, float64.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            1-D when ``y`` was 1-D at fit time.
        """
        return self._predictions(self._outputs(X))

    def _predictions(self, out: np.ndarray) -> np.ndarray:
        return out.ravel() if getattr(self, "_y_1d", False) else out

    def _score_arrays(self, X: np.ndarray, y: np.ndarray,
                      sample_weight: np.ndarray | None = None) -> float:
        # RegressorMixin.score: the R^2 of predict(X)
        return float(r2_score(y, self._predictions(self._forward(X)),
                              sample_weight=sample_weight))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

