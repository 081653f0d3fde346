"""Per-example clipping inside fastclip.nn's backward (model.backward(per_example_clip=...))."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastclip
from fastclip import nn


@pytest.fixture(params=["c", "python"])
def impl(request):
    with fastclip.use_implementation(request.param):
        yield request.param


def _per_example_grads(model, X, y, loss=nn.softmax_cross_entropy):
    """Each example's gradient, one forward/backward per example (float64 copies)."""
    out = []
    for i in range(X.shape[0]):
        pred = model.forward(X[i:i + 1])
        _, d = loss(pred, y[i:i + 1])
        model.backward(d)
        out.append([g.astype(np.float64) for g in model.gradients()])
    return out


def _clipped_sum(per_ex, clips):
    """clips: one norm (global) or one per parameter array (per layer)."""
    k = len(per_ex[0])
    sums = [np.zeros(g.shape) for g in per_ex[0]]
    for gs in per_ex:
        if np.ndim(clips) == 0:
            n = math.sqrt(sum(float(np.sum(g * g)) for g in gs))
            fs = [min(1.0, clips / (n + 1e-6))] * k
        else:
            fs = [min(1.0, c / (math.sqrt(float(np.sum(g * g))) + 1e-6))
                  for g, c in zip(gs, clips)]
        for s, g, f in zip(sums, gs, fs):
            s += f * g
    return sums


def _model(act, dtype, seed=0):
    return nn.MLP([6, 5, 4, 3], activation=act, dtype=dtype, rng=seed)


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "prelu", "identity"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_global_clipping_equals_the_per_example_loop(impl, act, dtype):
    rng = np.random.default_rng(1)
    m = _model(act, dtype)
    X = rng.standard_normal((9, 6)).astype(dtype)
    y = rng.integers(0, 3, 9)
    per_ex = _per_example_grads(m, X, y)
    norms = np.array([math.sqrt(sum(float(np.sum(g * g)) for g in gs)) for gs in per_ex])
    c = float(np.median(norms))  # half the examples are clipped, half are not
    want = _clipped_sum(per_ex, c)
    pred = m.forward(X)
    _, d = nn.softmax_cross_entropy(pred, y)
    d_before = d.copy()
    assert m.backward(d, per_example_clip=c, input_grad=False) is None
    np.testing.assert_array_equal(d, d_before)  # the caller's dy is not scaled
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(m.per_example_norms(), norms, rtol=tol)
    for got, w in zip(m.gradients(), want):
        np.testing.assert_allclose(got, w, rtol=tol, atol=tol)
    total = math.sqrt(sum(float(np.sum(w * w)) for w in want))
    assert math.sqrt(m.grad_sqnorms().sum()) == pytest.approx(total, rel=tol)


@pytest.mark.parametrize("mode", ["equal", "size", "explicit"])
def test_per_layer_clipping(impl, mode):
    rng = np.random.default_rng(2)
    m = _model("prelu", np.float64)
    X = rng.standard_normal((7, 6))
    y = rng.integers(0, 3, 7)
    per_ex = _per_example_grads(m, X, y)
    k = len(per_ex[0])
    sizes = np.array([g.size for g in per_ex[0]], dtype=np.float64)
    if mode == "equal":
        clips, kw = np.full(k, 0.3 / math.sqrt(k)), dict(per_example_clip=0.3, per_layer="equal")
    elif mode == "size":
        clips = 0.3 * np.sqrt(sizes / sizes.sum())
        kw = dict(per_example_clip=0.3, per_layer="size")
    else:
        clips = np.linspace(0.01, 0.2, k)
        kw = dict(per_example_clip=list(clips))
    want = _clipped_sum(per_ex, clips)
    pred = m.forward(X)
    _, d = nn.softmax_cross_entropy(pred, y)
    m.backward(d, **kw)
    for got, w in zip(m.gradients(), want):
        np.testing.assert_allclose(got, w, rtol=1e-12, atol=1e-14)


def test_sum_reduction_and_input_gradient(impl):
    rng = np.random.default_rng(3)
    m = _model("relu", np.float64)
    X = rng.standard_normal((5, 6))
    y = rng.standard_normal((5, 3))
    per_ex = _per_example_grads(m, X, y, loss=nn.mse)  # mse of one row: the mean over 3
    pred = m.forward(X)
    # a loss summed over the examples: dy of each row is that row's own gradient
    d = np.concatenate([nn.mse(pred[i:i + 1], y[i:i + 1])[1] for i in range(5)])
    plain_dx = m.backward(d).copy()
    dx = m.backward(d, per_example_clip=1e9, loss_reduction="sum")
    np.testing.assert_allclose(dx, plain_dx, rtol=1e-13)  # dx is never clipped
    for got, w in zip(m.gradients(), _clipped_sum(per_ex, 1e9)):
        np.testing.assert_allclose(got, w, rtol=1e-12, atol=1e-14)


def test_thread_and_implementation_agree():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((33, 6)).astype(np.float32)
    y = rng.integers(0, 3, 33)
    res = []
    for name in ("c", "python"):
        with fastclip.use_implementation(name):
            m = _model("relu", np.float32)
            _, d = nn.softmax_cross_entropy(m.forward(X), y)
            m.backward(d, per_example_clip=0.1)
            res.append([g.copy() for g in m.gradients()] + [m.per_example_norms()])
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(per_example_clip=0.0), ValueError, "per_example_clip"),
        (dict(per_example_clip=-1.0), ValueError, "per_example_clip"),
        (dict(per_example_clip=float("nan")), ValueError, "per_example_clip"),
        (dict(per_example_clip="1"), TypeError, "per_example_clip"),
        (dict(per_example_clip=1.0, per_layer="layer"), ValueError, "per_layer"),
        (dict(per_layer="equal"), ValueError, "per_example_clip"),
        (dict(per_example_clip=[1.0, 2.0]), ValueError, "parameters"),
        (dict(per_example_clip=1.0, loss_reduction="avg"), ValueError, "loss_reduction"),
    ],
)
def test_bad_arguments_modify_nothing(impl, kw, exc, match):
    rng = np.random.default_rng(5)
    m = _model("relu", np.float64)
    X = rng.standard_normal((4, 6))
    _, d = nn.softmax_cross_entropy(m.forward(X), np.array([0, 1, 2, 0]))
    m.backward(d)
    before = [g.copy() for g in m.gradients()]
    with pytest.raises(exc, match=match):
        m.backward(d, **kw)
    for g, b in zip(m.gradients(), before):
        np.testing.assert_array_equal(g, b)


def test_empty_batch_is_rejected(impl):
    m = _model("relu", np.float64)
    m.forward(np.zeros((0, 6)))
    with pytest.raises(ValueError, match="size 0"):
        m.backward(np.zeros((0, 3)), per_example_clip=1.0)
