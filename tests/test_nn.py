"""fastclip.nn: C kernels vs the NumPy reference, finite differences, bad input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from _testing import central_difference
from hypothesis import strategies as st

import fastclip
cnn = pytest.importorskip("fastclip._nn", reason="the compiled extension is not built")
from fastclip import nn
from fastclip.reference import nn as rnn

ACTS = ["identity", "relu", "leaky_relu", "prelu", "sigmoid", "tanh"]
IMPLS = ["c", "python"]

def _vals(model):
    """The value arrays of a model's parameters."""
    return [getattr(p, "data", p) if not isinstance(p, np.ndarray) else p
            for p in model.parameters()]



def tol(dtype):
    if dtype == np.float32:
        return {"rtol": 2e-5, "atol": 2e-6}
    return {"rtol": 1e-11, "atol": 1e-13}


def run_step(model, x, labels, input_grad=True):
    y = model(x).copy()
    loss, dl = nn.softmax_cross_entropy(y, labels)
    dx = model.backward(dl, input_grad=input_grad)
    return (y, loss, None if dx is None else dx.copy(), [g.copy() for g in model.gradients()],
            model.grad_sqnorms())


# ---------------------------------------------------------------------------
# C vs reference
# ---------------------------------------------------------------------------
@settings(max_examples=40)
@given(
    sizes=st.lists(st.integers(1, 24), min_size=2, max_size=4),
    batch=st.integers(0, 19),
    act=st.sampled_from(ACTS),
    dtype=st.sampled_from([np.float32, np.float64]),
    layout=st.sampled_from(["C", "F", "strided", "negative"]),
    slope=st.sampled_from([0.01, 0.3, -0.2, 0.0]),
    seed=st.integers(0, 2**16),
)
def test_c_matches_reference(sizes, batch, act, dtype, layout, slope, seed):
    rng = np.random.default_rng(seed)
    model = nn.MLP(sizes, activation=act, negative_slope=slope, dtype=dtype, rng=seed)
    base = rng.standard_normal((batch, 2 * sizes[0] + 1)).astype(dtype)
    if layout == "C":
        x = np.ascontiguousarray(base[:, : sizes[0]])
    elif layout == "F":
        x = np.asfortranarray(base[:, : sizes[0]])
    elif layout == "strided":
        x = base[:, ::2][:, : sizes[0]]
    else:
        x = base[::-1, : sizes[0]]
    labels = rng.integers(0, sizes[-1], size=batch)
    with fastclip.use_implementation("c"):
        c = run_step(model, x, labels)
    with fastclip.use_implementation("python"):
        r = run_step(model, x, labels)
    t = tol(dtype)
    np.testing.assert_allclose(c[0], r[0], **t)
    if batch:
        assert math.isclose(c[1], r[1], rel_tol=t["rtol"], abs_tol=t["atol"])
    else:
        assert math.isnan(c[1]) and math.isnan(r[1])
    np.testing.assert_allclose(c[2], r[2], **t)
    for gc, gr in zip(c[3], r[3]):
        np.testing.assert_allclose(gc, gr, **t)
    np.testing.assert_allclose(c[4], r[4], rtol=1e-4 if dtype == np.float32 else 1e-10,
                               atol=1e-10)
    assert c[0].shape == (batch, sizes[-1]) and c[2].shape == (batch, sizes[0])


@settings(max_examples=30)
@given(n=st.integers(0, 40), c=st.integers(1, 30), dtype=st.sampled_from([np.float32, np.float64]),
       onehot=st.booleans(), scale=st.sampled_from([1.0, 30.0, 1e3]), seed=st.integers(0, 999))
def test_losses_c_vs_reference(n, c, dtype, onehot, scale, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, c)) * scale).astype(dtype)
    if onehot:
        labels = rng.random((n, c)).astype(dtype)
    else:
        labels = rng.integers(0, c, size=n).astype(rng.choice([np.int32, np.int64, np.uint8]))
    lc, gc = cnn.softmax_cross_entropy(logits, labels)
    lr, gr = rnn.softmax_cross_entropy(logits, labels)
    t = tol(dtype)
    np.testing.assert_allclose(gc, gr, **t)
    assert gc.dtype == dtype and gc.shape == (n, c)
    if n:
        assert math.isclose(lc, lr, rel_tol=1e-12, abs_tol=1e-12)
    else:
        assert math.isnan(lc) and math.isnan(lr)
    target = rng.standard_normal((n, c))
    mc, dc = cnn.mse(logits, target)
    mr, dr = rnn.mse(logits, target)
    np.testing.assert_allclose(dc, dr, **t)
    if n:
        assert math.isclose(mc, mr, rel_tol=1e-12)


