"""fastclip.sklearn with sample_weight: against scikit-learn's own MLPs, early stopping,
partial_fit and bad weights."""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor
from sklearn.utils import check_random_state

from fastclip.sklearn import MLPClassifier, MLPRegressor


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_one_weighted_sgd_step_matches_scikit_learn(kind):
    """From the same weights, one full-batch SGD step with sample weights (one of them 0)
    and an L2 term gives scikit-learn's parameters and loss (float64)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 4))
    w = rng.random(10) * 3
    w[2] = 0.0
    if kind == "classifier":
        # three classes: scikit-learn's softmax output (two would be one logistic unit)
        y = np.array([0, 1, 2, 0, 1, 2, 2, 1, 0, 2])
        sk_cls, fc_cls = SkClassifier, MLPClassifier
    else:
        y = rng.standard_normal((10, 2))
        sk_cls, fc_cls = SkRegressor, MLPRegressor
    kw = dict(hidden_layer_sizes=(5,), activation="tanh", solver="sgd", momentum=0.0,
              learning_rate_init=0.1, alpha=0.3, max_iter=1, batch_size=10, shuffle=False,
              random_state=0, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = sk_cls(**kw).fit(X, y, sample_weight=w)  # builds the layers
        fc = fc_cls(**kw, dtype="float64").fit(X, y, sample_weight=w)
        coefs = [rng.standard_normal(c.shape) for c in sk.coefs_]
        intercepts = [rng.standard_normal(b.shape) for b in sk.intercepts_]
        sk.coefs_ = [c.copy() for c in coefs]
        sk.intercepts_ = [b.copy() for b in intercepts]
        for mine, theirs in zip(fc.coefs_ + fc.intercepts_, coefs + intercepts):
            np.copyto(mine, theirs)
        sk.fit(X, y, sample_weight=w)  # warm start: one step from these weights
        fc.fit(X, y, sample_weight=w)
    for mine, theirs, start in zip(fc.coefs_ + fc.intercepts_, sk.coefs_ + sk.intercepts_,
                                   coefs + intercepts):
        assert np.abs(theirs - start).max() > 1e-3  # the step moved them
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-12)
    assert abs(fc.loss_curve_[-1] - sk.loss_curve_[-1]) < 1e-12


def test_early_stopping_weighs_the_validation_score():
    """As scikit-learn 1.9: the weights are split with their rows and the held-out rows'
    weights weigh the validation score."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 3))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    w = rng.integers(0, 4, 60).astype(float)
    clf = MLPClassifier((8,), early_stopping=True, validation_fraction=0.3, max_iter=1,
                        random_state=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y, sample_weight=w)
    # the estimator's split: its random state after drawing the network's seed
    rs = check_random_state(0)
    rs.randint(0, 2**31 - 1)
    _, X_val, _, y_val, _, w_val = train_test_split(X, y, w, random_state=rs, test_size=0.3,
                                                    stratify=y)
    assert clf.validation_scores_[0] == clf.score(X_val, y_val, sample_weight=w_val)
    assert clf.score(X_val, y_val, sample_weight=w_val) != clf.score(X_val, y_val)


def test_partial_fit_takes_sample_weight():
    """partial_fit passes the weights on (weights of 1: the unweighted parameters, bit for
    bit; other weights: other parameters); sample_weight comes before classes, as in
    scikit-learn 1.9."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((40, 3))
    y = rng.integers(0, 3, 40)

    def run(sw):
        clf = MLPClassifier((6,), random_state=0, dtype="float64")
        clf.partial_fit(X, y, sw, classes=[0, 1, 2])
        return clf.coefs_

    for a, b in zip(run(None), run(np.ones(40))):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(run(None)[0], run(np.linspace(0, 2, 40))[0])
    reg = MLPRegressor((6,), random_state=0, dtype="float64")
    reg.partial_fit(X, X[:, 0], sample_weight=np.linspace(0, 2, 40))
    assert reg.n_iter_ == 1


@pytest.mark.parametrize("w, msg", [
    (-np.ones(30), "Negative values in data passed to `sample_weight`"),
    (np.zeros(30), "Sample weights must contain at least one non-zero number"),
    (np.ones(29), r"sample_weight.shape == \(29,\), expected \(30,\)"),
])
def test_bad_sample_weight_changes_nothing(w, msg):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 3))
    y = rng.integers(0, 2, 30)
    clf = MLPClassifier((4,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    before = [c.copy() for c in clf.coefs_]
    with pytest.raises(ValueError, match=msg):
        clf.fit(X, y, sample_weight=w)
    for a, b in zip(clf.coefs_, before):
        np.testing.assert_array_equal(a, b)


def test_weights_zero_on_the_whole_training_split_are_refused():
    """Early stopping holds out rows: weights that are 0 on every row left for training
    are refused before training."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((20, 2))
    y = rng.standard_normal(20)
    reg = MLPRegressor((4,), early_stopping=True, validation_fraction=0.5, random_state=0)
    rs = check_random_state(0)
    rs.randint(0, 2**31 - 1)
    _, _, _, _, _, idx_val = train_test_split(X, y, np.arange(20), random_state=rs,
                                                   test_size=0.5)
    w = np.zeros(20)
    w[idx_val] = 1.0
    with pytest.raises(ValueError, match="sample_weight is 0 on every row of the training"):
        reg.fit(X, y, sample_weight=w)
    assert "_model" not in reg.__dict__  # still unfitted
