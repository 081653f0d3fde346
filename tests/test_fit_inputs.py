"""fit: data that overflow the model's dtype, History kept on any exception, explicit
classification losses, large unsigned labels, and no input gradient in training."""

import functools

import numpy as np
import pytest
from _fake_model import FakeMLP, SpyMLP

import fastclip
from fastclip import nn, optim
from fastclip.train import History, fit


def blobs(n=120, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    return centers[y] + rng.standard_normal((n, d)), y


def _snapshot(model):
    return [np.array(p, copy=True) for p in model.parameters()]


def _unchanged(model, before):
    return all(np.array_equal(a, b) for a, b in zip(model.parameters(), before))


# ---------------------------------------------------------------------------
# values that overflow the model's dtype
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["c", "python"])
def test_float64_data_overflowing_float32_are_rejected(impl):
    X, y = blobs()
    X[7, 4] = 1e300
    with fastclip.use_implementation(impl):
        model = nn.MLP([6, 8, 3], rng=0, dtype=np.float32)
        before = _snapshot(model)
        with pytest.raises(ValueError, match=r"X holds 1e\+300 at row 7, column 4.*float32"):
            fit(model, X, y, epochs=1, progress=False)
        assert _unchanged(model, before)
        X[7, 4] = -4e38  # just past float32's range, negative
        with pytest.raises(ValueError, match=r"X holds -4e\+38 at row 7, column 4"):
            fit(model, X, y, epochs=1, progress=False)
        X[7, 4] = 3e38  # within float32's range: accepted
        fit(model, X, y, epochs=1, progress=False, monitor=None,
            optimizer=optim.SGD(model.parameters(), 1e-30))


def test_overflowing_validation_and_targets_are_rejected():
    X, y = blobs()
    model = nn.MLP([6, 8, 3], rng=0, dtype=np.float32)
    Xv = X[:10].copy()
    Xv[2, 1] = -1e100
    with pytest.raises(ValueError, match=r"validation\[0\] holds -1e\+100 at row 2, column 1"):
        fit(model, X, y, validation=(Xv, y[:10]), epochs=1, progress=False)
    reg = nn.MLP([6, 8, 2], rng=0, dtype=np.float32)
    t = np.zeros((len(X), 2))
    t[5, 1] = 1e39
    with pytest.raises(ValueError, match=r"y holds 1e\+39 at row 5, column 1"):
        fit(reg, X, t, loss="mse", epochs=1, progress=False)
    # a float64 model takes the same values (they are finite in its dtype)
    reg64 = nn.MLP([6, 8, 2], rng=0, dtype=np.float64)
    h = fit(reg64, X[:4], t[:4], loss="mse", epochs=1, progress=False,
            optimizer=optim.SGD(reg64.parameters(), 0.0))
    assert h.n_steps == 1


# ---------------------------------------------------------------------------
# the History travels with any exception
# ---------------------------------------------------------------------------