@settings(max_examples=40)
@given(n=st.integers(0, 40), c=st.integers(1, 30), dtype=st.sampled_from([np.float32, np.float64]),
       onehot=st.booleans(), zeros=st.sampled_from([0.0, 0.5, 1.0]),
       wdtype=st.sampled_from([np.float64, np.float32, np.int64]), seed=st.integers(0, 999))
def test_weighted_losses_c_vs_reference(n, c, dtype, onehot, zeros, wdtype, seed):
    """With sample_weight (some or all weights 0 too) both implementations give the same
    loss and gradient, for either kind of labels and for mse."""
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, c)) * 10).astype(dtype)
    labels = (rng.random((n, c)).astype(dtype) if onehot
              else rng.integers(0, c, size=n))
    w = (rng.random(n) * 5).astype(wdtype) if wdtype != np.int64 else rng.integers(0, 4, n)
    w[rng.random(n) < zeros] = 0
    t = tol(dtype)
    target = rng.standard_normal((n, c))
    for name, args in (("xent", (logits, labels)), ("mse", (logits, target))):
        fc, fr = ((cnn.softmax_cross_entropy, rnn.softmax_cross_entropy) if name == "xent"
                  else (cnn.mse, rnn.mse))
        lc, gc = fc(*args, w)
        lr, gr = fr(*args, w)
        np.testing.assert_allclose(gc, gr, **t, err_msg=name)
        assert gc.dtype == dtype and gc.shape == (n, c), name
        if n and w.sum() > 0:
            assert math.isclose(lc, lr, rel_tol=1e-12, abs_tol=1e-12), name
        else:
            assert math.isnan(lc) and math.isnan(lr), name
            assert not gc.any() and not gr.any(), name


