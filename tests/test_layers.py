"""BatchNorm1d, Dropout, Sigmoid, Tanh and train()/eval(): C kernels against the
NumPy reference, formulas, finite differences, bad input, training with them."""

import math

import numpy as np
import pytest
from _testing import central_difference
from hypothesis import given, settings
from hypothesis import strategies as st

import fastclip
import fastclip._dispatch
from fastclip import nn
from fastclip.optim import SGD, Adam

# the compiled twin where it is built (FASTCLIP_TEST_NO_EXTENSION=1 runs without it)
HAVE_C = fastclip._dispatch.family("layers").compiled is not None
IMPLS = ["c", "python"] if HAVE_C else ["python"]
needs_c = pytest.mark.skipif(not HAVE_C, reason="the compiled extension is not built")


def _layout(base, width, layout):
    if layout == "C":
        return np.ascontiguousarray(base[:, :width])
    if layout == "strided":
        return base[:, ::2][:, :width]
    if layout == "F":
        return np.asfortranarray(base[:, :width])
    return base[::-1, :width]


def _tol(dtype):
    return ({"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32
            else {"rtol": 1e-12, "atol": 1e-12})


# ---------------------------------------------------------------------------
# C vs reference
# ---------------------------------------------------------------------------
def _bn_run(impl, x, dy, affine, track, momentum, dtype, train):
    with fastclip.use_implementation(impl):
        bn = nn.BatchNorm1d(x.shape[1], momentum=momentum, affine=affine,
                            track_running_stats=track, dtype=dtype)
        if affine:
            bn.weight[...] = np.linspace(-1.5, 2.0, x.shape[1])
            bn.bias[...] = np.linspace(0.5, -0.5, x.shape[1])
        if track:
            bn.running_mean[...] = 0.25
            bn.running_var[...] = 1.5
        bn.train(train)
        y = np.array(bn(x))
        dx = np.array(bn.backward(dy))
        return (y, dx, [g.copy() for g in bn.gradients()], bn.grad_sqnorms(),
                [b.copy() for _, b in bn.named_buffers()])


@needs_c
@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 40), c=st.integers(1, 20), affine=st.booleans(), track=st.booleans(),
       momentum=st.sampled_from([0.1, 0.5, None]), train=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]),
       layout=st.sampled_from(["C", "strided", "F", "negative"]), seed=st.integers(0, 2**16))
def test_batchnorm_c_matches_reference(n, c, affine, track, momentum, train, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x = _layout((rng.standard_normal((n, 2 * c + 1)) * 2 + 1).astype(dtype), c, layout)
    dy = rng.standard_normal((n, c)).astype(dtype)
    a = _bn_run("c", x, dy, affine, track, momentum, dtype, train)
    b = _bn_run("python", x, dy, affine, track, momentum, dtype, train)
    t = _tol(dtype)
    np.testing.assert_allclose(a[0], b[0], **t)
    np.testing.assert_allclose(a[1], b[1], **t)
    for u, v in zip(a[2], b[2]):
        np.testing.assert_allclose(u, v, **t)
    np.testing.assert_allclose(a[3], b[3], rtol=1e-4 if dtype == np.float32 else 1e-10)
    for u, v in zip(a[4], b[4]):
        np.testing.assert_allclose(u, v, **t)


@needs_c
@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 30), c=st.integers(1, 20), p=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
       dtype=st.sampled_from([np.float32, np.float64]),
       layout=st.sampled_from(["C", "strided", "negative"]), seed=st.integers(0, 2**16))