def test_keyboard_interrupt_keeps_the_history():
    X, y = blobs()
    model = FakeMLP([6, 8, 3])

    def stop_after_two(epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as ei:
        fit(model, X, y, loss=nn.softmax_cross_entropy, epochs=5, batch_size=30,
            callbacks=[stop_after_two], progress=False,
            optimizer=optim.SGD(model.parameters(), 0.1))
    h = ei.value.history
    assert isinstance(h, History)
    assert h.n_epochs == 2 and h.n_steps == 8
    assert np.isfinite(h.loss).all()


@pytest.mark.parametrize("impl", ["c", "python"])
def test_an_error_in_the_loss_keeps_the_steps_done(impl):
    X, y = blobs()
    calls = {"n": 0}

    def flaky(out, target):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("disk full")
        return nn.softmax_cross_entropy(out, target)

    with fastclip.use_implementation(impl):
        model = nn.MLP([6, 8, 3], rng=0, dtype=np.float64)
        with pytest.raises(RuntimeError, match="disk full") as ei:
            fit(model, X, y, loss=flaky, classification=True, epochs=3, batch_size=20,
                progress=False)
    assert ei.value.history.n_steps == 6
    assert list(ei.value.history.step) == list(range(6))


# ---------------------------------------------------------------------------
# classification decided explicitly
# ---------------------------------------------------------------------------


def test_partial_of_softmax_cross_entropy_takes_class_labels():
    X, y = blobs()
    runs = []
    for loss in (nn.softmax_cross_entropy, functools.partial(nn.softmax_cross_entropy),
                 "cross_entropy"):
        model = nn.MLP([6, 8, 3], rng=0, dtype=np.float64)
        h = fit(model, X, y, loss=loss, validation=(X, y), epochs=2, seed=0, progress=False)
        runs.append(h)
    for h in runs[1:]:
        np.testing.assert_array_equal(h.loss, runs[0].loss)
        assert np.isfinite(h.val_accuracy).all()


def test_classification_argument_and_attribute():
    X, y = blobs()

    def my_ce(out, target):
        return nn.softmax_cross_entropy(out, target)

    model = nn.MLP([6, 8, 3], rng=0, dtype=np.float64)
    # without the flag a custom name is a regression loss: labels must then be (n, 3)
    with pytest.raises(ValueError, match=r"y must have shape \(120, 3\)"):
        fit(model, X, y, loss=my_ce, epochs=1, progress=False)
    h = fit(model, X, y, loss=my_ce, classification=True, validation=(X, y), epochs=1,
            progress=False)
    assert np.isfinite(h.val_accuracy).all()
    my_ce.classification = True
    h = fit(model, X, y, loss=functools.partial(my_ce), validation=(X, y), epochs=1,
            progress=False)
    assert np.isfinite(h.val_accuracy).all()
    # classification=False beats the loss's own attribute: accuracy is not reported
    onehot = np.eye(3)[y]
    h = fit(model, X, onehot, loss=nn.softmax_cross_entropy, classification=False,
            validation=(X, onehot), epochs=1, progress=False)
    assert np.isnan(h.val_accuracy).all()


def test_bad_classification_argument():
    X, y = blobs()
    model = nn.MLP([6, 8, 3], rng=0, dtype=np.float64)
    before = _snapshot(model)
    with pytest.raises(TypeError, match="classification must be None, True or False"):
        fit(model, X, y, classification="yes", progress=False)
    with pytest.raises(ValueError, match="classification=True contradicts loss='mse'"):
        fit(model, X, np.zeros((len(X), 3)), loss="mse", classification=True, progress=False)
    assert _unchanged(model, before)


# ---------------------------------------------------------------------------
# labels reported as they are
# ---------------------------------------------------------------------------


def test_uint64_label_out_of_range_is_reported_unsigned():
    X, _ = blobs()
    y = np.zeros(len(X), dtype=np.uint64)
    y[9] = 2**63
    model = nn.MLP([6, 8, 3], rng=0, dtype=np.float64)
    with pytest.raises(ValueError, match=r"y\[9\] is 9223372036854775808, not a class label"):
        fit(model, X, y, progress=False)
    y[9] = 2**64 - 1
    with pytest.raises(ValueError, match=r"y\[9\] is 18446744073709551615,"):
        fit(model, X, y, progress=False)
    y[9] = 2
    fit(model, X, y, epochs=1, progress=False)  # in range: trains


def test_negative_and_float_labels_still_reported():
    X, y = blobs()
    model = nn.MLP([6, 8, 3], rng=0, dtype=np.float64)
    y = y.astype(np.int64)
    y[3] = -1
    with pytest.raises(ValueError, match=r"y\[3\] is -1, not a class label in \[0, 3\)"):
        fit(model, X, y, progress=False)
    yf = y.astype(np.float64)
    yf[3] = 7.0
    with pytest.raises(ValueError, match=r"y\[3\] is 7, not a class label"):
        fit(model, X, yf, progress=False)


# ---------------------------------------------------------------------------
# no input gradient during training
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["c", "python"])
def test_fit_skips_the_input_gradient(impl):
    X, y = blobs()
    with fastclip.use_implementation(impl):
        model = SpyMLP([6, 8, 3], rng=0, dtype=np.float64)
        fit(model, X, y, epochs=1, batch_size=40, progress=False,
            optimizer=optim.SGD(model.parameters(), 0.1, clip_norm=1.0))
    assert model.input_grads == [False, False, False]