@pytest.mark.parametrize("impl", [cnn, rnn])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weighted_losses_are_weighted_means(impl, dtype):
    """sum_i w_i l_i / sum_i w_i and its gradient (row i times w_i / sum w), checked
    against the per-row losses written out; weights of 1 give the unweighted loss and
    gradient, an integer weight is the row repeated, and a zero weight drops it."""
    rng = np.random.default_rng(3)
    n, c = 6, 4
    x = rng.standard_normal((n, c)).astype(dtype)
    y = np.array([0, 3, 1, 1, 2, 0])
    probs = rng.random((n, c)).astype(dtype)
    target = rng.standard_normal((n, c)).astype(dtype)
    w = np.array([0.5, 2.0, 0.0, 1.0, 3.0, 0.25])
    xd = x.astype(np.float64)
    lse = np.log(np.exp(xd).sum(axis=1))
    sm = np.exp(xd - lse[:, None])
    t = tol(dtype)
    # class indices and probabilities
    for lab, rows, grad in (
            (y, lse - xd[np.arange(n), y], sm - np.eye(c)[y]),
            (probs, (probs * (lse[:, None] - xd)).sum(axis=1),
             sm * probs.sum(axis=1, keepdims=True) - probs)):
        loss, g = impl.softmax_cross_entropy(x, lab, w)
        assert math.isclose(loss, np.dot(w, rows) / w.sum(), rel_tol=1e-6 if dtype == np.float32
                            else 1e-13)
        np.testing.assert_allclose(g, grad * (w / w.sum())[:, None], **t)
        assert not g[2].any()  # the row of weight 0
        # weights of 1: the unweighted call, bit for bit for the gradient
        l1, g1 = impl.softmax_cross_entropy(x, lab, np.ones(n))
        l0, g0 = impl.softmax_cross_entropy(x, lab)
        assert l1 == l0
        np.testing.assert_array_equal(g1, g0)
    d = xd - target.astype(np.float64)
    loss, g = impl.mse(x, target, w)
    assert math.isclose(loss, np.dot(w, (d * d).mean(axis=1)) / w.sum(),
                        rel_tol=1e-6 if dtype == np.float32 else 1e-13)
    np.testing.assert_allclose(g, 2 * d * (w / (w.sum() * c))[:, None], **t)
    l1, g1 = impl.mse(x, target, np.ones(n, np.int32))
    l0, g0 = impl.mse(x, target)
    assert math.isclose(l1, l0, rel_tol=1e-14)
    np.testing.assert_array_equal(g1, g0)
    # an integer weight repeats the row, a zero weight removes it
    wi = np.array([1, 2, 0, 1, 3, 1])
    keep = np.repeat(np.arange(n), wi)
    lw, _ = impl.softmax_cross_entropy(x, y, wi)
    lrep, _ = impl.softmax_cross_entropy(x[keep], y[keep])
    assert math.isclose(lw, lrep, rel_tol=1e-6 if dtype == np.float32 else 1e-13)
    lw, gw = impl.mse(x, target, wi)
    lrep, grep = impl.mse(x[keep], target[keep])
    assert math.isclose(lw, lrep, rel_tol=1e-6 if dtype == np.float32 else 1e-13)
    summed = np.zeros_like(gw)
    np.add.at(summed, keep, grep)
    np.testing.assert_allclose(gw, summed, **t)
    # 1-D and 3-D predictions: the weights go with the first axis
    l3, g3 = impl.mse(x.reshape(n, 2, 2), target.reshape(n, 2, 2), w)
    assert math.isclose(l3, impl.mse(x, target, w)[0], rel_tol=1e-14) and g3.shape == (n, 2, 2)
    l1d, g1d = impl.mse(x[:, 0], target[:, 0], w)
    assert math.isclose(l1d, np.dot(w, d[:, 0] ** 2) / w.sum(),
                        rel_tol=1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("impl", [cnn, rnn])
def test_weights_summing_to_zero_give_nan_loss_and_zero_gradient(impl):
    x = np.array([[1.0, 2.0], [0.5, -1.0]])
    loss, g = impl.softmax_cross_entropy(x, np.array([0, 1]), np.zeros(2))
    assert math.isnan(loss) and g.shape == (2, 2) and not g.any()
    loss, g = impl.mse(x, np.zeros((2, 2)), np.zeros(2))
    assert math.isnan(loss) and g.shape == (2, 2) and not g.any()


@pytest.mark.parametrize("impl", [cnn, rnn])
def test_sample_weight_bad_input(impl):
    """Each bad sample_weight is named, and no argument is changed."""
    x = np.array([[1.0, 2.0], [0.5, -1.0], [0.0, 0.0]])
    y = np.array([0, 1, 1])
    t = np.zeros((3, 2))
    keep = x.copy()
    cases = [
        (TypeError, "sample_weight must be a numpy.ndarray", [1.0, 1.0, 1.0]),
        (TypeError, "sample_weight must hold real numbers", np.array([True, False, True])),
        (ValueError, r"sample_weight must have shape \(3,\).*logits|pred.*\(2,\)",
         np.ones(2)),
        (ValueError, r"shape \(3,\).*got shape \(3, 1\)", np.ones((3, 1))),
        (ValueError, r"finite and >= 0, got -1.0 at row 1", np.array([1.0, -1.0, 1.0])),
        (ValueError, r"finite and >= 0, got nan at row 2", np.array([1.0, 1.0, np.nan])),
        (ValueError, r"finite and >= 0, got inf at row 0", np.array([np.inf, 1.0, 1.0])),
        (ValueError, r"sample_weight sums to inf", np.full(3, 1e308)),
    ]
    for exc, msg, w in cases:
        with pytest.raises(exc, match=msg):
            impl.softmax_cross_entropy(x, y, w)
        with pytest.raises(exc, match=msg):
            impl.mse(x, t, w)
    np.testing.assert_array_equal(x, keep)


def test_softmax_cross_entropy_is_stable_and_exact():
    logits = np.array([[1000.0, 0.0, -1000.0], [-1e30, 5.0, 5.0]])
    for impl in (cnn, rnn):
        loss, g = impl.softmax_cross_entropy(logits, np.array([0, 1]))
        assert np.isfinite(loss) and np.isfinite(g).all()
        assert math.isclose(loss, (0.0 + math.log(2.0)) / 2, rel_tol=1e-14)
        np.testing.assert_allclose(g, [[0, 0, 0], [0, -0.25, 0.25]], atol=1e-15)


@pytest.mark.parametrize("impl", [cnn, rnn])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_keeps_the_loss_of_huge_logits(impl, dtype):
    """Equal logits of any size give log(c) per row: the log-sum-exp is not rounded
    away by the row maximum (1e16 + log 2 == 1e16 in float64)."""
    for big in (1e6, 1e15, 1e16, 3e38):
        logits = np.array([[big, big], [-big, -big]], dtype=dtype)
        loss, g = impl.softmax_cross_entropy(logits, np.array([0, 1]))
        assert math.isclose(loss, math.log(2.0), rel_tol=1e-15), (big, loss)
        np.testing.assert_array_equal(g, np.array([[-0.25, 0.25], [0.25, -0.25]], dtype))
        loss, _ = impl.softmax_cross_entropy(logits, np.full((2, 2), 0.5, dtype))
        assert math.isclose(loss, math.log(2.0), rel_tol=1e-15), (big, loss)


@pytest.mark.parametrize("impl", [cnn, rnn])
def test_nonfinite_loss_is_reported(impl):
    logits = np.array([[np.nan, 0.0], [1.0, 2.0]], dtype=np.float32)
    loss, g = impl.softmax_cross_entropy(logits, np.array([0, 1]))
    assert math.isnan(loss) and np.isnan(g[0]).all() and np.isfinite(g[1]).all()
    loss, g = impl.mse(np.array([np.inf, 1.0]), np.array([0.0, 1.0]))
    assert math.isinf(loss)


@pytest.mark.parametrize("impl", IMPLS)
def test_nan_propagates_through_the_model(impl):
    with fastclip.use_implementation(impl):
        for act in ACTS:
            m = nn.MLP([3, 4, 2], activation=act, dtype=np.float64, rng=0)
            x = np.ones((2, 3))
            x[0, 1] = np.nan
            y = m(x)
            assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()
            loss, dl = nn.softmax_cross_entropy(y, np.array([0, 1]))
            assert math.isnan(loss)
            m.backward(dl)
            assert not np.isfinite(m.grad_sqnorms()).all()


# ---------------------------------------------------------------------------
# finite differences (float64)
# ---------------------------------------------------------------------------
def _loss_of(model, x, target, kind):
    y = model(x)
    return (nn.softmax_cross_entropy(y, target) if kind == "xent" else nn.mse(y, target))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("kind", ["xent", "xent_prob", "mse"])
def test_gradients_match_finite_differences(impl, act, kind):
    rng = np.random.default_rng(7)
    with fastclip.use_implementation(impl):
        model = nn.MLP([5, 6, 4, 3], activation=act, negative_slope=0.2, dtype=np.float64, rng=3)
        for p in _vals(model)[1::2]:
            p[...] = rng.standard_normal(p.shape) * 0.1  # non-zero biases
        x = rng.standard_normal((7, 5))
        if kind == "xent":
            target = rng.integers(0, 3, size=7)
        elif kind == "xent_prob":
            target = rng.dirichlet(np.ones(3), size=7)
        else:
            target = rng.standard_normal((7, 3))
        lk = "mse" if kind == "mse" else "xent"
        _, dl = _loss_of(model, x, target, lk)
        dx = model.backward(dl).copy()
        grads = [g.copy() for g in model.gradients()]
        eps = 1e-6

        def loss():
            return _loss_of(model, x, target, lk)[0]

        for a, g in [*zip(_vals(model), grads), (x, dx)]:
            num = np.empty_like(a)
            for i in np.ndindex(a.shape):
                num[i] = central_difference(loss, a, i, eps)
            np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-8)
        sq = np.array([float(np.sum(g.astype(np.float64) ** 2)) for g in grads])
        np.testing.assert_allclose(model.grad_sqnorms(), sq, rtol=1e-12)


