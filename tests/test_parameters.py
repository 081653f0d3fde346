"""fastclip.nn.Parameter: clipping and optimisers act on p.grad, as in PyTorch."""

import numpy as np
import pytest

import fastclip
from fastclip import nn
from fastclip.optim import SGD, Adam, AdamW, RMSprop

IMPLS = ["c", "python"]


def _model_after_backward(seed=0, dtype=np.float64):
    m = nn.MLP([5, 7, 3], dtype=dtype, rng=seed)
    x = np.random.default_rng(seed).standard_normal((4, 5)).astype(dtype)
    _, d = nn.softmax_cross_entropy(m(x), np.array([0, 1, 2, 0]))
    m.backward(d, input_grad=False)
    return m


def test_parameters_are_parameter_objects():
    m = nn.MLP([5, 7, 3], dtype=np.float64, rng=0)
    ps = m.parameters()
    assert all(isinstance(p, nn.Parameter) for p in ps)
    assert [p.name for p in ps] == m.parameter_names()
    assert all(a is b for a, b in zip(ps, m.parameters()))  # the same objects every call
    assert all(p.grad is None for p in ps)  # None before the first backward
    assert [(n, p) for n, p in m.named_parameters()] == list(zip(m.parameter_names(), ps))
    assert [p.shape for p in ps] == [(5, 7), (7,), (7, 3), (3,)]
    assert all(p.dtype == np.float64 for p in ps)
    assert [p.ndim for p in ps] == [2, 1, 2, 1] and ps[0].size == 35
    assert np.asarray(ps[0]) is ps[0].data  # __array__ gives the value array, no copy
    assert np.asarray(ps[0], dtype=np.float32).dtype == np.float32
    assert np.array(ps[0], copy=True) is not ps[0].data
    assert "0.weight" in repr(ps[0])


def test_backward_sets_grad_to_the_gradient_arrays():
    m = _model_after_backward()
    assert [p.grad for p in m.parameters()] == m.gradients()
    assert all(p.grad is g for p, g in zip(m.parameters(), m.gradients()))
    # the values the model computes with are p.data
    w = m.parameters()[0].data
    w[...] = 0.0
    assert np.all(m._blocks[0].weight == 0.0)


def test_grad_setter_validates():
    p = nn.Parameter(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="grad must be a numpy.ndarray or None, got list"):
        p.grad = [1.0]
    with pytest.raises(TypeError, match="grad has dtype float32 but the parameter has dtype float64"):
        p.grad = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"grad has shape \(3, 2\) but the parameter has shape"):
        p.grad = np.zeros((3, 2))
    assert p.grad is None
    with pytest.raises(TypeError, match="data must be a numpy.ndarray"):
        nn.Parameter([1.0])
    with pytest.raises(TypeError, match="data must have dtype float32 or float64"):
        nn.Parameter(np.zeros(3, np.int64))
    with pytest.raises(AttributeError):
        p.data = np.zeros((2, 3))  # the value array is fixed for the parameter's life


@pytest.mark.parametrize("impl", IMPLS)
def test_clip_grad_norm_clips_grads_not_values(impl):
    with fastclip.use_implementation(impl):
        m = _model_after_backward()
        values = [p.data.copy() for p in m.parameters()]
        grads = [g.copy() for g in m.gradients()]
        want = fastclip.get_total_norm(grads)
        assert fastclip.get_total_norm(m.parameters()) == want
        fastclip.clip_grad_norm_(grads, 0.01)
        total = fastclip.clip_grad_norm_(m.parameters(), 0.01)
        assert total == want
        for p, v, g in zip(m.parameters(), values, grads):
            np.testing.assert_array_equal(p.data, v)
            np.testing.assert_array_equal(p.grad, g)


@pytest.mark.parametrize("impl", IMPLS)
def test_clip_grad_value_and_with_norm_on_parameters(impl):
    with fastclip.use_implementation(impl):
        m = _model_after_backward()
        values = [p.data.copy() for p in m.parameters()]
        grads = [g.copy() for g in m.gradients()]
        fastclip.clip_grad_value_(grads, 1e-3)
        fastclip.clip_grad_value_(m.parameters(), 1e-3)
        for p, v, g in zip(m.parameters(), values, grads):
            np.testing.assert_array_equal(p.data, v)
            np.testing.assert_array_equal(p.grad, g)
        total = fastclip.get_total_norm(m.parameters())
        fastclip.clip_grads_with_norm_(grads, 1e-4, total)
        fastclip.clip_grads_with_norm_(m.parameters(), 1e-4, total)
        for p, g in zip(m.parameters(), grads):
            np.testing.assert_array_equal(p.grad, g)


@pytest.mark.parametrize("impl", IMPLS)
def test_none_grads_are_skipped(impl):
    with fastclip.use_implementation(impl):
        a = nn.Parameter(np.zeros(2), np.array([3.0, 0.0]))
        b = nn.Parameter(np.ones(2))  # grad None: skipped
        c = nn.Parameter(np.zeros(1), np.array([4.0]))
        assert fastclip.get_total_norm([a, b, c]) == 5.0
        assert fastclip.clip_grad_norm_([a, b, c], 1.0) == 5.0
        np.testing.assert_allclose(a.grad, [0.6, 0.0], rtol=1e-6)
        np.testing.assert_allclose(c.grad, [0.8], rtol=1e-6)
        assert b.grad is None and np.array_equal(b.data, [1.0, 1.0])
        assert fastclip.get_total_norm([b]) == 0.0
        assert fastclip.clip_grad_norm_(b, 1.0) == 0.0  # one parameter, as torch accepts
        fastclip.clip_grad_value_((p for p in [a, b, c]), 0.1)  # a generator, as torch's
        np.testing.assert_allclose(c.grad, [0.1])


