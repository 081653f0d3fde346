"""fastclip.sklearn: scikit-learn's own estimator checks, parity with
sklearn.neural_network on the same problems, fastclip's extra options."""

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.model_selection import train_test_split
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastclip import schedules
from fastclip.sklearn import MLPClassifier, MLPRegressor

# Small networks and few epochs keep the checks fast; every check runs.
_FAST = dict(max_iter=60, random_state=0)


def _expected_failed(estimator):
    return {}


# Parameters of single checks, as scikit-learn runs its own MLPs' (its
# PER_ESTIMATOR_CHECK_PARAMS): the weighted and the repeated fit are compared at
# rtol 1e-7, which float32 rounding (rows summed in another order) exceeds.
_CHECK_PARAMS = {"check_sample_weight_equivalence_on_dense_data": {"dtype": "float64"}}


@parametrize_with_checks([MLPClassifier(**_FAST), MLPRegressor(**_FAST)],
                         expected_failed_checks=_expected_failed)
def test_sklearn_estimator_checks(estimator, check):
    import warnings

    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning

    params = _CHECK_PARAMS.get(getattr(check, "func", check).__name__)
    if params:
        estimator = clone(estimator).set_params(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# ---------------------------------------------------------------------------
# behaviour
# ---------------------------------------------------------------------------
def _digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def test_classifier_matches_sklearn_accuracy_on_digits():
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP

    Xtr, Xte, ytr, yte = _digits()
    kw = dict(hidden_layer_sizes=(64,), max_iter=40, random_state=0, tol=0.0,
              n_iter_no_change=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(**kw).fit(Xtr, ytr)
        ref = SkMLP(**kw).fit(Xtr, ytr)
    assert ours.n_iter_ == ref.n_iter_ == 40
    assert len(ours.loss_curve_) == 40
    assert ours.loss_curve_[-1] < ours.loss_curve_[0]
    assert abs(ours.score(Xte, yte) - ref.score(Xte, yte)) < 0.03
    assert ours.score(Xte, yte) > 0.93
    p = ours.predict_proba(Xte)
    assert p.dtype == np.float64 and p.shape == (len(Xte), 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(ours.classes_[p.argmax(1)], ours.predict(Xte))
    np.testing.assert_allclose(np.exp(ours.predict_log_proba(Xte)), p, rtol=1e-10)
    assert [c.shape for c in ours.coefs_] == [c.shape for c in ref.coefs_]
    assert [b.shape for b in ours.intercepts_] == [b.shape for b in ref.intercepts_]


def test_l2_term_is_sklearns():
    # loss_curve_ of one full-batch epoch with no step taken yet: data loss + the
    # L2 term alpha / (2 n) * sum ||W||^2 (biases not penalised)
    from fastclip import nn

    X, y = make_classification(n_samples=64, n_features=5, random_state=0)
    clf = MLPClassifier((7,), alpha=3.0, batch_size=64, max_iter=1, learning_rate_init=1e-12,
                        dtype="float64", random_state=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    m = clf.model_
    out = m.eval()(X)
    data_loss, _ = nn.softmax_cross_entropy(np.array(out), y)
    l2 = sum(float((w ** 2).sum()) for w in clf.coefs_)
    assert clf.loss_curve_[0] == pytest.approx(data_loss + 3.0 / (2 * 64) * l2, rel=1e-8)


def test_partial_fit_warm_start_and_early_stopping():
    Xtr, Xte, ytr, yte = _digits()
    clf = MLPClassifier((32,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(Xtr, ytr)
    for _ in range(5):
        clf.partial_fit(Xtr, ytr, classes=np.arange(10))
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 5
    assert clf.score(Xte, yte) > 0.85
    es = MLPClassifier((32,), early_stopping=True, n_iter_no_change=3, max_iter=300,
                       random_state=0).fit(Xtr, ytr)
    assert es.n_iter_ < 300 and es.best_loss_ is None
    assert len(es.validation_scores_) == es.n_iter_
    assert max(es.validation_scores_) == es.best_validation_score_


def test_fastclip_options_clip_schedule_monitor_batchnorm_dropout():
    Xtr, Xte, ytr, yte = _digits()
    sched = schedules.warmup_cosine(init_value=0.0, peak_value=0.01, warmup_steps=20,
                                    decay_steps=400)
    for kw in [dict(clip_norm=1.0), dict(clip_value=0.05, solver="sgd",
                                         learning_rate_init=0.1),
               dict(schedule=sched), dict(monitor="skip"),
               dict(batchnorm=True, dropout=0.1, activation="tanh"),
               dict(activation="logistic", learning_rate_init=0.01)]:
        clf = MLPClassifier((32,), max_iter=30, random_state=0, **kw)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(Xtr, ytr)
        assert clf.score(Xte, yte) > 0.85, kw


def test_regressor_multioutput_and_pickle_round_trip():
    import pickle

    X, y = make_regression(n_samples=300, n_features=6, n_targets=2, noise=0.1,
                           random_state=0)
    y = y / y.std(axis=0)
    reg = MLPRegressor((32,), learning_rate_init=0.01, max_iter=150, random_state=0).fit(X, y)
    assert reg.predict(X).shape == (300, 2)
    assert reg.score(X, y) > 0.95
    back = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(back.predict(X), reg.predict(X))
    # the unpickled network trains on (its own buffers, gradients and state)
    back.set_params(warm_start=True, max_iter=2)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back.fit(X, y)
    assert back.n_iter_ == 2 and len(back.loss_curve_) == reg.n_iter_ + 2


@pytest.mark.parametrize("kw,exc,word", [
    ({"hidden_layer_sizes": (0,)}, ValueError, "hidden_layer_sizes"),
    ({"hidden_layer_sizes": "10"}, TypeError, "hidden_layer_sizes"),
    ({"activation": "softplus"}, ValueError, "activation"),
    ({"solver": "lbfgs"}, ValueError, "solver"),
    ({"alpha": -1.0}, ValueError, "alpha"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"learning_rate_init": 0.0}, ValueError, "learning_rate_init"),
    ({"max_iter": 0}, ValueError, "max_iter"),
    ({"validation_fraction": 1.0}, ValueError, "validation_fraction"),
    ({"clip_norm": -1.0}, ValueError, "clip_norm"),
    ({"schedule": 3}, TypeError, "schedule"),
    ({"dropout": 1.0}, ValueError, "dropout"),
    ({"dtype": "int32"}, TypeError, "dtype"),
    ({"early_stopping": "yes"}, TypeError, "early_stopping"),
    ({"verbose": -1}, ValueError, "verbose"),
    ({"verbose": 1.0}, TypeError, "verbose"),
    ({"verbose": "yes"}, TypeError, "verbose"),
])
def test_bad_parameters_are_named(kw, exc, word):
    """Named, and raised as scikit-learn's InvalidParameterError, which is both a
    ValueError and a TypeError (what scikit-learn's own estimators raise)."""
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = make_classification(n_samples=30, n_features=4, random_state=0)
    with pytest.raises(exc, match=word) as info:
        MLPClassifier(**kw).fit(X, y)
    assert isinstance(info.value, InvalidParameterError)
    with pytest.raises(ValueError, match=word):
        MLPRegressor(**kw).fit(X, y.astype(float))


def test_shuffle_false_visits_rows_in_order_and_is_deterministic():
    import warnings

    X, y = make_classification(n_samples=90, n_features=5, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = MLPClassifier((8,), shuffle=False, batch_size=30, max_iter=3, random_state=0,
                          dtype="float64").fit(X, y)
        b = MLPClassifier((8,), shuffle=False, batch_size=30, max_iter=3, random_state=5,
                          dtype="float64")
        b.set_params(random_state=0)
        b.fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    # by hand: the same initial network, batches of rows 0-29, 30-59, 60-89 in order
    from fastclip import nn, optim

    c = MLPClassifier((8,), shuffle=False, batch_size=30, max_iter=1, random_state=0,
                      dtype="float64", alpha=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c.fit(X[:0 + 90], y)
        m = nn.MLP(**{**c._model_args})
        o = optim.Adam([q.data for q in m.parameters()], lr=1e-3)
        for s in range(0, 90, 30):
            _, d = nn.softmax_cross_entropy(m(X[s:s + 30]), y[s:s + 30])
            m.backward(d, input_grad=False)
            o.step(m.gradients())
    for p, q in zip([q.data for q in c.model_.parameters()], [q.data for q in m.parameters()]):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)


def test_early_stopping_scores_without_validating_again():
    import warnings

    pd = pytest.importorskip("pandas")
    Xtr, Xte, ytr, yte = _digits()
    df = pd.DataFrame(Xtr, columns=[f"px{i}" for i in range(Xtr.shape[1])])
    Xr, yr = make_regression(n_samples=300, n_features=6, noise=0.1, random_state=0)
    dfr = pd.DataFrame(Xr, columns=[f"f{i}" for i in range(6)])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        clf = MLPClassifier((16,), early_stopping=True, max_iter=4, random_state=0).fit(df, ytr)
        reg = MLPRegressor((16,), early_stopping=True, max_iter=4, random_state=0).fit(dfr, yr)
    # the held-out split is scored as arrays: no feature-name warning at every epoch
    assert not [w for w in rec if "feature names" in str(w.message)]
    assert len(clf.validation_scores_) == 4 and len(reg.validation_scores_) == 4
    # what the epochs score is what score() gives
    assert clf._score_arrays(Xte, yte) == clf.score(pd.DataFrame(Xte, columns=df.columns), yte)
    assert reg._score_arrays(Xr, yr) == reg.score(dfr, yr)


def _small_problem(n=60, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.array([0, 1, 2] * (n // 3))
    return X, y


def test_first_partial_fit_rejects_labels_outside_classes_and_changes_nothing():
    """As scikit-learn: a label missing from ``classes`` is an error naming it, and
    the failed call fits nothing."""
    X, y = _small_problem()
    clf = MLPClassifier((8,), random_state=0)
    with pytest.raises(ValueError, match=r"y has classes \[1\] not in classes \[0, 2, 3\]"):
        clf.partial_fit(X, y, classes=[0, 2, 3])
    assert not hasattr(clf, "classes_") and not hasattr(clf, "n_features_in_")
    with pytest.raises(Exception, match="not fitted"):
        clf.predict(X)
    clf.partial_fit(X, y, classes=[0, 1, 2])  # the right classes then work
    assert clf.classes_.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"\[7\]"):
        clf.partial_fit(X, np.full(len(y), 7))
    assert clf.classes_.tolist() == [0, 1, 2]


def test_warm_start_fit_takes_the_current_optimiser_parameters():
    """scikit-learn makes a new optimiser at every fit: with warm_start the weights
    stay, but a new learning rate, solver or alpha applies."""
    X, y = _small_problem()
    clf = MLPClassifier((8,), max_iter=5, warm_start=True, random_state=0).fit(X, y)
    before = [w.copy() for w in clf.coefs_]
    with pytest.warns(Warning):
        clf.set_params(solver="sgd", learning_rate_init=1e-12, alpha=0.5,
                       momentum=0.0).fit(X, y)
    assert type(clf._optimizer).__name__ == "SGD" and clf._net.alpha == 0.5
    moved = max(float(np.abs(a - b).max()) for a, b in zip(clf.coefs_, before))
    assert moved < 1e-9


def test_predict_rejects_data_that_overflow_a_float32_model():
    """A finite float64 value beyond float32's range is an error at predict time, as
    at fit time, not a row of NaN probabilities."""
    X, y = _small_problem()
    clf = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, y)
    Xh = X[:3].copy()
    Xh[0, 0] = 1e39
    for method in (clf.predict, clf.predict_proba, clf.predict_log_proba):
        with pytest.raises(ValueError, match="overflows"):
            method(Xh)
    f64 = MLPClassifier((8,), max_iter=5, random_state=0, dtype="float64").fit(X, y)
    assert np.isfinite(f64.predict_proba(Xh)).all()


def test_loss_curve_weights_batches_by_their_size():
    """scikit-learn's epoch loss weights each batch by its rows: with weights that do
    not move, it is the loss of the whole data set (50 rows in batches 16, 16, 16, 2;
    the plain mean of the four batch losses differs)."""
    from sklearn.metrics import log_loss
    X, y = _small_problem(n=51)
    X, y = X[:50], y[:50]
    clf = MLPClassifier((8,), max_iter=1, batch_size=16, shuffle=False, alpha=0.0,
                        solver="sgd", momentum=0.0, learning_rate_init=1e-300,
                        dtype="float64", random_state=0)
    with pytest.warns(Warning):
        clf.fit(X, y)
    want = log_loss(y, clf.predict_proba(X), labels=clf.classes_)
    assert clf.loss_curve_[0] == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("verbose,prints", [(0, False), (1, True), (2, True), (np.int64(1), True),
                                            (False, False), (True, True)])
def test_verbose_takes_ints_as_sklearn(verbose, prints, capsys):
    """As scikit-learn: verbose is a bool or an int >= 0, and any value above 0 prints."""
    X, y = _small_problem()
    with pytest.warns(Warning):
        MLPClassifier((8,), max_iter=2, verbose=verbose, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert ("Iteration 2, loss = " in out) == prints


@pytest.mark.parametrize("name,low", [("learning_rate_init", "(0.0"), ("alpha", "[0.0"),
                                      ("tol", "[0.0"), ("epsilon", "(0.0"),
                                      ("clip_norm", "(0.0"), ("clip_value", "(0.0")])
def test_infinite_parameters_are_rejected_by_name(name, low):
    """inf is outside every real parameter's range, and the message says so (the
    range is open at inf) and names the parameter, not the optimiser's argument."""
    X, y = _small_problem()
    with pytest.raises(ValueError, match=rf"^{name} must be in \{low}, inf\), got inf$"):
        MLPClassifier((8,), max_iter=2, **{name: np.inf}).fit(X, y)


def _same(a, b):
    """a and b equal, recursively through dicts, lists and arrays."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_same(x, z) for x, z in zip(a, b)))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b, equal_nan=True)
    return a is b or a == b or (a != a and b != b)


def _snapshot(est):
    """Everything a call to fit could change: the attributes (as objects), the
    weights and buffers, the optimiser's state and the loss adapter's alpha."""
    import copy

    d = dict(vars(est))
    if "_model" not in d:
        return d, None
    return d, (copy.deepcopy(est._model.state_dict()),
               copy.deepcopy(est._optimizer.state_dict()), est._net.alpha)


def _assert_unchanged(est, snap):
    d, fitted = snap
    assert vars(est).keys() == d.keys()
    for k, v in d.items():
        assert vars(est)[k] is v, k
    if fitted is not None:
        assert _same(est._model.state_dict(), fitted[0])
        assert _same(est._optimizer.state_dict(), fitted[1])
        assert est._net.alpha == fitted[2]


def _bad_calls():
    X, y = _small_problem(n=63)
    X60, y60 = X[:60], y[:60]
    Xbig = X60.copy()
    Xbig[5, 1] = 1e39
    return [  # (parameters to set, X, y, exception, message)
        (dict(monitor="bogus"), X60, y60, ValueError, "monitor"),
        (dict(monitor=3), X60, y60, TypeError, "monitor"),
        (dict(alpha=0.5), Xbig, y60, ValueError, "X holds 1e.39 .* overflows"),
        # 61 rows in batches of 20 leave one row for batch normalisation
        (dict(alpha=0.5), X[:61], y[:61], ValueError, "batch_size=20 leaves a last batch"),
    ]


@pytest.mark.parametrize("call", ["fit", "warm_start", "partial_fit"])
@pytest.mark.parametrize("case", range(4))
def test_failed_call_leaves_the_fitted_estimator_as_it_was(call, case):
    """A call that fails its checks (including those fastclip.train.fit would make)
    changes nothing: not the network, not the optimiser, not an attribute."""
    import warnings

    set_kw, X, y, exc, msg = _bad_calls()[case]
    clf = MLPClassifier((8,), max_iter=5, batch_size=20, batchnorm=True, random_state=0,
                        warm_start=call == "warm_start")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(*_small_problem())
    X0 = _small_problem()[0]
    proba = clf.predict_proba(X0)
    clf.set_params(**set_kw)
    snap = _snapshot(clf)
    with pytest.raises(exc, match=msg):
        if call == "partial_fit":
            clf.partial_fit(X, y)
        else:
            clf.fit(X, y)
    _assert_unchanged(clf, snap)
    np.testing.assert_array_equal(clf.predict_proba(X0), proba)


@pytest.mark.parametrize("case", range(4))
def test_failed_first_fit_leaves_the_estimator_unfitted(case):
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    set_kw, X, y, exc, msg = _bad_calls()[case]
    for call in ("fit", "partial_fit"):
        clf = MLPClassifier((8,), max_iter=5, batch_size=20, batchnorm=True, random_state=0,
                            **set_kw)
        params = dict(vars(clf))
        with pytest.raises(exc, match=msg):
            if call == "fit":
                clf.fit(X, y)
            else:
                clf.partial_fit(X, y, classes=[0, 1, 2])
        assert vars(clf) == params
        with pytest.raises(NotFittedError):
            check_is_fitted(clf)


@pytest.mark.parametrize("shape", [(60,), (60, 2)])
def test_regressor_rejects_targets_that_overflow_a_float32_model(shape):
    """A finite y beyond float32's range is refused as an overflow of the model's
    dtype (as X is), not reported as an infinite value, and changes nothing."""
    import warnings

    X, _ = _small_problem()
    y = np.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape)
    reg = MLPRegressor((8,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, y)
    snap = _snapshot(reg)
    yb = y.copy()
    yb[50] = 1e39
    where = "row 50" if len(shape) == 1 else "row 50, column 0"
    with pytest.raises(ValueError, match=f"^y holds 1e\\+39 at {where}, which overflows the "
                                         f"model's dtype float32"):
        reg.fit(X, yb)
    _assert_unchanged(reg, snap)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isfinite(MLPRegressor((8,), max_iter=3, random_state=0, dtype="float64")
                           .fit(X, yb).predict(X)).all()


@pytest.mark.parametrize("Est,n,frac,n_val", [(MLPRegressor, 10, 0.1, 1),
                                              (MLPRegressor, 10, 0.0, 0),
                                              (MLPClassifier, 30, 0.0, 0)])
def test_early_stopping_refuses_a_validation_set_under_two_samples(Est, n, frac, n_val):
    """As scikit-learn: early stopping on fewer than two held-out samples (whose
    R^2 is NaN) is an error naming validation_fraction, raised before anything
    changes; validation_fraction=0 is fine without early stopping."""
    import warnings

    X, y = _small_problem(n=30)
    X, y = X[:n], y[:n]
    est = Est((8,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
        Est((8,), max_iter=3, random_state=0, validation_fraction=frac).fit(X, y)
    est.set_params(early_stopping=True, validation_fraction=frac)
    snap = _snapshot(est)
    with pytest.raises(ValueError, match=rf"^The validation set is too small: "
                                         rf"validation_fraction={frac} of {n} samples holds "
                                         rf"{n_val}, .* Increase validation_fraction"):
        est.fit(X, y)
    _assert_unchanged(est, snap)


def test_early_stopping_split_errors_name_validation_fraction():
    """A held-out share too small to hold every class (scikit-learn's stratified
    split refuses it) is reported as a problem of validation_fraction."""
    X, y = _small_problem(n=30)
    with pytest.raises(ValueError, match=r"^validation_fraction=0.05 cannot hold out a "
                                         r"validation set from 30 samples: .*classes"):
        MLPClassifier((8,), early_stopping=True, validation_fraction=0.05).fit(X, y)


def test_warm_start_can_switch_early_stopping_on_and_off():
    """A warm-started fit may turn early stopping on after fits without it (its
    validation record starts then) and off again (the training-loss rule then
    applies)."""
    import warnings

    Xtr, Xte, ytr, yte = _digits()
    clf = MLPClassifier((16,), max_iter=3, learning_rate_init=0.01, warm_start=True,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(Xtr, ytr)
        assert clf.validation_scores_ is None and clf.best_validation_score_ is None
        clf.set_params(early_stopping=True, max_iter=4).fit(Xtr, ytr)
        assert len(clf.validation_scores_) == 4 and clf.best_loss_ is None
        assert clf.best_validation_score_ == max(clf.validation_scores_)
        assert len(clf.loss_curve_) == 7
        clf.set_params(early_stopping=False, max_iter=2).fit(Xtr, ytr)
    assert len(clf.loss_curve_) == 9 and clf.best_loss_ == min(clf.loss_curve_[-2:])
    assert clf.score(Xte, yte) > 0.8


def test_monitor_parameter_is_copied_not_changed():
    """fit never changes its monitor parameter: each fresh fit watches with a copy
    of it, so two identical fits are identical; a warm start continues the copy."""
    import warnings

    from fastclip.train import GradientMonitor

    X, y = _small_problem()
    mon = GradientMonitor("skip", warmup=2, window=4, factor=1.2, max_consecutive_errors=50)
    before = mon.state_dict()
    fits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):
            clf = MLPClassifier((8,), max_iter=6, batch_size=10, monitor=mon, random_state=0,
                                dtype="float64", warm_start=True)
            fits.append(clf.fit(X, y))
        assert _same(mon.state_dict(), before) and not mon.events
        a, b = fits
        assert a.monitor_ is not mon and a.monitor_ is not b.monitor_
        assert a.monitor_.events  # the settings above flag steps ...
        assert [(e.step, e.kind) for e in a.monitor_.events] == [
            (e.step, e.kind) for e in b.monitor_.events]  # ... the same in both fits
        np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
        own, n_events = a.monitor_, len(a.monitor_.events)
        a.set_params(max_iter=2).fit(X, y)  # warm start: the same monitor goes on
        assert a.monitor_ is own and len(own.events) >= n_events
        a.set_params(warm_start=False).fit(X, y)  # a fresh fit: a fresh copy
        assert a.monitor_ is not own
    assert _same(mon.state_dict(), before)


@pytest.mark.parametrize("shuffle", [True, False])
def test_one_monitor_watches_every_epoch(shuffle):
    """With a policy name the fit makes one GradientMonitor for all its steps, with
    or without shuffling (each epoch's steps are not watched by a new monitor)."""
    import warnings

    X, y = _small_problem()
    clf = MLPClassifier((8,), max_iter=15, batch_size=20, monitor="skip", shuffle=shuffle,
                        tol=0.0, n_iter_no_change=100, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    seen = len(clf.monitor_.state_dict()["norms"]) + len(clf.monitor_.events)
    assert seen == 15 * 3


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_n_iter_and_best_loss_mean_what_they_mean_in_sklearn(Est):
    """n_iter_ counts the epochs of the last call (warm start: 7 then 7; partial_fit:
    1 each call) while loss_curve_ and t_ go on; partial_fit updates best_loss_. The
    same as scikit-learn's own estimator on the same calls."""
    import warnings

    from sklearn import neural_network

    Sk = getattr(neural_network, Est.__name__)
    X, y = _small_problem()
    kw = dict(hidden_layer_sizes=(8,), max_iter=7, tol=0.0, n_iter_no_change=100,
              random_state=0)
    extra = {"classes": [0, 1, 2]} if Est is MLPClassifier else {}
    seen = {}
    for E in (Est, Sk):
        runs = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ws = E(warm_start=True, **kw)
            for _ in range(2):
                ws.fit(X, y)
                runs.append(("fit", ws.n_iter_, len(ws.loss_curve_), ws.t_,
                             ws.best_loss_ == min(ws.loss_curve_)))
            pf = E(**kw)
            for _ in range(3):
                pf.partial_fit(X, y, **extra)
                runs.append(("partial_fit", pf.n_iter_, len(pf.loss_curve_), pf.t_,
                             pf.best_loss_ == min(pf.loss_curve_)))
        seen[E] = runs
    assert seen[Est] == [("fit", 7, 7, 420, True), ("fit", 7, 14, 840, True),
                         ("partial_fit", 1, 1, 60, True), ("partial_fit", 1, 2, 120, True),
                         ("partial_fit", 1, 3, 180, True)]
    assert seen[Est] == seen[Sk]


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_copy_after_set_params_keeps_the_fitted_network_and_optimiser(how):
    """Pickling or deep-copying a fitted estimator whose parameters changed since
    (solver, learning rate, alpha, ...) rebuilds the optimiser of the fit: the copy
    predicts and trains on as the original."""
    import copy
    import pickle
    import warnings

    X, y = _small_problem()
    clf = MLPClassifier((8,), max_iter=5, random_state=0, alpha=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    clf.set_params(solver="sgd", learning_rate_init=0.5, alpha=0.3, beta_1=0.5)
    back = pickle.loads(pickle.dumps(clf)) if how == "pickle" else copy.deepcopy(clf)
    assert type(back._optimizer) is type(clf._optimizer) and back._net.alpha == 1e-3
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    for est in (clf, back):  # partial_fit goes on with the optimiser of the fit
        est.partial_fit(X, y)
    assert _same(back._model.state_dict(), clf._model.state_dict())
    assert _same(back._optimizer.state_dict(), clf._optimizer.state_dict())
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