# ---------------------------------------------------------------------------
# model behaviour
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_empty_batch(impl):
    with fastclip.use_implementation(impl):
        m = nn.MLP([3, 4, 2], activation="prelu", rng=0)
        y = m(np.empty((0, 3), np.float32))
        assert y.shape == (0, 2)
        loss, dl = nn.softmax_cross_entropy(y, np.empty(0, np.int64))
        assert math.isnan(loss) and dl.shape == (0, 2)
        dx = m.backward(dl)
        assert dx.shape == (0, 3)
        assert all((g == 0).all() for g in m.gradients())
        assert (m.grad_sqnorms() == 0).all()


def test_buffers_are_reused_and_outputs_read_only(rng):
    m = nn.MLP([6, 5, 3], rng=0)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    y1 = m(x)
    assert not y1.flags.writeable
    grads = m.gradients()
    m.backward(np.ones((4, 3), np.float32))
    y2 = m(x)
    assert np.shares_memory(y1, y2)
    assert all(a is b for a, b in zip(grads, m.gradients()))
    params = _vals(m)
    m(rng.standard_normal((7, 6)).astype(np.float32))  # another batch size
    m(x)
    assert np.shares_memory(y1, m(x))  # two batch sizes are cached
    assert all(a is b for a, b in zip(params, _vals(m)))
    assert m.backward(np.ones((4, 3), np.float32), input_grad=False) is None


def test_backward_overwrites_gradients(rng):
    m = nn.MLP([4, 3, 2], dtype=np.float64, rng=0)
    x = rng.standard_normal((5, 4))
    dy = rng.standard_normal((5, 2))
    m(x)
    m.backward(dy)
    g1 = [g.copy() for g in m.gradients()]
    m.backward(dy)
    for a, b in zip(g1, m.gradients()):
        np.testing.assert_array_equal(a, b)


