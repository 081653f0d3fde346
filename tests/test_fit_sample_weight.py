"""fit(..., sample_weight=...): weighted batch losses, skipped zero-weight batches, checks."""

import math

import numpy as np
import pytest
from _testing import implementation_fixture

from fastclip import nn
from fastclip.optim import SGD
from fastclip.train import fit

impl = implementation_fixture("nn")


def _data(n=48, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, k, n)


def _fit(X, y, loss="cross_entropy", epochs=3, batch_size=16, **kw):
    out = 1 if loss == "mse" else 3
    model = nn.MLP([X.shape[1], 8, out], activation="tanh", dtype=np.float64, rng=0)
    hist = fit(model, X, y, loss=loss, optimizer=SGD(model.parameters(), lr=0.1, momentum=0.9),
               epochs=epochs, batch_size=batch_size, progress=False, seed=1, **kw)
    return [p.data.copy() for p in model.parameters()], hist


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_weights_of_one_train_as_no_weights(impl, loss):
    """Mini-batches, shuffled: weights of 1 give the same parameters, bit for bit, and the
    same losses as no weights."""
    X, y = _data()
    if loss == "mse":
        y = X[:, 0] - 0.5 * X[:, 1]
    p0, h0 = _fit(X, y, loss)
    p1, h1 = _fit(X, y, loss, sample_weight=np.ones(len(y), np.int64))
    for a, b in zip(p0, p1):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(h0.loss, h1.loss, rtol=1e-14)
    np.testing.assert_allclose(h0.epoch_loss, h1.epoch_loss, rtol=1e-14)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_integer_weights_repeat_rows(impl, loss):
    """Full batches: an integer weight trains as the row repeated that many times, a
    weight of 0 as the row removed (parameters and epoch losses)."""
    X, y = _data()
    if loss == "mse":
        y = X[:, 0] - 0.5 * X[:, 1]
    w = np.random.default_rng(5).integers(0, 4, len(y))
    w[0] = 0
    keep = np.repeat(np.arange(len(y)), w)
    pw, hw = _fit(X, y, loss, batch_size=len(y), sample_weight=w)
    pr, hr = _fit(X[keep], y[keep], loss, batch_size=len(keep))
    for a, b in zip(pw, pr):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(hw.epoch_loss, hr.epoch_loss, rtol=1e-12)


def test_weights_reach_a_callable_loss_and_weigh_the_epoch_loss():
    """A callable taking sample_weight gets each batch's weights (the rows of that batch);
    a batch whose weights are all 0 is skipped; the epoch loss weighs each batch by the
    sum of its weights."""
    X, y = _data(n=8)
    w = np.array([0.0, 2.0, 0.0, 1.0, 0.5, 0.0, 3.0, 0.0])
    seen = []

    def loss(out, target, sample_weight=None):
        seen.append(sample_weight.copy())
        return nn.softmax_cross_entropy(out, target, sample_weight=sample_weight)

    _, h = _fit(X, y, loss, epochs=2, batch_size=1, sample_weight=w, classification=True)
    # four rows weigh 0: four of the eight single-row batches of each epoch are skipped
    assert h.n_steps == 8 and len(seen) == 8
    assert all(s.shape == (1,) and s[0] > 0 for s in seen)
    assert sorted(float(s[0]) for s in seen[:4]) == [0.5, 1.0, 2.0, 3.0]
    for e in range(2):
        sums = np.array([s.sum() for s in seen[4 * e:4 * e + 4]])
        assert math.isclose(h.epoch_loss[e], np.dot(h.loss[4 * e:4 * e + 4], sums) / sums.sum(),
                            rel_tol=1e-14)


def test_a_loss_without_sample_weight_is_refused_by_name():
    X, y = _data()
    model = nn.MLP([5, 8, 3], dtype=np.float64, rng=0)
    before = [p.data.copy() for p in model.parameters()]

    def my_loss(out, target):
        return nn.softmax_cross_entropy(out, target)

    with pytest.raises(TypeError, match="'my_loss' takes no sample_weight keyword"):
        fit(model, X, y, loss=my_loss, sample_weight=np.ones(len(y)), progress=False,
            classification=True)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, b)

    def kw_loss(out, target, **kw):
        return nn.softmax_cross_entropy(out, target, **kw)

    h = fit(model, X, y, loss=kw_loss, sample_weight=np.ones(len(y)), epochs=1,
            progress=False, classification=True)
    assert h.n_steps == 2


@pytest.mark.parametrize("w, exc, msg", [
    (np.ones(47), ValueError, r"sample_weight must have shape \(48,\), one weight per row of X"),
    (np.ones((48, 1)), ValueError, r"shape \(48,\)"),
    (np.r_[np.ones(47), -1.0], ValueError, "finite and >= 0, got -1.0 at row 47"),
    (np.r_[np.nan, np.ones(47)], ValueError, "finite and >= 0, got nan at row 0"),
    (np.zeros(48), ValueError, "sample_weight must contain at least one non-zero weight"),
    (np.array(["a"] * 48), TypeError, "sample_weight must hold real numbers"),
    (np.ones(48, bool), TypeError, "sample_weight must hold real numbers"),
    ([[1.0], [1.0, 2.0]], TypeError, "sample_weight must be a 1-d array of numbers"),
])
def test_bad_sample_weight(w, exc, msg):
    X, y = _data()
    model = nn.MLP([5, 8, 3], dtype=np.float64, rng=0)
    before = [p.data.copy() for p in model.parameters()]
    with pytest.raises(exc, match=msg):
        fit(model, X, y, sample_weight=w, progress=False)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, b)


def test_sample_weight_with_privacy_is_refused():
    P = pytest.importorskip("fastclip.privacy")
    pytest.importorskip("dp_accounting")
    X, y = _data()
    model = nn.MLP([5, 8, 3], dtype=np.float64, rng=0)
    cfg = P.DPConfig(max_grad_norm=1.0, noise_multiplier=1.0, delta=1e-3)
    with pytest.raises(ValueError, match="sample_weight cannot be combined with privacy"):
        fit(model, X, y, sample_weight=np.ones(len(y)), privacy=cfg, progress=False)