def test_dropout_c_matches_reference(n, c, p, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x = _layout(rng.standard_normal((n, 2 * c + 1)).astype(dtype), c, layout)
    dy = rng.standard_normal((n, c)).astype(dtype)
    out = {}
    for impl in IMPLS:
        with fastclip.use_implementation(impl):
            d = nn.Dropout(p, rng=seed)
            out[impl] = (np.array(d(x)), np.array(d.backward(dy)), d.mask)
    np.testing.assert_array_equal(out["c"][0], out["python"][0])
    np.testing.assert_array_equal(out["c"][1], out["python"][1])
    if p > 0:
        np.testing.assert_array_equal(out["c"][2], out["python"][2])
        mask = out["c"][2]
        scale = dtype(1 / (1 - p)) if p < 1 else dtype(0)
        np.testing.assert_array_equal(out["c"][0], x * mask * scale)


@needs_c
@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 30), c=st.integers(1, 20),
       act=st.sampled_from(["identity", "relu", "leaky_relu", "prelu", "sigmoid", "tanh"]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_standalone_activation_kernels_c_match_reference(n, c, act, dtype, seed):
    # the kernels behind Sigmoid/Tanh and the activation pass after batch norm
    from fastclip import _layers
    from fastclip.reference import layers as ref

    code = nn._ACTS[act]
    rng = np.random.default_rng(seed)
    # unit-stride rows with a longer row stride (what the layers pass on)
    x = (rng.standard_normal((n, 2 * c + 1)) * 4).astype(dtype)[:, :c]
    dy = rng.standard_normal((n, c)).astype(dtype)
    res = []
    for mod in (_layers, ref):
        y = np.empty((n, c), dtype)
        dx = np.empty((n, c), dtype)
        ds = np.zeros(1, dtype)
        sq = np.zeros(1)
        mod.act_forward(x, code, -0.3, y)
        mod.act_backward(dy, x, y, code, -0.3, dx, ds if code == 3 else None,
                         sq if code == 3 else None)
        res.append((y, dx, ds, sq))
    t = _tol(dtype)
    for u, v in zip(res[0], res[1]):
        np.testing.assert_allclose(u, v, **t)


# ---------------------------------------------------------------------------
# formulas and torch-free semantics
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_batchnorm_formula_and_running_stats(impl):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 4)) * 3 + 2
    with fastclip.use_implementation(impl):
        bn = nn.BatchNorm1d(4, eps=1e-3, momentum=0.2, dtype=np.float64)
        bn.weight[...] = [1.0, 2.0, -1.0, 0.5]
        bn.bias[...] = [0.0, 1.0, 2.0, 3.0]
        y = bn(x)
        mean, var = x.mean(0), x.var(0)
        want = (x - mean) / np.sqrt(var + 1e-3) * bn.weight + bn.bias
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(bn.running_mean, 0.2 * mean, rtol=1e-12)
        np.testing.assert_allclose(bn.running_var, 0.8 + 0.2 * x.var(0, ddof=1), rtol=1e-12)
        bn.eval()
        y2 = bn(x)
        want2 = ((x - bn.running_mean) / np.sqrt(bn.running_var + 1e-3) * bn.weight + bn.bias)
        np.testing.assert_allclose(y2, want2, rtol=1e-12, atol=1e-12)
        assert int(bn.num_batches_tracked) == 1