def test_parameter_layout_and_names():
    m = nn.MLP([4, 3, 3, 2], activation="prelu", negative_slope=0.25, rng=0)
    assert m.parameter_names() == ["0.weight", "0.bias", "0.slope", "1.weight", "1.bias",
                                   "1.slope", "2.weight", "2.bias"]
    shapes = [p.shape for p in _vals(m)]
    assert shapes == [(4, 3), (3,), (1,), (3, 3), (3,), (1,), (3, 2), (2,)]
    assert [g.shape for g in m.gradients()] == shapes
    assert _vals(m)[2][0] == np.float32(0.25)
    assert m.dtype == np.float32 and m.num_parameters() == sum(np.prod(s) for s in shapes)
    lin = nn.Linear(3, 2, "relu", dtype=np.float64, rng=1)
    assert lin.parameter_names() == ["weight", "bias"] and lin.slope is None
    assert lin.weight.shape == (3, 2) and lin.dtype == np.float64
    assert nn.Linear(3, 2, "prelu").parameter_names() == ["weight", "bias", "slope"]


@pytest.mark.parametrize("impl", IMPLS)
def test_linear_matches_formula(impl, rng):
    with fastclip.use_implementation(impl):
        for act in ACTS:
            lin = nn.Linear(5, 4, act, negative_slope=0.1, dtype=np.float64, rng=2)
            lin.bias[...] = rng.standard_normal(4)
            x = rng.standard_normal((6, 5))
            z = x @ lin.weight + lin.bias
            want = {"identity": z, "relu": np.maximum(z, 0),
                    "leaky_relu": np.where(z > 0, z, 0.1 * z),
                    "prelu": np.where(z > 0, z, 0.1 * z),
                    "sigmoid": 1 / (1 + np.exp(-z)), "tanh": np.tanh(z)}[act]
            np.testing.assert_allclose(lin(x), want, rtol=1e-13)


def test_state_dict_round_trip(rng):
    a = nn.MLP([4, 5, 3], activation="prelu", rng=0)
    b = nn.MLP([4, 5, 3], activation="prelu", rng=1)
    sd = a.state_dict()
    assert list(sd) == a.parameter_names()
    sd["0.weight"][0, 0] = 123.0  # copies: the model is unchanged
    assert _vals(a)[0][0, 0] != 123.0
    params_b = _vals(b)
    b.load_state_dict(a.state_dict())
    assert all(x is y for x, y in zip(params_b, _vals(b)))
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    b.load_state_dict({k: v.astype(np.float64) for k, v in a.state_dict().items()})
    np.testing.assert_array_equal(a(x), b(x))


def test_load_state_dict_validates_everything_first():
    m = nn.MLP([4, 5, 3], rng=0)
    before = m.state_dict()
    bad = m.state_dict()
    bad["0.weight"] = np.zeros((4, 5))
    bad["1.weight"] = np.zeros((3, 5))
    with pytest.raises(ValueError, match=r"1\.weight.*\(3, 5\).*\(5, 3\)"):
        m.load_state_dict(bad)
    for k, v in before.items():
        np.testing.assert_array_equal(v, m.state_dict()[k])
    with pytest.raises(ValueError, match="missing keys"):
        m.load_state_dict({"0.weight": np.zeros((4, 5))})
    with pytest.raises(ValueError, match="unexpected keys"):
        m.load_state_dict({**before, "9.bias": np.zeros(1)})
    with pytest.raises(TypeError, match="mapping"):
        m.load_state_dict([1, 2])
    with pytest.raises(TypeError, match="0.bias"):
        m.load_state_dict({**before, "0.bias": np.array(["a"] * 5)})


def test_same_seed_same_model_and_float32_is_rounded_float64():
    a = nn.MLP([6, 5, 2], rng=42)
    b = nn.MLP([6, 5, 2], rng=np.random.default_rng(42))
    c = nn.MLP([6, 5, 2], rng=42, dtype=np.float64)
    for p, q, r in zip(_vals(a), _vals(b), _vals(c)):
        np.testing.assert_array_equal(p, q)
        np.testing.assert_array_equal(p, r.astype(np.float32))
    assert not np.array_equal(_vals(a)[0], nn.MLP([6, 5, 2], rng=43).parameters()[0])