def test_batchnorm_model_refuses_a_one_row_last_batch_before_training():
    """The check comes before the first step, so the model is unchanged, and the
    message names batch_size."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((33, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    m = nn.MLP([4, 8, 2], batchnorm=True, rng=0)
    before = {k: v.copy() for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match="batch_size=16 leaves a last batch of one row"):
        fit(m, X, y, epochs=1, batch_size=16, progress=False, seed=0)
    for k, v in m.state_dict().items():
        assert np.array_equal(before[k], v), k
    fit(m, X[:32], y[:32], epochs=1, batch_size=16, progress=False, seed=0)
    fit(nn.MLP([4, 8, 2], rng=0), X, y, epochs=1, batch_size=16, progress=False, seed=0)


@pytest.mark.parametrize("policy", ["skip", "rollback", "raise"])
def test_flagged_step_does_not_keep_its_batchnorm_statistics(policy):
    """A flagged step is not applied: the running statistics its forward pass
    wrote (inf and NaN from a huge input) go back to those of the last applied step,
    so the model still evaluates to finite outputs."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    X2 = X.copy()
    X2[3] = 3e38
    m = nn.MLP([4, 8, 2], batchnorm=True, rng=0)
    if policy == "raise":
        with pytest.raises(fastclip.GradientExplosionError):
            fit(m, X2, y, epochs=1, batch_size=8, progress=False, seed=0, monitor=policy)
    else:
        h = fit(m, X2, y, epochs=1, batch_size=8, progress=False, seed=0, monitor=policy,
                validation=(X, y))
        assert not h.applied.all() and np.isfinite(h.val_loss).all()
    for name, b in m.named_buffers():
        assert np.isfinite(b).all(), name
    m.eval()
    assert np.isfinite(m.forward(X)).all()


def test_fit_argument_errors_name_the_argument():
    """A single callable for callbacks, a negative seed and a torch optimiser are
    errors naming the argument, raised before any step."""
    X = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    m = nn.MLP([4, 8, 2], rng=0)
    before = [p.data.copy() for p in m.parameters()]
    with pytest.raises(TypeError, match=r"callbacks must be a sequence of callables; wrap"):
        fit(m, X, y, epochs=1, progress=False, callbacks=lambda e, h: False)
    with pytest.raises(TypeError, match="callbacks must be a sequence"):
        fit(m, X, y, epochs=1, progress=False, callbacks=3)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        fit(m, X, y, epochs=1, progress=False, seed=-1)
    torch = pytest.importorskip("torch")
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(TypeError, match="optimizer must be a fastclip.optim optimiser"):
        fit(m, X, y, epochs=1, progress=False, optimizer=topt)
    for p, b in zip(m.parameters(), before):
        assert np.array_equal(p.data, b)
    fit(m, X, y, epochs=1, progress=False, callbacks=None)


def test_batch_norm_with_batch_size_one_is_refused_before_training():
    """batch_size=1 leaves n % batch_size == 0, yet every batch has one row."""
    X, y = blobs(n=20)
    m = nn.MLP([6, 4, 3], batchnorm=True, rng=0)
    before = _snapshot(m)
    with pytest.raises(ValueError, match="batch_size=1"):
        fit(m, X, y, batch_size=1, progress=False)
    _unchanged(m, before)


def test_validation_length_mismatch_names_both_validation_arrays():
    X, y = blobs(n=10)
    with pytest.raises(ValueError, match=r"validation\[1\] has 5 rows but validation\[0\] has 8"):
        fit(nn.MLP([6, 4, 3], rng=0), X, y, validation=(X[:8], np.zeros(5, int)),
            progress=False)


@pytest.mark.parametrize("kw,name", [({"progress": "yes"}, "progress"),
                                     ({"progress": None}, "progress"),
                                     ({"desc": 5}, "desc")])
def test_progress_and_desc_are_checked(kw, name):
    X, y = blobs(n=10)
    m = nn.MLP([6, 4, 3], rng=0)
    before = _snapshot(m)
    with pytest.raises(TypeError, match=name):
        fit(m, X, y, **kw)
    _unchanged(m, before)


def test_model_rng_is_checked_like_fit_seed():
    with pytest.raises(ValueError, match="rng must be >= 0"):
        nn.MLP([3, 2], rng=-1)
    with pytest.raises(TypeError, match="rng"):
        nn.MLP([3, 2], rng=1.5)