def _fd_check(model, x, lab, eps=1e-6):
    y = model(x)
    _, dl = nn.softmax_cross_entropy(y, lab)
    dx = np.array(model.backward(dl))
    grads = [g.copy() for g in model.gradients()]

    def loss():
        return nn.softmax_cross_entropy(model(x), lab)[0]

    for p, g in zip([q.data for q in model.parameters()], grads):
        flat = p.reshape(-1)
        for k in range(0, flat.size, max(1, flat.size // 7)):
            assert math.isclose(central_difference(loss, flat, k, eps), g.reshape(-1)[k],
                                rel_tol=1e-5, abs_tol=1e-7)
    xf = x.reshape(-1)
    for k in range(0, x.size, 5):
        assert math.isclose(central_difference(loss, xf, k, eps), dx.reshape(-1)[k],
                            rel_tol=1e-5, abs_tol=1e-7)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("act", ["relu", "prelu", "sigmoid", "tanh", "identity"])
def test_batchnorm_mlp_gradients_match_finite_differences(impl, act):
    # batch statistics without running updates, so the loss is a fixed function
    rng = np.random.default_rng(4)
    with fastclip.use_implementation(impl):
        m = nn.MLP([5, 6, 4, 3], activation=act, batchnorm=True, bn_momentum=0.0,
                   dtype=np.float64, rng=1)
        for nme, p in zip(m.parameter_names(), [q.data for q in m.parameters()]):
            if nme.endswith("bn.weight"):
                p[...] = rng.uniform(0.5, 1.5, p.shape)
        x = rng.standard_normal((8, 5))
        _fd_check(m, x, rng.integers(0, 3, size=8))


@pytest.mark.parametrize("impl", IMPLS)
def test_dropout_gradients_match_finite_differences_under_a_fixed_mask(impl):
    rng = np.random.default_rng(2)
    with fastclip.use_implementation(impl):
        m = nn.MLP([4, 7, 3], activation="tanh", dropout=0.3, dtype=np.float64, rng=0)
        x = rng.standard_normal((6, 4))
        lab = rng.integers(0, 3, size=6)
        drop = next(b for b in m._blocks if isinstance(b, nn._DropoutLayer))
        m(x)
        mask = drop.mask.copy()
        drop.rng = _FixedMask(mask)
        _fd_check(m, x, lab)


class _FixedMask:
    """A generator stand-in whose random() gives the same keep mask every call."""

    def __init__(self, mask):
        self.u = np.where(mask, 0.0, 0.999)

    def random(self, shape):
        return self.u.reshape(shape).copy()


@pytest.mark.parametrize("impl", IMPLS)
def test_dropout_modes_seed_and_rate(impl):
    x = np.ones((200, 50), dtype=np.float32)
    with fastclip.use_implementation(impl):
        a, b = nn.Dropout(0.25, rng=7), nn.Dropout(0.25, rng=7)
        ya, yb = np.array(a(x)), np.array(b(x))
        np.testing.assert_array_equal(ya, yb)  # same seed, same mask
        assert not np.array_equal(ya, np.array(a(x)))  # a new mask each forward
        assert set(np.unique(ya).tolist()) == {0.0, np.float32(1 / 0.75)}
        assert abs((ya == 0).mean() - 0.25) < 0.02
        assert a.eval() is a and a.training is False
        np.testing.assert_array_equal(a(x), x)
        np.testing.assert_array_equal(a.backward(x), x)
        assert a.train() is a and a.training


@pytest.mark.parametrize("impl", IMPLS)
def test_train_eval_switch_every_layer_of_an_mlp(impl):
    with fastclip.use_implementation(impl):
        m = nn.MLP([3, 5, 2], batchnorm=True, dropout=0.5, dtype=np.float64, rng=0)
        x = np.random.default_rng(0).standard_normal((4, 3))
        assert m.training
        assert m.eval() is m
        assert not m.training and all(not getattr(b, "training", False) for b in m._blocks
                                      if hasattr(b, "training"))
        y1, y2 = np.array(m(x)), np.array(m(x))
        np.testing.assert_array_equal(y1, y2)  # deterministic in eval
        assert int(dict(m.named_buffers())["0.bn.num_batches_tracked"]) == 0
        m.train()
        m(x)
        assert int(dict(m.named_buffers())["0.bn.num_batches_tracked"]) == 1
        with pytest.raises(TypeError, match="mode"):
            m.train("no")


def test_sigmoid_tanh_layers_formula_and_dtypes():
    for dt in (np.float32, np.float64):
        x = np.linspace(-50, 50, 24, dtype=dt).reshape(4, 6)
        np.testing.assert_allclose(nn.Sigmoid()(x), 1 / (1 + np.exp(-x.astype(np.float64))),
                                   rtol=1e-6)
        np.testing.assert_allclose(nn.Tanh()(x), np.tanh(x), rtol=1e-6)
        assert nn.Tanh()(x).dtype == dt
    assert nn.Sigmoid()(np.array([[-1000.0, 1000.0]])).tolist() == [[0.0, 1.0]]


def test_state_dict_has_the_running_statistics():
    a = nn.MLP([3, 4, 2], batchnorm=True, dtype=np.float64, rng=0)
    a(np.random.default_rng(0).standard_normal((5, 3)))
    sd = a.state_dict()
    assert list(sd)[-3:] == ["0.bn.running_mean", "0.bn.running_var",
                             "0.bn.num_batches_tracked"]
    b = nn.MLP([3, 4, 2], batchnorm=True, dtype=np.float64, rng=1)
    rm = b.named_buffers()[0][1]
    b.load_state_dict(sd)
    assert b.named_buffers()[0][1] is rm
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    bad = dict(sd)
    del bad["0.bn.running_var"]
    with pytest.raises(ValueError, match="running_var"):
        b.load_state_dict(bad)


def test_grad_sqnorms_include_batchnorm_parameters():
    m = nn.MLP([4, 6, 5, 3], activation="prelu", batchnorm=True, dtype=np.float64, rng=0)
    assert m.parameter_names() == ["0.weight", "0.bias", "0.bn.weight", "0.bn.bias",
                                   "0.slope", "1.weight", "1.bias", "1.bn.weight",
                                   "1.bn.bias", "1.slope", "2.weight", "2.bias"]
    x = np.random.default_rng(1).standard_normal((7, 4))
    _, dl = nn.softmax_cross_entropy(m(x), np.arange(7) % 3)
    m.backward(dl)
    want = [float(np.sum(g.astype(np.float64) ** 2)) for g in m.gradients()]
    np.testing.assert_allclose(m.grad_sqnorms(), want, rtol=1e-12)
    assert all(w > 0 for w in want)


@pytest.mark.parametrize("opt", [SGD, Adam])
def test_batchnorm_dropout_model_trains_with_optimisers_and_fit(opt):
    from fastclip.train import fit

    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    m = nn.MLP([6, 16, 2], batchnorm=True, dropout=0.1, dtype=np.float64, rng=0)
    o = opt(m.parameters(), lr=0.05, clip_norm=5.0)
    hist = fit(m, X, y, optimizer=o, epochs=8, batch_size=32, seed=0, progress=False)
    assert hist.loss[-1] < hist.loss[0]
    m.eval()
    acc = (np.argmax(m(X), axis=1) == y).mean()
    assert acc > 0.9


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kw,exc,word", [
    ({"num_features": 0}, ValueError, "num_features"),
    ({"num_features": 2.0}, TypeError, "num_features"),
    ({"num_features": 3, "eps": -1.0}, ValueError, "eps"),
    ({"num_features": 3, "eps": "x"}, TypeError, "eps"),
    ({"num_features": 3, "momentum": 1.5}, ValueError, "momentum"),
    ({"num_features": 3, "affine": 1}, TypeError, "affine"),
    ({"num_features": 3, "track_running_stats": None}, TypeError, "track_running_stats"),
    ({"num_features": 3, "dtype": np.int32}, TypeError, "dtype"),
])
def test_batchnorm_bad_arguments(kw, exc, word):
    with pytest.raises(exc, match=word):
        nn.BatchNorm1d(**kw)


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_input_names_the_argument_and_changes_nothing(impl):
    with fastclip.use_implementation(impl):
        bn = nn.BatchNorm1d(3, dtype=np.float64)
        with pytest.raises(ValueError, match="x"):
            bn(np.ones((1, 3)))  # one row in training mode (torch refuses it too)
        assert int(bn.num_batches_tracked) == 0
        np.testing.assert_array_equal(bn.running_mean, 0.0)
        with pytest.raises(ValueError, match="x has shape"):
            bn(np.ones((4, 2)))
        with pytest.raises(TypeError, match="x must have dtype"):
            bn(np.ones((4, 3), dtype=np.float32))
        with pytest.raises(RuntimeError, match="before forward"):
            bn.backward(np.ones((4, 3)))
        bn(np.ones((4, 3)))
        with pytest.raises(ValueError, match="dy"):
            bn.backward(np.ones((5, 3)))
        with pytest.raises(TypeError, match="p must be a real"):
            nn.Dropout("0.5")
        with pytest.raises(ValueError, match="p must be in"):
            nn.Dropout(1.5)
        with pytest.raises(TypeError, match="rng"):
            nn.Dropout(0.1, rng="seed")
        with pytest.raises(TypeError, match="x must have dtype"):
            nn.Sigmoid()(np.ones((2, 2), dtype=np.int64))
        with pytest.raises(ValueError, match="x has shape"):
            nn.Tanh()(np.ones(3))
        with pytest.raises(ValueError, match="dropout"):
            nn.MLP([2, 3, 2], dropout=-0.1)
        with pytest.raises(TypeError, match="batchnorm"):
            nn.MLP([2, 3, 2], batchnorm="yes")
        with pytest.raises(ValueError, match="activation"):
            nn.MLP([2, 3, 2], activation="softplus")


def test_per_example_clipping_refuses_batchnorm_and_dropout_models():
    for kw in ({"batchnorm": True}, {"dropout": 0.2}):
        m = nn.MLP([3, 4, 2], dtype=np.float64, rng=0, **kw)
        y = m(np.random.default_rng(0).standard_normal((5, 3)))
        g0 = [g.copy() for g in m.gradients()]
        with pytest.raises(ValueError, match="per_example_clip"):
            m.backward(np.ones_like(y), per_example_clip=1.0)
        for a, b in zip(m.gradients(), g0):
            np.testing.assert_array_equal(a, b)