# ---------------------------------------------------------------------------
# initialisers
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name,kind,scale", [
    ("xavier_uniform", "u", lambda fi, fo: math.sqrt(6 / (fi + fo))),
    ("xavier_normal", "n", lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ("he_uniform", "u", lambda fi, fo: math.sqrt(6 / fi)),
    ("he_normal", "n", lambda fi, fo: math.sqrt(2 / fi)),
])
def test_initialiser_statistics(impl, name, kind, scale):
    with fastclip.use_implementation(impl):
        fn = getattr(nn, name)
        w = fn((400, 300), np.random.default_rng(0), gain=1.5, dtype=np.float64)
        assert w.shape == (400, 300) and w.dtype == np.float64
        s = 1.5 * scale(400, 300)
        if kind == "u":
            assert w.min() >= -s and w.max() <= s and w.max() > 0.99 * s
            assert abs(w.std() - s / math.sqrt(3)) < 0.01 * s
        else:
            assert abs(w.std() - s) < 0.01 * s
        assert abs(w.mean()) < 0.01 * s
        w1 = fn((4, 3), np.random.default_rng(5))
        w2 = fn((4, 3), np.random.default_rng(5))
        assert w1.dtype == np.float32
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(fn((4, 3), 5), w1)
        assert fn((3, 4, 2), 0).shape == (3, 4, 2)


def test_initialiser_bad_input():
    with pytest.raises(ValueError, match="shape"):
        nn.he_normal((5,), 0)
    with pytest.raises(TypeError, match="rng"):
        nn.he_normal((5, 3), np.random.RandomState(0))
    with pytest.raises(TypeError, match="dtype"):
        nn.xavier_uniform((5, 3), 0, dtype=np.int32)
    with pytest.raises(ValueError, match="gain"):
        nn.xavier_normal((5, 3), 0, gain=-1.0)
    with pytest.raises(TypeError, match="gain"):
        nn.xavier_normal((5, 3), 0, gain="x")


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_forward_backward_bad_input(impl):
    with fastclip.use_implementation(impl):
        m = nn.MLP([4, 5, 3], rng=0)
        with pytest.raises(RuntimeError, match="before forward"):
            m.backward(np.zeros((2, 3), np.float32))
        with pytest.raises(TypeError, match=r"x must have dtype float32.*float64"):
            m(np.zeros((2, 4)))
        with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
            m([[0.0] * 4])
        with pytest.raises(ValueError, match=r"x has shape \(2, 5\).*\(N, 4\)"):
            m(np.zeros((2, 5), np.float32))
        with pytest.raises(ValueError, match=r"x has shape \(4,\)"):
            m(np.zeros(4, np.float32))
        m(np.zeros((2, 4), np.float32))
        with pytest.raises(ValueError, match=r"dy has shape \(3, 3\).*\(2, 3\)"):
            m.backward(np.zeros((3, 3), np.float32))
        with pytest.raises(ValueError, match=r"dy has shape \(2, 4\).*\(N, 3\)"):
            m.backward(np.zeros((2, 4), np.float32))
        with pytest.raises(TypeError, match="dy must have dtype float32"):
            m.backward(np.zeros((2, 3), np.float64))


@pytest.mark.parametrize("impl", [cnn, rnn])
def test_loss_bad_input(impl):
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\).*got 4 at row 1"):
        impl.softmax_cross_entropy(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"got -1 at row 2"):
        impl.softmax_cross_entropy(logits, np.array([0, 1, -1]))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(2,\)"):
        impl.softmax_cross_entropy(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(3, 3\)"):
        impl.softmax_cross_entropy(logits, np.zeros((3, 3)))
    with pytest.raises(TypeError, match="labels"):
        impl.softmax_cross_entropy(logits, np.array([True, False, True]))
    with pytest.raises(TypeError, match="labels must be a numpy.ndarray"):
        impl.softmax_cross_entropy(logits, [0, 1, 2])
    with pytest.raises(TypeError, match="logits"):
        impl.softmax_cross_entropy(logits.astype(np.int32), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="logits must be 2-D"):
        impl.softmax_cross_entropy(np.zeros(4), np.array([0]))
    with pytest.raises(ValueError, match=r"pred has shape \(3, 4\), target has shape \(4, 3\)"):
        impl.mse(logits, np.zeros((4, 3)))
    with pytest.raises(TypeError, match="pred"):
        impl.mse(np.zeros(3, np.int64), np.zeros(3))
    with pytest.raises(TypeError, match="target"):
        impl.mse(np.zeros(3), np.array(["a", "b", "c"]))


def test_constructor_bad_input():
    with pytest.raises(ValueError, match="activation"):
        nn.MLP([3, 2], activation="softplus")
    with pytest.raises(ValueError, match="sizes must have at least 2"):
        nn.MLP([3])
    with pytest.raises(ValueError, match=r"sizes\[1\] must be >= 1"):
        nn.MLP([3, 0, 2])
    with pytest.raises(TypeError, match="sizes"):
        nn.MLP("32")
    with pytest.raises(TypeError, match="dtype"):
        nn.MLP([3, 2], dtype=np.float16)
    with pytest.raises(ValueError, match="init"):
        nn.MLP([3, 2], init="orthogonal")
    with pytest.raises(TypeError, match="rng"):
        nn.MLP([3, 2], rng="seed")
    with pytest.raises(ValueError, match="negative_slope"):
        nn.Linear(3, 2, "leaky_relu", negative_slope=math.inf)
    with pytest.raises(TypeError, match="in_features"):
        nn.Linear(3.0, 2)
    with pytest.raises(ValueError, match="out_features"):
        nn.Linear(3, 0)


def test_kernel_bad_buffers():
    w = np.zeros((3, 2), np.float32)
    b = np.zeros(2, np.float32)
    x = np.zeros((4, 3), np.float32)
    out = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="out has shape"):
        cnn.dense_forward(x, w, b, None, 1, 0.0, None, np.zeros((5, 2), np.float32))
    with pytest.raises(TypeError, match="x must have dtype float32"):
        cnn.dense_forward(x.astype(np.float64), w, b, None, 1, 0.0, None, out)
    with pytest.raises(ValueError, match="slope must be given"):
        cnn.dense_forward(x, w, b, None, 3, 0.0, np.zeros((4, 2), np.float32), out)
    with pytest.raises(ValueError, match="act"):
        cnn.dense_forward(x, w, b, None, 7, 0.0, None, out)
    with pytest.raises(ValueError, match="dz may be None only"):
        cnn.dense_backward(out, x, w, None, 1, 0.0, None, out, None, None, np.zeros_like(w),
                           np.zeros_like(b), None, np.zeros(2))
    with pytest.raises(ValueError, match="unit-stride"):
        cnn.dense_forward(np.zeros((4, 6), np.float32)[:, ::2], w, b, None, 1, 0.0, None, out)