@pytest.mark.parametrize("impl", IMPLS)
def test_mixing_parameters_and_arrays_is_a_type_error(impl):
    with fastclip.use_implementation(impl):
        m = _model_after_backward()
        before = [g.copy() for g in m.gradients()]
        extra = np.ones(3)
        for fn, args in [
            (fastclip.clip_grad_norm_, (1e-3,)),
            (fastclip.clip_grad_value_, (1e-3,)),
            (fastclip.get_total_norm, ()),
            (fastclip.clip_grads_with_norm_, (1e-3, 10.0)),
        ]:
            with pytest.raises(TypeError, match=r"^grads mixes parameters \(grads\[0\]\) and "
                                                r"plain arrays \(grads\[4\]\)"):
                fn([*m.parameters(), extra], *args)
            with pytest.raises(TypeError, match=r"mixes parameters \(grads\[1\]\) and plain "
                                                r"arrays \(grads\[0\]\)"):
                fn([extra, *m.parameters()], *args)
        assert all(np.array_equal(a, b) for a, b in zip(m.gradients(), before))
        assert np.array_equal(extra, np.ones(3))


def test_out_of_place_functions_refuse_parameters():
    m = _model_after_backward()
    for fn, args in [(fastclip.clip_by_value, (-1, 1)), (fastclip.clip_by_norm, (1.0,)),
                     (fastclip.clip_by_global_norm, (1.0,)), (fastclip.array_norms, ())]:
        with pytest.raises(TypeError, match=r"\[0\] is a parameter \(Parameter\); this function "
                                            r"reads arrays: pass its gradient \(p.grad\) or its "
                                            r"value \(p.data\) explicitly"):
            fn(m.parameters(), *args)


def _train(opt_cls, kw, use_params, steps=5, impl="c"):
    with fastclip.use_implementation(impl):
        m = nn.MLP([5, 7, 3], dtype=np.float64, rng=1)
        rng = np.random.default_rng(2)
        params = m.parameters() if use_params else [p.data for p in m.parameters()]
        opt = opt_cls(params, **kw)
        for _ in range(steps):
            x = rng.standard_normal((4, 5))
            _, d = nn.softmax_cross_entropy(m(x), rng.integers(0, 3, 4))
            m.backward(d, input_grad=False)
            if use_params:
                opt.step()
                opt.zero_grad()
                assert all(p.grad is None for p in m.parameters())
            else:
                opt.step(m.gradients())
        return [p.data.copy() for p in m.parameters()]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("opt_cls", "kw"), [
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True, clip_norm=0.5)),
    (Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.1, clip_norm=0.5)),
    (AdamW, dict(lr=0.01, clip_value=0.05)),
    (RMSprop, dict(lr=0.01, centered=True, momentum=0.5, clip_norm=0.5)),
])
def test_step_without_grads_uses_p_grad(impl, opt_cls, kw):
    a = _train(opt_cls, kw, True, impl=impl)
    b = _train(opt_cls, kw, False, impl=impl)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_optimizer_on_parameters_accepts_step_grads_too():
    m = _model_after_backward()
    opt = SGD(m.parameters(), lr=0.1)
    assert all(a is p.data for a, p in zip(opt.params, m.parameters()))
    before = [p.data.copy() for p in m.parameters()]
    opt.step(m.gradients())
    for p, b, g in zip(m.parameters(), before, m.gradients()):
        np.testing.assert_allclose(p.data, b - 0.1 * g)


def test_step_skips_parameters_without_grad():
    a = nn.Parameter(np.ones(2), np.array([1.0, 2.0]))
    b = nn.Parameter(np.ones(2))
    opt = Adam([a, b], lr=0.1)
    opt.step()
    assert np.array_equal(b.data, [1.0, 1.0])
    assert not np.array_equal(a.data, [1.0, 1.0])
    assert opt.step_count == 1
    st = opt.state_dict()["state"]
    assert np.all(st[1]["exp_avg"] == 0) and np.any(st[0]["exp_avg"] != 0)
    a.grad = None
    assert opt.step() == 0.0 and opt.step_count == 1  # nothing to do: no step
    with pytest.raises(ValueError, match="sqnorms was given but some parameters have no grad"):
        a.grad = np.ones(2)
        opt.step(sqnorms=np.ones(1))


def test_zero_grad_set_to_none_false_zeroes_in_place():
    m = _model_after_backward()
    opt = SGD(m.parameters(), lr=0.1)
    gs = m.gradients()
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is g and not g.any() for p, g in zip(m.parameters(), gs))
    opt.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    opt.zero_grad()  # None grads stay None


def test_step_and_zero_grad_on_plain_arrays_are_type_errors():
    w = np.ones(3)
    opt = SGD([w], lr=0.1)
    with pytest.raises(TypeError, match=r"step\(\) without grads needs an optimiser built on "
                                        r"parameters"):
        opt.step()
    with pytest.raises(TypeError, match=r"zero_grad\(\) needs an optimiser built on parameters"):
        opt.zero_grad()
    with pytest.raises(TypeError, match=r"params mixes parameters \(params\[1\]\) and plain "
                                        r"arrays \(params\[0\]\)"):
        SGD([w, nn.Parameter(np.ones(2))], lr=0.1)