def test_column_sums_do_not_depend_on_threads(rng):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    n, m = 2100, 1000  # n * m above the parallel threshold of the nn passes (2**21)
    dy = rng.standard_normal((n, m)).astype(np.float32)
    ref = rng.standard_normal((n, m)).astype(np.float32)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    w = np.zeros((3, m), np.float32)
    results = []
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(threads, user_api="openmp"):
            db = np.empty(m, np.float32)
            ds = np.empty(1, np.float32)
            sq = np.empty(3)
            cnn.dense_backward(dy, x, w, np.array([0.2], np.float32), 3, 0.0, ref, ref,
                               np.empty((n, m), np.float32), None, np.empty((3, m), np.float32),
                               db, ds, sq)
            results.append((db, ds, sq))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][2][1:], results[1][2][1:])
    np.testing.assert_allclose(results[0][0], np.where(ref > 0, dy, 0.2 * dy).sum(0),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl", ["c", "python"])
def test_losses_and_models_refuse_masked_arrays_and_take_matrices(impl):
    """A masked array's mask would be ignored, so it is a TypeError naming the
    argument, in both implementations. ``np.matrix`` is used through an ndarray view
    by both."""
    fastclip.set_implementation(impl)
    try:
        m = np.ma.array([[1.0, 2.0, 50.0]], mask=[[0, 0, 1]])
        with pytest.raises(TypeError, match="logits is a numpy.ma.MaskedArray"):
            nn.softmax_cross_entropy(m, np.array([0]))
        with pytest.raises(TypeError, match="labels is a numpy.ma.MaskedArray"):
            nn.softmax_cross_entropy(np.zeros((1, 3)), np.ma.array([0], mask=[0]))
        with pytest.raises(TypeError, match="pred is a numpy.ma.MaskedArray"):
            nn.mse(m, np.zeros((1, 3)))
        with pytest.raises(TypeError, match="target is a numpy.ma.MaskedArray"):
            nn.mse(np.zeros((1, 3)), m)
        model = nn.MLP([3, 2], rng=0, dtype=np.float64)
        with pytest.raises(TypeError, match="x is a numpy.ma.MaskedArray"):
            model.forward(m)
        model.forward(np.ones((1, 3)))
        with pytest.raises(TypeError, match="numpy.ma.MaskedArray"):
            model.backward(np.ma.array([[1.0, 2.0]], mask=[[0, 1]]))
        lo, g = nn.softmax_cross_entropy(np.matrix([[1.0, 2.0], [0.5, 0.1]]), np.array([0, 1]))
        want, _ = nn.softmax_cross_entropy(np.array([[1.0, 2.0], [0.5, 0.1]]), np.array([0, 1]))
        assert lo == pytest.approx(want) and type(g) is np.ndarray
    finally:
        fastclip.set_implementation("c" if fastclip._dispatch.family("nn").compiled
                                    else "python")


def test_a_uint64_label_above_int64_is_reported_as_given():
    with pytest.raises(ValueError, match="got 9223372036854775808 at row 0"):
        nn.softmax_cross_entropy(np.zeros((2, 3)), np.array([2**63, 0], np.uint64))


@pytest.mark.parametrize("impl_name", IMPLS)
def test_a_layers_own_output_or_input_gradient_given_back_to_it(impl_name):
    """lin(lin(x)) as in torch: the first output is a read-only view of a buffer the
    second forward overwrites; the layer reads a copy, so the result and the weight
    gradient are those of the values given. The same for a backward given the input
    gradient of an earlier backward."""
    rng = np.random.default_rng(0)
    with fastclip.use_implementation(impl_name):
        lin = nn.Linear(64, 64, dtype=np.float64, rng=0)
        x = rng.standard_normal((8, 64))
        y = lin(x)
        y0 = y.copy()
        z = lin(y)
        np.testing.assert_allclose(z, y0 @ lin.weight + lin.bias, rtol=1e-12, atol=1e-12)
        dy = rng.standard_normal((8, 64))
        lin.backward(dy)
        np.testing.assert_allclose(lin.gradients()[0], y0.T @ dy, rtol=1e-12, atol=1e-12)
        lin(x)
        dx = lin.backward(dy)
        dx0 = dx.copy()
        lin(x)
        lin.backward(dx)
        np.testing.assert_allclose(lin.gradients()[0], x.T @ dx0, rtol=1e-12, atol=1e-12)
        m = nn.MLP([200, 200], dtype=np.float64, rng=1)
        a = rng.standard_normal((5, 200))
        b = m(a)
        b0 = b.copy()
        np.testing.assert_allclose(m(b), m(b0.copy()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl_name", IMPLS)
def test_mse_of_a_single_value_keeps_its_shape(impl_name):
    with fastclip.use_implementation(impl_name):
        loss, g = nn.mse(np.array(3.0), np.array(1.0))
        assert loss == 4.0 and isinstance(g, np.ndarray) and g.shape == () and g == 4.0
        with pytest.raises(ValueError, match="sample_weight"):
            nn.mse(np.array(3.0), np.array(1.0), sample_weight=np.array([2.0]))


def test_initialisers_and_dtype_arguments_are_checked():
    for bad in ((2.7, 3), ("3", "4"), (True, 4)):
        with pytest.raises(TypeError, match="shape"):
            nn.he_normal(bad, 0)
    with pytest.raises(ValueError, match="rng must be >= 0"):
        nn.he_normal((2, 2), -1)
    with pytest.raises(ValueError, match="gain"):
        nn.he_normal((2, 2), 0, gain=1e308, dtype=np.float32)
    # None is the default float32, as torch's None is its default dtype
    assert nn.Linear(3, 2, dtype=None).weight.dtype == np.float32
    assert nn.MLP([3, 2], dtype=None, rng=0).dtype == np.float32


@pytest.mark.parametrize("impl_name", IMPLS)
def test_a_refused_forward_changes_nothing(impl_name):
    """Batch norm refuses one row in training mode before any block runs: the running
    statistics and the last forward's state are untouched, so a backward still works
    on that last forward."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    dy = np.full((4, 2), 5.0)
    with fastclip.use_implementation(impl_name):
        m = nn.MLP([3, 5, 2], batchnorm=True, dtype=np.float64, rng=0)
        twin = nn.MLP([3, 5, 2], batchnorm=True, dtype=np.float64, rng=0)
        m(x)
        twin(x)
        bufs = [b.copy() for _, b in m.named_buffers()]
        with pytest.raises(ValueError, match="1 row"):
            m(x[:1])
        assert all(np.array_equal(a, b) for a, (_, b) in zip(bufs, m.named_buffers()))
        m.backward(dy)
        twin.backward(dy)
        for a, b in zip(m.gradients(), twin.gradients()):
            np.testing.assert_array_equal(a, b)


def test_backward_input_grad_is_a_bool_and_torch_state_dicts_load():
    m = nn.Linear(3, 2, rng=0)
    m(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="input_grad"):
        m.backward(np.ones((2, 2), np.float32), input_grad="no")
    torch = pytest.importorskip("torch")
    m.load_state_dict({"weight": torch.nn.Parameter(torch.ones(3, 2)),
                       "bias": torch.nn.Parameter(torch.zeros(2))})
    assert (m.weight == 1).all() and (m.bias == 0).all()
    with pytest.raises(TypeError, match=r"state\['weight'\]"):
        m.load_state_dict({"weight": torch.ones(3, 2, dtype=torch.bfloat16),
                           "bias": torch.zeros(2)})
    assert (m.weight == 1).all()
